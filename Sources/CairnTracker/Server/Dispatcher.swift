import CairnCore
import CairnMetadata
import CairnProtocol
import CairnTransfer
import Foundation

/// A command handler: decoded arguments in, reply pairs out; errors become `ERR` lines.
typealias CommandHandler = @Sendable (Args) async throws -> [(String, String)]

/// Routes request lines to command handlers and encodes their replies.
struct Dispatcher: Sendable {
    let handlers: [String: CommandHandler]
    let admin: AdminLines
    let stats: TrackerCounters

    /// The reply bytes for one line, or nil for an empty line (ignored, as MogileFS does).
    func answer(line: [UInt8]) async -> [UInt8]? {
        switch Request.parse(line: line) {
        case .empty:
            return nil
        case .admin(let text):
            return await admin.answer(text)
        case .malformed(let text):
            return Reply.err(ProtocolError("unknown_command", "not a command: \(text)")).encode()
        case .command(let name, let args):
            let callid = args.nonEmpty("callid")
            stats.countQuery(handlers[name] == nil ? nil : name)
            guard let handler = handlers[name] else {
                return Reply.err(ProtocolError("unknown_command", "unknown command \"\(name)\"")).encode(callid: callid)
            }
            do {
                // `durable=0` (the mount): changes become visible now and durable at the next
                // sync (fsync, syncfs, unmount), as a local file system's do.
                if args["durable"] == "0" {
                    return Reply.ok(try await MetadataStore.$deferDurability.withValue(true) { try await handler(args) }).encode(callid: callid)
                }
                return Reply.ok(try await handler(args)).encode(callid: callid)
            } catch {
                return Reply.err(Self.protocolError(error)).encode(callid: callid)
            }
        }
    }

    static func protocolError(_ error: any Error) -> ProtocolError {
        switch error {
        case let e as ProtocolError: e
        case let e as StoreError: ProtocolError(e.code, e.message)
        case let e as KeyError: ProtocolError("invalid_key", e.description)
        case let e as TransferError: ProtocolError("failure", e.description)
        default: ProtocolError("failure", "\(error)")
        }
    }
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
    var queryCount: Int { lock.withLock { queries } }
    var commandCounts: [(String, Int)] { lock.withLock { perCommand.sorted { $0.key < $1.key } } }
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
