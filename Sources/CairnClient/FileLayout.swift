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
        self.init(empty: a, classOf: r)
        chunks = (0..<Int(r.int("chunk_count") ?? 0)).map { i in
            let p = "chunk\(i + 1)_"
            return Chunk(index: Int(r.int(p + "index") ?? Int64(i)), fid: r.int(p + "fid") ?? 0, length: r.int(p + "length") ?? 0,
                         devices: (r[p + "devids"] ?? "").utf8.split(separator: UInt8(ascii: ",")).compactMap { Int(Substring($0)) },
                         urls: (r[p + "urls"] ?? "").utf8.split(separator: UInt8(ascii: " ")).map { String(Substring($0)) },
                         checksum: r.nonEmpty(p + "checksum"))
        }.sorted { $0.index < $1.index }  // in order already (linear then); `chunk(at:)` relies on it
    }

    /// A file without chunks, in the domain and class `r` names as `file_layout` answers them
    /// (so does `fs_delegate`, for the files a mount creates on its own).
    public init(empty attributes: WireAttributes, classOf r: Args) {
        self.attributes = attributes
        domain = r["domain"] ?? ""
        className = r["class_name"] ?? "default"
        replicas = Int(r.int("replicas") ?? 0)
        syncCopies = Int(r.int("sync_copies") ?? 1)
        chunkSize = r.int("chunk_size") ?? ChunkLayout.defaultChunkSize
        chunks = []
    }

    public static func fetch(domain: String, key: String, tracker: TrackerClient) throws -> FileLayout {
        try FileLayout(tracker.call("file_layout", [("domain", domain), ("key", key)]))
    }

    public static func fetch(ino: Ino, tracker: TrackerClient) throws -> FileLayout {
        try FileLayout(tracker.call("file_layout", [("ino", String(ino))]))
    }
}

extension FileLayout {
    /// The chunk with this index, or nil for a hole. The tracker lists chunks in index order,
    /// usually with none missing, so this is one comparison, or a binary search around holes: a
    /// read or a commit of a file of many chunks must not scan them all (a 1 TiB file has 65,536).
    public func chunk(at index: Int) -> Chunk? {
        if chunks.indices.contains(index), chunks[index].index == index { return chunks[index] }
        var low = 0, high = chunks.count
        while low < high {
            let mid = (low + high) / 2
            if chunks[mid].index < index { low = mid + 1 } else { high = mid }
        }
        return low < chunks.count && chunks[low].index == index ? chunks[low] : nil
    }

    /// The class facts an upload of this file needs.
    public var classInfo: ClassInfo {
        ClassInfo(name: className, replicas: replicas, syncCopies: syncCopies, policy: "", checksum: "", chunkSize: chunkSize)
    }
}
