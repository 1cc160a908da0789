/// Bytes read from a file, in the pieces they are held in: read segments are handed out as
/// they are, not copied into one array (the FUSE reply sends the pieces with one writev).
public struct ReadBytes: Sendable {
    public private(set) var pieces: [ArraySlice<UInt8>] = []
    public private(set) var count = 0

    init() {}

    mutating func append(_ piece: ArraySlice<UInt8>) {
        guard !piece.isEmpty else { return }
        pieces.append(piece)
        count += piece.count
    }

    mutating func append(_ other: ReadBytes) { for p in other.pieces { append(p) } }

    /// A hole, or bytes past a chunk's end.
    mutating func appendZeros(_ n: Int) { if n > 0 { append(ArraySlice(repeating: 0, count: n)) } }

    /// All of it in one array (tests, and callers that need contiguous bytes).
    public var joined: [UInt8] { pieces.count == 1 ? Array(pieces[0]) : Array(pieces.joined()) }
}
