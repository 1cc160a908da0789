import CairnCore
import Testing
@testable import CairnPolicy

struct SeededRNG: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state ^ (state >> 29) }
}

func dev(_ id: Int, host: Int, free: Int64 = 100 << 30, state: DeviceState = .alive, observed: ObservedState = .writeable, util: Double = 0) -> DeviceView {
    DeviceView(device: id, host: host, state: state, observed: observed, totalBytes: 200 << 30, freeBytes: free, ioUtilization: util)
}

@Suite struct PlacementTests {
    let p = Placement(reserveBytes: 1 << 20)

    @Test func spreadsOverDistinctHosts() {
        var rng = SeededRNG(state: 1)
        let devices = [dev(1, host: 1), dev(2, host: 1), dev(3, host: 2), dev(4, host: 3)]
        for _ in 0..<200 {
            let chosen = p.choose(count: 3, size: 10, from: devices, policy: .hosts, using: &rng)
            #expect(chosen.count == 3)
            #expect(Set(chosen.map(\.host)).count == 3)
        }
    }

    @Test func devicesPolicyAllowsOneHost() {
        var rng = SeededRNG(state: 2)
        let chosen = p.choose(count: 2, size: 10, from: [dev(1, host: 1), dev(2, host: 1)], policy: .devices, using: &rng)
        #expect(Set(chosen.map(\.device)) == [1, 2])
    }

    @Test func neverPicksDevicesThatCannotTakeTheFile() {
        var rng = SeededRNG(state: 3)
        let devices = [dev(1, host: 1, state: .readonly), dev(2, host: 2, state: .drain), dev(3, host: 3, observed: .unreachable),
                       dev(4, host: 4, free: 5 << 20), dev(5, host: 5, state: .dead), dev(6, host: 6)]
        for _ in 0..<100 {
            let chosen = p.choose(count: 3, size: 10 << 20, from: devices, policy: .hosts, using: &rng)
            #expect(chosen.map(\.device) == [6])
        }
        #expect(p.choose(count: 1, size: 1, from: [dev(1, host: 1)], policy: .hosts, avoidHosts: [1], using: &rng).isEmpty)
    }

    @Test func weightsByFreeSpace() {
        var rng = SeededRNG(state: 4)
        let devices = [dev(1, host: 1, free: 90 << 30), dev(2, host: 2, free: 10 << 30)]
        var counts = [0, 0, 0]
        for _ in 0..<2000 { counts[p.choose(count: 1, size: 1, from: devices, policy: .hosts, using: &rng)[0].device] += 1 }
        #expect(counts[1] > 1600 && counts[1] < 1990, "emptier device should get about 90%: \(counts)")
    }

    @Test func readOrderPrefersIdleAndPutsDrainLast() {
        let order = Placement.readOrder([dev(1, host: 1, state: .drain), dev(2, host: 2, util: 80), dev(3, host: 3, util: 5), dev(4, host: 4, state: .down)])
        #expect(order.map(\.device) == [3, 2, 1])
    }

    @Test func replicationVerdicts() {
        #expect(ReplicationCheck.verdict(copies: [dev(1, host: 1)], replicas: 2, policy: .hosts) == .needs(1))
        #expect(ReplicationCheck.verdict(copies: [dev(1, host: 1), dev(2, host: 1)], replicas: 2, policy: .hosts) == .needs(1))
        #expect(ReplicationCheck.verdict(copies: [dev(1, host: 1), dev(2, host: 1)], replicas: 2, policy: .devices) == .satisfied)
        #expect(ReplicationCheck.verdict(copies: [dev(1, host: 1), dev(2, host: 2), dev(3, host: 3)], replicas: 2, policy: .hosts) == .surplus(1))
        #expect(ReplicationCheck.verdict(copies: [dev(1, host: 1), dev(2, host: 2, state: .dead)], replicas: 2, policy: .hosts) == .needs(1))
    }
}

@Suite struct RebalancePlannerTests {
    typealias D = RebalancePlanner.Device
    typealias B = RebalancePlanner.Blob

    @Test func movesFromFullToEmptyUntilWithinThreshold() {
        let gib: Int64 = 1 << 30
        let devices = [D(id: 1, host: 1, totalBytes: 100 * gib, usedBytes: 90 * gib, acceptsNewFiles: true),
                       D(id: 2, host: 2, totalBytes: 100 * gib, usedBytes: 10 * gib, acceptsNewFiles: true)]
        // 80 one-GiB blobs on device 1, each with its other copy on a third host.
        let blobs = (1...80).map { B(fid: Int64($0), bytes: gib, holders: [1], policy: .hosts) }
        let plan = RebalancePlanner(thresholdPercent: 5).plan(devices: devices, blobs: blobs)
        #expect(plan.moves.allSatisfy { $0.from == 1 && $0.to == 2 })
        #expect(abs(plan.after[1]! - 50) <= 5 && abs(plan.after[2]! - 50) <= 5, "after: \(plan.after)")
        #expect(plan.before[1] == 90)
        // The projection is what the moves add up to.
        let moved = Double(plan.moves.reduce(0) { $0 + $1.bytes }) / Double(gib)
        #expect(plan.after[2]! == 10 + moved)
    }

    @Test func neverPutsTwoCopiesOnOneHost() {
        let gib: Int64 = 1 << 30
        let devices = [D(id: 1, host: 1, totalBytes: 10 * gib, usedBytes: 9 * gib, acceptsNewFiles: true),
                       D(id: 2, host: 2, totalBytes: 10 * gib, usedBytes: 1 * gib, acceptsNewFiles: true),
                       D(id: 3, host: 2, totalBytes: 10 * gib, usedBytes: 1 * gib, acceptsNewFiles: true)]
        // Every blob already has a copy on host 2: no move from device 1 is allowed.
        let blobs = (1...8).map { B(fid: Int64($0), bytes: gib, holders: [1, 2], policy: .hosts) }
        #expect(RebalancePlanner(thresholdPercent: 10).plan(devices: devices, blobs: blobs).moves.isEmpty)
        // With the devices policy the copy may go to device 3 (same host, other device).
        let moves = RebalancePlanner(thresholdPercent: 10).plan(devices: devices, blobs: blobs.map { B(fid: $0.fid, bytes: $0.bytes, holders: $0.holders, policy: .devices) }).moves
        #expect(!moves.isEmpty && moves.allSatisfy { $0.to == 3 })
    }

    @Test func balancedClusterNeedsNoMoves() {
        let devices = (1...3).map { D(id: $0, host: $0, totalBytes: 100, usedBytes: 50 + Int64($0), acceptsNewFiles: true) }
        let blobs = (1...10).map { B(fid: Int64($0), bytes: 1, holders: [1], policy: .hosts) }
        #expect(RebalancePlanner(thresholdPercent: 10).plan(devices: devices, blobs: blobs).moves.isEmpty)
    }
}
