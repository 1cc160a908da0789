import CairnFS
import CairnTestSupport
import Foundation
import Testing

/// Reads of replicas on this machine's nodes, driven through `ClusterFS`.
@Suite(.serialized) struct LocalReadTests {
    /// An open warms the local replica of the layout it last saw while it asks for the current
    /// one: a file replaced by another client since then reads its new content, never the
    /// warmed old blob.
    @Test func aStaleWarmHintNeverChangesWhatIsRead() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        let fs = try clusterFS(c, timeout: 0.3, localReads: true)
        let (a, fh) = try fs.create(parent: 1, name: "f", mode: 0o100644, uid: 0, gid: 0)
        _ = try Array("first version".utf8).withUnsafeBytes { try fs.write(fh, offset: 0, bytes: $0) }
        try fs.release(fh)
        let (rh, _) = try fs.open(a.ino, writable: false)
        #expect(try fs.read(rh, offset: 0, count: 100) == Array("first version".utf8))
        try fs.release(rh)

        let newer = Array("the second, longer version".utf8)
        #expect(try c.cli(["put", "test", "f", try writeTemp(newer, dir: c.root, name: "newer")]).status == 0)
        Thread.sleep(forTimeInterval: 0.4)  // past the attribute timeout: the open asks the tracker
        for _ in 0..<3 {
            let (h, _) = try fs.open(a.ino, writable: false)
            #expect(try fs.read(h, offset: 0, count: 100) == newer)
            try fs.release(h)
        }
    }
}
