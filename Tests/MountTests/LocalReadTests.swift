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
        #expect(try fs.read(rh, offset: 0, count: 100).joined == Array("first version".utf8))
        try fs.release(rh)

        let newer = Array("the second, longer version".utf8)
        #expect(try c.cli(["put", "test", "f", try writeTemp(newer, dir: c.root, name: "newer")]).status == 0)
        Thread.sleep(forTimeInterval: 0.4)  // past the attribute timeout: the open asks the tracker
        for _ in 0..<3 {
            let (h, _) = try fs.open(a.ino, writable: false)
            #expect(try fs.read(h, offset: 0, count: 100).joined == newer)
            try fs.release(h)
        }
    }

    /// A sequential reader has the next segments read ahead of it, into the next chunk too:
    /// after it has read the first megabyte, the two segments that follow read back byte for
    /// byte with every blob file gone, and the one after them does not. Segments of 1 MiB
    /// from a local replica come past the page cache (where the file system takes O_DIRECT).
    @Test func sequentialReadsFetchTheNextSegmentsAheadPastThePageCache() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        let chunk = 2 << 20, segment = 1 << 20
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "two-mib"), ("mindevcount", "2"), ("chunk_size", String(chunk))])
        let fs = try clusterFS(c, timeout: 5, localReads: true) {
            $0.className = "two-mib"
            $0.readAheadBytes = Int64(segment)
            $0.readAheadSegments = 2
        }
        let data = randomBytes(2 * chunk + 12_345, seed: 91)
        let (a, wh) = try fs.create(parent: 1, name: "f", mode: 0o100644, uid: 0, gid: 0)
        _ = try data.withUnsafeBytes { try fs.write(wh, offset: 0, bytes: $0) }
        try fs.release(wh)
        try fs.fsync(nil)

        let (h, _) = try fs.open(a.ino, writable: false)
        defer { try? fs.release(h) }
        func read(_ from: Int, _ to: Int) throws -> [UInt8] {
            var out: [UInt8] = []
            for pos in stride(from: from, to: to, by: 128 << 10) { out += try fs.read(h, offset: Int64(pos), count: min(128 << 10, to - pos)).joined }
            return out
        }
        #expect(try read(0, segment) == Array(data[0..<segment]))
        Thread.sleep(forTimeInterval: 1)  // the read-ahead of [1 MiB, 3 MiB) is local: milliseconds
        let blobs = c.blobFiles().map { c.root + "/" + $0 }
        #expect(blobs.count == 6, "three chunks, two copies each: \(blobs)")
        if takesDirectIO(c.root) {
            // Whole chunks were written past the cache too, so any cached page came from a read.
            for blob in blobs where try residentPages(blob).1 == chunk / 4096 {
                #expect(try residentPages(blob).0 == 0, "\(blob): read through the page cache")
            }
        }
        for blob in blobs { #expect(unlink(blob) == 0) }
        #expect(try read(segment, 3 * segment) == Array(data[segment..<(3 * segment)]), "the two segments after the first were read ahead")
        #expect(throws: (any Error).self, "nothing reads the fourth segment ahead of time") { try fs.read(h, offset: Int64(3 * segment), count: 4096) }
    }
}
