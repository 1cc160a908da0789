import CairnCore
import CairnMetadata
import Foundation

/// Polls every storage node's status (bounded timeouts) and stores what it measures: per-device
/// total/used/free bytes, I/O utilisation and whether the device is writeable. Placement and
/// read ordering decide from these stored figures; an unreachable host stops getting writes
/// within one poll interval.
struct UsageMonitor {
    let ctx: TrackerContext
    let workers: WorkerRegistry?

    func run() async {
        while !Task.isCancelled {
            if workers?.count("monitor") ?? 1 > 0 { await round() }
            try? await Task.sleep(for: .seconds(ctx.config.pollInterval))
        }
    }

    func round() async {
        guard let hosts = try? await ctx.store.hosts() else { return }
        await withTaskGroup(of: Void.self) { group in
            for h in hosts where h.status != .dead { group.addTask { await poll(host: h) } }
        }
    }

    func poll(host: HostRecord) async {
        let status = await ctx.gateway.status(of: host)
        let usage = status?.devices.map {
            MetadataStore.DeviceUsage(device: $0.id, totalBytes: $0.totalBytes, usedBytes: $0.usedBytes, freeBytes: $0.freeBytes,
                                      ioUtilization: $0.ioUtilization, observed: $0.writeable ? .writeable : .readable)
        } ?? []
        do {
            try await ctx.store.recordUsage(host: host.id, reachable: status != nil, usage: usage)
            ctx.devices.invalidate()
        } catch {
            ctx.logger.warning("cannot store usage of host \(host.name): \(error)")
        }
    }
}
