import CairnCore
import Foundation
import GRDB

/// The namespace: inodes, directory entries (with their full key), hard links, symlinks,
/// custom metadata. Both the key-based MogileFS commands and the inode-based mount use it.
extension MetadataStore {
    static let inodeColumns = "ino, dmid, kind, mode, uid, gid, size, atime, mtime, ctime, nlink, classid, checksum"
    static let inodeColumnCount = inodeColumns.split(separator: ",").count
    /// The same columns of an inode table aliased `i`, for joins.
    static let inodeColumnsOfI = inodeColumns.split(separator: ",").map { "i." + $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ", ")

    /// Decodes `inodeColumns` starting at column `at`, by position: the hottest decoder (every
    /// lookup, getattr and listing entry), and GRDB's by-name lookup costs a string fold per column.
    static func attributes(_ row: Row, at i: Int = 0) -> InodeAttributes {
        InodeAttributes(ino: row[i], domain: row[i + 1], kind: InodeKind(rawValue: row[i + 2]) ?? .file,
                        mode: UInt32(truncatingIfNeeded: row[i + 3] as Int64), uid: UInt32(truncatingIfNeeded: row[i + 4] as Int64),
                        gid: UInt32(truncatingIfNeeded: row[i + 5] as Int64), size: row[i + 6], atime: row[i + 7],
                        mtime: row[i + 8], ctime: row[i + 9], nlink: row[i + 10], classID: row[i + 11], checksum: row[i + 12])
    }

    static func attributes(_ db: Database, ino: Ino) throws -> InodeAttributes? {
        try InodeRows.first(db.cachedStatement(sql: "SELECT \(inodeColumns) FROM inode WHERE ino = ?"), arguments: [ino])
    }

    static func unknownInode(_ ino: Ino) -> StoreError { StoreError("unknown_inode", "inode \(ino) does not exist", errno: ENOENT) }

    static func requireAttributes(_ db: Database, ino: Ino) throws -> InodeAttributes {
        guard let a = try attributes(db, ino: ino) else { throw Self.unknownInode(ino) }
        return a
    }

    /// The full key of a directory (`""` for a domain root).
    static func directoryPath(_ db: Database, ino: Ino) throws -> String {
        try String.fetchOne(db.cachedStatement(sql: "SELECT path FROM dirent WHERE ino = ? LIMIT 1"), arguments: [ino]) ?? ""
    }

    static func childPath(parentPath: String, name: String) -> String { parentPath.isEmpty ? name : parentPath + "/" + name }

    /// The inode at `key` in a domain, if any.
    static func resolve(_ db: Database, domain: DomainRecord, key: KeyPath) throws -> Ino? {
        if key.isRoot { return domain.root }
        return try Ino.fetchOne(db.cachedStatement(sql: "SELECT ino FROM dirent WHERE dmid = ? AND path = ?"), arguments: [domain.id, key.description])
    }

    static func entryIno(_ db: Database, parent: Ino, name: String) throws -> Ino? {
        try Ino.fetchOne(db.cachedStatement(sql: "SELECT ino FROM dirent WHERE parent = ? AND name = ?"), arguments: [parent, name])
    }

    /// Inserts an inode; returns it as stored (RETURNING: no read after the write).
    /// `ino`: a number reserved for the caller (`reserveCreates`), else the next one.
    static func newInode(_ db: Database, domain: DomainID, kind: InodeKind, mode: UInt32, uid: UInt32, gid: UInt32,
                         classID: ClassID = 0, target: [UInt8]? = nil, size: Int64 = 0, ino: Ino? = nil) throws -> InodeAttributes {
        let now = Clock.nowNanos()
        let typeBits: UInt32 = switch kind { case .file: 0o100000; case .directory: 0o040000; case .symlink: 0o120000 }
        return try returnedAttributes(db.cachedStatement(sql: """
            INSERT INTO inode(ino, dmid, kind, mode, uid, gid, size, atime, mtime, ctime, nlink, classid, target)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING \(inodeColumns)
            """), arguments: [ino, domain, kind.rawValue, Int64(typeBits | (mode & 0o7777)), Int64(uid), Int64(gid), size,
                              now, now, now, kind == .directory ? 2 : 1, classID, target.map { Data($0) }])
    }

    /// Adds a name; returns its directory's new attributes. `parentPath`: the directory's key,
    /// when the caller has read it.
    @discardableResult
    static func insertEntry(_ db: Database, domain: DomainID, parent: Ino, name: String, ino: Ino, parentPath: String? = nil) throws -> InodeAttributes {
        let path = childPath(parentPath: try parentPath ?? directoryPath(db, ino: parent), name: name)
        try db.cachedStatement(sql: "INSERT INTO dirent(parent, name, ino, dmid, path) VALUES (?, ?, ?, ?, ?)").execute(
                       arguments: [parent, name, ino, domain, path])
        return try touchDirectory(db, ino: parent)
    }

