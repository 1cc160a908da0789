import CairnClient
import CairnProtocol
import CairnTransfer
import Foundation

/// A real cluster for tests: one tracker and N storage nodes, each its own `cairn` process on
/// free loopback ports, under a fresh temporary folder (never the defaults `cairn up` uses).
public final class TestCluster: @unchecked Sendable {
    public let root: String
    public let trackerPort: Int
    public var nodePorts: [Int]
    public let secret: String?
    public private(set) var tracker: Process?
    public private(set) var nodes: [Process?]
    public let client: TrackerClient
    /// Extra arguments for the tracker and for every storage node.
    public let trackerArgs: [String]
    public let nodeArgs: [String]

    public static var binary: String {
        // The test bundle sits beside the built executables.
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("cairn").path), dir.path != "/" {
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("cairn").path
    }

    /// A port free now that is none of `taken`: each pick closes its socket before the next, so
    /// the kernel may hand the same port out twice (a node once got the tracker's port).
    public static func freePort(avoiding taken: [Int]) -> Int {
        while true {
            let p = freePort()
            if !taken.contains(p) { return p }
        }
    }

    public static func freePort() -> Int {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(s) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    public init(nodes count: Int = 3, secret: String? = nil, trackerArgs: [String] = [], nodeArgs: [String] = [],
                waitForNodes: Int? = nil) throws {
        self.trackerArgs = trackerArgs
        self.nodeArgs = nodeArgs
        root = FileManager.default.temporaryDirectory.appendingPathComponent("cairn-test-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        var ports = [Self.freePort()]
        for _ in 0..<count { ports.append(Self.freePort(avoiding: ports)) }
        trackerPort = ports[0]
        nodePorts = Array(ports.dropFirst())
        self.secret = secret
        nodes = Array(repeating: nil, count: count)
        client = TrackerClient(trackers: ["127.0.0.1:\(trackerPort)"], timeoutSeconds: 60)
        if let secret { try secret.write(toFile: root + "/secret", atomically: true, encoding: .utf8) }
        try startTracker()
        for i in 0..<count { try startNode(i) }
        try waitForWriteableDevices(waitForNodes ?? count)
        _ = try client.call("create_domain", [("domain", "test")])
    }

    public var trackerAddress: String { "127.0.0.1:\(trackerPort)" }
    /// The tracker's Unix socket (`--socket`), which mounts use first, as under `cairn up`.
    public var trackerSocket: String { root + "/tracker.sock" }

    public func spawn(_ args: [String], log: String, withSecret: Bool = true) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = args + (secret != nil && withSecret ? ["--secret-file", root + "/secret"] : [])
        FileManager.default.createFile(atPath: root + "/" + log, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: root + "/" + log))
        h.seekToEndOfFile()
        p.standardOutput = h
        p.standardError = h
        try p.run()
        return p
    }

