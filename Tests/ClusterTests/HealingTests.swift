import CairnClient
import CairnCore
import CairnProtocol
import CairnTransfer
import Foundation
import CairnTestSupport
import Testing

/// Self-healing with real processes: reaper, fsck and scrub with checksums compared end to
/// end, drain, rebalance, throttling, job-master takeover.
@Suite(.serialized) struct HealingTests {
    static let chunk = 1 << 20

    /// Device id → the node index (`node<i>`) that holds it.
    static func nodeOfDevice(_ c: TestCluster) throws -> [Int: Int] {
        let hosts = try c.client.call("get_hosts"), devs = try c.client.call("get_devices")
        var nodeOfHost: [String: Int] = [:]
        for i in 1...Int(hosts.int("hosts") ?? 0) { nodeOfHost[hosts["host\(i)_hostid"]!] = Int(hosts["host\(i)_hostname"]!.dropFirst(4)) }
        var out: [Int: Int] = [:]
        for i in 1...Int(devs.int("devices") ?? 0) { out[Int(devs.int("dev\(i)_devid")!)] = nodeOfHost[devs["dev\(i)_hostid"]!] }
        return out
    }

    static func deviceField(_ c: TestCluster, _ devid: Int, _ field: String) throws -> String? {
        let r = try c.client.call("get_devices", [("devid", String(devid))])
        return r["dev1_\(field)"]
    }

    /// The on-disk file of a fid's copy on a device.
    static func blobPath(_ c: TestCluster, node: Int, device: Int, fid: Fid) -> String {
        c.root + "/node\(node)/dev\(device)/" + FidLayout.relativePath(fid: fid)
    }

    static func put(_ c: TestCluster, _ key: String, _ data: [UInt8], cls: String? = nil) throws {
        let f = try writeTemp(data, dir: c.root, name: "in-\(UUID().uuidString.prefix(6))")
        let r = try c.cli(["put", "test", key, f] + (cls.map { ["--class", $0] } ?? []))
        #expect(r.status == 0, "put \(key): \(r.err)")
    }

    static func readBack(_ c: TestCluster, _ key: String) throws -> [UInt8] {
        let r = try c.cli(["get", "test", key, "-"])
        guard r.status == 0 else { throw TestFailure("get \(key) failed: \(r.err)") }
        return Array(r.out)
    }

    static func findings(_ c: TestCluster) throws -> [[String: String]] {
        let r = try c.client.call("fsck_getlog", [("limit", "10000")])
        let fields = ["evcode", "fid", "devid", "key", "domain", "repaired", "detail"]
        return (0..<Int(r.int("row_count") ?? 0)).map { i in Dictionary(uniqueKeysWithValues: fields.map { ($0, r["row_\(i + 1)_\($0)"] ?? "") }) }
    }

    static func runFsck(_ c: TestCluster, repair: Bool, grace: Int = 3600) throws {
        _ = try c.client.call("fsck_clearlog")
        #expect(try c.cli(["admin", "fsck", "start", "--grace", String(grace)] + (repair ? ["--repair"] : [])).status == 0)
        try c.wait("fsck to finish", timeout: 60) { try c.client.call("fsck_status")["running"] == "0" }
    }

