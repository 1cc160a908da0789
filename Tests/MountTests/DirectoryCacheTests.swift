import CairnClient
import CairnFS
import CairnTestSupport
import Foundation
import Testing

/// The mount's directory listings (`DirectoryCache`), driven through `ClusterFS` without the
/// kernel, whose own entry cache would hide what the mount answers.
@Suite(.serialized) struct DirectoryCacheTests {
    func lookups(_ c: TestCluster) throws -> Int { try queries(c, "fs_lookup") }

    func isMissing(_ fs: ClusterFS, _ dir: UInt64, _ name: String) -> Bool {
        do { _ = try fs.lookup(parent: dir, name: name); return false } catch { return true }
    }

    @Test func thisMountsChangesAreSeenAtOnceWithoutLookups() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        let fs = try clusterFS(c, timeout: 60)
        let d = try fs.mkdir(parent: 1, name: "d", mode: 0o755, uid: 0, gid: 0).ino
        let before = try lookups(c)
        #expect(isMissing(fs, d, "x"))  // the listing is fetched here
        let (_, fh) = try fs.create(parent: d, name: "x", mode: 0o644, uid: 0, gid: 0)
        _ = try Array("hello".utf8).withUnsafeBytes { try fs.write(fh, offset: 0, bytes: $0) }
        try fs.release(fh)
        #expect(try fs.lookup(parent: d, name: "x").size == 5, "a file written here has its new size at once")
        _ = try fs.mkdir(parent: d, name: "sub", mode: 0o700, uid: 0, gid: 0)
        #expect(try fs.lookup(parent: d, name: "sub").mode & 0o777 == 0o700)
        #expect(try lookups(c) == before, "every answer above came from the directory's listing")

        // Renames, attribute changes, links and removals: the names and attributes seen after each.
        try fs.rename(parent: d, name: "x", newParent: d, newName: "y", flags: 0)
        #expect(isMissing(fs, d, "x"))
        #expect(try fs.lookup(parent: d, name: "y").size == 5)

