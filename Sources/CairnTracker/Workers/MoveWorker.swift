import CairnCore
import CairnMetadata

/// Drain and rebalance: feeds the move queue with every copy on a device in state `drain`,
/// and carries out queued moves (copy, verify, then drop the old copy) a few at a time,
/// within the background bandwidth limit.
struct MoveWorker {
    let ctx: TrackerContext
    let workers: WorkerRegistry

    func run() async {
        var announcedEmpty: Set<DeviceID> = []
        while !Task.isCancelled {
            var did = 0
            if ctx.jobMaster.isMaster {
                await feedDrains(announced: &announcedEmpty)
                did = await runDueMoves()
            }
            if did == 0 { try? await Task.sleep(for: .milliseconds(500)) }
        }
    }

    /// Queues moves for the copies on draining devices; says when one is empty.
    func feedDrains(announced: inout Set<DeviceID>) async {
        guard workers.count("drain") > 0, let devices = try? await ctx.devices.devices() else { return }
        for d in devices where d.device.status.shouldDrain {
            guard let copies = try? await ctx.store.blobsOn(device: d.device.id, after: 0, limit: 500) else { continue }
            if copies.isEmpty {
                if announced.insert(d.device.id).inserted {
                    ctx.logger.info("device \(d.device.id) on \(d.host.name) is drained: it holds no copies any more; mark it dead or remove it")
                }
                continue
            }
            announced.remove(d.device.id)
            try? await ctx.store.queueMoves(copies.map { .init(fid: $0.fid, from: d.device.id, to: nil, bytes: $0.length, reason: "drain") })
        }
    }

    func runDueMoves() async -> Int {
        let parallel = max(workers.count("drain"), workers.count("rebalance"))
        guard parallel > 0, let due = try? await ctx.store.dueMoves(limit: 100), !due.isEmpty else { return 0 }
        let mover = CopyMover(ctx: ctx, throttle: ctx.throttle)
        await withTaskGroup(of: Void.self) { group in
            var it = due.makeIterator()
            func next() -> MetadataStore.Move? { it.next() }
            for _ in 0..<parallel { if let m = next() { group.addTask { await finish(m, mover.move(m)) } } }
            while await group.next() != nil { if let m = next() { group.addTask { await finish(m, mover.move(m)) } } }
        }
        return due.count
    }

    func finish(_ m: MetadataStore.Move, _ outcome: CopyMover.Outcome) async {
        switch outcome {
        case .moved, .obsolete:
            try? await ctx.store.moveDone(m)
        case .failed(let why):
            ctx.logger.warning("\(m.reason): moving fid \(m.fid) off device \(m.from) failed: \(why)")
            try? await ctx.store.moveFailed(m)
        }
    }
}
