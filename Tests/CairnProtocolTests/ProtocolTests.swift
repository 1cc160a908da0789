import CairnCore
import Testing
@testable import CairnProtocol

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

@Suite struct EncodingVectors {
    @Test func replyEncodingIsMogileExact() {
        #expect(Reply.ok([]).encode() == bytes("OK \r\n"))
        #expect(Reply.ok([("path", "http://10.0.0.1:7500/dev1/0/000/000/0000000001.fid")]).encode()
                == bytes("OK path=http://10.0.0.1:7500/dev1/0/000/000/0000000001.fid\r\n"))
        #expect(Reply.ok([("key", "a b&c=d/é~")]).encode() == bytes("OK key=a+b%26c%3Dd/%C3%A9%7E\r\n"))
        #expect(Reply.ok([("k", "A-Z_a,z.0\\9:")]).encode() == bytes("OK k=A-Z_a,z.0\\9:\r\n"))
        #expect(Reply.ok([("a", "1"), ("b", "")]).encode() == bytes("OK a=1&b=\r\n"))
    }

    @Test func errorsCarryCodeTextAndCallid() {
        #expect(Reply.err(ProtocolError("unknown_key", "no such key")).encode() == bytes("ERR unknown_key no+such+key\r\n"))
        #expect(Reply.err(ProtocolError("unknown_key", "")).encode() == bytes("ERR unknown_key unknown_key\r\n"))
        #expect(Reply.err(ProtocolError("x", "y")).encode(callid: "42") == bytes("ERR x y 42\r\n"))
        #expect(Reply.ok([("fid", "7")]).encode(callid: "42") == bytes("OK fid=7&callid=42\r\n"))
    }

    @Test func requestParsing() {
        #expect(Request.parse(line: bytes("GET_PATHS domain=d&key=a+b%2Fc&noverify=1\r")) ==
                .command("get_paths", Args(["domain": "d", "key": "a b/c", "noverify": "1"])))
        #expect(Request.parse(line: bytes("noop ")) == .command("noop", Args()))
        #expect(Request.parse(line: bytes("noop")) == .command("noop", Args()))
        #expect(Request.parse(line: bytes("")) == .empty)
        #expect(Request.parse(line: bytes("\r")) == .empty)
        #expect(Request.parse(line: bytes("!version")) == .admin("version"))
        if case .malformed = Request.parse(line: bytes("%%% junk")) {} else { Issue.record("junk must be malformed") }
        if case .malformed = Request.parse(line: bytes("get-paths x=1")) {} else { Issue.record("dash is not a word byte") }
    }

    @Test func argsDecoding() {
        let a = LineCodec.decodeArgs(bytes("a=1&&b=x+y&a=2&c&d=%zz&e=%41"))
        #expect(a["a"] == "1\u{0}2")
        #expect(a["b"] == "x y")
        #expect(a["c"] == "")
        #expect(a["d"] == "%zz")
        #expect(a["e"] == "A")
        // A value keeps its later `=`; an escaped key is decoded like a value.
        let b = LineCodec.decodeArgs(bytes("f=a=b&%6B%65y=v+w&=z&g="))
        #expect(b["f"] == "a=b")
        #expect(b["key"] == "v w")
        #expect(b[""] == "z")
        #expect(b["g"] == "")
        #expect(b.values.count == 4)
        #expect(a.bool("a"))
        #expect(!Args(["x": "0"]).bool("x"))
        #expect(Args(["x": "None"]).bool("x"))
        #expect(!Args().bool("x"))
    }

    /// A directory page (14 pairs per entry) or a big file's layout: past `indexedFrom` pairs
    /// lookups go through the index, and must answer as the scan does.
    @Test func longLinesAnswerAsShortOnes() {
        var line = (1...2_000).map { "e\($0)_name=n\($0)&e\($0)_size=\($0 * 10)" }.joined(separator: "&")
        line += "&dup=a&dup=b&%6Bey=v+w"
        let a = LineCodec.decodeArgs(bytes(line))
        #expect(a["e1_name"] == "n1")
        #expect(a["e1000_size"] == "10000")
        #expect(a["e2000_name"] == "n2000")
        #expect(a["e2001_name"] == nil)
        #expect(a["dup"] == "a\u{0}b")
        #expect(a["key"] == "v w")
        #expect(a.values.count == 4_002)
        let short = LineCodec.decodeArgs(bytes("e1_name=n1&dup=a&dup=b"))
        #expect(short["dup"] == a["dup"] && short["e1_name"] == a["e1_name"])
        let built = Args(Dictionary(uniqueKeysWithValues: (1...100).map { ("k\($0)", "v\($0)") }))
        #expect(built["k1"] == "v1" && built["k100"] == "v100" && built["k101"] == nil)
    }

    @Test func replyParsing() throws {
        let ok = try Reply.parse(line: bytes("OK paths=1&path1=http://h:1/dev1/0/000/000/0000000001.fid\r")).get()
        #expect(ok["path1"] == "http://h:1/dev1/0/000/000/0000000001.fid")
        let empty = try Reply.parse(line: bytes("OK ")).get()
        #expect(empty.values.isEmpty)
        guard case .failure(let e) = Reply.parse(line: bytes("ERR unknown_key no+such+key")) else { Issue.record("not ERR"); return }
        #expect(e == ProtocolError("unknown_key", "no such key"))
    }

    @Test func roundTripsArbitraryBytes() {
        let text = "k\u{1}v &=%+\u{7f}ü"
        let line = Request.encode(command: "x", args: [("k", text)])
        guard case .command(_, let args) = Request.parse(line: line.dropLast(2)) else { Issue.record("no parse"); return }
        #expect(args["k"] == text)
    }
}

