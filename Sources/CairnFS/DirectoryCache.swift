import CairnCore
import CairnProtocol
import Foundation

/// Recent complete listings of small directories, so that lookups are answered without a
/// tracker call while a walk or a copy works in a directory (`rsync`, `cp -r`, `ls -lR`,
/// `find`, a program creating files). A listing lives no longer than the entry timeout, the
/// staleness the kernel's own entry cache already allows for names it has seen; this mount's
/// own changes are applied to the listings as they are made.
///
/// A name missing from a listing is answered "absent" only in a directory this mount itself
/// changed within the entry timeout (creating files there, each new name is first looked up
/// and found missing). Elsewhere the tracker is asked: a file another client has just made
/// (`cairn put`, then open through the mount) is seen at once.
///
/// Attributes in a listing are a snapshot. A change made here that the tracker answers with the
/// inode's new attributes (a commit, a setattr, a rename) updates its entry in place; any other
/// (a link, a custom-metadata change) marks the inode, and its lookups take fresher attributes.
/// Keyed by tracker inode.
///
/// Under the mount's lease (`LeasedLayouts`) a listing fetched while it was current is held
/// past the entry timeout, answers "absent" too, and serves `readdir`: the tracker's `INVAL`
/// (any change by another client) ends what was held.
final class DirectoryCache: @unchecked Sendable {
    enum Answer: Equatable {
        /// Not listed: ask the tracker.
        case unknown
        case absent
        /// `current` is false when the inode changed here after the listing was fetched.
        case present(WireAttributes, current: Bool)
    }

    /// `since`: the generation its fetch began at; `heldAt`: the lease's generation then.
    private struct Listing { let fetched: Date; let since: Int; let heldAt: UInt64?; var entries: [String: WireAttributes] }
    /// When a fetch began: see `beginFetch`.
    struct FetchStamp { let generation: Int; let held: UInt64? }
    private let lock = NSLock()
    private var listings: [Ino: Listing] = [:]
    /// Directories too large for one page: not listed again until their entry's time is up.
    private var large: [Ino: Date] = [:]
    /// Inodes whose attributes changed here while listings were held → the generation then.
    private var changed: [Ino: Int] = [:]
    /// Directories changed through this mount → when.
    private var ownChanges: [Ino: Date] = [:]
    /// Where each listed inode was last named: the entry its changes update (checked before
    /// use, since listings come and go; bounded apart).
    private var names: [Ino: (dir: Ino, name: String)] = [:]
    static let maxNames = 1 << 18
    /// Bumped by every change: a listing fetched while a change was made is not kept.
    private var generation = 0
    let maxAge: TimeInterval
    static let maxDirectories = 1024
    /// The lease's generation while it is current (`LeasedLayouts.heldGeneration`).
    private let leaseGeneration: @Sendable () -> UInt64?

    init(maxAge: TimeInterval, leaseGeneration: @escaping @Sendable () -> UInt64? = { nil }) {
        self.maxAge = maxAge
        self.leaseGeneration = leaseGeneration
    }

    var enabled: Bool { maxAge > 0 }

    private func isHeld(_ l: Listing, _ lease: UInt64?) -> Bool { l.heldAt != nil && l.heldAt == lease }
    /// What a listing begun at `stamp` is held under: the current lease, if no invalidation came since.
    private func heldAt(_ stamp: FetchStamp, _ lease: UInt64?) -> UInt64? { stamp.held == lease ? lease : nil }

    func answer(_ dir: Ino, _ name: String) -> Answer {
        let lease = leaseGeneration()
        return lock.withLock {
            let now = Date()
            guard let l = listings[dir] else { return .unknown }
            let held = isHeld(l, lease)
            guard held || now.timeIntervalSince(l.fetched) < maxAge else { return .unknown }
            guard let e = l.entries[name] else {
                return held || ownChanges[dir].map { now.timeIntervalSince($0) < maxAge } == true ? .absent : .unknown
            }
            return .present(e, current: (changed[e.ino] ?? Int.min) <= l.since)
        }
    }

