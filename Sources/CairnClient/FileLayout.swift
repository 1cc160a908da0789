import CairnCore
import CairnProtocol

/// A file's attributes and chunks with every replica's URL in read order (`file_layout`).
public struct FileLayout: Sendable, Equatable {
    public struct Chunk: Sendable, Equatable {
        public var index: Int
        public var fid: Fid
        public var length: Int64
        public var devices: [DeviceID]
        public var urls: [String]
        public var checksum: String?
    }
    public var attributes: WireAttributes
    public var domain: String
    public var className: String
    public var replicas: Int
    public var syncCopies: Int
    public var chunkSize: Int64
    public var chunks: [Chunk]

    public init(_ r: Args) throws {
        guard let a = WireAttributes(r) else { throw ProtocolError("bad_reply", "file_layout reply without attributes") }
        attributes = a
        domain = r["domain"] ?? ""
        className = r["class_name"] ?? "default"
        replicas = Int(r.int("replicas") ?? 0)
        syncCopies = Int(r.int("sync_copies") ?? 1)
        chunkSize = r.int("chunk_size") ?? ChunkLayout.defaultChunkSize
        chunks = (0..<Int(r.int("chunk_count") ?? 0)).map { i in
            let p = "chunk\(i + 1)_"
            return Chunk(index: Int(r.int(p + "index") ?? Int64(i)), fid: r.int(p + "fid") ?? 0, length: r.int(p + "length") ?? 0,
                         devices: (r[p + "devids"] ?? "").split(separator: ",").compactMap { Int($0) },
                         urls: (r[p + "urls"] ?? "").split(separator: " ").map(String.init), checksum: r.nonEmpty(p + "checksum"))
        }
    }

    public static func fetch(domain: String, key: String, tracker: TrackerClient) throws -> FileLayout {
        try FileLayout(tracker.call("file_layout", [("domain", domain), ("key", key)]))
    }

    public static func fetch(ino: Ino, tracker: TrackerClient) throws -> FileLayout {
        try FileLayout(tracker.call("file_layout", [("ino", String(ino))]))
    }
}

extension FileLayout {
    /// The class facts an upload of this file needs.
    public var classInfo: ClassInfo {
        ClassInfo(name: className, replicas: replicas, syncCopies: syncCopies, policy: "", checksum: "", chunkSize: chunkSize)
    }
}
