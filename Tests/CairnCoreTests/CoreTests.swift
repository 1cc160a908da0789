import Testing
@testable import CairnCore

@Suite struct KeyPathTests {
    @Test func acceptsPaths() throws {
        #expect(try KeyPath("a/b/c.txt").components == ["a", "b", "c.txt"])
        #expect(try KeyPath("/lead/slash").components == ["lead", "slash"])
        #expect(try KeyPath("names with spaces/é.txt").name == "é.txt")
        #expect(try KeyPath(String(repeating: "x", count: 255)).components.count == 1)
    }

    @Test(arguments: [
        ("", KeyError.empty), ("a//b", .emptyComponent), ("a/", .emptyComponent), ("a/./b", .dotComponent(".")),
        ("../x", .dotComponent("..")), ("a/\0b", .nul), (String(repeating: "y", count: 256), .componentTooLong(256)),
    ])
    func rejectsNonPaths(key: String, error: KeyError) {
        #expect(throws: error) { try KeyPath(key) }
    }

    @Test func rejectsOverlongKeys() {
        let key = Array(repeating: String(repeating: "d", count: 200), count: 21).joined(separator: "/")
        #expect(throws: KeyError.tooLong(key.utf8.count)) { try KeyPath(key) }
    }
}

@Suite struct FidLayoutTests {
    @Test func mogileLayout() {
        #expect(FidLayout.devicePath(device: 1, fid: 123) == "/dev1/0/000/000/0000000123.fid")
        #expect(FidLayout.devicePath(device: 7, fid: 1_234_567_890) == "/dev7/1/234/567/1234567890.fid")
        #expect(FidLayout.devicePath(device: 2, fid: 12_345_678_901) == "/dev2/1/234/567/12345678901.fid")
    }

    @Test func parseRoundTrips() {
        for fid: Fid in [1, 99, 123_456, 9_999_999_999, 12_345_678_901] {
            let p = FidLayout.devicePath(device: 3, fid: fid)
            #expect(FidLayout.parse(devicePath: p)! == (3, fid))
        }
    }

    @Test(arguments: [
        "/dev1/../../etc/passwd", "/dev1/0/000/000/../../x.fid", "/dev1/0/000/000/%2e%2e.fid", "dev1/0/000/000/0000000001.fid",
        "/dev1/0/000/000/0000000001.fid/", "/dev01/0/000/000/0000000001.fid", "/dev1/0/000/001/0000000001.fid",
        "/dev1/0/000/000/000000000a.fid", "/dev1/0/000/000/0000000001.txt", "/dev0/0/000/000/0000000001.fid",
        "/dev1/0/000/000/0000000000.fid", "//dev1/0/000/000/0000000001.fid", "/etc/passwd",
    ])
    func parseRejects(path: String) {
        #expect(FidLayout.parse(devicePath: path) == nil)
    }
}

@Suite struct ChunkAndChecksumTests {
    @Test func chunkArithmetic() {
        let c = ChunkLayout(chunkSize: 16)
        #expect(c.chunkCount(size: 0) == 0)
        #expect(c.chunkCount(size: 1) == 1)
        #expect(c.chunkCount(size: 16) == 1)
        #expect(c.chunkCount(size: 17) == 2)
        #expect(c.chunkLength(index: 1, size: 17) == 1)
        #expect(c.chunkIndex(offset: 31) == 1)
    }

    @Test func knownDigests() {
        var md5 = StreamingChecksum(.md5)
        md5.update(Array("ab".utf8)); md5.update(Array("c".utf8))
        #expect(md5.finalize()?.description == "md5:900150983cd24fb0d6963f7d28e17f72")
        var sha = StreamingChecksum(.sha256)
        sha.update(Array("abc".utf8))
        #expect(sha.finalize()?.hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(StreamingChecksum(.none).finalize() == nil)
    }

    /// RFC 4231 test case 2, and signatures under two secrets taken in turns: the keyed HMAC
    /// the signer keeps must never sign with the other secret's key.
    @Test func signaturesAreHMACSHA256OfTheirOwnSecret() {
        let rfc = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        let other = Signer.sign("what do ya want for nothing?", secret: "another key")
        for _ in 0..<2 {
            #expect(Signer.sign("what do ya want for nothing?", secret: "Jefe") == rfc)
            #expect(Signer.sign("what do ya want for nothing?", secret: "another key") == other)
        }
        #expect(other != rfc)
        #expect(Signer.sign("what do ya want for nothing!", secret: "Jefe") != rfc)
    }

    @Test func parsesMogileChecksums() {
        #expect(Checksum(parsing: "MD5:900150983CD24FB0D6963F7D28E17F72")?.description == "md5:900150983cd24fb0d6963f7d28e17f72")
        #expect(Checksum(parsing: "MD5:1234") == nil)
        #expect(Checksum(parsing: "crc:00") == nil)
    }

    @Test func deviceStatesAreCapabilities() {
        #expect(DeviceState.alive.takesNewFiles && DeviceState.alive.canRead)
        #expect(!DeviceState.readonly.takesNewFiles && DeviceState.readonly.canRead)
        #expect(DeviceState.drain.canRead && DeviceState.drain.shouldDrain && !DeviceState.drain.takesNewFiles)
        #expect(!DeviceState.down.canRead && !DeviceState.dead.canRead)
        #expect(!DeviceState.dead.canChange(to: .alive))
    }

    @Test func hexRoundTrip() {
        let bytes: [UInt8] = [0, 1, 0x7f, 0x80, 0xff]
        #expect(Hex.encode(bytes) == "00017f80ff")
        #expect(Hex.decode("00017F80ff") == bytes)
        #expect(Hex.decode("0g") == nil)
        #expect(Hex.decode("abc") == nil)
    }
}