    @Test func deadDeviceIsReReplicatedWhileReadsContinue() throws {
        let c = try TestCluster(nodes: 3)
        defer { c.stop() }
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "two"), ("mindevcount", "2"), ("chunk_size", String(Self.chunk))])
        var contents: [String: [UInt8]] = [:]
        for i in 0..<12 {
            let data = randomBytes(i % 3 == 0 ? 2 * Self.chunk + 100 : 5000 + i, seed: UInt64(100 + i))
            contents["r/\(i)"] = data
            try Self.put(c, "r/\(i)", data, cls: "two")
        }
        let nodeOf = try Self.nodeOfDevice(c)
        let victim = nodeOf.first { $0.value == 0 }!.key
        // Reads keep working during the repair.
        let stop = Flag(), failures = LockedList(), expected = contents
        let reader = Thread {
            var n = 0
            while !stop.isSet {
                let key = "r/\(n % 12)"
                if (try? Self.readBack(c, key)) != expected[key] { failures.append(n) }
                n += 1
            }
        }
        reader.start()
        #expect(try c.cli(["admin", "device", "state", String(victim), "dead"]).status == 0)
        try c.wait("every chunk back at 2 copies on live devices", timeout: 60) {
            try contents.keys.allSatisfy { key in
                try FileLayout.fetch(domain: "test", key: key, tracker: c.client).chunks.allSatisfy { ch in
                    Set(ch.devices.filter { $0 != victim }).count >= 2
                }
            }
        }
        stop.set()
        while !reader.isFinished { Thread.sleep(forTimeInterval: 0.05) }
        #expect(failures.all.isEmpty, "reads failed during the repair: \(failures.count)")
        // The new copies hold the right bytes: read from each surviving node directly.
        for (key, data) in contents {
            let l = try FileLayout.fetch(domain: "test", key: key, tracker: c.client)
            var whole: [UInt8] = []
            for ch in l.chunks { whole += try HTTPTransfer.shared.get(ch.urls.last!).body }
            #expect(whole == data, "\(key) read from its last replica")
        }
    }

    @Test func fsckFindsAndRepairsCorruptMissingAndOrphanBlobs() throws {
        let c = try TestCluster(nodes: 3, nodeArgs: ["--scrub-rate", "0"])
        defer { c.stop() }
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "safe"), ("mindevcount", "2"), ("hashtype", "SHA-256")])
        var contents: [String: [UInt8]] = [:]
        for i in 0..<8 {
            contents["f/\(i)"] = randomBytes(3000 + 17 * i, seed: UInt64(i))
            try Self.put(c, "f/\(i)", contents["f/\(i)"]!, cls: "safe")
        }
        try Self.runFsck(c, repair: false)
        let healthy = try Self.findings(c)
        #expect(healthy.isEmpty, "a healthy cluster has no findings: \(healthy)")

        let nodeOf = try Self.nodeOfDevice(c)
        // Flip a byte in one copy of f/0, f/1, f/2; delete one copy of f/3; add an orphan blob.
        var flipped: Set<Int64> = []
        for i in 0..<3 {
            let ch = try FileLayout.fetch(domain: "test", key: "f/\(i)", tracker: c.client).chunks[0]
            let path = Self.blobPath(c, node: nodeOf[ch.devices[0]]!, device: ch.devices[0], fid: ch.fid)
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            bytes[100 + i] ^= 0xFF
            try Data(bytes).write(to: URL(fileURLWithPath: path))  // rewritten in place: its checksum xattr is gone too
            flipped.insert(ch.fid)
        }
        let missing = try FileLayout.fetch(domain: "test", key: "f/3", tracker: c.client).chunks[0]
        try FileManager.default.removeItem(atPath: Self.blobPath(c, node: nodeOf[missing.devices[0]]!, device: missing.devices[0], fid: missing.fid))
        let orphanDevice = nodeOf.keys.sorted()[0]
        let orphanPath = Self.blobPath(c, node: nodeOf[orphanDevice]!, device: orphanDevice, fid: 9_999_999)
        try FileManager.default.createDirectory(atPath: (orphanPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data("nobody owns me".utf8).write(to: URL(fileURLWithPath: orphanPath))

        try Self.runFsck(c, repair: false)
        let found = try Self.findings(c)
        let mismatches = found.filter { $0["evcode"] == "checksum_mismatch" }
        #expect(Set(mismatches.compactMap { Int64($0["fid"]!) }) == flipped, "every flipped blob is found: \(found)")
        #expect(mismatches.allSatisfy { $0["domain"] == "test" && $0["key"]!.hasPrefix("f/") }, "findings name domain and key")
        #expect(found.contains { $0["evcode"] == "missing_copy" && $0["fid"] == String(missing.fid) })
        #expect(found.contains { $0["evcode"] == "orphan" && $0["fid"] == "9999999" })
        #expect(found.allSatisfy { $0["repaired"] == "0" }, "report-only fsck changes nothing")
        #expect(FileManager.default.fileExists(atPath: orphanPath))

        try Self.runFsck(c, repair: true, grace: 0)
        let repaired = try Self.findings(c)
        #expect(repaired.filter { $0["evcode"] != "under_replicated" }.allSatisfy { $0["repaired"] == "1" }, "\(repaired)")
        #expect(!FileManager.default.fileExists(atPath: orphanPath), "the orphan was deleted")
        // Every copy of every file is good again: fsck finds nothing, and each replica serves the bytes.
        try Self.runFsck(c, repair: false)
        let after = try Self.findings(c)
        #expect(after.isEmpty, "after repair: \(after)")
        for (key, data) in contents {
            let ch = try FileLayout.fetch(domain: "test", key: key, tracker: c.client).chunks[0]
            #expect(ch.devices.count == 2)
            for url in ch.urls { #expect(try HTTPTransfer.shared.get(url).body == data, "\(key) at \(url)") }
        }
        // One copy too many: reported, and with repair deleted (grace 0) down to the class's 2.
        let extra = try FileLayout.fetch(domain: "test", key: "f/5", tracker: c.client).chunks[0]
        let spare = nodeOf.keys.first { !extra.devices.contains($0) }!
        _ = try c.client.call("httpcopy", [("fid", String(extra.fid)), ("sdevid", String(extra.devices[0])), ("ddevid", String(spare))])
        try Self.runFsck(c, repair: false)
        let surplus = try Self.findings(c)
        #expect(surplus.contains { $0["evcode"] == "over_replicated" && $0["fid"] == String(extra.fid) }, "\(surplus)")
        try Self.runFsck(c, repair: true, grace: 0)
        #expect(try FileLayout.fetch(domain: "test", key: "f/5", tracker: c.client).chunks[0].devices.count == 2)
        let status = try c.cli(["admin", "fsck", "status", "--json"])
        #expect(status.status == 0 && String(decoding: status.out, as: UTF8.self).contains("\"checked_files\" : 8"), "\(String(decoding: status.out, as: UTF8.self))")
    }

    @Test func scrubFindsFlippedBytesAndTheCopyIsRepaired() throws {
        let c = try TestCluster(nodes: 2, nodeArgs: ["--scrub-rate", "64", "--scrub-interval", "1"])
        defer { c.stop() }
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "safe"), ("mindevcount", "2"), ("hashtype", "SHA-256")])
        let data = randomBytes(200_000, seed: 5)
        try Self.put(c, "scrub/me", data, cls: "safe")
        let ch = try FileLayout.fetch(domain: "test", key: "scrub/me", tracker: c.client).chunks[0]
        let nodeOf = try Self.nodeOfDevice(c)
        let path = Self.blobPath(c, node: nodeOf[ch.devices[0]]!, device: ch.devices[0], fid: ch.fid)
        // Rot in place: the same file, its checksum xattr kept, one byte changed.
        let fd = open(path, O_WRONLY)
        var b: UInt8 = data[1234] ^ 0x55
        #expect(pwrite(fd, &b, 1, 1234) == 1)
        close(fd)
        try c.wait("the scrubber's finding to be repaired", timeout: 30) {
            try Self.findings(c).contains { $0["evcode"] == "checksum_mismatch" && $0["fid"] == String(ch.fid) && $0["repaired"] == "1" }
        }
        try c.wait("the copy restored from the good one", timeout: 30) {
            let l = try FileLayout.fetch(domain: "test", key: "scrub/me", tracker: c.client).chunks[0]
            return try l.devices.count == 2 && l.urls.allSatisfy { try HTTPTransfer.shared.get($0).body == data }
        }
    }

    @Test func drainEmptiesADeviceWithoutDroppingBelowSyncCopies() throws {
        let c = try TestCluster(nodes: 3)
        defer { c.stop() }
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "two"), ("mindevcount", "2"), ("chunk_size", String(Self.chunk))])
        var contents: [String: [UInt8]] = [:]
        for i in 0..<10 {
            contents["d/\(i)"] = randomBytes(i == 0 ? 3 * Self.chunk : 4000 + i, seed: UInt64(200 + i))
            try Self.put(c, "d/\(i)", contents["d/\(i)"]!, cls: "two")
        }
        let nodeOf = try Self.nodeOfDevice(c)
        let drained = nodeOf.first { $0.value == 0 }!.key
        #expect(try c.cli(["admin", "device", "state", String(drained), "drain"]).status == 0)
        var lowest = Int.max
        try c.wait("device \(drained) to hold no copies", timeout: 60) {
            for key in contents.keys {
                for ch in try FileLayout.fetch(domain: "test", key: key, tracker: c.client).chunks { lowest = min(lowest, ch.devices.count) }
            }
            return try Self.deviceField(c, drained, "copies") == "0"
        }
        #expect(lowest >= 2, "a chunk dropped to \(lowest) copies during the drain")
        try c.wait("the drained device's folder to be empty of blobs") {
            !c.blobFiles().contains { $0.hasPrefix("node0/dev\(drained)/") }
        }
        for (key, data) in contents { #expect(try Self.readBack(c, key) == data, "\(key)") }
    }

    @Test func rebalanceFollowsItsPlanAndEvensUsage() throws {
        // Two 40 MiB devices get the files, then two empty ones join.
        let c = try TestCluster(nodes: 2, nodeArgs: ["--capacity", "40", "--scrub-rate", "0"])
        defer { c.stop() }
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "two"), ("mindevcount", "2"), ("chunk_size", String(Self.chunk))])
        for i in 0..<24 { try Self.put(c, "b/\(i)", randomBytes(Self.chunk, seed: UInt64(300 + i)), cls: "two") }
        _ = try c.addNode()
        _ = try c.addNode()
        try c.waitForWriteableDevices(4)
        // Both full devices measured with all 24 MiB (60 %): a plan made from a count taken
        // while the puts ran would under-move and leave usage uneven.
        try c.wait("usage of the full devices measured", timeout: 20) {
            let s = try c.client.call("rebalance_status")
            return (1...2).allSatisfy { Double(s["dev\($0)_percent_used"] ?? "") ?? 0 >= 59.5 }
        }
        let planned = try c.cli(["admin", "rebalance", "plan", "--json"])
        #expect(planned.status == 0, "\(planned.err)")
        struct Plan: Decodable { struct M: Decodable { var fid: Int64; var from: Int; var to: Int }; var moves: [M] }
        let plan = try JSONDecoder().decode(Plan.self, from: planned.out)
        #expect(plan.moves.count >= 10, "a plan moves copies to the empty devices: \(plan.moves.count)")
        // Writes continue while it runs.
        let stop = Flag(), failures = LockedList()
        let writer = Thread {
            var n = 0
            while !stop.isSet {
                let f = try? writeTemp(randomBytes(2000, seed: UInt64(n)), dir: c.root, name: "w\(n)")
                if f == nil || (try? c.cli(["put", "test", "during/\(n)", f!]))?.status != 0 { failures.append(n) }
                n += 1
            }
        }
        writer.start()
        #expect(try c.cli(["admin", "rebalance", "start"]).status == 0)
        try c.wait("the rebalance to finish", timeout: 90) { try c.client.call("rebalance_status")["pending_moves"] == "0" }
        stop.set()
        while !writer.isFinished { Thread.sleep(forTimeInterval: 0.05) }
        #expect(failures.all.isEmpty, "writes failed during the rebalance: \(failures.all)")
        // What was done is what the plan said.
        for m in plan.moves {
            let l = try c.client.call("file_debug", [("fid", String(m.fid))])
            let devs = Set((l["devids"] ?? "").split(separator: ",").compactMap { Int($0) })
            #expect(devs.contains(m.to) && !devs.contains(m.from), "fid \(m.fid) should have moved dev\(m.from) -> dev\(m.to); now on \(devs)")
        }
        try c.wait("usage within the 10% threshold of the average", timeout: 20) {
            let s = try c.client.call("rebalance_status")
            let used = (1...4).compactMap { Double(s["dev\($0)_percent_used"] ?? "") }
            let avg = used.reduce(0, +) / Double(used.count)
            return used.count == 4 && used.allSatisfy { abs($0 - avg) <= 10 }
        }
        for i in 0..<24 { #expect(try Self.readBack(c, "b/\(i)") == randomBytes(Self.chunk, seed: UInt64(300 + i))) }
    }

    @Test func backgroundBandwidthLimitHolds() throws {
        // 1 MiB/s for background copies; 8 files of 512 KiB each need one more copy.
        let c = try TestCluster(nodes: 2, trackerArgs: ["--background-bandwidth", "1"])
        defer { c.stop() }
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "lazy"), ("mindevcount", "2"), ("sync_copies", "1")])
        _ = try c.client.call("set_workers", [("job", "replicate"), ("count", "0")])
        for i in 0..<8 { try Self.put(c, "t/\(i)", randomBytes(512 << 10, seed: UInt64(400 + i)), cls: "lazy") }
        let started = Date()
        _ = try c.client.call("set_workers", [("job", "replicate"), ("count", "4")])
        try c.wait("every file at 2 copies", timeout: 60) {
            try (0..<8).allSatisfy { try FileLayout.fetch(domain: "test", key: "t/\($0)", tracker: c.client).chunks[0].devices.count == 2 }
        }
        let seconds = Date().timeIntervalSince(started)
        let rate = Double(8 * (512 << 10)) / seconds / 1_048_576
        #expect(rate <= 1.25, "background copies ran at \(rate) MiB/s with a 1 MiB/s limit")
    }

    @Test func anotherTrackerTakesOverTheJobMasterLock() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        let port2 = TestCluster.freePort(avoiding: [c.trackerPort] + c.nodePorts)
        let second = try c.spawn(["tracker", "--db", c.root + "/tracker.db", "--listen", "127.0.0.1:\(port2)", "--poll-interval", "0.5"], log: "tracker2.log")
        defer { c.kill(second, signal: SIGTERM) }
        let client2 = TrackerClient(trackers: ["127.0.0.1:\(port2)"], timeoutSeconds: 30)
        try c.wait("the second tracker to answer") { (try? client2.call("noop")) != nil }
        try c.wait("the first tracker to be job master") { try c.client.call("workers")["job_master"] == "1" }
        #expect(try client2.call("workers")["job_master"] == "0", "only one tracker holds the lock")
        c.kill(c.tracker, signal: SIGKILL)
        try c.wait("the second tracker to take over", timeout: 30) { try client2.call("workers")["job_master"] == "1" }
        // It runs the queues: a file stored with one synchronous copy reaches its second.
        _ = try client2.call("create_class", [("domain", "test"), ("class", "lazy"), ("mindevcount", "2"), ("sync_copies", "1")])
        let f = try writeTemp(randomBytes(10_000, seed: 9), dir: c.root, name: "jm")
        let put = try c.cli(["put", "--tracker", "127.0.0.1:\(port2)", "test", "jm", f, "--class", "lazy"])
        #expect(put.status == 0, "\(put.err)")
        try c.wait("replication by the new job master", timeout: 30) {
            try FileLayout.fetch(domain: "test", key: "jm", tracker: client2).chunks[0].devices.count == 2
        }
    }
}

