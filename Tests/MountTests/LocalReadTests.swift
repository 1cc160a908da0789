import CairnClient
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
    /// read ahead from a local replica come past the page cache (where the file system takes
    /// O_DIRECT).
    @Test func sequentialReadsFetchTheNextSegmentsAheadPastThePageCache() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        let chunk = 2 << 20, segment = 1 << 20
        let data = randomBytes(2 * chunk + 12_345, seed: 91)
        let (fs, ino) = try writeForLocalReads(c, data, chunk: chunk, segment: segment, ahead: 2)
        try fs.fsync(nil)

        let (h, _) = try fs.open(ino, writable: false)
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
            // Whole chunks were written past the cache too, so a cached page came from a read:
            // the first segment's (read before the reader was seen to stream, through the cache
            // for its neighbours; the kernel's own read-ahead may cache the rest of its chunk),
            // never the second chunk's, which was only read ahead.
            let cached = try blobs.map { try residentPages($0) }.filter { $0.1 == chunk / 4096 }.map(\.0).reduce(0, +)
            #expect(cached <= chunk / 4096, "\(cached) pages of the whole chunks are in the page cache: segments read ahead went through it")
        }
        for blob in blobs { #expect(unlink(blob) == 0) }
        #expect(try read(segment, 3 * segment) == Array(data[segment..<(3 * segment)]), "the two segments after the first were read ahead")
        #expect(throws: (any Error).self, "nothing reads the fourth segment ahead of time") { try fs.read(h, offset: Int64(3 * segment), count: 4096) }
    }

    /// A reader that jumps about reads only what it asks for (and the one segment of a read
    /// near the last): no segments in the background. Counted with the bytes this process
    /// reads (`rchar`), as the blobs are read here.
    @Test func readsThatJumpAboutReadNothingAhead() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        let chunk = 4 << 20, segment = 1 << 20
        let data = randomBytes(4 * chunk, seed: 92)
        let (fs, ino) = try writeForLocalReads(c, data, chunk: chunk, segment: segment, ahead: 4)
        let (h, _) = try fs.open(ino, writable: false)
        defer { try? fs.release(h) }
        // Offsets 3 MiB apart, then back and forth: each read far from the one before, but
        // each of the later ones inside a segment the first read kept.
        let offsets = [0, 3, 6, 9, 12, 15, 0, 14, 1, 13].map { $0 * segment + 4096 }
        let before = try readBytesOfThisProcess()
        for off in offsets {
            #expect(try fs.read(h, offset: Int64(off), count: 4096).joined == Array(data[off..<(off + 4096)]))
        }
        Thread.sleep(forTimeInterval: 1)  // any read-ahead started would be done by now
        let read = try readBytesOfThisProcess() - before
        #expect(read < 2 * segment, "\(read) bytes read for \(offsets.count) reads of 4 KiB: segments were read ahead")
    }

    /// A reader opening a directory's files in its order has the next files read off the disk
    /// ahead of it: once it has opened the first of twelve, the blobs of the four after it are
    /// in the page cache and those past that window are not; opens that jump about warm nothing
    /// more. A mount that has not seen the files does the same from layouts it asks for ahead.
    /// Checked with `mincore` on the blob files, evicted after they were written.
    @Test func openingADirectorysFilesInOrderWarmsTheNextOnes() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        // Attributes kept for a second: files this mount wrote longer ago than that are read
        // through like anyone's (see the next test); the listing is held under the lease.
        let fs = try clusterFS(c, timeout: 1, localReads: true)
        // As the kernel does before a create: the name is looked up, which lists the directory.
        #expect(throws: (any Error).self) { try fs.lookup(parent: 1, name: "f10") }
        var inos: [UInt64] = []
        for i in 0..<12 {
            let (a, fh) = try fs.create(parent: 1, name: "f\(i + 10)", mode: 0o100644, uid: 0, gid: 0)
            _ = try randomBytes(8192, seed: UInt64(100 + i)).withUnsafeBytes { try fs.write(fh, offset: 0, bytes: $0) }
            try fs.release(fh)
            inos.append(a.ino)
        }
        try fs.fsync(nil)
        let blobs = c.blobFiles()
        // Each file's blob files, by the device paths its locations name.
        let blobsOf: [[String]] = try inos.map { ino in
            let urls = String(decoding: try fs.getxattr(ino, name: "cairn.locations"), as: UTF8.self).split(separator: "\n")
            let paths = urls.compactMap { url in url.range(of: "/dev").map { String(url[$0.lowerBound...]) } }
            return blobs.filter { b in paths.contains { b.hasSuffix($0) } }.map { c.root + "/" + $0 }
        }
        for files in blobsOf { try #require(!files.isEmpty) }
        func cached(_ i: Int) throws -> Bool { try blobsOf[i].contains { try residentPages($0).0 > 0 } }
        func evict() throws {
            for path in blobsOf.joined() {
                let fd = open(path, O_RDONLY)
                try #require(fd >= 0)
                _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
                close(fd)
            }
            try #require(try (0..<12).allSatisfy { try !cached($0) }, "the blobs could not be evicted")
        }
        func read(_ fs: ClusterFS, _ order: [Int], inos: [UInt64]) throws {
            for i in order {
                let (h, _) = try fs.open(inos[i], writable: false)
                #expect(try fs.read(h, offset: 0, count: 8192).count == 8192)
                try fs.release(h)
            }
        }

        Thread.sleep(forTimeInterval: 1.2)
        // The directory's first file opens a walk: the next four are warmed.
        try evict()
        try read(fs, [0], inos: inos)
        // Out of order: nothing more is warmed (not file 8, between the two).
        for i in [9, 7] { try fs.release(fs.open(inos[i], writable: false).handle) }
        // The warming runs in the background (milliseconds; up to the deadline on a loaded machine).
        try c.wait("files 1-4 read ahead", timeout: 5) { try (1...4).allSatisfy(cached) }
        for i in [5, 6, 8, 10, 11] { #expect(try !cached(i), "file \(i) was read ahead") }

        // A mount that has seen none of the files asks for the next ones' layouts ahead of their
        // opens, and warms them from those: 1-4 at the first open, 5-9 at the second.
        let other = try clusterFS(c, timeout: 30, localReads: true)
        try evict()
        #expect(throws: (any Error).self) { try other.lookup(parent: 1, name: "f9") }  // lists the directory
        let otherInos = try (0..<12).map { try other.lookup(parent: 1, name: "f\($0 + 10)").ino }
        try read(other, [0, 1], inos: otherInos)
        try c.wait("files 2-9 read ahead by a mount that had not seen them", timeout: 5) { try (2...9).allSatisfy(cached) }
        for i in [10, 11] { #expect(try !cached(i), "file \(i) was read ahead by a mount that had not seen it") }
    }

    /// With both copies of a blob on this machine, the copy read is the one warmed for it,
    /// whichever order the tracker lists them in (least loaded first: it changes between
    /// answers); warming one copy and reading its twin read every small file twice from disk.
    @Test func theLocalCopyReadIsTheOneWarmedWhateverTheOrderOfItsURLs() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        let fs = try clusterFS(c, timeout: 1, localReads: true)
        let (a, fh) = try fs.create(parent: 1, name: "f", mode: 0o100644, uid: 0, gid: 0)
        _ = try randomBytes(16384, seed: 7).withUnsafeBytes { try fs.write(fh, offset: 0, bytes: $0) }
        try fs.release(fh)
        try fs.fsync(nil)
        let urls = String(decoding: try fs.getxattr(a.ino, name: "cairn.locations"), as: UTF8.self).split(separator: "\n").map(String.init)
        let blobs = c.blobFiles()
        let copies = urls.compactMap { url in
            url.range(of: "/dev").flatMap { r in blobs.first { $0.hasSuffix(String(url[r.lowerBound...])) } }.map { c.root + "/" + $0 }
        }
        try #require(copies.count == 2, "two local copies: \(urls)")
        func evict() throws {
            for path in copies {
                let fd = open(path, O_RDONLY)
                try #require(fd >= 0)
                _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
                close(fd)
            }
            try #require(try copies.allSatisfy { try residentPages($0).0 == 0 }, "the copies could not be evicted")
        }
        func cachedCopies() throws -> [Bool] { try copies.map { try residentPages($0).0 > 0 } }
        let local = LocalReplicas()
        var read: [[Bool]] = []
        for order in [urls, urls.reversed()] {
            try evict()
            #expect(local.read(urls: order, offset: 0, count: 16384)?.count == 16384)
            read.append(try cachedCopies())
            try evict()
            local.warm([(urls: Array(order.reversed()), count: 16384)])
            try c.wait("a copy warmed", timeout: 5) { try cachedCopies().contains(true) }  // in the background
            #expect(try cachedCopies() == read.last, "the copy warmed is not the copy read")
        }
        #expect(read[0] == read[1], "listed in another order, the other copy was read")
        #expect(read[0].filter { $0 }.count == 1)
    }

    /// rsync writes each file under a temporary name (a dot name, first in the directory's
    /// order), opens it again to set its attributes, and renames it: those opens of files this
    /// mount has just written are no walk, and ask the tracker for no layouts ahead (queries
    /// that would queue behind the copy's own changes and slow it down).
    @Test func opensOfFilesJustWrittenHereAskForNothingAhead() throws {
        let c = try TestCluster(nodes: 2)
        defer { c.stop() }
        let fs = try clusterFS(c, timeout: 30, localReads: true)
        #expect(throws: (any Error).self) { try fs.lookup(parent: 1, name: "f0") }  // lists the directory
        let before = try queries(c, "file_layout")
        for i in 0..<6 {
            let (a, fh) = try fs.create(parent: 1, name: ".f\(i).tmp", mode: 0o100600, uid: 0, gid: 0)
            _ = try randomBytes(4096, seed: UInt64(i)).withUnsafeBytes { try fs.write(fh, offset: 0, bytes: $0) }
            try fs.release(fh)
            try fs.fsync(nil)  // nothing on its way to the tracker: the pipeline would take a query
            try fs.release(fs.open(a.ino, writable: false).handle)
            try fs.rename(parent: 1, name: ".f\(i).tmp", newParent: 1, newName: "f\(i)", flags: 0)
        }
        try fs.fsync(nil)
        #expect(try queries(c, "file_layout") == before)
    }

    /// `data` written as file "f" of a class of `chunk`-byte chunks, through a `ClusterFS` that
    /// reads local replicas in segments of `segment` bytes, `ahead` of them read ahead.
    func writeForLocalReads(_ c: TestCluster, _ data: [UInt8], chunk: Int, segment: Int, ahead: Int) throws -> (ClusterFS, UInt64) {
        _ = try c.client.call("create_class", [("domain", "test"), ("class", "chunked"), ("mindevcount", "2"), ("chunk_size", String(chunk))])
        let fs = try clusterFS(c, timeout: 5, localReads: true) {
            $0.className = "chunked"
            $0.readAheadBytes = Int64(segment)
            $0.readAheadSegments = ahead
        }
        let (a, wh) = try fs.create(parent: 1, name: "f", mode: 0o100644, uid: 0, gid: 0)
        _ = try data.withUnsafeBytes { try fs.write(wh, offset: 0, bytes: $0) }
        try fs.release(wh)
        return (fs, a.ino)
    }

    /// Bytes this process has read with read(2) and pread(2), sockets included.
    func readBytesOfThisProcess() throws -> Int {
        let io = try String(contentsOfFile: "/proc/self/io", encoding: .utf8)
        let line = try #require(io.split(separator: "\n").first { $0.hasPrefix("rchar:") })
        return try #require(Int(line.dropFirst("rchar:".count).trimmingCharacters(in: .whitespaces)))
    }
}
