import CairnCore
import CairnMetadata
import CairnPolicy
import Foundation

/// An fsck run's progress, kept in the `fsck` setting so it survives restarts and any
/// tracker (the job master) can continue it.
struct FsckState: Codable, Sendable {
    enum Phase: String, Codable, Sendable { case blobs, dangling, orphans, done }
    var running = false
    var repair = false
    var domain: DomainID?
    var pathPrefix: String?
    /// Orphans younger than this many seconds are reported but not deleted.
    var graceSeconds: Int64 = 3600
    var phase: Phase = .done
    var cursor: Fid = 0
    var orphanDevices: [DeviceID] = []
    var checked = 0
    /// The last fid the blob phase checked (the cursor is reused by the orphan scan).
    var maxFidChecked: Fid?
    var bytesVerified: Int64 = 0
    var started: Double = 0
    var finished: Double = 0
    /// Findings of this run have ids above this one.
    var firstFindingID: Int64 = 0

    static func load(_ store: MetadataStore) async throws -> FsckState {
        guard let text = try await store.setting("fsck"), let s = try? JSONDecoder().decode(FsckState.self, from: Data(text.utf8)) else { return FsckState() }
        return s
    }

    func save(_ store: MetadataStore) async throws {
        try await store.setSetting("fsck", String(decoding: try JSONEncoder().encode(self), as: UTF8.self))
    }
}

/// Checks every blob's copies against the metadata (count, size, checksum read back on the
/// node), finds chunks that point at nothing and blobs on disk that nothing references, and
/// with repair fixes each from a good copy. Blobs a storage node's scrubber reported are
/// checked (and repaired) as soon as they arrive, fsck running or not.
struct FsckWorker {
    let ctx: TrackerContext
    let workers: WorkerRegistry

    func run() async {
        while !Task.isCancelled {
            var did = 0
            if ctx.jobMaster.isMaster, workers.count("fsck") > 0 {
                did += await checkReported()
                did += await step()
            }
            if did == 0 { try? await Task.sleep(for: .milliseconds(500)) }
        }
    }

    /// Scrub reports: check and repair now.
    func checkReported() async -> Int {
        guard let due = try? await ctx.store.dueChecks(limit: 50), !due.isEmpty else { return 0 }
        for item in due {
            if let use = try? await ctx.store.blobUse(fid: item.fid) {
                _ = await BlobChecker(ctx: ctx).check(use, repair: true)
            }
            try? await ctx.store.checkDone(fid: item.fid)
        }
        return due.count
    }

    /// One batch of the running fsck, if any.
    func step() async -> Int {
        guard var state = try? await FsckState.load(ctx.store), state.running else { return 0 }
        let checker = BlobChecker(ctx: ctx)
        switch state.phase {
        case .blobs:
            guard let batch = try? await ctx.store.blobsForCheck(after: state.cursor, limit: 64, domain: state.domain) else { return 0 }
            if batch.isEmpty { state.phase = .dangling; break }
            let wanted = batch.filter { use in state.pathPrefix.map { (use.key ?? "").hasPrefix($0) } ?? true }
            let parallel = max(1, workers.count("fsck")), repair = state.repair, grace = state.graceSeconds
            await withTaskGroup(of: Void.self) { group in
                var it = wanted.makeIterator()
                for _ in 0..<parallel { if let u = it.next() { group.addTask { _ = await checker.check(u, repair: repair, grace: grace) } } }
                while await group.next() != nil { if let u = it.next() { group.addTask { _ = await checker.check(u, repair: repair, grace: grace) } } }
            }
            state.checked += wanted.count
            state.bytesVerified += wanted.reduce(0) { $0 + $1.blob.length * Int64($1.blob.devices.count) }
            state.cursor = batch.last!.blob.fid
            state.maxFidChecked = state.cursor
        case .dangling:
            for d in (try? await ctx.store.danglingChunks(domain: state.domain, limit: 10_000)) ?? []
                where state.pathPrefix.map({ (d.key ?? "").hasPrefix($0) }) ?? true {
                try? await ctx.store.record(.init(fid: d.fid, domain: d.domain, key: d.key, kind: "dangling_chunk",
                                                  detail: "a chunk of this file names fid \(d.fid), which the metadata has no blob for", repaired: false))
            }
            state.phase = (state.domain == nil && state.pathPrefix == nil) ? .orphans : .done
            state.orphanDevices = ((try? await ctx.devices.devices()) ?? []).filter { $0.view.servesReads }.map(\.device.id)
            state.cursor = 0
        case .orphans:
            guard let device = state.orphanDevices.first else { state.phase = .done; break }
            let found = await checker.orphans(on: device, after: state.cursor, repair: state.repair, grace: state.graceSeconds)
            if let last = found { state.cursor = last } else { state.orphanDevices.removeFirst(); state.cursor = 0 }
        case .done:
            break
        }
        if state.phase == .done {
            state.running = false
            state.finished = Date().timeIntervalSince1970
            ctx.logger.info("fsck finished: \(state.checked) blobs checked")
        }
        // A stop or a new start meanwhile wins over this batch's progress.
        if let now = try? await FsckState.load(ctx.store), now.running, now.started == state.started {
            try? await state.save(ctx.store)
        }
        return 1
    }
}

