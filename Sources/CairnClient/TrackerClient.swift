import CairnProtocol
import CairnTransfer
import Foundation
import Synchronization

/// A client of one or more trackers: pooled connections, failover to the next tracker when
/// one does not answer. Safe to share between threads.
public final class TrackerClient: Sendable {
    public let trackers: [String]
    private struct Pooled: @unchecked Sendable { let conn: TrackerConnection }
    private let idle = Mutex<[Pooled]>([])
    /// The index of the tracker connections go to first; shared with the pipeline.
    private let preferred = PreferredTracker()
    public let timeoutSeconds: Int
    /// Arguments added to every call (the mount's `durable=0`).
    public let commonArgs: [(String, String)]
    /// Arguments added to every call while set (the mount's `watcher=`, see `LeasedLayouts`).
    private let sessionArgs = Mutex<[(String, String)]>([])
    /// Changes sent without waiting for their answers (`send(_:_:answered:)`); its thread starts at the first.
    private let pipeline: TrackerPipeline

    public init(trackers: [String], timeoutSeconds: Int = 30, commonArgs: [(String, String)] = []) {
        self.trackers = trackers.isEmpty ? ["127.0.0.1:7001"] : trackers
        self.timeoutSeconds = timeoutSeconds
        self.commonArgs = commonArgs
        let addresses = self.trackers
        let preferred = self.preferred
        pipeline = TrackerPipeline(timeoutSeconds: timeoutSeconds, describe: addresses.joined(separator: ",")) {
            try Self.connect(addresses, preferred: preferred, timeoutSeconds: timeoutSeconds)
        }
    }

    /// Sends a command; a tracker `ERR` throws `ProtocolError`, no reachable tracker throws `TransferError`.
    /// Waits first until every change sent with `send` is answered, so this call sees them.
    public func call(_ command: String, _ args: [(String, String)] = []) throws -> Args {
        try pipeline.waitUntilAnswered()
        var lastError: (any Error)?
        // A pooled connection may have been closed by the tracker since: one retry on a fresh one.
        for attempt in 0..<(trackers.count + 1) {
            let conn: TrackerConnection
            do { conn = try connection(fresh: attempt > 0) } catch { lastError = error; rotate(); continue }
            do {
                let result = try conn.call(command, withAddedArguments(args))
                idle.withLock { if $0.count < 16 { $0.append(Pooled(conn: conn)) } }
                return try result.get()
            } catch let e as ProtocolError {
                throw e
            } catch {
                lastError = error
                if attempt > 0 { rotate() }
            }
        }
        throw lastError ?? TransferError(url: trackers.joined(separator: ","), reason: "no tracker answered")
    }

    /// Waits until every request sent with `send` is answered (as `call` does first); at
    /// once when none is outstanding.
    public func settle() throws { try pipeline.waitUntilAnswered() }

    /// Requests sent with `send` still waiting for their answers: a query sent behind changes
    /// waits for them (and their transactions).
    public var unanswered: Int { pipeline.waiting }

    /// Sends a change without waiting for its answer: returns once a tracker's socket holds it
    /// (see `TrackerPipeline`, which also says why it must be idempotent). `answered` gets the
    /// tracker's answer later, on another thread, and must not call the tracker.
    public func send(_ command: String, _ args: [(String, String)], answered: @escaping @Sendable (Result<Args, ProtocolError>) -> Void) throws {
        try pipeline.send(Request.encode(command: command, args: withAddedArguments(args)), answered: answered)
    }

    /// `args` plus the common and session arguments it does not name itself (a repeated key
    /// reaches the tracker as one value, joined: an `fs_watch_ack` naming its watcher was
    /// refused as "6\06" and every recall waited out its ack timeout).
    private func withAddedArguments(_ args: [(String, String)]) -> [(String, String)] {
        let session = sessionArgs.withLock { $0 }
        if commonArgs.isEmpty && session.isEmpty { return args }
        return args + (commonArgs + session).filter { added in !args.contains { $0.0 == added.0 } }
    }

    /// Sets (or, with nil, removes) an argument sent with every call from now on.
    public func setSessionArgument(_ key: String, _ value: String?) {
        sessionArgs.withLock { args in
            args.removeAll { $0.0 == key }
            if let value { args.append((key, value)) }
        }
    }

    private func connection(fresh: Bool) throws -> TrackerConnection {
        if !fresh, let p = idle.withLock({ $0.popLast() }) { return p.conn }
        if fresh { idle.withLock { $0.removeAll() } }
        return try Self.connect(trackers, preferred: preferred, timeoutSeconds: timeoutSeconds)
    }

    /// A new connection to the preferred tracker, or the next one that answers (which becomes preferred).
    private static func connect(_ trackers: [String], preferred: PreferredTracker, timeoutSeconds: Int) throws -> TrackerConnection {
        let start = preferred.index.load(ordering: .relaxed)
        var lastError: (any Error)?
        for i in 0..<trackers.count {
            let index = (start + i) % trackers.count
            do {
                let c = try TrackerConnection(address: trackers[index], timeoutSeconds: timeoutSeconds)
                preferred.index.store(index, ordering: .relaxed)
                return c
            } catch { lastError = error }
        }
        throw lastError!
    }

    private func rotate() { preferred.index.wrappingAdd(1, ordering: .relaxed) }

    final class PreferredTracker: Sendable { let index = Atomic<Int>(0) }
}
