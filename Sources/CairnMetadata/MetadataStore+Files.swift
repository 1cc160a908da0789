import CairnCore
import Foundation
import GRDB

/// File content: open uploads (tempfiles, the fid generator), committed blobs and their
/// copies, chunk lists, and the key-based operations MogileFS's commands need.
extension MetadataStore {
    // MARK: uploads

    /// Allocates a fid for an upload (never reused: AUTOINCREMENT).
    /// `fid`: an explicit fid (MogileFS's create_open `fid=`), which must never have been used.
    public func openUpload(domain: DomainID, classID: ClassID, key: String, devices: [DeviceID], fid: Fid? = nil) async throws -> Fid {
        try await write { db in
            if let fid {
                let seq = try Int64.fetchOne(db.cachedStatement(sql: "SELECT seq FROM sqlite_sequence WHERE name = 'tempfile'")) ?? 0
                let used = try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM blob WHERE fid = ?) OR EXISTS(SELECT 1 FROM tempfile WHERE fid = ?)"),
                                             arguments: [fid, fid]) ?? true
                guard fid > seq, !used else { throw StoreError("fid_in_use", "fid \(fid) is or was in use; fids are never reused", errno: EEXIST) }
            }
            return try Self.insertUpload(db, domain: domain, classID: classID, key: key, devices: devices, fid: fid)
        }
    }

    /// Opens an upload: its fid (new unless given) and the devices offered for it.
    static func insertUpload(_ db: Database, domain: DomainID, classID: ClassID, key: String, devices: [DeviceID], fid: Fid? = nil) throws -> Fid {
        try db.cachedStatement(sql: "INSERT INTO tempfile(fid, created, dmid, classid, key, devids) VALUES (?, ?, ?, ?, ?, ?)").execute(
                       arguments: [fid, Clock.nowSeconds(), domain, classID, key, devices.map(String.init).joined(separator: ",")])
        return db.lastInsertedRowID
    }

    public func tempfile(fid: Fid) async throws -> TempfileRecord? {
        try await read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM tempfile WHERE fid = ?"), arguments: [fid]).map {
                TempfileRecord(fid: $0["fid"], created: $0["created"], domain: $0["dmid"], classID: $0["classid"], key: $0["key"],
                               devices: ($0["devids"] as String).split(separator: ",").compactMap { Int($0) })
            }
        }
    }

    /// Drops an upload that will not be committed; its copies (if any) are queued for deletion.
    public func abandonUpload(fid: Fid, devices: [DeviceID]) async throws {
        try await write { db in
            try db.cachedStatement(sql: "DELETE FROM tempfile WHERE fid = ?").execute(arguments: [fid])
            for d in devices { try db.cachedStatement(sql: "INSERT OR IGNORE INTO file_on(fid, devid) VALUES (?, ?)").execute(arguments: [fid, d]) }
            if !devices.isEmpty { try db.cachedStatement(sql: "INSERT OR IGNORE INTO delete_queue(fid, nexttry) VALUES (?, 0)").execute(arguments: [fid]) }
        }
    }

    // MARK: commits

    /// Commits a whole file at `key` (creating parent directories): the chunk list is swapped
    /// in this one transaction; an overwritten file's old blobs are queued for deletion.
    public func commitFile(domain: DomainRecord, key: KeyPath, classID: ClassID, size: Int64, chunks: [CommittedChunk],
                           replicas: Int, attributes: AttributeChange? = nil) async throws -> InodeAttributes {
        try await write { db in
            let parent = try Self.ensureDirectories(db, domain: domain, path: key.parent)
            var ino: Ino
            if let existing = try Self.entryIno(db, parent: parent, name: key.name) {
                let a = try Self.requireAttributes(db, ino: existing)
                switch a.kind {
                case .directory: throw StoreError("is_a_directory", "\"\(key)\" is a directory", errno: EISDIR)
                case .file: ino = existing
                case .symlink:
                    try Self.removeEntry(db, parent: parent, name: key.name, expectDirectory: false)
                    ino = try Self.newInode(db, domain: domain.id, kind: .file, mode: 0o644, uid: 0, gid: 0, classID: classID).ino
                    try Self.insertEntry(db, domain: domain.id, parent: parent, name: key.name, ino: ino)
                }
            } else {
                ino = try Self.newInode(db, domain: domain.id, kind: .file, mode: 0o644, uid: 0, gid: 0, classID: classID).ino
                try Self.insertEntry(db, domain: domain.id, parent: parent, name: key.name, ino: ino)
            }
            try Self.replaceContent(db, ino: ino, domain: domain.id, classID: classID, size: size, chunks: chunks, replicas: replicas)
            if let c = attributes {
                try db.cachedStatement(sql: """
                    UPDATE inode SET mode = COALESCE(?, mode), uid = COALESCE(?, uid), gid = COALESCE(?, gid), mtime = COALESCE(?, mtime)
                    WHERE ino = ?
                    """).execute(arguments: [c.mode.map { Int64(0o100000 | ($0 & 0o7777)) }, c.uid.map { Int64($0) }, c.gid.map { Int64($0) }, c.mtime, ino])
            }
            return try Self.requireAttributes(db, ino: ino)
        }
    }

    /// Commits new content for an existing inode (the mount's close/fsync). Chunks may reuse
    /// fids the inode already has (unchanged chunks); the rest must be fresh uploads.
    /// `catalog`: the file's domain name and class as the caller knows them (the tracker's
    /// cache). When they are the file's and every chunk is new (a file's first write, a whole
    /// rewrite), the answer is built from what the commit wrote; otherwise it is read back.
    /// `first`: a writer's first content for a file it created, which may be sent again after
    /// a lost connection: taken only while the file has no chunks, or exactly these (the same
    /// commit, done before); otherwise another writer's content came since and stays.
    public func commitInode(ino: Ino, size: Int64, chunks: [(index: Int, chunk: CommittedChunk)], replicas: Int, mtime: UnixNanos?,
                            first: Bool = false,
                            catalog: (domainName: String, classRecord: ClassRecord)? = nil) async throws -> StoredLayout {
        let indexed = chunks.map { ($0.index, $0.chunk) }
        return try await write { db in
            let a = try Self.requireAttributes(db, ino: ino)
            guard a.kind == .file else { throw StoreError("is_a_directory", "inode \(ino) is not a file", errno: EISDIR) }
            var hadNoChunks = false
            if first {
                if let catalog, catalog.classRecord.domain != a.domain || catalog.classRecord.id != a.classID {
                    throw StoreError("class_mismatch", "inode \(ino) is not of class \(catalog.classRecord.name) that its first commit names; nothing was changed")
                }
                let current = Set(try Fid.fetchAll(db.cachedStatement(sql: "SELECT fid FROM chunk WHERE ino = ?"), arguments: [ino]))
                guard current.isEmpty || current == Set(indexed.map(\.1.fid)) else {
                    throw StoreError("changed_since", "inode \(ino) has content another writer committed since its create; this first commit (sent again after a lost connection) was not applied")
                }
                hadNoChunks = current.isEmpty
            }
            let written = try Self.replaceContent(db, ino: ino, domain: a.domain, classID: a.classID, size: size, indexed: indexed,
                                                  replicas: replicas, mtime: mtime, hadNoChunks: hadNoChunks)
            guard written.allNew, let catalog, catalog.classRecord.domain == a.domain, catalog.classRecord.id == a.classID else {
                return try Self.layout(db, ino: ino)
            }
            var copies: [Fid: [DeviceID]] = [:], sums: [Fid: String] = [:]
            for (_, c) in indexed {
                copies[c.fid] = Set(c.devices).sorted()  // as file_on holds them: once each, by id
                if let sum = c.checksum { sums[c.fid] = sum }
            }
            return StoredLayout(attributes: written.attributes, domainName: catalog.domainName, classRecord: catalog.classRecord,
                                chunks: indexed.sorted { $0.0 < $1.0 }.map { ChunkRef(index: $0.0, fid: $0.1.fid, length: $0.1.length) },
                                copies: copies, checksums: sums)
        }
    }

    @discardableResult
    static func replaceContent(_ db: Database, ino: Ino, domain: DomainID, classID: ClassID, size: Int64,
                               chunks: [CommittedChunk], replicas: Int) throws -> ReplacedContent {
        try replaceContent(db, ino: ino, domain: domain, classID: classID, size: size,
                           indexed: chunks.enumerated().map { ($0.offset, $0.element) }, replicas: replicas)
    }

    /// What `replaceContent` left: the inode as stored, and whether every chunk was a new blob
    /// (none kept from before or shared), whose copies and checksum are then the ones given.
    struct ReplacedContent {
        var attributes: InodeAttributes
        var allNew: Bool
    }

    /// `mtime`: the writer's (the mount's close), else now. `hadNoChunks`: the caller has just
    /// read that the inode has none (a first commit), so there is nothing to remove.
    @discardableResult
    static func replaceContent(_ db: Database, ino: Ino, domain: DomainID, classID: ClassID, size: Int64,
                               indexed: [(Int, CommittedChunk)], replicas: Int, mtime: UnixNanos? = nil,
                               hadNoChunks: Bool = false) throws -> ReplacedContent {
        let previous = hadNoChunks ? [] : Set(try removeChunks(db, ino: ino, keeping: Set(indexed.map(\.1.fid))))
        var allNew = true
        for (index, c) in indexed {
            // A chunk the file had is a blob still.
            if !previous.contains(c.fid), try takeUpload(db, fid: c.fid) {
                try db.cachedStatement(sql: "INSERT INTO blob(fid, dmid, classid, length, checksum) VALUES (?, ?, ?, ?, ?)").execute(
                               arguments: [c.fid, domain, classID, c.length, c.checksum])
                for d in c.devices { try db.cachedStatement(sql: "INSERT OR IGNORE INTO file_on(fid, devid) VALUES (?, ?)").execute(arguments: [c.fid, d]) }
                if Set(c.devices).count < replicas {
                    try db.cachedStatement(sql: "INSERT OR IGNORE INTO replicate_queue(fid, nexttry) VALUES (?, 0)").execute(arguments: [c.fid])
                }
            } else {
                allNew = false
            }
            try db.cachedStatement(sql: "INSERT INTO chunk(ino, idx, fid, length) VALUES (?, ?, ?, ?)").execute(arguments: [ino, index, c.fid, c.length])
        }
        let now = Clock.nowNanos()
        let checksum = indexed.count == 1 ? indexed[0].1.checksum : nil
        let attributes = try returnedAttributes(db.cachedStatement(sql: """
            UPDATE inode SET size = ?, classid = ?, mtime = ?, ctime = ?, checksum = ? WHERE ino = ? RETURNING \(inodeColumns)
            """), arguments: [size, classID, mtime ?? now, now, checksum, ino], ino: ino)
        return ReplacedContent(attributes: attributes, allNew: allNew)
    }

    /// True when `fid` was an open upload, which this transaction now takes (its blob row is
    /// the caller's to insert); false when it is a blob already (a chunk shared with another
    /// file). Throws for a fid that is neither.
    private static func takeUpload(_ db: Database, fid: Fid) throws -> Bool {
        try db.cachedStatement(sql: "DELETE FROM tempfile WHERE fid = ?").execute(arguments: [fid])
        if db.changesCount > 0 { return true }
        guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM blob WHERE fid = ?)"), arguments: [fid]) == true else {
            throw StoreError("no_temp_file", "fid \(fid) is not an open upload (already committed, abandoned or never opened)", errno: EIO)
        }
        return false
    }

    /// Removes the chunk rows of `ino` and queues for deletion the blobs among them that are not
    /// in `keeping` and that no other inode uses; returns the blobs the rows named. One
    /// statement removes the rows and names their blobs.
    @discardableResult
    static func removeChunks(_ db: Database, ino: Ino, keeping: Set<Fid>) throws -> [Fid] {
        let fids = try Fid.fetchAll(db.cachedStatement(sql: "DELETE FROM chunk WHERE ino = ? RETURNING fid"), arguments: [ino])
        for fid in fids where !keeping.contains(fid) {
            // The file's own rows are gone: a row left is another inode's.
            let shared = try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM chunk WHERE fid = ?)"), arguments: [fid]) ?? false
            if shared { continue }
            try db.cachedStatement(sql: "DELETE FROM blob WHERE fid = ?").execute(arguments: [fid])
            try db.cachedStatement(sql: "DELETE FROM replicate_queue WHERE fid = ?").execute(arguments: [fid])
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO delete_queue(fid, nexttry) VALUES (?, 0)").execute(arguments: [fid])
        }
        return fids
    }

    // MARK: reading

    static func chunks(_ db: Database, ino: Ino) throws -> [ChunkRef] {
        try Row.fetchAll(db.cachedStatement(sql: "SELECT idx, fid, length FROM chunk WHERE ino = ? ORDER BY idx"), arguments: [ino])
            .map { ChunkRef(index: $0[0], fid: $0[1], length: $0[2]) }
    }

    public func chunks(ino: Ino) async throws -> [ChunkRef] {
        try await read { db in try Self.chunks(db, ino: ino) }
    }

    /// The file at `key`, with its chunks; nil if no such file.
    public func file(domain: DomainRecord, key: KeyPath) async throws -> FileRecord? {
        try await read { db in
            guard let ino = try Self.resolve(db, domain: domain, key: key) else { return nil }
            let a = try Self.requireAttributes(db, ino: ino)
            return FileRecord(key: key.description, attributes: a, chunks: try Self.chunks(db, ino: ino))
        }
    }

    /// Where each fid's copies are.
    public func copies(of fids: [Fid]) async throws -> [Fid: [DeviceID]] {
        try await read { db in
            var out: [Fid: [DeviceID]] = [:]
            for fid in fids {
                out[fid] = try DeviceID.fetchAll(db.cachedStatement(sql: "SELECT devid FROM file_on WHERE fid = ?"), arguments: [fid])
            }
            return out
        }
    }

    public func blob(fid: Fid) async throws -> BlobRecord? {
        try await read { db in try Self.blob(db, fid: fid) }
    }

    static func blob(_ db: Database, fid: Fid) throws -> BlobRecord? {
        guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM blob WHERE fid = ?"), arguments: [fid]) else { return nil }
        return BlobRecord(fid: fid, domain: row["dmid"], classID: row["classid"], length: row["length"], checksum: row["checksum"],
                          devices: try DeviceID.fetchAll(db.cachedStatement(sql: "SELECT devid FROM file_on WHERE fid = ?"), arguments: [fid]))
    }

    // MARK: key-based operations (MogileFS commands)

    public func deleteKey(domain: DomainRecord, key: KeyPath) async throws {
        try await write { db in
            guard let ino = try Self.resolve(db, domain: domain, key: key), ino != domain.root else {
                throw StoreError("unknown_key", "no key \"\(key)\" in domain \(domain.name)", errno: ENOENT)
            }
            let parent = try Ino.fetchOne(db.cachedStatement(sql: "SELECT parent FROM dirent WHERE dmid = ? AND path = ?"), arguments: [domain.id, key.description])!
            try Self.removeEntry(db, parent: parent, name: key.name, expectDirectory: nil)
        }
    }

    /// MogileFS rename: fails with key_exists when the target exists; creates target directories.
    public func renameKey(domain: DomainRecord, from: KeyPath, to: KeyPath) async throws {
        try await write { db in
            guard let ino = try Self.resolve(db, domain: domain, key: from), ino != domain.root else {
                throw StoreError("unknown_key", "no key \"\(from)\" in domain \(domain.name)", errno: ENOENT)
            }
            if try Self.resolve(db, domain: domain, key: to) != nil {
                throw StoreError("key_exists", "key \"\(to)\" already exists in domain \(domain.name)", errno: EEXIST)
            }
            let parent = try Ino.fetchOne(db.cachedStatement(sql: "SELECT parent FROM dirent WHERE dmid = ? AND path = ?"), arguments: [domain.id, from.description])!
            let newParent = try Self.ensureDirectories(db, domain: domain, path: to.parent)
            try Self.moveEntry(db, domain: domain.id, from: parent, name: from.name, to: newParent, newName: to.name)
        }
    }

    /// Moves a file to another class; its blobs are re-checked by the replicate worker.
    public func setClass(ino: Ino, classID: ClassID) async throws {
        try await write { db in
            try db.cachedStatement(sql: "UPDATE inode SET classid = ?, ctime = ? WHERE ino = ?").execute(arguments: [classID, Clock.nowNanos(), ino])
            try db.cachedStatement(sql: "UPDATE blob SET classid = ? WHERE fid IN (SELECT fid FROM chunk WHERE ino = ?)").execute(arguments: [classID, ino])
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO replicate_queue(fid, nexttry) SELECT fid, 0 FROM chunk WHERE ino = ?").execute(arguments: [ino])
        }
    }

    /// Keys (files and symlinks, not directories) starting with `prefix`, after `after`, in byte order.
    public func listKeys(domain: DomainID, prefix: String, after: String?, limit: Int) async throws -> [String] {
        try await read { db in
            try String.fetchAll(db.cachedStatement(sql: """
                SELECT d.path FROM dirent d JOIN inode i ON i.ino = d.ino
                WHERE d.dmid = ? AND d.path >= ? AND d.path < ? AND d.path > ? AND i.kind != 'd'
                ORDER BY d.path LIMIT ?
                """), arguments: [domain, prefix, prefix + "\u{10FFFF}", after ?? "", limit])
        }
    }

    public struct FidListing: Sendable {
        public var fid: Fid
        public var domain: String
        public var className: String
        public var key: String
        public var length: Int64
        public var devcount: Int
    }

    /// MogileFS's list_fids: blobs after `from`, `count` of them.
    public func listFids(from: Fid, count: Int) async throws -> [FidListing] {
        try await read { db in
            try Row.fetchAll(db.cachedStatement(sql: """
                SELECT b.fid, dm.name AS domain, COALESCE(cl.name, 'default') AS class, COALESCE(d.path, '') AS key, b.length,
                       (SELECT COUNT(*) FROM file_on f WHERE f.fid = b.fid) AS devcount
                FROM blob b JOIN domain dm ON dm.dmid = b.dmid
                LEFT JOIN class cl ON cl.dmid = b.dmid AND cl.classid = b.classid
                LEFT JOIN chunk c ON c.fid = b.fid
                LEFT JOIN dirent d ON d.ino = c.ino
                WHERE b.fid > ? GROUP BY b.fid ORDER BY b.fid LIMIT ?
                """), arguments: [from, count]).map {
                FidListing(fid: $0["fid"], domain: $0["domain"], className: $0["class"], key: $0["key"], length: $0["length"], devcount: $0["devcount"])
            }
        }
    }
}

