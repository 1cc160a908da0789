import CairnClient
import CairnCore
import CairnProtocol
import CairnTransfer
import Foundation
import CairnTestSupport
import Testing

/// Real processes on loopback. Serialized: each test runs its own cluster and the machine
/// has two cores.
@Suite(.serialized) struct ClusterTests {
    static let smallChunk = 1 << 20

    @Test func putGetRoundTripsAtChunkBoundaries() throws {
        let c = try TestCluster()
        defer { c.stop() }
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "small"), ("mindevcount", "2"), ("chunk_size", String(Self.smallChunk))])
        let chunk = Self.smallChunk
        for (i, size) in [0, 1, chunk - 1, chunk, chunk + 1, 5 * chunk + 7].enumerated() {
            let data = randomBytes(size, seed: UInt64(i))
            let file = try writeTemp(data, dir: c.root, name: "in\(i)")
            let put = try c.cli(["put", "test", "sizes/f\(size)", file, "--class", "small"])
            #expect(put.status == 0, "put of \(size) bytes: \(put.err)")
            let get = try c.cli(["get", "test", "sizes/f\(size)", "-"])
            #expect(get.status == 0, "get of \(size) bytes: \(get.err)")
            #expect(Array(get.out) == data, "content of the \(size)-byte file differs")
            let layout = try FileLayout.fetch(domain: "test", key: "sizes/f\(size)", tracker: c.client)
            #expect(layout.chunks.count == (size + chunk - 1) / chunk)
            #expect(layout.chunks.allSatisfy { $0.devices.count >= 2 }, "every chunk has its 2 synchronous copies at once")
        }
        // 100 MiB in the default class (16 MiB chunks), through a file and back into a file.
        let big = randomBytes(100 << 20, seed: 99)
        let file = try writeTemp(big, dir: c.root, name: "big")
        #expect(try c.cli(["put", "test", "big.bin", file]).status == 0)
        #expect(try c.cli(["get", "test", "big.bin", c.root + "/big.out"]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: c.root + "/big.out")) == Data(big))
        #expect(try FileLayout.fetch(domain: "test", key: "big.bin", tracker: c.client).chunks.count == 7)
        // stdin and stdout work too.
        let piped = randomBytes(3 * chunk + 5, seed: 7)
        #expect(try c.cli(["put", "test", "piped", "-", "--class", "small"], stdin: Data(piped)).status == 0)
        #expect(Array(try c.cli(["get", "test", "piped"]).out) == piped)
        // A destination that is not a regular file (a FIFO here, /dev/null in scripts) is
        // written to, never replaced by a file.
        let fifo = c.root + "/fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        let drained = LockedList()
        let reader = Thread {
            let h = FileHandle(forReadingAtPath: fifo)
            drained.append(h?.readDataToEndOfFile().count ?? -1)
            drained.finish()
        }
        reader.start()
        #expect(try c.cli(["get", "test", "piped", fifo]).status == 0)
        let deadline = Date().addingTimeInterval(10)
        while drained.count == 0 && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }  // bounded: a replaced FIFO never gets a writer
        #expect(drained.all == [piped.count])
        var st = stat()
        #expect(stat(fifo, &st) == 0 && (st.st_mode & S_IFMT) == S_IFIFO, "the FIFO is still a FIFO")
    }

    /// Changes a client sends without waiting (a mount's custom-metadata sets and unlinks)
    /// share transactions, and still take effect and are answered in the order they were sent.
    @Test func pipelinedChangesShareTransactionsInOrder() throws {
        let c = try TestCluster(nodes: 1)
        defer { c.stop() }
        let root = try #require(c.client.call("fs_root", [("domain", "test")]).int("ino"))
        func create(_ name: String) throws -> Int64 {
            try #require(c.client.call("fs_create", [("parent", String(root)), ("name", name), ("kind", "f"), ("mode", "420"), ("uid", "0"), ("gid", "0")]).int("ino"))
        }
        let kept = try create("kept")
        let doomed = try (0..<40).map { try create("f\($0)") }
        var lines = "", expected: [String] = []
        for i in 0..<120 {
            // The same attribute of one file, again and again: only the order leaves the last value.
            lines += "meta_set ino=\(kept)&name=k&value_hex=\(Hex.encode(Array("v\(i)".utf8)))&durable=0&callid=s\(i)\r\n"
            expected.append("s\(i)")
            if i % 3 == 0, i / 3 < doomed.count {
                let n = i / 3
                lines += "fs_unlink parent=\(root)&name=f\(n)&ino=\(doomed[n])&durable=0&callid=u\(n)\r\n"
                expected.append("u\(n)")
            }
        }
        // The first unlink again (a resend): refused, as its file is gone.
        lines += "fs_unlink parent=\(root)&name=f0&ino=\(doomed[0])&callid=again\r\n"
        let before = try trackerStats(port: c.trackerPort)
        let replies = try rawExchange(port: c.trackerPort, Array(lines.utf8), timeout: 30).split(separator: "\r\n").map(String.init)
        let after = try trackerStats(port: c.trackerPort)
        #expect(replies.count == expected.count + 1)
        let ids = replies.dropLast().map { r in r.split(separator: "&").first { $0.hasPrefix("callid=") }.map { String($0.dropFirst(7)) } ?? r }
        #expect(ids == expected, "replies in the order of the requests, each OK")
        #expect(replies.last?.hasPrefix("ERR unknown_key") == true && replies.last?.hasSuffix(" again") == true, "\(replies.last ?? "")")
        #expect(try c.client.call("meta_get", [("ino", String(kept)), ("name", "k")])["value_hex"] == Hex.encode(Array("v119".utf8)))
        for n in 0..<doomed.count {
            #expect(throws: ProtocolError.self) { try c.client.call("fs_lookup", [("parent", String(root)), ("name", "f\(n)")]) }
        }
        let writes = (after["writes"] ?? 0) - (before["writes"] ?? 0)
        let transactions = (after["write_transactions"] ?? 0) - (before["write_transactions"] ?? 0)
        #expect(writes >= 161 && transactions * 2 < writes, "\(writes) writes in \(transactions) transactions")
    }

    /// A mount's quiet setattrs (rsync's utimes and chmod of its temporary file) that reach the
    /// tracker in one read with the rename after them are folded into it: one change, each line
    /// still answered, in order. A failed rename still makes the changes folded into it (as they
    /// would have been on their own) and fails every line folded with it; lines with a callid,
    /// without quiet=1 or with a size are not folded.
    @Test func quietChangesFoldIntoTheRenameAfterThem() throws {
        let c = try TestCluster(nodes: 1)
        defer { c.stop() }
        let root = try #require(c.client.call("fs_root", [("domain", "test")]).int("ino"))
        func create(_ name: String) throws -> Int64 {
            try #require(c.client.call("fs_create", [("parent", String(root)), ("name", name), ("kind", "f"), ("mode", "420"), ("uid", "0"), ("gid", "0")]).int("ino"))
        }
        let a = try create(".a.tmp"), b = try create("b"), other = try create("other")
        let lines = [
            "fs_setattr ino=\(a)&mtime=111000000000&ctime=5&quiet=1&durable=0",
            "fs_setattr ino=\(a)&mode=416&ctime=6&quiet=1&durable=0",
            "fs_rename parent=\(root)&name=.a.tmp&newparent=\(root)&newname=a&mode=replace&ino=\(a)&ctime=7&quiet=1&durable=0",
            "fs_setattr ino=\(b)&mode=384&quiet=1&durable=0",
            "fs_rename parent=\(root)&name=missing&newparent=\(root)&newname=bnew&ino=\(b)&quiet=1&durable=0",
            "fs_setattr ino=\(other)&mode=448&callid=x",
            "fs_setattr ino=\(other)&mode=456&quiet=1&size=0",
            "fs_setattr ino=\(other)&mode=457&quiet=1",
        ]
        let before = try trackerStats(port: c.trackerPort)
        // One write: the tracker reads the lines together.
        let replies = try rawExchange(port: c.trackerPort, Array(lines.map { $0 + "\r\n" }.joined().utf8), timeout: 30)
            .split(separator: "\r\n").map(String.init)
        let after = try trackerStats(port: c.trackerPort)
        #expect(replies.count == lines.count, "\(replies)")
        guard replies.count == lines.count else { return }
        #expect(Array(replies[0..<3]) == ["OK ", "OK ", "OK "], "a bare OK each (MogileFS's form: no arguments after the space)")
        // The rename failed, the chmod folded into it was made: each line is told its own outcome.
        #expect(replies[3] == "OK " && replies[4].hasPrefix("ERR unknown_key"), "\(replies[3...4])")
        #expect(replies[5].hasPrefix("OK ") && replies[5].contains("mode=33216") && replies[5].hasSuffix("callid=x"), "\(replies[5])")
        #expect(Array(replies[6...]) == ["OK ", "OK "])
        #expect((after["lines_folded"] ?? 0) - (before["lines_folded"] ?? 0) == 3, "two into the rename, one into the failed one")
        let renamed = try c.client.call("fs_lookup", [("parent", String(root)), ("name", "a")])
        #expect(renamed.int("ino") == a && renamed.int("mode") == 0o100640 && renamed.int("mtime") == 111_000_000_000 && renamed.int("ctime") == 7)
        #expect(throws: ProtocolError.self) { try c.client.call("fs_lookup", [("parent", String(root)), ("name", ".a.tmp")]) }
        #expect(try c.client.call("fs_getattr", [("ino", String(b))]).int("mode") == 0o100600, "made though the rename failed")
        #expect(try c.client.call("fs_getattr", [("ino", String(other))]).int("mode") == 0o100000 | 457)
        // Folded changes without the inode they are for: refused whole, not dropped.
        let ownMode = try #require(c.client.call("fs_getattr", [("ino", String(a))]).int("mode"))
        #expect { try c.client.call("fs_rename", [("parent", String(root)), ("name", "a"), ("newparent", String(root)), ("newname", "a2"),
                                                  ("attr_mode", "384")]) } throws: { ($0 as? ProtocolError)?.code == "bad_params" }
        #expect(try c.client.call("fs_lookup", [("parent", String(root)), ("name", "a")]).int("mode") == ownMode, "neither moved nor changed")
    }

    @Test func everyFidReachesItsReplicasOnDistinctHosts() throws {
        let c = try TestCluster()
        defer { c.stop() }
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "three"), ("mindevcount", "3"), ("sync_copies", "1"),
                                                ("chunk_size", String(Self.smallChunk))])
        for i in 0..<4 {
            let f = try writeTemp(randomBytes(Self.smallChunk * 2 + i, seed: UInt64(i)), dir: c.root, name: "r\(i)")
            #expect(try c.cli(["put", "test", "r/\(i)", f, "--class", "three"]).status == 0)
        }
        let devices = try c.client.call("get_devices")
        var hostOf: [Int: String] = [:]
        for i in 1...Int(devices.int("devices") ?? 0) { hostOf[Int(devices.int("dev\(i)_devid")!)] = devices["dev\(i)_hostid"] }
        try c.wait("3 copies of every chunk on 3 hosts") {
            try (0..<4).allSatisfy { i in
                let l = try FileLayout.fetch(domain: "test", key: "r/\(i)", tracker: c.client)
                return l.chunks.allSatisfy { Set($0.devices.compactMap { hostOf[$0] }).count == 3 }
            }
        }
        // The replicas really hold the bytes: read each chunk from every URL.
        let l = try FileLayout.fetch(domain: "test", key: "r/0", tracker: c.client)
        for ch in l.chunks {
            for url in ch.urls {
                let r = try HTTPTransfer.shared.get(url)
                #expect(r.status == 200 && Int64(r.body.count) == ch.length)
            }
        }
    }

    @Test func overwriteAndDeleteFreeBlobsOnDisk() throws {
        let c = try TestCluster()
        defer { c.stop() }
        let f1 = try writeTemp(randomBytes(1000, seed: 1), dir: c.root, name: "v1")
        let f2 = try writeTemp(randomBytes(2000, seed: 2), dir: c.root, name: "v2")
        #expect(try c.cli(["put", "test", "doc", f1]).status == 0)
        try c.wait("2 copies on disk") { c.blobFiles().count == 2 }
        let before = Set(c.blobFiles())
        #expect(try c.cli(["put", "test", "doc", f2]).status == 0)
        try c.wait("old copies freed after overwrite") { let now = Set(c.blobFiles()); return now.count == 2 && now.isDisjoint(with: before) }
        #expect(Array(try c.cli(["get", "test", "doc"]).out) == randomBytes(2000, seed: 2))
        #expect(try c.cli(["rm", "test", "doc"]).status == 0)
        try c.wait("copies freed after delete") { c.blobFiles().isEmpty }
        let gone = try c.cli(["get", "test", "doc"])
        #expect(gone.status != 0 && gone.err.contains("doc"), "a missing key is reported by name: \(gone.err)")
        // A local file that cannot be read: said with its path and why, without usage text.
        let unreadable = try c.cli(["put", "test", "doc", c.root + "/absent"])
        #expect(unreadable.status != 0 && unreadable.err.contains("cannot open \(c.root)/absent: No such file or directory"), "\(unreadable.err)")
        #expect(!unreadable.err.contains("Usage"), "\(unreadable.err)")
    }

    /// With several writers at once, their commits share transactions (group commit): none
    /// may be answered before the transaction that holds it is committed.
    @Test(arguments: [1, 4]) func trackerKilledLosesNoAcknowledgedWrite(writers: Int) throws {
        let c = try TestCluster()
        defer { c.stop() }
        let acknowledged = (0..<writers).map { _ in LockedList() }
        let seed: @Sendable (Int, Int) -> UInt64 = { w, i in UInt64(w * 1000 + i) }
        for w in 0..<writers {
            Thread {
                let mine = acknowledged[w]
                for i in 0..<400 {
                    guard let f = try? writeTemp(randomBytes(3000 + i, seed: seed(w, i)), dir: c.root, name: "w\(w)-\(i)") else { continue }
                    if let r = try? c.cli(["put", "test", "kill/\(w)-\(i)", f]), r.status == 0 { mine.append(i) }
                    if let last = mine.last, i > last + 5 { break }  // the tracker is gone; stop
                }
                mine.finish()
            }.start()
        }
        try c.wait("some acknowledged writes") { acknowledged.map(\.count).reduce(0, +) >= 8 }
        c.kill(c.tracker)  // SIGKILL at an arbitrary moment
        for list in acknowledged { list.waitFinished() }
        try c.restartTracker()
        try c.waitForWriteableDevices(3)
        for (w, list) in acknowledged.enumerated() {
            for i in list.all {
                let r = try c.cli(["get", "test", "kill/\(w)-\(i)"])
                #expect(r.status == 0 && Array(r.out) == randomBytes(3000 + i, seed: seed(w, i)), "acknowledged file kill/\(w)-\(i) lost: \(r.err)")
            }
        }
    }

    /// A client on the tracker's machine may use its Unix socket (`--socket`): the same protocol
    /// without TCP. A tracker restarted (killed, its socket file left behind) takes the path
    /// over again; a client whose first address is a dead socket fails over to the next one.
    @Test func clientsOnTheTrackersMachineReachItOverItsSocket() throws {
        let c = try TestCluster(nodes: 1)
        defer { c.stop() }
        let local = TrackerClient(trackers: [c.trackerSocket], timeoutSeconds: 10)
        let domains = try local.call("get_domains")
        #expect((1...(domains.int("domains") ?? 0)).contains { domains["domain\($0)"] == "test" })
        try c.restartTracker()
        #expect(try TrackerClient(trackers: [c.trackerSocket], timeoutSeconds: 10).call("get_domains") == (try c.client.call("get_domains")))
        let dead = c.root + "/no-tracker.sock"
        #expect(try TrackerClient(trackers: [dead, c.trackerAddress], timeoutSeconds: 10).call("noop") == (try local.call("noop")))
        let refused = #expect(throws: TransferError.self) { try TrackerConnection(address: dead) }
        #expect(refused?.reason.contains("cannot connect to the tracker's socket") == true)
    }

    @Test func putFinishesWhenAStorageNodeDiesMidUpload() throws {
        let c = try TestCluster()
        defer { c.stop() }
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "small"), ("mindevcount", "2"), ("chunk_size", String(Self.smallChunk))])
        let data = randomBytes(48 << 20, seed: 5)
        let file = try writeTemp(data, dir: c.root, name: "big")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestCluster.binary)
        p.arguments = ["put", "test", "survivor", file, "--class", "small", "--tracker", c.trackerAddress]
        let err = Pipe()
        p.standardError = err
        try p.run()
        Thread.sleep(forTimeInterval: 0.4)
        c.killNode(0)
        p.waitUntilExit()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus == 0, "put failed after a node died: \(message)")
        let get = try c.cli(["get", "test", "survivor"])
        #expect(get.status == 0 && Array(get.out) == data)
    }

    @Test func secretRefusesUnsignedWritesButMogileUploadsWork() throws {
        let c = try TestCluster(secret: "test-secret-\(UUID().uuidString)")
        defer { c.stop() }
        let node = "http://127.0.0.1:\(c.nodePorts[0])"
        let devs = try c.client.call("get_devices")
        let devOnNode0 = try (1...Int(devs.int("devices")!)).map { Int(devs.int("dev\($0)_devid")!) }.first { id in
            FileManager.default.fileExists(atPath: c.root + "/node0/dev\(id)")
        }.orThrow("node0 has a device")
        let plain = node + FidLayout.devicePath(device: devOnNode0, fid: 999)
        let body: [UInt8] = Array("x".utf8)
        let unsigned = try body.withUnsafeBytes { try HTTPTransfer.shared.put(plain, bytes: $0) }
        #expect(unsigned.status == 403 && unsigned.text.contains("unsigned"))
        #expect(try HTTPTransfer.shared.delete(plain).status == 403)
        let batch = try Array("999\n".utf8).withUnsafeBytes { try HTTPTransfer.shared.perform(method: "POST", url: node + "/_delete/dev\(devOnNode0)", body: .bytes($0)) }
        #expect(batch.status == 403 && batch.text.contains("unsigned"), "a batch of deletes needs the tracker's signature too: \(batch.status) \(batch.text)")
        let forged = node + "/_w/9999999999-none-" + String(repeating: "0", count: 64) + FidLayout.devicePath(device: devOnNode0, fid: 999)
        let bad = try body.withUnsafeBytes { try HTTPTransfer.shared.put(forged, bytes: $0) }
        #expect(bad.status == 403 && bad.text.contains("signature"))
        let expired = node + "/_w/1-none-" + String(repeating: "0", count: 64) + FidLayout.devicePath(device: devOnNode0, fid: 999)
        #expect(try body.withUnsafeBytes { try HTTPTransfer.shared.put(expired, bytes: $0) }.text.contains("expired"))

        // The MogileFS way, as its clients do it: create_open, PUT to the path, create_close.
        let content = Array("hello from a MogileFS client".utf8)
        let open = try c.client.call("create_open", [("domain", "test"), ("key", "mog/k"), ("multi_dest", "1")])
        let path = try open["path_1"].orThrow("path_1")
        #expect(LineCodec.encode(path) == path, "the signed path survives MogileFS's reply encoding")
        let put = try content.withUnsafeBytes { try HTTPTransfer.shared.put(path, bytes: $0) }
        #expect(put.status == 200)
        _ = try c.client.call("create_close", [("domain", "test"), ("fid", open["fid"]!), ("devid", open["devid_1"]!), ("path", path),
                                               ("key", "mog/k"), ("size", String(content.count))])
        let paths = try c.client.call("get_paths", [("domain", "test"), ("key", "mog/k"), ("noverify", "1")])
        #expect(paths["paths"] == "2", "2 synchronous copies before create_close answered")
        #expect(try HTTPTransfer.shared.get(paths["path1"]!).body == content)
        #expect(try HTTPTransfer.shared.get(paths["path2"]!).body == content)
    }

    @Test func pythonMogileClientWorks() throws {
        let c = try TestCluster()
        defer { c.stop() }
        let script = """
        import io, sys
        from pymogilefs.backend import Backend
        from pymogilefs.client import Client
        b = Backend([sys.argv[1]])
        assert b.create_domain('pydom').data == {'domain': 'pydom'}
        assert b.create_class('pydom', 'c1', 2).data['class'] == 'c1'
        c = Client(trackers=[sys.argv[1]], domain='pydom')
        c.store_file(io.BytesIO(b'bytes from pymogilefs'), 'dir/k1', _class='c1')
        assert c.get_file('dir/k1').read() == b'bytes from pymogilefs'
        assert c.get_paths('dir/k1').data['path_count'] == 2
        assert c.list_keys(prefix='dir/').data['keys'] == {1: 'dir/k1'}
        c.delete_file('dir/k1')
        assert c.list_keys(prefix='dir/').data['key_count'] == 0
        print('pymogilefs ok')
        """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script, c.trackerAddress]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        p.waitUntilExit()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus == 0 && text.contains("pymogilefs ok"), "pymogilefs against Cairn: \(text)")
    }

    @Test func multiChunkFilesReadWholeThroughGetPaths() throws {
        let c = try TestCluster()
        defer { c.stop() }
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "small"), ("mindevcount", "2"), ("chunk_size", String(Self.smallChunk))])
        let data = randomBytes(3 * Self.smallChunk + 100, seed: 11)
        let file = try writeTemp(data, dir: c.root, name: "multi")
        #expect(try c.cli(["put", "test", "multi", file, "--class", "small"]).status == 0)
        let paths = try c.client.call("get_paths", [("domain", "test"), ("key", "multi")])
        #expect(paths["paths"] == "2")
        for i in 1...2 {
            let url = paths["path\(i)"]!
            #expect(LineCodec.encode(url) == url)
            #expect(try HTTPTransfer.shared.get(url).body == data, "path\(i) returns the whole file")
        }
        #expect(try c.cli(["put", "test", "empty", "-"], stdin: Data()).status == 0)
        let e = try c.client.call("get_paths", [("domain", "test"), ("key", "empty")])
        #expect(try HTTPTransfer.shared.get(e["path1"]!).body.isEmpty)
    }
}

