import CairnClient
import CairnCore
import CairnProtocol
import Foundation

/// The directories the tracker has delegated to this mount (see the tracker's
/// `CreateDelegations`): in one, a file or directory is created here — its inode number, and a
/// file's first chunk's upload, taken from what the tracker reserved — and its create sent
/// down the pipeline without waiting; so are a file's first commit and, while the delegation
/// lasts, its chmod, utimes and renames between delegated directories. The kernel's create
/// returns at once, and a copy into the directory no longer waits for the tracker at each file.
///
/// A directory made here under a delegation is delegated to this mount at birth (the tracker
/// notes it as it stores the mkdir, even when the parent's recall is on its way) and draws on
/// its parent's reservations, so a tree copy asks the tracker for nothing but more
/// reservations, and asks for those down the pipeline before they run out. It is recalled on
/// its own, as any other.
///
/// A delegation lasts until the tracker recalls it (another client is about to look at the
/// directory or a file made there, or to change them) or this mount's watch ends. A change
/// made under it and the ack of its recall go down the pipeline in the order they were made,
/// under one lock, so the tracker reads every change before the ack that lets the other
/// client go on.
final class DelegatedDirectories: @unchecked Sendable {
    /// What one file created here takes.
    struct Reservation {
        let ino: Ino
        let upload: ChunkTransfer.Allocation
        /// `fs_delegate`'s answer: the domain and class new files there get.
        let classOf: Args
    }

    /// Inode numbers and uploads the tracker reserved, shared by a directory and those made
    /// in it under its delegation (same domain, same class; the tracker ties a reservation to
    /// no directory). Its own lock: a refill's answer arrives on the pipeline's thread, which
    /// must not wait for the lock a sender holds while the pipeline is full.
    private final class Pool: @unchecked Sendable {
        private let lock = NSLock()
        private var inos: [ClosedRange<Ino>] = []
        private var uploads: [ChunkTransfer.Allocation] = []
        /// More were asked for down the pipeline and not answered yet.
        private var refilling = false
        /// `fs_delegate`'s first answer: the domain and class new files get.
        let classOf: Args
        /// The class the mount named when it asked (`-o class=`): refills name it too.
        let className: String?

        init(_ r: Args, className: String?) {
            classOf = r
            self.className = className
            add(r)
        }

        func add(_ r: Args) {
            let more = (0..<Int(r.int("upload_count") ?? 0)).compactMap { ChunkTransfer.Allocation(r, prefix: "upload\($0 + 1)_") }
            lock.withLock {
                if let first = r.int("ino_first"), let count = r.int("ino_count"), count > 0 { inos.append(first...(first + count - 1)) }
                uploads += more
            }
        }

        /// The next number, and with `upload` the next upload too (nil when either is gone).
        func take(upload: Bool) -> (ino: Ino, upload: ChunkTransfer.Allocation?)? {
            lock.withLock {
                guard let range = inos.first, !upload || !uploads.isEmpty else { return nil }
                if range.count > 1 { inos[0] = (range.lowerBound + 1)...range.upperBound } else { inos.removeFirst() }
                return (range.lowerBound, upload ? uploads.removeFirst() : nil)
            }
        }

        var isEmpty: Bool { lock.withLock { inos.isEmpty || uploads.isEmpty } }

        /// True when it runs low and nobody asked for more yet (the caller asks now).
        func startRefill() -> Bool {
            lock.withLock {
                let low = inos.reduce(0) { $0 + $1.count } < DelegatedDirectories.lowWater || uploads.count < DelegatedDirectories.lowWater
                guard low, !refilling else { return false }
                refilling = true
                return true
            }
        }

        func refilled(_ answer: Args?) {
            if let answer { add(answer) }
            lock.withLock { refilling = false }
        }
    }

    static let batch = 128
    /// Below this many numbers or uploads left, more are asked for (down the pipeline).
    static let lowWater = 16
    /// How long a directory another mount holds, or that was recalled, is not asked for again.
    static let refusalSeconds: TimeInterval = 5

    private let tracker: TrackerClient
    private let lock = NSLock()
    private var grants: [Ino: Pool] = [:]
    private var refused: [Ino: Date] = [:]
    /// Files (and directories) created here under a delegation → its directory: while it
    /// lasts, their changes (chmod, utimes, a rename within delegated directories) go without
    /// waiting too, as the tracker recalls the directory before another client names them.
    /// Bounded: a file forgotten here is only changed the waiting way.
    private var created: [Ino: Ino] = [:]
    static let maxCreated = 1 << 16

    init(tracker: TrackerClient) { self.tracker = tracker }

