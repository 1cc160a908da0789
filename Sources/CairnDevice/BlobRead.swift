import CSys
import Foundation

/// Reads part of a blob file. A read `pastCache` of at least `BlobFile.directMinimum` bytes
/// from a page-aligned offset goes past the page cache (O_DIRECT) into a page-aligned stretch
/// of the returned array: the disk fills the bytes the caller hands on, with no copy out of
/// the cache and no cache pages to allocate and later reclaim (in a cold sequential read
/// through a mount those were about a third of its CPU). Other reads, and a file system that
/// refuses O_DIRECT, go through the cache: small files and random reads are read again soon
/// (with a random reader's segments direct too, fio's random 4 KiB reads were 40 % slower:
/// the neighbourhood of each was no longer cached).
public enum BlobRead {
    /// `count` bytes at `offset` of the file at `path`; nil when it cannot be opened or is shorter.
    public static func read(path: String, offset: Int64, count: Int, pastCache: Bool = false) -> ArraySlice<UInt8>? {
        guard count > 0 else { return [] }
        let page = BlobFile.pageSize
        if pastCache, count >= BlobFile.directMinimum, offset % Int64(page) == 0 {
            let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | csys_o_direct())
            if fd >= 0 {
                defer { close(fd) }
                if let bytes = readDirect(fd, offset: offset, count: count) { return bytes }
            } else if errno != EINVAL {
                return nil
            }
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, filled in
            filled = fill(fd, UnsafeMutableRawBufferPointer(buffer), offset: offset)
        }
        return bytes.count == count ? bytes[...] : nil
    }

    /// Whole pages read straight into an aligned stretch of a slightly larger array; nil when
    /// the file system refuses (the caller reads through the cache) or the file is short.
    private static func readDirect(_ fd: Int32, offset: Int64, count: Int) -> ArraySlice<UInt8>? {
        let page = BlobFile.pageSize
        let span = (count + page - 1) & ~(page - 1)
        var start = 0, got = 0
        let storage = [UInt8](unsafeUninitializedCapacity: span + page) { buffer, initialized in
            start = (page - Int(bitPattern: buffer.baseAddress) % page) % page
            got = fill(fd, UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[start..<(start + span)])), offset: offset)
            initialized = start + min(got, count)
        }
        return got >= count ? storage[start..<(start + count)] : nil
    }

    /// Reads until `buffer` is full or the file ends; the bytes read (fewer on an error).
    private static func fill(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, offset: Int64) -> Int {
        var filled = 0
        while filled < buffer.count {
            let r = pread(fd, buffer.baseAddress! + filled, buffer.count - filled, off_t(offset) + off_t(filled))
            if r < 0, errno == EINTR { continue }
            if r <= 0 { break }
            filled += r
        }
        return filled
    }
}
