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
    private let preferred = Atomic<Int>(0)
    public let timeoutSeconds: Int
    /// Arguments added to every call (the mount's `durable=0`).
    public let commonArgs: [(String, String)]
    /// Arguments added to every call while set (the mount's `watcher=`, see `LeasedLayouts`).
    private let sessionArgs = Mutex<[(String, String)]>([])

    public init(trackers: [String], timeoutSeconds: Int = 30, commonArgs: [(String, String)] = []) {
        self.trackers = trackers.isEmpty ? ["127.0.0.1:7001"] : trackers
        self.timeoutSeconds = timeoutSeconds
        self.commonArgs = commonArgs
    }

    /// Sends a command; a tracker `ERR` throws `ProtocolError`, no reachable tracker throws `TransferError`.
    public func call(_ command: String, _ args: [(String, String)] = []) throws -> Args {
        var lastError: (any Error)?
        // A pooled connection may have been closed by the tracker since: one retry on a fresh one.
        for attempt in 0..<(trackers.count + 1) {
            let conn: TrackerConnection
            do { conn = try connection(fresh: attempt > 0) } catch { lastError = error; rotate(); continue }
            do {
                let session = sessionArgs.withLock { $0 }
                let result = try conn.call(command, commonArgs.isEmpty && session.isEmpty ? args : args + commonArgs + session)
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
        let start = preferred.load(ordering: .relaxed)
        var lastError: (any Error)?
        for i in 0..<trackers.count {
            let index = (start + i) % trackers.count
            do {
                let c = try TrackerConnection(address: trackers[index], timeoutSeconds: timeoutSeconds)
                preferred.store(index, ordering: .relaxed)
                return c
            } catch { lastError = error }
        }
        throw lastError!
    }

    private func rotate() { preferred.wrappingAdd(1, ordering: .relaxed) }
}
