import CairnProtocol
import Foundation
import Logging
import NIOCore
import Synchronization
import CairnCore

/// Mounts that keep file layouts between opens (a lease, as NFSv4's delegations): a mount that
/// sent `fs_watch` on a connection of its own may open a file it has seen without asking here,
/// because a change made by anyone else is not acknowledged until every such mount that may
/// hold a layout has dropped what it holds. That keeps close-to-open: once a writer's close
/// returns, no watching mount opens the old content.
///
/// - Invalidation is coarse: a change drops a watcher's whole cache (one `INVAL` line, one
///   ack), and only watchers that asked for something since their last `INVAL` (or have not
///   acked it yet) get one.
/// - A watcher that does not ack within `ackTimeout` is cut off (its connection closed), and
///   the change waits until the lease of its last ping has run out: a mount trusts its cache
///   only `leaseMillis` after sending a ping this tracker answered.
/// - Changes wait for one lease after the tracker starts (its previous run's watchers).
/// - A mount that unmounts cleanly says so (`fs_unwatch`): nothing waits for its lease.
/// - Granted only by a tracker started with `--leases`, which must be the only tracker on its
///   database: a change made through another tracker would not reach the watchers here.
final class Watchers: @unchecked Sendable {
    /// A mount's lease: how long after sending a ping this tracker answered it may trust what
    /// it holds (`cairn tracker --lease-ms`, 2 s by default).
    let leaseMillis: Int64
    static let ackTimeout = Duration.seconds(1)

    private struct Watcher {
        let channel: any Channel
        /// Asked for something since its last invalidation: it may hold layouts.
        var holds = false
        /// Directories it creates files in on its own (`CreateDelegations` says how).
        var delegated: Set<Ino> = []
        /// When its last ping arrived; its lease runs out `leaseMillis` after that at the latest.
        var lastPing: ContinuousClock.Instant
        var acks: [UInt64: CheckedContinuation<Bool, Never>] = [:]
    }

    /// `cairn tracker --leases`: off, `fs_watch` is refused and mounts ask at every open.
    let granting: Bool
    private let lock = NSLock()
    private var watchers: [UInt64: Watcher] = [:]
    /// Directory → the watcher it is delegated to.
    private var delegations: [Ino: UInt64] = [:]
    /// Files created under a delegation still held → its directory: until it ends, the holder
    /// changes them without waiting (their first commit, chmod, utimes, rename), so another
    /// client's request naming one recalls that directory first.
    private var delegatedFiles: [Ino: Ino] = [:]
    private var filesIn: [Ino: [Ino]] = [:]
    /// `delegations.count` plus recalls in flight, read without the lock on every request.
    private let delegationCount = Atomic<Int>(0)
    /// Directories whose recall is waiting for its ack: a request that needs one of them waits
    /// for that ack too (the delegation is already gone, the holder's changes may not be in).
    private var recalling: [Ino: (holder: UInt64, recall: UInt64, acked: Task<Void, Never>)] = [:]
    private var nextID: UInt64 = 1
    private var nextSeq: UInt64 = 1
    /// Until when a watcher whose connection ended while it held layouts may still trust
    /// them (it may not have noticed yet): changes wait for that.
    private var orphanedUntil: ContinuousClock.Instant?
    private let logger: Logger
    /// Where `lease_waits` is counted (`!stats`).
    private let counters: TrackerCounters

    init(granting: Bool, leaseMillis: Int64, counters: TrackerCounters, logger: Logger) {
        self.granting = granting
        self.leaseMillis = leaseMillis
        self.counters = counters
        self.logger = logger
        // A grace period, as NFSv4's: a mount of this tracker's previous run may trust what it
        // holds for one lease after its last ping there, so changes wait out one lease from start.
        if granting { orphanedUntil = .now + .milliseconds(leaseMillis) }
    }

    func register(_ channel: any Channel) -> UInt64 {
        lock.withLock {
            let id = nextID
            nextID += 1
            watchers[id] = Watcher(channel: channel, lastPing: .now)
            return id
        }
    }

    /// The watch connection ended: nothing is owed to it any more.
    func remove(_ id: UInt64) {
        let pending = lock.withLock { () -> [CheckedContinuation<Bool, Never>] in
            guard let w = watchers.removeValue(forKey: id) else { return [] }
            dropDelegations(of: w)
            // Its creates may still be on their way (on its other connection): changes wait out its lease.
            if w.holds || !w.acks.isEmpty || !w.delegated.isEmpty { orphan(leaseOf: w) }
            return Array(w.acks.values)
        }
        for c in pending { c.resume(returning: false) }
    }