/// Checks one blob's copies and repairs what it can.
struct BlobChecker {
    let ctx: TrackerContext

    func note(_ use: MetadataStore.BlobUse, device: DeviceID? = nil, _ kind: String, _ detail: String, repaired: Bool) async {
        try? await ctx.store.record(.init(fid: use.blob.fid, device: device, domain: use.blob.domain, key: use.key,
                                          kind: kind, detail: detail, repaired: repaired))
    }

    /// Returns how many findings it recorded. Surplus copies are deleted (with repair) only
    /// once the newest is `grace` seconds old: a copy being moved is briefly one too many.
    func check(_ use: MetadataStore.BlobUse, repair: Bool, grace: Int64 = FsckState().graceSeconds) async -> Int {
        let blob = use.blob
        guard let c = try? await ctx.catalog.classRecord(domain: blob.domain, id: blob.classID),
              let devs = try? await ctx.devices.byID() else { return 0 }
        let algorithm = blob.checksum.flatMap { Checksum(parsing: $0)?.algorithm } ?? .none
        var good: [DeviceInfo] = []
        var newest: Int64 = 0
        var unverifiable = 0
        var findings = 0
        for id in blob.devices {
            guard let d = devs[id] else {
                findings += 1
                if repair { try? await ctx.store.removeCopy(fid: blob.fid, device: id) }
                await note(use, device: id, "unknown_device", "a copy is recorded on device \(id), which does not exist", repaired: repair)
                continue
            }
            guard d.view.servesReads, let v = await ctx.gateway.verify(d, fid: blob.fid, algorithm: algorithm) else { unverifiable += 1; continue }
            var problem: (kind: String, detail: String)?
            switch v {
            case .missing:
                problem = ("missing_copy", "device \(id) (\(d.host.name)) has no copy")
            case .corrupt(_, let stored, let computed):
                problem = ("checksum_mismatch", "copy on device \(id) (\(d.host.name)) reads back as \(computed), stored as \(stored)")
            case .intact(let size, let sum, let mtime):
                newest = max(newest, mtime)
                if size != blob.length {
                    problem = ("wrong_size", "copy on device \(id) (\(d.host.name)) has \(size) bytes, expected \(blob.length)")
                } else if let want = blob.checksum, let got = sum, want.lowercased() != got.lowercased() {
                    problem = ("checksum_mismatch", "copy on device \(id) (\(d.host.name)) has checksum \(got), expected \(want)")
                }
            }
            guard let p = problem else { good.append(d); continue }
            findings += 1
            var fixed = false
            if repair {
                // The bad copy goes; the count check below makes a new one from a good copy.
                if case .missing = v { fixed = true } else { fixed = await ctx.gateway.delete(fid: blob.fid, on: d) }
                if fixed { try? await ctx.store.removeCopy(fid: blob.fid, device: id) }
            }
            await note(use, device: id, p.kind, p.detail, repaired: fixed)
        }
        let distinct = c.policy == .hosts ? Set(good.map(\.host.id)).count : good.count
        if good.isEmpty && unverifiable == 0 {
            findings += 1
            await note(use, "lost", "no good copy of fid \(blob.fid) remains on any device", repaired: false)
        } else if distinct + unverifiable < c.replicas, !good.isEmpty {
            findings += 1
            var fixed = false
            var detail = "\(distinct) good copies on distinct \(c.policy == .hosts ? "hosts" : "devices"), class \(c.name) wants \(c.replicas)"
            if repair, let outcome = try? await ctx.replicator.ensure(fid: blob.fid, claimed: good.map(\.device.id), expectedSize: blob.length,
                                                                      expectedChecksum: blob.checksum, target: c.replicas, policy: c.policy,
                                                                      algorithm: c.checksum, throttle: ctx.throttle) {
                // Record every verified copy: a device whose bad copy was just removed may hold the new one.
                for d in outcome.devices { try? await ctx.store.addCopy(fid: blob.fid, device: d) }
                fixed = outcome.shortfall == nil
                if let s = outcome.shortfall { detail += "; \(s)" ; try? await ctx.store.queueReplication(fid: blob.fid) }
            }
            await note(use, "under_replicated", detail, repaired: fixed)
        } else if good.count > c.replicas, unverifiable == 0, !((try? await ctx.store.hasPendingMove(fid: blob.fid)) ?? true) {
            findings += 1
            let keep = keepSet(good, replicas: c.replicas, policy: c.policy)
            var fixed = false
            let settled = Clock.nowSeconds() - newest >= grace
            if repair && settled {
                fixed = true
                for d in good where !keep.contains(d.device.id) {
                    if await ctx.gateway.delete(fid: blob.fid, on: d) { try? await ctx.store.removeCopy(fid: blob.fid, device: d.device.id) } else { fixed = false }
                }
            }
            await note(use, "over_replicated", "\(good.count) copies, class \(c.name) wants \(c.replicas)"
                           + (repair && !settled ? "; surplus kept until the newest copy is \(grace) s old" : ""), repaired: fixed)
        }
        return findings
    }

