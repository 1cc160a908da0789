import CSys
import CairnClient
import CairnTestSupport
import Foundation
import Testing

let chunk = 1 << 20

/// A cluster with a `small` class (1 MiB chunks, 2 replicas) mounted at `<root>/mnt`, new
/// files in that class; files of the `test` domain appear under `mnt/test`.
func mountedCluster(nodes: Int = 3, trackerArgs: [String] = [], nodeArgs: [String] = [], mountOptions: [String] = []) throws -> (TestCluster, TestMount, String) {
    let c = try TestCluster(nodes: nodes, trackerArgs: trackerArgs, nodeArgs: nodeArgs)
    _ = try c.client.call("create_class", [("domain", "test"), ("class", "small"), ("mindevcount", "2"), ("chunk_size", String(chunk))])
    _ = try c.client.call("create_class", [("domain", "test"), ("class", "three"), ("mindevcount", "3"), ("chunk_size", String(chunk))])
    let m = try TestMount(c, options: ["class=small"] + mountOptions)
    return (c, m, m.path + "/test")
}

/// For tests that stop the tracker (SIGSTOP) while the mount works on: a lease of 6 s, so what
/// the mount holds stays trusted through the stop. With the default 2 s, a stop on a slow,
/// loaded machine outlasted the lease; the mount then rightly asked the stopped tracker (a
/// path walk's lookup of the domain), and its creates failed after the call timeout.
func mountedClusterForTrackerStops() throws -> (TestCluster, TestMount, String) {
    try mountedCluster(trackerArgs: ["--lease-ms", "6000"])
}

func fileBytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

@Suite(.serialized) struct MountTests {
    @Test func cpIsByteIdenticalAtChunkBoundaries() throws {
        let (c, m, dir) = try mountedCluster()
        defer { m.unmount(); c.stop() }
        for (i, size) in [0, 1, chunk - 1, chunk, chunk + 1, 200 << 20].enumerated() {
            let src = try writeTemp(randomBytes(size, seed: UInt64(100 + i)), dir: c.root, name: "src\(i)")
            let r = try run("cp", [src, dir + "/f\(size)"])
            #expect(r.status == 0, "cp of \(size) bytes: \(r.out)")
            #expect(try run("cmp", [src, dir + "/f\(size)"]).status == 0, "\(size)-byte file differs after cp")
        }
        // Written through the mount, read by the CLI; and the reverse.
        let viaCLI = try c.cli(["get", "test", "f\(chunk + 1)"])
        #expect(viaCLI.status == 0 && Array(viaCLI.out) == randomBytes(chunk + 1, seed: 104))
        let data = randomBytes(3 * chunk + 3, seed: 7)
        let src = try writeTemp(data, dir: c.root, name: "cli")
        #expect(try c.cli(["put", "test", "from-cli/file", src]).status == 0)
        #expect(try fileBytes(dir + "/from-cli/file") == data)
        // And MogileFS's get_paths serves what the mount wrote.
        let paths = try c.client.call("get_paths", [("domain", "test"), ("key", "f\(chunk - 1)")])
        #expect(try HTTPTransferGet(paths["path1"]!) == randomBytes(chunk - 1, seed: 102))
    }

