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
}

/// Runs `count` blocking bodies at the same time, each on its own thread (the first on the
/// caller's), and returns when all are done. Unlike `DispatchQueue.concurrentPerform`, which
/// may run iterations one after another when the pool's few threads are busy, this really
/// overlaps network transfers: two PUTs to two nodes take the time of one.
public enum Parallel {
    public static func run(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        guard count > 1 else { if count == 1 { body(0) }; return }
        let done = DispatchSemaphore(value: 0)
        for i in 1..<count {
            let t = Thread { body(i); done.signal() }
            t.stackSize = 1 << 20
            t.start()
        }
        body(0)
        for _ in 1..<count { done.wait() }
    }
}
