import CairnCore
import CairnProtocol
import CairnTransfer
import Foundation
import CairnTestSupport
import Testing

@Suite(.serialized) struct BadInputTests {
    /// A tracker socket path no Unix socket can have is refused at start, saying why.
    @Test func trackerRefusesASocketPathTooLongForAUnixSocket() throws {
        let dir = NSTemporaryDirectory() + "cairn-sock-\(UUID().uuidString)"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestCluster.binary)
        p.arguments = ["tracker", "--db", dir + "/t.db", "--listen", "127.0.0.1:\(TestCluster.freePort())",
                       "--socket", dir + "/" + String(repeating: "s", count: 120)]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        let said = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus != 0)
        #expect(said.contains("longer than a Unix socket path may be"), "cairn tracker said: \(said)")
    }

    /// `cairn up` that cannot start (a node's port is taken) says which part failed and stops
    /// the parts it had started: nothing stays behind holding ports.
    @Test func upThatCannotStartLeavesNothingRunning() throws {
        let dir = NSTemporaryDirectory() + "cairn-up-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let trackerPort = TestCluster.freePort(), storagePort = TestCluster.freePort(avoiding: [trackerPort])
        func socketOn(_ port: Int, listening: Bool) -> (fd: Int32, ok: Bool) {
            let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = UInt16(port).bigEndian
            let len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { listening ? bind(s, $0, len) : connect(s, $0, len) }
            }
            if listening, rc == 0 { listen(s, 1) }
            return (s, rc == 0)
        }
        let holder = socketOn(storagePort, listening: true)
        defer { close(holder.fd) }
        #expect(holder.ok)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestCluster.binary)
        p.arguments = ["up", dir, "--nodes", "2", "--port", String(trackerPort), "--storage-port", String(storagePort)]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let said = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus != 0)
        #expect(said.contains("node1 exited during start-up"), "cairn up said: \(said)")
        #expect(!said.contains("Usage"), "a failure to start is not a malformed command line: \(said)")
        let probe = socketOn(trackerPort, listening: false)
        close(probe.fd)
        #expect(!probe.ok, "the tracker cairn up started still listens on \(trackerPort)")
    }

    /// Ctrl-C stops `cairn up` quietly: the parts it stops are not reported as failures.
    @Test func upStoppedByCtrlCSaysOnlyThatItStopped() throws {
        let dir = NSTemporaryDirectory() + "cairn-up-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/out", err = dir + "/err"
        FileManager.default.createFile(atPath: out, contents: nil)
        FileManager.default.createFile(atPath: err, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestCluster.binary)
        p.arguments = ["up", dir + "/data", "--nodes", "1", "--port", String(TestCluster.freePort()), "--storage-port", String(TestCluster.freePort())]
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
        try p.run()
        func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        let deadline = Date().addingTimeInterval(60)
        while !text(out).contains("Cairn is up"), p.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        #expect(text(out).contains("Cairn is up"), "cairn up said: \(text(out)) \(text(err))")
        p.interrupt()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(text(out).contains("Cairn stopped."))
        #expect(!text(err).contains("exited"), "cairn up reported a part it stopped: \(text(err))")
    }

    @Test func trackerAnswersBadLinesAndKeepsServing() throws {
        let c = try TestCluster(nodes: 1)
        defer { c.stop() }
        let lines = [
            "%%%garbage\r\n",
            "no_such_command a=1\r\n",
            "get_paths domain=test\r\n",
            "get_paths domain=nodomain&key=x\r\n",
            "get_paths domain=test&key=a//b\r\n",
            "create_class domain=test&class=c&mindevcount=many\r\n",
            "list_fids from=notanumber\r\n",
            "create_open domain=test&key=..\r\n",
            "NOOP callid=7&unknown_arg=1\r\n",
        ].joined()
        let replies = try rawExchange(port: c.trackerPort, Array(lines.utf8)).split(separator: "\r\n").map(String.init)
        #expect(replies.count == 9, "one reply per line, in order: \(replies)")
        guard replies.count == 9 else { return }
        #expect(replies[0].hasPrefix("ERR unknown_command "))
        #expect(replies[1].hasPrefix("ERR unknown_command "))
        #expect(replies[2].hasPrefix("ERR no_key "))
        #expect(replies[3].hasPrefix("ERR unreg_domain "))
        #expect(replies[4].hasPrefix("ERR invalid_key ") && replies[4].contains("empty+path+component"))
        #expect(replies[5].hasPrefix("ERR invalid_mindevcount "))
        #expect(replies[6].hasPrefix("ERR bad_params "))
        #expect(replies[7].hasPrefix("ERR invalid_key "))
        #expect(replies[8] == "OK callid=7")
        // An over-long line gets an error, and the same connection goes on.
        let long = Array("noop x=".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 3 << 20) + Array("\r\nnoop \r\n".utf8)
        let r2 = try rawExchange(port: c.trackerPort, long, timeout: 10).split(separator: "\r\n").map(String.init)
        #expect(r2.first?.hasPrefix("ERR line_too_long ") == true)
        #expect(r2.last == "OK ")
        // A connection that ends inside a line (its sender killed mid-write): the line is not
        // run, or a value cut short would be stored as if sent whole.
        let cut = try rawExchange(port: c.trackerPort, Array("noop \r\ncreate_domain domain=cut-shor".utf8)).split(separator: "\r\n").map(String.init)
        #expect(cut.count == 2 && cut[0] == "OK " && cut[1].hasPrefix("ERR incomplete_line "), "\(cut)")
        #expect(try !c.cli(["admin", "domain", "list"]).out.split(separator: 10).contains { String(decoding: $0, as: UTF8.self) == "cut-shor" })
        // Admin lines.
        let admin = try rawExchange(port: c.trackerPort, Array("!version\r\n!stats\r\n".utf8))
        #expect(admin.hasPrefix("cairn ") && admin.contains("\r\n.\r\n") && admin.contains("uptime "))
        #expect(try c.client.call("noop").values.isEmpty)
        // Per command: how many were answered, and the microseconds spent answering them.
        let stats = try rawExchange(port: c.trackerPort, Array("!stats\r\n".utf8)).split(separator: "\r\n").map(String.init)
        #expect(stats.contains { $0.hasPrefix("queries_noop ") })
        #expect(stats.contains { $0.hasPrefix("micros_noop ") && Int($0.dropFirst("micros_noop ".count)) != nil })
    }

    @Test func pipelinedRequestsAnswerInOrder() throws {
        let c = try TestCluster(nodes: 1)
        defer { c.stop() }
        var batch = [UInt8]()
        for i in 0..<50 { batch += Request.encode(command: i % 2 == 0 ? "noop" : "get_paths", args: [("domain", "test"), ("key", "k\(i)"), ("callid", String(i))]) }
        let replies = try rawExchange(port: c.trackerPort, batch).split(separator: "\r\n").map(String.init)
        #expect(replies.count == 50)
        for (i, r) in replies.enumerated() {
            if i % 2 == 0 { #expect(r.hasSuffix("callid=\(i)")) } else { #expect(r.hasPrefix("ERR unknown_key ") && r.hasSuffix(" \(i)")) }
        }
        // More than the tracker queues per connection: it stops reading, answers, reads on.
        var many = [UInt8]()
        for i in 0..<3000 { many += Request.encode(command: "noop", args: [("callid", String(i))]) }
        let all = try rawExchange(port: c.trackerPort, many, timeout: 20).split(separator: "\r\n").map(String.init)
        #expect(all.count == 3000)
        #expect(all.enumerated().allSatisfy { $0.element == "OK callid=\($0.offset)" })
    }

    @Test func storageNodeRefusesTraversalAndKeepsServing() throws {
        let c = try TestCluster(nodes: 1)
        defer { c.stop() }
        let data = Array("precious".utf8)
        let f = try writeTemp(data, dir: c.root, name: "p")
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "one"), ("mindevcount", "1")])
        #expect(try c.cli(["put", "test", "p", f, "--class", "one"]).status == 0)
        let port = c.nodePorts[0]
        let attempts = [
            "GET /dev1/../../../etc/passwd HTTP/1.1", "GET /dev1/%2e%2e/%2e%2e/etc/passwd HTTP/1.1", "GET //etc/passwd HTTP/1.1",
            "GET /etc/passwd HTTP/1.1", "GET /dev1/0/000/000/" + String(repeating: "9", count: 300) + ".fid HTTP/1.1",
            "GET /dev1/0/000/000/notafid.fid HTTP/1.1", "PUT /dev1/../x.fid HTTP/1.1", "DELETE /dev1/0/000/000/../../../../tracker.db HTTP/1.1",
            "GET /dev99/0/000/000/0000000001.fid HTTP/1.1",
        ]
        for line in attempts {
            let reply = try rawExchange(port: port, Array((line + "\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").utf8))
            let status = reply.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
            #expect([400, 403, 404].contains(status), "\(line) → \(reply.prefix(80))")
            #expect(!reply.contains("root:"), "nothing outside the device folder is served")
        }
        // A body shorter than its Content-Length stores nothing.
        let short = try rawExchange(port: port, Array("PUT /dev1/0/000/000/0000000777.fid HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten..".utf8), timeout: 5)
        _ = short
        try c.wait("no partial blob") { !c.blobFiles().contains { $0.hasSuffix("0000000777.fid") } && !c.blobFiles().isEmpty }
        #expect(!FileManager.default.fileExists(atPath: c.root + "/node0/dev1/0/000/000/0000000777.fid"))
        // A node-to-node copy names what failed: a malformed source is the request's fault
        // (400); a source that does not hand over the blob is the peer's (502, not the 400
        // that once made it look like the requester's); either way nothing is stored.
        func copy(_ source: String) throws -> (status: Int, reply: String) {
            let reply = try rawExchange(port: port, Array("PUT /dev1/0/000/000/0000000778.fid HTTP/1.1\r\nHost: x\r\nCairn-Copy-From: \(source)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8))
            return (reply.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0, reply)
        }
        let malformed = try copy("file:///etc/passwd")
        #expect(malformed.status == 400 && malformed.reply.contains("Cairn-Copy-From must be a blob URL"), "\(malformed.reply.prefix(300))")
        let absent = try copy("http://127.0.0.1:\(port)/dev1/0/000/099/0000099999.fid")
        #expect(absent.status == 502 && absent.reply.contains("answered 404"), "\(absent.reply.prefix(300))")
        let unreachable = try copy("http://127.0.0.1:\(TestCluster.freePort())/dev1/0/000/099/0000099999.fid")
        #expect(unreachable.status == 502 && unreachable.reply.contains("could not be read"), "\(unreachable.reply.prefix(300))")
        #expect(!FileManager.default.fileExists(atPath: c.root + "/node0/dev1/0/000/000/0000000778.fid"))
        // And it still serves.
        #expect(Array(try c.cli(["get", "test", "p"]).out) == data)
        #expect(try HTTPTransfer.shared.get("http://127.0.0.1:\(port)/_status").status == 200)
    }

    @Test func deleteBatchesAccountForEveryFidAndRefuseMalformedLines() throws {
        let c = try TestCluster(nodes: 1)
        defer { c.stop() }
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "one"), ("mindevcount", "1")])
        for i in 0..<3 {
            let f = try writeTemp(randomBytes(100, seed: UInt64(i)), dir: c.root, name: "b\(i)")
            #expect(try c.cli(["put", "test", "b\(i)", f, "--class", "one"]).status == 0)
        }
        try c.wait("3 blobs on disk") { c.blobFiles().count == 3 }
        let blobs = c.blobFiles().sorted()
        // node0/dev<N>/…/<fid>.fid
        let device = try blobs[0].split(separator: "/").first { $0.hasPrefix("dev") }.orThrow("a device folder in \(blobs[0])")
        let fids = try blobs.map { try Int64(String($0.split(separator: "/").last!.dropLast(4))).orThrow("a fid in \($0)") }
        let url = "http://127.0.0.1:\(c.nodePorts[0])/_delete/\(device)"
        func post(_ url: String, _ body: String, method: String = "POST") throws -> (status: Int, text: String) {
            let r = try Array(body.utf8).withUnsafeBytes { try HTTPTransfer.shared.perform(method: method, url: url, body: .bytes($0)) }
            return (r.status, r.text)
        }
        let malformed = try post(url, "\(fids[0])\nnot-a-fid\n")
        #expect(malformed.status == 400 && malformed.text.contains("not-a-fid") && malformed.text.contains("nothing deleted"), "\(malformed)")
        #expect(c.blobFiles().count == 3, "a malformed batch deletes nothing, not even the lines before the bad one")
        #expect(try post("http://127.0.0.1:\(c.nodePorts[0])/_delete/dev99", "\(fids[0])\n").status == 404)
        #expect(try post(url, "", method: "PUT").status == 405)
        let done = try post(url, "\(fids[0])\n\(fids[1])\n99999999\n")
        #expect(done.status == 200 && done.text == "deleted 2\nabsent 99999999\n", "every fid is accounted for: \(done)")
        #expect(c.blobFiles() == [blobs[2]], "exactly the two named blobs are gone")
    }

    @Test func rangesAndHead() throws {
        let c = try TestCluster(nodes: 1)
        defer { c.stop() }
        let data = randomBytes(10_000, seed: 3)
        let f = try writeTemp(data, dir: c.root, name: "r")
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "one"), ("mindevcount", "1")])
        #expect(try c.cli(["put", "test", "r", f, "--class", "one"]).status == 0)
        let url = try c.client.call("get_paths", [("domain", "test"), ("key", "r")])["path1"]!
        let part = try HTTPTransfer.shared.get(url, range: 100...199)
        #expect(part.status == 206 && part.body == Array(data[100...199]) && part.headers["content-range"] == "bytes 100-199/10000")
        let tail = try HTTPTransfer.shared.perform(method: "GET", url: url, headers: ["Range": "bytes=-10"])
        #expect(tail.body == Array(data.suffix(10)))
        #expect(try HTTPTransfer.shared.perform(method: "GET", url: url, headers: ["Range": "bytes=20000-"]).status == 416)
        let head = try HTTPTransfer.shared.head(url)
        #expect(head.status == 200 && head.headers["content-length"] == "10000")
        #expect(try HTTPTransfer.shared.get(url.replacingOccurrences(of: ".fid", with: "") + "0.fid").status != 200)
    }
}