    @Test func rsyncOfARealTreeThenNothingToDo() throws {
        let (c, m, dir) = try mountedCluster()
        defer { m.unmount(); c.stop() }
        let src = c.root + "/tree"
        let project = URL(fileURLWithPath: TestCluster.binary).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().path
        #expect(try run("cp", ["-a", project + "/Sources", src + "/"]).status == 0 || FileManager.default.fileExists(atPath: src))
        try FileManager.default.createDirectory(atPath: src + "/gen/empty dir/nested empty", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: src + "/gen/ünïcødé ☃", withIntermediateDirectories: true)
        for i in 0..<30 {
            let p = src + "/gen/ünïcødé ☃/file \(i).bin"
            try Data(randomBytes(i * 997, seed: UInt64(i))).write(to: URL(fileURLWithPath: p))
            chmod(p, [0o600, 0o644, 0o755, 0o444, 0o640][i % 5])
        }
        try FileManager.default.createSymbolicLink(atPath: src + "/gen/link to file", withDestinationPath: "ünïcødé ☃/file 3.bin")
        try FileManager.default.createSymbolicLink(atPath: src + "/gen/dangling", withDestinationPath: "/nowhere/at all")
        #expect(try run("touch", ["-h", "-d", "1999-12-31 23:59:58.123456789", src + "/gen/ünïcødé ☃/file 1.bin", src + "/gen/dangling", src + "/gen/empty dir"]).status == 0)
        let copy = try run("rsync", ["-a", src + "/", dir + "/tree/"])
        #expect(copy.status == 0, "rsync -a: \(copy.out)")
        let noop = try run("rsync", ["-a", "--dry-run", "--itemize-changes", src + "/", dir + "/tree/"])
        #expect(noop.status == 0 && noop.out.isEmpty, "a second rsync finds nothing to do, but: \(noop.out.prefix(2000))")
        #expect(try run("diff", ["-r", "--no-dereference", src, dir + "/tree"]).status == 0)
        // rsync's temp-file-then-rename over an existing file.
        let changed = src + "/gen/ünïcødé ☃/file 2.bin"
        try Data(randomBytes(50_000, seed: 77)).write(to: URL(fileURLWithPath: changed))
        #expect(try run("rsync", ["-a", src + "/", dir + "/tree/"]).status == 0)
        #expect(try fileBytes(dir + "/tree/gen/ünïcødé ☃/file 2.bin") == randomBytes(50_000, seed: 77))
        var st = stat()
        lstat(dir + "/tree/gen/ünïcødé ☃/file 1.bin", &st)
        #expect(st.st_mtim.tv_sec == 946_684_798 && st.st_mtim.tv_nsec == 123_456_789, "mtime kept to the nanosecond")
        // Another client sees the directory's time rsync set (sent without waiting, under the
        // delegation the directory was made in).
        var ino = try #require(try c.client.call("fs_root", [("domain", "test")])["ino"])
        for name in ["tree", "gen", "empty dir"] { ino = try #require(try c.client.call("fs_lookup", [("parent", ino), ("name", name)])["ino"]) }
        #expect(try c.client.call("fs_getattr", [("ino", ino)])["mtime"] == "946684798123456789")
    }

    @Test func xattrsRoundTripAndShowStorage() throws {
        let (c, m, dir) = try mountedCluster()
        defer { m.unmount(); c.stop() }
        let f = dir + "/x.bin"
        let data = randomBytes(2 * chunk + 10, seed: 3)
        try Data(data).write(to: URL(fileURLWithPath: f))
        #expect(try run("setfattr", ["-n", "user.text", "-v", "hello world", f]).status == 0)
        let binary = (0..<256).map { UInt8($0) }
        let big = randomBytes(64 << 10, seed: 9)
        #expect(binary.withUnsafeBytes { setxattr(f, "user.bin", $0.baseAddress, $0.count, 0) } == 0)
        #expect(big.withUnsafeBytes { setxattr(f, "user.big", $0.baseAddress, $0.count, 0) } == 0)
        #expect(try run("getfattr", ["--only-values", "-n", "user.text", f]).out == "hello world")
        var buf = [UInt8](repeating: 0, count: 70_000)
        let n = buf.withUnsafeMutableBytes { getxattr(f, "user.big", $0.baseAddress, $0.count) }
        #expect(n == big.count && Array(buf[..<max(0, n)]) == big)
        let nb = buf.withUnsafeMutableBytes { getxattr(f, "user.bin", $0.baseAddress, $0.count) }
        #expect(Array(buf[..<max(0, nb)]) == binary)
        let list = try run("getfattr", ["-d", "-m", "-", f]).out
        #expect(list.contains("user.text=") && list.contains("user.bin=") && list.contains("cairn.class=\"small\""))
        // The same values are the file's custom metadata for the CLI.
        #expect(try c.cli(["meta", "get", "test", "x.bin", "text"]).out == Data("hello world".utf8))
        #expect(try run("setfattr", ["-x", "user.text", f]).status == 0)
        #expect(try run("getfattr", ["-n", "user.text", f]).status != 0)
        #expect(try run("setfattr", ["-n", "trusted.x", "-v", "1", f]).status != 0, "other namespaces are refused")
        let selinux = try run("getfattr", ["-n", "security.selinux", f])
        #expect(selinux.status != 0 && selinux.err.contains("not supported"), "unsupported namespaces say so on reads too: \(selinux.err)")
        // cairn.locations: one URL per replica of each chunk, each serving that chunk's bytes.
        let urls = try run("getfattr", ["--only-values", "-n", "cairn.locations", f]).out.split(separator: "\n").map(String.init)
        #expect(urls.count == 6)
        var chunks: [[UInt8]] = []
        for u in urls { chunks.append(try HTTPTransferGet(u)) }
        #expect(Set(chunks.map { $0.count }) == [chunk, 10])
        #expect(chunks.contains(Array(data[0..<chunk])) && chunks.contains(Array(data[(2 * chunk)...])))
        // Moving the file to a 3-replica class brings it to 3 copies.
        #expect(try run("setfattr", ["-n", "cairn.class", "-v", "three", f]).status == 0)
        try c.wait("3 replicas", timeout: 30) { try run("getfattr", ["--only-values", "-n", "cairn.replicas", f]).out == "3" }
    }

    @Test func randomWritesAppendsAndTruncatesMatchALocalFile() throws {
        let (c, m, dir) = try mountedCluster()
        defer { m.unmount(); c.stop() }
        // CAIRN_TEST_SEED replays a failure's sequence.
        let seed = ProcessInfo.processInfo.environment["CAIRN_TEST_SEED"].flatMap(UInt64.init) ?? UInt64(Date().timeIntervalSince1970)
        var rng = SplitMix(seed)
        let local = c.root + "/local.bin", remote = dir + "/random.bin"
        for path in [local, remote] {
            try #require(FileManager.default.createFile(atPath: path, contents: Data(randomBytes(chunk + 500, seed: 1))), "cannot create \(path)")
        }
        for step in 0..<40 {
            let op = rng.next() % 4
            let size = (try? FileManager.default.attributesOfItem(atPath: local)[.size] as? Int) ?? 0
            for path in [local, remote] {
                var r2 = rng
                let fd = open(path, op == 1 ? O_WRONLY | O_APPEND : O_RDWR)
                #expect(fd >= 0)
                // Every call is checked, so a failure names the call that failed (a mismatch
                // alone would not say whether a call failed or the content is wrong).
                let what: String, done: Int
                switch op {
                case 0: // overwrite somewhere, maybe past the end
                    let off = Int(r2.next() % UInt64(size + chunk))
                    let bytes = randomBytes(Int(r2.next() % UInt64(3 * chunk / 2)) + 1, seed: r2.next())
                    what = "pwrite of \(bytes.count) bytes at \(off)"
                    done = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(off)) } == bytes.count ? 0 : -1
                case 1: // append
                    let bytes = randomBytes(Int(r2.next() % 70_000) + 1, seed: r2.next())
                    what = "append of \(bytes.count) bytes"
                    done = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count ? 0 : -1
                case 2: // truncate down or up
                    let to = r2.next() % UInt64(size + chunk + 1)
                    what = "ftruncate to \(to)"
                    done = Int(ftruncate(fd, off_t(to)))
                default: // rewrite a small piece at the start
                    let bytes = randomBytes(100, seed: r2.next())
                    what = "pwrite of 100 bytes at 0"
                    done = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } == 100 ? 0 : -1
                }
                #expect(done == 0, "\(what) on \(path) failed at step \(step): \(String(cString: strerror(errno))); seed \(seed)")
                #expect(close(fd) == 0, "close of \(path) after \(what) failed at step \(step): \(String(cString: strerror(errno))); seed \(seed)")
                if path == remote { rng = r2 }
            }
            let want = try fileBytes(local), got = try fileBytes(remote)
            let same = want == got
            let firstDifference = zip(want, got).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(want.count, got.count)
            #expect(same, "mount and local file differ after step \(step) (op \(op)): sizes \(got.count) (mount) vs \(want.count), first difference at byte \(firstDifference); seed \(seed)")
            if !same { break }
        }
    }

    @Test func remountKeepsEverythingAndNodeDeathIsSurvived() throws {
        // Reads over HTTP, as a mount on another machine does: a killed node's blobs must be
        // read from the other replicas.
        let (c, m, dir) = try mountedCluster(nodes: 4, mountOptions: ["local_reads=0"])
        defer { m.unmount(); c.stop() }
        try FileManager.default.createDirectory(atPath: dir + "/keep/empty", withIntermediateDirectories: true)
        let data = randomBytes(40 << 20, seed: 42)
        let src = try writeTemp(data, dir: c.root, name: "big")
        #expect(try run("cp", [src, dir + "/keep/big"]).status == 0)
        #expect(m.unmount() == 0, "fusermount3 -u ends the mount with status 0")
        try m.mount()
        #expect(FileManager.default.fileExists(atPath: dir + "/keep/empty"))
        #expect(try run("cmp", [src, dir + "/keep/big"]).status == 0)
        // A node dies during a large read: the read falls over to other replicas.
        let readResult = LockedResult()
        let t = Thread { readResult.set((try? run("cmp", [src, dir + "/keep/big"]))?.status ?? -1) }
        t.start()
        Thread.sleep(forTimeInterval: 0.3)
        c.killNode(0)
        #expect(readResult.wait() == 0, "read completed and verified after a node died")
        // And during a large write (the next chunks go to the surviving nodes).
        let writeResult = LockedResult()
        let w = Thread {
            let r = try? run("cp", [src, dir + "/keep/big2"])
            if r?.status != 0 { print("cp during node death: \(r?.err ?? "no result")\n\(c.log("mount.log"))") }
            writeResult.set(r?.status ?? -1)
        }
        w.start()
        Thread.sleep(forTimeInterval: 0.3)
        c.killNode(1)
        #expect(writeResult.wait() == 0, "cp completed after a second node died")
        #expect(try run("cmp", [src, dir + "/keep/big2"]).status == 0)
    }
}

