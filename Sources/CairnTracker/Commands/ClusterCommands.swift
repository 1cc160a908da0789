import CairnCore
import CairnMetadata
import CairnPolicy
import CairnProtocol
import Foundation

/// Domains, classes, hosts, devices, settings: MogileFS's admin commands (§1.3 of
/// shared/notes/mogilefs.md) with their argument names, reply keys and error codes, plus
/// node registration and cluster capacity for Cairn.
struct ClusterCommands {
    let ctx: TrackerContext
    var store: MetadataStore { ctx.store }

    func register(into h: inout [String: CommandHandler]) {
        let s = self
        h["get_domains"] = { _ in try await s.getDomains() }
        h["create_domain"] = { a in
            let d = try await s.store.createDomain(try a.require("domain"), defaultReplicas: s.ctx.config.defaultReplicas)
            s.ctx.catalog.invalidate()
            return [("domain", d.name)]
        }
        h["delete_domain"] = { a in
            let name = try a.require("domain")
            try await s.store.deleteDomain(name)
            s.ctx.catalog.invalidate()
            return [("domain", name)]
        }
        h["create_class"] = { a in try await s.saveClass(a, update: false) }
        h["update_class"] = { a in try await s.saveClass(a, update: true) }
        h["delete_class"] = { a in
            let d = try await s.domain(a)
            let c = try a.require("class")
            try await s.store.deleteClass(domain: d.id, name: c)
            s.ctx.catalog.invalidate()
            return [("domain", d.name), ("class", c)]
        }
        h["get_classes"] = { a in try await s.getClasses(a) }
        h["get_hosts"] = { a in try await s.getHosts(a) }
        h["create_host"] = { a in try await s.saveHost(a, create: true) }
        h["update_host"] = { a in try await s.saveHost(a, create: false) }
        h["delete_host"] = { a in
            try await s.store.deleteHost(name: try a.require("host"))
            s.ctx.devices.invalidate()
            return []
        }
        h["create_device"] = { a in try await s.createDevice(a) }
        h["get_devices"] = { a in try await s.getDevices(a) }
        h["set_state"] = { a in
            guard let dev = a.nonEmpty("device").flatMap({ Int($0) }), let st = a.nonEmpty("state") else {
                throw ProtocolError("bad_params", "set_state needs device and state")
            }
            guard let state = DeviceState(rawValue: st.lowercased()) else {
                throw ProtocolError("bad_params", "unknown state \"\(st)\"; use alive, readonly, drain, down or dead")
            }
            try await s.store.setDeviceState(dev, hostName: a.nonEmpty("host"), state: state)
            s.ctx.devices.invalidate()
            return []
        }
        h["set_weight"] = { a in
            guard let dev = a.nonEmpty("device").flatMap({ Int($0) }), let w = a.nonEmpty("weight").flatMap({ Int($0) }), w >= 0 else {
                throw ProtocolError("bad_params", "set_weight needs device and a weight ≥ 0")
            }
            try await s.store.setDeviceWeight(dev, weight: w)
            s.ctx.devices.invalidate()
            return []
        }
        h["replicate_now"] = { _ in [("count", String(try await s.store.replicateNow()))] }
        h["server_setting"] = { a in
            let k = try a.require("key", "bad_params")
            return [("key", k), ("value", try await s.store.setting(k) ?? "")]
        }
        h["server_settings"] = { _ in
            let all = try await s.store.settings()
            var out = [("key_count", String(all.count))]
            for (i, kv) in all.enumerated() { out += [("key_\(i + 1)", kv.0), ("value_\(i + 1)", kv.1)] }
            return out
        }
        h["set_server_setting"] = { a in
            let key = try a.require("key", "bad_params"), value = a["value"] ?? ""
            if key == "background_bandwidth" {
                guard let n = Int64(value), n >= 0 else { throw ProtocolError("bad_params", "background_bandwidth is bytes per second (0: unlimited), got \(value.prefix(40))") }
                s.ctx.throttle.limit.store(n, ordering: .relaxed)
            }
            try await s.store.setSetting(key, value)
            return []
        }
        h["noop"] = { _ in [] }
        h["clear_cache"] = { _ in s.ctx.devices.invalidate(); s.ctx.catalog.invalidate(); return [] }
        h["do_monitor_round"] = { _ in s.ctx.devices.invalidate(); return [] }
        h["sleep"] = { a in
            let secs = min(60, max(0, Int(a["duration"] ?? "10") ?? 10))
            try await Task.sleep(for: .seconds(secs))
            return []
        }
        h["register_node"] = { a in try await s.registerNode(a) }
        h["cluster_stats"] = { _ in
            let st = try await s.store.stats()
            return [("files", String(st.files)), ("blobs", String(st.blobs)), ("bytes", String(st.bytes)), ("copies", String(st.copies)),
                    ("replication_queue", String(st.replicationQueue)), ("delete_queue", String(st.deleteQueue)),
                    ("sidecar_queue", String(st.sidecarQueue))]
        }
        h["statfs"] = { _ in
            let devs = try await s.ctx.devices.devices().filter { $0.device.status.canRead }
            let total = devs.reduce(Int64(0)) { $0 + $1.device.totalBytes }
            let free = devs.filter(\.view.acceptsNewFiles).reduce(Int64(0)) { $0 + $1.device.freeBytes }
            return [("total", String(total)), ("free", String(free)), ("devices", String(devs.count))]
        }
    }

