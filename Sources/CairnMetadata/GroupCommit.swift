import GRDB
import Synchronization

/// Write transactions on the one writer connection, committed together when they come
/// together (group commit). A write that arrives while another runs does not hold a thread
/// waiting for the writer: it is queued, and the running one's leader takes it into its own
/// transaction, in a savepoint of its own. The lot pays one BEGIN and one COMMIT (one fsync,
/// for durable commits), and pages they share (a directory's entries, the inode table's last
/// page, a queue's) go to the WAL once. One write alone runs as before: BEGIN, body, COMMIT.
///
/// - A write that fails is undone alone (ROLLBACK TO its savepoint) and answered with its
///   error; the others commit. A failure that ends the whole transaction (SQLITE_FULL, …)
///   fails every write run in it; those not yet run wait for the next one.
/// - Every write is answered after the COMMIT that holds it, so none is acknowledged before
///   it is made (a kill at any moment loses nothing acknowledged).
/// - Durability is set before BEGIN (SQLite refuses to change it inside a transaction): a
///   deferred write may join a durable transaction, not the reverse; a durable write that
///   finds a deferred one running waits for the next.
final class GroupCommit: Sendable {
    enum Durability: String, Comparable {
        /// WAL commit without fsync: a kill loses nothing, a power loss the writes since the last fsync.
        case deferred = "NORMAL"
        /// WAL commit with fsync (it covers every deferred commit before it too).
        case durable = "FULL"
        static func < (a: Self, b: Self) -> Bool { a == .deferred && b == .durable }
    }

    /// Writes in one transaction at most: a writer's queue of hundreds is answered in turns,
    /// not after one long transaction.
    static let maxBatch = 64

    private let pool: DatabasePool
    private struct State {
        /// A leader is running a transaction (or handing over to the next one).
        var running = false
        var queue: [any Member] = []
        /// The writer connection's `PRAGMA synchronous`, changed only when a batch needs the
        /// other level (so a stream of deferred writes pays no PRAGMA each).
        var level: Durability
    }
    private let state: Mutex<State>
    /// Transactions run and writes run in them (`!stats`: how much writes share).
    private let counts = Mutex<(transactions: Int, writes: Int)>((0, 0))
    var counted: (transactions: Int, writes: Int) { counts.withLock { $0 } }
    /// A transaction is running (tests).
    var isRunning: Bool { state.withLock { $0.running } }
    /// Writes waiting for the next transaction (tests).
    var waiting: Int { state.withLock { $0.queue.count } }

    init(pool: DatabasePool, level: Durability) {
        self.pool = pool
        state = Mutex(State(level: level))
    }

    /// Runs `body` in a write transaction at `durability` (shared with others that come at the
    /// same time) and returns its result once that transaction is committed.
    func perform<T: Sendable>(_ durability: Durability, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let write = Write(durability, body)
        let gathering = MetadataStore.gathering
        var leads = claim(orQueue: nil)
        if leads {
            gathering?.joined()
            await gather(gathering)
        } else {
            leads = await write.queue(in: self, gathering: gathering) == .lead
        }
        if leads { await lead(write) }
        return try write.outcome!.get()
    }

    /// Before a leader starts its transaction: while its source says more of its writes are
    /// about to come, it lets them run up to their place in the queue, so they join this
    /// transaction rather than wait for the next. About two turns each (one for the source to
    /// start it, one for it to run up to its place), for a batch's worth at most.
    private func gather(_ gathering: (any WriteGathering)?) async {
        guard let gathering else { return }
        var turns = 0
        while gathering.moreComing, turns < 2 * Self.maxBatch {
            await Task.yield()
            turns += 1
        }
    }

    /// True when no transaction runs: the caller leads the next one. Otherwise `member` (when
    /// given) joins the queue, in the same step, so no leader can finish in between unseen.
    fileprivate func claim(orQueue member: (any Member)?) -> Bool {
        state.withLock { s in
            guard s.running else { s.running = true; return true }
            if let member { s.queue.append(member) }
            return false
        }
    }

    /// Runs `first` and what queued before and while it ran in one transaction, answers them,
    /// and hands the next transaction to the first write still queued.
    private func lead(_ first: any Member) async {
        let batch = Batch(first)
        _ = take(into: batch, upTo: .durable)
        let level = batch.members.map(\.durability).max() ?? first.durability
        do {
            if level == .durable {
                // The fsync is waited for on GRDB's writer thread, not on the caller's (an event
                // loop's). In a task of its own: GRDB stops an async access whose task is
                // cancelled, and the leader's caller going away must not fail the others' writes.
                try await Task { try await pool.writeWithoutTransaction { db in self.run(batch, db, level) } }.value
            } else {
                // A deferred commit is as short as a read: no hop to the writer thread and back.
                runHere(batch, level)
            }
        } catch {
            for m in batch.members { m.fail(error) }  // the writer thread was not reached
        }
        let next = state.withLock { s -> (any Member)? in
            guard !s.queue.isEmpty else { s.running = false; return nil }
            return s.queue.removeFirst()
        }
        for m in batch.members where m !== first { m.answer() }
        next?.lead()
    }

    private func runHere(_ batch: Batch, _ level: Durability) {
        pool.writeWithoutTransaction { db in run(batch, db, level) }
    }

