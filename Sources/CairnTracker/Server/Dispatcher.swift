import CairnCore
import CairnMetadata
import CairnProtocol
import CairnTransfer
import Foundation
import NIOCore

/// A command handler: decoded arguments in, reply pairs out; errors become `ERR` lines.
typealias CommandHandler = @Sendable (Args) async throws -> [(String, String)]

/// Routes request lines to command handlers and encodes their replies.
struct Dispatcher: Sendable {
    let handlers: [String: CommandHandler]
    let admin: AdminLines
    let stats: TrackerCounters
    let watchers: Watchers

    /// Commands whose writes never touch files, names or attributes (nodes' heartbeats, the
    /// cluster's layout, background work's bookkeeping): watching mounts keep their layouts.
    static let leaveLayouts: Set<String> = [
        "register_node", "create_host", "update_host", "delete_host", "create_device", "set_state", "set_weight",
        "set_server_setting", "replicate_now", "set_workers", "fs_sync", "fs_watch_ping", "fs_watch_ack",
        "fsck_start", "fsck_stop", "fsck_reset", "fsck_clearlog",
        "rebalance_set_policy", "rebalance_test", "rebalance_start", "rebalance_stop", "rebalance_reset",
    ]

    /// A watch's own pings and acks: they ask for nothing the mount could keep.
    static let watchUpkeep: Set<String> = ["fs_watch_ping", "fs_watch_ack"]

    /// The reply bytes for one line, or nil for an empty line (ignored, as MogileFS does).
    /// `connection`: the channel the line came on, which `fs_watch` turns into a watch.
    /// `folded`: how many quiet lines were folded into this one (`QuietFolding`); each gets
    /// its own reply, before this line's: the same one, except when a rename failed while
    /// the attribute changes folded into it were made (they are told so, with a bare OK).
    func answer(line: [UInt8], connection: WatchLink? = nil, folded: Int = 0) async -> [UInt8]? {
        guard let (reply, changeKept) = await answerOne(line: line, connection: connection) else { return nil }
        guard folded > 0 else { return reply }
        let theirs = changeKept ? Reply.ok([]).encode() : reply
        return Array([[UInt8]](repeating: theirs, count: folded).joined()) + reply
    }

    /// One line's reply, and whether it is a move's failure whose folded change was made.
    private func answerOne(line: [UInt8], connection: WatchLink?) async -> (reply: [UInt8], changeKept: Bool)? {
        switch Request.parse(line: line) {
        case .empty:
            return nil
        case .admin(let text):
            return (await admin.answer(text), false)
        case .malformed(let text):
            return (Reply.err(ProtocolError("unknown_command", "not a command: \(text)")).encode(), false)
        case .command(let name, let args):
            let callid = args.nonEmpty("callid")
            if let connection, let reply = answerWatch(name, args, on: connection) { return (reply.encode(callid: callid), false) }
            guard let handler = handlers[name] else {
                stats.countQuery(nil)
                return (Reply.err(ProtocolError("unknown_command", "unknown command \"\(name)\"")).encode(callid: callid), false)
            }
            // A watching mount's request: what it is told, it may keep; what it changes, it
            // knows, so its own changes are not sent back to it.
            let origin = args.nonEmpty("watcher").flatMap { UInt64($0) }
            if let origin, !Self.watchUpkeep.contains(name) { watchers.hold(origin) }
            let writes = Self.leaveLayouts.contains(name) ? nil : WriteLog()
            if watchers.delegating, !Self.leaveLayouts.contains(name) { await watchers.recall(CreateDelegations.scope(name, args), except: origin) }
            // Noted before it runs: a request naming the file from another client recalls first.
            let delegated = CreateDelegations.delegatedCreate(name, args)
            if let delegated { watchers.noteDelegatedCreate(delegated.ino, in: delegated.directory, directory: delegated.isDirectory, by: origin) }
            let started = ContinuousClock.now
            defer { stats.countAnswered(name, since: started) }
            let reply: Reply
            var changeKept = false
            do {
                let pairs = try await MetadataStore.$writeLog.withValue(writes) {
                    // `durable=0` (the mount): changes become visible now and durable at the next
                    // sync (fsync, syncfs, unmount), as a local file system's do.
                    try await MetadataStore.$deferDurability.withValue(args["durable"] == "0") { try await handler(args) }
                }
                // `quiet=1`: a bare OK for a change whose sender reads only success or failure (a
                // mount's setattrs and renames down its pipeline): none of the reply's encoding
                // here, nor its parsing there.
                reply = .ok(args["quiet"] == "1" ? [] : pairs)
            } catch {
                reply = .err(Self.protocolError(error))
                changeKept = error is MetadataStore.MoveFailedChangeKept
            }
            if let delegated, case .err = reply { watchers.noteDelegatedCreate(delegated.ino, in: delegated.directory, directory: delegated.isDirectory, by: origin, undo: true) }
            if let writes, writes.wrote { await watchers.invalidate(except: origin) }
            return (reply.encode(callid: callid), changeKept)
        }
    }