extension MetadataStore {
    /// What get_paths needs, in one read transaction: the domain, the file and its copies.
    /// What get_paths needs, in one statement (read outside a transaction: one SELECT is its
    /// own consistent snapshot): the file's attributes, chunks and each chunk's copies.
    public func fileForReading(domain d: DomainRecord, key: KeyPath) async throws -> (FileRecord?, [Fid: [DeviceID]]) {
        try await readOneStatement { db in
            let select = """
                SELECT \(Self.inodeColumnsOfI),
                       c.idx, c.fid, c.length, f.devid
                """
            let joins = "LEFT JOIN chunk c ON c.ino = i.ino LEFT JOIN file_on f ON f.fid = c.fid"
            let rows = key.isRoot
                ? try Row.fetchAll(db.cachedStatement(sql: "\(select) FROM inode i \(joins) WHERE i.ino = ? ORDER BY c.idx"), arguments: [d.root])
                : try Row.fetchAll(db.cachedStatement(sql: "\(select) FROM dirent d JOIN inode i ON i.ino = d.ino \(joins) WHERE d.dmid = ? AND d.path = ? ORDER BY c.idx"),
                                   arguments: [d.id, key.description])
            guard let first = rows.first else { return (nil, [:]) }
            var chunks: [ChunkRef] = [], copies: [Fid: [DeviceID]] = [:]
            for row in rows {
                guard let index: Int = row[13], let fid: Fid = row[14] else { continue }
                if chunks.last?.index != index { chunks.append(ChunkRef(index: index, fid: fid, length: row[15])) }
                if let devid: DeviceID = row[16] { copies[fid, default: []].append(devid) }
            }
            return (FileRecord(key: key.description, attributes: Self.attributes(first), chunks: chunks), copies)
        }
    }
}