struct SplitMix {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
}

final class LockedResult: @unchecked Sendable {
    private let c = NSCondition()
    private var value: Int32?
    func set(_ v: Int32) { c.lock(); value = v; c.broadcast(); c.unlock() }
    func wait() -> Int32 { c.lock(); while value == nil { c.wait() }; let v = value!; c.unlock(); return v }
}

import CairnTransfer
func HTTPTransferGet(_ url: String) throws -> [UInt8] { try HTTPTransfer.shared.get(url).body }

extension MountTests {
    @Test func unlinkedOpenFileStaysReadableAndRenameReplaces() throws {
        let (c, m, dir) = try mountedCluster()
        defer { m.unmount(); c.stop() }
        let data = randomBytes(3 * chunk, seed: 5)
        try Data(data).write(to: URL(fileURLWithPath: dir + "/victim"))
        let fd = open(dir + "/victim", O_RDONLY)
        #expect(fd >= 0)
        #expect(unlink(dir + "/victim") == 0)
        #expect(!FileManager.default.fileExists(atPath: dir + "/victim"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty, "no hidden names show")
        Thread.sleep(forTimeInterval: 1.5)  // give the delete worker its chance
        var buf = [UInt8](repeating: 0, count: data.count)
        var got = 0
        while got < data.count {
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, data.count - got, off_t(got)) }
            if n <= 0 { break }
            got += n
        }
        close(fd)
        #expect(got == data.count && buf == data, "an open file stays readable after unlink")
        // Atomic replace: a reader sees old or new content, never a mix.
        try Data(randomBytes(1000, seed: 1)).write(to: URL(fileURLWithPath: dir + "/target"))
        try Data(randomBytes(2000, seed: 2)).write(to: URL(fileURLWithPath: dir + "/source"))
        #expect(rename(dir + "/source", dir + "/target") == 0)
        #expect(try fileBytes(dir + "/target") == randomBytes(2000, seed: 2))
        // Hard links and symlinks.
        #expect(link(dir + "/target", dir + "/hard") == 0)
        #expect(symlink("target", dir + "/soft") == 0)
        #expect(try fileBytes(dir + "/soft") == randomBytes(2000, seed: 2))
        var st = stat()
        stat(dir + "/hard", &st)
        #expect(st.st_nlink == 2)
        // statfs shows the cluster's capacity.
        var vfs = statvfs()
        #expect(statvfs(dir, &vfs) == 0 && vfs.f_blocks > 0)
        // mkdir at the top creates a domain; rmdir of an empty one removes it.
        #expect(mkdir(m.path + "/newdomain", 0o755) == 0)
        #expect(try c.cli(["admin", "domain", "list"]).out.split(separator: 10).contains { String(decoding: $0, as: UTF8.self) == "newdomain" })
        #expect(rmdir(m.path + "/newdomain") == 0)
    }
}

