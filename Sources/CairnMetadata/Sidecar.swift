import CairnCore
import Foundation

/// What a storage node keeps beside each blob (`<fid>.meta`) so the metadata can be rebuilt
/// from the storage nodes alone: which file and chunk the blob is, its class, checksum, and
/// the file's attributes and (on chunk 0) custom metadata.
public struct Sidecar: Codable, Sendable, Equatable {
    public typealias ClassInfo = ClassSettings
    public struct Attributes: Codable, Sendable, Equatable {
        public var mode: UInt32
        public var uid: UInt32
        public var gid: UInt32
        public var size: Int64
        public var atime: Int64
        public var mtime: Int64
        public var ctime: Int64
        public var chunks: Int
    }

    /// When the metadata was read (ns): the newest sidecar of a file wins at recovery.
    public var version: Int64
    public var fid: Fid
    public var index: Int
    public var length: Int64
    public var checksum: String?
    public var domain: String
    public var classInfo: ClassInfo
    public var ino: Ino
    /// Every key (hard links: several) of the file.
    public var keys: [String]
    public var attributes: Attributes
    /// Custom metadata, hex-encoded values; on chunk 0 only.
    public var xattrs: [String: String]?

    public func encoded() -> [UInt8] { Array((try? JSONEncoder().encode(self)) ?? Data()) }
    public static func decode(_ bytes: some Sequence<UInt8>) -> Sidecar? { try? JSONDecoder().decode(Sidecar.self, from: Data(bytes)) }
}
