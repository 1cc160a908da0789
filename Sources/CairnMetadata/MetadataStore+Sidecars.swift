import CairnCore
import CairnPolicy
import Foundation
import GRDB

/// Sidecars: building them from the metadata, and rebuilding the metadata from them.
extension MetadataStore {
    /// Inodes whose sidecars are due (queued at least `settle` seconds ago, so bursts of
    /// changes to one file become one rewrite).
    public func dueSidecars(settle: Int64, limit: Int) async throws -> [Ino] {
        try await read { db in
            try Ino.fetchAll(db.cachedStatement(sql: "SELECT ino FROM sidecar_queue WHERE queued <= ? ORDER BY queued LIMIT ?"),
                             arguments: [Clock.nowSeconds() - settle, limit])
        }
    }

    /// Done with these inodes unless they changed again in or after second `at`.
    public func sidecarsWritten(inos: [Ino], queuedBefore at: Int64) async throws {
        // Bookkeeping only (lost, a sidecar is rewritten once more): never worth an fsync.
        try await writeDeferred { db in
            for ino in inos { try db.cachedStatement(sql: "DELETE FROM sidecar_queue WHERE ino = ? AND queued < ?").execute(arguments: [ino, at]) }
        }
    }

    /// The sidecar of every chunk of each file with the devices holding each; nil for an inode
    /// that is no longer a file with a name (its blobs are being deleted, or it is unlinked
    /// but still open: nothing to recover under).
    /// A batch costs five statements, however many inodes it has (one per table), where it cost
    /// eight or more per inode.
    public func sidecars(of inos: [Ino]) async throws -> [(ino: Ino, sidecars: [(sidecar: Sidecar, devices: [DeviceID])]?)] {
        try await read { db in try Self.sidecars(db, inos: inos) }
    }

