/// One request line.
public enum Request: Sendable, Equatable {
    /// `<cmd> <args>`: cmd lower-cased.
    case command(String, Args)
    /// `!<admin> ...`: answered with lines ending `.\r\n`.
    case admin(String)
    /// An empty line: ignored.
    case empty
    /// Not a command at all.
    case malformed(String)

    public static let maxLineBytes = 1 << 20

    /// Parses one line held in an array: the generic parser specialized here, in its own
    /// module (called across modules it would run unspecialized, a witness call per byte).
    public static func parse(line: [UInt8]) -> Request { parse(line: line[...]) }

    /// Parses one line (without its `\n`; a trailing `\r` is dropped).
    public static func parse<C: BidirectionalCollection>(line: C) -> Request where C.Element == UInt8, C.SubSequence: Collection<UInt8> {
        var end = line.endIndex
        if end != line.startIndex, line[line.index(before: end)] == UInt8(ascii: "\r") { end = line.index(before: end) }
        let body = line[line.startIndex..<end]
        if body.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) { return .empty }
        if body.first == UInt8(ascii: "!") {
            return .admin(String(decoding: body.dropFirst(), as: UTF8.self).trimmingSpaces())
        }
        var i = body.startIndex
        while i != body.endIndex, isWordByte(body[i]) { i = body.index(after: i) }
        let cmd = body[body.startIndex..<i]
        guard !cmd.isEmpty, i == body.endIndex || body[i] == UInt8(ascii: " ") else {
            return .malformed(String(decoding: body.prefix(64), as: UTF8.self))
        }
        let rest = i == body.endIndex ? body[i..<i] : body[body.index(after: i)...]
        // Args end at the next space (MogileFS reads `\S*`); the callid convention keeps it simple.
        let argsEnd = rest.firstIndex(of: UInt8(ascii: " ")) ?? rest.endIndex
        return .command(String(decoding: cmd, as: UTF8.self).lowercased(), LineCodec.decodeArgs(rest[rest.startIndex..<argsEnd]))
    }

    @inline(__always)
    static func isWordByte(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
            || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "_")
    }

    /// Encodes a request as clients send it (always a space after the command).
    public static func encode(command: String, args: [(String, String)]) -> [UInt8] {
        var out = Array(command.utf8)
        out.append(UInt8(ascii: " "))
        out += LineCodec.encodePairs(args)
        out += [13, 10]
        return out
    }
}

/// A tracker error: a MogileFS error code plus a sentence for people.
public struct ProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: String
    public let text: String
    public init(_ code: String, _ text: String) { self.code = code; self.text = text }
    public var description: String { "\(code): \(text)" }
}

/// One reply line.
public enum Reply: Sendable, Equatable {
    case ok([(String, String)])
    case err(ProtocolError)

    public static func == (a: Reply, b: Reply) -> Bool {
        switch (a, b) {
        case (.ok(let x), .ok(let y)): x.map { [$0.0, $0.1] } == y.map { [$0.0, $0.1] }
        case (.err(let x), .err(let y)): x == y
        default: false
        }
    }

    /// `OK k=v&…\r\n` (note the space even when empty) or `ERR code text[ callid]\r\n`.
    public func encode(callid: String? = nil) -> [UInt8] {
        switch self {
        case .ok(var pairs):
            if let callid { pairs.append(("callid", callid)) }
            return Array("OK ".utf8) + LineCodec.encodePairs(pairs) + [13, 10]
        case .err(let e):
            var out = Array("ERR ".utf8)
            LineCodec.encode(bytes: e.code.utf8, into: &out)
            out.append(UInt8(ascii: " "))
            LineCodec.encode(bytes: (e.text.isEmpty ? e.code : e.text).utf8, into: &out)
            if let callid { out.append(UInt8(ascii: " ")); LineCodec.encode(bytes: callid.utf8, into: &out) }
            return out + [13, 10]
        }
    }

    /// Parses a reply line held in an array (specialized here; see `Request.parse(line:)`).
    public static func parse(line: [UInt8]) -> Result<Args, ProtocolError> { parse(line: line[...]) }

    /// Parses a reply line (client side).
    public static func parse<C: BidirectionalCollection>(line: C) -> Result<Args, ProtocolError> where C.Element == UInt8, C.SubSequence: Collection<UInt8> {
        var end = line.endIndex
        if end != line.startIndex, line[line.index(before: end)] == UInt8(ascii: "\r") { end = line.index(before: end) }
        let body = line[line.startIndex..<end]
        if body.starts(with: "OK".utf8) {
            let rest = body.dropFirst(2).drop(while: { $0 == UInt8(ascii: " ") })
            return .success(LineCodec.decodeArgs(rest))
        }
        if body.starts(with: "ERR ".utf8) {
            let parts = body.dropFirst(4).split(separator: UInt8(ascii: " "), maxSplits: 2)
            let code = parts.first.map { String(decoding: LineCodec.decodeBytes($0), as: UTF8.self) } ?? "failure"
            let text = parts.count > 1 ? String(decoding: LineCodec.decodeBytes(parts[1]), as: UTF8.self) : code
            return .failure(ProtocolError(code, text))
        }
        return .failure(ProtocolError("bad_reply", "the tracker sent a line that is neither OK nor ERR: \(String(decoding: body.prefix(80), as: UTF8.self))"))
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