    /// One transaction: every write in `batch`, then those that queued while they ran (of a
    /// durability the transaction covers), each in its savepoint; then COMMIT. When the
    /// transaction ends early, the writes it ran fail and those not run go back to the head
    /// of the queue.
    private func run(_ batch: Batch, _ db: Database, _ level: Durability) {
        do {
            try setLevel(db, level)
            try db.cachedStatement(sql: "BEGIN IMMEDIATE TRANSACTION").execute()
        } catch {
            for m in batch.members { m.fail(error) }
            return
        }
        var index = 0
        while true {
            while index < batch.members.count {
                let m = batch.members[index]
                index += 1
                if let fatal = m.runInSavepoint(db) {
                    if db.isInsideTransaction { try? db.rollback() }
                    for ran in batch.members[..<index] { ran.fail(fatal) }
                    requeue(batch.members[index...])
                    batch.members.removeSubrange(index...)
                    return
                }
            }
            guard take(into: batch, upTo: level) else { break }
        }
        counts.withLock { $0.transactions += 1; $0.writes += batch.members.count }
        do {
            try db.cachedStatement(sql: "COMMIT TRANSACTION").execute()
        } catch {
            if db.isInsideTransaction { try? db.rollback() }
            for m in batch.members { m.fail(error) }
        }
    }

    /// Moves queued writes of a durability up to `level` into `batch`, in queue order, until it
    /// holds `maxBatch`; true when it took any.
    private func take(into batch: Batch, upTo level: Durability) -> Bool {
        state.withLock { s in
            let before = batch.members.count
            var rest: [any Member] = []
            for m in s.queue {
                if batch.members.count < Self.maxBatch, m.durability <= level { batch.members.append(m) } else { rest.append(m) }
            }
            s.queue = rest
            return batch.members.count > before
        }
    }

    private func requeue(_ members: ArraySlice<any Member>) {
        guard !members.isEmpty else { return }
        state.withLock { s in s.queue.insert(contentsOf: members, at: 0) }
    }

    private func setLevel(_ db: Database, _ level: Durability) throws {
        guard state.withLock({ $0.level }) != level else { return }
        try db.cachedStatement(sql: "PRAGMA synchronous = \(level.rawValue)").execute()
        state.withLock { $0.level = level }
    }
}

/// The writes of one transaction, in the order they run (the leader's first). Touched only
/// by the leader, under the writer connection.
private final class Batch: @unchecked Sendable {
    var members: [any Member]
    init(_ first: any Member) { members = [first] }
}

/// A queued write, whatever its result type.
private protocol Member: AnyObject, Sendable {
    var durability: GroupCommit.Durability { get }
    /// Runs the body in a savepoint. Returns the error that ended the whole transaction, if one did.
    func runInSavepoint(_ db: Database) -> (any Error)?
    func fail(_ error: any Error)
    /// Resumes a queued write's caller: its transaction is over.
    func answer()
    /// Resumes a queued write's caller as the next leader.
    func lead()
}

private enum Turn { case lead, answered }

private final class Write<T: Sendable>: Member, @unchecked Sendable {
    let durability: GroupCommit.Durability
    let body: @Sendable (Database) throws -> T
    /// Set by the leader (under the writer), read by the caller after it is resumed.
    var outcome: Result<T, any Error>?
    private var continuation: CheckedContinuation<Turn, Never>?

    init(_ durability: GroupCommit.Durability, _ body: @escaping @Sendable (Database) throws -> T) {
        self.durability = durability
        self.body = body
    }

    /// Waits in `commits`' queue until answered or asked to lead.
    func queue(in commits: GroupCommit, gathering: (any WriteGathering)?) async -> Turn {
        await withCheckedContinuation { c in
            continuation = c
            if commits.claim(orQueue: self) {
                continuation = nil
                c.resume(returning: .lead)
            }
            gathering?.joined()
        }
    }

    func runInSavepoint(_ db: Database) -> (any Error)? {
        do {
            try db.cachedStatement(sql: "SAVEPOINT write").execute()
        } catch {
            outcome = .failure(error)
            return db.isInsideTransaction ? nil : error
        }
        do {
            outcome = .success(try body(db))
            try db.cachedStatement(sql: "RELEASE SAVEPOINT write").execute()
            return nil
        } catch {
            outcome = .failure(error)
            // A failed statement may have ended the whole transaction (SQLITE_FULL, …).
            guard db.isInsideTransaction else { return error }
            do {
                try db.cachedStatement(sql: "ROLLBACK TO SAVEPOINT write").execute()
                try db.cachedStatement(sql: "RELEASE SAVEPOINT write").execute()
                return nil
            } catch {
                return error  // its changes could not be undone alone: the transaction must go
            }
        }
    }

    func fail(_ error: any Error) { outcome = .failure(error) }

    func answer() { take()?.resume(returning: .answered) }
    func lead() { take()?.resume(returning: .lead) }

    private func take() -> CheckedContinuation<Turn, Never>? {
        defer { continuation = nil }
        return continuation
    }
}

/// A source of writes that can tell when more of its writes are about to come: a tracker
/// connection whose client sent several changes without waiting for the answers (a mount's
/// custom-metadata sets and unlinks). Its writes then share one transaction instead of paying
/// one each (BEGIN, COMMIT and the WAL frames of the pages they share), which is most of what
/// such a change costs the tracker.
///
/// The source starts its next write only once the one before has joined (led or queued), so
/// they take their places in the order they were sent.
public protocol WriteGathering: Sendable {
    /// The write of the calling task has its place in the order of transactions.
    func joined()
    /// Another write of this source is about to take its place.
    var moreComing: Bool { get }
}