    /// `name` as a listing of `dir` held under the current lease has it (`.unknown` when none
    /// is held): no other client has changed it since (its change would have ended the hold).
    func held(_ dir: Ino, _ name: String) -> Answer {
        let lease = leaseGeneration()
        return lock.withLock {
            guard let l = listings[dir], isHeld(l, lease) else { return .unknown }
            guard let e = l.entries[name] else { return .absent }
            return .present(e, current: (changed[e.ino] ?? Int.min) <= l.since)
        }
    }

    /// Keeps one entry the tracker answered (`since`: `beginFetch` before asking) in a listing
    /// that may hold only some of the directory's names: the mount's root, whose entries (the
    /// domains) are asked for one at a time. Only its present names are answers there.
    func keep(_ dir: Ino, _ name: String, _ attributes: WireAttributes, since stamp: FetchStamp) {
        let lease = leaseGeneration()
        lock.withLock {
            guard stamp.generation == generation else { return }
            let held = heldAt(stamp, lease)
            if listings[dir] == nil || listings[dir]?.heldAt != held {
                listings[dir] = Listing(fetched: Date(), since: generation, heldAt: held, entries: [:])
            }
            listings[dir]?.entries[name] = attributes
            names[attributes.ino] = (dir, name)
        }
    }

    /// The whole directory, sorted by name, when its listing is held under the lease and none
    /// of its entries changed here since (their attributes are then the tracker's).
    func heldEntries(_ dir: Ino) -> [(String, WireAttributes)]? {
        let lease = leaseGeneration()
        return lock.withLock {
            guard let l = listings[dir], isHeld(l, lease),
                  !l.entries.values.contains(where: { (changed[$0.ino] ?? Int.min) > l.since }) else { return nil }
            return l.entries.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        }
    }

    /// The directory `ino` was last listed or named in here (a hint, for `SiblingReadAhead`).
    func directory(of ino: Ino) -> Ino? { lock.withLock { names[ino]?.dir } }

    /// The regular files of `dir`'s listing, in name order, however old the listing (a hint,
    /// for `SiblingReadAhead`); nil when none is cached.
    func files(in dir: Ino) -> [Ino]? {
        guard let entries = lock.withLock({ listings[dir]?.entries }) else { return nil }
        return entries.filter { $0.value.kind == "f" }.sorted { $0.key < $1.key }.map(\.value.ino)
    }

    /// True when the directory is worth listing now (not known to be too large for one page).
    func shouldList(_ dir: Ino) -> Bool {
        lock.withLock { large[dir].map { Date().timeIntervalSince($0) >= maxAge } ?? true }
    }

    /// Call before fetching a listing; give the result to `store`.
    func beginFetch() -> FetchStamp {
        let lease = leaseGeneration()
        return lock.withLock { FetchStamp(generation: generation, held: lease) }
    }

    /// Keeps a listing fetched since `beginFetch` answered `since`, unless a change came between.
    /// `entries` nil: the directory needs more than one page, and is not listed for a while.
    func store(_ dir: Ino, entries: [(String, WireAttributes)]?, since stamp: FetchStamp) -> Bool {
        let lease = leaseGeneration()
        return lock.withLock {
            let since = stamp.generation
            guard let entries else {
                if large.count >= Self.maxDirectories { large.removeAll() }
                large[dir] = Date()
                return false
            }
            guard since == generation else { return false }
            if listings.count >= Self.maxDirectories {
                let now = Date()
                listings = listings.filter { isHeld($0.value, lease) || now.timeIntervalSince($0.value.fetched) < maxAge }
                if listings.count >= Self.maxDirectories / 2 { dropAll() }
            }
            listings[dir] = Listing(fetched: Date(), since: since, heldAt: heldAt(stamp, lease),
                                    entries: Dictionary(entries, uniquingKeysWith: { a, _ in a }))
            if names.count + entries.count > Self.maxNames { names.removeAll() }
            for (name, e) in entries { names[e.ino] = (dir, name) }
            return true
        }
    }

