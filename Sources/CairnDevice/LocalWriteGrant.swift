import CairnCore
import CairnProtocol
import Foundation

/// Short-circuit writes, the write-side twin of `LocalReadMarker`: a storage node lets a client
/// that shares its file system (a mount on the same machine) store blobs straight into its
/// device folders, the way the node itself would (`BlobFile`), instead of sending them through
/// the node's HTTP server — no request, no copy through the node's process.
///
/// The node writes this grant into its data folder at start, readable by its own user only:
/// whoever can read it can write the device folders anyway. It says what the node keeps free
/// on each device and, with a cluster secret, carries a key derived from the secret and the
/// node's name, with which such a client signs its `StoreReceipt`s; the tracker derives the same
/// key from the host the copy is claimed on, so it accepts them as it accepts the node's own.
/// A node with a fixed capacity (`--capacity`) grants nothing: only it can count its blobs.
public struct LocalWriteGrant: Codable, Sendable, Equatable {
    public static let fileName = ".cairn-local-writes"

    /// The node's name (its host's name at the tracker).
    public var node: String
    /// Bytes each device keeps free (`FreeSpaceReserve` with this cap).
    public var reserveBytes: Int64
    /// Signs receipts for blobs written here; nil without a cluster secret.
    public var receiptKey: String?

    public init(node: String, reserveBytes: Int64, secret: String?) {
        self.node = node
        self.reserveBytes = reserveBytes
        self.receiptKey = secret.map { StoreReceipt.localKey(node: node, secret: $0) }
    }

    /// Replaces the grant in `dataDir` (mode 0600, renamed into place).
    public func write(dataDir: String) throws {
        let path = dataDir + "/" + Self.fileName, temp = path + ".tmp"
        unlink(temp)
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StorageError.failed("cannot create \(temp)") }
        let bytes = try JSONEncoder().encode(self)
        let wrote = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let failure = wrote == bytes.count ? nil : StorageError.failed("cannot write \(temp)", errno: wrote < 0 ? errno : EIO)
        close(fd)
        if let failure { unlink(temp); throw failure }
        guard rename(temp, path) == 0 else { let e = StorageError.failed("cannot rename \(temp) to \(path)"); unlink(temp); throw e }
    }

    /// Takes the grant away (a node that stops granting: started with a capacity).
    public static func remove(dataDir: String) { unlink(dataDir + "/" + fileName) }

    /// The grant in `dataDir`, when this process may read it.
    public static func read(dataDir: String) -> LocalWriteGrant? {
        guard let data = FileManager.default.contents(atPath: dataDir + "/" + fileName) else { return nil }
        return try? JSONDecoder().decode(LocalWriteGrant.self, from: data)
    }

    /// Writes `bytes` as the blob `devicePath` (`/dev<N>/…/<fid>.fid`) under `dataDir`, without an
    /// fsync (the caller makes it durable with a `syncfs` of the device). Nil when the device
    /// folder is missing or would reach its reserve: the caller then goes through the node,
    /// which says why. Throws when the write itself failed.
    public func store(_ bytes: UnsafeRawBufferPointer, devicePath: String, dataDir: String,
                      algorithm: ChecksumAlgorithm) throws -> (checksum: Checksum?, receipt: String?, deviceFolder: String)? {
        guard let (device, fid) = FidLayout.parse(devicePath: devicePath) else { return nil }
        let folder = dataDir + "/dev\(device)"
        var st = stat(), vfs = statvfs()
        guard lstat(folder, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, statvfs(folder, &vfs) == 0 else { return nil }
        let total = Int64(vfs.f_blocks) * Int64(vfs.f_frsize), free = Int64(vfs.f_bavail) * Int64(vfs.f_frsize)
        guard free - Int64(bytes.count) >= FreeSpaceReserve.bytes(total: total, cap: reserveBytes) else { return nil }
        // In place: the fid is one the tracker allocated to this upload (see `BlobFile.init`).
        let blob = try BlobFile(path: folder + "/" + FidLayout.relativePath(fid: fid), algorithm: algorithm, inPlace: true)
        let sum: Checksum?
        do {
            try blob.writeWhole(bytes)
            sum = try blob.commit(durable: false)
        } catch {
            blob.discard()
            throw error
        }
        let receipt = receiptKey.map {
            StoreReceipt.make(devicePath: devicePath, size: Int64(bytes.count), checksum: sum?.description, secret: $0)
        }
        return (sum, receipt, folder)
    }
}
