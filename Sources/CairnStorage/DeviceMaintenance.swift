import CairnCore
import CairnDevice
import CSys
import Foundation
import Synchronization

/// Reads a blob again and recomputes its checksum: what fsck and the scrubber compare with
/// the checksum stored at write time (the `user.cairn.checksum` xattr and the tracker's row).
enum BlobVerifier {
    struct Result: Codable, Sendable {
        var size: Int64
        /// Checksum stored when the blob was written, if any.
        var stored: String?
        /// Checksum of the bytes on disk now (nil when the algorithm is none).
        var computed: String?
        /// Seconds since the epoch of the blob's last change.
        var mtime: Int64 = 0
        var intact: Bool { stored == nil || computed == nil || stored == computed }
    }

    /// `algorithm` nil: the stored checksum's algorithm (nothing computed when there is none).
    /// `pace` is called after every block read with its size (rate limiting).
    static func verify(path: String, algorithm: ChecksumAlgorithm?, pace: (Int) -> Void = { _ in }) throws -> Result {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw StorageError.io("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let stored = BlobFile.storedChecksum(path: path)
        let alg = algorithm ?? stored.flatMap { Checksum(parsing: $0)?.algorithm } ?? ChecksumAlgorithm.none
        var sum = StreamingChecksum(alg)
        var size: Int64 = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw StorageError.io("read of \(path) failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            buffer.withUnsafeBytes { sum.update(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
            size += Int64(n)
            pace(n)
        }
        var st = stat()
        fstat(fd, &st)
        return Result(size: size, stored: stored, computed: sum.finalize()?.description, mtime: Int64(st.st_mtim.tv_sec))
    }
}

/// The blobs present on a device, found by walking its fid folders (fsck's orphan scan and
/// the scrubber). Only names in the exact fid form count.
enum DeviceInventory {
    struct Entry: Sendable {
        var fid: Fid
        var size: Int64
        /// Seconds since the epoch of the last change (orphans get a grace period).
        var mtime: Int64
    }

    static func blobs(in devicePath: String, after: Fid = 0, limit: Int = .max) -> [Entry] {
        var out: [Entry] = []
        eachFidFolder(in: devicePath) { dir, relative, names in
            for name in names.sorted() where name.hasSuffix(".fid") {
                guard let fid = Fid(name.dropLast(4)), fid > after,
                      FidLayout.relativePath(fid: fid) == "\(relative)/\(name)" else { continue }
                var st = stat()
                guard lstat("\(dir)/\(name)", &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
                out.append(Entry(fid: fid, size: Int64(st.st_size), mtime: Int64(st.st_mtim.tv_sec)))
                if out.count >= limit { return false }
            }
            return true
        }
        return out
    }

    /// Calls `body` with each B/MMM/TTT fid folder of a device (its path, its path within the
    /// device, the names in it), in fid order, until `body` returns false.
    static func eachFidFolder(in devicePath: String, _ body: (String, String, [String]) -> Bool) {
        let fm = FileManager.default
        // B/MMM/TTT folders sort in fid order because every level is fixed-width.
        for b in sortedDigits(fm, devicePath) {
            for m in sortedDigits(fm, "\(devicePath)/\(b)") {
                for t in sortedDigits(fm, "\(devicePath)/\(b)/\(m)") {
                    let dir = "\(devicePath)/\(b)/\(m)/\(t)"
                    guard body(dir, "\(b)/\(m)/\(t)", (try? fm.contentsOfDirectory(atPath: dir)) ?? []) else { return }
                }
            }
        }
    }

    private static func sortedDigits(_ fm: FileManager, _ path: String) -> [String] {
        ((try? fm.contentsOfDirectory(atPath: path)) ?? []).filter { !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }.sorted()
    }
}

/// The monitor's test write: a small file written, fsynced, read back and removed, proving
/// the device takes writes now (a full or read-only-remounted disk fails it).
enum DeviceProbe {
    static func run(devicePath: String) -> String? {
        let dir = devicePath + "/test-write"
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        catch { return "cannot create \(dir): \(error)" }
        let path = dir + "/test-write-\(Clock.nowSeconds())-\(UInt32.random(in: 0...UInt32.max))"
        let payload = Array("cairn test write \(path)\n".utf8)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return "cannot create \(path): \(String(cString: strerror(errno)))" }
        defer { unlink(path) }
        let wrote = payload.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard wrote == payload.count, synced == 0 else { return "test write to \(path) failed: \(String(cString: strerror(errno)))" }
        guard let back = FileManager.default.contents(atPath: path), Array(back) == payload else { return "test read of \(path) returned other bytes" }
        return nil
    }
}

/// Temporary files (`.tmp-*` blobs being written, `<fid>.meta.tmp-*` sidecars) whose writer
/// died before its rename — a storage node or a mount killed mid-write — would hold their
/// space for good. One not written to for an hour is removed: a live writer writes to its
/// file as the bytes arrive and renames it within seconds of the last.
enum StaleTemporaries {
    static let maxAge: Int64 = 3600