    func domain(_ a: Args) async throws -> DomainRecord {
        guard let name = a.nonEmpty("domain") else { throw ProtocolError("no_domain", "no domain given") }
        guard let d = try await ctx.catalog.domain(named: name) else {
            throw ProtocolError("unreg_domain", "domain \"\(name)\" is not registered; create it with `cairn admin domain add \(name)`")
        }
        return d
    }

    static func replPolicyName(_ p: PlacementPolicy) -> String { p == .hosts ? "MultipleHosts()" : "MultipleDevices()" }

    func getDomains() async throws -> [(String, String)] {
        let domains = try await store.domains()
        let classes = Dictionary(grouping: try await store.allClasses(), by: \.domain)
        var out = [("domains", String(domains.count))]
        for (i, d) in domains.enumerated() {
            let n = i + 1
            let cs = classes[d.id] ?? []
            out += [("domain\(n)", d.name), ("domain\(n)classes", String(cs.count))]
            for (j, c) in cs.enumerated() {
                let p = "domain\(n)class\(j + 1)"
                out += [("\(p)name", c.name), ("\(p)mindevcount", String(c.replicas)),
                        ("\(p)replpolicy", Self.replPolicyName(c.policy)), ("\(p)hashtype", c.checksum.mogileName)]
            }
        }
        return out
    }

    func getClasses(_ a: Args) async throws -> [(String, String)] {
        let d = try await domain(a)
        let cs = try await store.classes(domain: d.id)
        var out = [("class_count", String(cs.count))]
        for (i, c) in cs.enumerated() {
            let p = "class\(i + 1)_"
            out += [(p + "name", c.name), (p + "replicas", String(c.replicas)), (p + "sync_copies", String(c.syncCopies)),
                    (p + "policy", c.policy.rawValue), (p + "checksum", c.checksum.rawValue), (p + "chunk_size", String(c.chunkSize))]
        }
        return out
    }