    /// A new name (create, mkdir, symlink, link): `attributes` are the inode's as the tracker answered.
    func added(_ dir: Ino, _ name: String, _ attributes: WireAttributes) {
        change {
            mark(dir, own: true)
            listings[dir]?.entries[name] = attributes
            names[attributes.ino] = (dir, name)
        }
    }

    /// A directory this mount just created: empty, so its names need no fetch (a copy of a
    /// tree then lists none of the directories it makes). `stamp`: `beginFetch` before the
    /// mkdir, so it is held only if the mkdir went out under the lease now current (a mkdir
    /// sent before the watch began is not known to the tracker as held).
    func createdEmpty(_ dir: Ino, since stamp: FetchStamp) {
        let lease = leaseGeneration()
        lock.withLock {
            listings[dir] = Listing(fetched: Date(), since: generation, heldAt: heldAt(stamp, lease), entries: [:])
            ownChanges[dir] = Date()
        }
    }

    /// A hard link: a new name, and the inode's link count changed under its other names.
    func linked(_ dir: Ino, _ name: String, _ attributes: WireAttributes) {
        change { mark(attributes.ino) }
        added(dir, name, attributes)
    }

    func removed(_ dir: Ino, _ name: String) {
        change {
            mark(dir, own: true)
            guard listings[dir] != nil else {
                // Which inode lost a name is not known here: another listing may hold it.
                dropAll()
                return
            }
            if let victim = listings[dir]?.entries.removeValue(forKey: name) { mark(victim.ino) }
        }
    }

    /// `moved`: the moved inode's attributes as the tracker answered the rename (its new ctime).
    func renamed(_ dir: Ino, _ name: String, to newDir: Ino, _ newName: String, exchange: Bool, moved now: WireAttributes? = nil) {
        change {
            mark(dir, own: true)
            mark(newDir, own: true)
            // The name replaced (if any) is known only from a listing of its directory. (No local
            // copy of that listing: mutating it below would then copy all its entries.)
            guard !exchange, listings[newDir] != nil else { dropAll(); return }
            if let victim = listings[newDir]?.entries[newName] { mark(victim.ino) }
            if let moved = listings[dir]?.entries.removeValue(forKey: name) {
                if let now, Self.singlyNamed(now), now.ino == moved.ino {
                    changed[moved.ino] = nil
                    listings[newDir]?.entries[newName] = now
                } else {
                    mark(moved.ino)
                    listings[newDir]?.entries[newName] = moved
                }
                names[moved.ino] = (newDir, newName)
            } else {
                listings[newDir] = nil
            }
        }
    }

    /// Content, attributes or link count of `ino` changed through this mount. `now`: its
    /// attributes as the tracker answered the change, which its entry takes, so lookups and
    /// listings need not ask again (rsync's chmod, utimes and rename of every file it copies).
    func attributesChanged(_ ino: Ino, now: WireAttributes? = nil) {
        change {
            guard let now, now.ino == ino, Self.singlyNamed(now), let (dir, name) = names[ino],
                  listings[dir]?.entries[name]?.ino == ino else { mark(ino); return }
            changed[ino] = nil  // its only entry is current again
            listings[dir]?.entries[name] = now
        }
    }

    /// An inode with one name (a directory, or a file without hard links): a change to it
    /// touches one entry only.
    private static func singlyNamed(_ a: WireAttributes) -> Bool { a.isDirectory || a.nlink <= 1 }

    func forgetAll() { change { dropAll() } }

    private func change(_ body: () -> Void) {
        lock.withLock {
            generation &+= 1
            body()
            // Marks matter only against listings held now; own changes also answer for listings
            // fetched later, so they outlive an empty cache (bounded apart).
            if listings.isEmpty { changed.removeAll() }
            if changed.count > 4 * Self.maxDirectories || ownChanges.count > Self.maxDirectories { dropAll() }
        }
    }

    /// `own`: a directory whose entries this mount changed.
    private func mark(_ ino: Ino, own: Bool = false) {
        changed[ino] = generation
        if own { ownChanges[ino] = Date() }
    }

    private func dropAll() {
        listings.removeAll()
        changed.removeAll()
        ownChanges.removeAll()
        names.removeAll()
    }
}