/// A file's content layout as readers and writers need it, read in one transaction.
public struct StoredLayout: Sendable, Equatable {
    public var attributes: InodeAttributes
    public var domainName: String
    public var classRecord: ClassRecord?
    public var chunks: [ChunkRef]
    public var copies: [Fid: [DeviceID]]
    public var checksums: [Fid: String]

    public init(attributes: InodeAttributes, domainName: String, classRecord: ClassRecord?, chunks: [ChunkRef] = [],
                copies: [Fid: [DeviceID]] = [:], checksums: [Fid: String] = [:]) {
        self.attributes = attributes; self.domainName = domainName; self.classRecord = classRecord
        self.chunks = chunks; self.copies = copies; self.checksums = checksums
    }
}

extension MetadataStore {
    /// Every open asks for this: one statement (its own snapshot, no transaction) brings the
    /// attributes, the chunks with their copies and checksums, and the domain's name.
    public func layout(ino: Ino) async throws -> StoredLayout {
        try await readOneStatement { db in try Self.layout(db, ino: ino) }
    }

    static let layoutQuery = """
        SELECT \(inodeColumnsOfI), d.name, c.idx, c.fid, c.length, b.checksum,
               (SELECT group_concat(devid) FROM file_on f WHERE f.fid = c.fid)
        FROM inode i LEFT JOIN domain d ON d.dmid = i.dmid
             LEFT JOIN chunk c ON c.ino = i.ino LEFT JOIN blob b ON b.fid = c.fid
        WHERE i.ino = ? ORDER BY c.idx
        """

