import CairnClient
import CairnCore
import CairnProtocol
import CSys
import Dispatch
import Foundation
import Synchronization

/// What every open file and operation of one mount shares.
final class FSContext: @unchecked Sendable {
    let tracker: TrackerClient
    let chunks: ChunkTransfer
    let options: MountOptions
    /// The mount-wide cap on chunk uploads in flight (and so on write-buffer memory).
    let uploadGate: DispatchSemaphore
    /// Chunk buffers freed by uploads, for the next large write. A writer takes one as an
    /// upload gives one back, so two cover a sequential stream; the limit is what stays idle.
    let chunkBuffers: ChunkBuffers
    private let lock = NSLock()
    /// mtime and size last seen at close or open: unchanged content keeps the kernel's page cache.
    private var contentSeen: [Ino: (Int64, Int64)] = [:]
    /// Attributes the tracker just answered this mount's own changes with (create, setattr,
    /// commit, and the directories of creates, unlinks and renames). The kernel drops its copy
    /// after each change and asks at once (rsync: after write, utimes, chmod); these answer it
    /// within the attribute timeout, the staleness the kernel's own cache already allows.
    let recentAttributes: RecentAttributes
    /// Listings of the directories this mount works in (see `DirectoryCache`).
    let listings: DirectoryCache
    /// Custom metadata of the files this mount works with (see `XattrCache`).
    let xattrs: XattrCache
    /// Where each file's first chunk was when last seen here, to warm its local replica while
    /// an open asks the tracker for the current layout (see `LocalReplicas.warm`).
    let firstChunks = FirstChunks()
    /// Which files to warm ahead of a reader working through a directory (`SiblingReadAhead`).
    let siblingReadAhead = SiblingReadAhead()
    /// Layouts opens may use without asking the tracker (see `LeasedLayouts`).
    let leases: LeasedLayouts?
    /// Files whose commit, sent without waiting at their close, the tracker refused.
    let unstoredCommits = UnstoredCommits()

    /// Gives back what this mount keeps for its next large transfers, then the allocator's free
    /// memory (see `IdleMemoryRelease`).
    func releaseKeptMemory() {
        chunkBuffers.removeAll()
        chunks.local?.releaseKeptBuffers()
        _ = malloc_trim(0)
    }

    init(tracker: TrackerClient, options: MountOptions) {
        self.tracker = tracker
        // Data becomes durable at fsync, fsyncdir and unmount, as on a local file system.
        self.chunks = ChunkTransfer(tracker: tracker, deferred: DeferredWrites(), local: options.localReads || options.localWrites ? LocalReplicas(reads: options.localReads, writes: options.localWrites) : nil)
        self.options = options
        self.uploadGate = DispatchSemaphore(value: max(1, options.writeBuffers))
        self.chunkBuffers = ChunkBuffers(limit: 2)
        self.recentAttributes = RecentAttributes(maxAge: options.attrTimeout)
        let leases = options.leases && tracker.trackers.count == 1 ? LeasedLayouts(tracker: tracker) : nil
        self.leases = leases
        self.listings = DirectoryCache(maxAge: options.entryTimeout, leaseGeneration: { leases?.heldGeneration() })
        self.xattrs = XattrCache(maxAge: options.xattrTimeout ?? options.attrTimeout)
    }

    deinit { leases?.stop() }

    /// Attributes this mount can answer with: fresh ones, or, for an inode it created under a
    /// delegation that still lasts, the last it gave it, however old — nobody else can have
    /// changed it (the tracker recalls the delegation first). A tree copy's last pass over its
    /// directories (rsync sets their times) then asks the tracker nothing.
    func knownAttributes(_ ino: Ino) -> WireAttributes? {
        if let fresh = recentAttributes.fresh(ino) { return fresh }
        let recent = recentAttributes
        return leases?.delegations.whileHeld(file: ino, []) { recent.latest(ino) } ?? nil
    }

    /// The answer to a change sent without waiting: its directory's attributes (`parent_…`) as
    /// the tracker had them then, kept only where this mount remembers none — what it has is
    /// its own, and newer (rsync's setting of a directory's times, made after a create there,
    /// must not be undone by the create's answer). Runs on the pipeline's thread: it must not
    /// take the delegations' lock (a sender may hold it, waiting for this thread).
    func rememberAnsweredDirectory(_ reply: Args) {
        guard let d = WireAttributes(reply, prefix: "parent_"), recentAttributes.latest(d.ino) == nil else { return }
        recentAttributes.remember(d)
    }