    static func isTemporary(_ name: String) -> Bool { name.hasPrefix(".tmp-") || name.contains(".meta.tmp-") }

    /// What a sweep of one device did: files removed, their bytes, and the ones it could not
    /// remove (path and reason), which stay until someone looks.
    struct Sweep {
        var count = 0
        var bytes: Int64 = 0
        var failures: [String] = []
    }

    /// Removes those older than `maxAge` under `devicePath`.
    static func remove(in devicePath: String, now: Int64 = Int64(Date().timeIntervalSince1970)) -> Sweep {
        var done = Sweep()
        DeviceInventory.eachFidFolder(in: devicePath) { dir, _, names in
            for name in names where isTemporary(name) {
                var st = stat()
                let path = "\(dir)/\(name)"
                guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, now - Int64(st.st_mtim.tv_sec) >= maxAge else { continue }
                guard unlink(path) == 0 || errno == ENOENT else {
                    done.failures.append("\(path): \(String(cString: strerror(errno)))")
                    continue
                }
                done.count += 1
                done.bytes += Int64(st.st_size)
            }
            return true
        }
        return done
    }

    /// A sweep of every device at once, then every `interval` seconds, until cancelled
    /// (blocking I/O: call off the executor); `report` gets each device's sweep that found any.
    static func sweep(folders: DeviceFolders, interval: Double = 3600, isCancelled: () -> Bool,
                      report: (DeviceID, Sweep) -> Void) {
        while !isCancelled() {
            for device in folders.deviceIDs() {
                let done = remove(in: folders.devicePath(device))
                if done.count > 0 || !done.failures.isEmpty { report(device, done) }
            }
            var slept = 0.0
            while slept < interval, !isCancelled() { Thread.sleep(forTimeInterval: 1); slept += 1 }
        }
    }
}

/// Background scrubbing: every blob with a stored checksum is read again at a bounded rate
/// and compared; blobs whose bytes no longer match are reported in `/_status` (the tracker's
/// monitor picks them up and has fsck repair them from a good copy).
final class Scrubber: @unchecked Sendable {
    struct Finding: Codable, Sendable, Hashable {
        var device: DeviceID
        var fid: Fid
        var stored: String
        var computed: String
    }

    private let lock = NSLock()
    private var corrupt: Set<Finding> = []
    private var scanned: Int64 = 0
    let bytesPerSecond: Int64
    let passInterval: Double

    init(bytesPerSecond: Int64, passInterval: Double) {
        self.bytesPerSecond = bytesPerSecond
        self.passInterval = passInterval
    }

    var findings: [Finding] { lock.withLock { corrupt.sorted { ($0.device, $0.fid) < ($1.device, $1.fid) } } }
    var blobsScanned: Int64 { lock.withLock { scanned } }

    /// A blob was rewritten or deleted: an old finding about it no longer holds.
    func forget(device: DeviceID, fid: Fid) {
        lock.withLock { corrupt = corrupt.filter { !($0.device == device && $0.fid == fid) } }
    }

    func record(_ f: Finding?, device: DeviceID, fid: Fid) {
        lock.withLock {
            scanned += 1
            corrupt = corrupt.filter { !($0.device == device && $0.fid == fid) }
            if let f { corrupt.insert(f) }
        }
    }