    func saveClass(_ a: Args, update: Bool) async throws -> [(String, String)] {
        let d = try await domain(a)
        let name = try a.require("class")
        guard ClassName.isValid(name) else { throw ProtocolError("no_class", "\"\(name.prefix(60))\" cannot be a class name") }
        let replicas = a.nonEmpty("mindevcount") ?? a.nonEmpty("replicas")
        guard let replicasText = replicas else { throw ProtocolError("invalid_mindevcount", "mindevcount (replicas) is required and must be > 0") }
        guard let r = Int(replicasText), r > 0, r <= 16 else { throw ProtocolError("invalid_mindevcount", "mindevcount must be between 1 and 16, got \(replicasText)") }
        var policy: PlacementPolicy?
        if let p = a.nonEmpty("policy") {
            guard let pp = PlacementPolicy(rawValue: p) else { throw ProtocolError("invalid_replpolicy", "policy must be hosts or devices, got \(p)") }
            policy = pp
        } else if let rp = a.nonEmpty("replpolicy") {
            if rp.hasPrefix("MultipleHosts(") { policy = .hosts }
            else if rp.hasPrefix("MultipleDevices(") { policy = .devices }
            else { throw ProtocolError("invalid_replpolicy", "replpolicy must be MultipleHosts() or MultipleDevices(), got \(rp)") }
        }
        var checksum: ChecksumAlgorithm?
        if let c = a.nonEmpty("checksum") ?? a.nonEmpty("hashtype") {
            guard let alg = ChecksumAlgorithm(name: c) else { throw ProtocolError("invalid_hashtype", "checksum must be none, md5 or sha256, got \(c)") }
            checksum = alg
        }
        let sync = try a.optionalInt("sync_copies").map(Int.init)
        if let sync, sync < 1 || sync > r { throw ProtocolError("invalid_sync_copies", "sync copies must be between 1 and the replica count (\(r))") }
        let chunk = try a.optionalInt("chunk_size")
        if let chunk, chunk < 64 << 10 || chunk > 1 << 30 { throw ProtocolError("invalid_chunk_size", "chunk size must be between 64 KiB and 1 GiB") }
        let newPolicy = policy, newChecksum = checksum
        let c = try await store.saveClass(domain: d.id, name: name, update: update) { c in
            c.replicas = r
            c.syncCopies = sync ?? min(c.syncCopies, r)
            if update == false, sync == nil { c.syncCopies = min(2, r) }
            if let newPolicy { c.policy = newPolicy }
            if let newChecksum { c.checksum = newChecksum }
            if let chunk { c.chunkSize = chunk }
        }
        ctx.catalog.invalidate()
        return [("class", c.name), ("mindevcount", String(c.replicas)), ("domain", d.name)]
    }

    func getHosts(_ a: Args) async throws -> [(String, String)] {
        var hosts = try await store.hosts()
        if let id = a.nonEmpty("hostid").flatMap({ Int($0) }) { hosts = hosts.filter { $0.id == id } }
        var out = [("hosts", String(hosts.count))]
        for (i, h) in hosts.enumerated() {
            let p = "host\(i + 1)_"
            out += [(p + "hostid", String(h.id)), (p + "status", h.status.rawValue), (p + "hostname", h.name), (p + "hostip", h.ip),
                    (p + "http_port", String(h.port)), (p + "http_get_port", h.getPort.map(String.init) ?? ""),
                    (p + "altip", ""), (p + "altmask", ""), (p + "observed_state", h.observed.rawValue)]
        }
        return out
    }

    func saveHost(_ a: Args, create: Bool) async throws -> [(String, String)] {
        let name = try a.require("host")
        var status: HostStatus?
        if let st = a.nonEmpty("status") {
            guard let hs = HostStatus(rawValue: st.lowercased()) else { throw ProtocolError("unknown_state", "host status must be alive, readonly, down or dead") }
            status = hs
        }
        let change = MetadataStore.HostChange(ip: a.nonEmpty("ip"), port: a.nonEmpty("port").flatMap { Int($0) },
                                              getPort: a.nonEmpty("getport").flatMap { Int($0) }, status: status)
        let h = try await store.saveHost(name: name, create: create, change: change)
        ctx.devices.invalidate()
        return [("hostid", String(h.id)), ("hostname", h.name)]
    }

