import CairnClient
import CairnProtocol
import Testing

@Suite struct FileLayoutTests {
    /// A layout reply with chunks at these indices, listed in the order given.
    func layout(indices: [Int]) throws -> FileLayout {
        var pairs = ["ino": "7", "kind": "f", "chunk_count": String(indices.count)]
        for (i, index) in indices.enumerated() {
            pairs["chunk\(i + 1)_index"] = String(index)
            pairs["chunk\(i + 1)_fid"] = String(100 + index)
        }
        return try FileLayout(Args(pairs))
    }

    @Test func findsEachChunkByIndexAroundHolesAndInAnyListedOrder() throws {
        let dense = try layout(indices: Array(0..<1000))
        for index in [0, 1, 499, 999] { #expect(dense.chunk(at: index)?.fid == Int64(100 + index)) }
        #expect(dense.chunk(at: 1000) == nil && dense.chunk(at: -1) == nil)
        // A sparse file: holes at 1, 3, 4 and past 6; listed out of order.
        let sparse = try layout(indices: [6, 0, 2, 5])
        for index in [0, 2, 5, 6] { #expect(sparse.chunk(at: index)?.fid == Int64(100 + index)) }
        for hole in [1, 3, 4, 7, 100] { #expect(sparse.chunk(at: hole) == nil) }
        #expect(sparse.chunks.map(\.index) == [0, 2, 5, 6])
    }
}