    /// `fs_unwatch`: the mount has dropped everything and trusts nothing from this watch any
    /// more (a clean unmount), so nothing waits for its lease and unacked invalidations are done.
    func release(_ id: UInt64) {
        let pending = lock.withLock { () -> [CheckedContinuation<Bool, Never>] in
            guard let w = watchers.removeValue(forKey: id) else { return [] }
            dropDelegations(of: w)
            return Array(w.acks.values)
        }
        for c in pending { c.resume(returning: true) }
    }

    /// Call with the lock held.
    private func dropDelegations(of w: Watcher) {
        for dir in w.delegated { endDelegation(dir) }
    }

    /// Call with the lock held, after any change to `delegations` or `recalling`.
    private func countDelegations() { delegationCount.store(delegations.count + recalling.count, ordering: .relaxed) }

    /// Call with the lock held.
    private func endDelegation(_ dir: Ino) {
        guard let holder = delegations.removeValue(forKey: dir) else { return }
        watchers[holder]?.delegated.remove(dir)
        for ino in filesIn.removeValue(forKey: dir) ?? [] { delegatedFiles.removeValue(forKey: ino) }
        countDelegations()
    }

    /// Before a holder's delegated create runs (`undo`: it failed). A directory made so is
    /// delegated to the holder at birth (the mount goes on creating in it on its own), also when
    /// the recall of the directory it was made in is on its way: the holder made it before it
    /// read the recall (its ack is behind this), and keeps it.
    func noteDelegatedCreate(_ ino: Ino, in dir: Ino, directory: Bool, by holder: UInt64?, undo: Bool = false) {
        lock.withLock {
            guard let holder else { return }
            guard !undo else {
                delegatedFiles.removeValue(forKey: ino)
                if directory, delegations[ino] == holder { endDelegation(ino) }
                return
            }
            let holds = delegations[dir] == holder
            if holds {
                delegatedFiles[ino] = dir
                filesIn[dir, default: []].append(ino)
            }
            guard directory, delegations[ino] == nil, watchers[holder] != nil,
                  holds || recalling[dir]?.holder == holder else { return }
            delegations[ino] = holder
            watchers[holder]!.delegated.insert(ino)
            countDelegations()
        }
    }

    /// Call with the lock held.
    private func orphan(leaseOf w: Watcher) {
        let end = w.lastPing + .milliseconds(leaseMillis)
        orphanedUntil = max(orphanedUntil ?? end, end)
    }

    /// Watching mounts, and the directories delegated to them (`!stats`).
    var census: (watchers: Int, delegated: Int) { lock.withLock { (watchers.count, delegations.count) } }

    /// False for a watcher this tracker does not know (cut off, or from before a restart).
    func ping(_ id: UInt64) -> Bool {
        lock.withLock {
            guard watchers[id] != nil else { return false }
            watchers[id]!.lastPing = .now
            return true
        }
    }

    /// Before answering a request from watcher `id`: it may cache what it is told.
    func hold(_ id: UInt64) {
        lock.withLock { if watchers[id] != nil { watchers[id]!.holds = true } }
    }

    func acked(_ id: UInt64, seq: UInt64) {
        let c = lock.withLock { watchers[id]?.acks.removeValue(forKey: seq) }
        c?.resume(returning: true)
    }

    /// After a change to the namespace by `origin` (nil: a client that does not watch):
    /// returns once every other watcher that may hold layouts has dropped them, or has been
    /// cut off and its lease has run out.
    func invalidate(except origin: UInt64?) async {
        let (targets, orphaned): ([(id: UInt64, seq: UInt64, channel: any Channel)], ContinuousClock.Instant?) = lock.withLock {
            if let o = orphanedUntil, o <= .now { orphanedUntil = nil }
            var out: [(UInt64, UInt64, any Channel)] = []
            // Also a watcher still to ack an earlier INVAL: until it does, it may still hold what
            // that one dropped (acking this one, sent after, says it has dropped both).
            for (id, w) in watchers where (w.holds || !w.acks.isEmpty) && id != origin {
                watchers[id]!.holds = false
                out.append((id, nextSeq, w.channel))
                nextSeq += 1
            }
            return (out, orphanedUntil)
        }
        if let orphaned {
            counters.countLeaseWait()
            try? await Task.sleep(until: orphaned, clock: .continuous)
        }
        guard !targets.isEmpty else { return }
        await withTaskGroup(of: Void.self) { group in
            for t in targets {
                group.addTask { await self.invalidate(t.id, seq: t.seq, channel: t.channel) }
            }
        }
    }

    // MARK: create delegations

    /// Delegates `dir` to watcher `id` unless another holds it; true when `id` holds it now.
    func delegate(_ dir: Ino, to id: UInt64) -> Bool {
        lock.withLock {
            guard granting, watchers[id] != nil else { return false }
            if let holder = delegations[dir] { return holder == id }
            delegations[dir] = id
            watchers[id]!.delegated.insert(dir)
            countDelegations()
            return true
        }
    }

