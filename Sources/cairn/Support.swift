import ArgumentParser
import CairnClient
import CairnMetadata
import CairnProtocol
import CairnTransfer
import Foundation

/// `--tracker HOST:PORT` (repeatable), or CAIRN_TRACKER (comma-separated), or 127.0.0.1:7001.
struct TrackerOptions: ParsableArguments {
    @Option(name: .long, help: "Tracker address HOST:PORT, or the path of a tracker's Unix socket (repeatable, tried in order; default: $CAIRN_TRACKER or 127.0.0.1:7001).")
    var tracker: [String] = []

    var addresses: [String] {
        if !tracker.isEmpty { return tracker }
        if let env = ProcessInfo.processInfo.environment["CAIRN_TRACKER"], !env.isEmpty {
            return env.split(separator: ",").map(String.init)
        }
        return ["127.0.0.1:7001"]
    }

    func client() -> TrackerClient { TrackerClient(trackers: addresses) }
}

/// A command that could not do its work (a file it cannot open, a folder it cannot write):
/// said in one line, without the usage text that `ValidationError` (a malformed command
/// line) prints after its message.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs a command body, turning failures into one clear line on stderr and exit status 1.
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do { return try body() }
    catch let e as ExitCode { throw e }
    catch let e as ValidationError { throw e }
    catch {
        FileHandle.standardError.write(Data("cairn: \(describe(error))\n".utf8))
        throw ExitCode(1)
    }
}

func reportingErrors<T>(_ body: () async throws -> T) async throws -> T {
    do { return try await body() }
    catch let e as ExitCode { throw e }
    catch let e as ValidationError { throw e }
    catch {
        FileHandle.standardError.write(Data("cairn: \(describe(error))\n".utf8))
        throw ExitCode(1)
    }
}

func describe(_ error: any Error) -> String {
    switch error {
    case let e as ProtocolError: "\(e.text) [\(e.code)]"
    case let e as TransferError: "\(e.url): \(e.reason)"
    case let e as StoreError: e.message
    default: "\(error)"
    }
}

/// Reads the cluster secret from a file or CAIRN_SECRET.
func loadSecret(file: String?) throws -> String? {
    if let file {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw CommandFailure("cannot read the secret file \(file)")
        }
        let s = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !s.isEmpty else { throw CommandFailure("the secret file \(file) is empty") }
        return s
    }
    if let env = ProcessInfo.processInfo.environment["CAIRN_SECRET"], !env.isEmpty { return env }
    return nil
}

/// Splits HOST:PORT.
func splitAddress(_ s: String, defaultPort: Int) throws -> (String, Int) {
    guard let colon = s.lastIndex(of: ":") else { return (s, defaultPort) }
    guard let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port) else {
        throw ValidationError("\(s) is not HOST:PORT")
    }
    let host = String(s[..<colon])
    return (host.isEmpty ? "127.0.0.1" : host, port)
}

func printJSON(_ value: Any) {
    if let data = try? JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys]) {
        print(String(decoding: data, as: UTF8.self))
    }
}

func humanBytes(_ n: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n), u = 0
    while v >= 1024, u < units.count - 1 { v /= 1024; u += 1 }
    return u == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[u])
}
