import CairnCore
import CairnMetadata
import CairnPolicy
import CairnProtocol

/// Builds the URLs get_paths returns, in read order (least loaded replicas first).
struct ReadPaths {
    let ctx: TrackerContext

    func urls(for chunks: [ChunkRef], size: Int64, copies: [Fid: [DeviceID]], limit: Int) async throws -> [String] {
        let devs = try await ctx.devices.byID()
        let ordered: [[DeviceInfo]] = chunks.map { ch in
            Placement.readOrder((copies[ch.fid] ?? []).compactMap { devs[$0]?.view }).compactMap { devs[$0.device] }
        }
        if chunks.count == 1, chunks[0].index == 0, chunks[0].length == size {
            return Array(ordered[0].prefix(limit).map { $0.url(fid: chunks[0].fid) })
        }
        // Several chunks, none, or a sparse file: one concatenating URL per serving host.
        let chunkSize = try await chunkSize(of: chunks)
        var urls: [String] = []
        let readable = devs.values.filter(\.view.servesReads)
        let hostCount = max(1, ordered.first?.count ?? 0)
        for variant in 0..<min(limit, hostCount) {
            var pieces: [ConcatenatedPath.Piece] = []
            for (ch, holders) in zip(chunks, ordered) {
                guard !holders.isEmpty else { return urls }  // a chunk with no readable copy
                let d = holders[variant % holders.count]
                pieces.append(.init(index: ch.index, host: d.host.ip, port: d.host.port, device: d.device.id, fid: ch.fid, length: ch.length))
            }
            let server = ordered.first.map { $0[variant % max(1, $0.count)].host } ?? readable.first?.host
            guard let server else { break }
            urls.append(server.baseURL + ConcatenatedPath(size: size, chunkSize: chunkSize, pieces: pieces).path)
        }
        return urls
    }

    private func chunkSize(of chunks: [ChunkRef]) async throws -> Int64 {
        guard let first = chunks.first, let blob = try await ctx.store.blob(fid: first.fid),
              let c = try await ctx.catalog.classRecord(domain: blob.domain, id: blob.classID) else { return ChunkLayout.defaultChunkSize }
        return c.chunkSize
    }
}