    /// Before a request from `origin` (nil: a client that does not watch) runs: every
    /// delegation in `scope` held by another watcher is taken back, and this returns once each
    /// holder has said that everything it sent under it is ahead of its ack (the ack comes
    /// down the connection those changes went down), or has been cut off and its lease has
    /// run out. A recall already on its way for a directory in scope is waited for as well.
    /// Some directory is delegated or being recalled: requests must ask `recall` (without the
    /// lock, so a cluster with no delegations pays nothing per request).
    var delegating: Bool { delegationCount.load(ordering: .relaxed) > 0 }

    func recall(_ scope: CreateDelegations.Scope, except origin: UInt64?) async {
        guard delegating, !scope.isEmpty else { return }
        let acks: [Task<Void, Never>] = lock.withLock {
            // One mount at work (the usual case): every delegation is its own, none to take
            // back, without a walk over all of them at each of its requests.
            if recalling.isEmpty, let origin, watchers[origin]?.delegated.count == delegations.count { return [] }
            // A file created under a delegation still held stands for its directory.
            let dirs = Set(scope.directories + scope.files.compactMap { delegatedFiles[$0] })
            func inScope(_ dir: Ino) -> Bool { scope.all || dirs.contains(dir) }
            var acks = recalling.filter { $0.value.holder != origin && inScope($0.key) }.map(\.value.acked)
            var byHolder: [UInt64: [Ino]] = [:]
            for (dir, holder) in delegations where holder != origin && inScope(dir) {
                byHolder[holder, default: []].append(dir)
            }
            for (holder, dirs) in byHolder {
                for dir in dirs { endDelegation(dir) }
                guard let w = watchers[holder] else { continue }
                let seq = nextSeq
                nextSeq += 1
                let line = "RECALL seq=\(seq)&dirs=\(dirs.map(String.init).joined(separator: ","))\r\n"
                let acked = Task {
                    await self.invalidate(holder, seq: seq, channel: w.channel, line: line)
                    self.lock.withLock {
                        for dir in dirs where self.recalling[dir]?.recall == seq { self.recalling.removeValue(forKey: dir) }
                        self.countDelegations()
                    }
                }
                for dir in dirs { recalling[dir] = (holder, seq, acked) }
                acks.append(acked)
            }
            countDelegations()
            if !byHolder.isEmpty { counters.countRecall() }
            return acks
        }
        for a in acks { await a.value }
    }

    private func invalidate(_ id: UInt64, seq: UInt64, channel: any Channel, line: String? = nil) async {
        let acked = await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
            let known = lock.withLock { () -> Bool in
                guard watchers[id] != nil else { return false }
                watchers[id]!.acks[seq] = c
                return true
            }
            guard known else { c.resume(returning: false); return }
            channel.writeAndFlush(ByteBuffer(string: line ?? "INVAL seq=\(seq)\r\n"), promise: nil)
            Task {
                try? await Task.sleep(for: Self.ackTimeout)
                let late = self.lock.withLock { self.watchers[id]?.acks.removeValue(forKey: seq) }
                late?.resume(returning: false)
            }
        }
        guard !acked else { return }
        // Cut off (or gone): it may still trust its cache until its lease runs out.
        let (cutOff, until) = lock.withLock { () -> (Bool, ContinuousClock.Instant?) in
            guard let w = watchers.removeValue(forKey: id) else { return (false, orphanedUntil) }
            dropDelegations(of: w)
            orphan(leaseOf: w)
            return (true, orphanedUntil)
        }
        if cutOff {
            logger.warning("mount watch \(id) (\(channel.remoteAddress.map { "\($0)" } ?? "?")) did not acknowledge \(line == nil ? "an invalidation" : "a recall of its create delegations") within \(Self.ackTimeout): cut off; changes wait until its lease ends (\(leaseMillis) ms). Check that mount's machine and network.")
        }
        channel.close(promise: nil)
        if let until {
            counters.countLeaseWait()
            try? await Task.sleep(until: until, clock: .continuous)
        }
    }
}

extension Watchers {
    /// The watch connection's own requests (`fs_watch` itself needs the connection: `Dispatcher`).
    func register(into h: inout [String: CommandHandler]) {
        h["fs_watch_ping"] = { [self] a in
            let id = UInt64(try a.requireInt("watcher"))
            guard ping(id) else { throw ProtocolError("unknown_watcher", "watcher \(id) is not known here (cut off, or the tracker restarted); send fs_watch again") }
            return []
        }
        h["fs_watch_ack"] = { [self] a in
            acked(UInt64(try a.requireInt("watcher")), seq: UInt64(try a.requireInt("seq")))
            return []
        }
    }
}
