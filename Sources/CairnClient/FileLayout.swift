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
    }
    public var attributes: WireAttributes
    public var className: String
    public var replicas: Int
    public var chunkSize: Int64
    public var chunks: [Chunk]

    public init(_ r: Args) throws {
        guard let a = WireAttributes(r) else { throw ProtocolError("bad_reply", "file_layout reply without attributes") }
        attributes = a
        className = r["class_name"] ?? "default"
        replicas = Int(r.int("replicas") ?? 0)
        chunkSize = r.int("chunk_size") ?? ChunkLayout.defaultChunkSize
        chunks = (0..<Int(r.int("chunk_count") ?? 0)).map { i in
            let p = "chunk\(i + 1)_"
            return Chunk(index: Int(r.int(p + "index") ?? Int64(i)), fid: r.int(p + "fid") ?? 0, length: r.int(p + "length") ?? 0,
                         devices: (r[p + "devids"] ?? "").split(separator: ",").compactMap { Int($0) },
                         urls: (r[p + "urls"] ?? "").split(separator: " ").map(String.init))
        }
    }

    public static func fetch(domain: String, key: String, tracker: TrackerClient) throws -> FileLayout {
        try FileLayout(tracker.call("file_layout", [("domain", domain), ("key", key)]))
    }

    public static func fetch(ino: Ino, tracker: TrackerClient) throws -> FileLayout {
        try FileLayout(tracker.call("file_layout", [("ino", String(ino))]))
    }
}
