import CairnCore

/// An inode's attributes as they travel in Cairn's replies: `ino`, `kind` (f, d, l), `mode`,
/// `uid`, `gid`, `size`, `atime`/`mtime`/`ctime` (ns), `nlink`, `class` — each key optionally
/// prefixed (directory listings use `e<N>_`).
public struct WireAttributes: Sendable, Equatable {
    public var ino: Ino
    public var kind: String
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var size: Int64
    public var atime: UnixNanos
    public var mtime: UnixNanos
    public var ctime: UnixNanos
    public var nlink: Int
    public var classID: Int

    public init(ino: Ino, kind: String, mode: UInt32, uid: UInt32, gid: UInt32, size: Int64, atime: UnixNanos,
                mtime: UnixNanos, ctime: UnixNanos, nlink: Int, classID: Int) {
        self.ino = ino; self.kind = kind; self.mode = mode; self.uid = uid; self.gid = gid; self.size = size
        self.atime = atime; self.mtime = mtime; self.ctime = ctime; self.nlink = nlink; self.classID = classID
    }

    public var isDirectory: Bool { kind == "d" }
    public var isSymlink: Bool { kind == "l" }

    public func pairs(prefix p: String = "") -> [(String, String)] {
        [(p + "ino", String(ino)), (p + "kind", kind), (p + "mode", String(mode)), (p + "uid", String(uid)), (p + "gid", String(gid)),
         (p + "size", String(size)), (p + "atime", String(atime)), (p + "mtime", String(mtime)), (p + "ctime", String(ctime)),
         (p + "nlink", String(nlink)), (p + "class", String(classID))]
    }

    public init?(_ a: Args, prefix p: String = "") {
        guard let ino = a.int(p + "ino"), let kind = a[p + "kind"] else { return nil }
        self.ino = ino
        self.kind = kind
        mode = UInt32(truncatingIfNeeded: a.int(p + "mode") ?? 0)
        uid = UInt32(truncatingIfNeeded: a.int(p + "uid") ?? 0)
        gid = UInt32(truncatingIfNeeded: a.int(p + "gid") ?? 0)
        size = a.int(p + "size") ?? 0
        atime = a.int(p + "atime") ?? 0
        mtime = a.int(p + "mtime") ?? 0
        ctime = a.int(p + "ctime") ?? 0
        nlink = Int(a.int(p + "nlink") ?? 1)
        classID = Int(a.int(p + "class") ?? 0)
    }
}

/// Storage-node URLs that concatenate a multi-chunk file, so a single URL returns the whole
/// file to MogileFS clients: `/_cat/<size>/<chunk size>/<index>:<ip>:<port>:<devid>:<fid>:<length>,...`
/// (`-` for no chunks). Every character is one MogileFS's reply encoding leaves as it is.
public struct ConcatenatedPath: Sendable, Equatable {
    public struct Piece: Sendable, Equatable {
        public var index: Int
        public var host: String
        public var port: Int
        public var device: DeviceID
        public var fid: Fid
        public var length: Int64
        public init(index: Int, host: String, port: Int, device: DeviceID, fid: Fid, length: Int64) {
            self.index = index; self.host = host; self.port = port; self.device = device; self.fid = fid; self.length = length
        }
        public var url: String { "http://\(host):\(port)" + FidLayout.devicePath(device: device, fid: fid) }
    }

    public static let prefix = "/_cat/"
    public var size: Int64
    public var chunkSize: Int64
    public var pieces: [Piece]

    public init(size: Int64, chunkSize: Int64, pieces: [Piece]) { self.size = size; self.chunkSize = chunkSize; self.pieces = pieces }

    public var path: String {
        let spec = pieces.isEmpty ? "-" : pieces.map { "\($0.index):\($0.host):\($0.port):\($0.device):\($0.fid):\($0.length)" }.joined(separator: ",")
        return "\(Self.prefix)\(size)/\(chunkSize)/\(spec)"
    }

    public init?(path: String) {
        guard path.hasPrefix(Self.prefix) else { return nil }
        let parts = path.dropFirst(Self.prefix.count).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, let size = Int64(parts[0]), size >= 0, let cs = Int64(parts[1]), cs > 0 else { return nil }
        var pieces: [Piece] = []
        if parts[2] != "-" {
            for spec in parts[2].split(separator: ",") {
                let f = spec.split(separator: ":")
                guard f.count == 6, let idx = Int(f[0]), idx >= 0, let port = Int(f[2]), let dev = DeviceID(f[3]), let fid = Fid(f[4]),
                      let len = Int64(f[5]), len >= 0, len <= cs else { return nil }
                pieces.append(Piece(index: idx, host: String(f[1]), port: port, device: dev, fid: fid, length: len))
            }
        }
        self.size = size; self.chunkSize = cs; self.pieces = pieces.sorted { $0.index < $1.index }
    }
}
