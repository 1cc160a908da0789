/// Chunk arithmetic: a file is an ordered list of fixed-size chunks (the last may be shorter).
public struct ChunkLayout: Sendable, Equatable {
    public static let defaultChunkSize: Int64 = 16 << 20
    public let chunkSize: Int64

    public init(chunkSize: Int64 = ChunkLayout.defaultChunkSize) {
        precondition(chunkSize > 0)
        self.chunkSize = chunkSize
    }

    /// How many chunks a file of `size` bytes has (0 for an empty file).
    public func chunkCount(size: Int64) -> Int { size <= 0 ? 0 : Int((size + chunkSize - 1) / chunkSize) }
    /// The index of the chunk holding byte `offset`.
    public func chunkIndex(offset: Int64) -> Int { Int(offset / chunkSize) }
    /// Length of chunk `index` in a file of `size` bytes.
    public func chunkLength(index: Int, size: Int64) -> Int64 {
        let start = Int64(index) * chunkSize
        return max(0, min(chunkSize, size - start))
    }
}

/// Space never filled on a device: at most `cap` bytes, and no more than 5% of a small
/// device (so a 1 GiB test device is still usable). Storage nodes refuse writes into it and
/// placement never chooses a device for a blob that would reach it.
public enum FreeSpaceReserve {
    public static func bytes(total: Int64, cap: Int64) -> Int64 { max(0, min(cap, total / 20)) }
}

/// A class's settings as clients and storage sidecars carry them (names, not database ids).
public struct ClassSettings: Codable, Sendable, Equatable {
    public var name: String
    public var replicas: Int
    public var syncCopies: Int
    public var policy: String
    public var checksum: String
    public var chunkSize: Int64

    public init(name: String, replicas: Int, syncCopies: Int, policy: String, checksum: String, chunkSize: Int64) {
        self.name = name; self.replicas = replicas; self.syncCopies = syncCopies
        self.policy = policy; self.checksum = checksum; self.chunkSize = chunkSize
    }
}
