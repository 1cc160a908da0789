import CairnFS
import CairnProtocol
import CairnTestSupport
import CairnTransfer
import Foundation
import Testing

/// Layouts held under the tracker's lease (`LeasedLayouts`, the tracker's `Watchers`): opens of
/// files seen before ask nothing, and any change by another client is seen by the next open.
@Suite(.serialized) struct LeaseTests {
    func write(_ fs: ClusterFS, _ ino: UInt64, _ text: String) throws {
        let (h, _) = try fs.open(ino, writable: true)
        _ = try fs.setattr(ino, ClusterFS.AttributeChange(size: 0))
        _ = try Array(text.utf8).withUnsafeBytes { try fs.write(h, offset: 0, bytes: $0) }
        try fs.release(h)
    }

    func read(_ fs: ClusterFS, _ ino: UInt64) throws -> String {
        let (h, _) = try fs.open(ino, writable: false)
        defer { try? fs.release(h) }
        return String(decoding: try fs.read(h, offset: 0, count: 1000).joined, as: UTF8.self)
    }

    /// Reads `ino` until an open asks the tracker nothing (the watch is up and holds it).
    func waitUntilHeld(_ c: TestCluster, _ fs: ClusterFS, _ ino: UInt64) throws {
        try c.wait("the mount to hold the file's layout", timeout: 10) {
            _ = try read(fs, ino)
            let before = try queries(c, "file_layout")
            _ = try read(fs, ino)
            return try queries(c, "file_layout") == before
        }
    }

    @Test func anotherClientsChangeIsSeenByTheNextOpen() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        let writer = try clusterFS(c, timeout: 0), reader = try clusterFS(c, timeout: 0)
        let (a, fh) = try writer.create(parent: 1, name: "f", mode: 0o100644, uid: 0, gid: 0)
        try writer.release(fh)
        try write(writer, a.ino, "one")
        try waitUntilHeld(c, reader, a.ino)
        #expect(try read(reader, a.ino) == "one")

        // Another mount rewrites it, truncates it; the CLI replaces it: each is seen at once.
        for round in 0..<5 {
            try write(writer, a.ino, "two, round \(round)")
            #expect(try read(reader, a.ino) == "two, round \(round)")
        }
        _ = try writer.setattr(a.ino, ClusterFS.AttributeChange(size: 3))
        #expect(try read(reader, a.ino) == "two")
        #expect(try c.cli(["put", "test", "f", try writeTemp(Array("three".utf8), dir: c.root, name: "three")]).status == 0)
        #expect(try read(reader, a.ino) == "three")

        // The reader's own change keeps it holding (no call back to itself), and is what it reads.
        try waitUntilHeld(c, reader, a.ino)
        try write(reader, a.ino, "four")
        let before = try queries(c, "file_layout")
        #expect(try read(reader, a.ino) == "four")
        #expect(try queries(c, "file_layout") == before, "the reader asked for the layout its own commit gave it")

