import CairnCore
import GRDB

/// What self-healing keeps in the database: fsck findings and its queue, copy moves (drain,
/// rebalance), the job-master lock and the monitor's reachability timestamps.
extension MetadataStore {
    // MARK: fsck

    /// A committed blob as fsck checks it, with one key that uses it (for reports).
    public struct BlobUse: Sendable {
        public var blob: BlobRecord
        public var key: String?
    }

    /// Blobs after `after` in fid order (optionally of one domain).
    public func blobsForCheck(after: Fid, limit: Int, domain: DomainID?) async throws -> [BlobUse] {
        try await read { db in
            let rows = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT b.fid, b.dmid, b.classid, b.length, b.checksum,
                       (SELECT MIN(d.path) FROM chunk c JOIN dirent d ON d.ino = c.ino WHERE c.fid = b.fid) AS path
                FROM blob b WHERE b.fid > ? AND (? IS NULL OR b.dmid = ?) ORDER BY b.fid LIMIT ?
                """), arguments: [after, domain, domain, limit])
            return try rows.map { row in
                let fid: Fid = row["fid"]
                let devices = try DeviceID.fetchAll(db.cachedStatement(sql: "SELECT devid FROM file_on WHERE fid = ? ORDER BY devid"), arguments: [fid])
                return BlobUse(blob: BlobRecord(fid: fid, domain: row["dmid"], classID: row["classid"], length: row["length"],
                                                checksum: row["checksum"], devices: devices),
                               key: row["path"])
            }
        }
    }

    public func blobUse(fid: Fid) async throws -> BlobUse? {
        try await read { db in
            guard let blob = try Self.blob(db, fid: fid) else { return nil }
            let key = try String.fetchOne(db.cachedStatement(sql: "SELECT MIN(d.path) FROM chunk c JOIN dirent d ON d.ino = c.ino WHERE c.fid = ?"), arguments: [fid])
            return BlobUse(blob: blob, key: key)
        }
    }

    /// Chunks whose blob has no row at all: metadata that points at nothing.
    public func danglingChunks(domain: DomainID?, limit: Int) async throws -> [(fid: Fid, domain: DomainID, key: String?)] {
        try await read { db in
            try Row.fetchAll(db.cachedStatement(sql: """
                SELECT c.fid, i.dmid, (SELECT MIN(d.path) FROM dirent d WHERE d.ino = c.ino) AS path
                FROM chunk c JOIN inode i ON i.ino = c.ino LEFT JOIN blob b ON b.fid = c.fid
                WHERE b.fid IS NULL AND (? IS NULL OR i.dmid = ?) LIMIT ?
                """), arguments: [domain, domain, limit]).map { ($0["fid"], $0["dmid"], $0["path"]) }
        }
    }

    /// Of `fids`, those the metadata knows (committed, uploading, or waiting for deletion).
    public func knownFids(_ fids: [Fid]) async throws -> Set<Fid> {
        guard !fids.isEmpty else { return [] }
        return try await read { db in
            var known: Set<Fid> = []
            for fid in fids {
                let hit = try Bool.fetchOne(db.cachedStatement(sql: """
                    SELECT EXISTS(SELECT 1 FROM blob WHERE fid = ?1) OR EXISTS(SELECT 1 FROM tempfile WHERE fid = ?1)
                        OR EXISTS(SELECT 1 FROM delete_queue WHERE fid = ?1) OR EXISTS(SELECT 1 FROM file_on WHERE fid = ?1)
                    """), arguments: [fid]) ?? false
                if hit { known.insert(fid) }
            }
            return known
        }
    }

    public struct Finding: Sendable {
        public var id: Int64
        public var at: Int64
        public var fid: Fid?
        public var device: DeviceID?
        public var domain: DomainID?
        public var key: String?
        public var kind: String
        public var detail: String
        public var repaired: Bool
        public init(id: Int64 = 0, at: Int64 = Clock.nowSeconds(), fid: Fid?, device: DeviceID? = nil, domain: DomainID?, key: String?,
                    kind: String, detail: String, repaired: Bool) {
            self.id = id; self.at = at; self.fid = fid; self.device = device; self.domain = domain; self.key = key
            self.kind = kind; self.detail = detail; self.repaired = repaired
        }
    }

    public func record(_ f: Finding) async throws {
        try await write { db in
            try db.cachedStatement(sql: "INSERT INTO fsck_finding(at, fid, devid, dmid, key, kind, detail, repaired) VALUES (?, ?, ?, ?, ?, ?, ?, ?)").execute(
                arguments: [f.at, f.fid, f.device, f.domain, f.key, f.kind, f.detail, f.repaired])
        }
    }

    public func findings(afterID: Int64 = 0, limit: Int = 1000) async throws -> [Finding] {
        try await read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM fsck_finding WHERE id > ? ORDER BY id LIMIT ?"), arguments: [afterID, limit]).map {
                Finding(id: $0["id"], at: $0["at"], fid: $0["fid"], device: $0["devid"], domain: $0["dmid"], key: $0["key"],
                        kind: $0["kind"], detail: $0["detail"], repaired: $0["repaired"])
            }
        }
    }

    /// Finding counts by kind since finding `afterID`.
    public func findingCounts(afterID: Int64) async throws -> [String: Int] {
        try await read { db in
            var out: [String: Int] = [:]
            for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT kind, COUNT(*) AS n FROM fsck_finding WHERE id > ? GROUP BY kind"), arguments: [afterID]) {
                out[row["kind"]] = row["n"]
            }
            return out
        }
    }

    public func lastFindingID() async throws -> Int64 {
        try await read { db in try Int64.fetchOne(db.cachedStatement(sql: "SELECT COALESCE(MAX(id), 0) FROM fsck_finding"))! }
    }

    public func queueCheck(fid: Fid, reason: String) async throws {
        try await write { db in try db.cachedStatement(sql: "INSERT OR IGNORE INTO fsck_queue(fid, reason) VALUES (?, ?)").execute(arguments: [fid, reason]) }
    }

    public func dueChecks(limit: Int) async throws -> [(fid: Fid, reason: String)] {
        try await read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT fid, reason FROM fsck_queue ORDER BY fid LIMIT ?"), arguments: [limit]).map { ($0["fid"], $0["reason"]) }
        }
    }

    public func checkDone(fid: Fid) async throws {
        try await write { db in try db.cachedStatement(sql: "DELETE FROM fsck_queue WHERE fid = ?").execute(arguments: [fid]) }
    }

    // MARK: copies on devices

    /// Committed blobs with a copy on `device`, in fid order.
    public func blobsOn(device: DeviceID, after: Fid, limit: Int) async throws -> [(fid: Fid, length: Int64)] {
        try await read { db in
            try Row.fetchAll(db.cachedStatement(sql: """
                SELECT f.fid, b.length FROM file_on f JOIN blob b ON b.fid = f.fid WHERE f.devid = ? AND f.fid > ? ORDER BY f.fid LIMIT ?
                """), arguments: [device, after, limit]).map { ($0["fid"], $0["length"]) }
        }
    }

    /// Copies and bytes each device holds, by the metadata.
    public func deviceContents() async throws -> [DeviceID: (copies: Int, bytes: Int64)] {
        try await read { db in
            var out: [DeviceID: (copies: Int, bytes: Int64)] = [:]
            for row in try Row.fetchAll(db.cachedStatement(sql: """
                SELECT f.devid, COUNT(*) AS n, COALESCE(SUM(b.length), 0) AS bytes FROM file_on f LEFT JOIN blob b ON b.fid = f.fid GROUP BY f.devid
                """)) {
                out[row["devid"]] = (row["n"], row["bytes"])
            }
            return out
        }
    }

    // MARK: moves (drain, rebalance)

    public struct Move: Sendable, Equatable {
        public var fid: Fid
        public var from: DeviceID
        public var to: DeviceID?
        public var bytes: Int64
        public var reason: String
        public init(fid: Fid, from: DeviceID, to: DeviceID?, bytes: Int64, reason: String) {
            self.fid = fid; self.from = from; self.to = to; self.bytes = bytes; self.reason = reason
        }
    }

    public func queueMoves(_ moves: [Move]) async throws {
        try await write { db in
            for m in moves {
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO move_queue(fid, from_dev, to_dev, bytes, reason) VALUES (?, ?, ?, ?, ?)").execute(
                    arguments: [m.fid, m.from, m.to, m.bytes, m.reason])
            }
        }
    }

    public func dueMoves(limit: Int) async throws -> [Move] {
        try await read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM move_queue WHERE nexttry <= ? ORDER BY nexttry, fid LIMIT ?"),
                             arguments: [Clock.nowSeconds(), limit]).map {
                Move(fid: $0["fid"], from: $0["from_dev"], to: $0["to_dev"], bytes: $0["bytes"], reason: $0["reason"])
            }
        }
    }

    public func moveDone(_ m: Move) async throws {
        try await write { db in try db.cachedStatement(sql: "DELETE FROM move_queue WHERE fid = ? AND from_dev = ?").execute(arguments: [m.fid, m.from]) }
    }

    public func moveFailed(_ m: Move) async throws {
        try await write { db in
            try db.cachedStatement(sql: "UPDATE move_queue SET failcount = failcount + 1, nexttry = ? + MIN(600, 15 * (failcount + 1)) WHERE fid = ? AND from_dev = ?").execute(
                arguments: [Clock.nowSeconds(), m.fid, m.from])
        }
    }

    /// Pending moves by reason (`drain`, `rebalance`).
    public func pendingMoves() async throws -> [String: (count: Int, bytes: Int64)] {
        try await read { db in
            var out: [String: (count: Int, bytes: Int64)] = [:]
            for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT reason, COUNT(*) AS n, SUM(bytes) AS b FROM move_queue GROUP BY reason")) {
                out[row["reason"]] = (row["n"], row["b"])
            }
            return out
        }
    }

    public func cancelMoves(reason: String) async throws {
        try await write { db in try db.cachedStatement(sql: "DELETE FROM move_queue WHERE reason = ?").execute(arguments: [reason]) }
    }

    // MARK: monitor

    /// Seconds since the epoch at which each device was first seen unreachable in its current outage.
    public func unreachableSince() async throws -> [DeviceID: Int64] {
        try await read { db in
            var out: [DeviceID: Int64] = [:]
            for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT devid, unreachable_since FROM device WHERE unreachable_since IS NOT NULL")) {
                out[row["devid"]] = row["unreachable_since"]
            }
            return out
        }
    }

    // MARK: job master

    /// Takes or renews the job-master lock for `owner` for `ttl` seconds; false when another
    /// live tracker holds it.
    public func holdJobMaster(owner: String, ttl: Int64) async throws -> Bool {
        try await write { db in
            let now = Clock.nowSeconds()
            if let held = try String.fetchOne(db.cachedStatement(sql: "SELECT value FROM setting WHERE key = 'jobmaster'")) {
                let parts = held.split(separator: " ")
                if parts.count == 2, String(parts[0]) != owner, let expiry = Int64(parts[1]), expiry > now { return false }
            }
            try db.cachedStatement(sql: "INSERT INTO setting(key, value) VALUES ('jobmaster', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value").execute(
                arguments: ["\(owner) \(now + ttl)"])
            return true
        }
    }
}

extension MetadataStore {
    /// A move of this blob is queued (its copy count is in flux: not surplus yet).
    public func hasPendingMove(fid: Fid) async throws -> Bool {
        try await read { db in try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM move_queue WHERE fid = ?)"), arguments: [fid]) ?? false }
    }
}

extension MetadataStore {
    public func clearFindings() async throws {
        try await write { db in try db.cachedStatement(sql: "DELETE FROM fsck_finding").execute() }
    }
}
