import CairnCore
import CairnMetadata
import CairnProtocol
import CairnTransfer
import Foundation

/// What the tracker asks of storage nodes, over HTTP: verify a copy, have a node copy a blob
/// from a peer, delete a blob, read usage. All blocking transfers run off the async executor.
struct NodeGateway: Sendable {
    let http: HTTPTransfer
    let secret: String?
    let tokenLifetime: Int64

    /// A verified copy: its size and, when the node computed one, its checksum.
    struct CopyFacts: Sendable, Equatable {
        var size: Int64
        var checksum: String?
    }

    /// A write path (with token) for a fid on a device.
    func writePath(device: DeviceID, fid: Fid, algorithm: ChecksumAlgorithm) -> String {
        WriteToken.make(devicePath: FidLayout.devicePath(device: device, fid: fid), algorithm: algorithm,
                        secret: secret, lifetime: tokenLifetime).path
    }

    func writeURL(_ d: DeviceInfo, fid: Fid, algorithm: ChecksumAlgorithm) -> String {
        d.host.baseURL + writePath(device: d.device.id, fid: fid, algorithm: algorithm)
    }

    /// HEAD of a copy; nil when the copy is missing or its node does not answer.
    func inspect(_ d: DeviceInfo, fid: Fid) async -> CopyFacts? {
        let url = d.url(fid: fid)
        guard let r = try? await BlockingPool.run({ try http.head(url) }), r.status == 200,
              let len = r.headers["content-length"].flatMap({ Int64($0) }) else { return nil }
        return CopyFacts(size: len, checksum: r.headers["x-cairn-checksum"])
    }

    /// HEAD of a URL: true when it answers 200 with `size` bytes.
    func verify(url: String, size: Int64) async -> Bool {
        guard let r = try? await BlockingPool.run({ try http.head(url) }) else { return false }
        return r.status == 200 && r.headers["content-length"] == String(size)
    }

    /// Asks `destination` to fetch the blob from `source` (node to node).
    func copy(fid: Fid, from source: DeviceInfo, to destination: DeviceInfo, algorithm: ChecksumAlgorithm) async throws -> CopyFacts {
        let url = writeURL(destination, fid: fid, algorithm: algorithm)
        let from = source.url(fid: fid)
        let r = try await BlockingPool.run { try http.perform(method: "PUT", url: url, headers: ["Cairn-Copy-From": from]) }
        guard r.status == 200, let size = r.headers["x-cairn-size"].flatMap({ Int64($0) }) else {
            throw ProtocolError("copy_error", "copying fid \(fid) from device \(source.device.id) (\(source.host.name)) to device \(destination.device.id) (\(destination.host.name)) failed: HTTP \(r.status) \(r.text.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return CopyFacts(size: size, checksum: r.headers["x-cairn-checksum"])
    }

    /// Deletes a copy; true when it is gone (deleted now or already absent).
    func delete(fid: Fid, on d: DeviceInfo) async -> Bool {
        let url = d.host.baseURL + writePath(device: d.device.id, fid: fid, algorithm: .none)
        guard let r = try? await BlockingPool.run({ try http.delete(url) }) else { return false }
        return r.status == 204 || r.status == 404 || r.isSuccess
    }

    struct NodeStatus: Decodable {
        struct Device: Decodable { var id: Int; var totalBytes: Int64; var usedBytes: Int64; var freeBytes: Int64; var ioUtilization: Double; var writeable: Bool }
        var name: String
        var devices: [Device]
    }

    func status(of host: HostRecord) async -> NodeStatus? {
        let url = host.baseURL + "/_status"
        guard let r = try? await BlockingPool.run({ try http.get(url) }), r.status == 200 else { return nil }
        return try? JSONDecoder().decode(NodeStatus.self, from: Data(r.body))
    }
}
