import Dispatch
import Foundation

/// Runs blocking work (libcurl transfers, fsync) off Swift's cooperative threads, so async
/// servers never stall their executors on I/O.
public enum BlockingPool {
    private static let queue = DispatchQueue(label: "cairn.blocking", attributes: .concurrent)

    public static func run<T: Sendable>(_ body: @Sendable @escaping () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, any Error>) in
            queue.async {
                do { c.resume(returning: try body()) } catch { c.resume(throwing: error) }
            }
        }
    }

    /// `run` for a body that cannot fail: no error path for the caller to invent.
    public static func perform<T: Sendable>(_ body: @Sendable @escaping () -> T) async -> T {
        await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in queue.async { c.resume(returning: body()) } }
    }
}

/// Runs `count` blocking bodies at the same time, each on its own thread (the first on the
/// caller's), and returns when all are done. Unlike `DispatchQueue.concurrentPerform`, which
/// may run iterations one after another when the pool's few threads are busy, this really
/// overlaps network transfers: two PUTs to two nodes take the time of one. The threads are
/// kept and reused (starting one per small file's PUT cost more than the PUT's own CPU).
public enum Parallel {
    public static func run(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        guard count > 1 else { if count == 1 { body(0) }; return }
        let done = DispatchSemaphore(value: 0)
        for i in 1..<count { HelperThreads.shared.start { body(i); done.signal() } }
        body(0)
        for _ in 1..<count { done.wait() }
    }
}

/// Parked threads, each woken for one job at a time; a job that finds none parked gets a new
/// thread, so jobs never wait for each other.
final class HelperThreads: @unchecked Sendable {
    static let shared = HelperThreads()
    private let lock = NSLock()
    private var parked: [Helper] = []

    func start(_ job: @escaping @Sendable () -> Void) {
        let helper = lock.withLock { parked.popLast() } ?? Helper(owner: self)
        helper.run(job)
    }

    fileprivate func park(_ helper: Helper) { lock.withLock { parked.append(helper) } }

    fileprivate final class Helper: @unchecked Sendable {
        private let wake = DispatchSemaphore(value: 0)
        private var job: (@Sendable () -> Void)?
        private unowned let owner: HelperThreads

        init(owner: HelperThreads) {
            self.owner = owner
            let thread = Thread { [self] in
                while true {
                    wake.wait()
                    job?()
                    job = nil
                    owner.park(self)
                }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }

        /// `job` is written before the semaphore is signalled and read after it is waited on,
        /// so the semaphore orders the two threads' accesses.
        func run(_ job: @escaping @Sendable () -> Void) {
            self.job = job
            wake.signal()
        }
    }
}
