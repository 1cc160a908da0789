import CairnClient
import CairnCore
import CairnProtocol
import CairnTransfer
import Foundation

/// File layouts this mount opens files with without asking the tracker, under a lease: a watch
/// connection (`fs_watch`) over which the tracker tells this mount to drop them (`INVAL`)
/// before any change made by someone else is acknowledged (the tracker's `Watchers`). So
/// close-to-open holds while a cold open of a file seen before costs no round trip.
///
/// - Kept: layouts fetched by opens and those this mount's commits produced, while the lease is
///   current (the tracker answered a ping sent less than the lease ago).
/// - Dropped: all of them at every `INVAL`, when the watch is lost, and the inodes this mount
///   changes itself (the tracker does not send a mount its own changes).
/// - An answer is kept only if nothing was dropped while it was on its way (`epoch`): a layout
///   read before a change must not outlive the change's `INVAL`.
final class LeasedLayouts: @unchecked Sendable {
    static let capacity = 65_536
    private let lock = NSLock()
    private var layouts: [Ino: FileLayout] = [:]
    private var epoch: UInt64 = 0
    /// Bumped only by the tracker's `INVAL`s and a lost watch, not by this mount's own changes
    /// (which `DirectoryCache` applies to its listings itself).
    private var invalidations: UInt64 = 0
    /// Inodes this mount dropped (it changed them) → the epoch then, and the epoch of the last
    /// drop of everything: what `keep(_:unlessDroppedSince:)` checks. Bounded: at the bound the
    /// map starts over as if everything had been dropped.
    private var droppedAt: [Ino: UInt64] = [:]
    private var allDroppedAt: UInt64 = 0
    static let maxDropped = 4096
    private var trustedUntil = ContinuousClock.now
    private var stopped = false
    private var refusalReported = false  // the watch thread's own
    /// A watch could not be started, and that was said (once until one is up; the watch thread's own).
    private var startFailureReported = false
    /// Signalled by `stop()` (ends the watch thread's pauses) and by the thread when it is done.
    private let wake = DispatchSemaphore(value: 0), finished = DispatchSemaphore(value: 0)
    /// Signalled once, when the first watch is up or its first try failed (`init` waits for it).
    private let firstTry = DispatchSemaphore(value: 0)
    private var firstTryDone = false
    /// How long `init` waits for the first watch.
    static let firstWatchWait: DispatchTimeInterval = .seconds(3)
    private let tracker: TrackerClient
    /// Directories this watch may create files in on its own; recalled over the watch.
    let delegations: DelegatedDirectories

    init(tracker: TrackerClient) {
        self.tracker = tracker
        delegations = DelegatedDirectories(tracker: tracker)
        let thread = Thread { [self] in watchUntilStopped() }
        thread.name = "cairn-lease"
        thread.start()
        // The mount comes up with its watch: a copy started right after it gets cached
        // listings and create delegations from its first file, not once the watch catches up.
        _ = firstTry.wait(timeout: .now() + Self.firstWatchWait)
    }

    private func firstTryEnded() {
        let first = lock.withLock { () -> Bool in
            defer { firstTryDone = true }
            return !firstTryDone
        }
        if first { firstTry.signal() }
    }

    /// Ends the watch; on a clean unmount the tracker is told (`fs_unwatch`), so others' changes
    /// need not wait for this mount's lease to run out. Returns within about a second.
    func stop() {
        let first = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        wake.signal()
        _ = finished.wait(timeout: .now() + 1.5)
    }

    /// The layout to open `ino` with, if this mount holds one and its lease is current.
    func layout(_ ino: Ino) -> FileLayout? {
        lock.withLock { ContinuousClock.now < trustedUntil ? layouts[ino] : nil }
    }

    /// Call before asking the tracker for a layout to keep; pass the result to `keep`.
    func beginFetch() -> UInt64 { lock.withLock { epoch } }

    /// Keeps `layout` unless something was dropped since `beginFetch` (then any older copy goes too).
    func keep(_ layout: FileLayout, since: UInt64) {
        lock.withLock {
            guard epoch == since, ContinuousClock.now < trustedUntil else { layouts.removeValue(forKey: layout.attributes.ino); return }
            if layouts.count >= Self.capacity { layouts.removeAll() }
            layouts[layout.attributes.ino] = layout
        }
    }