    public func startTracker() throws {
        tracker = try spawn(["tracker", "--db", root + "/tracker.db", "--listen", trackerAddress, "--socket", trackerSocket,
                             "--poll-interval", "0.5", "--leases"] + trackerArgs, log: "tracker.log")
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if (try? client.call("noop")) != nil { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw TestFailure("tracker did not start; log: \(log("tracker.log"))")
    }

    public func startNode(_ i: Int) throws {
        nodes[i] = try spawn(["storage", "--listen", "127.0.0.1:\(nodePorts[i])", "--data", root + "/node\(i)", "--tracker", trackerAddress,
                              "--name", "node\(i)"] + nodeArgs, log: "node\(i).log")
    }

    public func waitForWriteableDevices(_ n: Int, timeout: TimeInterval = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let r = try? client.call("get_devices") {
                let count = Int(r.int("devices") ?? 0)
                let ok = (0..<count).filter { r["dev\($0 + 1)_observed_state"] == "writeable" && r["dev\($0 + 1)_status"] == "alive" }.count
                if ok >= n { return }
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        let states = (try? client.call("get_devices")).map { r in
            (0..<Int(r.int("devices") ?? 0)).map { "dev\(r["dev\($0 + 1)_devid"] ?? "?"):\(r["dev\($0 + 1)_status"] ?? "?")/\(r["dev\($0 + 1)_observed_state"] ?? "?")" }.joined(separator: " ")
        } ?? "tracker not answering"
        let nodeLogs = (0..<nodes.count).map { "node\($0): \(log("node\($0).log").suffix(600))" }.joined(separator: "\n")
        throw TestFailure("only some of \(n) devices became writeable (\(states)); tracker log: \(log("tracker.log"))\n\(nodeLogs)")
    }

    /// Sends `signal` and waits for the process to end. A server that has not exited 15 s after a
    /// SIGTERM is killed (and said so on stderr): a test run must never hang on a stuck shutdown.
    public func kill(_ p: Process?, signal: Int32 = SIGKILL) {
        guard let p, p.isRunning else { return }
        Foundation.kill(p.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(15)
        while p.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if p.isRunning {
            FileHandle.standardError.write(Data("cairn process \(p.processIdentifier) (\(p.arguments?.first ?? "?")) ignored signal \(signal) for 15 s; sending SIGKILL\n".utf8))
            Foundation.kill(p.processIdentifier, SIGKILL)
        }
        p.waitUntilExit()
    }

    public func killNode(_ i: Int) { kill(nodes[i]); nodes[i] = nil }

    /// Adds and starts one more storage node.
    public func addNode() throws -> Int {
        nodePorts.append(Self.freePort(avoiding: [trackerPort] + nodePorts))
        nodes.append(nil)
        try startNode(nodes.count - 1)
        return nodes.count - 1
    }

    public func restartTracker(signal: Int32 = SIGKILL) throws {
        kill(tracker, signal: signal)
        try startTracker()
    }

    public func log(_ name: String) -> String { (try? String(contentsOfFile: root + "/" + name, encoding: .utf8))?.suffix(3000).description ?? "" }

    /// Every `.fid` file under the nodes' data folders.
    public func blobFiles() -> [String] {
        let e = FileManager.default.enumerator(atPath: root)
        var out: [String] = []
        while let p = e?.nextObject() as? String { if p.hasSuffix(".fid") { out.append(p) } }
        return out
    }

    public func wait(_ what: String, timeout: TimeInterval = 20, until condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? condition()) == true { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw TestFailure("timed out waiting for \(what)")
    }

    /// Runs the `cairn` CLI against this cluster.
    @discardableResult
    public func cli(_ args: [String], stdin: Data? = nil) throws -> (status: Int32, out: Data, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(["CAIRN_TRACKER": trackerAddress]) { $1 }
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = inp
        try p.run()
        if let stdin { inp.fileHandleForWriting.write(stdin) }
        try inp.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, o, String(decoding: e, as: UTF8.self))
    }

    public func stop() {
        for n in nodes { kill(n, signal: SIGTERM) }
        kill(tracker, signal: SIGTERM)
        // CAIRN_TEST_KEEP=1 keeps the cluster's folder (logs, database, blobs) for a post-mortem.
        if ProcessInfo.processInfo.environment["CAIRN_TEST_KEEP"] == nil { try? FileManager.default.removeItem(atPath: root) }
    }

    deinit { stop() }
}

public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Deterministic pseudo-random bytes (the seed is in the test's failure message).
public func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed &+ 0x9E3779B97F4A7C15
    var out = [UInt8](repeating: 0, count: count)
    out.withUnsafeMutableBytes { raw in
        var i = 0
        while i < count {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            var v = state
            for _ in 0..<8 where i < count { raw[i] = UInt8(truncatingIfNeeded: v); v >>= 8; i += 1 }
        }
    }
    return out
}

public func writeTemp(_ bytes: [UInt8], dir: String, name: String) throws -> String {
    let path = dir + "/" + name
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}
