import ArgumentParser
import CairnStorage
import CairnTracker
import CairnTransfer
import Foundation

struct TrackerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tracker", abstract: "Run a tracker (metadata in SQLite, MogileFS protocol).")

    @Option(help: "Path of the SQLite metadata database (created if missing).") var db: String
    @Option(help: "Address to listen on.") var listen = "127.0.0.1:7001"
    @Option(help: "Also listen on this Unix socket: clients on this machine (a mount: --tracker PATH) skip TCP.") var socket: String?
    @Option(name: .customLong("secret-file"), help: "File holding the cluster secret (or set CAIRN_SECRET).") var secretFile: String?
    @Option(name: .customLong("default-replicas"), help: "Replicas of the default class of new domains.") var defaultReplicas = 2
    @Option(name: .customLong("poll-interval"), help: "Seconds between usage polls of storage nodes.") var pollInterval = 2.0
    @Option(name: .customLong("background-bandwidth"), help: "MiB/s that background copies (replication, reaping, drain, rebalance, fsck repair) may use between nodes; 0 is unlimited.")
    var backgroundBandwidth = 0.0
    @Option(name: .customLong("dead-after"), help: "Mark a device dead after this many seconds unreachable and re-replicate its copies; 0 (default) never does. `cairn admin settings set maintenance on` suspends it.")
    var deadAfter: Int64 = 0
    @Flag(help: "Let mounts keep file layouts and listings between opens, told by this tracker when another client changes them (close-to-open holds). Only when this is the only tracker on its database.")
    var leases = false
    @Option(name: .customLong("lease-ms"), help: "With --leases: how long a mount may trust what it holds after its last ping this tracker answered, in ms; another client's change waits up to this long for a mount that stopped answering.")
    var leaseMs: Int64 = 2000

    func run() async throws {
        let (host, port) = try splitAddress(listen, defaultPort: 7001)
        guard backgroundBandwidth >= 0, deadAfter >= 0 else { throw ValidationError("--background-bandwidth and --dead-after must not be negative") }
        guard (100...600_000).contains(leaseMs) else { throw ValidationError("--lease-ms must be between 100 and 600000 (ms); \(leaseMs) given") }
        // Absolute, as clients name it (a tracker address starting with / is a socket).
        let socket = self.socket.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        if let socket, socket.utf8.count > TrackerConnection.maxSocketPathBytes {
            throw ValidationError("--socket \(socket) is longer than a Unix socket path may be (\(TrackerConnection.maxSocketPathBytes) bytes); choose a shorter path")
        }
        let config = TrackerConfig(databasePath: db, host: host, port: port, secret: try loadSecret(file: secretFile),
                                   defaultReplicas: defaultReplicas, pollInterval: pollInterval,
                                   backgroundBandwidth: Int64(backgroundBandwidth * 1_048_576), deadAfter: deadAfter, leases: leases,
                                   leaseMillis: leaseMs, socketPath: socket)
        try await reportingErrors {
            let tracker = try Tracker(config: config)
            try await tracker.run()
        }
    }
}

struct StorageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "storage", abstract: "Run a storage node over DIR/dev<N> devices.")

    @Option(help: "Address to listen on (and to announce to the tracker).") var listen = "127.0.0.1:7500"
    @Option(help: "Data folder holding the dev<N> device folders.") var data: String
    @Option(help: "Tracker to register with (repeatable).") var tracker: [String] = []
    @Option(help: "Node name (default: HOSTNAME-PORT).") var name: String?
    @Option(help: "Devices to create at first registration when DIR has none.") var devices = 1
    @Option(name: .customLong("secret-file"), help: "File holding the cluster secret (or set CAIRN_SECRET).") var secretFile: String?
    @Option(name: .customLong("scrub-rate"), help: "MiB/s the background scrub reads to verify checksums; 0 turns scrubbing off.") var scrubRate = 16.0
    @Option(name: .customLong("scrub-interval"), help: "Seconds from the start of one scrub pass over every blob to the next.") var scrubInterval = 86400.0
    @Option(help: "Size each device reports, in MiB (default: its file system's). For devices sharing one disk.") var capacity: Int64?
    @Option(name: .customLong("flush-interval"), help: "Seconds within which the mount's writes (fsynced at its fsync and unmount) are made durable anyway.") var flushInterval = 2.0

    func run() async throws {
        let (host, port) = try splitAddress(listen, defaultPort: 7500)
        guard scrubRate >= 0, scrubInterval > 0, (capacity ?? 1) > 0, flushInterval > 0 else { throw ValidationError("--scrub-rate, --scrub-interval, --capacity and --flush-interval must be positive") }
        let nodeName = name ?? "\(ProcessInfo.processInfo.hostName)-\(port)"
        let config = StorageConfig(host: host, port: port, dataDir: data, name: nodeName, trackers: tracker,
                                   secret: try loadSecret(file: secretFile), newDevices: devices,
                                   scrubBytesPerSecond: Int64(scrubRate * 1_048_576), scrubInterval: scrubInterval,
                                   capacityBytes: capacity.map { $0 << 20 }, flushInterval: flushInterval)
        try await reportingErrors { try await StorageNode(config: config).run() }
    }
}