extension MountTests {
    @Test func trackerOutageFailsFastAndRecovers() throws {
        let (c, m, dir) = try mountedCluster()
        defer { m.unmount(); c.stop() }
        try Data("before".utf8).write(to: URL(fileURLWithPath: dir + "/a"))
        try FileManager.default.createDirectory(atPath: dir + "/unlisted", withIntermediateDirectories: false)
        // Past the entry timeout: a directory this mount has just made answers its missing
        // names from its listing, tracker or not.
        Thread.sleep(forTimeInterval: 1.2)
        c.kill(c.tracker)
        let started = Date()
        var st = stat()
        let rc = stat(dir + "/unlisted/not-cached-\(UUID().uuidString)", &st)
        let failedWith = errno
        #expect(rc != 0 && failedWith == EIO, "a lookup with the tracker gone fails with EIO (errno \(failedWith))")
        #expect(Date().timeIntervalSince(started) < 20, "and does not hang")
        // Its lease watch cannot start again meanwhile: said once, not at each retry.
        try c.wait("the mount to say its lease watch cannot start", timeout: 10) { c.log("mount.log").contains("could not start a lease watch") }
        Thread.sleep(forTimeInterval: 2.2)
        #expect(c.log("mount.log").components(separatedBy: "could not start a lease watch").count == 2, "\(c.log("mount.log"))")
        try c.restartTracker()
        try c.waitForWriteableDevices(3)
        try Data("after".utf8).write(to: URL(fileURLWithPath: dir + "/b"))
        #expect(try fileBytes(dir + "/b") == Array("after".utf8), "the mount recovers by itself")
        #expect(try fileBytes(dir + "/a") == Array("before".utf8))
    }

