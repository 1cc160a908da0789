import CairnCore
import CairnMetadata
import CairnPolicy
import CairnProtocol
import Foundation

/// fsck and rebalance on the protocol port: MogileFS's fsck_* and rebalance_* commands, with
/// Cairn's extra arguments (repair, domain, path, grace; threshold) and reply keys.
struct HealthCommands {
    let ctx: TrackerContext
    let workers: WorkerRegistry
    var store: MetadataStore { ctx.store }

    func register(into h: inout [String: CommandHandler]) {
        let s = self
        h["workers"] = { _ in
            let jobs = s.workers.jobs()
            return [("jobs", String(jobs.count)), ("job_master", s.ctx.jobMaster.isMaster ? "1" : "0")]
                + jobs.enumerated().flatMap { [("job\($0.offset + 1)_name", $0.element.name), ("job\($0.offset + 1)_count", String($0.element.count))] }
        }
        h["set_workers"] = { a in
            let job = try a.require("job")
            guard let n = try a.optionalInt("count"), (0...64).contains(n) else { throw ProtocolError("bad_params", "count must be between 0 and 64") }
            guard s.workers.setCount(job, Int(n)) else {
                throw ProtocolError("bad_params", "unknown job \(job.prefix(40)); jobs: \(s.workers.jobs().map(\.name).joined(separator: ", "))")
            }
            return []
        }
        h["fsck_start"] = { a in try await s.fsckStart(a) }
        h["fsck_stop"] = { _ in
            var st = try await FsckState.load(s.store)
            st.running = false
            try await st.save(s.store)
            return []
        }
        h["fsck_reset"] = { _ in try await FsckState().save(s.store); return [] }
        h["fsck_clearlog"] = { _ in try await s.store.clearFindings(); return [] }
        h["fsck_status"] = { _ in try await s.fsckStatus() }
        h["fsck_getlog"] = { a in try await s.fsckLog(a) }
        h["rebalance_set_policy"] = { a in
            let policy = try RebalancePolicy(text: a["policy"] ?? "")
            try await s.store.setSetting("rebalance_policy", policy.text)
            return []
        }
        h["rebalance_test"] = { a in try await s.rebalancePlan(a, save: true) }
        h["rebalance_start"] = { a in try await s.rebalanceStart(a) }
        h["rebalance_stop"] = { _ in try await s.store.cancelMoves(reason: "rebalance"); return [] }
        h["rebalance_reset"] = { _ in
            try await s.store.cancelMoves(reason: "rebalance")
            try await s.store.setSetting("rebalance_plan", "")
            return []
        }
        h["rebalance_status"] = { _ in try await s.rebalanceStatus() }
        h["recover_from_storage"] = { _ in
            let r = try await StorageRecovery(ctx: s.ctx).run()
            s.ctx.devices.invalidate()
            s.ctx.catalog.invalidate()
            return [("devices", String(r.devices)), ("blobs", String(r.blobs)), ("without_sidecar", String(r.withoutSidecar)),
                    ("files", String(r.files)), ("restored", String(r.restored)), ("unreachable_devices", r.unreachable.map(String.init).joined(separator: ","))]
        }
    }

    // MARK: fsck

    func fsckStart(_ a: Args) async throws -> [(String, String)] {
        var st = FsckState()
        // MogileFS's fsck fixes what it finds; `repair=0` makes it report only.
        st.repair = a["repair"].map { $0 != "0" } ?? true
        if let name = a.nonEmpty("domain") {
            guard let d = try await ctx.catalog.domain(named: name) else { throw ProtocolError("domain_not_found", "domain \"\(name)\" does not exist") }
            st.domain = d.id
        }
        if let p = a.nonEmpty("path") { st.pathPrefix = p.hasPrefix("/") ? String(p.dropFirst()) : p }
        if let g = try a.optionalInt("grace") { st.graceSeconds = max(0, g) }
        st.running = true
        st.phase = .blobs
        st.started = Date().timeIntervalSince1970
        st.firstFindingID = try await store.lastFindingID()
        try await st.save(store)
        return [("started", String(Int(st.started)))]
    }

    func fsckStatus() async throws -> [(String, String)] {
        let st = try await FsckState.load(store)
        let counts = try await store.findingCounts(afterID: st.firstFindingID)
        let end = st.running ? Date().timeIntervalSince1970 : st.finished
        var out: [(String, String)] = [
            ("running", st.running ? "1" : "0"), ("phase", st.phase.rawValue), ("repair", st.repair ? "1" : "0"),
            ("start_time", String(Int(st.started))), ("end_time", st.running ? "" : String(Int(st.finished))),
            ("max_fid_checked", String(st.maxFidChecked ?? 0)),
            ("checked", String(st.checked)), ("bytes_verified", String(st.bytesVerified)),
            ("seconds", String(format: "%.1f", max(0, end - st.started))), ("policy_only", "0"),
            ("host", ctx.jobMaster.owner), ("findings", String(counts.values.reduce(0, +))),
        ]
        for (kind, n) in counts.sorted(by: { $0.key < $1.key }) { out.append(("num_\(kind)", String(n))) }
        return out
    }

