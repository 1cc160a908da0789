import CairnClient
import CairnCore
@testable import CairnFS
import CairnTestSupport
import CSys
import Foundation
import Testing

/// Writes of blobs for nodes on this machine (`LocalWriteGrant`), driven through `ClusterFS`.
@Suite(.serialized) struct LocalWriteTests {
    /// Each node's blob requests since it started, by method.
    func blobRequests(_ c: TestCluster) throws -> [[String: Int]] {
        try c.nodePorts.map { port in
            let body = try HTTPTransferGet("http://127.0.0.1:\(port)/_status")
            let status = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
            return try #require(status["blobRequests"] as? [String: Int])
        }
    }

    func writeFile(_ fs: ClusterFS, _ name: String, _ data: [UInt8]) throws -> UInt64 {
        let (a, fh) = try fs.create(parent: 1, name: name, mode: 0o100644, uid: 0, gid: 0)
        _ = try data.withUnsafeBytes { try fs.write(fh, offset: 0, bytes: $0) }
        try fs.release(fh)
        return a.ino
    }

    /// Every copy the tracker names, fetched from its node.
    func copies(_ c: TestCluster, _ key: String) throws -> [[UInt8]] {
        let paths = try c.client.call("get_paths", [("domain", "test"), ("key", key)])
        return try (0..<Int(paths.int("paths") ?? 0)).map { try HTTPTransferGet(paths["path\($0 + 1)"]!) }
    }

    /// A mount on the nodes' machine writes both copies itself: no PUT reaches a node, the
    /// tracker takes the grant-signed receipts without checking the copies (no HEAD), and
    /// each copy is the whole blob with its checksum, as a node would have stored it. With
    /// local writes off, the same write goes to the nodes.
    @Test func blobsForNodesHereGoStraightIntoTheirFoldersWithReceiptsTheTrackerTrusts() throws {
        let c = try TestCluster(nodes: 2, secret: "local-write-test-secret")
        defer { c.stop() }
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "sums"), ("mindevcount", "2"), ("checksum", "sha256")])
        let grant = c.root + "/node0/.cairn-local-writes"
        var st = stat()
        #expect(stat(grant, &st) == 0 && st.st_mode & 0o777 == 0o600, "the grant is readable by the node's user only")
        let fs = try clusterFS(c, timeout: 0.3) { $0.className = "sums" }
        // One blob written copy after copy, one large enough for the copies to go in parallel.
        let small = randomBytes(5000, seed: 61), large = randomBytes(300 << 10, seed: 62)
        let smallIno = try writeFile(fs, "small", small)
        _ = try writeFile(fs, "large", large)
        try fs.fsync(nil)
        #expect(fs.context.chunks.deferred?.unsyncedFolders == 0, "fsync synced the device folders the mount wrote into")

        let requests = try blobRequests(c)
        #expect(requests.allSatisfy { ($0["PUT"] ?? 0) == 0 && ($0["HEAD"] ?? 0) == 0 }, "no PUT and no check of a copy: \(requests)")
        #expect(c.blobFiles().count == 4, "two copies of each blob: \(c.blobFiles())")
        #expect(try copies(c, "small") == [small, small])
        #expect(try copies(c, "large") == [large, large])
        var sum = StreamingChecksum(.sha256)
        sum.update(small)
        let expected = try #require(sum.finalize()).description
        #expect(String(decoding: try fs.getxattr(smallIno, name: "cairn.checksum"), as: UTF8.self) == expected)
        for blob in c.blobFiles() where try Data(contentsOf: URL(fileURLWithPath: c.root + "/" + blob)).count == small.count {
            var value = [UInt8](repeating: 0, count: 128)
            let n = getxattr(c.root + "/" + blob, "user.cairn.checksum", &value, 128)
            #expect(n > 0 && String(decoding: value[..<n], as: UTF8.self) == expected, "the copy \(blob) carries its checksum")
        }

        let viaNodes = try clusterFS(c, timeout: 0.3) { $0.className = "sums"; $0.localWrites = false }
        _ = try writeFile(viaNodes, "through-the-nodes", small)
        let puts = try blobRequests(c).map { $0["PUT"] ?? 0 }
        #expect(puts == [1, 1], "local_writes=0: one PUT per copy (got \(puts))")
    }

    /// A chunk of 1 MiB or more written here goes past the page cache (O_DIRECT from a
    /// page-aligned copy), but for its last partial page: every byte arrives, each copy keeps
    /// its checksum, and the copies' whole pages are not in the page cache afterwards (where
    /// the device's file system takes O_DIRECT at all).
    @Test func largeChunksWrittenHereSkipThePageCacheAndKeepEveryByte() throws {
        let c = try TestCluster(nodes: 2, secret: "local-write-test-secret")
        defer { c.stop() }
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "sums"), ("mindevcount", "2"), ("checksum", "sha256")])
        let fs = try clusterFS(c, timeout: 0.3) { $0.className = "sums" }
        let big = randomBytes((2 << 20) + 1234, seed: 63)
        let ino = try writeFile(fs, "big", big)
        try fs.fsync(nil)
        let blobs = c.blobFiles().map { c.root + "/" + $0 }
        #expect(blobs.count == 2, "two copies: \(blobs)")
        if takesDirectIO(c.root) {
            for blob in blobs {
                let (resident, pages) = try residentPages(blob)
                #expect(pages == big.count / 4096 + 1 && resident <= 1, "\(blob): \(resident) of \(pages) pages in the page cache")
            }
        }
        #expect(try copies(c, "big") == [big, big])
        var sum = StreamingChecksum(.sha256)
        sum.update(big)
        #expect(String(decoding: try fs.getxattr(ino, name: "cairn.checksum"), as: UTF8.self) == (try #require(sum.finalize())).description)
    }

    /// The tracker verifies what a local writer's receipt claims: one signed with a key the
    /// node's grant never held is not trusted (the tracker checks that copy itself), and a
    /// node without a grant gets the blob as a PUT.
    @Test func aReceiptWithTheWrongKeyIsCheckedAndANodeWithoutAGrantGetsAPUT() throws {
        let c = try TestCluster(nodes: 2, secret: "local-write-test-secret")
        defer { c.stop() }
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "two"), ("mindevcount", "2")])
        let forged = #"{"node":"node0","reserveBytes":67108864,"receiptKey":"00000000000000000000000000000000"}"#
        try forged.write(toFile: c.root + "/node0/.cairn-local-writes", atomically: true, encoding: .utf8)
        #expect(unlink(c.root + "/node1/.cairn-local-writes") == 0)
        let fs = try clusterFS(c, timeout: 0.3) { $0.className = "two" }
        let data = randomBytes(7000, seed: 63)
        _ = try writeFile(fs, "f", data)
        let requests = try blobRequests(c)
        #expect((requests[0]["PUT"] ?? 0) == 0 && (requests[0]["HEAD"] ?? 0) >= 1,
                "node0's copy was written here and, its receipt not being valid, checked by the tracker: \(requests)")
        #expect((requests[1]["PUT"] ?? 0) == 1 && (requests[1]["HEAD"] ?? 0) == 0,
                "node1 grants nothing: the copy went as a PUT, and its receipt was trusted: \(requests)")
        #expect(try copies(c, "f") == [data, data])
    }
}
