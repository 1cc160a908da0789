import CairnCore
import Foundation

/// Custom metadata (`user.*` attributes) of the files this mount reads or sets, kept for
/// `xattr_timeout` seconds, as MooseFS's client keeps xattrs (`mfsxattrcacheto`): the kernel
/// caches none, so without it every getxattr is a tracker round trip. A miss fetches all of
/// the file's attributes in one call (what `getfattr -d` asks for next); this mount's own sets
/// and removes are applied as they succeed. Another client's change shows within the timeout,
/// as its attribute changes do. Inode numbers are never reused, so entries need no other care.
final class XattrCache: @unchecked Sendable {
    enum Answer: Equatable { case value([UInt8]), absent, unknown }

    private struct Entry {
        var at: Date
        var values: [String: [UInt8]]
        /// Names known not to exist (removed here); with `complete`, every name not in `values`.
        var absent: Set<String> = []
        var complete: Bool
        /// Its attributes are too large to keep: fetch them one name at a time.
        var large = false
    }

    private let lock = NSLock()
    private var entries: [Ino: Entry] = [:]
    /// Bumped by every change applied: a fetch that raced one is not stored.
    private var changes: UInt64 = 0
    let maxAge: TimeInterval
    static let maxEntries = 4096
    /// Files with more attribute bytes than this are not cached (they are fetched per name).
    static let maxBytesPerFile = 64 << 10

    init(maxAge: TimeInterval) { self.maxAge = maxAge }

    var enabled: Bool { maxAge > 0 }

    /// The file's entry while it is younger than the timeout. Call with the lock held.
    private func fresh(_ ino: Ino) -> Entry? {
        entries[ino].flatMap { Date().timeIntervalSince($0.at) < maxAge ? $0 : nil }
    }

    private static func bytes(_ values: [String: [UInt8]]) -> Int { values.values.reduce(0) { $0 + $1.count } }

    func answer(_ ino: Ino, _ name: String) -> Answer {
        lock.withLock {
            guard let e = fresh(ino) else { return .unknown }
            if let v = e.values[name] { return .value(v) }
            return e.complete || e.absent.contains(name) ? .absent : .unknown
        }
    }

    /// False for a file whose attributes were found too large to keep: a whole fetch would
    /// bring them all for one name.
    func fetchesWhole(_ ino: Ino) -> Bool {
        guard enabled else { return false }
        return lock.withLock { fresh(ino)?.large != true }
    }

    /// Every name, when the whole set is known and fresh.
    func names(_ ino: Ino) -> [String]? {
        lock.withLock {
            guard let e = fresh(ino), e.complete else { return nil }
            return e.values.keys.sorted()
        }
    }

    /// Call before fetching; pass the result to `storeAll`.
    func beginFetch() -> UInt64 { lock.withLock { changes } }

    /// All of a file's attributes, as fetched after `beginFetch` returned `since`.
    func storeAll(_ ino: Ino, _ values: [String: [UInt8]], since: UInt64) {
        guard enabled else { return }
        let large = Self.bytes(values) > Self.maxBytesPerFile
        lock.withLock {
            guard changes == since else { return }
            makeRoom()
            entries[ino] = large ? Entry(at: Date(), values: [:], complete: false, large: true) : Entry(at: Date(), values: values, complete: true)
        }
    }

    /// This mount set `name` to `value`.
    func set(_ ino: Ino, _ name: String, _ value: [UInt8]) {
        guard enabled else { return }
        apply(ino) { e in
            e.values[name] = value
            e.absent.remove(name)
        }
    }

    /// This mount removed `name`.
    func removed(_ ino: Ino, _ name: String) {
        guard enabled else { return }
        apply(ino) { e in
            e.values.removeValue(forKey: name)
            e.absent.insert(name)
        }
    }

    /// A change whose outcome is not known (a failed set): ask next time.
    func forget(_ ino: Ino) { lock.withLock { changes &+= 1; entries.removeValue(forKey: ino) } }

    /// Applies a change to the file's entry: a fresh one keeps its age (what it says of other
    /// names is as old as it was), a missing or stale one starts over knowing only this change.
    private func apply(_ ino: Ino, _ change: (inout Entry) -> Void) {
        lock.withLock {
            changes &+= 1
            var e = fresh(ino) ?? Entry(at: Date(), values: [:], complete: false)
            change(&e)
            if Self.bytes(e.values) > Self.maxBytesPerFile {
                entries.removeValue(forKey: ino)
                return
            }
            makeRoom()
            entries[ino] = e
        }
    }

    private func makeRoom() {
        guard entries.count >= Self.maxEntries else { return }
        let now = Date()
        entries = entries.filter { now.timeIntervalSince($0.value.at) < maxAge }
        if entries.count >= Self.maxEntries { entries.removeAll(keepingCapacity: true) }
    }
}
