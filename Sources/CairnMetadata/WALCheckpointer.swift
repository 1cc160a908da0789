import Foundation
import GRDB
import GRDBSQLite

/// Runs the WAL's checkpoints on a connection and a thread of its own, so no request waits
/// for one. SQLite's default runs a checkpoint inside the commit that takes the WAL past 1,000
/// pages: that commit copies the pages back into the database file and waits for two fsyncs
/// (WAL, then database), and the tracker's writer, with every request queued behind it, waits
/// too (a create loop paid some 70 µs per file for it, measured with strace in session 19).
///
/// The writer's WAL hook (which replaces SQLite's automatic checkpoint) wakes this thread
/// each time the WAL has grown by `threshold` pages; the checkpoint is PASSIVE, so it never
/// blocks the writer or a reader, and copies what no reader still needs. The WAL restarts
/// (is written again from its start) only after a checkpoint that copied every frame; under
/// steady writes one running beside them rarely does, so at `backstop` pages the writer
/// checkpoints itself (the frames since the last background checkpoint), as SQLite would,
/// and the WAL stays bounded. The checkpoint's own
/// connection runs with `synchronous = FULL`: the WAL is synced before its pages are copied
/// and the database file after, so deferred commits stay safe against power loss through it.
final class WALCheckpointer: @unchecked Sendable {
    /// WAL pages that wake the checkpointer: SQLite's own automatic-checkpoint size.
    static let threshold: Int32 = 1000
    /// WAL pages at which the committing writer checkpoints itself (the checkpointer is behind).
    static let backstop: Int32 = 16_000

    private let connection: DatabaseQueue
    private let wake = NSCondition()
    private var due = false
    private var stopped = false
    /// Checkpoints run here, and by the writer at the backstop: for tests and `!stats`.
    private let counts = NSLock()
    private var runs = 0
    private var backstops = 0

    /// Opens the checkpoint's connection to the database at `path` and starts its thread.
    init(path: String) throws {
        var config = Configuration()
        config.busyMode = .timeout(10)
        config.label = "cairn.checkpoint"
        connection = try DatabaseQueue(path: path, configuration: config)
        try connection.inDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        let thread = Thread { [self] in loop() }
        thread.name = "cairn-checkpoint"
        thread.start()
    }

    /// Makes `db` (the writer's connection) wake this checkpointer instead of checkpointing
    /// inside its commits. The hook keeps the checkpointer alive until `writerClosed()`.
    func install(on db: Database) {
        sqlite3_wal_hook(db.sqliteConnection, { context, connection, name, pages in
            Unmanaged<WALCheckpointer>.fromOpaque(context!).takeUnretainedValue().committed(walPages: pages, connection: connection, name: name)
        }, Unmanaged.passRetained(self).toOpaque())
    }

    /// WAL size (pages) at which the next checkpoint is due, and the size at the last commit.
    /// Only the writer's hook touches them, under its connection's mutex.
    private var dueAt = threshold
    private var lastPages: Int32 = 0

    /// The writer's WAL hook: after each commit, with the WAL's size in pages (frames since
    /// its last restart, which a checkpoint does not change: only the next write after a
    /// checkpoint that caught up restarts it). A checkpoint is due every `threshold` pages of
    /// growth, not at every commit past it.
    private func committed(walPages pages: Int32, connection: OpaquePointer?, name: UnsafePointer<CChar>?) -> Int32 {
        if pages < lastPages { dueAt = Self.threshold }  // the WAL restarted
        lastPages = pages
        guard pages >= dueAt else { return SQLITE_OK }
        dueAt = pages + Self.threshold
        if pages >= Self.backstop {
            // Checkpoints that ran beside the writes never caught up with them (the WAL restarts
            // only once every frame is copied): the writer copies the last frames itself.
            counts.withLock { backstops += 1 }
            return sqlite3_wal_checkpoint_v2(connection, name, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
        }
        signal()
        return SQLITE_OK
    }

    /// The writer's connection is closed: its hook no longer holds this checkpointer.
    func writerClosed() { Unmanaged.passUnretained(self).release() }

    /// Checkpoints run by this thread and by the writer at the backstop so far.
    var checkpointCounts: (background: Int, backstop: Int) { counts.withLock { (runs, backstops) } }

    func signal() {
        wake.lock()
        due = true
        wake.signal()
        wake.unlock()
    }

    /// Ends the thread (after a checkpoint in progress).
    func stop() {
        wake.lock()
        stopped = true
        wake.signal()
        wake.unlock()
    }

    private func loop() {
        while true {
            wake.lock()
            while !due && !stopped { wake.wait() }
            let end = stopped
            due = false
            wake.unlock()
            if end { return }
            // A failure (SQLITE_BUSY: the writer's backstop is checkpointing) leaves the pages
            // to the next wake or to the backstop; nothing is lost either way.
            if (try? connection.inDatabase({ db in try db.checkpoint(.passive) })) != nil { counts.withLock { runs += 1 } }
        }
    }
}
