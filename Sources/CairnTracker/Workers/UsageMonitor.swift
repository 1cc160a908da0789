import CairnCore
import CairnMetadata
import Foundation

/// Polls every storage node's status (bounded timeouts) and stores what it measures: per-device
/// total/used/free bytes, I/O utilisation and an observed state (writeable, readable,
/// unreachable). Every `probeEvery` polls each device also gets a test write and read; one
/// that fails it is only readable. Placement and read ordering decide from these stored
/// figures: a device that stops answering gets no new writes after its next poll. Blobs a
/// node's scrubber found corrupt are queued for fsck. The reaper part marks devices dead
/// after `deadAfter` seconds unreachable (when configured and not in maintenance).
struct UsageMonitor {
    let ctx: TrackerContext
    let workers: WorkerRegistry?

    func run() async {
        var round = 0
        while !Task.isCancelled {
            if workers?.count("monitor") ?? 1 > 0 {
                await poll(probing: round % max(1, ctx.config.probeEvery) == 0)
                if ctx.jobMaster.isMaster { await reapOverdue() }
                round += 1
            }
            try? await Task.sleep(for: .seconds(ctx.config.pollInterval))
        }
    }

    func poll(probing: Bool) async {
        guard let hosts = try? await ctx.store.hosts() else { return }
        let devices = (try? await ctx.devices.devices()) ?? []
        await withTaskGroup(of: Void.self) { group in
            for h in hosts where h.status != .dead {
                group.addTask { await poll(host: h, devices: probing ? devices.filter { $0.host.id == h.id } : []) }
            }
        }
        ctx.devices.invalidate()
    }

    func poll(host: HostRecord, devices probed: [DeviceInfo]) async {
        let status = await ctx.gateway.status(of: host)
        var failedProbes: [DeviceID: String] = [:]
        if status != nil {
            for d in probed where d.device.status.takesNewFiles {
                if let problem = await ctx.gateway.probe(d) { failedProbes[d.device.id] = problem }
            }
        }
        let usage = status?.devices.map {
            MetadataStore.DeviceUsage(device: $0.id, totalBytes: $0.totalBytes, usedBytes: $0.usedBytes, freeBytes: $0.freeBytes,
                                      ioUtilization: $0.ioUtilization,
                                      observed: $0.writeable && failedProbes[$0.id] == nil ? .writeable : .readable)
        } ?? []
        for (id, problem) in failedProbes { ctx.logger.warning("device \(id) on \(host.name) failed its test write: \(problem); it gets no new files until it passes") }
        do {
            try await ctx.store.recordUsage(host: host.id, reachable: status != nil, usage: usage)
            for bad in status?.corrupt ?? [] {
                try await ctx.store.queueCheck(fid: bad.fid, reason: "scrub on device \(bad.device): stored \(bad.stored), read back \(bad.computed)")
            }
        } catch {
            ctx.logger.warning("cannot store usage of host \(host.name): \(error)")
        }
    }

    /// Devices unreachable longer than `deadAfter` are marked dead, which re-replicates their
    /// copies from the survivors (fewest copies first).
    func reapOverdue() async {
        guard ctx.config.deadAfter > 0, (try? await ctx.store.setting("maintenance")) != "on",
              let since = try? await ctx.store.unreachableSince(), let devices = try? await ctx.devices.byID() else { return }
        let now = Clock.nowSeconds()
        for (id, start) in since where now - start >= ctx.config.deadAfter {
            guard let d = devices[id], !d.device.status.isGone else { continue }
            do {
                try await ctx.store.setDeviceState(id, hostName: nil, state: .dead)
                ctx.devices.invalidate()
                ctx.logger.warning("device \(id) on \(d.host.name) has been unreachable for \(now - start) s (dead-after \(ctx.config.deadAfter) s): marked dead; its copies are being re-replicated")
            } catch {
                ctx.logger.error("cannot mark device \(id) dead: \(error)")
            }
        }
    }
}
