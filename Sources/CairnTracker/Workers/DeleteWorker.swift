import CairnCore
import CairnMetadata

/// Frees blobs on the storage nodes after their names are gone (deletes and overwrites remove
/// the name at once; space comes back here). A device that cannot delete now (down, readonly,
/// unreachable) is retried later; a dead device's copies are simply forgotten. Also reaps
/// uploads never committed within an hour.
struct DeleteWorker {
    let ctx: TrackerContext
    let workers: WorkerRegistry
    static let staleUploadSeconds: Int64 = 3600
    static let roundSize = 200

    func run() async {
        var rounds = 0
        while !Task.isCancelled {
            rounds += 1
            guard ctx.jobMaster.isMaster else { try? await Task.sleep(for: .milliseconds(500)); continue }
            if rounds % 120 == 1 { _ = try? await ctx.store.reapStaleUploads(maxAge: Self.staleUploadSeconds) }
            var did = 0
            var due: [MetadataStore.DeleteItem] = []
            if workers.count("delete") > 0 {
                do { due = try await ctx.store.dueDeletes(limit: Self.roundSize) }
                catch { ctx.logger.error("delete worker cannot read its queue: \(error)") }
            }
            if !due.isEmpty {
                did = due.count
                // The name changes that queued these may not be durable yet (the mount's
                // deferred commits): make them so before any blob goes, or a power loss could
                // bring back a name whose blobs are gone.
                do { try await ctx.store.sync() } catch {
                    ctx.logger.error("delete worker: cannot make the metadata log durable (\(error)); no blob is freed until it can")
                    try? await Task.sleep(for: .seconds(1))
                    continue
                }
                // Likewise the new content that replaced these blobs: the mount's writes are
                // fsynced by the nodes' next flush, so ask every node that answers for it now.
                await flushNodes()
                let devices: [DeviceID: DeviceInfo]
                do { devices = try await ctx.devices.byID() } catch {
                    ctx.logger.error("delete worker cannot read the device list: \(error); trying again shortly")
                    try? await Task.sleep(for: .seconds(1))
                    continue
                }
                let done = await delete(due, devices: devices)
                do { try await ctx.store.recordDeletes(done) } catch { ctx.logger.error("delete worker cannot record its deletes: \(error); they are repeated") }
            }
            // A partial round waits for more: each round costs a log sync and a flush per node,
            // so under a stream of unlinks rounds stay large (space comes back within a second).
            if did < Self.roundSize { try? await Task.sleep(for: .milliseconds(did == 0 ? 500 : 1000)) }
        }
    }

    func flushNodes() async {
        guard let devs = try? await ctx.devices.byID() else { return }
        var hosts: [HostID: HostRecord] = [:]
        for d in devs.values where d.host.status.canWrite { hosts[d.host.id] = d.host }
        await withTaskGroup(of: Void.self) { group in
            for host in hosts.values {
                group.addTask {
                    if !(await ctx.gateway.flush(host)) { ctx.logger.debug("host \(host.name) did not flush its deferred writes; it does so itself within seconds") }
                }
            }
        }
    }

    /// Deletes what it can of a round's copies, one request per device; returns, per fid, the
    /// devices its copies are gone from (deleted now, or on a device that is gone or unknown).
    func delete(_ items: [MetadataStore.DeleteItem], devices: [DeviceID: DeviceInfo]) async -> [MetadataStore.DeleteItem] {
        var gone: [Fid: [DeviceID]] = [:], batches: [DeviceID: (device: DeviceInfo, fids: [Fid])] = [:]
        for item in items {
            for id in item.devices {
                guard let d = devices[id], !d.device.status.isGone else { gone[item.fid, default: []].append(id); continue }
                guard d.device.status.canDelete, d.host.status.canWrite else { continue }
                batches[id, default: (d, [])].fids.append(item.fid)
            }
        }
        let results = await withTaskGroup(of: (DeviceID, Set<Fid>, String?).self) { group in
            for (id, batch) in batches {
                group.addTask { let r = await ctx.gateway.delete(fids: batch.fids, on: batch.device); return (id, r.gone, r.problem) }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        for (id, deleted, problem) in results {
            for fid in deleted { gone[fid, default: []].append(id) }
            // Not deleted now: the copies stay queued and are tried again in a later round.
            if let problem { ctx.logger.warning("delete worker: \(problem); trying again later") }
        }
        return items.map { .init(fid: $0.fid, devices: gone[$0.fid] ?? []) }
    }
}
