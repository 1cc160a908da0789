import ArgumentParser
import CairnClient
import CairnProtocol
import CairnTransfer
import Foundation

/// The quick start: a tracker on SQLite and N storage nodes on loopback (distinct hosts), all
/// under one data folder, with a `default` domain whose default class keeps 2 replicas.
/// Ctrl-C stops everything cleanly; running it again on the same folder brings every file back.
struct Up: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start a local cluster (tracker + storage nodes) under DATADIR.")

    @Argument(help: "Folder for the metadata database, the storage devices and the logs.") var dataDir: String
    @Option(help: "Number of storage nodes.") var nodes = 3
    @Option(help: "Tracker port on 127.0.0.1.") var port = 7001
    @Option(name: .customLong("storage-port"), help: "First storage node port on 127.0.0.1.") var storagePort = 7500
    @Option(help: "Mount the cluster at this directory (cairn mount).") var mount: String?

    func validate() throws {
        guard (1...32).contains(nodes) else { throw ValidationError("--nodes must be between 1 and 32") }
    }

    func run() throws {
        try reportingErrors {
            let root = URL(fileURLWithPath: dataDir).standardizedFileURL.path
            let logs = root + "/logs"
            try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
            let secretFile = root + "/secret"
            if !FileManager.default.fileExists(atPath: secretFile) {
                var bytes = [UInt8](repeating: 0, count: 32)
                for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }
                guard FileManager.default.createFile(atPath: secretFile, contents: Data(bytes.map { String(format: "%02x", $0) }.joined().utf8),
                                                     attributes: [.posixPermissions: 0o600]) else {
                    throw CommandFailure("cannot create the cluster secret \(secretFile); check that \(root) is writable and not full")
                }
            }
            let tracker = "127.0.0.1:\(port)"
            // The mount reaches the tracker over a Unix socket when its path can be one, else
            // over TCP. One address, not both: a mount given several trackers takes no leases
            // (it cannot know they are one).
            let socket = root + "/tracker.sock"
            let socketArgs = socket.utf8.count <= TrackerConnection.maxSocketPathBytes ? ["--socket", socket] : []
            let group = ProcessGroup(logs: logs)
            group.installSignalHandlers()
            do {
                try group.start(name: "tracker", ["tracker", "--db", root + "/tracker.db", "--listen", tracker, "--secret-file", secretFile, "--leases"]
                                                 + socketArgs)
                for i in 1...nodes {
                    try group.start(name: "node\(i)", ["storage", "--listen", "127.0.0.1:\(storagePort + i - 1)", "--data", root + "/node\(i)",
                                                       "--tracker", tracker, "--name", "node\(i)", "--secret-file", secretFile])
                }
                let client = TrackerClient(trackers: [tracker], timeoutSeconds: 5)
                try waitUntilReady(client: client, group: group)
                if let mount {
                    try group.start(name: "mount", ["mount", mount, "--tracker", socketArgs.isEmpty ? tracker : socket, "-f"])
                }
            } catch {
                // Nothing half-started stays behind holding the ports and the data folder.
                group.stopAll()
                throw error
            }
            say("""
            Cairn is up.
              tracker        \(tracker)   (metadata: \(root)/tracker.db)
            \((1...nodes).map { "  storage node\($0)   http://127.0.0.1:\(storagePort + $0 - 1)   (data: \(root)/node\($0))" }.joined(separator: "\n"))
            \(mount.map { "  mount          \($0)" } ?? "")
              logs           \(logs)
            Try:  \(ProcessGroup.executable) put default hello.txt /etc/hostname
                  \(ProcessGroup.executable) get default hello.txt
            Ctrl-C stops everything.
            """)
            let code = group.waitForStop()
            throw ExitCode(code)
        }
    }

    /// Waits for the tracker, the default domain and writeable devices on every node.
    func waitUntilReady(client: TrackerClient, group: ProcessGroup) throws {
        let deadline = Date().addingTimeInterval(60)
        var domainReady = false
        while Date() < deadline {
            if let dead = group.firstExited() {
                throw CommandFailure("\(dead) exited during start-up; see \(group.logs)/\(dead).log")
            }
            do {
                if !domainReady {
                    do { _ = try client.call("create_domain", [("domain", "default")]) }
                    catch let e as ProtocolError where e.code == "domain_exists" {}
                    domainReady = true
                }
                let r = try client.call("get_devices")
                let n = Int(r.int("devices") ?? 0)
                let writeable = (1...max(1, n)).filter { r["dev\($0)_observed_state"] == "writeable" && r["dev\($0)_status"] == "alive" }.count
                if writeable >= nodes { return }
            } catch {}
            Thread.sleep(forTimeInterval: 0.2)
        }
        throw CommandFailure("the cluster did not become ready within 60 s; see the logs in \(group.logs)")
    }
}

/// Child processes of `cairn up`: started from this same executable, logs to files, stopped
/// together with SIGTERM.
final class ProcessGroup: @unchecked Sendable {
    let logs: String
    private var children: [(name: String, process: Process)] = []
    private let lock = NSLock()
    private let stopSignal = DispatchSemaphore(value: 0)
    private var sources: [any DispatchSourceSignal] = []
    /// Set once `stopAll` has begun: a child then dying of the SIGTERM it was sent is no news.
    private var stopping = false

    init(logs: String) { self.logs = logs }

    static var executable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    func start(name: String, _ arguments: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.executable)
        p.arguments = arguments
        let logPath = logs + "/\(name).log"
        guard FileManager.default.createFile(atPath: logPath, contents: nil) else {
            throw CommandFailure("cannot create the log file \(logPath); check that its folder exists, is writable and is not full")
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        p.standardOutput = log
        p.standardError = log
        p.terminationHandler = { [weak self] proc in
            guard let self else { return }
            let asked = self.lock.withLock { self.stopping } && proc.terminationReason == .uncaughtSignal && proc.terminationStatus == SIGTERM
            if !asked, proc.terminationReason == .uncaughtSignal || proc.terminationStatus != 0 {
                FileHandle.standardError.write(Data("cairn up: \(name) exited (status \(proc.terminationStatus)); see \(logPath)\n".utf8))
            }
            self.stopSignal.signal()
        }
        try p.run()
        lock.withLock { children.append((name, p)) }
    }

    func firstExited() -> String? { lock.withLock { children.first { !$0.process.isRunning }?.name } }

    func installSignalHandlers() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { [weak self] in self?.stopSignal.signal() }
            s.resume()
            sources.append(s)
        }
    }

    /// Blocks until a signal arrives or a child exits, then stops all children (mount first).
    func waitForStop() -> Int32 {
        stopSignal.wait()
        stopAll()
        say("\nCairn stopped.")
        return 0
    }

    /// Stops every child still running, the last started (the mount) first.
    func stopAll() {
        let list = lock.withLock { stopping = true; return children }
        for c in list.reversed() where c.process.isRunning {
            c.process.terminate()
            let deadline = Date().addingTimeInterval(10)
            while c.process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            if c.process.isRunning { kill(c.process.processIdentifier, SIGKILL) }
        }
    }
}

/// Writes a line straight to stdout (unbuffered, so it shows when stdout is a file or pipe).
func say(_ text: String) { FileHandle.standardOutput.write(Data((text + "\n").utf8)) }
