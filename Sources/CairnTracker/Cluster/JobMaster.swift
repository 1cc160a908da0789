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