        let y = try fs.lookup(parent: d, name: "y")
        _ = try fs.setattr(y.ino, ClusterFS.AttributeChange(mode: 0o100600))
        #expect(try fs.lookup(parent: d, name: "y").mode & 0o777 == 0o600)
        _ = try fs.link(y.ino, newParent: d, newName: "z")
        #expect(try fs.lookup(parent: d, name: "y").nlink == 2, "a new link shows under the old name")
        try fs.unlink(parent: d, name: "z")
        #expect(isMissing(fs, d, "z"))
        #expect(try fs.lookup(parent: d, name: "y").nlink == 1)
        try fs.rmdir(parent: d, name: "sub")
        #expect(isMissing(fs, d, "sub"))
    }

    /// What rsync does to every file it copies — create a temporary name, write, close, set
    /// the times, rename — leaves the directory's listing current: the tracker's answers to
    /// the commit, the setattr and the rename update the entry, so looking the file up later
    /// asks nothing, even after the attributes this mount remembers have expired.
    @Test func changesMadeHereKeepTheListingCurrentWithoutLookups() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        let fs = try clusterFS(c, timeout: 60) { $0.attrTimeout = 0.05 }
        let d = try fs.mkdir(parent: 1, name: "d", mode: 0o755, uid: 0, gid: 0).ino
        #expect(isMissing(fs, d, ".x.tmp"))  // the listing is fetched here
        let (_, fh) = try fs.create(parent: d, name: ".x.tmp", mode: 0o100600, uid: 0, gid: 0)
        _ = try Array("hello".utf8).withUnsafeBytes { try fs.write(fh, offset: 0, bytes: $0) }
        try fs.release(fh)
        let x = try fs.lookup(parent: d, name: ".x.tmp")
        _ = try fs.setattr(x.ino, ClusterFS.AttributeChange(mode: 0o100644, mtime: 1_000_000_000))
        try fs.rename(parent: d, name: ".x.tmp", newParent: d, newName: "x", flags: 0)
        Thread.sleep(forTimeInterval: 0.1)  // past the attribute timeout
        func asked() throws -> Int { try queries(c, "fs_lookup", "fs_getattr", "fs_readdir") }
        let before = try asked()
        let listed = try fs.lookup(parent: d, name: "x")
        #expect(try asked() == before, "the renamed file's entry answered, with no tracker call")
        #expect(isMissing(fs, d, ".x.tmp"))
        let tracker = try c.client.call("fs_getattr", [("ino", String(try #require(FileLayout.fetch(domain: "test", key: "d/x", tracker: c.client).attributes.ino)))])
        #expect(listed.size == 5 && listed.mode == 0o100644 && listed.mtime == 1_000_000_000)
        #expect(String(listed.ctime) == tracker["ctime"], "the entry has the rename's ctime, as the tracker does")

        // Custom metadata changes the file's ctime: the tracker's answer keeps the entry current.
        for change in ["set", "remove"] {
            if change == "set" { try fs.setxattr(listed.ino, name: "user.k", value: Array("v".utf8), flags: 0) }
            else { try fs.removexattr(listed.ino, name: "user.k") }
            Thread.sleep(forTimeInterval: 0.1)
            let before = try asked()
            let after = try fs.lookup(parent: d, name: "x")
            #expect(try asked() == before, "after the \(change), the entry answered with no tracker call")
            let now = try c.client.call("fs_getattr", [("ino", String(try #require(FileLayout.fetch(domain: "test", key: "d/x", tracker: c.client).attributes.ino)))])
            #expect(String(after.ctime) == now["ctime"] && after.ctime > listed.ctime, "the entry has the \(change)'s ctime, as the tracker does")
        }
    }

    @Test func otherClientsChangesShowWithinTheEntryTimeout() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        let fs = try clusterFS(c, timeout: 0.5)
        let d = try fs.mkdir(parent: 1, name: "d", mode: 0o755, uid: 0, gid: 0).ino
        #expect(isMissing(fs, d, "theirs"))
        let src = try writeTemp(Array("12345678".utf8), dir: c.root, name: "theirs")
        #expect(try c.cli(["put", "test", "d/theirs", src]).status == 0)
        // d was made here a moment ago: its listing still answers for it.
        #expect(isMissing(fs, d, "theirs"))
        Thread.sleep(forTimeInterval: 0.6)
        #expect(try fs.lookup(parent: d, name: "theirs").size == 8)
        // In a directory this mount only reads, another client's new file is seen at once.
        #expect(try c.cli(["put", "test", "d/new", src]).status == 0)
        #expect(try fs.lookup(parent: d, name: "new").size == 8)
        #expect(try c.cli(["rm", "test", "d/theirs"]).status == 0)
        Thread.sleep(forTimeInterval: 0.6)
        #expect(isMissing(fs, d, "theirs"))
    }

    /// The open of a file this mount has just written fetches its layout at the first read:
    /// a newer version another client wrote in between is what that read returns. A chmod of a
    /// file still open from its create, to the mode it has, asks nothing; to another mode, it does.
    @Test func lazyOpensReadTheNewestContentAndNoOpChmodsAskNothing() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        let fs = try clusterFS(c, timeout: 60)
        let d = try fs.mkdir(parent: 1, name: "d", mode: 0o755, uid: 0, gid: 0).ino
        let (a, fh) = try fs.create(parent: d, name: "x", mode: 0o100600, uid: 0, gid: 0)
        func setattrs() throws -> Int { try queries(c, "fs_setattr") }
        let before = try setattrs()
        _ = try fs.setattr(a.ino, ClusterFS.AttributeChange(mode: 0o100600))
        #expect(try setattrs() == before, "a chmod to the mode the create gave asked the tracker")
        _ = try Array("old".utf8).withUnsafeBytes { try fs.write(fh, offset: 0, bytes: $0) }
        try fs.release(fh)

        let newer = Array("newer content".utf8)
        let src = try writeTemp(newer, dir: c.root, name: "newer")
        #expect(try c.cli(["put", "test", "d/x", src]).status == 0)
        let (rh, _) = try fs.open(a.ino, writable: false)
        #expect(try fs.read(rh, offset: 0, count: 100).joined == newer, "the open read a layout older than the open")
        try fs.release(rh)

        let (wh, _) = try fs.open(a.ino, writable: true)
        _ = try fs.setattr(a.ino, ClusterFS.AttributeChange(mode: 0o100640))
        try fs.release(wh)
        #expect(try setattrs() == before + 1)
        #expect(try fs.getattr(a.ino).mode & 0o777 == 0o640)
    }
}
