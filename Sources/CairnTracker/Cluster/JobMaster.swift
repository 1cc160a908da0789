import CairnMetadata
import Foundation
import Logging
import Synchronization

/// One tracker in a cluster feeds the background queues: the one holding the job-master lock
/// in the metadata database. The lock expires unless renewed, so when its holder dies another
/// tracker takes over within `ttl` seconds.
final class JobMaster: Sendable {
    let owner: String
    let ttl: Int64
    private let held = Atomic<Bool>(false)

    init(owner: String, ttl: Int64 = 10) { self.owner = owner; self.ttl = ttl }

    var isMaster: Bool { held.load(ordering: .relaxed) }

    func run(store: MetadataStore, logger: Logger) async {
        while !Task.isCancelled {
            let now = (try? await store.holdJobMaster(owner: owner, ttl: ttl)) ?? false
            if now != held.exchange(now, ordering: .relaxed) {
                logger.info(now ? "this tracker (\(owner)) is now the job master: it runs replication, deletion, drain, rebalance and fsck"
                                : "tracker \(owner) is no longer the job master; another tracker runs the background jobs")
            }
            try? await Task.sleep(for: .seconds(Double(ttl) / 3))
        }
    }
}

/// Paces background copies between storage nodes (replication, reaping, drain, rebalance,
/// fsck repair) so their bytes average at most `limit` per second: each transfer is given a
/// start time after the previous ones' share of the bandwidth, so client traffic keeps the rest.
final class BandwidthMeter: Sendable {
    /// Bytes per second; 0 is unlimited. Changed at run time through the `background_bandwidth` setting.
    let limit: Atomic<Int64>
    private let nextStart = Mutex<Double>(0)

    init(bytesPerSecond: Int64) { limit = Atomic(bytesPerSecond) }

    /// Waits for this transfer's turn.
    func admit(_ bytes: Int64) async {
        let max = Double(limit.load(ordering: .relaxed))
        guard max > 0 else { return }
        let now = Date().timeIntervalSince1970
        let start = nextStart.withLock { next -> Double in
            let start = Swift.max(now, next)
            next = start + Double(bytes) / max
            return start
        }
        if start > now { try? await Task.sleep(for: .seconds(start - now)) }
    }
}