@Suite struct WriteTokenTests {
    @Test func signsAndVerifies() {
        let t = WriteToken.make(devicePath: "/dev3/0/000/000/0000000009.fid", algorithm: .sha256, secret: "s3cret", lifetime: 60, now: 1000)
        #expect(t.path.hasPrefix("/_w/1060-sha256-"))
        #expect(t.path.hasSuffix("/dev3/0/000/000/0000000009.fid"))
        // Every character survives MogileFS's reply encoding unchanged.
        #expect(LineCodec.encode(t.path) == t.path)
        let parsed = WriteToken.parse(path: t.path)!
        #expect(parsed == t)
        #expect(parsed.verify(secret: "s3cret", now: 1000) == .valid)
        #expect(parsed.verify(secret: "other", now: 1000) == .badSignature)
        #expect(parsed.verify(secret: "s3cret", now: 2000) == .expired)
        let forged = WriteToken.parse(path: t.path.replacingOccurrences(of: "0000000009", with: "0000000010"))!
        #expect(forged.verify(secret: "s3cret", now: 1000) == .badSignature)
    }

    /// A token is expiry, algorithm and signature, each present, before the device path; the
    /// signature may hold dashes. Anything else carries no token.
    @Test func parsesOnlyWholeTokens() {
        let dev = "/dev3/0/000/000/0000000009.fid"
        #expect(WriteToken.parse(path: "/_w/1060-md5-ab-cd" + dev) == WriteToken(expiry: 1060, algorithm: .md5, signature: "ab-cd", devicePath: dev))
        #expect(WriteToken.parse(path: "/_w/1060-none-0" + dev)?.signature == "0")
        for bad in ["/_w/1060-md5-" + dev, "/_w/-md5-ab" + dev, "/_w/1060--ab" + dev, "/_w/x-md5-ab" + dev,
                    "/_w/1060-rot13-ab" + dev, "/_w/1060-md5-ab", "/_w/1060-md5" + dev, "/_x/1060-md5-ab" + dev, dev, "/_w/"] {
            #expect(WriteToken.parse(path: bad) == nil, "\(bad)")
        }
    }

    @Test func concatenatedPathsRoundTrip() {
        let c = ConcatenatedPath(size: 40, chunkSize: 16, pieces: [
            .init(index: 0, host: "127.0.0.1", port: 7500, device: 1, fid: 5, length: 16),
            .init(index: 2, host: "127.0.0.1", port: 7501, device: 2, fid: 6, length: 8),
        ])
        #expect(LineCodec.encode(c.path) == c.path)
        #expect(ConcatenatedPath(path: c.path) == c)
        #expect(ConcatenatedPath(path: "/_cat/0/16/-") == ConcatenatedPath(size: 0, chunkSize: 16, pieces: []))
        #expect(ConcatenatedPath(path: "/_cat/x/16/-") == nil)
        #expect(ConcatenatedPath(path: "/_cat/10/16/0:h:1:1:1:99") == nil)
    }
}

@Suite struct StoreReceiptTests {
    /// A receipt counts when the node signed it with the cluster secret, or when a client wrote
    /// the blob into that node's folders with the key the node's local-write grant holds; a key
    /// for another node, or a receipt for other bytes, does not.
    @Test func localReceiptsAreValidOnlyForTheirNodeAndBytes() {
        let secret = "cluster-secret", path = "/dev3/0/000/000/0000000042.fid"
        let byNode = StoreReceipt.make(devicePath: path, size: 10, checksum: nil, secret: secret)
        let key2 = StoreReceipt.localKey(node: "node2", secret: secret), key1 = StoreReceipt.localKey(node: "node1", secret: secret)
        let local = StoreReceipt.make(devicePath: path, size: 10, checksum: "sha256:ab", secret: key2)
        #expect(StoreReceipt.isValid(byNode, devicePath: path, size: 10, checksum: nil, secret: secret, localKey: key2))
        #expect(StoreReceipt.isValid(local, devicePath: path, size: 10, checksum: "sha256:ab", secret: secret, localKey: key2))
        #expect(!StoreReceipt.isValid(local, devicePath: path, size: 10, checksum: "sha256:ab", secret: secret, localKey: key1))
        #expect(!StoreReceipt.isValid(local, devicePath: path, size: 11, checksum: "sha256:ab", secret: secret, localKey: key2))
        #expect(!StoreReceipt.isValid(local, devicePath: path, size: 10, checksum: "sha256:ab", secret: secret,
                                      localKey: StoreReceipt.localKey(node: "node2", secret: "other")))
        #expect(StoreReceipt.localKey(node: "node2", secret: secret) != StoreReceipt.localKey(node: "node1", secret: secret))
    }
}