    static func layout(_ db: Database, ino: Ino) throws -> StoredLayout {
        let rows = try Row.fetchAll(db.cachedStatement(sql: layoutQuery), arguments: [ino])
        guard let first = rows.first else { throw Self.unknownInode(ino) }
        let a = attributes(first)
        let n = inodeColumnCount
        var chunks: [ChunkRef] = [], copies: [Fid: [DeviceID]] = [:], sums: [Fid: String] = [:]
        for row in rows {
            guard let fid = row[n + 2] as Fid? else { continue }  // a file without chunks: one row, no chunk
            chunks.append(ChunkRef(index: row[n + 1], fid: fid, length: row[n + 3]))
            if let sum = row[n + 4] as String? { sums[fid] = sum }
            copies[fid] = ((row[n + 5] as String?) ?? "").split(separator: ",").compactMap { DeviceID($0) }
        }
        return StoredLayout(attributes: a, domainName: (first[n] as String?) ?? "",
                            classRecord: try Self.classRecord(db, domain: a.domain, id: a.classID),
                            chunks: chunks, copies: copies, checksums: sums)
    }

    /// A file's attributes and chunk list, read together (a commit's starting point): one
    /// statement, its own snapshot, so no transaction around it; on the writer connection,
    /// which has just written them (the file's create or last commit).
    public func content(ino: Ino) async throws -> (InodeAttributes, [ChunkRef]) {
        try await readOnWriter { db in
            let rows = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT \(Self.inodeColumnsOfI), c.idx, c.fid, c.length FROM inode i LEFT JOIN chunk c ON c.ino = i.ino
                WHERE i.ino = ? ORDER BY c.idx
                """), arguments: [ino])
            guard let first = rows.first else { throw Self.unknownInode(ino) }
            let n = Self.inodeColumnCount
            let chunks = rows.compactMap { row in (row[n + 1] as Fid?).map { ChunkRef(index: row[n], fid: $0, length: row[n + 2]) } }
            return (Self.attributes(first), chunks)
        }
    }
}