    /// Runs `body` with the next reservation of `dir`, under the lock that orders creates before
    /// a recall's ack; nil when this mount holds nothing left there (see `ask`).
    func create<T>(in dir: Ino, _ body: (Reservation) throws -> T) rethrows -> T? {
        lock.lock()
        defer { lock.unlock() }
        guard let pool = grants[dir], let (ino, upload) = pool.take(upload: true), let upload else { return nil }
        let r = Reservation(ino: ino, upload: upload, classOf: pool.classOf)
        let made = try body(r)
        noteCreated(ino, in: dir)
        refillIfLow(pool, asking: dir)
        return made
    }

    /// Runs `body` with a number for a directory made in `dir` under its delegation, under the
    /// same lock; the new directory is then delegated here too, drawing on `dir`'s reservations.
    /// nil when this mount holds no number left there.
    func mkdir<T>(in dir: Ino, _ body: (_ ino: Ino, _ classOf: Args) throws -> T) rethrows -> T? {
        lock.lock()
        defer { lock.unlock() }
        guard let pool = grants[dir], let (ino, _) = pool.take(upload: false) else { return nil }
        let made = try body(ino, pool.classOf)
        noteCreated(ino, in: dir)
        grants[ino] = pool
        refillIfLow(pool, asking: dir)
        return made
    }

    /// Call with the lock held.
    private func noteCreated(_ ino: Ino, in dir: Ino) {
        if created.count >= Self.maxCreated { created.removeAll() }
        created[ino] = dir
    }

    /// Asks for more reservations down the pipeline, behind the creates just sent (so the
    /// tracker knows a directory made here by then), before `pool` runs out: creates need not
    /// wait for the answer. Granted, what it reserves joins `pool` (unused if a recall dropped
    /// the pool meanwhile). Call with the lock held.
    private func refillIfLow(_ pool: Pool, asking dir: Ino) {
        guard pool.startRefill() else { return }
        do {
            try tracker.send("fs_delegate", Self.delegateArguments(dir, className: pool.className)) { result in
                guard case .success(let r) = result, r["granted"] == "1" else { return pool.refilled(nil) }
                pool.refilled(r)
            }
        } catch {
            pool.refilled(nil)  // no tracker took it: the next create asks again, or waits in `ask`
        }
    }

    private static func delegateArguments(_ dir: Ino, className: String?) -> [(String, String)] {
        var args = [("parent", String(dir)), ("count", String(batch))]
        if let className { args.append(("class", className)) }
        return args
    }

    /// Runs `body` under the same lock if `dirs` are still delegated here (a change sent without
    /// waiting under them: behind it goes any recall's ack); else nil.
    /// `file`: also a file created here under a delegation that still lasts.
    func whileHeld<T>(file: Ino? = nil, _ dirs: [Ino], body: () throws -> T) rethrows -> T? {
        lock.lock()
        defer { lock.unlock() }
        if let file { guard let dir = created[file], grants[dir] != nil else { return nil } }
        guard dirs.allSatisfy({ grants[$0] != nil }) else { return nil }
        return try body()
    }

    /// Asks the tracker for `dir`'s delegation, or for more reservations there, and waits for
    /// the answer; false when it is not given (another mount holds it, or the tracker grants
    /// none), and then not asked again for a few seconds.
    func ask(_ dir: Ino, className: String?) -> Bool {
        if let since = lock.withLock({ refused[dir] }), Date().timeIntervalSince(since) < Self.refusalSeconds { return false }
        guard let r = try? tracker.call("fs_delegate", Self.delegateArguments(dir, className: className)), r["granted"] == "1" else {
            lock.withLock {
                if refused.count > 1024 { refused.removeAll() }
                refused[dir] = Date()
            }
            return false
        }
        let pool = Pool(r, className: className)
        // What was left of an earlier grant stays with the directories that share it (and goes
        // unused there once they run out too).
        lock.withLock { grants[dir] = pool }
        return !pool.isEmpty
    }

    /// The tracker's `RECALL` (nil: every directory): ends the delegations, then runs `ack`
    /// (which sends the ack down the pipeline) before any create can start again. Another
    /// client works there: they are not asked for again for a few seconds.
    func recall(_ dirs: [Ino]?, ack: () -> Void) {
        lock.withLock {
            let ended = dirs ?? Array(grants.keys)
            for d in ended { grants.removeValue(forKey: d) }
            let endedSet = Set(ended)
            created = created.filter { !endedSet.contains($0.value) }
            if refused.count + ended.count > 1024 { refused.removeAll() }
            for d in ended { refused[d] = Date() }
            ack()
        }
    }

    /// The watch ended: the tracker holds none of them for this mount any more.
    func dropAll() { lock.withLock { grants.removeAll(); created.removeAll() } }
}