    @Test func sigtermCommitsOpenFilesAndExitsZero() throws {
        let (c, m, dir) = try mountedCluster()
        defer { m.unmount(); c.stop() }
        let fd = open(dir + "/open-at-stop", O_WRONLY | O_CREAT, 0o644)
        let data = randomBytes(chunk + 10, seed: 8)
        #expect(data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == data.count)
        let p = try #require(m.process)
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        close(fd)
        #expect(p.terminationStatus == 0, "SIGTERM ends the mount with status 0")
        #expect(!TestMount.isMounted(m.path))
        let back = try c.cli(["get", "test", "open-at-stop"])
        #expect(back.status == 0 && Array(back.out) == data, "what was open was committed before exit")
    }

    @Test func replicasOnThisMachineAreReadFromTheirDeviceFolders() throws {
        let (c, m, dir) = try mountedCluster()
        defer { m.unmount(); c.stop() }
        let data = randomBytes(2 * chunk + 999, seed: 77)
        let src = try writeTemp(data, dir: c.root, name: "local-src")
        #expect(try run("cp", [src, dir + "/local"]).status == 0)
        // Six chunks, two copies each: all three nodes hold some (but for a 0.4 % chance).
        let first = try writeTemp(randomBytes(6 * chunk, seed: 78), dir: c.root, name: "first-src")
        #expect(try run("cp", [first, dir + "/first"]).status == 0)
        #expect(m.unmount() == 0)
        try m.mount()  // nothing of the files left in the kernel's page cache
        #expect(try run("cmp", [first, dir + "/first"]).status == 0, "a first read finds which nodes are on this machine")
        // Frozen nodes accept connections but never answer: only reads from their folders finish.
        let pids = c.nodes.compactMap { $0?.processIdentifier }
        for p in pids { kill(p, SIGSTOP) }
        defer { for p in pids { kill(p, SIGCONT) } }
        let whole = try run("timeout", ["20", "cmp", src, dir + "/local"])
        #expect(whole.status == 0, "read with every node frozen: \(whole.err)")
        let part = c.root + "/local-part"
        let direct = try run("timeout", ["20", "dd", "if=\(dir)/local", "of=\(part)", "bs=4096", "skip=\(chunk / 4096)", "count=3",
                                         "iflag=direct", "status=none"])
        #expect(direct.status == 0, "direct 4 KiB-block reads from the second chunk: \(direct.err)")
        #expect(try fileBytes(part) == Array(data[chunk..<(chunk + 3 * 4096)]))
    }