    func fsckLog(_ a: Args) async throws -> [(String, String)] {
        let limit = Int(min(10_000, max(1, try a.optionalInt("limit") ?? 1000)))
        let after = try a.optionalInt("after_logid") ?? 0
        let rows = try await store.findings(afterID: after, limit: limit)
        let domains = Dictionary(uniqueKeysWithValues: try await store.domains().map { ($0.id, $0.name) })
        var out = [("row_count", String(rows.count))]
        for (i, f) in rows.enumerated() {
            let p = "row_\(i + 1)_"
            out += [(p + "logid", String(f.id)), (p + "utime", String(f.at)), (p + "fid", f.fid.map(String.init) ?? ""),
                    (p + "evcode", f.kind), (p + "devid", f.device.map(String.init) ?? ""),
                    (p + "domain", f.domain.flatMap { domains[$0] } ?? ""), (p + "key", f.key ?? ""),
                    (p + "detail", f.detail), (p + "repaired", f.repaired ? "1" : "0")]
        }
        return out
    }

    // MARK: rebalance

    func rebalancePlan(_ a: Args, save: Bool) async throws -> [(String, String)] {
        let plan = try await makePlan(a)
        if save {
            let saved = SavedPlan(at: Clock.nowSeconds(), moves: plan.moves.map { [$0.fid, Int64($0.from), Int64($0.to), $0.bytes] })
            try await store.setSetting("rebalance_plan", String(decoding: try JSONEncoder().encode(saved), as: UTF8.self))
        }
        return describe(plan)
    }

    func rebalanceStart(_ a: Args) async throws -> [(String, String)] {
        // A plan shown within the last 10 minutes is the plan carried out.
        var moves: [RebalancePlanner.Move]?
        if let text = try await store.setting("rebalance_plan"), let saved = try? JSONDecoder().decode(SavedPlan.self, from: Data(text.utf8)),
           Clock.nowSeconds() - saved.at < 600, a.nonEmpty("threshold") == nil {
            moves = saved.moves.map { RebalancePlanner.Move(fid: $0[0], from: DeviceID($0[1]), to: DeviceID($0[2]), bytes: $0[3]) }
        }
        var planned: [RebalancePlanner.Move]
        if let moves { planned = moves } else { planned = try await makePlan(a).moves }
        try await store.queueMoves(planned.map { .init(fid: $0.fid, from: $0.from, to: $0.to, bytes: $0.bytes, reason: "rebalance") })
        try await store.setSetting("rebalance_plan", "")
        try await store.setSetting("rebalance_started", "\(Clock.nowSeconds()) \(planned.count) \(planned.reduce(0) { $0 + $1.bytes })")
        return [("moves", String(planned.count)), ("bytes", String(planned.reduce(0) { $0 + $1.bytes }))]
    }

    func rebalanceStatus() async throws -> [(String, String)] {
        let pending = try await store.pendingMoves()
        let started = (try await store.setting("rebalance_started") ?? "").split(separator: " ").compactMap { Int64($0) }
        let devices = try await ctx.devices.devices().filter { $0.device.totalBytes > 0 && $0.device.status.canRead }
        var out: [(String, String)] = [
            ("running", (pending["rebalance"]?.count ?? 0) > 0 ? "1" : "0"),
            ("pending_moves", String(pending["rebalance"]?.count ?? 0)), ("pending_bytes", String(pending["rebalance"]?.bytes ?? 0)),
            ("drain_moves", String(pending["drain"]?.count ?? 0)), ("drain_bytes", String(pending["drain"]?.bytes ?? 0)),
        ]
        if started.count == 3 { out += [("start_time", String(started[0])), ("planned_moves", String(started[1])), ("planned_bytes", String(started[2]))] }
        out.append(("devices", String(devices.count)))
        for (i, d) in devices.enumerated() {
            out += [("dev\(i + 1)_devid", String(d.device.id)), ("dev\(i + 1)_percent_used", String(format: "%.1f", d.view.usedFraction * 100))]
        }
        return out
    }

    struct SavedPlan: Codable { var at: Int64; var moves: [[Int64]] }