        // A tracker restart ends the watch: what was held is dropped, changes made after it are seen.
        try c.restartTracker()
        #expect(try c.cli(["put", "test", "f", try writeTemp(Array("five".utf8), dir: c.root, name: "five")]).status == 0)
        #expect(try read(reader, a.ino) == "five")
        try waitUntilHeld(c, reader, a.ino)
        try write(writer, a.ino, "six")
        #expect(try read(reader, a.ino) == "six")
    }

    /// A directory listed under the lease answers lookups and listings past the entry timeout
    /// without a call, and another client's new or removed name is seen at once.
    @Test func heldListingsOutliveTheTimeoutAndSeeOtherClientsNames() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        let writer = try clusterFS(c, timeout: 0.3), reader = try clusterFS(c, timeout: 0.3)
        for name in ["a", "b"] { try writer.release(try writer.create(parent: 1, name: name, mode: 0o100644, uid: 0, gid: 0).1) }
        func names() throws -> [String] {
            let h = try reader.opendir(1)
            defer { reader.releasedir(h) }
            return try reader.readdir(h, offset: 0).map(\.name).filter { !$0.hasPrefix(".") }
        }
        func calls() throws -> Int { try queries(c, "fs_readdir", "fs_lookup", "fs_getattr") }
        try c.wait("the reader to hold the listing", timeout: 10) {
            _ = try names()
            Thread.sleep(forTimeInterval: 0.4)  // past the entry timeout
            let before = try calls()
            let listed = try names(), after = try calls()
            return listed == ["a", "b"] && after == before
        }
        let before = try calls()
        #expect(try reader.lookup(parent: 1, name: "a").ino > 1)
        #expect(throws: FSError.self) { _ = try reader.lookup(parent: 1, name: "missing") }
        #expect(try calls() == before, "a held listing was not used")

        #expect(try c.cli(["put", "test", "c", try writeTemp(Array("new".utf8), dir: c.root, name: "c")]).status == 0)
        #expect(try reader.lookup(parent: 1, name: "c").size == 3)
        #expect(try names() == ["a", "b", "c"])
        try writer.unlink(parent: 1, name: "a")
        Thread.sleep(forTimeInterval: 0.4)  // the listing just fetched is no longer within the entry timeout
        #expect(throws: FSError.self) { _ = try reader.lookup(parent: 1, name: "a") }
        #expect(try names() == ["b", "c"])
    }

    /// What a mount answers from what it holds, for names and files it changed itself, is what
    /// the tracker says, past every timeout: chmod, rename (ctime), link (link count), xattrs.
    @Test func ownChangesAnsweredFromWhatIsHeldMatchTheTracker() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        let fs = try clusterFS(c, timeout: 0.3), other = try clusterFS(c, timeout: 0)
        let (a, fh) = try fs.create(parent: 1, name: "f", mode: 0o100644, uid: 0, gid: 0)
        _ = try Array("content".utf8).withUnsafeBytes { try fs.write(fh, offset: 0, bytes: $0) }
        try fs.release(fh)
        func same(_ name: String) throws {
            Thread.sleep(forTimeInterval: 0.4)  // past the timeouts: only the lease keeps anything
            let mine = try fs.lookup(parent: 1, name: name), truth = try other.getattr(mine.ino)
            #expect(mine.mode == truth.mode && mine.nlink == truth.nlink, "\(name): mode, link count")
            #expect(mine.size == truth.size && mine.mtime == truth.mtime && mine.ctime == truth.ctime, "\(name): size, times")
        }
        try same("f")
        _ = try fs.setattr(a.ino, ClusterFS.AttributeChange(mode: 0o100600))
        try same("f")
        // Before each change, an open holds the layout again (the change before dropped it).
        try fs.release(try fs.open(a.ino, writable: false).handle)
        try fs.rename(parent: 1, name: "f", newParent: 1, newName: "g", flags: 0)
        try same("g")
        try fs.release(try fs.open(a.ino, writable: false).handle)
        _ = try fs.link(a.ino, newParent: 1, newName: "h")
        try same("g")
        try fs.release(try fs.open(a.ino, writable: false).handle)
        try fs.setxattr(a.ino, name: "user.k", value: Array("v".utf8), flags: 0)
        try same("h")
    }

    /// A watcher that never acknowledges is cut off; the change goes through once its lease has
    /// run out, and the watcher is then unknown to the tracker.
    @Test func aWatcherThatDoesNotAnswerIsCutOffAndHoldsNothingUp() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        #expect(try c.cli(["put", "test", "g", try writeTemp(Array("old".utf8), dir: c.root, name: "old")]).status == 0)
        let address = "127.0.0.1:\(c.trackerPort)"
        let watch = try TrackerConnection(address: address, timeoutSeconds: 10)
        guard case .success(let w) = try watch.call("fs_watch", []), let id = w["watcher"] else {
            Issue.record("fs_watch was refused")
            return
        }
        // It asks for the file's layout, so it may hold it.
        let other = try TrackerConnection(address: address)
        guard case .success = try other.call("file_layout", [("domain", "test"), ("key", "g"), ("watcher", id)]) else {
            Issue.record("file_layout failed")
            return
        }
        #expect(try c.cli(["put", "test", "g", try writeTemp(Array("new".utf8), dir: c.root, name: "new")]).status == 0)
        #expect(String(decoding: try watch.readLine(), as: UTF8.self).hasPrefix("INVAL seq="))
        #expect(throws: (any Error).self, "the tracker kept the silent watch open") { _ = try watch.readLine() }
        guard case .failure(let e) = try other.call("fs_watch_ping", [("watcher", id)]) else {
            Issue.record("a cut-off watcher's ping was answered OK")
            return
        }
        #expect(e.code == "unknown_watcher")
        guard case .success(let r) = try other.call("file_layout", [("domain", "test"), ("key", "g")]) else {
            Issue.record("file_layout failed")
            return
        }
        #expect(r["size"] == "3")
    }

    @Test func aWatchBrokenUnderTheMountIsLogged() throws {
        let c = try TestCluster(nodes: 1)
        defer { c.stop() }
        let m = try TestMount(c)
        defer { m.unmount() }
        // The mount comes up with its watch (a copy started at once is served by it).
        #expect(try trackerStats(port: c.trackerPort)["watchers"] == 1, "the mount came up before its lease watch")
        try c.wait("the mount's lease watch to start", timeout: 10) { try queries(c, "fs_watch") > 0 }
        #expect(!c.log("mount.log").contains("lease watch"), "nothing to say while the watch runs")
        // The tracker dies under the watch: the mount says so (it then asks the tracker for
        // everything until a new watch is up), rather than dropping its lease in silence.
        try c.restartTracker()
        try c.wait("the mount to log that its watch ended", timeout: 10) {
            let log = c.log("mount.log")
            return log.contains("lease watch") && log.contains("ended (")
        }
    }

    /// A watch that ends while holding makes the next change wait out its lease (the tracker
    /// cannot tell a closed mount from a broken network), unless the mount said goodbye
    /// (`fs_unwatch`, sent at a clean unmount). Counted by `!stats`' `lease_waits`.
    @Test func aCleanUnmountEndsItsLeaseWithoutAWait() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        let address = "127.0.0.1:\(c.trackerPort)"
        func leaseWaits() throws -> Int { try trackerStats(port: c.trackerPort)["lease_waits"] ?? -1 }
        var round = 0
        func change() throws {
            round += 1
            #expect(try c.cli(["put", "test", "g", try writeTemp(Array("v\(round)".utf8), dir: c.root, name: "v\(round)")]).status == 0)
        }
        // Past the start-up grace period, a change waits for nothing.
        try c.wait("the tracker's start-up grace period to end", timeout: 10) {
            let before = try leaseWaits()
            try change()
            return try leaseWaits() == before
        }
        /// A watch that asked for the file's layout (it may hold it), on a connection of its own.
        func holdingWatch() throws -> (TrackerConnection, String) {
            let watch = try TrackerConnection(address: address, timeoutSeconds: 10)
            guard case .success(let w) = try watch.call("fs_watch", []), let id = w["watcher"] else { throw TestFailure("fs_watch was refused") }
            guard case .success = try TrackerConnection(address: address).call("file_layout", [("domain", "test"), ("key", "g"), ("watcher", id)]) else {
                throw TestFailure("file_layout failed")
            }
            return (watch, id)
        }

        // Closed without a word: the next change waits.
        var watch = try holdingWatch().0
        watch = try TrackerConnection(address: address)  // the watch's connection closes
        var before = try leaseWaits()
        try change()
        #expect(try leaseWaits() == before + 1, "a watch that ended while holding was not waited out")

        // Another connection cannot end someone's watch; its own can, and then nothing waits.
        let id: String
        (watch, id) = try holdingWatch()
        guard case .failure(let refused) = try TrackerConnection(address: address).call("fs_unwatch", [("watcher", id)]) else {
            Issue.record("another connection ended a mount's watch")
            return
        }
        #expect(refused.code == "unknown_watcher")
        guard case .success = try watch.call("fs_unwatch", [("watcher", id)]) else {
            Issue.record("fs_unwatch on the watch's own connection failed")
            return
        }
        watch = try TrackerConnection(address: address)
        before = try leaseWaits()
        try change()
        #expect(try leaseWaits() == before)

        // A real mount sends it when it is unmounted, before its process exits.
        let m = try TestMount(c)
        try c.wait("the mount to hold the file's layout", timeout: 10) {
            _ = try Data(contentsOf: URL(fileURLWithPath: m.path + "/test/g"))
            let asked = try queries(c, "file_layout")
            _ = try Data(contentsOf: URL(fileURLWithPath: m.path + "/test/g"))
            return try queries(c, "file_layout") == asked
        }
        #expect(m.unmount() == 0)
        before = try leaseWaits()
        try change()
        #expect(try leaseWaits() == before, "the unmounted mount's lease was waited out")
    }
}