    @Test func mountWritesAreMadeDurableByFsyncWhileCLIWritesAreAtOnce() throws {
        // No background flush during the test: only fsync (or the CLI) may flush. The blobs go
        // through the nodes (local_writes=0), whose pending writes `/_status` shows.
        let (c, m, dir) = try mountedCluster(nodeArgs: ["--flush-interval", "3600"], mountOptions: ["local_writes=0"])
        defer { m.unmount(); c.stop() }
        func unflushed() throws -> Int {
            try c.nodePorts.reduce(0) { sum, port in
                let body = try HTTPTransferGet("http://127.0.0.1:\(port)/_status")
                let status = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
                return sum + (try #require(status["unflushedWrites"] as? Int))
            }
        }
        let viaCLI = try writeTemp(randomBytes(5000, seed: 31), dir: c.root, name: "cli-src")
        #expect(try c.cli(["put", "test", "durable-at-once", viaCLI]).status == 0)
        #expect(try unflushed() == 0, "cairn put is fsynced by the nodes before it returns")

        let data = randomBytes(3 * chunk + 17, seed: 32)
        let src = try writeTemp(data, dir: c.root, name: "mount-src")
        #expect(try run("cp", [src, dir + "/deferred"]).status == 0)
        let pending = try unflushed()
        #expect(pending >= 8, "4 chunks × 2 synchronous copies written by the mount wait for a flush (got \(pending))")
        // coreutils' `sync FILE` is fsync(2) on it: the nodes flush, then the tracker.
        let synced = try run("sync", [dir + "/deferred"])
        #expect(synced.status == 0, "fsync through the mount: \(synced.err)")
        #expect(try unflushed() == 0, "fsync returned only after every node flushed the mount's writes")
        #expect(Array(try c.cli(["get", "test", "deferred"]).out) == data)
    }

    /// A store without room says so (ENOSPC, not EIO) and keeps what it had.
    @Test func aFullStoreSaysNoSpaceAndKeepsWhatItHas() throws {
        let (c, m, dir) = try mountedCluster(nodes: 2, nodeArgs: ["--capacity", "6"])
        defer { m.unmount(); c.stop() }
        #expect(!FileManager.default.fileExists(atPath: c.root + "/node0/.cairn-local-writes"),
                "a node with a fixed capacity counts its own blobs, so it lets no mount write into its folders")
        let kept = randomBytes(chunk, seed: 41)
        let src = try writeTemp(kept, dir: c.root, name: "kept")
        #expect(try run("cp", [src, dir + "/kept"]).status == 0)
        let big = try writeTemp(randomBytes(12 * chunk, seed: 42), dir: c.root, name: "big")
        let r = try run("dd", ["if=" + big, "of=" + dir + "/big", "bs=1M"])
        #expect(r.status != 0, "12 MiB fitted on two 6 MiB devices")
        #expect(r.err.contains("No space left on device"), "dd said: \(r.err)")
        #expect(try fileBytes(dir + "/kept") == kept)
    }
}