    /// A directory's entries changed: new mtime and ctime; returns its attributes.
    @discardableResult
    static func touchDirectory(_ db: Database, ino: Ino) throws -> InodeAttributes {
        let now = Clock.nowNanos()
        return try returnedAttributes(db.cachedStatement(sql: "UPDATE inode SET mtime = ?, ctime = ? WHERE ino = ? RETURNING \(inodeColumns)"),
                                      arguments: [now, now, ino], ino: ino)
    }

    /// The inode row a write's `RETURNING <inodeColumns>` gives back.
    static func returnedAttributes(_ statement: Statement, arguments: StatementArguments, ino: Ino? = nil) throws -> InodeAttributes {
        guard let a = try InodeRows.first(statement, arguments: arguments) else { throw unknownInode(ino ?? 0) }
        return a
    }

    /// Creates the directories of `path` that do not exist yet; returns the innermost one.
    static func ensureDirectories(_ db: Database, domain: DomainRecord, path: KeyPath, uid: UInt32 = 0, gid: UInt32 = 0) throws -> Ino {
        var current = domain.root
        var prefix = KeyPath.root
        for name in path.components {
            prefix = prefix.appending(name)
            if let existing = try entryIno(db, parent: current, name: name) {
                let a = try requireAttributes(db, ino: existing)
                guard a.kind == .directory else {
                    throw StoreError("not_a_directory", "\"\(prefix)\" exists and is not a directory", errno: ENOTDIR)
                }
                current = existing
            } else {
                let ino = try newInode(db, domain: domain.id, kind: .directory, mode: 0o755, uid: uid, gid: gid).ino
                try insertEntry(db, domain: domain.id, parent: current, name: name, ino: ino)
                try db.cachedStatement(sql: "UPDATE inode SET nlink = nlink + 1 WHERE ino = ?").execute(arguments: [current])
                current = ino
            }
        }
        return current
    }

