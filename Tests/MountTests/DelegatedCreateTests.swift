import CSys
import CairnProtocol
import CairnTestSupport
import Foundation
import Testing

/// Creates in a directory the tracker has delegated to the mount (`DelegatedDirectories`) are
/// decided by the mount and sent without waiting, and so are the files' first commits. These
/// check that a kill of either side loses none of them, and that another client's request in
/// the directory comes after them (the tracker recalls the delegation first): its create of the
/// same name fails, its reads see the files whole. The tracker is stopped while the files are
/// written, so the mount's creates are all still unread when the kill or the other request comes.
extension MountTests {
    static let delegatedFiles = (0..<30).map { "f\($0)" }
    static func delegatedContent(_ name: String) -> [UInt8] { Array("content of \(name)\n".utf8) + randomBytes(2000, seed: UInt64(name.utf8.count)) }

    /// A directory made through the mount with one file in it (the mount asks for the
    /// delegation there); its tracker inode.
    private func makeDelegatedDirectory(_ c: TestCluster, _ dir: String) throws -> String {
        try FileManager.default.createDirectory(atPath: dir + "/d", withIntermediateDirectories: false)
        try Data("first".utf8).write(to: URL(fileURLWithPath: dir + "/d/first"))
        let root = try #require(try c.client.call("fs_root", [("domain", "test")])["ino"])
        let ino = try #require(try c.client.call("fs_lookup", [("parent", root), ("name", "d")])["ino"])
        // Without a delegation the mount's creates would wait for the stopped tracker, each
        // until its timeout: say so now rather than after minutes.
        try #require(try trackerStats(port: c.trackerPort)["delegated_directories", default: 0] >= 1,
                     "the mount holds no create delegation after its first file in d")
        return ino
    }

    /// The tracker stopped, `whileStopped` run (another client's requests, which wait in its
    /// socket), then 30 files written through the mount: every create, write and close returns.
    private func writeWhileTrackerStopped(_ c: TestCluster, _ dir: String, whileStopped: () -> Void = {}) throws {
        kill(try #require(c.tracker).processIdentifier, SIGSTOP)
        whileStopped()
        for n in Self.delegatedFiles {
            let fd = open(dir + "/d/" + n, O_WRONLY | O_CREAT | O_EXCL, 0o644)
            #expect(fd >= 0, "create \(n): errno \(errno)")
            guard fd >= 0 else { continue }
            let bytes = Self.delegatedContent(n)
            #expect(bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count)
            #expect(close(fd) == 0, "close \(n): errno \(errno)")
        }
        // The mount shows them, with their sizes, though the tracker has read none yet.
        var st = stat()
        #expect(stat(dir + "/d/f7", &st) == 0 && Int(st.st_size) == Self.delegatedContent("f7").count)
    }

    /// Whether the tracker has every file, whole (asked through the CLI, a client of its own).
    private func trackerHasEveryFile(_ c: TestCluster) throws -> Bool {
        try Self.delegatedFiles.allSatisfy { n in
            let r = try c.cli(["get", "test", "d/" + n, "-"])
            return r.status == 0 && Array(r.out) == Self.delegatedContent(n)
        }
    }

    @Test func delegatedCreatesSurviveAKilledMount() throws {
        let (c, m, dir) = try mountedClusterForTrackerStops()
        defer { m.unmount(); c.stop() }
        _ = try makeDelegatedDirectory(c, dir)
        try writeWhileTrackerStopped(c, dir)
        try killMountThenResumeTracker(c, m)
        try c.wait("the killed mount's 30 files at the tracker") { try trackerHasEveryFile(c) }
    }

    @Test func delegatedCreatesSurviveAKilledTracker() throws {
        let (c, m, dir) = try mountedClusterForTrackerStops()
        defer { m.unmount(); c.stop() }
        _ = try makeDelegatedDirectory(c, dir)
        try writeWhileTrackerStopped(c, dir)
        // Killed with all of them unread: the mount sends them again to the tracker that starts next.
        try c.restartTracker()
        try c.wait("the 30 files resent to the new tracker") { try trackerHasEveryFile(c) }
        #expect(try fileBytes(dir + "/d/f29") == Self.delegatedContent("f29"))
    }

    /// Another client's request, sent while the mount's creates wait unread in the stopped
    /// tracker's socket, runs after them: the tracker takes the delegation back first, and the
    /// mount's ack comes down the pipeline behind its creates and commits.
    private func anotherClientsRequest(_ c: TestCluster, _ dir: String, alsoWhileStopped: () -> Void = {},
                                       _ request: @escaping @Sendable (String) throws -> Args) throws -> Result<Args, any Error> {
        try otherClientsRequests(c, dir, alsoWhileStopped: alsoWhileStopped, [request])[0]
    }

    /// As above, with each request on a connection of its own, all sent while the tracker is stopped.
    private func otherClientsRequests(_ c: TestCluster, _ dir: String, alsoWhileStopped: () -> Void = {},
                                      _ requests: [@Sendable (String) throws -> Args]) throws -> [Result<Args, any Error>] {
        let parent = try makeDelegatedDirectory(c, dir)
        let answers = requests.map { _ in Answer() }
        let done = DispatchGroup()
        try writeWhileTrackerStopped(c, dir) {
            for (request, answer) in zip(requests, answers) {
                done.enter()
                Thread.detachNewThread {
                    answer.result = Result { try request(parent) }
                    done.leave()
                }
            }
            Thread.sleep(forTimeInterval: 0.3)  // their lines are in the tracker's socket before the mount's
        }
        alsoWhileStopped()
        kill(try #require(c.tracker).processIdentifier, SIGCONT)
        #expect(done.wait(timeout: .now() + 20) == .success)
        #expect(try trackerStats(port: c.trackerPort)["delegation_recalls", default: 0] >= 1)
        // Acked, not waited out (the ack once went unread: the mount cut off, its lease waited for).
        let log = try String(contentsOfFile: c.root + "/tracker.log", encoding: .utf8)
        #expect(!log.contains("did not acknowledge"), "a recall went unacknowledged")
        return try answers.map { try #require($0.result) }
    }

    /// Several clients' reads at once: the first takes the delegation back, the others find a
    /// recall on its way and wait for its ack too.
    @Test func concurrentReadsAllWaitForTheRecall() throws {
        let (c, m, dir) = try mountedClusterForTrackerStops()
        defer { m.unmount(); c.stop() }
        let client = c.client
        let names = ["f9", "f19", "f29", "f28"]
        let results = try otherClientsRequests(c, dir, names.map { n in
            { @Sendable _ in try client.call("file_info", [("domain", "test"), ("key", "d/" + n)]) }
        })
        for (n, r) in zip(names, results) {
            #expect(try r.get()["length"] == String(Self.delegatedContent(n).count), "\(n)")
        }
    }

    /// A read by key sees the file whole (close-to-open for every client).
    @Test func anotherClientsReadSeesDelegatedFilesWhole() throws {
        let (c, m, dir) = try mountedClusterForTrackerStops()
        defer { m.unmount(); c.stop() }
        let client = c.client
        let r = try anotherClientsRequest(c, dir) { _ in try client.call("file_info", [("domain", "test"), ("key", "d/f9")]) }
        #expect(try r.get()["length"] == String(Self.delegatedContent("f9").count))
    }

    /// An exclusive create of the same name by inode (as another mount makes it) fails: the
    /// name is the mount's, whose file stays whole.
    @Test func anotherClientsExclusiveCreateOfADelegatedNameFails() throws {
        let (c, m, dir) = try mountedClusterForTrackerStops()
        defer { m.unmount(); c.stop() }
        let client = c.client
        let r = try anotherClientsRequest(c, dir) { parent in
            try client.call("fs_create", [("parent", parent), ("name", "f5"), ("kind", "f"), ("mode", "420")])
        }
        #expect(throws: ProtocolError.self) { try r.get() }
        if case .failure(let e as ProtocolError) = r { #expect(e.code == "key_exists") }
        try c.wait("the mount's f5 at the tracker") { try c.cli(["get", "test", "d/f5", "-"]).out == Data(Self.delegatedContent("f5")) }
        #expect(try fileBytes(dir + "/d/f5") == Self.delegatedContent("f5"))
    }

    /// A chmod and a rename of a file created under the delegation go without waiting too; a
    /// lookup by another client, sent before the stopped tracker read them, sees both.
    @Test func anotherClientsLookupSeesDelegatedRenameAndChmod() throws {
        let (c, m, dir) = try mountedClusterForTrackerStops()
        defer { m.unmount(); c.stop() }
        let client = c.client
        let r = try anotherClientsRequest(c, dir, alsoWhileStopped: {
            #expect(chmod(dir + "/d/f29", 0o640) == 0, "chmod: errno \(errno)")
            #expect(rename(dir + "/d/f29", dir + "/d/g29") == 0, "rename: errno \(errno)")
        }) { parent in
            try client.call("fs_lookup", [("parent", parent), ("name", "g29")])
        }
        let found = try r.get()
        #expect(found.int("mode").map { $0 & 0o7777 } == 0o640)
        #expect(try c.cli(["get", "test", "d/g29", "-"]).out == Data(Self.delegatedContent("f29")))
    }

    /// open(O_EXCL), write, close (Foundation's writes may sync, which waits for the tracker).
    static func writeNewFile(_ path: String, _ bytes: [UInt8]) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { return false }
        let wrote = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count
        return close(fd) == 0 && wrote
    }

    /// A directory made under the delegation is delegated at birth, also when the tracker reads
    /// the mkdir after it began recalling the parent (the other client's lookup here is sent
    /// first): a file written in it goes without waiting, the lookup finds the directory and the
    /// file whole, and a later lookup in the new directory, sent before the stopped tracker read
    /// the mount's next create there, recalls that directory and finds the file.
    @Test func directoryMadeUnderADelegationIsDelegatedToo() throws {
        let (c, m, dir) = try mountedClusterForTrackerStops()
        defer { m.unmount(); c.stop() }
        let client = c.client
        let content = Self.delegatedContent("sub/a")
        let r = try anotherClientsRequest(c, dir, alsoWhileStopped: {
            #expect(mkdir(dir + "/d/sub", 0o750) == 0, "mkdir: errno \(errno)")
            #expect(Self.writeNewFile(dir + "/d/sub/a", content), "create in the new directory: errno \(errno)")
        }) { parent in
            try client.call("fs_lookup", [("parent", parent), ("name", "sub")])
        }
        let sub = try r.get()
        #expect(sub["kind"] == "d" && sub.int("mode").map { $0 & 0o7777 } == 0o750)

        let subIno = try #require(sub["ino"])
        let answer = Answer()
        let done = DispatchSemaphore(value: 0)
        kill(try #require(c.tracker).processIdentifier, SIGSTOP)
        Thread.detachNewThread {
            answer.result = Result { try client.call("fs_lookup", [("parent", subIno), ("name", "b")]) }
            done.signal()
        }
        Thread.sleep(forTimeInterval: 0.3)  // the lookup is in the tracker's socket first
        #expect(Self.writeNewFile(dir + "/d/sub/b", Array("b".utf8)), "create while the tracker is stopped: errno \(errno)")
        kill(try #require(c.tracker).processIdentifier, SIGCONT)
        #expect(done.wait(timeout: .now() + 20) == .success)
        #expect(try #require(answer.result).get()["kind"] == "f")
        // (A request by key recalls every delegation: asked last.)
        #expect(try c.cli(["get", "test", "d/sub/a", "-"]).out == Data(content))
        let log = try String(contentsOfFile: c.root + "/tracker.log", encoding: .utf8)
        #expect(!log.contains("did not acknowledge"), "a recall went unacknowledged")
    }
}

/// What the other client's call answered (set on its thread, read once it is done).
final class Answer: @unchecked Sendable {
    var result: Result<Args, any Error>?
}
