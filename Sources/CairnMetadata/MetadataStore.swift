import CairnCore
import CairnPolicy
import Foundation
import GRDB
import Synchronization

/// The tracker's metadata: namespace, cluster layout, blobs and work queues, in SQLite (WAL).
/// Every public method is one transaction (or one savepoint in a transaction it shares with
/// writes that came at the same time, `GroupCommit`), answered once committed, so a tracker
/// killed at any moment loses nothing it acknowledged and leaves nothing half-done.
public final class MetadataStore: Sendable {
    let pool: DatabasePool
    /// Every write transaction, shared by writes that come at the same time.
    let commits: GroupCommit

    /// Opens (creating if needed) the database at `path` and migrates it to the current schema.
    public init(path: String) throws {
        var config = Configuration()
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in
            try db.cachedStatement(sql: "PRAGMA foreign_keys = ON").execute()
            // CAIRN_SQL_TRACE=1: every statement to stderr, to count what a request costs.
            if ProcessInfo.processInfo.environment["CAIRN_SQL_TRACE"] != nil { db.trace { FileHandle.standardError.write(Data("SQL \($0)\n".utf8)) } }
        }
        do {
            pool = try DatabasePool(path: path, configuration: config)
            // FULL: an acknowledged commit survives power loss, not only a process kill. Set on
            // the writer after the pool opens: GRDB sets NORMAL while enabling WAL, after
            // `prepareDatabase` has run.
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
            // The WAL is truncated whenever it starts over (after a checkpoint), so new frames
            // extend it rather than overwrite its old pages: a frame (4 KiB + 24 bytes) covers
            // two file pages in part, and each one no longer cached (the page cache dropped, or
            // evicted) was read from disk before the write. Measured (session 20): 500 custom-
            // metadata sets after a cache drop read the whole 4 MB WAL, 3,968–4,020 KiB, and
            // ran at 6,000–7,300/s; truncated, 116–148 KiB and 10,100–17,600/s. Durable
            // create pairs (which fsync) showed no difference beyond noise.
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA journal_size_limit = 0") }
            try Schema.migrator().migrate(pool)
            commits = GroupCommit(pool: pool, level: .durable)
        } catch {
            throw StoreError("db", "cannot open the metadata database at \(path): \(error). Check the path and its permissions.")
        }
    }

    /// Reads are short (indexed lookups) and WAL readers never wait for writers, so they run
    /// on the caller's thread: no hop to a database queue and back on every request.
    func read<T: Sendable>(_ body: @Sendable @escaping (Database) throws -> T) async throws -> T {
        try await mapErrors { try self.pool.read(body) }
    }

    /// A read of one SELECT, outside a transaction (a statement is its own snapshot): no
    /// BEGIN and COMMIT around the hottest reads.
    func readOneStatement<T: Sendable>(_ body: @Sendable @escaping (Database) throws -> T) async throws -> T {
        try await mapErrors { try self.pool.unsafeRead(body) }
    }

    /// A read of rows this tracker has just written (a commit reads what its file's create
    /// wrote): on the writer connection, whose page cache keeps them. Every write empties a
    /// reader's cache, and a reader also needs a pool checkout and a schema check per access.
    /// Waits for a write in progress, as `writeDeferred` does.
    func readOnWriter<T: Sendable>(_ body: @Sendable @escaping (Database) throws -> T) async throws -> T {
        try await mapErrors { try self.pool.writeWithoutTransaction(body) }
    }

    /// Set by the tracker for requests whose writes may be durable later (see `writeDeferred`).
    @TaskLocal public static var deferDurability = false

    /// Set by the tracker around a request: every write marks it, so the tracker knows the
    /// request may have changed files that watching mounts hold.
    @TaskLocal public static var writeLog: WriteLog?

    /// Set by the tracker around a request whose connection has more changes waiting (see
    /// `WriteGathering`).
    @TaskLocal public static var gathering: (any WriteGathering)?

    func write<T: Sendable>(_ body: @Sendable @escaping (Database) throws -> T) async throws -> T {
        Self.writeLog?.mark()
        return try await mapErrors { try await self.commits.perform(Self.deferDurability ? .deferred : .durable, body) }
    }

    /// A write made visible at once but durable only with the next durable commit (or
    /// `sync()`): the mount's close. WAL is sequential, so a later FULL commit's fsync covers
    /// every commit before it; a process kill loses nothing, a power loss at most these.
    /// Runs on the thread of the caller that leads its transaction (no fsync to wait for, so
    /// it is as short as a read): no hop to the writer's queue and back on every change the
    /// mount makes.
    func writeDeferred<T: Sendable>(_ body: @Sendable @escaping (Database) throws -> T) async throws -> T {
        Self.writeLog?.mark()
        return try await mapErrors { try await self.commits.perform(.deferred, body) }
    }

    /// Write transactions committed (or tried) since start, and the writes they held.
    public var writeCounts: (transactions: Int, writes: Int) { commits.counted }

    /// Makes every deferred commit durable (fsync of the WAL).
    public func sync() async throws {
        try await mapErrors {
            // A FULL commit fsyncs the WAL, which also covers every deferred commit before it;
            // a commit that wrote nothing would not, hence the tiny write.
            try await self.commits.perform(.durable) { db in
                try db.execute(sql: "INSERT INTO setting(key, value) VALUES ('last_sync', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                               arguments: [String(Clock.nowSeconds())])
            }
        }
    }

    private func mapErrors<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() }
        catch let e as StoreError { throw e }
        catch let e as KeyError { throw StoreError("invalid_key", e.description, errno: 22) }
        catch { throw StoreError("db", "metadata database error: \(error)") }
    }

    // MARK: settings

    public func setting(_ key: String) async throws -> String? {
        try await read { db in try String.fetchOne(db.cachedStatement(sql: "SELECT value FROM setting WHERE key = ?"), arguments: [key]) }
    }

    public func settings() async throws -> [(String, String)] {
        try await read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT key, value FROM setting ORDER BY key")).map { ($0["key"], $0["value"]) }
        }.map { ($0.0 as String, $0.1 as String) }
    }

    public func setSetting(_ key: String, _ value: String) async throws {
        try await write { db in
            try db.cachedStatement(sql: "INSERT INTO setting(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value").execute(
                           arguments: [key, value])
        }
    }
}

/// Whether a request wrote to the database (see `MetadataStore.writeLog`).
public final class WriteLog: Sendable {
    private let marked = Atomic<Bool>(false)
    public init() {}
    func mark() { marked.store(true, ordering: .relaxed) }
    public var wrote: Bool { marked.load(ordering: .relaxed) }
}
