import Foundation

/// Chunk buffers kept for the next large write. A fresh 16 MiB buffer comes from mmap
/// (`MallocTuning`), so filling it costs 4,096 page faults, each zeroing a page, and freeing
/// it an munmap whose TLB shootdown interrupts every CPU: about a tenth of the mount's CPU
/// in a sequential write. A kept buffer is already resident. Only buffers of `minimum` bytes
/// or more are kept and handed out (a small file's buffer is a small heap block), and at most
/// `limit` of them (the memory a mount holds after a large copy).
final class ChunkBuffers: @unchecked Sendable {
    private let lock = NSLock()
    private var kept: [[UInt8]] = []
    let limit: Int
    /// Buffers for at least this many bytes are whole chunks (see `OpenFile.capacity(for:)`).
    static let minimum = 1 << 20

    init(limit: Int) { self.limit = limit }

    /// An empty buffer with room for `capacity` bytes: a kept one when it is a large request.
    func take(capacity: Int) -> [UInt8] {
        if capacity >= Self.minimum, let b = lock.withLock({ kept.popLast() }), b.capacity >= capacity { return b }
        var b = [UInt8]()
        b.reserveCapacity(capacity)
        return b
    }

    /// Frees every kept buffer (an idle mount's memory goes back to the system).
    func removeAll() { lock.withLock { kept.removeAll() } }

    /// Keeps a large buffer whose bytes are no longer needed. Pass the last reference: a
    /// shared array would get a new allocation on `removeAll(keepingCapacity:)`.
    func give(_ buffer: inout [UInt8]) {
        guard buffer.capacity >= Self.minimum else { return }
        buffer.removeAll(keepingCapacity: true)
        let b = buffer
        buffer = []
        lock.withLock { if kept.count < limit { kept.append(b) } }
    }
}