    func makePlan(_ a: Args) async throws -> RebalancePlanner.Plan {
        var policy = try RebalancePolicy(text: try await store.setting("rebalance_policy") ?? "")
        if let t = a.nonEmpty("threshold") {
            guard let v = Double(t), v > 0, v < 100 else { throw ProtocolError("bad_params", "threshold is a percentage between 0 and 100, got \(t.prefix(20))") }
            policy.threshold = v
        }
        let infos = try await ctx.devices.devices().filter { $0.device.totalBytes > 0 && !$0.device.status.isGone && $0.view.servesReads }
        let devices = infos.map { d in
            RebalancePlanner.Device(id: d.device.id, host: d.host.id, totalBytes: d.device.totalBytes,
                                    usedBytes: d.device.totalBytes - d.device.freeBytes,
                                    acceptsNewFiles: d.view.acceptsNewFiles && policy.allowsTarget(d))
        }
        // Candidate blobs: those on the devices a move may come from.
        var blobs: [RebalancePlanner.Blob] = []
        var classes: [String: PlacementPolicy] = [:]
        for d in infos where policy.allowsSource(d) {
            for (fid, _) in try await store.blobsOn(device: d.device.id, after: 0, limit: policy.limitCount * 2) {
                guard let b = try await store.blob(fid: fid) else { continue }
                let ck = "\(b.domain)/\(b.classID)"
                if classes[ck] == nil { classes[ck] = try await ctx.catalog.classRecord(domain: b.domain, id: b.classID)?.policy ?? .hosts }
                blobs.append(.init(fid: fid, bytes: b.length, holders: b.devices, policy: classes[ck]!))
            }
        }
        var seen: Set<Fid> = []
        blobs = blobs.filter { seen.insert($0.fid).inserted }
        var plan = RebalancePlanner(thresholdPercent: policy.threshold, maxMoves: policy.limitCount).plan(devices: devices, blobs: blobs)
        if let limit = policy.limitBytes {
            var total: Int64 = 0
            plan.moves = Array(plan.moves.prefix { total += $0.bytes; return total <= limit })
        }
        return plan
    }

    func describe(_ plan: RebalancePlanner.Plan) -> [(String, String)] {
        var out = [("moves", String(plan.moves.count)), ("bytes", String(plan.moves.reduce(0) { $0 + $1.bytes }))]
        for (i, m) in plan.moves.enumerated() { out.append(("move_\(i + 1)", "\(m.fid):\(m.from):\(m.to):\(m.bytes)")) }
        let ids = plan.before.keys.sorted()
        out.append(("devices", String(ids.count)))
        for (i, id) in ids.enumerated() {
            out += [("dev\(i + 1)_devid", String(id)), ("dev\(i + 1)_before", String(format: "%.1f", plan.before[id]!)),
                    ("dev\(i + 1)_after", String(format: "%.1f", plan.after[id] ?? plan.before[id]!))]
        }
        return out
    }
}

/// MogileFS's rebalance policy string (`from_hosts=1,2 to_devices=5 limit_by_bytes=…`),
/// the knobs Cairn honours, plus `threshold` (percent from the average, default 10).
struct RebalancePolicy {
    var threshold: Double = 10
    var fromHosts: Set<HostID> = [], toHosts: Set<HostID> = []
    var fromDevices: Set<DeviceID> = [], toDevices: Set<DeviceID> = []
    var fromPercentUsed: Double?, toPercentFree: Double?
    var limitCount = 10_000
    var limitBytes: Int64?
    var text = ""

    init(text: String) throws {
        self.text = text
        for pair in text.split(whereSeparator: { $0 == " " || $0 == ";" }) {
            let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw ProtocolError("bad_params", "rebalance policy item \(pair.prefix(40)) is not key=value") }
            let ids = Set(kv[1].split(separator: ",").compactMap { Int($0) })
            switch kv[0] {
            case "threshold": threshold = Double(kv[1]) ?? threshold
            case "from_hosts": fromHosts = ids
            case "to_hosts": toHosts = ids
            case "from_devices": fromDevices = ids
            case "to_devices": toDevices = ids
            case "from_percent_used": fromPercentUsed = Double(kv[1])
            case "to_percent_free": toPercentFree = Double(kv[1])
            case "limit_by_count": limitCount = max(1, Int(kv[1]) ?? limitCount)
            case "limit_by_bytes": limitBytes = Int64(kv[1])
            default: break  // MogileFS knobs Cairn does not use (leave_in_drain_mode, …) are accepted and ignored
            }
        }
    }

    func allowsSource(_ d: DeviceInfo) -> Bool {
        (fromHosts.isEmpty || fromHosts.contains(d.host.id)) && (fromDevices.isEmpty || fromDevices.contains(d.device.id))
            && (fromPercentUsed.map { d.view.usedFraction * 100 >= $0 } ?? true)
    }

    func allowsTarget(_ d: DeviceInfo) -> Bool {
        (toHosts.isEmpty || toHosts.contains(d.host.id)) && (toDevices.isEmpty || toDevices.contains(d.device.id))
            && (toPercentFree.map { (1 - d.view.usedFraction) * 100 >= $0 } ?? true)
    }
}
