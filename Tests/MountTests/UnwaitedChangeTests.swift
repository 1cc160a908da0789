import CSys
import CairnProtocol
import CairnTestSupport
import Foundation
import Testing

/// A plain setxattr and the unlink of a file the mount has listed return once the tracker's
/// socket holds the change, without waiting for the answer (`TrackerPipeline`). These check
/// that a kill of either side then loses none: the tracker is stopped while the changes are
/// made, so every one of them is still unread in its socket when the kill comes.
extension MountTests {
    static let xattrFiles = (0..<60).map { "f\($0)" }

    /// Files made through the mount, then a set on each while the tracker is stopped.
    private func setWhileTrackerStopped(_ c: TestCluster, _ dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir + "/x", withIntermediateDirectories: false)
        for n in Self.xattrFiles { try Data(n.utf8).write(to: URL(fileURLWithPath: dir + "/x/" + n)) }
        let tracker = try #require(c.tracker)
        kill(tracker.processIdentifier, SIGSTOP)
        for (i, n) in Self.xattrFiles.enumerated() {
            let v = Array("value-\(i)".utf8)
            let rc = v.withUnsafeBytes { setxattr(dir + "/x/" + n, "user.k", $0.baseAddress, $0.count, 0) }
            #expect(rc == 0, "setxattr \(n): errno \(errno)")
        }
        // This mount shows them at once, though the tracker has read none yet.
        var buf = [UInt8](repeating: 0, count: 64)
        let n = buf.withUnsafeMutableBytes { getxattr(dir + "/x/f7", "user.k", $0.baseAddress, $0.count) }
        #expect(n > 0 && Array(buf[..<max(n, 0)]) == Array("value-7".utf8))
    }

    /// Whether the tracker has every value (asked over a connection of the test's own).
    private func trackerHasEverySet(_ c: TestCluster) -> Bool {
        Self.xattrFiles.enumerated().allSatisfy { i, n in
            let r = try? c.client.call("meta_get", [("domain", "test"), ("key", "x/" + n), ("name", "k")])
            return r?["value_hex"] == Array("value-\(i)".utf8).map { String(format: "%02x", $0) }.joined()
        }
    }

    /// The mount is killed; the stopped tracker then answers the lines its socket holds, to nobody.
    func killMountThenResumeTracker(_ c: TestCluster, _ m: TestMount) throws {
        let p = try #require(m.process)
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        kill(try #require(c.tracker).processIdentifier, SIGCONT)
    }

    @Test func xattrSetsSurviveAKilledMount() throws {
        let (c, m, dir) = try mountedClusterForTrackerStops()
        defer { m.unmount(); c.stop() }
        try setWhileTrackerStopped(c, dir)
        try killMountThenResumeTracker(c, m)
        try c.wait("the killed mount's 60 sets at the tracker") { trackerHasEverySet(c) }
    }

    @Test func xattrSetsSurviveAKilledTracker() throws {
        let (c, m, dir) = try mountedClusterForTrackerStops()
        defer { m.unmount(); c.stop() }
        try setWhileTrackerStopped(c, dir)
        // Killed with all 60 unread: the mount sends them again to the tracker that starts next.
        try c.restartTracker()
        try c.wait("the 60 sets resent to the new tracker") { trackerHasEverySet(c) }
        #expect(try run("getfattr", ["--only-values", "-n", "user.k", dir + "/x/f59"]).out == "value-59")
    }

    /// Files made through the mount, then each unlinked while the tracker is stopped.
    private func unlinkWhileTrackerStopped(_ c: TestCluster, _ dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir + "/u", withIntermediateDirectories: false)
        for n in Self.xattrFiles { try Data(n.utf8).write(to: URL(fileURLWithPath: dir + "/u/" + n)) }
        // A create answers with the directory's attributes: the kernel's checks of the directory
        // between the unlinks are answered from them (within the attribute timeout), not asked of
        // the stopped tracker.
        try Data().write(to: URL(fileURLWithPath: dir + "/u/kept"))
        let tracker = try #require(c.tracker)
        kill(tracker.processIdentifier, SIGSTOP)
        for n in Self.xattrFiles { #expect(unlink(dir + "/u/" + n) == 0, "unlink \(n): errno \(errno)") }
        // This mount shows them gone at once, though the tracker has read none yet.
        #expect(access(dir + "/u/f7", F_OK) != 0 && errno == ENOENT)
    }

    /// Whether the tracker has none of the unlinked files (asked over a connection of the test's own).
    private func trackerHasNoneUnlinked(_ c: TestCluster) throws -> Bool {
        try Self.xattrFiles.allSatisfy { n in
            do { _ = try c.client.call("get_paths", [("domain", "test"), ("key", "u/" + n)]); return false } catch let e as ProtocolError {
                guard e.code == "unknown_key" else { throw e }
                return true
            }
        }
    }

    @Test func unlinksSurviveAKilledMount() throws {
        let (c, m, dir) = try mountedClusterForTrackerStops()
        defer { m.unmount(); c.stop() }
        try unlinkWhileTrackerStopped(c, dir)
        try killMountThenResumeTracker(c, m)
        try c.wait("the killed mount's 60 unlinks at the tracker") { try trackerHasNoneUnlinked(c) }
        _ = try c.client.call("get_paths", [("domain", "test"), ("key", "u/kept")])
    }

    @Test func unlinksSurviveAKilledTracker() throws {
        let (c, m, dir) = try mountedClusterForTrackerStops()
        defer { m.unmount(); c.stop() }
        try unlinkWhileTrackerStopped(c, dir)
        try c.restartTracker()
        try c.wait("the 60 unlinks resent to the new tracker") { try trackerHasNoneUnlinked(c) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/u") == ["kept"])
    }
}