    static func sidecars(_ db: Database, inos: [Ino]) throws -> [(ino: Ino, sidecars: [(sidecar: Sidecar, devices: [DeviceID])]?)] {
        guard !inos.isEmpty else { return [] }
        let list = inos.map(String.init).joined(separator: ",")  // integers: nothing to escape
        var files: [Ino: InodeAttributes] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT \(inodeColumns) FROM inode WHERE ino IN (\(list)) AND kind = 'f'") {
            let a = attributes(row)
            files[a.ino] = a
        }
        var domains: [DomainID: String] = [:]
        for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT dmid, name FROM domain")) { domains[row[0]] = row[1] }
        var classes: [ClassKey: ClassRecord] = [:]
        for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM class")) {
            let c = classRecord(row)
            classes[ClassKey(domain: c.domain, id: c.id)] = c
        }
        var keys: [Ino: [String]] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT ino, path FROM dirent WHERE ino IN (\(list)) ORDER BY ino, path") {
            keys[row[0], default: []].append(row[1])
        }
        var xattrs: [Ino: [String: String]] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT ino, name, value FROM xattr WHERE ino IN (\(list))") {
            xattrs[row[0], default: [:]][row[1]] = Hex.encode(Array(row[2] as Data))
        }
        // A chunk whose blob row is gone still counts in the file's chunk count, as before.
        var chunks: [Ino: [(index: Int, fid: Fid, length: Int64, blob: (checksum: String?, devices: [DeviceID])?)]] = [:]
        for row in try Row.fetchAll(db, sql: """
            SELECT c.ino, c.idx, c.fid, c.length, b.fid IS NOT NULL, b.checksum,
                   (SELECT group_concat(devid) FROM file_on f WHERE f.fid = c.fid)
            FROM chunk c LEFT JOIN blob b ON b.fid = c.fid WHERE c.ino IN (\(list)) ORDER BY c.ino, c.idx
            """) {
            let devices = (row[6] as String?).map { $0.split(separator: ",").compactMap { DeviceID($0) } } ?? []
            chunks[row[0], default: []].append((row[1], row[2], row[3], (row[4] as Bool) ? (row[5], devices) : nil))
        }
        let version = Clock.nowNanos()
        return inos.map { ino in
            guard let a = files[ino], let domain = domains[a.domain], let c = classes[ClassKey(domain: a.domain, id: a.classID)],
                  let names = keys[ino] else { return (ino, nil) }
            let info = Sidecar.ClassInfo(name: c.name, replicas: c.replicas, syncCopies: c.syncCopies, policy: c.policy.rawValue,
                                         checksum: c.checksum.rawValue, chunkSize: c.chunkSize)
            let fileChunks = chunks[ino] ?? []
            let attrs = Sidecar.Attributes(mode: a.mode, uid: a.uid, gid: a.gid, size: a.size, atime: a.atime, mtime: a.mtime, ctime: a.ctime,
                                           chunks: fileChunks.count)
            return (ino, fileChunks.compactMap { ch in
                guard let blob = ch.blob else { return nil }
                let s = Sidecar(version: version, fid: ch.fid, index: ch.index, length: ch.length, checksum: blob.checksum, domain: domain,
                                classInfo: info, ino: ino, keys: names, attributes: attrs, xattrs: ch.index == 0 ? xattrs[ino] ?? [:] : nil)
                return (s, blob.devices)
            })
        }
    }

    private struct ClassKey: Hashable { let domain: DomainID; let id: ClassID }

    /// A file found on the storage nodes.
    public struct RecoveredFile: Sendable {
        public var sidecar: Sidecar
        public var chunks: [(index: Int, fid: Fid, length: Int64, checksum: String?, devices: [DeviceID])]
        public init(sidecar: Sidecar, chunks: [(index: Int, fid: Fid, length: Int64, checksum: String?, devices: [DeviceID])]) {
            self.sidecar = sidecar; self.chunks = chunks
        }
    }

    /// Rebuilds files in the metadata (domains, classes, directories created as needed).
    /// A key that already exists is left as it is. Returns how many files were restored.
    public func restore(_ files: [RecoveredFile]) async throws -> Int {
        try await write { db in
            var restored = 0
            var maxFid: Fid = 0
            for f in files {
                let s = f.sidecar
                maxFid = max(maxFid, f.chunks.map(\.fid).max() ?? 0)
                let domain = try Self.domain(db, name: s.domain) ?? Self.createDomain(db, name: s.domain, defaultReplicas: s.classInfo.replicas)
                var cls = try Self.classRecord(db, domain: domain.id, name: s.classInfo.name)
                if cls == nil {
                    let next = try Int.fetchOne(db.cachedStatement(sql: "SELECT COALESCE(MAX(classid), 0) + 1 FROM class WHERE dmid = ?"), arguments: [domain.id])!
                    let c = ClassRecord(domain: domain.id, id: next, name: s.classInfo.name, replicas: s.classInfo.replicas, syncCopies: s.classInfo.syncCopies,
                                        policy: PlacementPolicy(rawValue: s.classInfo.policy) ?? .hosts,
                                        checksum: ChecksumAlgorithm(name: s.classInfo.checksum) ?? .none, chunkSize: s.classInfo.chunkSize)
                    try Self.insertClass(db, c)
                    cls = c
                }
                let keys = try s.keys.map { try KeyPath($0) }
                guard let first = keys.first, try Self.resolve(db, domain: domain, key: first) == nil else { continue }
                let a = s.attributes
                try db.cachedStatement(sql: """
                    INSERT INTO inode(dmid, kind, mode, uid, gid, size, atime, mtime, ctime, nlink, classid, checksum) VALUES (?, 'f', ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)
                    """).execute(arguments: [domain.id, a.mode, a.uid, a.gid, a.size, a.atime, a.mtime, a.ctime, keys.count, cls!.id])
                let ino = db.lastInsertedRowID
                for key in keys {
                    let parent = try Self.ensureDirectories(db, domain: domain, path: key.parent)
                    try Self.insertEntry(db, domain: domain.id, parent: parent, name: key.name, ino: ino)
                }
                for ch in f.chunks {
                    try db.cachedStatement(sql: "INSERT OR IGNORE INTO blob(fid, dmid, classid, length, checksum) VALUES (?, ?, ?, ?, ?)").execute(
                        arguments: [ch.fid, domain.id, cls!.id, ch.length, ch.checksum])
                    try db.cachedStatement(sql: "INSERT OR REPLACE INTO chunk(ino, idx, fid, length) VALUES (?, ?, ?, ?)").execute(arguments: [ino, ch.index, ch.fid, ch.length])
                    for d in ch.devices { try db.cachedStatement(sql: "INSERT OR IGNORE INTO file_on(fid, devid) VALUES (?, ?)").execute(arguments: [ch.fid, d]) }
                    if ch.devices.count < cls!.replicas {
                        try db.cachedStatement(sql: "INSERT OR IGNORE INTO replicate_queue(fid, nexttry) VALUES (?, 0)").execute(arguments: [ch.fid])
                    }
                }
                for (name, hex) in s.xattrs ?? [:] {
                    guard let value = Hex.decode(hex) else { continue }
                    try db.cachedStatement(sql: "INSERT OR REPLACE INTO xattr(ino, name, value) VALUES (?, ?, ?)").execute(arguments: [ino, name, Data(value)])
                }
                restored += 1
            }
            // Fids found on disk are never handed out again.
            try db.execute(sql: "INSERT INTO tempfile(fid, created, dmid, classid, key, devids) VALUES (?, 0, 0, 0, '', '')", arguments: [maxFid + 1])
            try db.execute(sql: "DELETE FROM tempfile WHERE fid = ?", arguments: [maxFid + 1])
            return restored
        }
    }
}