    /// Removes one name. A file whose last name goes is freed: its blobs are queued for deletion.
    static func removeEntry(_ db: Database, parent: Ino, name: String, expectDirectory: Bool?, expectedIno: Ino? = nil) throws {
        guard let ino = try entryIno(db, parent: parent, name: name) else {
            throw StoreError("unknown_key", "\"\(name)\" does not exist", errno: ENOENT)
        }
        if let expectedIno, ino != expectedIno {
            throw StoreError("unknown_key", "\"\(name)\" names inode \(ino) now, not \(expectedIno)", errno: ENOENT)
        }
        let a = try requireAttributes(db, ino: ino)
        if expectDirectory == true, a.kind != .directory { throw StoreError("not_a_directory", "\"\(name)\" is not a directory", errno: ENOTDIR) }
        if expectDirectory == false, a.kind == .directory { throw StoreError("is_a_directory", "\"\(name)\" is a directory", errno: EISDIR) }
        if a.kind == .directory {
            if try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM dirent WHERE parent = ?)"), arguments: [ino]) == true {
                throw StoreError("not_empty", "directory \"\(name)\" is not empty", errno: ENOTEMPTY)
            }
            try db.cachedStatement(sql: "UPDATE inode SET nlink = nlink - 1 WHERE ino = ?").execute(arguments: [parent])
        }
        try db.cachedStatement(sql: "DELETE FROM dirent WHERE parent = ? AND name = ?").execute(arguments: [parent, name])
        try touchDirectory(db, ino: parent)
        let remaining = a.kind == .directory ? 0 : a.nlink - 1
        if remaining > 0 {
            try db.cachedStatement(sql: "UPDATE inode SET nlink = ?, ctime = ? WHERE ino = ?").execute(arguments: [remaining, Clock.nowNanos(), ino])
        } else {
            try freeInode(db, ino: ino)
        }
    }

    static func freeInode(_ db: Database, ino: Ino) throws {
        try removeChunks(db, ino: ino, keeping: [])
        try db.cachedStatement(sql: "DELETE FROM xattr WHERE ino = ?").execute(arguments: [ino])
        try db.cachedStatement(sql: "DELETE FROM inode WHERE ino = ?").execute(arguments: [ino])
    }

    /// A name's inode and full key.
    static func entry(_ db: Database, parent: Ino, name: String) throws -> (ino: Ino, path: String)? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT ino, path FROM dirent WHERE parent = ? AND name = ?"), arguments: [parent, name])
            .map { ($0[0], $0[1]) }
    }

    /// What a move changed: the moved inode (its ctime) and its directories (mtime, ctime,
    /// nlink), as the writes returned them — no reads after.
    struct Moved {
        var inode: InodeAttributes
        var parent: InodeAttributes
        /// Nil when the move stayed in one directory.
        var newParent: InodeAttributes?
    }

    /// Moves an entry (and, for a directory, rewrites its subtree's keys). `source`: the entry
    /// at `parent`/`name` when the caller has already read it. `attributes`: a change of the
    /// moved inode's own written with its new ctime, in the same statement.
    @discardableResult
    static func moveEntry(_ db: Database, domain: DomainID, from parent: Ino, name: String, to newParent: Ino, newName: String,
                          source: (ino: Ino, path: String, kind: InodeKind)? = nil, ctime: UnixNanos? = nil,
                          attributes c: AttributeChange? = nil) throws -> Moved {
        let src: (ino: Ino, path: String, kind: InodeKind)
        if let source {
            src = source
        } else {
            guard let e = try entry(db, parent: parent, name: name) else {
                throw StoreError("unknown_key", "\"\(name)\" does not exist", errno: ENOENT)
            }
            src = (e.ino, e.path, try requireAttributes(db, ino: e.ino).kind)
        }
        let oldPath = src.path
        let newPath = childPath(parentPath: try newParent == parent ? folderPath(of: oldPath, name: name, db: db, parent: parent)
                                                                     : directoryPath(db, ino: newParent), name: newName)
        if src.kind == .directory, newPath.hasPrefix(oldPath + "/") {
            throw StoreError("invalid_rename", "cannot move directory \"\(oldPath)\" inside itself", errno: EINVAL)
        }
        try db.cachedStatement(sql: "UPDATE dirent SET parent = ?, name = ?, path = ? WHERE parent = ? AND name = ?").execute(
                       arguments: [newParent, newName, newPath, parent, name])
        if src.kind == .directory {
            // '0' is the byte after '/': the range holds exactly the keys under oldPath/.
            try db.cachedStatement(sql: """
                UPDATE dirent SET path = ? || substr(path, ?) WHERE dmid = ? AND path > ? AND path < ?
                """).execute(arguments: [newPath, oldPath.utf8.count + 1, domain, oldPath + "/", oldPath + "0"])
            if parent != newParent {
                try db.cachedStatement(sql: "UPDATE inode SET nlink = nlink - 1 WHERE ino = ?").execute(arguments: [parent])
                try db.cachedStatement(sql: "UPDATE inode SET nlink = nlink + 1 WHERE ino = ?").execute(arguments: [newParent])
            }
        }
        let stamp = ctime ?? Clock.nowNanos()
        let moved: InodeAttributes
        if let c, c.size == nil {
            // (mode & 0o170000) keeps the kind; a NULL permission leaves the mode as it is.
            moved = try returnedAttributes(db.cachedStatement(sql: """
                UPDATE inode SET mode = COALESCE((mode & 61440) | ?, mode), uid = COALESCE(?, uid), gid = COALESCE(?, gid),
                                 atime = COALESCE(?, atime), mtime = COALESCE(?, mtime), ctime = ? WHERE ino = ? RETURNING \(inodeColumns)
                """), arguments: [c.mode.map { Int64($0 & 0o7777) }, c.uid.map { Int64($0) }, c.gid.map { Int64($0) }, c.atime, c.mtime,
                                  stamp, src.ino], ino: src.ino)
        } else {
            if let c { _ = try applyAttributes(db, ino: src.ino, c) }  // a truncation has chunks to cut
            moved = try returnedAttributes(db.cachedStatement(sql: "UPDATE inode SET ctime = ? WHERE ino = ? RETURNING \(inodeColumns)"),
                                           arguments: [stamp, src.ino], ino: src.ino)
        }
        return Moved(inode: moved, parent: try touchDirectory(db, ino: parent),
                     newParent: newParent != parent ? try touchDirectory(db, ino: newParent) : nil)
    }

    /// The key of the directory holding `path`, a key that ends in `name` (a rename within one
    /// directory keeps it, so it needs no read); read from the directory if it does not fit.
    private static func folderPath(of path: String, name: String, db: Database, parent: Ino) throws -> String {
        let bytes = path.utf8, cut = bytes.count - name.utf8.count
        guard cut >= 0, bytes.suffix(name.utf8.count).elementsEqual(name.utf8) else { return try directoryPath(db, ino: parent) }
        if cut == 0 { return "" }
        let slash = bytes.index(bytes.startIndex, offsetBy: cut - 1)
        guard bytes[slash] == UInt8(ascii: "/") else { return try directoryPath(db, ino: parent) }
        return String(Substring(bytes[..<slash]))
    }

    // MARK: inode operations (the mount's and the CLI's)

    /// One statement (name and attributes joined), read outside a transaction.
    public func lookup(parent: Ino, name: String) async throws -> InodeAttributes {
        try await readOneStatement { db in
            let sql = "SELECT \(Self.inodeColumnsOfI) "
                + "FROM dirent d JOIN inode i ON i.ino = d.ino WHERE d.parent = ? AND d.name = ?"
            guard let a = try InodeRows.first(db.cachedStatement(sql: sql), arguments: [parent, name]) else {
                throw StoreError("unknown_key", "no entry \"\(name)\" in directory \(parent)", errno: ENOENT)
            }
            return a
        }
    }

    public func getattr(ino: Ino) async throws -> InodeAttributes {
        try await readOneStatement { db in try Self.requireAttributes(db, ino: ino) }
    }

    public struct AttributeChange: Sendable {
        public var mode: UInt32?
        public var uid: UInt32?
        public var gid: UInt32?
        public var size: Int64?
        public var atime: UnixNanos?
        public var mtime: UnixNanos?
        /// The writer's clock for the change (a mount that showed it before sending it), else now.
        public var ctime: UnixNanos?
        /// Names no attribute (a ctime alone is not a change).
        public var isEmpty: Bool { mode == nil && uid == nil && gid == nil && size == nil && atime == nil && mtime == nil }
        public init(mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil, size: Int64? = nil, atime: UnixNanos? = nil, mtime: UnixNanos? = nil,
                    ctime: UnixNanos? = nil) {
            self.mode = mode; self.uid = uid; self.gid = gid; self.size = size; self.atime = atime; self.mtime = mtime; self.ctime = ctime
        }
    }

    /// chmod/chown/utimens, and truncate: shrinking keeps the chunks below the new size (the last
    /// one's recorded length is cut; chunks are immutable, so its blob is shared as it is).
    public func setattr(ino: Ino, _ c: AttributeChange) async throws -> InodeAttributes {
        try await write { db in try Self.applyAttributes(db, ino: ino, c) }
    }

    static func applyAttributes(_ db: Database, ino: Ino, _ c: AttributeChange) throws -> InodeAttributes {
        var a = try requireAttributes(db, ino: ino)
        let now = Clock.nowNanos()
        if let m = c.mode { a.mode = (a.mode & 0o170000) | (m & 0o7777) }
        if let u = c.uid { a.uid = u }
        if let g = c.gid { a.gid = g }
        if let t = c.atime { a.atime = t }
        if let t = c.mtime { a.mtime = t }
        if let size = c.size, size != a.size {
            guard a.kind == .file else { throw StoreError("is_a_directory", "only files can be truncated", errno: EISDIR) }
            try truncateChunks(db, ino: ino, size: size)
            a.size = size
            if c.mtime == nil { a.mtime = now }
        }
        a.ctime = c.ctime ?? now
        try db.cachedStatement(sql: "UPDATE inode SET mode = ?, uid = ?, gid = ?, size = ?, atime = ?, mtime = ?, ctime = ? WHERE ino = ?").execute(
                       arguments: [Int64(a.mode), Int64(a.uid), Int64(a.gid), a.size, a.atime, a.mtime, a.ctime, ino])
        return a
    }

    static func truncateChunks(_ db: Database, ino: Ino, size: Int64) throws {
        let chunks = try chunks(db, ino: ino)
        var keep: [ChunkRef] = []
        for var c in chunks {
            let start = try chunkStart(db, ino: ino, index: c.index)
            if start >= size { continue }
            c.length = min(c.length, size - start)
            keep.append(c)
        }
        try removeChunks(db, ino: ino, keeping: Set(keep.map(\.fid)))
        for c in keep {
            try db.cachedStatement(sql: "INSERT INTO chunk(ino, idx, fid, length) VALUES (?, ?, ?, ?)").execute(arguments: [ino, c.index, c.fid, c.length])
        }
    }

    /// Chunk i starts at i × the class's chunk size.
    static func chunkStart(_ db: Database, ino: Ino, index: Int) throws -> Int64 {
        let size = try Int64.fetchOne(db.cachedStatement(sql: """
            SELECT c.chunk_size FROM inode i JOIN class c ON c.dmid = i.dmid AND c.classid = i.classid WHERE i.ino = ?
            """), arguments: [ino]) ?? ChunkLayout.defaultChunkSize
        return Int64(index) * size
    }

    public struct NewInode: Sendable {
        public var kind: InodeKind
        public var mode: UInt32
        public var uid: UInt32
        public var gid: UInt32
        public var target: String?
        /// A class name chosen by the caller (the mount's `-o class=`), else inherited.
        public var className: String?
        public init(kind: InodeKind, mode: UInt32, uid: UInt32, gid: UInt32, target: String? = nil, className: String? = nil) {
            self.kind = kind; self.mode = mode; self.uid = uid; self.gid = gid; self.target = target; self.className = className
        }
    }

    /// mkdir, create (an empty file), symlink. New files and directories take the class of the
    /// nearest directory above that names one (`cairn.class`), else `default`.
    public func create(parent: Ino, name: String, _ n: NewInode, exclusive: Bool = true) async throws -> InodeAttributes {
        try await createEntry(parent: parent, name: name, n, exclusive: exclusive).inode
    }

    /// Where a new file's first chunk goes, chosen inside the create's transaction once the
    /// file's class is known (domain, class → devices; none: no upload opened).
    public typealias FirstChunkPlacement = @Sendable (DomainID, ClassID) -> [DeviceID]

    /// Creates a name (see `create`); returns the inode's and its directory's new attributes,
    /// and, for a new file with `placeFirstChunk`, an upload opened for its first chunk in the
    /// same transaction (the mount's create then needs no second call to store a small file).
    /// `reservedIno`: a number `reserveCreates` gave the caller, for a create it made on its own
    /// (a mount's delegated create). Sent again after a lost answer, it finds its name naming
    /// that inode already, and succeeds.
    public func createEntry(parent: Ino, name: String, _ n: NewInode, exclusive: Bool = true,
                            placeFirstChunk: FirstChunkPlacement? = nil, reservedIno: Ino? = nil) async throws
        -> (inode: InodeAttributes, parent: InodeAttributes, upload: (fid: Fid, devices: [DeviceID])?) {
        try KeyPath.validate(name: name)
        return try await write { db in
            let (p, parentPath, existing) = try Self.createTarget(db, parent: parent, name: name)
            guard p.kind == .directory else { throw StoreError("not_a_directory", "inode \(parent) is not a directory", errno: ENOTDIR) }
            if let existing {
                if let reservedIno, existing == reservedIno { return (try Self.requireAttributes(db, ino: existing), p, nil) }
                if exclusive || n.kind != .file { throw StoreError("key_exists", "\"\(name)\" already exists", errno: EEXIST) }
                return (try Self.requireAttributes(db, ino: existing), p, nil)
            }
            let classID = try Self.newFileClass(db, in: p, kind: n.kind, named: n.className)
            let created = try Self.newInode(db, domain: p.domain, kind: n.kind, mode: n.mode, uid: n.uid, gid: n.gid, classID: classID,
                                            target: n.target.map { Array($0.utf8) }, size: Int64(n.target?.utf8.count ?? 0), ino: reservedIno)
            var parentNow = try Self.insertEntry(db, domain: p.domain, parent: parent, name: name, ino: created.ino, parentPath: parentPath)
            if n.kind == .directory {
                parentNow = try Self.returnedAttributes(db.cachedStatement(sql: "UPDATE inode SET nlink = nlink + 1 WHERE ino = ? RETURNING \(Self.inodeColumns)"),
                                                        arguments: [parent], ino: parent)
            }
            var upload: (fid: Fid, devices: [DeviceID])?
            if n.kind == .file, let place = placeFirstChunk {
                let devices = place(p.domain, classID)
                if !devices.isEmpty { upload = (try Self.insertUpload(db, domain: p.domain, classID: classID, key: "", devices: devices), devices) }
            }
            return (created, parentNow, upload)
        }
    }

    /// What a create reads, in one statement: the directory, its key, and the inode `name`
    /// names in it now, if any.
    static func createTarget(_ db: Database, parent: Ino, name: String) throws -> (InodeAttributes, String, Ino?) {
        guard let row = try Row.fetchOne(db.cachedStatement(sql: """
            SELECT \(inodeColumns), (SELECT path FROM dirent WHERE ino = inode.ino LIMIT 1),
                   (SELECT ino FROM dirent WHERE parent = inode.ino AND name = ?)
            FROM inode WHERE ino = ?
            """), arguments: [name, parent]) else { throw unknownInode(parent) }
        return (attributes(row), row[13] ?? "", row[14])
    }

    /// The class a new inode of `kind` in directory `p` gets: the one named (files only), else
    /// the directory's, inherited from above.
    static func newFileClass(_ db: Database, in p: InodeAttributes, kind: InodeKind, named: String?) throws -> ClassID {
        if kind == .symlink { return 0 }
        if let named, kind == .file {
            guard let c = try classRecord(db, domain: p.domain, name: named) else {
                throw StoreError("class_not_found", "class \"\(named)\" does not exist in this domain", errno: EINVAL)
            }
            return c.id
        }
        return p.classID != 0 ? p.classID : try inheritedClass(db, directory: p.ino, domain: p.domain)
    }

    /// Inode numbers and first-chunk uploads set aside for files a mount creates in `parent` on
    /// its own (`fs_delegate`, see the tracker's `CreateDelegations`).
    public struct CreateReservation: Sendable {
        public var firstIno: Ino
        public var count: Int
        public var domain: DomainID
        public var classID: ClassID
        /// The class a directory made in `parent` gets (a file's may be named instead).
        public var directoryClassID: ClassID
        public var uploads: [(fid: Fid, devices: [DeviceID])]
    }

    /// Takes `count` numbers off the inode sequence (nothing else gets them) and opens an upload
    /// for each file's first chunk, of the class new files in `parent` get.
    public func reserveCreates(parent: Ino, count: Int, className: String?, place: @escaping FirstChunkPlacement) async throws -> CreateReservation {
        try await write { db in
            let p = try Self.requireAttributes(db, ino: parent)
            guard p.kind == .directory else { throw StoreError("not_a_directory", "inode \(parent) is not a directory", errno: ENOTDIR) }
            let classID = try Self.newFileClass(db, in: p, kind: .file, named: className)
            guard let last = try Int64.fetchOne(db.cachedStatement(sql: "UPDATE sqlite_sequence SET seq = seq + ? WHERE name = 'inode' RETURNING seq"),
                                                arguments: [count]) else {
                throw StoreError("failure", "the inode sequence is missing from the database")
            }
            var uploads: [(fid: Fid, devices: [DeviceID])] = []
            for _ in 0..<count {
                let devices = place(p.domain, classID)
                guard !devices.isEmpty else { break }
                uploads.append((try Self.insertUpload(db, domain: p.domain, classID: classID, key: "", devices: devices), devices))
            }
            return CreateReservation(firstIno: last - Int64(count) + 1, count: count, domain: p.domain, classID: classID,
                                     directoryClassID: try Self.newFileClass(db, in: p, kind: .directory, named: nil), uploads: uploads)
        }
    }

    /// The class of the nearest directory above that names one (its inode's class), else default.
    /// One statement, however deep the directory: the walk up runs inside SQLite, where two
    /// statements per level through GRDB made it the largest part of a create in a deep tree.
    /// In a domain where no directory names a class (one probe of a partial index), no walk.
    static func inheritedClass(_ db: Database, directory: Ino, domain: DomainID) throws -> ClassID {
        guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM inode WHERE dmid = ? AND kind = 'd' AND classid != 0)"),
                                arguments: [domain]) == true else { return 0 }
        return try ClassID.fetchOne(db.cachedStatement(sql: """
            WITH RECURSIVE up(ino, classid, depth) AS (
                SELECT ino, classid, 0 FROM inode WHERE ino = ?
                UNION ALL
                SELECT i.ino, i.classid, up.depth + 1 FROM up
                JOIN dirent d ON d.ino = up.ino JOIN inode i ON i.ino = d.parent
                WHERE up.classid = 0 AND up.depth < 4096)
            SELECT classid FROM up WHERE classid != 0 ORDER BY depth LIMIT 1
            """), arguments: [directory]) ?? 0
    }

    /// Removes a name; returns its directory's new attributes. `expectedIno`: remove it only
    /// while it names that inode (a request sent again after a lost answer must not remove a
    /// file created under the same name since).
    @discardableResult
    public func unlink(parent: Ino, name: String, directory: Bool, expectedIno: Ino? = nil) async throws -> InodeAttributes {
        try await write { db in
            try Self.removeEntry(db, parent: parent, name: name, expectDirectory: directory, expectedIno: expectedIno)
            return try Self.requireAttributes(db, ino: parent)
        }
    }

    public func link(ino: Ino, newParent: Ino, newName: String) async throws -> InodeAttributes {
        try KeyPath.validate(name: newName)
        return try await write { db in
            let a = try Self.requireAttributes(db, ino: ino)
            guard a.kind != .directory else { throw StoreError("is_a_directory", "directories cannot be hard-linked", errno: EPERM) }
            let p = try Self.requireAttributes(db, ino: newParent)
            guard p.domain == a.domain else { throw StoreError("cross_domain", "hard links cannot cross domains", errno: EXDEV) }
            if try Self.entryIno(db, parent: newParent, name: newName) != nil {
                throw StoreError("key_exists", "\"\(newName)\" already exists", errno: EEXIST)
            }
            try Self.insertEntry(db, domain: a.domain, parent: newParent, name: newName, ino: ino)
            try db.cachedStatement(sql: "UPDATE inode SET nlink = nlink + 1, ctime = ? WHERE ino = ?").execute(arguments: [Clock.nowNanos(), ino])
            return try Self.requireAttributes(db, ino: ino)
        }
    }

    public func readlink(ino: Ino) async throws -> String {
        try await read { db in
            guard let t = try Data.fetchOne(db.cachedStatement(sql: "SELECT target FROM inode WHERE ino = ? AND kind = 'l'"), arguments: [ino]) else {
                throw StoreError("not_a_symlink", "inode \(ino) is not a symlink", errno: EINVAL)
            }
            return String(decoding: t, as: UTF8.self)
        }
    }

    public enum RenameMode: Sendable { case replace, noReplace, exchange }

    /// A rename's directories after it (one when they are the same) and the moved inode (none
    /// for an exchange or a rename onto itself).
    public typealias Renamed = (parent: InodeAttributes, newParent: InodeAttributes?, moved: InodeAttributes?)

    /// Atomic rename: replaces a target file or empty directory, or fails (noReplace), or swaps
    /// (exchange). Returns both directories' new attributes (one when they are the same).
    /// `expectedIno`: move the name only while it names that inode; sent again after a lost
    /// answer (the name gone, the new name naming that inode), it succeeds without a change.
    /// `attributes` (with `expectedIno`): a change of that inode's attributes made just before
    /// the rename (the tracker folds a mount's chmod and utimes into the rename after them). It
    /// is made even when the move fails, as it would have been on its own; the move's error is
    /// then thrown after the transaction, as `MoveFailedChangeKept`.
    @discardableResult
    public func rename(parent: Ino, name: String, newParent: Ino, newName: String,
                       mode: RenameMode = .replace, expectedIno: Ino? = nil, ctime: UnixNanos? = nil,
                       attributes: AttributeChange? = nil) async throws -> Renamed {
        try KeyPath.validate(name: newName)
        guard let attributes, let expectedIno else {
            return try await write { db in try Self.rename(db, parent: parent, name: name, newParent: newParent, newName: newName, mode: mode,
                                                           expectedIno: expectedIno, ctime: ctime) }
        }
        let outcome = try await write { db -> Result<Renamed, any Error> in
            do {
                return .success(try Self.undoneAloneOnFailure(db) {
                    try Self.rename(db, parent: parent, name: name, newParent: newParent, newName: newName, mode: mode,
                                    expectedIno: expectedIno, ctime: ctime, attributes: attributes)
                })
            } catch {
                // The move and the change with it were undone; the change stands alone.
                _ = try Self.applyAttributes(db, ino: expectedIno, attributes)
                return .failure(MoveFailedChangeKept(moveError: error))
            }
        }
        return try outcome.get()
    }

    /// A rename with an attribute change (`rename(attributes:)`) whose move failed while the
    /// change was made: whoever sent the change is told it was made, the mover why the move was not.
    public struct MoveFailedChangeKept: Error {
        public let moveError: any Error
    }

    /// Runs `body` in a savepoint of its own inside a write, so that its failure undoes only
    /// its own changes. (GRDB's `inSavepoint` prepares its statements anew each time.)
    static func undoneAloneOnFailure<T>(_ db: Database, _ body: () throws -> T) throws -> T {
        try db.cachedStatement(sql: "SAVEPOINT part").execute()
        do {
            let result = try body()
            try db.cachedStatement(sql: "RELEASE SAVEPOINT part").execute()
            return result
        } catch {
            if db.isInsideTransaction {
                try db.cachedStatement(sql: "ROLLBACK TO SAVEPOINT part").execute()
                try db.cachedStatement(sql: "RELEASE SAVEPOINT part").execute()
            }
            throw error
        }
    }

    /// `attributes`: a change of the moved inode (`expectedIno`) made with the move.
    private static func rename(_ db: Database, parent: Ino, name: String, newParent: Ino, newName: String, mode: RenameMode,
                               expectedIno: Ino?, ctime: UnixNanos?, attributes: AttributeChange? = nil) throws -> Renamed {
        let source = try movable(db, parent: parent, name: name)
        if let expectedIno, source?.ino != expectedIno {
            guard try Self.entryIno(db, parent: newParent, name: newName) == expectedIno else {
                throw StoreError("unknown_key", "\"\(name)\" no longer names inode \(expectedIno); nothing was moved", errno: ENOENT)
            }
            let moved = try attributes.map { try Self.applyAttributes(db, ino: expectedIno, $0) } ?? Self.requireAttributes(db, ino: expectedIno)
            return (try Self.requireAttributes(db, ino: parent), newParent == parent ? nil : try Self.requireAttributes(db, ino: newParent), moved)
        }
        guard let source else { throw StoreError("unknown_key", "\"\(name)\" does not exist", errno: ENOENT) }
        if let moved = try Self.renameEntry(db, source, parent: parent, name: name, newParent: newParent, newName: newName, mode: mode,
                                            ctime: ctime, attributes: attributes) {
            return (moved.parent, moved.newParent, moved.inode)
        }
        // An exchange or a rename onto itself: the change is written on its own.
        if let attributes { _ = try Self.applyAttributes(db, ino: source.ino, attributes) }
        return (try Self.requireAttributes(db, ino: parent), newParent == parent ? nil : try Self.requireAttributes(db, ino: newParent), nil)
    }

    /// An entry as a move needs it: its inode, full key, kind and domain (one read).
    struct Movable {
        var ino: Ino
        var path: String
        var kind: InodeKind
        var domain: DomainID
    }

    static func movable(_ db: Database, parent: Ino, name: String) throws -> Movable? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT d.ino, d.path, i.kind, i.dmid FROM dirent d JOIN inode i ON i.ino = d.ino WHERE d.parent = ? AND d.name = ?"),
                         arguments: [parent, name])
            .map { Movable(ino: $0[0], path: $0[1], kind: InodeKind(rawValue: $0[2]) ?? .file, domain: $0[3]) }
    }

    /// What the move of `src` (the entry `parent`/`name`) changed, or nil for an exchange or a
    /// rename onto itself.
    static func renameEntry(_ db: Database, _ src: Movable, parent: Ino, name: String, newParent: Ino, newName: String, mode: RenameMode,
                            ctime: UnixNanos? = nil, attributes: AttributeChange? = nil) throws -> Moved? {
        // A move within its directory needs no check of it: it holds the entry.
        if newParent != parent {
            let np = try Self.requireAttributes(db, ino: newParent)
            guard np.kind == .directory else { throw StoreError("not_a_directory", "target parent is not a directory", errno: ENOTDIR) }
            guard np.domain == src.domain else { throw StoreError("cross_domain", "rename cannot cross domains", errno: EXDEV) }
        }
        let dst = try Self.entryIno(db, parent: newParent, name: newName)
        if dst == src.ino { return nil }
        switch mode {
        case .noReplace:
            if dst != nil { throw StoreError("key_exists", "\"\(newName)\" already exists", errno: EEXIST) }
        case .exchange:
            guard dst != nil else { throw StoreError("unknown_key", "\"\(newName)\" does not exist", errno: ENOENT) }
            let tmp = ".cairn-exchange-\(src.ino)"
            try Self.moveEntry(db, domain: src.domain, from: newParent, name: newName, to: parent, newName: tmp)
            try Self.moveEntry(db, domain: src.domain, from: parent, name: name, to: newParent, newName: newName)
            try Self.moveEntry(db, domain: src.domain, from: parent, name: tmp, to: parent, newName: name)
            return nil
        case .replace:
            if let dst {
                let dstAttrs = try Self.requireAttributes(db, ino: dst)
                if src.kind == .directory, dstAttrs.kind != .directory {
                    throw StoreError("not_a_directory", "cannot replace file \"\(newName)\" with a directory", errno: ENOTDIR)
                }
                if src.kind != .directory, dstAttrs.kind == .directory {
                    throw StoreError("is_a_directory", "cannot replace directory \"\(newName)\" with a file", errno: EISDIR)
                }
                try Self.removeEntry(db, parent: newParent, name: newName, expectDirectory: nil)
            }
        }
        return try Self.moveEntry(db, domain: src.domain, from: parent, name: name, to: newParent, newName: newName,
                                  source: (src.ino, src.path, src.kind), ctime: ctime, attributes: attributes)
    }

    /// One page of a directory, with attributes, in name order after `after`.
    public func readdir(ino: Ino, after: String?, limit: Int) async throws -> [DirectoryEntry] {
        try await readOneStatement { db in
            let rows = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT d.name, \(Self.inodeColumnsOfI)
                FROM dirent d JOIN inode i ON i.ino = d.ino
                WHERE d.parent = ? AND d.name > ? ORDER BY d.name LIMIT ?
                """), arguments: [ino, after ?? "", limit])
            return rows.map { DirectoryEntry(name: $0[0], attributes: Self.attributes($0, at: 1)) }
        }
    }

    // MARK: custom metadata (xattrs)

    public func xattrGet(ino: Ino, name: String) async throws -> [UInt8]? {
        try await readOneStatement { db in
            try Data.fetchOne(db.cachedStatement(sql: "SELECT value FROM xattr WHERE ino = ? AND name = ?"), arguments: [ino, name]).map { Array($0) }
        }
    }

    public func xattrList(ino: Ino) async throws -> [(String, [UInt8])] {
        try await readOneStatement { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT name, value FROM xattr WHERE ino = ? ORDER BY name"), arguments: [ino])
                .map { (String($0["name"] as String), Array($0["value"] as Data)) }
        }
    }

    public enum XattrMode: Sendable { case any, create, replace }

    /// Sets a custom attribute; returns the inode's attributes (its new ctime), which a mount
    /// keeps in its listing instead of asking again.
    @discardableResult
    public func xattrSet(ino: Ino, name: String, value: [UInt8], mode: XattrMode = .any) async throws -> InodeAttributes {
        try await write { db in
            // The ctime update doubles as the check that the inode exists (the transaction
            // rolls back if a later step throws).
            let attributes = try Self.touchInode(db, ino: ino)
            if mode != .any {
                let exists = try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM xattr WHERE ino = ? AND name = ?)"), arguments: [ino, name]) ?? false
                if mode == .create, exists { throw StoreError("xattr_exists", "attribute \(name) already exists", errno: EEXIST) }
                if mode == .replace, !exists { throw StoreError("no_xattr", "attribute \(name) does not exist", errno: ENODATA) }
            }
            try db.cachedStatement(sql: "INSERT INTO xattr(ino, name, value) VALUES (?, ?, ?) ON CONFLICT(ino, name) DO UPDATE SET value = excluded.value").execute(
                           arguments: [ino, name, Data(value)])
            return attributes
        }
    }

    /// Removes a custom attribute; returns the inode's attributes (a removal changes its ctime too).
    @discardableResult
    public func xattrRemove(ino: Ino, name: String) async throws -> InodeAttributes {
        try await write { db in
            try db.cachedStatement(sql: "DELETE FROM xattr WHERE ino = ? AND name = ?").execute(arguments: [ino, name])
            if db.changesCount == 0 { throw StoreError("no_xattr", "attribute \(name) does not exist", errno: ENODATA) }
            return try Self.touchInode(db, ino: ino)
        }
    }

    /// An inode's metadata changed (custom attributes): new ctime; returns its attributes.
    static func touchInode(_ db: Database, ino: Ino) throws -> InodeAttributes {
        try returnedAttributes(db.cachedStatement(sql: "UPDATE inode SET ctime = ? WHERE ino = ? RETURNING \(inodeColumns)"),
                               arguments: [Clock.nowNanos(), ino], ino: ino)
    }

    /// Resolves a key to its inode (for the CLI's key-based metadata commands).
    public func resolve(domain: DomainRecord, key: KeyPath) async throws -> Ino? {
        try await read { db in try Self.resolve(db, domain: domain, key: key) }
    }
}