extension HealingTests {
    @Test func recoverFromStorageAfterLosingTheDatabase() throws {
        let c = try TestCluster(nodes: 3)
        defer { c.stop() }
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "small"), ("mindevcount", "2"), ("chunk_size", String(Self.chunk)),
                                                ("hashtype", "SHA-256")])
        var contents: [String: [UInt8]] = [:]
        for i in 0..<6 {
            let key = "docs/\(i % 2)/file\(i)"
            contents[key] = randomBytes(i == 0 ? 3 * Self.chunk + 11 : 777 * (i + 1), seed: UInt64(500 + i))
            let f = try writeTemp(contents[key]!, dir: c.root, name: "rec\(i)")
            // file5's metadata is too large for an extended attribute: its sidecar is a file.
            let big = i == 5 ? ["--meta", "notes=" + String(repeating: "x", count: 6000)] : []
            #expect(try c.cli(["put", "test", key, f, "--class", "small", "--meta", "owner=user\(i)", "--meta", "n=\(i)"] + big).status == 0)
        }
        // Attributes, a rename and an overwrite after the first write: sidecars follow them.
        let ino = try FileLayout.fetch(domain: "test", key: "docs/0/file2", tracker: c.client).attributes.ino
        _ = try c.client.call("fs_setattr", [("ino", String(ino)), ("mode", String(0o100600)), ("uid", "1234"), ("mtime", "1700000000123456789")])
        #expect(try c.cli(["mv", "test", "docs/1/file3", "moved/file3"]).status == 0)
        contents["moved/file3"] = contents.removeValue(forKey: "docs/1/file3")
        contents["docs/0/file4"] = randomBytes(4321, seed: 999)
        let f = try writeTemp(contents["docs/0/file4"]!, dir: c.root, name: "rec-over")
        let over = try c.cli(["put", "test", "docs/0/file4", f, "--class", "small", "--meta", "owner=user4", "--meta", "n=4"])
        #expect(over.status == 0, "overwrite: \(over.err)")

        func stat(_ key: String) throws -> [String: String] {
            let r = try c.cli(["stat", "test", key, "--json"])
            guard r.status == 0, let o = try JSONSerialization.jsonObject(with: r.out) as? [String: Any] else { throw TestFailure("stat \(key): \(r.err)") }
            return ["size": "\(o["size"]!)", "mode": "\(o["mode"]!)", "uid": "\(o["uid"]!)", "gid": "\(o["gid"]!)", "mtime": "\(o["mtime_ns"]!)",
                    "class": "\(o["class"]!)", "meta": "\((o["meta"] as? [String: String] ?? [:]).sorted { $0.key < $1.key })"]
        }
        var before: [String: [String: String]] = [:]
        for key in contents.keys { before[key] = try stat(key) }
        #expect(before["docs/0/file2"]?["mode"] == "100600" && before["docs/0/file2"]?["uid"] == "1234")
        try c.wait("sidecars written and old blobs deleted", timeout: 30) {
            let st = try c.client.call("cluster_stats")
            return st["sidecar_queue"] == "0" && st["delete_queue"] == "0" && st["replication_queue"] == "0"
        }
        let sidecarFiles = (FileManager.default.subpaths(atPath: c.root) ?? []).filter { $0.hasSuffix(".meta") }
        #expect(sidecarFiles.count == 2, "sidecars live in xattrs except file5's two copies: \(sidecarFiles)")

        // Lose the database; a new tracker on an empty one; the nodes announce themselves again.
        c.kill(c.tracker, signal: SIGKILL)
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: c.root + "/tracker.db" + suffix) }
        try c.startTracker()
        try c.waitForWriteableDevices(3, timeout: 30)
        let r = try c.cli(["admin", "recover", "--from-storage"])
        #expect(r.status == 0, "\(r.err)")
        #expect(String(decoding: r.out, as: UTF8.self).contains("restored 6 of 6 files"), "\(String(decoding: r.out, as: UTF8.self))")
        for (key, data) in contents {
            #expect(try Self.readBack(c, key) == data, "content of \(key)")
            #expect(try stat(key) == before[key]!, "attributes and metadata of \(key)")
        }
        #expect(try c.cli(["get", "test", "docs/1/file3", "-"]).status != 0, "the old name of a renamed file stays gone")
        // New writes get fids never used before.
        let maxFid = contents.keys.compactMap { try? FileLayout.fetch(domain: "test", key: $0, tracker: c.client).chunks.map(\.fid).max() }.max()!
        try Self.put(c, "after/recovery", [1, 2, 3])
        #expect(try FileLayout.fetch(domain: "test", key: "after/recovery", tracker: c.client).chunks[0].fid > maxFid)
    }
}

