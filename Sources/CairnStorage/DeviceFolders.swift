import CairnCore
import Foundation

/// The devices of one storage node: `DATA/dev<N>` folders. Every path a request names is
/// mapped through `FidLayout.parse`, which accepts only the exact fid form, so nothing from a
/// client can reach outside a device folder (no `..`, no encoding tricks, no symlinks followed
/// at the device level: device folders must be real directories).
public struct DeviceFolders: Sendable {
    public let root: String

    public init(root: String) { self.root = root }

    /// Device ids present on disk.
    public func deviceIDs() -> [DeviceID] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.compactMap { name -> DeviceID? in
            guard name.hasPrefix("dev"), let id = DeviceID(name.dropFirst(3)), id > 0, "dev\(id)" == name else { return nil }
            var st = stat()
            guard lstat(root + "/" + name, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return nil }
            return id
        }.sorted()
    }

    public func devicePath(_ id: DeviceID) -> String { root + "/dev\(id)" }

    public func exists(_ id: DeviceID) -> Bool {
        var st = stat()
        return lstat(devicePath(id), &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    public func create(_ id: DeviceID) throws {
        try FileManager.default.createDirectory(atPath: devicePath(id), withIntermediateDirectories: true)
    }

    /// The local file for a fid on a device.
    public func file(device: DeviceID, fid: Fid) -> String { devicePath(device) + "/" + FidLayout.relativePath(fid: fid) }
}

/// Space and load of one device, measured now.
public struct DeviceUsage: Codable, Sendable {
    public var id: DeviceID
    public var totalBytes: Int64
    public var usedBytes: Int64
    public var freeBytes: Int64
    public var ioUtilization: Double
    public var writeable: Bool
}

/// Reads statvfs for space and /proc/diskstats-style counters (via /sys/dev/block) for I/O
/// utilisation: the share of wall time the backing block device was busy since the last read.
/// With a capacity, a device reports that size, the bytes of its blobs as used (re-counted
/// at most every 2 s) and the rest as free, bounded by what its file system has free.
final class UsageMeter: @unchecked Sendable {
    private let lock = NSLock()
    private var last: [DeviceID: (ticks: Int64, at: Double)] = [:]
    private var counted: [DeviceID: (bytes: Int64, at: Double)] = [:]
    let capacity: Int64?

    init(capacity: Int64? = nil) { self.capacity = capacity }

    func measure(_ folders: DeviceFolders, id: DeviceID, reserveBytes: Int64) -> DeviceUsage? {
        guard let (total, used, free) = space(folders, id: id) else { return nil }
        return DeviceUsage(id: id, totalBytes: total, usedBytes: used, freeBytes: free,
                           ioUtilization: utilization(folders.devicePath(id), id: id),
                           writeable: free > FreeSpaceReserve.bytes(total: total, cap: reserveBytes) && access(folders.devicePath(id), W_OK) == 0)
    }

    /// Total, used and free bytes only (one statvfs): what a PUT checks before it writes.
    /// I/O utilisation is left to the status polls, whose interval it is measured over.
    func space(_ folders: DeviceFolders, id: DeviceID) -> (total: Int64, used: Int64, free: Int64)? {
        var vfs = statvfs()
        guard statvfs(folders.devicePath(id), &vfs) == 0 else { return nil }
        var total = Int64(vfs.f_blocks) * Int64(vfs.f_frsize)
        var free = Int64(vfs.f_bavail) * Int64(vfs.f_frsize)
        var used = total - Int64(vfs.f_bfree) * Int64(vfs.f_frsize)
        if let capacity {
            used = blobBytes(folders, id: id)
            total = capacity
            free = max(0, min(free, capacity - used))
        }
        return (total, used, free)
    }

    /// Counts `bytes` a PUT is about to store (negative: one that failed) until the next walk
    /// of the folder: otherwise a burst of writes within the walk's 2 s cache all passed the
    /// capacity check against the count taken before the first of them.
    func account(_ bytes: Int64, on id: DeviceID) {
        lock.withLock { if let c = counted[id] { counted[id] = (c.bytes + bytes, c.at) } }
    }

    private func blobBytes(_ folders: DeviceFolders, id: DeviceID) -> Int64 {
        let now = Date().timeIntervalSince1970
        if let c = lock.withLock({ counted[id] }), now - c.at < 2 { return c.bytes }
        let bytes = DeviceInventory.blobs(in: folders.devicePath(id)).reduce(0) { $0 + $1.size }
        lock.withLock { counted[id] = (bytes, now) }
        return bytes
    }

    private func utilization(_ path: String, id: DeviceID) -> Double {
        var st = stat()
        guard stat(path, &st) == 0 else { return 0 }
        let major = (st.st_dev >> 8) & 0xfff, minor = (st.st_dev & 0xff) | ((st.st_dev >> 12) & 0xfff00)
        guard let text = try? String(contentsOfFile: "/sys/dev/block/\(major):\(minor)/stat", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 9, let ticks = Int64(fields[9]) else { return 0 }
        let now = Date().timeIntervalSince1970
        return lock.withLock {
            defer { last[id] = (ticks, now) }
            guard let prev = last[id], now > prev.at else { return 0 }
            return min(100, Double(ticks - prev.ticks) / ((now - prev.at) * 1000) * 100)
        }
    }
}
