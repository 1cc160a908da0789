import Dispatch

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