extension HealingTests {
    @Test func storageNodeKilledDuringWritesReadsAndReplication() throws {
        let c = try TestCluster(nodes: 3)
        defer { c.stop() }
        // One synchronous copy, two replicas: replication is always in flight.
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "lazy"), ("mindevcount", "2"), ("sync_copies", "1"), ("chunk_size", String(Self.chunk))])
        for i in 0..<6 { try Self.put(c, "pre/\(i)", randomBytes(Self.chunk + i, seed: UInt64(600 + i)), cls: "lazy") }
        // The files read during the kill have both copies, so a read must fail over, never fail.
        try c.wait("2 copies of the files that are read", timeout: 30) {
            try (0..<6).allSatisfy { try FileLayout.fetch(domain: "test", key: "pre/\($0)", tracker: c.client).chunks.allSatisfy { $0.devices.count == 2 } }
        }
        let acknowledged = LockedList(), stop = Flag(), readFailures = LockedList()
        let writer = Thread {
            var n = 0
            while !stop.isSet {
                let f = try? writeTemp(randomBytes(200_000 + n, seed: UInt64(700 + n)), dir: c.root, name: "kw\(n)")
                if let f, (try? c.cli(["put", "test", "live/\(n)", f, "--class", "lazy"]))?.status == 0 { acknowledged.append(n) }
                n += 1
            }
        }
        let reader = Thread {
            var n = 0
            while !stop.isSet {
                if (try? Self.readBack(c, "pre/\(n % 6)")) != randomBytes(Self.chunk + n % 6, seed: UInt64(600 + n % 6)) { readFailures.append(n) }
                n += 1
            }
        }
        writer.start(); reader.start()
        try c.wait("some writes") { acknowledged.count >= 3 }
        c.killNode(1)
        try c.wait("writes while a node is dead", timeout: 30) { acknowledged.count >= 8 }
        try c.startNode(1)
        try c.wait("writes after it is back", timeout: 30) { acknowledged.count >= 12 }
        stop.set()
        while !writer.isFinished || !reader.isFinished { Thread.sleep(forTimeInterval: 0.05) }
        #expect(readFailures.all.isEmpty, "reads failed: \(readFailures.count)")
        _ = try c.client.call("replicate_now")
        try c.wait("full replication of every acknowledged file", timeout: 90) {
            _ = try? c.client.call("replicate_now")
            return try acknowledged.all.allSatisfy { n in
                try FileLayout.fetch(domain: "test", key: "live/\(n)", tracker: c.client).chunks.allSatisfy { Set($0.devices).count == 2 }
            }
        }
        for n in acknowledged.all { #expect(try Self.readBack(c, "live/\(n)") == randomBytes(200_000 + n, seed: UInt64(700 + n)), "live/\(n)") }
    }

    /// A storage node that starts removes the temporary files a writer killed mid-write left
    /// over an hour ago (a blob's and a sidecar's), and leaves a recent one, which may belong
    /// to a write under way, and every blob.
    @Test func aStartingNodeRemovesTemporaryFilesAbandonedAnHourAgo() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        try Self.put(c, "kept", randomBytes(5000, seed: 801))
        let relative = try #require(c.blobFiles().first)
        let node = try #require(Int(relative.prefix { $0 != "/" }.dropFirst("node".count)), "blob path \(relative)")
        let dir = ((c.root + "/" + relative) as NSString).deletingLastPathComponent
        let abandoned = [dir + "/.tmp-1234", dir + "/0000000001.meta.tmp-99"], recent = dir + "/.tmp-5678"
        for f in abandoned + [recent] { try #require(FileManager.default.createFile(atPath: f, contents: Data(repeating: 7, count: 4096))) }
        for f in abandoned { try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-7200)], ofItemAtPath: f) }
        c.killNode(node)
        try c.startNode(node)
        try c.wait("the abandoned temporary files removed") { abandoned.allSatisfy { !FileManager.default.fileExists(atPath: $0) } }
        #expect(FileManager.default.fileExists(atPath: recent), "a recent temporary file may be a write under way")
        #expect(c.blobFiles().count == 2)
        #expect(try Self.readBack(c, "kept") == randomBytes(5000, seed: 801))
    }

    @Test func deadAfterReapsAnUnreachableDeviceUnlessInMaintenance() throws {
        let c = try TestCluster(nodes: 3, trackerArgs: ["--dead-after", "3"])
        defer { c.stop() }
        for i in 0..<5 { try Self.put(c, "m/\(i)", randomBytes(3000 + i, seed: UInt64(800 + i))) }
        let victim = try Self.nodeOfDevice(c).first { $0.value == 2 }!.key
        #expect(try c.cli(["admin", "settings", "set", "maintenance", "on"]).status == 0)
        c.killNode(2)
        Thread.sleep(forTimeInterval: 5)
        #expect(try Self.deviceField(c, victim, "status") == "alive", "maintenance suspends the reaper")
        #expect(try Self.deviceField(c, victim, "observed_state") == "unreachable")
        #expect(try c.cli(["admin", "settings", "set", "maintenance", "off"]).status == 0)
        try c.wait("the unreachable device marked dead", timeout: 15) { try Self.deviceField(c, victim, "status") == "dead" }
        try c.wait("every file back at 2 copies", timeout: 30) {
            try (0..<5).allSatisfy { try Set(FileLayout.fetch(domain: "test", key: "m/\($0)", tracker: c.client).chunks[0].devices.filter { $0 != victim }).count == 2 }
        }
    }
}

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
