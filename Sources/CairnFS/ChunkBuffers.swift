import Foundation

/// Chunk buffers kept for the next large write. A fresh 16 MiB buffer comes from mmap
/// (`MallocTuning`), so filling it costs 4,096 page faults, each zeroing a page, and freeing
/// it an munmap whose TLB shootdown interrupts every CPU: about a tenth of the mount's CPU
/// in a sequential write. A kept buffer is already resident. At most `limit` are kept (the
/// memory a mount holds after a large copy), so the pool stays bounded.
final class ChunkBuffers: @unchecked Sendable {
    private let lock = NSLock()
    private var kept: [[UInt8]] = []
    let limit: Int

    init(limit: Int) { self.limit = limit }

    /// An empty buffer with room for `capacity` bytes: a kept one if it is large enough.
    func take(capacity: Int) -> [UInt8] {
        if let b = lock.withLock({ kept.popLast() }), b.capacity >= capacity { return b }
        var b = [UInt8]()
        b.reserveCapacity(capacity)
        return b
    }

    /// Keeps a large buffer whose bytes are no longer needed. Pass the last reference: a
    /// shared array would get a new allocation on `removeAll(keepingCapacity:)`.
    func give(_ buffer: inout [UInt8], ifAtLeast size: Int) {
        guard buffer.capacity >= size else { return }
        buffer.removeAll(keepingCapacity: true)
        let b = buffer
        buffer = []
        lock.withLock { if kept.count < limit { kept.append(b) } }
    }
}