    func rememberContent(ino: Ino, _ a: WireAttributes) { lock.withLock { contentSeen[ino] = (a.mtime, a.size) } }

    /// True when the file is as it was when last seen, so cached pages are still right.
    func contentUnchanged(ino: Ino, _ a: WireAttributes) -> Bool {
        lock.withLock { contentSeen[ino].map { $0 == (a.mtime, a.size) } ?? false }
    }
}

/// See `FSContext.recentAttributes`. Keyed by tracker inode; directories and other inodes
/// apart, because every namespace change drops all of the latter (on each create or rename:
/// it must cost nothing per remembered directory).
final class RecentAttributes: @unchecked Sendable {
    private typealias Entry = (at: Date, attributes: WireAttributes)
    private let lock = NSLock()
    private var directories: [Ino: Entry] = [:]
    private var others: [Ino: Entry] = [:]
    let maxAge: TimeInterval

    init(maxAge: TimeInterval) { self.maxAge = maxAge }

    /// Past this many, all are dropped (a tree copy's worth: what was made here under a
    /// delegation is answered from here for as long as it lasts, see `latest`).
    static let capacity = 1 << 16

    func remember(_ a: WireAttributes) {
        guard maxAge > 0 else { return }
        lock.withLock {
            if directories.count + others.count > Self.capacity { directories.removeAll(); others.removeAll() }
            if a.isDirectory { directories[a.ino] = (Date(), a) } else { others[a.ino] = (Date(), a) }
        }
    }

    func fresh(_ ino: Ino) -> WireAttributes? {
        lock.withLock {
            guard let e = directories[ino] ?? others[ino], Date().timeIntervalSince(e.at) < maxAge else { return nil }
            return e.attributes
        }
    }

    /// The last remembered, however old: only for an inode nobody else can have changed since
    /// (`ClusterFS.knownAttributes`).
    func latest(_ ino: Ino) -> WireAttributes? { lock.withLock { (directories[ino] ?? others[ino])?.attributes } }

    func forgetAll() { lock.withLock { directories.removeAll(); others.removeAll() } }

    /// Before a change to one inode's own attributes (its custom metadata: a new ctime).
    func forget(_ ino: Ino) { lock.withLock { _ = directories.removeValue(forKey: ino) ?? others.removeValue(forKey: ino) } }

    /// Before a change to the namespace: every file (a link count may change through a name
    /// this mount cannot see) and the inodes the change names. Other directories keep theirs:
    /// a directory changes only through its own entries, and every such call answers with it.
    func forget(filesAnd inos: [Ino]) {
        lock.withLock {
            others.removeAll(keepingCapacity: true)
            for ino in inos { directories.removeValue(forKey: ino) }
        }
    }
}

/// The first chunk of files' layouts as last seen (at open or commit). Only a hint: every read
/// uses the layout its open fetched; a hint that turned stale warms a blob nobody reads.
final class FirstChunks: @unchecked Sendable {
    private let lock = NSLock()
    private var chunks: [Ino: FileLayout.Chunk] = [:]
    static let capacity = 16384

    func remember(_ layout: FileLayout) {
        guard let first = layout.chunk(at: 0) else { return }
        lock.withLock {
            if chunks.count >= Self.capacity { chunks.removeAll(keepingCapacity: true) }
            chunks[layout.attributes.ino] = first
        }
    }

    func chunk(_ ino: Ino) -> FileLayout.Chunk? { lock.withLock { chunks[ino] } }
}

/// Files whose first commit went to the tracker without waiting (`OpenFile`) and was refused:
/// the next fsync of each fails with EIO, once, as a local file system reports a write it
/// could not make after the close had returned.
final class UnstoredCommits: Sendable {
    private let inodes = Mutex<Set<Ino>>([])
    func failed(_ ino: Ino) { _ = inodes.withLock { $0.insert(ino) } }
    /// True (once) when `ino`'s content was not stored.
    func take(_ ino: Ino) -> Bool { inodes.withLock { $0.remove(ino) != nil } }
}
