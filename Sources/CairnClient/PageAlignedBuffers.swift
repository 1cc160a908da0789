import CairnDevice
import Foundation

/// Page-aligned copies of large chunks, which local writes can send past the page cache
/// (`BlobFile.writeWhole`); a Swift array's bytes never start on a page. One copy serves
/// every local replica of the chunk. Buffers are kept for the next chunk (a fresh one costs
/// a page fault per 4 KiB), at most `limit` of them.
final class PageAlignedBuffers: @unchecked Sendable {
    private let lock = NSLock()
    private var kept: [UnsafeMutableRawBufferPointer] = []
    let limit: Int

    init(limit: Int) { self.limit = limit }

    deinit { for b in kept { free(b.baseAddress) } }

    /// Runs `body` with `bytes`, copied to page-aligned memory when they are large enough to
    /// be written directly and not aligned already.
    func withAligned<T>(_ bytes: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        guard bytes.count >= BlobFile.directMinimum, Int(bitPattern: bytes.baseAddress) % BlobFile.pageSize != 0,
              let buffer = take(bytes.count) else { return try body(bytes) }
        defer { give(buffer) }
        buffer.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        return try body(UnsafeRawBufferPointer(rebasing: buffer[0..<bytes.count]))
    }

    private func take(_ count: Int) -> UnsafeMutableRawBufferPointer? {
        if let b = lock.withLock({ kept.popLast() }) {
            if b.count >= count { return b }
            free(b.baseAddress)
        }
        var p: UnsafeMutableRawPointer?
        guard posix_memalign(&p, BlobFile.pageSize, count) == 0, let p else { return nil }
        return UnsafeMutableRawBufferPointer(start: p, count: count)
    }

    /// Frees every kept buffer (an idle mount's memory goes back to the system).
    func removeAll() {
        let all = lock.withLock { () -> [UnsafeMutableRawBufferPointer] in defer { kept.removeAll() }; return kept }
        for b in all { free(b.baseAddress) }
    }

    private func give(_ b: UnsafeMutableRawBufferPointer) {
        let keep = lock.withLock { () -> Bool in
            guard kept.count < limit else { return false }
            kept.append(b)
            return true
        }
        if !keep { free(b.baseAddress) }
    }
}
