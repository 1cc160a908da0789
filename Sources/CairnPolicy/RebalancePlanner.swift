import CairnCore

/// Plans copy moves from the most used devices (by stored usage %) to the least used until
/// every device is within `thresholdPercent` of the cluster's average. Projected usage is
/// updated after each planned move, so the plan shown is the plan carried out. A move never
/// puts two copies of a blob on one host (hosts policy) or one device.
public struct RebalancePlanner: Sendable {
    public struct Device: Sendable {
        public var id: DeviceID
        public var host: HostID
        public var totalBytes: Int64
        public var usedBytes: Int64
        /// May receive moved copies (alive, writeable).
        public var acceptsNewFiles: Bool
        public init(id: DeviceID, host: HostID, totalBytes: Int64, usedBytes: Int64, acceptsNewFiles: Bool) {
            self.id = id; self.host = host; self.totalBytes = totalBytes; self.usedBytes = usedBytes; self.acceptsNewFiles = acceptsNewFiles
        }
    }

    /// A blob and every device holding a copy of it.
    public struct Blob: Sendable {
        public var fid: Fid
        public var bytes: Int64
        public var holders: [DeviceID]
        public var policy: PlacementPolicy
        public init(fid: Fid, bytes: Int64, holders: [DeviceID], policy: PlacementPolicy) {
            self.fid = fid; self.bytes = bytes; self.holders = holders; self.policy = policy
        }
    }

    public struct Move: Sendable, Equatable, CustomStringConvertible {
        public var fid: Fid
        public var from: DeviceID
        public var to: DeviceID
        public var bytes: Int64
        public var description: String { "fid \(fid): dev\(from) -> dev\(to) (\(bytes) bytes)" }
        public init(fid: Fid, from: DeviceID, to: DeviceID, bytes: Int64) { self.fid = fid; self.from = from; self.to = to; self.bytes = bytes }
    }

    public struct Plan: Sendable {
        public var moves: [Move]
        /// Used % per device before and after the plan.
        public var before: [DeviceID: Double]
        public var after: [DeviceID: Double]
    }

    public var thresholdPercent: Double
    public var maxMoves: Int

    public init(thresholdPercent: Double = 10, maxMoves: Int = 10_000) {
        self.thresholdPercent = thresholdPercent
        self.maxMoves = maxMoves
    }

    public func plan(devices: [Device], blobs: [Blob]) -> Plan {
        let devs = devices.filter { $0.totalBytes > 0 }
        let byID = Dictionary(uniqueKeysWithValues: devs.map { ($0.id, $0) })
        var used = Dictionary(uniqueKeysWithValues: devs.map { ($0.id, Double($0.usedBytes)) })
        func pct(_ id: DeviceID) -> Double { used[id]! / Double(byID[id]!.totalBytes) * 100 }
        let before = Dictionary(uniqueKeysWithValues: devs.map { ($0.id, pct($0.id)) })
        let totalBytes = Double(devs.reduce(0) { $0 + $1.totalBytes })
        guard totalBytes > 0 else { return Plan(moves: [], before: before, after: before) }
        let average = used.values.reduce(0, +) / totalBytes * 100

        var holders = Dictionary(uniqueKeysWithValues: blobs.map { ($0.fid, $0.holders) })
        var onDevice: [DeviceID: [Blob]] = [:]
        for b in blobs.sorted(by: { $0.fid < $1.fid }) { for h in b.holders where byID[h] != nil { onDevice[h, default: []].append(b) } }
        var exhausted: Set<DeviceID> = []
        var moves: [Move] = []

        while moves.count < maxMoves {
            // Done when every device is within the threshold of the average, above and below.
            let lowest = devs.filter(\.acceptsNewFiles).map { pct($0.id) }.min() ?? average
            let highest = devs.map(\.id).filter { !exhausted.contains($0) }.map(pct).max() ?? average
            guard highest - average > thresholdPercent || (average - lowest > thresholdPercent && highest > lowest) else { break }
            guard let source = devs.map(\.id).filter({ !exhausted.contains($0) && pct($0) > average })
                .max(by: { (pct($0), -$0) < (pct($1), -$1) }) else { break }
            var planned = false
            var queue = onDevice[source] ?? []
            while let blob = queue.first, !planned {
                queue.removeFirst()
                let current = holders[blob.fid] ?? []
                guard current.contains(source) else { continue }
                let otherHosts = Set(current.filter { $0 != source }.compactMap { byID[$0]?.host })
                let sourcePct = pct(source)
                let dest = devs.filter { d in
                    d.acceptsNewFiles && d.id != source && !current.contains(d.id)
                        && (blob.policy == .devices || !otherHosts.contains(d.host))
                        && (used[d.id]! + Double(blob.bytes)) / Double(d.totalBytes) * 100 < sourcePct
                        && (used[d.id]! + Double(blob.bytes)) / Double(d.totalBytes) * 100 <= average + thresholdPercent
                        && (used[source]! - Double(blob.bytes)) / Double(byID[source]!.totalBytes) * 100 >= average - thresholdPercent
                }.min { (pct($0.id), $0.id) < (pct($1.id), $1.id) }
                guard let d = dest else { continue }
                used[source]! -= Double(blob.bytes)
                used[d.id]! += Double(blob.bytes)
                holders[blob.fid] = current.map { $0 == source ? d.id : $0 }
                moves.append(Move(fid: blob.fid, from: source, to: d.id, bytes: blob.bytes))
                planned = true
            }
            onDevice[source] = queue
            if !planned { exhausted.insert(source) }
        }
        return Plan(moves: moves, before: before, after: Dictionary(uniqueKeysWithValues: devs.map { ($0.id, pct($0.id)) }))
    }
}
