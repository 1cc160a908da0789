import CairnCore
import CairnMetadata

/// Keeps every blob's sidecar current: inodes queued by the metadata's triggers (content,
/// names, attributes, custom metadata or copies changed) have their sidecars rewritten on
/// every device holding a copy, a second after their last change.
struct SidecarWorker {
    let ctx: TrackerContext

    func run() async {
        while !Task.isCancelled {
            var did = 0
            if ctx.jobMaster.isMaster, let due = try? await ctx.store.dueSidecars(settle: 1, limit: 200), !due.isEmpty {
                did = due.count
                await withTaskGroup(of: Void.self) { group in
                    var it = due.makeIterator()
                    for _ in 0..<4 { if let ino = it.next() { group.addTask { await write(ino) } } }
                    while await group.next() != nil { if let ino = it.next() { group.addTask { await write(ino) } } }
                }
            }
            if did == 0 { try? await Task.sleep(for: .milliseconds(500)) }
        }
    }

    func write(_ ino: Ino) async {
        let started = Clock.nowSeconds()
        guard let devices = try? await ctx.devices.byID() else { return }
        var complete = true
        for (sidecar, holders) in (try? await ctx.store.sidecars(ino: ino)) ?? [] {
            let bytes = sidecar.encoded()
            for id in holders {
                guard let d = devices[id], d.view.servesReads else { continue }
                if !(await ctx.gateway.putSidecar(bytes, fid: sidecar.fid, on: d)) { complete = false }
            }
        }
        // A node that did not answer gets the sidecar when the file next changes or the
        // node's copy is re-made; a failure here never blocks the queue.
        if !complete { ctx.logger.debug("sidecars of inode \(ino) not written everywhere") }
        try? await ctx.store.sidecarsWritten(ino: ino, queuedBefore: started)
    }
}