    /// Keeps `layout` (an answer to a change sent without waiting, `OpenFile`'s first commit)
    /// unless its inode, or everything, was dropped since `beginFetch` answered `since`: other
    /// inodes' changes in between (the next files' creates) do not void it.
    func keep(_ layout: FileLayout, unlessDroppedSince since: UInt64) {
        lock.withLock {
            let ino = layout.attributes.ino
            guard since >= allDroppedAt, droppedAt[ino].map({ $0 <= since }) ?? true, ContinuousClock.now < trustedUntil else { return }
            if layouts.count >= Self.capacity { layouts.removeAll() }
            layouts[ino] = layout
        }
    }

    /// After this mount changed `ino` (or, with nil, something it cannot name).
    func forget(_ ino: Ino?) {
        lock.withLock {
            epoch += 1
            if let ino {
                layouts.removeValue(forKey: ino)
                if droppedAt.count >= Self.maxDropped { droppedAt.removeAll(); allDroppedAt = epoch }
                droppedAt[ino] = epoch
            } else {
                layouts.removeAll()
                allDroppedAt = epoch
            }
        }
    }

    /// While the lease is current, the count of invalidations so far: what a listing fetched
    /// now is held under (`DirectoryCache`); nil when nothing may be held.
    func heldGeneration() -> UInt64? {
        lock.withLock { ContinuousClock.now < trustedUntil ? invalidations : nil }
    }

    /// `trusting` false: the watch ended or begins anew, and its delegations with it.
    private func dropAll(trusting: Bool) {
        lock.withLock {
            epoch += 1
            invalidations += 1
            allDroppedAt = epoch
            layouts.removeAll()
            if !trusting { trustedUntil = .now }
        }
        if !trusting { delegations.dropAll() }
    }

    // MARK: the watch

    private func watchUntilStopped() {
        defer { finished.signal() }
        while !lock.withLock({ stopped }) {
            do { try watch() } catch {
                // Not said at each retry: once, until a watch is up again.
                if !startFailureReported {
                    startFailureReported = true
                    report("could not start a lease watch on \(tracker.trackers.first ?? "the tracker") (\(error)); opens ask the tracker until one is up, tried again every second")
                }
            }
            firstTryEnded()
            tracker.setSessionArgument("watcher", nil)
            dropAll(trusting: false)
            if !lock.withLock({ stopped }) { pause(seconds: 1) }
        }
    }

    /// Sleeps, but not past `stop()`: an unmount does not wait out a retry's pause.
    private func pause(seconds: Double) { _ = wake.wait(timeout: .now() + seconds) }

    /// One watch connection, until it fails or the mount stops.
    private func watch() throws {
        guard let address = tracker.trackers.first else { return }
        let conn = try TrackerConnection(address: address, timeoutSeconds: 5)
        let asked = ContinuousClock.now
        guard case .success(let r) = try conn.call("fs_watch", []), let id = r.int("watcher"), let ms = r.int("lease_ms") else {
            // A tracker without watches: opens ask it, as they did.
            if !refusalReported {
                refusalReported = true
                report("tracker \(address) grants no leases (start it with --leases when it is alone on its database); every open asks it")
            }
            firstTryEnded()
            pause(seconds: 30)
            return
        }
        // In this order: a fetch that begins after the drop carries `watcher=`, so the tracker
        // knows this mount may hold its answer.
        tracker.setSessionArgument("watcher", String(id))
        dropAll(trusting: false)
        lock.withLock { trustedUntil = asked + .milliseconds(ms) }
        startFailureReported = false
        firstTryEnded()
        // A watch that breaks (the tracker went away, the network failed) is said, as one that
        // the tracker ends is; only a clean stop at unmount is not.
        let why: String?
        do { why = try follow(conn, watcher: UInt64(id), leaseMillis: ms, since: asked) } catch { why = "\(error)" }
        if let why { report("lease watch \(id) on \(address) ended (\(why)); opens ask the tracker until a new one is up") }
    }

