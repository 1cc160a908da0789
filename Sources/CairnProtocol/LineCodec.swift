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
        var i = input.startIndex
        while i != input.endIndex {
            let b = input[i]
            if b == UInt8(ascii: "+") { out.append(UInt8(ascii: " ")); i = input.index(after: i); continue }
            if b == UInt8(ascii: "%") {
                let h1 = input.index(after: i)
                if h1 != input.endIndex {
                    let h2 = input.index(after: h1)
                    if h2 != input.endIndex, let hi = Hex.value(input[h1]), let lo = Hex.value(input[h2]) {
                        out.append(hi << 4 | lo); i = input.index(after: h2); continue
                    }
                }
            }
            out.append(b); i = input.index(after: i)
        }
        return out
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
        var args = Args(capacity: pairs)
        var start = 0
        while start < bytes.count {
            var end = start, eq = -1, plain = true
            while end < bytes.count, bytes[end] != UInt8(ascii: "&") {
                let b = bytes[end]
                if b == UInt8(ascii: "="), eq < 0 { eq = end }
                else if b == UInt8(ascii: "%") || b == UInt8(ascii: "+") { plain = false }
                end += 1
            }
            if end > start {
                let keyEnd = eq < 0 ? end : eq
                let key = UnsafeBufferPointer(rebasing: bytes[start..<keyEnd])
                let value = eq < 0 ? UnsafeBufferPointer(rebasing: bytes[end..<end]) : UnsafeBufferPointer(rebasing: bytes[(eq + 1)..<end])
                if plain {
                    args.add(key: String(decoding: key, as: UTF8.self), value: Array(value))
                } else {
                    args.add(key: String(decoding: decodeBytes(key), as: UTF8.self), value: decodeBytes(value))
                }
            }
            start = end + 1
        }
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
public struct Args: Sendable, Equatable {
    public private(set) var values: [String: [UInt8]] = [:]
    public init() {}
    init(capacity: Int) { values.reserveCapacity(capacity) }
    public init(_ pairs: [String: String]) { for (k, v) in pairs { values[k] = Array(v.utf8) } }

    mutating func add(key: String, value: [UInt8]) {
        if let existing = values[key] { values[key] = existing + [0] + value } else { values[key] = value }
    }

    public subscript(key: String) -> String? {
        get { values[key].map { String(decoding: $0, as: UTF8.self) } }
        set { values[key] = newValue.map { Array($0.utf8) } }
    }
    public func bytes(_ key: String) -> [UInt8]? { values[key] }
    public mutating func setBytes(_ key: String, _ value: [UInt8]) { values[key] = value }

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
