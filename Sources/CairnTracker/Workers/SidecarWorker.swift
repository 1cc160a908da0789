import CairnCore
import CairnMetadata

/// Keeps every blob's sidecar current: inodes queued by the metadata's triggers (content,
/// names, attributes, custom metadata or copies changed) have their sidecars rewritten on
/// every device holding a copy, a second after their last change. A round takes up to 500
/// queued inodes and sends each device one batch.
struct SidecarWorker {
    let ctx: TrackerContext

    func run() async {
        while !Task.isCancelled {
            var did = 0
            if ctx.jobMaster.isMaster, let due = try? await ctx.store.dueSidecars(settle: 1, limit: 500), !due.isEmpty {
                did = due.count
                await write(due)
            }
            if did == 0 { try? await Task.sleep(for: .milliseconds(500)) }
        }
    }

    func write(_ inos: [Ino]) async {
        let started = Clock.nowSeconds()
        guard let devices = try? await ctx.devices.byID(), let files = try? await ctx.store.sidecars(of: inos) else { return }
        var batches: [DeviceID: [(fid: Fid, bytes: [UInt8])]] = [:]
        for (_, sidecars) in files {
            for (sidecar, holders) in sidecars ?? [] {
                let bytes = sidecar.encoded()
                for id in holders where devices[id]?.view.servesReads == true { batches[id, default: []].append((sidecar.fid, bytes)) }
            }
        }
        let failed = await withTaskGroup(of: DeviceID?.self) { group in
            for (id, batch) in batches {
                guard let d = devices[id] else { continue }
                group.addTask { await ctx.gateway.putSidecars(batch, on: d) ? nil : id }
            }
            var failed: [DeviceID] = []
            for await id in group { if let id { failed.append(id) } }
            return failed
        }
        // A node that did not answer gets the sidecars when the files next change or its copies
        // are re-made; a failure here never blocks the queue.
        if !failed.isEmpty { ctx.logger.debug("sidecars not written on devices \(failed.sorted())") }
        do { try await ctx.store.sidecarsWritten(inos: inos, queuedBefore: started) } catch {
            ctx.logger.warning("sidecar worker cannot update its queue: \(error)")
        }
    }
}
