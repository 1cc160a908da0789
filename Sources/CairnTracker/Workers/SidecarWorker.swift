import CairnCore
import CairnMetadata

/// Keeps every blob's sidecar current: inodes queued by the metadata's triggers (content,
/// names, attributes, custom metadata or copies changed) have their sidecars rewritten on
/// every device holding a copy, one to one and a half seconds after their last change. A
/// round takes up to 500 queued inodes and sends each device one batch.
struct SidecarWorker {
    let ctx: TrackerContext
    static let batch = 500

    func run() async {
        while !Task.isCancelled {
            var did = 0
            if ctx.jobMaster.isMaster {
                do {
                    let due = try await ctx.store.dueSidecars(settle: 1, limit: Self.batch)
                    if !due.isEmpty { try await write(due); did = due.count }
                } catch {
                    ctx.logger.error("sidecar worker cannot read or update its queue in the metadata database: \(error); trying again shortly")
                }
            }
            // Only a backlog (a full batch) goes on at once: while files are being written, a
            // round every half second sends each device one batch of hundreds of sidecars, not
            // a request per handful (a node's CPU per small file went to these).
            if did < Self.batch { try? await Task.sleep(for: .milliseconds(500)) }
        }
    }

    func write(_ inos: [Ino]) async throws {
        let started = Clock.nowSeconds()
        let devices = try await ctx.devices.byID(), files = try await ctx.store.sidecars(of: inos)
        var batches: [DeviceID: [(fid: Fid, bytes: [UInt8])]] = [:]
        for (_, sidecars) in files {
            for (sidecar, holders) in sidecars ?? [] {
                let bytes = sidecar.encoded()
                for id in holders where devices[id]?.view.servesReads == true { batches[id, default: []].append((sidecar.fid, bytes)) }
            }
        }
        let failures = await withTaskGroup(of: String?.self) { group in
            for (id, batch) in batches {
                guard let d = devices[id] else { continue }
                group.addTask { await ctx.gateway.putSidecars(batch, on: d) }
            }
            var failures: [String] = []
            for await failure in group { if let failure { failures.append(failure) } }
            return failures
        }
        // A node that did not take them gets the sidecars when the files next change or its
        // copies are re-made; a failure here never blocks the queue.
        if !failures.isEmpty { ctx.logger.warning("sidecars not written: \(failures.sorted().joined(separator: "; "))") }
        try await ctx.store.sidecarsWritten(inos: inos, queuedBefore: started)
    }
}
