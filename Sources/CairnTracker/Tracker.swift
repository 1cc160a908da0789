import CairnCore
import CairnMetadata
import CairnPolicy
import CairnTransfer
import Foundation
import Logging

/// How a tracker runs.
public struct TrackerConfig: Sendable {
    public var databasePath: String
    public var host: String
    public var port: Int
    /// Cluster secret: write paths handed out are signed with it.
    public var secret: String?
    /// Replicas of the `default` class of new domains.
    public var defaultReplicas: Int
    /// Seconds between usage polls of every storage node.
    public var pollInterval: Double
    /// Seconds a write path stays valid.
    public var tokenLifetime: Int64
    /// Bytes per second background copies (replication, reaping, drain, rebalance, fsck
    /// repair) may use between nodes; 0 is unlimited. The `background_bandwidth` setting overrides it.
    public var backgroundBandwidth: Int64
    /// A device unreachable this many seconds is marked dead and its copies re-replicated;
    /// 0 (the default) never does so on its own. The `maintenance` setting suspends it.
    public var deadAfter: Int64
    /// Every this many polls, each device gets a test write and read.
    public var probeEvery: Int
    /// Grant mounts leases (`fs_watch`, see `Watchers`). Only for a tracker alone on its
    /// database: changes made through another tracker would not reach this one's watchers.
    public var leases: Bool
    /// How long a mount's lease lasts after its last answered ping (`Watchers`).
    public var leaseMillis: Int64
    /// A Unix socket to listen on besides TCP, for clients on this machine (nil: none).
    public var socketPath: String?

    public init(databasePath: String, host: String = "127.0.0.1", port: Int = 7001, secret: String? = nil,
                defaultReplicas: Int = 2, pollInterval: Double = 2, tokenLifetime: Int64 = 3600,
                backgroundBandwidth: Int64 = 0, deadAfter: Int64 = 0, probeEvery: Int = 5, leases: Bool = false, leaseMillis: Int64 = 2000,
                socketPath: String? = nil) {
        self.leases = leases
        self.leaseMillis = leaseMillis
        self.socketPath = socketPath
        self.databasePath = databasePath; self.host = host; self.port = port; self.secret = secret
        self.defaultReplicas = defaultReplicas; self.pollInterval = pollInterval; self.tokenLifetime = tokenLifetime
        self.backgroundBandwidth = backgroundBandwidth; self.deadAfter = deadAfter; self.probeEvery = probeEvery
    }
}

/// What the command groups and workers share.
struct TrackerContext: Sendable {
    let config: TrackerConfig
    let store: MetadataStore
    let devices: DeviceCache
    let catalog: CatalogCache
    let gateway: NodeGateway
    let replicator: Replicator
    let placement: Placement
    let logger: Logger
    /// Whether this tracker runs the background queues now.
    let jobMaster: JobMaster
    /// Bandwidth of background copies between nodes.
    let throttle: BandwidthMeter
}

/// A tracker: the metadata database, the protocol server and the background workers.
public final class Tracker: Sendable {
    let context: TrackerContext
    let workers: WorkerRegistry

    public init(config: TrackerConfig) throws {
        let store = try MetadataStore(path: config.databasePath)
        var logger = Logger(label: "cairn.tracker")
        logger.logLevel = .info
        let devices = DeviceCache(store: store)
        let gateway = NodeGateway(http: HTTPTransfer(), secret: config.secret, tokenLifetime: config.tokenLifetime)
        let placement = Placement()
        context = TrackerContext(config: config, store: store, devices: devices, catalog: CatalogCache(store: store), gateway: gateway,
                                 replicator: Replicator(gateway: gateway, devices: devices, placement: placement),
                                 placement: placement, logger: logger,
                                 jobMaster: JobMaster(owner: "\(ProcessInfo.processInfo.hostName):\(config.port):\(getpid())"),
                                 throttle: BandwidthMeter(bytesPerSecond: config.backgroundBandwidth))
        workers = WorkerRegistry(defaults: ["replicate": 4, "delete": 1, "monitor": 1, "drain": 2, "rebalance": 2, "fsck": 2])
    }

    /// Serves until cancelled. `onBound` gets the port actually bound (for port 0).
    public func run(onBound: @Sendable @escaping (Int) -> Void = { _ in }) async throws {
        let counters = TrackerCounters()
        var handlers: [String: CommandHandler] = [:]
        ClusterCommands(ctx: context).register(into: &handlers)
        FileCommands(ctx: context).register(into: &handlers)
        NamespaceCommands(ctx: context).register(into: &handlers)
        HealthCommands(ctx: context, workers: workers).register(into: &handlers)
        let watchers = Watchers(granting: context.config.leases, leaseMillis: context.config.leaseMillis, counters: counters, logger: context.logger)
        watchers.register(into: &handlers)
        DelegateCommand(ctx: context, watchers: watchers).register(into: &handlers)
        let dispatcher = Dispatcher(handlers: handlers, admin: AdminLines(store: context.store, counters: counters, workers: workers, watchers: watchers),
                                    stats: counters, watchers: watchers)
        let server = ProtocolServer(host: context.config.host, port: context.config.port, socketPath: context.config.socketPath,
                                    dispatcher: dispatcher, logger: context.logger)
        let ctx = context
        let workers = self.workers
        if let saved = try? await ctx.store.setting("background_bandwidth"), let n = Int64(saved) { ctx.throttle.limit.store(n, ordering: .relaxed) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await server.run { port in
                    ctx.logger.info("tracker listening on \(ctx.config.host):\(port)\(ctx.config.socketPath.map { " and \($0)" } ?? ""), metadata in \(ctx.config.databasePath)")
                    onBound(port)
                }
            }
            group.addTask { await ctx.jobMaster.run(store: ctx.store, logger: ctx.logger) }
            group.addTask { await UsageMonitor(ctx: ctx, workers: workers).run() }
            group.addTask { await ReplicateWorker(ctx: ctx, workers: workers).run() }
            group.addTask { await DeleteWorker(ctx: ctx, workers: workers).run() }
            group.addTask { await MoveWorker(ctx: ctx, workers: workers).run() }
            group.addTask { await FsckWorker(ctx: ctx, workers: workers).run() }
            group.addTask { await SidecarWorker(ctx: ctx).run() }
            try await group.next()
            group.cancelAll()
        }
    }
}
