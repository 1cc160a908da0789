import CairnClient
import CairnCore
import CairnProtocol
import Foundation

/// The directories the tracker has delegated to this mount (see the tracker's
/// `CreateDelegations`): in one, a file is created here — its inode number and its first
/// chunk's upload taken from what the tracker reserved — and its create sent down the
/// pipeline without waiting; so are its first commit and, while the delegation lasts, its
/// chmod, utimes and renames between delegated directories. The kernel's create returns at
/// once, and a copy into the directory no longer waits for the tracker at each file.
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

    private struct Grant {
        var inos: ClosedRange<Ino>?
        var uploads: [ChunkTransfer.Allocation]
        let classOf: Args
    }

    static let batch = 64
    /// How long a directory another mount holds, or that was recalled, is not asked for again.
    static let refusalSeconds: TimeInterval = 5

    private let lock = NSLock()
    private var grants: [Ino: Grant] = [:]
    private var refused: [Ino: Date] = [:]
    /// Files created here under a delegation → its directory: while it lasts, their changes
    /// (chmod, utimes, a rename within delegated directories) go without waiting too, as the
    /// tracker recalls the directory before another client names them. Bounded: a file
    /// forgotten here is only changed the waiting way.
    private var created: [Ino: Ino] = [:]
    static let maxCreated = 1 << 16

    /// Runs `body` with the next reservation of `dir`, under the lock that orders creates before
    /// a recall's ack; nil when this mount holds nothing left there (see `ask`).
    func create<T>(in dir: Ino, _ body: (Reservation) throws -> T) rethrows -> T? {
        lock.lock()
        defer { lock.unlock() }
        guard var g = grants[dir], let inos = g.inos, !g.uploads.isEmpty else { return nil }
        let r = Reservation(ino: inos.lowerBound, upload: g.uploads.removeFirst(), classOf: g.classOf)
        g.inos = inos.count > 1 ? (inos.lowerBound + 1)...inos.upperBound : nil
        grants[dir] = g
        let made = try body(r)
        if created.count >= Self.maxCreated { created.removeAll() }
        created[r.ino] = dir
        return made
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

    /// Asks the tracker for `dir`'s delegation, or for more reservations there; false when it
    /// is not given (another mount holds it, or the tracker grants none), and then not asked
    /// again for a few seconds.
    func ask(_ dir: Ino, className: String?, tracker: TrackerClient) -> Bool {
        if let since = lock.withLock({ refused[dir] }), Date().timeIntervalSince(since) < Self.refusalSeconds { return false }
        var args = [("parent", String(dir)), ("count", String(Self.batch))]
        if let className { args.append(("class", className)) }
        guard let r = try? tracker.call("fs_delegate", args), r["granted"] == "1",
              let first = r.int("ino_first"), let count = r.int("ino_count"), count > 0 else {
            lock.withLock {
                if refused.count > 1024 { refused.removeAll() }
                refused[dir] = Date()
            }
            return false
        }
        let uploads = (0..<Int(r.int("upload_count") ?? 0)).compactMap { ChunkTransfer.Allocation(r, prefix: "upload\($0 + 1)_") }
        lock.withLock {
            // What was left of an earlier grant is dropped: its numbers and uploads go unused.
            grants[dir] = Grant(inos: first...(first + count - 1), uploads: uploads, classOf: r)
        }
        return !uploads.isEmpty
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