    /// `fs_watch` and `fs_unwatch`, which need the connection they came on; nil for any other command.
    private func answerWatch(_ name: String, _ args: Args, on connection: WatchLink) -> Reply? {
        switch name {
        case "fs_watch":
            stats.countQuery(name)
            guard watchers.granting else {
                return .err(ProtocolError("leases_off", "this tracker grants no leases (start it with --leases when it is the only tracker on its database); every open asks it"))
            }
            // A line its connection left when it closed: a watch nobody reads would hold up
            // every change until cut off.
            guard connection.channel.isActive else { return .err(ProtocolError("closed", "the connection closed")) }
            let id = watchers.register(connection.channel)
            connection.watcher = id
            return .ok([("watcher", String(id)), ("lease_ms", String(watchers.leaseMillis))])
        case "fs_unwatch":
            stats.countQuery(name)
            // Only on the watch's own connection: another client ending it would leave that
            // mount trusting what it holds with no one telling it of changes.
            guard let id = connection.watcher, args.nonEmpty("watcher") == String(id) else {
                return .err(ProtocolError("unknown_watcher", "fs_unwatch ends the watch of the connection it is sent on; this connection's is \(connection.watcher.map(String.init) ?? "none")"))
            }
            connection.watcher = nil
            watchers.release(id)
            return .ok([])
        default:
            return nil
        }
    }

    static func protocolError(_ error: any Error) -> ProtocolError {
        switch error {
        case let e as ProtocolError: e
        case let e as StoreError: ProtocolError(e.code, e.message)
        case let e as MetadataStore.MoveFailedChangeKept: protocolError(e.moveError)
        case let e as KeyError: ProtocolError("invalid_key", e.description)
        case let e as TransferError: ProtocolError("failure", e.description)
        default: ProtocolError("failure", "\(error)")
        }
    }
}

/// The connection a line came on, as far as watches need it.
final class WatchLink: @unchecked Sendable {
    let channel: any Channel
    /// Set once `fs_watch` made this connection a watch.
    var watcher: UInt64?
    init(channel: any Channel) { self.channel = channel }
}

/// Counters for `!stats`: all queries, and per command (which calls a workload makes).
final class TrackerCounters: @unchecked Sendable {
    private let lock = NSLock()
    private var queries = 0
    private var perCommand: [String: Int] = [:]
    let started = Date()
    /// `command`: a known command's name (unknown ones count only in the total).
    func countQuery(_ command: String?) {
        lock.withLock {
            queries += 1
            if let command { perCommand[command, default: 0] += 1 }
        }
    }
    /// Changes that waited for a lease to run out (a mount gone or cut off while it held layouts).
    private var leaseWaits = 0
    func countLeaseWait() { lock.withLock { leaseWaits += 1 } }
    /// Lines folded into the line before them (`QuietFolding`).
    private var folds = 0
    func countFolded() { lock.withLock { folds += 1 } }
    var foldedCount: Int { lock.withLock { folds } }
    /// Requests that took create delegations back from mounts first.
    private var recalls = 0
    func countRecall() { lock.withLock { recalls += 1 } }
    var recallCount: Int { lock.withLock { recalls } }
    var leaseWaitCount: Int { lock.withLock { leaseWaits } }
    var queryCount: Int { lock.withLock { queries } }
    var commandCounts: [(String, Int)] { lock.withLock { perCommand.sorted { $0.key < $1.key } } }
    /// Microseconds spent answering each command, from its parsed line to its reply (waits for
    /// the database and for mounts' lease acks included): with the counts, what a request of
    /// each kind costs under the load of the moment.
    private var perCommandMicros: [String: Int] = [:]
    /// A known command answered: counted with its time, under one lock (a request's only one).
    func countAnswered(_ command: String, since start: ContinuousClock.Instant) {
        let d = ContinuousClock.now - start
        let micros = Int(d.components.seconds) * 1_000_000 + Int(d.components.attoseconds / 1_000_000_000_000)
        lock.withLock {
            queries += 1
            perCommand[command, default: 0] += 1
            perCommandMicros[command, default: 0] += micros
        }
    }
    var commandMicros: [(String, Int)] { lock.withLock { perCommandMicros.sorted { $0.key < $1.key } } }
}

/// Reply helpers shared by the command groups.
extension Args {
    func require(_ key: String, _ code: String? = nil) throws -> String {
        guard let v = nonEmpty(key) else { throw ProtocolError(code ?? "no_\(key)", "missing argument \"\(key)\"") }
        return v
    }

    func requireInt(_ key: String) throws -> Int64 {
        guard let s = nonEmpty(key) else { throw ProtocolError("no_\(key)", "missing argument \"\(key)\"") }
        guard let v = Int64(s) else { throw ProtocolError("bad_params", "argument \"\(key)\" must be an integer, got \"\(s.prefix(40))\"") }
        return v
    }

    func optionalInt(_ key: String) throws -> Int64? {
        guard let s = nonEmpty(key) else { return nil }
        guard let v = Int64(s) else { throw ProtocolError("bad_params", "argument \"\(key)\" must be an integer, got \"\(s.prefix(40))\"") }
        return v
    }
}
