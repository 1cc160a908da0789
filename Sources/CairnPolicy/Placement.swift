import CairnCore

/// Chooses devices for new blobs and new replicas from stored usage data.
public struct Placement: Sendable {
    /// Space kept free on every device (bytes); a device is never filled past it.
    public var reserveBytes: Int64

    public init(reserveBytes: Int64 = 64 << 20) { self.reserveBytes = reserveBytes }

    func reserve(_ d: DeviceView) -> Int64 { FreeSpaceReserve.bytes(total: d.totalBytes, cap: reserveBytes) }

    /// Picks up to `count` devices for a blob of `size` bytes (0 when unknown), spread per
    /// `policy`, never on `avoidDevices` or (for the hosts policy) `avoidHosts`; weighted by free space.
    public func choose<G: RandomNumberGenerator>(
        count: Int, size: Int64, from devices: [DeviceView], policy: PlacementPolicy,
        avoidDevices: Set<DeviceID> = [], avoidHosts: Set<HostID> = [], using rng: inout G
    ) -> [DeviceView] {
        var pool = devices.filter {
            $0.acceptsNewFiles && !avoidDevices.contains($0.device)
                && (policy == .devices || !avoidHosts.contains($0.host))
                && $0.freeBytes - reserve($0) >= size
        }
        var chosen: [DeviceView] = []
        while chosen.count < count, !pool.isEmpty {
            let pick = weightedPick(pool, using: &rng)
            chosen.append(pick)
            pool.removeAll { $0.device == pick.device || (policy == .hosts && $0.host == pick.host) }
        }
        return chosen
    }

    public func choose(count: Int, size: Int64, from devices: [DeviceView], policy: PlacementPolicy,
                       avoidDevices: Set<DeviceID> = [], avoidHosts: Set<HostID> = []) -> [DeviceView] {
        var rng = SystemRandomNumberGenerator()
        return choose(count: count, size: size, from: devices, policy: policy,
                      avoidDevices: avoidDevices, avoidHosts: avoidHosts, using: &rng)
    }

    /// Weighted random by free space: emptier devices fill faster, full ones never win.
    func weightedPick<G: RandomNumberGenerator>(_ pool: [DeviceView], using rng: inout G) -> DeviceView {
        let weights = pool.map { Double(max(1, $0.freeBytes - reserve($0))) }
        let total = weights.reduce(0, +)
        var r = Double.random(in: 0..<total, using: &rng)
        for (i, w) in weights.enumerated() {
            if r < w { return pool[i] }
            r -= w
        }
        return pool[pool.count - 1]
    }

    /// Orders replicas for readers: readable ones first, least loaded first, drain last.
    public static func readOrder(_ replicas: [DeviceView]) -> [DeviceView] {
        replicas.filter(\.servesReads).sorted { a, b in
            if a.state.shouldDrain != b.state.shouldDrain { return !a.state.shouldDrain }
            return a.ioUtilization < b.ioUtilization
        }
    }
}

/// Whether a blob's copies satisfy its class.
public enum ReplicationVerdict: Equatable, Sendable {
    case satisfied
    /// This many more copies are needed.
    case needs(Int)
    /// More copies than the class asks for.
    case surplus(Int)
}

public enum ReplicationCheck {
    /// Counts copies that still count (not on dead devices), distinct per policy.
    public static func verdict(copies: [DeviceView], replicas: Int, policy: PlacementPolicy) -> ReplicationVerdict {
        let live = copies.filter { !$0.state.isGone }
        let distinct = policy == .hosts ? Set(live.map(\.host)).count : Set(live.map(\.device)).count
        if distinct < replicas { return .needs(replicas - distinct) }
        if live.count > replicas { return .surplus(live.count - replicas) }
        return .satisfied
    }
}
