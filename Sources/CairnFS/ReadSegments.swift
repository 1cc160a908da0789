import Dispatch
import Foundation

/// The read segments of one open file: those read lately (the kernel's read-ahead sends
/// neighbouring requests out of order, so a few stay) and those being read ahead in the
/// background, so a sequential reader's next bytes come off the disk or the network while
/// it copies the current ones. Used with the open file's lock held.
final class ReadSegments: @unchecked Sendable {
    /// One segment: its bytes once fetched, or the error the fetch met.
    private final class Fetch: @unchecked Sendable {
        private let done = NSCondition()
        private var result: Result<ArraySlice<UInt8>, any Error>?

        func finish(_ r: Result<ArraySlice<UInt8>, any Error>) {
            done.withLock { result = r; done.broadcast() }
        }

        func wait() -> Result<ArraySlice<UInt8>, any Error> {
            done.withLock {
                while result == nil { done.wait() }
                return result!
            }
        }
    }

    /// Oldest first; file offset of each segment's first byte.
    private var entries: [(start: Int64, fetch: Fetch)] = []
    /// Segments kept, read ones and ones being read ahead together (the memory bound).
    private let limit: Int

    /// Read-ahead runs here: fetches block (pread, or a GET), so each has its own thread.
    private static let background = DispatchQueue(label: "cairn.read-ahead", attributes: .concurrent)

    /// Room for the segments read ahead, the one being read and the one before it.
    init(options: MountOptions) { limit = max(options.readCacheSegments, options.readAheadSegments + 2) }

    /// Whether a kept segment of `length` bytes covers `offset`.
    func covers(_ offset: Int64, length: Int64) -> Bool {
        entries.contains { $0.start <= offset && offset < $0.start + length }
    }

    /// The segment starting at `start`: kept, being read ahead (waited for), or fetched now.
    /// A read-ahead that failed is tried again here, so its error reaches the reader.
    func bytes(at start: Int64, fetch: () throws -> ArraySlice<UInt8>) throws -> ArraySlice<UInt8> {
        if let i = entries.firstIndex(where: { $0.start == start }) {
            if case .success(let bytes) = entries[i].fetch.wait() { return bytes }
            entries.remove(at: i)
        }
        let bytes = try fetch()
        let done = Fetch()
        done.finish(.success(bytes))
        keep(start, done)
        return bytes
    }

    /// Starts fetching the segment at `start` in the background unless it is kept already.
    func readAhead(at start: Int64, fetch: @escaping @Sendable () throws -> ArraySlice<UInt8>) {
        guard !entries.contains(where: { $0.start == start }) else { return }
        let pending = Fetch()
        keep(start, pending)
        Self.background.async { pending.finish(Result { try fetch() }) }
    }

    /// Forgets every segment (the content changed); fetches under way finish unseen.
    func removeAll() { entries.removeAll() }

    private func keep(_ start: Int64, _ fetch: Fetch) {
        entries.append((start, fetch))
        if entries.count > limit { entries.removeFirst(entries.count - limit) }
    }
}
