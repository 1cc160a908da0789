import CairnCore
import CairnMetadata
import CairnPolicy

/// Brings every queued fid up to its class's replica count, node to node, with backoff on
/// failure (15 s, 1 min, 5 min, 30 min, then hourly). Blobs with the fewest copies go first
/// (the reaper's order after a device dies).
struct ReplicateWorker {
    let ctx: TrackerContext
    let workers: WorkerRegistry

    func run() async {
        while !Task.isCancelled {
            let parallel = workers.count("replicate")
            var did = 0
            var due: [Fid] = []
            if parallel > 0, ctx.jobMaster.isMaster {
                do { due = try await ctx.store.dueReplications(limit: 100) }
                catch { ctx.logger.error("replicate worker cannot read its queue: \(error)") }
            }
            if !due.isEmpty {
                did = due.count
                await withTaskGroup(of: Void.self) { group in
                    var it = due.makeIterator()
                    for _ in 0..<parallel { if let fid = it.next() { group.addTask { await replicate(fid) } } }
                    while await group.next() != nil { if let fid = it.next() { group.addTask { await replicate(fid) } } }
                }
            }
            if did == 0 { try? await Task.sleep(for: .milliseconds(500)) }
        }
    }

    func replicate(_ fid: Fid) async {
        do {
            guard let blob = try await ctx.store.blob(fid: fid) else {
                try await ctx.store.replicationDone(fid: fid)  // deleted meanwhile
                return
            }
            guard let c = try await ctx.catalog.classRecord(domain: blob.domain, id: blob.classID) else {
                try await ctx.store.replicationDone(fid: fid)
                return
            }
            let devs = try await ctx.devices.byID()
            let live = blob.devices.filter { devs[$0].map { !$0.device.status.isGone } ?? false }
            let verdict = ReplicationCheck.verdict(copies: live.compactMap { devs[$0]?.view }, replicas: c.replicas, policy: c.policy)
            guard case .needs = verdict else {
                try await ctx.store.replicationDone(fid: fid)
                return
            }
            let readable = live.filter { devs[$0]?.view.servesReads ?? false }
            let outcome = try await ctx.replicator.ensure(fid: fid, claimed: readable, expectedSize: blob.length,
                                                          expectedChecksum: blob.checksum, target: c.replicas,
                                                          policy: c.policy, algorithm: c.checksum, throttle: ctx.throttle)
            for d in outcome.devices where !blob.devices.contains(d) { try await ctx.store.addCopy(fid: fid, device: d) }
            if let shortfall = outcome.shortfall {
                ctx.logger.debug("replication of fid \(fid) incomplete: \(shortfall)")
                try await ctx.store.replicationFailed(fid: fid)
            } else {
                try await ctx.store.replicationDone(fid: fid)
            }
        } catch {
            ctx.logger.debug("replication of fid \(fid) failed: \(error)")
            try? await ctx.store.replicationFailed(fid: fid)
        }
    }
}