    /// Runs passes over every device until cancelled (blocking I/O: call off the executor).
    func run(folders: DeviceFolders, isCancelled: () -> Bool) {
        guard bytesPerSecond > 0 else { return }
        while !isCancelled() {
            let started = Date()
            let pacer = RatePacer(bytesPerSecond: bytesPerSecond)
            for device in folders.deviceIDs() {
                for entry in DeviceInventory.blobs(in: folders.devicePath(device)) {
                    if isCancelled() { return }
                    scrub(folders.file(device: device, fid: entry.fid), device: device, fid: entry.fid, pacer: pacer)
                }
            }
            let rest = passInterval - Date().timeIntervalSince(started)
            if rest > 0 { Thread.sleep(forTimeInterval: rest) }
        }
    }

    func scrub(_ path: String, device: DeviceID, fid: Fid, pacer: RatePacer) {
        guard BlobFile.storedChecksum(path: path) != nil else { return }
        guard let r = try? BlobVerifier.verify(path: path, algorithm: nil, pace: pacer.pace) else { return }  // vanished meanwhile
        let finding = r.intact ? nil : Finding(device: device, fid: fid, stored: r.stored ?? "", computed: r.computed ?? "")
        record(finding, device: device, fid: fid)
    }
}

/// Sleeps so that the bytes passed through it average at most `bytesPerSecond`.
final class RatePacer {
    let bytesPerSecond: Int64
    private var bytes: Int64 = 0
    private let began = Date()

    init(bytesPerSecond: Int64) { self.bytesPerSecond = bytesPerSecond }

    func pace(_ n: Int) {
        bytes += Int64(n)
        let due = Double(bytes) / Double(bytesPerSecond) - Date().timeIntervalSince(began)
        if due > 0 { Thread.sleep(forTimeInterval: due) }
    }
}

/// Tells a background thread to stop.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}

/// Deleting one blob with its sidecar (a lone DELETE or a line of a batch).
enum BlobRemoval: Equatable {
    case deleted, absent
    case failed(String)

    static func remove(_ file: String) -> BlobRemoval {
        unlink(SidecarFile.path(file))  // the fallback file, when the sidecar did not fit the xattr
        if unlink(file) == 0 { return .deleted }
        return errno == ENOENT ? .absent : .failed(String(cString: strerror(errno)))
    }
}

/// A blob's sidecar lives in its `user.cairn.meta` extended attribute: no second file, so no
/// inode to allocate when it is written or to free when it is rewritten (on a file system
/// without a journal, ext4 scans past recently freed inodes on every create). One that does not
/// fit (large custom metadata) or a file system without xattrs falls back to `<fid>.meta` beside
/// `<fid>.fid`, written whole through a temporary file and a rename (a reader never sees half of one).
enum SidecarFile {
    static let xattrName = "user.cairn.meta"

    static func path(_ blobPath: String) -> String { String(blobPath.dropLast(4)) + ".meta" }

    /// Replaces the sidecar of the blob at `blobPath` atomically. Not fsynced: a sidecar is a
    /// recovery aid the tracker rewrites whenever the file changes; the blob's own flush (or
    /// the next one) makes it durable.
    static func write(_ bytes: [UInt8], blob blobPath: String) throws {
        let set = bytes.withUnsafeBytes { setxattr(blobPath, xattrName, $0.baseAddress, $0.count, 0) }
        if set == 0 {
            unlink(path(blobPath))  // a fallback file from an earlier, larger sidecar is stale now
            return
        }
        guard errno == E2BIG || errno == ENOSPC || errno == EOPNOTSUPP || errno == ERANGE else {
            throw StorageError.io("cannot store the sidecar of \(blobPath): \(String(cString: strerror(errno)))")
        }
        let file = path(blobPath), temp = file + ".tmp-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StorageError.io("cannot create \(temp): \(String(cString: strerror(errno)))") }
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == bytes.count, rename(temp, file) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temp)
            throw StorageError.io("cannot write \(file): \(reason)")
        }
        removexattr(blobPath, xattrName)  // the file is the sidecar now
    }

    /// The sidecar of the blob at `blobPath`, nil when it has none.
    static func read(blob blobPath: String) -> [UInt8]? {
        let size = getxattr(blobPath, xattrName, nil, 0)
        if size > 0 {
            var buf = [UInt8](repeating: 0, count: size)
            let n = buf.withUnsafeMutableBytes { getxattr(blobPath, xattrName, $0.baseAddress, size) }
            if n > 0 { return Array(buf[..<n]) }
        }
        return FileManager.default.contents(atPath: path(blobPath)).map { Array($0) }
    }
}
