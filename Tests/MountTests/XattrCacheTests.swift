import CairnFS
import CairnTestSupport
import Foundation
import Testing

/// The mount's cache of custom metadata (`XattrCache`), driven through `ClusterFS`.
@Suite(.serialized) struct XattrCacheTests {
    func errno(_ body: () throws -> Void) -> Int32? {
        do { try body(); return nil } catch let e as FSError { return e.errno } catch { return -1 }
    }

    @Test func customMetadataIsAnsweredFromTheCacheAndOtherClientsChangesShowWithinTheTimeout() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        let fs = try clusterFS(c, timeout: 0.5)
        let (a, fh) = try fs.create(parent: 1, name: "f", mode: 0o100644, uid: 0, gid: 0)
        try fs.release(fh)
        func metadataReads() throws -> Int { try queries(c, "meta_get", "meta_list") }

        // What this mount sets or removes is answered without asking.
        let asked = try metadataReads()
        try fs.setxattr(a.ino, name: "user.color", value: Array("blue".utf8), flags: 0)
        #expect(try fs.getxattr(a.ino, name: "user.color") == Array("blue".utf8))
        try fs.removexattr(a.ino, name: "user.color")
        #expect(errno { _ = try fs.getxattr(a.ino, name: "user.color") } == ENODATA)
        #expect(try metadataReads() == asked, "a value set or removed here was fetched from the tracker")
        // Another client sets it meanwhile (the cache, within its timeout, still says absent):
        // this mount's XATTR_CREATE fails on it, and the cache then asks rather than answer absent.
        #expect(try c.cli(["meta", "set", "test", "f", "color", "green"]).status == 0)
        #expect(errno { try fs.setxattr(a.ino, name: "user.color", value: Array("red".utf8), flags: 1) } == EEXIST)
        #expect(try fs.getxattr(a.ino, name: "user.color") == Array("green".utf8))

        // Another client's values show once the timeout has passed; one call answers every name.
        #expect(try c.cli(["meta", "set", "test", "f", "shape", "round"]).status == 0)
        #expect(try c.cli(["meta", "set", "test", "f", "size", "big"]).status == 0)
        Thread.sleep(forTimeInterval: 0.6)
        let before = try metadataReads()
        #expect(try fs.getxattr(a.ino, name: "user.shape") == Array("round".utf8))
        #expect(try fs.getxattr(a.ino, name: "user.size") == Array("big".utf8))
        #expect(errno { _ = try fs.getxattr(a.ino, name: "user.missing") } == ENODATA)
        #expect(try fs.listxattr(a.ino).filter { $0.hasPrefix("user.") } == ["user.color", "user.shape", "user.size"])
        #expect(try metadataReads() == before + 1, "each name was fetched on its own")

        #expect(try c.cli(["meta", "set", "test", "f", "shape", "square"]).status == 0)
        Thread.sleep(forTimeInterval: 0.6)
        #expect(try fs.getxattr(a.ino, name: "user.shape") == Array("square".utf8))
    }
}