extension ClusterTests {
    @Test func explicitFidsAndHttpcopy() throws {
        let c = try TestCluster()
        defer { c.stop() }
        let open = try c.client.call("create_open", [("domain", "test"), ("key", "exact"), ("fid", "5000")])
        #expect(open["fid"] == "5000")
        let body = Array("exact fid".utf8)
        #expect(try body.withUnsafeBytes { try HTTPTransfer.shared.put(open["path"]!, bytes: $0) }.status == 200)
        _ = try c.client.call("create_close", [("domain", "test"), ("key", "exact"), ("fid", "5000"), ("devid", open["devid"]!),
                                               ("path", open["path"]!), ("size", String(body.count))])
        #expect(throws: ProtocolError.self) { try c.client.call("create_open", [("domain", "test"), ("key", "again"), ("fid", "5000")]) }
        // httpcopy puts a third copy on the remaining device.
        let info = try c.client.call("file_info", [("domain", "test"), ("key", "exact"), ("devices", "1")])
        let have = Set((info["devids"] ?? "").split(separator: ",").compactMap { Int($0) })
        #expect(have.count == 2)
        let third = try #require(Set(1...3).subtracting(have).first)
        _ = try c.client.call("httpcopy", [("fid", "5000"), ("sdevid", String(have.first!)), ("ddevid", String(third))])
        #expect(try c.client.call("file_info", [("domain", "test"), ("key", "exact")])["devcount"] == "3")
    }
}

final class LockedList: @unchecked Sendable {
    private let lock = NSCondition()
    private var items: [Int] = []
    private var done = false
    func append(_ i: Int) { lock.lock(); items.append(i); lock.unlock() }
    var count: Int { lock.lock(); defer { lock.unlock() }; return items.count }
    var last: Int? { lock.lock(); defer { lock.unlock() }; return items.last }
    var all: [Int] { lock.lock(); defer { lock.unlock() }; return items }
    func finish() { lock.lock(); done = true; lock.broadcast(); lock.unlock() }
    func waitFinished() { lock.lock(); while !done { lock.wait() }; lock.unlock() }
}

extension Optional {
    func orThrow(_ what: String) throws -> Wrapped {
        guard let v = self else { throw TestFailure("missing \(what)") }
        return v
    }
}