    func createDevice(_ a: Args) async throws -> [(String, String)] {
        let hosts = try await store.hosts()
        let host: HostRecord
        if let id = a.nonEmpty("hostid").flatMap({ Int($0) }) {
            guard let h = hosts.first(where: { $0.id == id }) else { throw ProtocolError("unknown_hostid", "host id \(id) does not exist") }
            host = h
        } else if let name = a.nonEmpty("hostname") {
            guard let h = hosts.first(where: { $0.name == name }) else { throw ProtocolError("unknown_host", "host \"\(name)\" does not exist") }
            host = h
        } else { throw ProtocolError("bad_args", "create_device needs hostid or hostname") }
        var state = DeviceState.alive
        if let st = a.nonEmpty("state") {
            guard let s = DeviceState(rawValue: st.lowercased()) else { throw ProtocolError("invalid_state", "state must be alive, readonly, drain, down or dead") }
            state = s
        }
        var devid: Int?
        if let d = a.nonEmpty("devid") {
            guard let v = Int(d), v > 0 else { throw ProtocolError("invalid_devid", "devid must be a positive integer") }
            devid = v
        }
        let id = try await store.createDevice(id: devid, host: host.id, state: state)
        ctx.devices.invalidate()
        return [("devid", String(id))]
    }

    func getDevices(_ a: Args) async throws -> [(String, String)] {
        var devs = try await store.devices()
        if let id = a.nonEmpty("devid").flatMap({ Int($0) }) { devs = devs.filter { $0.id == id } }
        let contents = try await store.deviceContents()
        var out = [("devices", String(devs.count))]
        for (i, d) in devs.enumerated() {
            let p = "dev\(i + 1)_"
            out += [(p + "copies", String(contents[d.id]?.copies ?? 0)), (p + "mb_stored", String((contents[d.id]?.bytes ?? 0) >> 20))]
            out += [(p + "devid", String(d.id)), (p + "hostid", String(d.host)), (p + "status", d.status.rawValue),
                    (p + "weight", String(d.weight)), (p + "mb_total", String(d.totalBytes >> 20)), (p + "mb_used", String(d.usedBytes >> 20)),
                    (p + "mb_free", String(d.freeBytes >> 20)), (p + "mb_asof", d.usageAt.map(String.init) ?? ""),
                    (p + "observed_state", d.observed.rawValue), (p + "utilization", String(format: "%.1f", d.ioUtilization)),
                    (p + "reject_bad_md5", "0")]
        }
        return out
    }

    func registerNode(_ a: Args) async throws -> [(String, String)] {
        let name = try a.require("name")
        let ip = try a.require("ip")
        let port = Int(try a.requireInt("port"))
        let existing = (a["devices"] ?? "").split(separator: ",").compactMap { Int($0) }
        let fresh = Int(try a.optionalInt("new_devices") ?? 0)
        guard (0...64).contains(fresh) else { throw ProtocolError("bad_params", "new_devices must be between 0 and 64") }
        // A node's periodic heartbeat re-registers it only when this tracker does not know it
        // (a new or rebuilt metadata database); an admin's host state is never overridden.
        if a["heartbeat"] == "1", let known = try await store.hosts().first(where: { $0.name == name }) {
            let devices = Set(try await store.devices().filter { $0.host == known.id }.map(\.id))
            if Set(existing).isSubset(of: devices) { return [("hostid", String(known.id)), ("new_devices", "")] }
        }
        let (host, ids) = try await store.registerNode(name: name, ip: ip, port: port, existing: existing, newDevices: fresh)
        ctx.devices.invalidate()
        ctx.logger.info("storage node \(name) registered at \(ip):\(port) (host \(host.id)); new devices \(ids)")
        // Fresh devices are usable as soon as the monitor has measured them: measure now.
        await UsageMonitor(ctx: ctx, workers: nil).poll(host: host, devices: [])
        ctx.devices.invalidate()
        return [("hostid", String(host.id)), ("new_devices", ids.map(String.init).joined(separator: ","))]
    }
}

/// Names for classes: printable, no separators that would break the protocol or the CLI.
enum ClassName {
    static func isValid(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 64 && s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.".unicodeScalars.contains($0) }
    }
}