    /// The copies to keep: spread over distinct hosts first, then the emptiest devices.
    func keepSet(_ copies: [DeviceInfo], replicas: Int, policy: PlacementPolicy) -> Set<DeviceID> {
        var keep: [DeviceInfo] = []
        for d in copies.sorted(by: { $0.device.freeBytes > $1.device.freeBytes }) where keep.count < replicas {
            if policy == .hosts, keep.contains(where: { $0.host.id == d.host.id }) { continue }
            keep.append(d)
        }
        for d in copies where keep.count < replicas && !keep.contains(where: { $0.device.id == d.device.id }) { keep.append(d) }
        return Set(keep.map(\.device.id))
    }

    /// One page of a device's blobs: those no metadata references are orphans (deleted, with
    /// repair, once older than `grace` seconds). Returns the last fid seen, nil at the end.
    func orphans(on device: DeviceID, after: Fid, repair: Bool, grace: Int64) async -> Fid? {
        guard let d = try? await ctx.devices.byID()[device], let page = await ctx.gateway.list(d, after: after, limit: 1000), let last = page.last else { return nil }
        let known = (try? await ctx.store.knownFids(page.map(\.fid))) ?? Set(page.map(\.fid))
        let now = Clock.nowSeconds()
        for entry in page where !known.contains(entry.fid) {
            let age = now - entry.mtime
            var fixed = false
            if repair, age >= grace { fixed = await ctx.gateway.delete(fid: entry.fid, on: d) }
            try? await ctx.store.record(.init(fid: entry.fid, device: device, domain: nil, key: nil, kind: "orphan",
                                              detail: "device \(device) (\(d.host.name)) holds fid \(entry.fid) (\(entry.size) bytes, \(age) s old) that no metadata references"
                                                  + (repair && !fixed && age < grace ? "; kept until it is \(grace) s old" : ""),
                                              repaired: fixed))
        }
        return last.fid
    }
}
