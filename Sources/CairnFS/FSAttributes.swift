import CairnCore
import CairnProtocol

/// What the kernel sees of an inode (its number already mapped to the mount's).
public struct FSAttributes: Sendable, Equatable {
    public var ino: UInt64
    public var mode: UInt32
    public var nlink: Int
    public var uid: UInt32
    public var gid: UInt32
    public var size: Int64
    public var atime: UnixNanos
    public var mtime: UnixNanos
    public var ctime: UnixNanos
    public var isDirectory: Bool { mode & 0o170000 == 0o040000 }

    public init(ino: UInt64, mode: UInt32, nlink: Int, uid: UInt32, gid: UInt32, size: Int64, atime: UnixNanos, mtime: UnixNanos, ctime: UnixNanos) {
        self.ino = ino; self.mode = mode; self.nlink = nlink; self.uid = uid; self.gid = gid; self.size = size
        self.atime = atime; self.mtime = mtime; self.ctime = ctime
    }
}

/// How the mount behaves; `-o` options on the command line.
public struct MountOptions: Sendable {
    /// The domain shown as the root; nil shows every domain as a top-level directory.
    public var domain: String?
    /// Seconds the kernel may cache attributes and entries (close-to-open still holds: open revalidates).
    public var attrTimeout: Double = 1
    public var entryTimeout: Double = 1
    /// Seconds custom metadata read or set here is kept (nil: the attribute timeout).
    public var xattrTimeout: Double?
    /// Class of new files when their directory names none (default: the domain's `default`).
    public var className: String?
    /// Chunk uploads in flight across the mount (each holds one chunk of memory).
    public var writeBuffers: Int = 4
    /// Bytes fetched per ranged GET when reading (read-ahead granularity).
    public var readAheadBytes: Int64 = 4 << 20
    /// Read segments kept per open file, those read ahead included (the memory bound); at
    /// least `readAheadSegments` + 2, the one being read and the one before it.
    public var readCacheSegments: Int = 4
    /// Segments a sequential reader has fetched ahead of it, in the background.
    public var readAheadSegments: Int = 4
    /// Replicas on storage nodes of this machine are read from their device folders (`LocalReplicas`).
    public var localReads = true
    /// Blobs for storage nodes of this machine are written into their device folders, when the
    /// node grants it (`LocalWriteGrant`).
    public var localWrites = true
    /// Layouts of files seen here open without a tracker call while the tracker promises to
    /// say when they change (`LeasedLayouts`); only with a single tracker address.
    public var leases = true
    public init() {}
}

/// Maps Cairn inode numbers to the mount's: 1 is the root (a virtual directory of domains,
/// or the chosen domain's root); every other inode is its Cairn number + 1.
struct InodeMap: Sendable {
    static let root: UInt64 = 1
    /// The Cairn inode shown as the root, when one domain is mounted.
    let domainRoot: Ino?

    func cairn(_ fuse: UInt64) -> Ino? {
        if fuse == Self.root { return domainRoot }
        return Ino(fuse) - 1
    }

    func fuse(_ cairn: Ino) -> UInt64 {
        if let domainRoot, cairn == domainRoot { return Self.root }
        return UInt64(cairn) + 1
    }

    func attributes(_ w: WireAttributes) -> FSAttributes {
        FSAttributes(ino: fuse(w.ino), mode: w.mode, nlink: w.nlink, uid: w.uid, gid: w.gid, size: w.size,
                     atime: w.atime, mtime: w.mtime, ctime: w.ctime)
    }
}
