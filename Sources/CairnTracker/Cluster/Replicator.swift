import CairnCore
import CairnMetadata
import CairnPolicy
import CairnProtocol

/// Verifies a blob's copies and makes more, node to node, until it has the number asked for,
/// spread per the class policy. Used synchronously before a write is acknowledged
/// (sync copies) and by the replicate worker (all replicas).
struct Replicator: Sendable {
    let gateway: NodeGateway
    let devices: DeviceCache
    let placement: Placement

    struct Outcome: Sendable {
        var devices: [DeviceID]
        var size: Int64
        var checksum: String?
        /// Why fewer copies than asked exist, if so.
        var shortfall: String?
    }

    /// - Parameters:
    ///   - claimed: devices said to hold a copy; each is checked (HEAD: size, checksum).
    ///   - expectedSize: the size the uploader reported, if any; copies must match it.
    ///   - expectedChecksum: the checksum the uploader reported, if any.
    ///   - throttle: background work passes the cluster's bandwidth meter; client writes do not.
    func ensure(fid: Fid, claimed: [DeviceID], expectedSize: Int64?, expectedChecksum: String?,
                target: Int, policy: PlacementPolicy, algorithm: ChecksumAlgorithm,
                receipts: [DeviceID: String] = [:], throttle: BandwidthMeter? = nil) async throws -> Outcome {
        let all = try await devices.byID()
        var good: [DeviceInfo] = []
        var size = expectedSize
        var checksum = expectedChecksum?.lowercased()
        var problems: [String] = []
        for id in Set(claimed).sorted() {
            guard let d = all[id] else { problems.append("device \(id) is unknown"); continue }
            if let size, let receipt = receipts[id], gateway.acceptsReceipt(receipt, fid: fid, on: d, size: size, checksum: checksum) {
                good.append(d)  // the node (or a writer it let write locally) signed that it stored exactly these bytes
                continue
            }
            guard let facts = await gateway.inspect(d, fid: fid) else {
                problems.append("no copy of fid \(fid) found on device \(id) (\(d.host.name))"); continue
            }
            if let s = size, facts.size != s {
                problems.append("copy on device \(id) has \(facts.size) bytes, expected \(s)"); continue
            }
            if let c = checksum, let got = facts.checksum, got.lowercased() != c {
                problems.append("copy on device \(id) has checksum \(got), expected \(c)"); continue
            }
            size = facts.size
            checksum = checksum ?? facts.checksum
            good.append(d)
        }
        guard let source = good.first, let finalSize = size else {
            throw ProtocolError("size_verify_error", "no verified copy of fid \(fid): " + (problems.isEmpty ? "no copy was reported" : problems.joined(separator: "; ")))
        }
        var shortfall: String?
        var failed: Set<DeviceID> = []
        while distinct(good, policy) < target {
            let candidates = placement.choose(count: 1, size: finalSize, from: all.values.map(\.view), policy: policy,
                                              avoidDevices: Set(good.map(\.device.id)).union(failed), avoidHosts: Set(good.map(\.host.id)))
            guard let pick = candidates.first, let dest = all[pick.device] else {
                shortfall = "only \(distinct(good, policy)) of \(target) copies of fid \(fid) could be placed: no other writeable device on a distinct \(policy == .hosts ? "host" : "device") has \(finalSize) bytes free"
                    + (problems.isEmpty ? "" : " (" + problems.joined(separator: "; ") + ")")
                break
            }
            do {
                await throttle?.admit(finalSize)
                let facts = try await gateway.copy(fid: fid, from: source, to: dest, algorithm: algorithm)
                if facts.size != finalSize {
                    problems.append("copy on device \(dest.device.id) has \(facts.size) bytes, expected \(finalSize)")
                } else if let c = checksum, let got = facts.checksum, got.lowercased() != c.lowercased() {
                    problems.append("copy on device \(dest.device.id) has checksum \(got), expected \(c)")
                } else {
                    checksum = checksum ?? facts.checksum
                    good.append(dest)
                    continue
                }
            } catch {
                problems.append("\(error)")
            }
            failed.insert(dest.device.id)
        }
        return Outcome(devices: good.map(\.device.id), size: finalSize, checksum: checksum, shortfall: shortfall)
    }

    func distinct(_ copies: [DeviceInfo], _ policy: PlacementPolicy) -> Int {
        policy == .hosts ? Set(copies.map(\.host.id)).count : Set(copies.map(\.device.id)).count
    }
}
