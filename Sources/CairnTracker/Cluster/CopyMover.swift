import CairnCore
import CairnMetadata
import CairnPolicy

/// Moves one copy of a blob from a device to another (drain, rebalance): copy node to node,
/// verify size and checksum, record the new copy, and only then delete the old one. The new
/// device never worsens placement: it is on a host (or device, per the class policy) that
/// holds no other copy.
struct CopyMover: Sendable {
    let ctx: TrackerContext
    let throttle: BandwidthMeter

    enum Outcome: Equatable {
        case moved(to: DeviceID)
        /// Nothing to do any more (blob deleted, or the copy already gone from `from`).
        case obsolete
        case failed(String)
    }

    func move(_ m: MetadataStore.Move) async -> Outcome {
        do {
            guard let blob = try await ctx.store.blob(fid: m.fid), blob.devices.contains(m.from) else { return .obsolete }
            guard let c = try await ctx.catalog.classRecord(domain: blob.domain, id: blob.classID) else { return .obsolete }
            let all = try await ctx.devices.byID()
            let others = blob.devices.filter { $0 != m.from }.compactMap { all[$0] }.filter { !$0.device.status.isGone }
            var dest = m.to.flatMap { all[$0] }
            if let d = dest, !fits(d, others: others, policy: c.policy, size: blob.length) { dest = nil }
            if dest == nil {
                let avoidHosts = c.policy == .hosts ? Set(others.map(\.host.id)) : []
                dest = ctx.placement.choose(count: 1, size: blob.length, from: all.values.map(\.view), policy: c.policy,
                                            avoidDevices: Set(blob.devices), avoidHosts: avoidHosts).first.flatMap { all[$0.device] }
            }
            guard let target = dest else {
                return .failed("no device can take fid \(m.fid) (\(blob.length) bytes) without two copies sharing a \(c.policy == .hosts ? "host" : "device")")
            }
            let sources = ([all[m.from]].compactMap { $0 } + others).filter { $0.view.servesReads }
            guard !sources.isEmpty else { return .failed("no readable copy of fid \(m.fid)") }
            var copied = false
            var problems: [String] = []
            for source in sources where !copied {
                await throttle.admit(blob.length)
                do {
                    let facts = try await ctx.gateway.copy(fid: m.fid, from: source, to: target, algorithm: c.checksum)
                    if facts.size != blob.length { problems.append("new copy has \(facts.size) bytes, expected \(blob.length)"); continue }
                    if let want = blob.checksum, let got = facts.checksum, want.lowercased() != got.lowercased() {
                        problems.append("new copy from device \(source.device.id) has checksum \(got), expected \(want)"); continue
                    }
                    copied = true
                } catch { problems.append("\(error)") }
            }
            guard copied else {
                _ = await ctx.gateway.delete(fid: m.fid, on: target)
                return .failed(problems.joined(separator: "; "))
            }
            try await ctx.store.addCopy(fid: m.fid, device: target.device.id)
            // The new copy is verified and recorded: the old one may go.
            if let old = all[m.from], !old.device.status.isGone {
                guard await ctx.gateway.delete(fid: m.fid, on: old) else {
                    return .failed("copied to device \(target.device.id), but deleting the old copy on device \(m.from) (\(old.host.name)) failed; will retry")
                }
            }
            try await ctx.store.removeCopy(fid: m.fid, device: m.from)
            return .moved(to: target.device.id)
        } catch {
            return .failed("\(error)")
        }
    }

    func fits(_ d: DeviceInfo, others: [DeviceInfo], policy: PlacementPolicy, size: Int64) -> Bool {
        guard d.view.acceptsNewFiles, d.device.freeBytes >= size, !others.contains(where: { $0.device.id == d.device.id }) else { return false }
        return policy == .devices || !others.contains { $0.host.id == d.host.id }
    }
}
