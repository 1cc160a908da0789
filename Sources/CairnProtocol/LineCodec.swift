import CairnCore

/// MogileFS's tracker line protocol, byte for byte (shared/notes/mogilefs.md §1.1).
///
/// Requests: `<cmd> k=v&k=v\r\n`, url-encoded (`+` = space, `%XX`). Replies: `OK <k=v&…>\r\n`
/// (exactly `OK \r\n` when empty) or `ERR <code> <encoded text>\r\n`.
public enum LineCodec {
    /// Bytes left as they are by MogileFS's encoder: `A-Z a-z 0-9 _ , - . / \ :` (and space → `+`).
    @inline(__always)
    static func isLiteral(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "_"), UInt8(ascii: ","), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "/"), UInt8(ascii: "\\"), UInt8(ascii: ":"):
            return true
        default:
            return false
        }
    }

    private static let hexUpper = Array("0123456789ABCDEF".utf8)

    /// Encodes bytes as MogileFS does: anything outside the literal set becomes `%XX`
    /// (upper-case hex), then space becomes `+`.
    public static func encode<C: Collection>(bytes: C, into out: inout [UInt8]) where C.Element == UInt8 {
        for b in bytes {
            if isLiteral(b) { out.append(b) }
            else if b == UInt8(ascii: " ") { out.append(UInt8(ascii: "+")) }
            else { out.append(UInt8(ascii: "%")); out.append(hexUpper[Int(b >> 4)]); out.append(hexUpper[Int(b & 15)]) }
        }
    }

    public static func encode(_ s: String) -> String {
        var out = [UInt8](); out.reserveCapacity(s.utf8.count)
        encode(bytes: s.utf8, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes `+` and `%XX`; a malformed escape is kept literally (as Perl's decoder does).
    public static func decodeBytes<C: Collection>(_ input: C) -> [UInt8] where C.Element == UInt8 {
        var out = [UInt8](); out.reserveCapacity(input.count)
        if input.withContiguousStorageIfAvailable({ decode($0, into: &out) }) == nil {
            Array(input).withUnsafeBufferPointer { decode($0, into: &out) }
        }
        return out
    }

    /// Appends the decoded bytes of `input` to `out`.
    static func decode(_ input: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        var i = 0
        while i < input.count {
            let b = input[i]
            if b == UInt8(ascii: "+") { out.append(UInt8(ascii: " ")); i += 1; continue }
            if b == UInt8(ascii: "%"), i + 2 < input.count, let hi = Hex.value(input[i + 1]), let lo = Hex.value(input[i + 2]) {
                out.append(hi << 4 | lo); i += 3; continue
            }
            out.append(b); i += 1
        }
    }

    /// Parses `k=v&k=v`: empty segments dropped, a repeated key joined with NUL.
    public static func decodeArgs<C: Collection>(_ input: C) -> Args where C.Element == UInt8, C.SubSequence: Collection<UInt8> {
        if let args = input.withContiguousStorageIfAvailable({ decodeArgs(bytes: $0) }) { return args }
        return Array(input).withUnsafeBufferPointer { decodeArgs(bytes: $0) }
    }

    /// One pass over contiguous bytes with no intermediate arrays: every reply and request is
    /// parsed here (a create's reply has some 30 pairs), so a split into slices, two decoded
    /// copies and a growing dictionary per pair were a tenth of the mount's CPU per call.
    static func decodeArgs(bytes: UnsafeBufferPointer<UInt8>) -> Args {
        var pairs = 1
        for b in bytes where b == UInt8(ascii: "&") { pairs += 1 }
        var args = Args(capacity: pairs, bytes: bytes.count)
        var start = 0
        while start < bytes.count {
            var end = start, eq = -1
            while end < bytes.count, bytes[end] != UInt8(ascii: "&") {
                if eq < 0, bytes[end] == UInt8(ascii: "=") { eq = end }
                end += 1
            }
            if end > start {
                let key = UnsafeBufferPointer(rebasing: bytes[start..<(eq < 0 ? end : eq)])
                let value = UnsafeBufferPointer(rebasing: bytes[(eq < 0 ? end : eq + 1)..<end])
                args.append(key: { decode(key, into: &$0) }, value: { decode(value, into: &$0) })
            }
            start = end + 1
        }
        args.reindex()
        return args
    }

    /// Encodes ordered pairs as `k=v&k=v`.
    public static func encodePairs(_ pairs: [(String, String)]) -> [UInt8] {
        var out = [UInt8]()
        for (i, (k, v)) in pairs.enumerated() {
            if i > 0 { out.append(UInt8(ascii: "&")) }
            encode(bytes: k.utf8, into: &out)
            out.append(UInt8(ascii: "="))
            encode(bytes: v.utf8, into: &out)
        }
        return out
    }
}

/// Decoded request or reply arguments. Values are raw bytes (binary-safe for xattrs);
/// the accessors read them as text, integers or Perl-truthy booleans.
///
/// Every pair's decoded bytes sit in one array. Most lines have a few dozen pairs, found by a
/// scan: a parse then costs two allocations instead of two per pair plus a dictionary (each
/// tracker call parses one line on each side). `Args` do not change once built. Longer lines
/// (a directory page has 14 pairs per entry, a big file's layout 6 per chunk) get an index,
/// so their lookups do not scan.
public struct Args: Sendable, Equatable {
    private var storage: [UInt8] = []
    /// Each pair's key and value, as ranges of `storage`, in line order.
    private var pairs: [Pair] = []
    private struct Pair: Sendable { var key: Range<Int>; var value: Range<Int> }
    /// For lines of more than `indexedFrom` pairs: each key's pair, or -1 for a repeated key.
    private var index: [String: Int]?
    static let indexedFrom = 48

    public init() {}
    init(capacity: Int, bytes: Int) { pairs.reserveCapacity(capacity); storage.reserveCapacity(bytes) }
    public init(_ pairs: [String: String]) {
        for (k, v) in pairs { append(key: { $0 += k.utf8 }, value: { $0 += v.utf8 }) }
        reindex()
    }

    /// Every key with its value; a repeated key's values joined with NUL.
    public var values: [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for p in pairs {
            let k = String(decoding: storage[p.key], as: UTF8.self)
            if out[k] == nil { out[k] = bytes(k) }
        }
        return out
    }

    public static func == (a: Args, b: Args) -> Bool { a.values == b.values }

    /// Appends a pair: `key`, then `value`, write their bytes at the end of `storage`.
    mutating func append(key: (inout [UInt8]) -> Void, value: (inout [UInt8]) -> Void) {
        let k0 = storage.count
        key(&storage)
        let v0 = storage.count
        value(&storage)
        pairs.append(Pair(key: k0..<v0, value: v0..<storage.count))
    }

    /// Builds the index of a long line, once its pairs are all in.
    mutating func reindex() {
        guard pairs.count > Self.indexedFrom else { index = nil; return }
        var built: [String: Int] = [:]
        built.reserveCapacity(pairs.count)
        for (i, p) in pairs.enumerated() {
            let k = String(decoding: storage[p.key], as: UTF8.self)
            built[k] = built[k] == nil ? i : -1
        }
        index = built
    }

    /// Whether `key` is present, and its value as a range of `storage` when it appears once.
    private func single(_ key: String) -> (found: Bool, range: Range<Int>?) {
        if let index {
            guard let i = index[key] else { return (false, nil) }
            return (true, i < 0 ? nil : pairs[i].value)
        }
        var k = key
        return k.withUTF8 { kb in
            storage.withUnsafeBufferPointer { sb in
                var found: Range<Int>?
                var count = 0
                for p in pairs where p.key.count == kb.count {
                    var same = true
                    for i in 0..<kb.count where sb[p.key.lowerBound + i] != kb[i] { same = false; break }
                    if same { found = p.value; count += 1 }
                }
                return (count > 0, count == 1 ? found : nil)
            }
        }
    }

    public func bytes(_ key: String) -> [UInt8]? {
        let (found, range) = single(key)
        guard found else { return nil }
        if let range { return Array(storage[range]) }
        // A repeated key: its values joined with NUL, in line order.
        var out: [UInt8]?
        for p in pairs where storage[p.key].elementsEqual(key.utf8) {
            if out == nil { out = [] } else { out!.append(0) }
            out! += storage[p.value]
        }
        return out
    }

    public subscript(key: String) -> String? {
        let (found, range) = single(key)
        guard found else { return nil }
        if let range { return String(decoding: storage[range], as: UTF8.self) }
        return bytes(key).map { String(decoding: $0, as: UTF8.self) }
    }

    /// A non-empty value, or nil.
    public func nonEmpty(_ key: String) -> String? {
        guard let v = self[key], !v.isEmpty else { return nil }
        return v
    }
    public func int(_ key: String) -> Int64? { self[key].flatMap { Int64($0) } }
    /// Perl truthiness: anything except absent, empty or "0" is true.
    public func bool(_ key: String) -> Bool {
        guard let v = self[key] else { return false }
        return !(v.isEmpty || v == "0")
    }
}
