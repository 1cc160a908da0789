import CairnCore
import CSys
import Foundation

/// Writes one blob durably: bytes go to a temporary file beside the target, which is
/// fsynced, renamed into place and its directory fsynced, so a blob is either whole or
/// absent after any crash. The checksum is computed as the bytes pass. Storage nodes write
/// every blob this way. A mount that shares a node's file system (`LocalWriteGrant`) writes
/// its new blobs in place instead (see `init`).
public final class BlobFile {
    public let finalPath: String
    /// Where the bytes go until `commit`: a temporary name, or `finalPath` itself (in place).
    let tempPath: String
    private let fd: Int32
    public private(set) var written: Int64 = 0
    private var checksum: StreamingChecksum

    /// `inPlace`: the bytes go straight to `path`, which must not exist, and `commit` renames
    /// nothing. Only for a fid nobody can read yet — one the tracker has just allocated to
    /// this writer, which no reader learns of before the writer commits it; a blob cut short
    /// by a crash is then an orphan the tracker never committed, as a temporary file would be.
    /// It saves a directory entry and a rename per blob (a tenth of a mount's CPU per small file).
    public init(path: String, algorithm: ChecksumAlgorithm, inPlace: Bool = false) throws {
        finalPath = path
        tempPath = inPlace ? path : Self.folder(of: path) + "/.tmp-\(UInt64.random(in: 0...UInt64.max))"
        var fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd < 0, errno == ENOENT {
            // The fid's folder does not exist yet (one in a thousand fids starts one).
            try FileManager.default.createDirectory(atPath: Self.folder(of: path), withIntermediateDirectories: true)
            fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        }
        self.fd = fd
        guard fd >= 0 else { throw StorageError.failed("cannot create \(tempPath)") }
        checksum = StreamingChecksum(algorithm)
    }

    /// The folder a path names a file in (no bridging through NSString: this runs per blob).
    static func folder(of path: String) -> String {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return "." }
        return String(path[..<slash])
    }

    deinit { close(fd) }

    public func append(_ bytes: UnsafeRawBufferPointer) throws {
        checksum.update(bytes)
        try writeAll(bytes, from: 0)
        written += Int64(bytes.count)
        if written - writebackStarted >= Self.earlyWriteback { startWriteback() }
    }

    /// Writes a whole blob of at least `directMinimum` bytes held in page-aligned memory past
    /// the page cache (O_DIRECT), but for a tail shorter than a page. Copying into the page
    /// cache was over half of a mount's CPU in a large sequential write (the kernel allocates
    /// and fills a page per 4 KiB), and the later writeback more; a direct write is one DMA.
    /// Anything else, or a file system that refuses O_DIRECT, gets `append`.
    public func writeWhole(_ bytes: UnsafeRawBufferPointer) throws {
        let whole = bytes.count & ~(Self.pageSize - 1)
        guard written == 0, bytes.count >= Self.directMinimum, Int(bitPattern: bytes.baseAddress) % Self.pageSize == 0,
              setDirect(true) else { return try append(bytes) }
        checksum.update(bytes)
        var off = 0
        while off < whole {
            let n = Glibc.write(fd, bytes.baseAddress! + off, whole - off)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EINVAL { break }  // refused after all: the rest goes through the cache
                let e = errno
                _ = setDirect(false)
                throw StorageError.failed("write to \(tempPath) failed", errno: e)
            }
            off += n
            if off % Self.pageSize != 0 { break }  // a short write: the rest is unaligned
        }
        _ = setDirect(false)
        try writeAll(bytes, from: off)
        written = Int64(bytes.count)
        writebackStarted = Int64(off)  // already on the device: only the tail needs writeback
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer, from start: Int) throws {
        var off = start
        while off < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + off, bytes.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                throw StorageError.failed("write to \(tempPath) failed")
            }
            off += n
        }
    }

    private func setDirect(_ on: Bool) -> Bool {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0 else { return false }
        return fcntl(fd, F_SETFL, on ? flags | csys_o_direct() : flags & ~csys_o_direct()) == 0
    }

    public static let pageSize = 4096
    /// Smaller blobs are written through the page cache: their readers soon want them there.
    public static let directMinimum = 1 << 20

    /// Bytes before this offset are already on their way to disk.
    private var writebackStarted: Int64 = 0

    /// Starts writing what was appended since the last call to disk, without waiting: the
    /// fsync or syncfs that makes the blob durable then finds little left to write, as a local
    /// file system's background writeback would have done, and a streamed upload's disk
    /// writes overlap its network transfer.
    private func startWriteback() {
        _ = sync_file_range(fd, writebackStarted, written - writebackStarted, UInt32(CSYS_SYNC_FILE_RANGE_WRITE))
        writebackStarted = written
    }

    /// Makes the blob visible, and durable unless `durable` is false (the mount's writes,
    /// made durable by the next `DeferredFlush`). Returns its checksum.
    public func commit(durable: Bool = true) throws -> Checksum? {
        // The checksum xattr goes first so the one fsync makes it durable with the bytes.
        let sum = checksum.finalize()
        if let sum { Self.storeChecksum(fd: fd, sum) }
        if durable {
            guard fsync(fd) == 0 else { throw StorageError.failed("fsync of \(tempPath) failed") }
        } else if written >= Self.earlyWriteback, written > writebackStarted {
            startWriteback()  // the tail of a large blob
        }
        if tempPath != finalPath {
            guard rename(tempPath, finalPath) == 0 else { throw StorageError.failed("rename to \(finalPath) failed") }
        }
        if durable {
            let dirfd = open(Self.folder(of: finalPath), O_RDONLY | O_DIRECTORY)
            if dirfd >= 0 { fsync(dirfd); close(dirfd) }
        }
        return sum
    }

    public func discard() { unlink(tempPath) }

    /// Blobs start their writeback in steps of this many bytes (small ones: at their sync).
    static let earlyWriteback: Int64 = 1 << 20

    public static let checksumXattr = "user.cairn.checksum"

    /// The checksum travels with the blob as an extended attribute (where the file system has them).
    public static func storeChecksum(fd: Int32, _ sum: Checksum) {
        let text = Array(sum.description.utf8)
        _ = text.withUnsafeBytes { fsetxattr(fd, checksumXattr, $0.baseAddress, $0.count, 0) }
    }

    public static func storedChecksum(path: String) -> String? {
        var buf = [UInt8](repeating: 0, count: 128)
        let n = buf.withUnsafeMutableBytes { getxattr(path, checksumXattr, $0.baseAddress, 128) }
        return n > 0 ? String(decoding: buf[..<n], as: UTF8.self) : nil
    }
}

public enum StorageError: Error, CustomStringConvertible {
    case io(String)
    /// The device's file system is out of space (or quota): answered 507, so the writer
    /// places the blob elsewhere or tells its user the store is full.
    case full(String)
    public var description: String { switch self { case .io(let m), .full(let m): m } }

    /// The failure `errno` describes, after `what` (built only after errno is read).
    public static func failed(_ what: @autoclosure () -> String, errno e: Int32 = errno) -> StorageError {
        let m = "\(what()): \(String(cString: strerror(e)))"
        return e == ENOSPC || e == EDQUOT ? .full(m) : .io(m)
    }
}
