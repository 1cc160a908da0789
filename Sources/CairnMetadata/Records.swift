import CairnCore
import CairnPolicy

public struct DomainRecord: Sendable, Equatable {
    public var id: DomainID
    public var name: String
    public var root: Ino
}

public struct ClassRecord: Sendable, Equatable {
    public static let defaultName = "default"
    public var domain: DomainID
    public var id: ClassID
    public var name: String
    /// Copies each blob keeps (MogileFS's mindevcount).
    public var replicas: Int
    /// Copies that must exist before a write is acknowledged.
    public var syncCopies: Int
    public var policy: PlacementPolicy
    public var checksum: ChecksumAlgorithm
    public var chunkSize: Int64

    public init(domain: DomainID, id: ClassID, name: String, replicas: Int, syncCopies: Int? = nil,
                policy: PlacementPolicy = .hosts, checksum: ChecksumAlgorithm = .none,
                chunkSize: Int64 = ChunkLayout.defaultChunkSize) {
        self.domain = domain; self.id = id; self.name = name; self.replicas = replicas
        self.syncCopies = syncCopies ?? min(2, replicas)
        self.policy = policy; self.checksum = checksum; self.chunkSize = chunkSize
    }
}

public struct HostRecord: Sendable, Equatable {
    public var id: HostID
    public var name: String
    public var ip: String
    public var port: Int
    public var getPort: Int?
    public var status: HostStatus
    public var observed: ObservedState
    public var baseURL: String { "http://\(ip):\(port)" }
}

public struct DeviceRecord: Sendable, Equatable {
    public var id: DeviceID
    public var host: HostID
    public var status: DeviceState
    public var weight: Int
    public var totalBytes: Int64
    public var usedBytes: Int64
    public var freeBytes: Int64
    public var ioUtilization: Double
    public var observed: ObservedState
    public var usageAt: Int64?
}

/// A device with its host, as policies and the tracker's workers use it.
public struct DeviceInfo: Sendable, Equatable {
    public var device: DeviceRecord
    public var host: HostRecord
    public var view: DeviceView {
        DeviceView(device: device.id, host: host.id, state: device.status, hostStatus: host.status,
                   observed: device.observed, totalBytes: device.totalBytes, freeBytes: device.freeBytes,
                   ioUtilization: device.ioUtilization)
    }
    public func url(fid: Fid) -> String { host.baseURL + FidLayout.devicePath(device: device.id, fid: fid) }
}

public enum InodeKind: String, Sendable { case file = "f", directory = "d", symlink = "l" }

/// POSIX attributes of an inode (times in ns since the epoch).
public struct InodeAttributes: Sendable, Equatable {
    public var ino: Ino
    public var domain: DomainID
    public var kind: InodeKind
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var size: Int64
    public var atime: UnixNanos
    public var mtime: UnixNanos
    public var ctime: UnixNanos
    public var nlink: Int
    public var classID: ClassID
    public var checksum: String?
}

/// A directory entry with its inode's attributes (readdirplus).
public struct DirectoryEntry: Sendable, Equatable {
    public var name: String
    public var attributes: InodeAttributes
}

/// One chunk of a file's content.
public struct ChunkRef: Sendable, Equatable {
    public var index: Int
    public var fid: Fid
    public var length: Int64
    public init(index: Int, fid: Fid, length: Int64) { self.index = index; self.fid = fid; self.length = length }
}

/// A chunk being committed: a blob with the copies the uploader (and the tracker) verified.
public struct CommittedChunk: Sendable, Equatable {
    public var fid: Fid
    public var length: Int64
    public var checksum: String?
    public var devices: [DeviceID]
    public init(fid: Fid, length: Int64, checksum: String?, devices: [DeviceID]) {
        self.fid = fid; self.length = length; self.checksum = checksum; self.devices = devices
    }
}

public struct TempfileRecord: Sendable, Equatable {
    public var fid: Fid
    public var created: Int64
    public var domain: DomainID
    public var classID: ClassID
    public var key: String
    public var devices: [DeviceID]
}

public struct BlobRecord: Sendable, Equatable {
    public var fid: Fid
    public var domain: DomainID
    public var classID: ClassID
    public var length: Int64
    public var checksum: String?
    public var devices: [DeviceID]
}

/// A stored file as MogileFS's file commands see it.
public struct FileRecord: Sendable, Equatable {
    public var key: String
    public var attributes: InodeAttributes
    public var chunks: [ChunkRef]
}

/// A store error: a MogileFS-style code, a sentence, and the errno the mount reports.
public struct StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: String
    public let message: String
    public let errno: Int32
    public init(_ code: String, _ message: String, errno: Int32 = 5) { self.code = code; self.message = message; self.errno = errno }
    public var description: String { message }
}
