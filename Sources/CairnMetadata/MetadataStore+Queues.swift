import CairnCore
import GRDB

/// Work queues: replication (bring blobs up to their class's copies) and deletion (free blobs
/// on the storage nodes after their names are gone). Backoff lives in `nexttry`.
extension MetadataStore {
    public func dueReplications(limit: Int) async throws -> [Fid] {
        try await read { db in
            // Fewest copies first: a blob down to its last copy is the most at risk.
            try Fid.fetchAll(db.cachedStatement(sql: """
                SELECT q.fid FROM replicate_queue q WHERE q.nexttry <= ?
                ORDER BY (SELECT COUNT(*) FROM file_on f WHERE f.fid = q.fid), q.nexttry LIMIT ?
                """),
                             arguments: [Clock.nowSeconds(), limit])
        }
    }

    public func queueReplication(fid: Fid) async throws {
        try await write { db in try db.cachedStatement(sql: "INSERT OR IGNORE INTO replicate_queue(fid, nexttry) VALUES (?, 0)").execute(arguments: [fid]) }
    }

    public func replicationDone(fid: Fid) async throws {
        try await write { db in try db.cachedStatement(sql: "DELETE FROM replicate_queue WHERE fid = ?").execute(arguments: [fid]) }
    }

    /// Backoff for a failed attempt: 15 s, 1 min, 5 min, 30 min, then hourly.
    public func replicationFailed(fid: Fid) async throws {
        try await write { db in
            let fails = (try Int.fetchOne(db.cachedStatement(sql: "SELECT failcount FROM replicate_queue WHERE fid = ?"), arguments: [fid]) ?? 0) + 1
            let delays: [Int64] = [15, 60, 300, 1800, 3600]
            try db.cachedStatement(sql: "UPDATE replicate_queue SET failcount = ?, nexttry = ? WHERE fid = ?").execute(
                           arguments: [fails, Clock.nowSeconds() + delays[min(fails - 1, delays.count - 1)], fid])
        }
    }

    public func pendingReplications() async throws -> Int {
        try await read { db in try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM replicate_queue"))! }
    }

    public func pendingDeletes() async throws -> Int {
        try await read { db in try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM delete_queue"))! }
    }

    /// Records a new verified copy.
    public func addCopy(fid: Fid, device: DeviceID) async throws {
        try await write { db in try db.cachedStatement(sql: "INSERT OR IGNORE INTO file_on(fid, devid) VALUES (?, ?)").execute(arguments: [fid, device]) }
    }

    public struct DeleteItem: Sendable {
        public var fid: Fid
        public var devices: [DeviceID]
        public init(fid: Fid, devices: [DeviceID]) { self.fid = fid; self.devices = devices }
    }

    public func dueDeletes(limit: Int) async throws -> [DeleteItem] {
        try await read { db in
            try Fid.fetchAll(db.cachedStatement(sql: "SELECT fid FROM delete_queue WHERE nexttry <= ? ORDER BY nexttry LIMIT ?"),
                             arguments: [Clock.nowSeconds(), limit]).map { fid in
                DeleteItem(fid: fid, devices: try DeviceID.fetchAll(db.cachedStatement(sql: "SELECT devid FROM file_on WHERE fid = ?"), arguments: [fid]))
            }
        }
    }

    /// Forgets a copy that is gone from its device (deleted, or the device is dead). Bookkeeping only (lost to a power cut, the copy is looked
    /// for again and found gone), so it never waits for an fsync.
    public func removeCopy(fid: Fid, device: DeviceID) async throws {
        try await writeDeferred { db in try Self.removeCopy(db, fid: fid, device: device) }
    }

    static func removeCopy(_ db: Database, fid: Fid, device: DeviceID) throws {
        try db.cachedStatement(sql: "DELETE FROM file_on WHERE fid = ? AND devid = ?").execute(arguments: [fid, device])
    }

    /// Records a round of deletes in one transaction: each item's `devices` are those its copies
    /// are gone from now. A delete with no copies left ends, others are retried later with
    /// backoff. Bookkeeping only, like `removeCopy`: a lost update repeats a delete, which nodes
    /// answer as done.
    public func recordDeletes(_ rounds: [DeleteItem]) async throws {
        guard !rounds.isEmpty else { return }
        try await writeDeferred { db in
            for item in rounds {
                for d in item.devices { try Self.removeCopy(db, fid: item.fid, device: d) }
                let left = try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM file_on WHERE fid = ?"), arguments: [item.fid])!
                if left == 0 {
                    try db.cachedStatement(sql: "DELETE FROM delete_queue WHERE fid = ?").execute(arguments: [item.fid])
                } else {
                    let fails = (try Int.fetchOne(db.cachedStatement(sql: "SELECT failcount FROM delete_queue WHERE fid = ?"), arguments: [item.fid]) ?? 0) + 1
                    try db.cachedStatement(sql: "UPDATE delete_queue SET failcount = ?, nexttry = ? WHERE fid = ?").execute(
                                   arguments: [fails, Clock.nowSeconds() + Int64(min(600, 10 * fails)), item.fid])
                }
            }
        }
    }

    /// Uploads never committed within `maxAge` seconds: their fids, for deletion of any copies.
    public func reapStaleUploads(maxAge: Int64) async throws -> Int {
        try await write { db in
            let cutoff = Clock.nowSeconds() - maxAge
            let rows = try Row.fetchAll(db.cachedStatement(sql: "SELECT fid, devids FROM tempfile WHERE created < ?"), arguments: [cutoff])
            for row in rows {
                let fid: Fid = row["fid"]
                for d in (row["devids"] as String).split(separator: ",").compactMap({ Int($0) }) {
                    try db.cachedStatement(sql: "INSERT OR IGNORE INTO file_on(fid, devid) VALUES (?, ?)").execute(arguments: [fid, d])
                }
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO delete_queue(fid, nexttry) VALUES (?, 0)").execute(arguments: [fid])
                try db.cachedStatement(sql: "DELETE FROM tempfile WHERE fid = ?").execute(arguments: [fid])
            }
            return rows.count
        }
    }

    public struct Stats: Sendable {
        public var files: Int
        public var blobs: Int
        public var bytes: Int64
        public var copies: Int
        public var replicationQueue: Int
        public var deleteQueue: Int
        /// Inodes whose sidecars are being rewritten.
        public var sidecarQueue: Int
    }

    public func stats() async throws -> Stats {
        try await read { db in
            Stats(files: try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM inode WHERE kind = 'f'"))!,
                  blobs: try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM blob"))!,
                  bytes: try Int64.fetchOne(db.cachedStatement(sql: "SELECT COALESCE(SUM(length), 0) FROM blob"))!,
                  copies: try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM file_on"))!,
                  replicationQueue: try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM replicate_queue"))!,
                  deleteQueue: try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM delete_queue"))!,
                  sidecarQueue: try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM sidecar_queue"))!)
        }
    }
}

extension MetadataStore {
    /// MogileFS's replicate_now: every deferred replication becomes due now.
    public func replicateNow() async throws -> Int {
        try await write { db in
            try db.cachedStatement(sql: "UPDATE replicate_queue SET nexttry = 0 WHERE nexttry > 0").execute()
            return db.changesCount
        }
    }
}