    /// Pings, drops what is held at each `INVAL` and acks it, until the mount stops (then says
    /// goodbye) or the watch breaks. Returns why it ended, nil for a clean stop.
    private func follow(_ conn: TrackerConnection, watcher id: UInt64, leaseMillis ms: Int64, since asked: ContinuousClock.Instant) throws -> String? {
        let lease = Duration.milliseconds(ms), pingEvery = lease / 4
        // Replies come in request order: for each request in flight, when its ping was sent
        // (nil for an ack).
        var inFlight: [ContinuousClock.Instant?] = []
        var lastPing = asked
        while !lock.withLock({ stopped }) {
            let now = ContinuousClock.now
            if now - lastPing >= pingEvery, !inFlight.contains(where: { $0 != nil }) {
                lastPing = now
                try conn.send(Request.encode(command: "fs_watch_ping", args: [("watcher", String(id))]))
                inFlight.append(now)
            }
            guard conn.lineReady(timeoutMillis: Int32(ms / 8)) else { continue }
            let line = try conn.readLine()
            if Self.isInvalidation(line) {
                dropAll(trusting: true)
                // "INVAL seq=N" has a request line's shape: command, then arguments.
                guard case .command(_, let args) = Request.parse(line: line), let seq = args.nonEmpty("seq") else {
                    return "an invalidation without its sequence number: \(String(decoding: line.prefix(80), as: UTF8.self))"
                }
                try conn.send(Request.encode(command: "fs_watch_ack", args: [("watcher", String(id)), ("seq", seq)]))
                inFlight.append(nil)
                continue
            }
            if line.starts(with: Self.recallPrefix) {
                guard case .command(_, let args) = Request.parse(line: line), let seq = args.nonEmpty("seq") else {
                    return "a recall without its sequence number: \(String(decoding: line.prefix(80), as: UTF8.self))"
                }
                let dirs = args.nonEmpty("dirs").map { $0.split(separator: ",").compactMap { Ino($0) } }
                delegations.recall(dirs) {
                    // Down the pipeline, behind every create made under them (`DelegatedDirectories`).
                    do {
                        try tracker.send("fs_watch_ack", [("watcher", String(id)), ("seq", seq)]) { _ in }
                    } catch {
                        report("could not ack the tracker's recall of create delegations (\(error)); it cuts this watch off")
                    }
                }
                continue
            }
            guard !inFlight.isEmpty else { return "a reply nothing asked for" }
            let sent = inFlight.removeFirst()
            guard case .success = Reply.parse(line: line) else { return "the tracker cut it off: \(String(decoding: line, as: UTF8.self))" }
            if let sent { lock.withLock { trustedUntil = sent + lease } }
        }
        dropAll(trusting: false)
        return try unwatch(id, on: conn, repliesOwed: inFlight.count)
            ? nil : "at unmount; the tracker did not confirm its end, so the next change waits out this lease once"
    }

    /// Tells the tracker this mount holds nothing any more (everything was dropped first);
    /// true once it confirmed. INVALs still arriving need no ack: ending the watch answers them.
    private func unwatch(_ id: UInt64, on conn: TrackerConnection, repliesOwed: Int) throws -> Bool {
        try conn.send(Request.encode(command: "fs_unwatch", args: [("watcher", String(id))]))
        var owed = repliesOwed + 1
        let deadline = ContinuousClock.now + .seconds(1)
        while owed > 0, ContinuousClock.now < deadline {
            guard conn.lineReady(timeoutMillis: 100) else { continue }
            let line = try conn.readLine()
            if Self.isInvalidation(line) || line.starts(with: Self.recallPrefix) { continue }
            owed -= 1
            if owed == 0, case .success = Reply.parse(line: line) { return true }
        }
        return false
    }

    private static func isInvalidation(_ line: [UInt8]) -> Bool { line.starts(with: Array("INVAL ".utf8)) }
    private static let recallPrefix = Array("RECALL ".utf8)

    /// Said once per event on the mount's standard error (its log).
    private func report(_ message: String) {
        FileHandle.standardError.write(Data("cairn mount: \(message)\n".utf8))
    }
}
