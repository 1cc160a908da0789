import CairnCore
import CairnMetadata
import CairnProtocol
import CairnTransfer
import Foundation
import Synchronization

/// What the tracker asks of storage nodes, over HTTP: verify a copy, have a node copy a blob
/// from a peer, delete a blob, read usage. All blocking transfers run off the async executor.
struct NodeGateway: Sendable {
    let http: HTTPTransfer
    let secret: String?
    let tokenLifetime: Int64
    /// Each host's local-write receipt key (`StoreReceipt.localKey`), derived once: a commit
    /// checks every copy's receipt, and the derivation is an HMAC of its own.
    private let localKeys = LocalReceiptKeys()

    init(http: HTTPTransfer, secret: String?, tokenLifetime: Int64) {
        self.http = http; self.secret = secret; self.tokenLifetime = tokenLifetime
    }

    /// True when `receipt` proves the copy of `fid` on `d` holds exactly these bytes: signed by
    /// its node, or by a client the node let write into its folders (`LocalWriteGrant`).
    func acceptsReceipt(_ receipt: String, fid: Fid, on d: DeviceInfo, size: Int64, checksum: String?) -> Bool {
        guard let secret else { return false }
        let key = localKeys.byHost.withLock { keys in
            if let k = keys[d.host.name] { return k }
            let k = StoreReceipt.localKey(node: d.host.name, secret: secret)
            keys[d.host.name] = k
            return k
        }
        return StoreReceipt.isValid(receipt, devicePath: FidLayout.devicePath(device: d.device.id, fid: fid), size: size,
                                    checksum: checksum, secret: secret, localKey: key)
    }

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

    /// Deletes many blobs of one device in one request. `gone`: the fids whose copies are no
    /// longer on it (deleted now or already absent); `problem`: why the others may still be.
    func delete(fids: [Fid], on d: DeviceInfo) async -> (gone: Set<Fid>, problem: String?) {
        let text: String
        switch await postBatch("/_delete", Array(fids.map { "\($0)\n" }.joined().utf8), on: d) {
        case .failure(let problem): return ([], problem.description)
        case .success(let reply): text = reply
        }
        // `deleted N`, then an `absent <fid>` or `failed <fid> <reason>` line per other fid.
        // Every fid must be accounted for, or none is counted as gone.
        let lines = text.split(separator: "\n")
        let failures = lines.dropFirst().filter { $0.hasPrefix("failed ") }
        let failed = Set(failures.compactMap { $0.split(separator: " ").dropFirst().first.flatMap { Fid(String($0)) } })
        guard let first = lines.first, first.hasPrefix("deleted "), let deleted = Int(first.dropFirst(8)),
              deleted + lines.count - 1 == fids.count, failed.count == failures.count else {
            return ([], "device \(d.device.id) on \(d.host.name) answered \"\(text.prefix(80))\" for \(fids.count) deletes")
        }
        let problem = failures.first.map { "device \(d.device.id) on \(d.host.name): \(failures.count) of \(fids.count) not deleted (\($0))" }
        return (Set(fids).subtracting(failed), problem)
    }

    /// What a device's batch request failed with, naming the device and its host.
    struct BatchProblem: Error, CustomStringConvertible { let description: String }

    /// POSTs `body` to one of a device's batch endpoints (`/_meta`, `/_delete`), signed for the
    /// device; the node's answer when it is 200.
    private func postBatch(_ endpoint: String, _ body: [UInt8], on d: DeviceInfo) async -> Result<String, BatchProblem> {
        let token = WriteToken.make(devicePath: "/dev\(d.device.id)", algorithm: .none, secret: secret, lifetime: tokenLifetime)
        let url = d.host.baseURL + endpoint + token.path
        let r: HTTPResponse
        do { r = try await BlockingPool.run { try body.withUnsafeBytes { try http.perform(method: "POST", url: url, body: .bytes($0)) } } }
        catch { return .failure(BatchProblem(description: "device \(d.device.id) on \(d.host.name): \(error)")) }
        guard r.status == 200 else {
            return .failure(BatchProblem(description: "device \(d.device.id) on \(d.host.name): HTTP \(r.status) \(r.text.trimmingCharacters(in: .whitespacesAndNewlines))"))
        }
        return .success(r.text)
    }

    struct NodeStatus: Decodable {
        struct Device: Decodable { var id: Int; var totalBytes: Int64; var usedBytes: Int64; var freeBytes: Int64; var ioUtilization: Double; var writeable: Bool }
        struct Corrupt: Decodable { var device: Int; var fid: Int64; var stored: String; var computed: String }
        var name: String
        var devices: [Device]
        var corrupt: [Corrupt]?
    }

    /// What a node found reading a copy again.
    enum Verification: Equatable {
        case missing
        case intact(size: Int64, checksum: String?, mtime: Int64)
        /// The bytes differ from the checksum stored with them at write time.
        case corrupt(size: Int64, stored: String, computed: String)
    }

    /// Has the node read the copy again and recompute its checksum; nil when it does not answer.
    func verify(_ d: DeviceInfo, fid: Fid, algorithm: ChecksumAlgorithm) async -> Verification? {
        struct Reply: Decodable { var size: Int64; var stored: String?; var computed: String?; var mtime: Int64? }
        let url = d.host.baseURL + "/_verify" + FidLayout.devicePath(device: d.device.id, fid: fid) + "?algorithm=\(algorithm.rawValue)"
        guard let r = try? await BlockingPool.run({ try http.get(url) }) else { return nil }
        if r.status == 404 { return .missing }
        guard r.status == 200, let reply = try? JSONDecoder().decode(Reply.self, from: Data(r.body)) else { return nil }
        if let stored = reply.stored, let computed = reply.computed, stored.lowercased() != computed.lowercased() {
            return .corrupt(size: reply.size, stored: stored, computed: computed)
        }
        return .intact(size: reply.size, checksum: reply.computed ?? reply.stored, mtime: reply.mtime ?? 0)
    }

    /// The blobs on a device (fid, size, mtime), from `after` on; nil when the node does not answer.
    func list(_ d: DeviceInfo, after: Fid, limit: Int) async -> [(fid: Fid, size: Int64, mtime: Int64)]? {
        let url = d.host.baseURL + "/_list/dev\(d.device.id)?after=\(after)&limit=\(limit)"
        guard let r = try? await BlockingPool.run({ try http.get(url) }), r.status == 200 else { return nil }
        return r.text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            guard f.count == 3, let fid = Fid(f[0]), let size = Int64(f[1]), let mtime = Int64(f[2]) else { return nil }
            return (fid, size, mtime)
        }
    }

    /// Stores many sidecars on one device in one request (a blob the node no longer holds is
    /// skipped: its sidecar goes with the blob); nil when done, else what went wrong.
    func putSidecars(_ batch: [(fid: Fid, bytes: [UInt8])], on d: DeviceInfo) async -> String? {
        var body: [UInt8] = []
        for (fid, bytes) in batch { body += Array("\(fid) ".utf8); body += bytes; body.append(UInt8(ascii: "\n")) }
        let text: String
        switch await postBatch("/_meta", body, on: d) {
        case .failure(let problem): return problem.description
        case .success(let reply): text = reply
        }
        // Every line is accounted for: written, or its blob is gone from the device.
        let lines = text.split(separator: "\n")
        guard let first = lines.first, first.hasPrefix("written "), let written = Int(first.dropFirst(8)),
              written + lines.count - 1 == batch.count else {
            return "device \(d.device.id) on \(d.host.name) answered \"\(text.prefix(80))\" for \(batch.count) sidecars"
        }
        return nil
    }

    /// One page of a device's blobs with their sidecars (nil sidecar: none stored).
    func listSidecars(_ d: DeviceInfo, after: Fid, limit: Int) async -> [(fid: Fid, size: Int64, sidecar: Sidecar?)]? {
        let url = d.host.baseURL + "/_list/dev\(d.device.id)?after=\(after)&limit=\(limit)&sidecars=1"
        guard let r = try? await BlockingPool.run({ try http.get(url) }), r.status == 200 else { return nil }
        return r.body.split(separator: UInt8(ascii: "\n")).compactMap { line in
            let f = line.split(separator: UInt8(ascii: " "), maxSplits: 3)
            guard f.count >= 3, let fid = Fid(String(decoding: f[0], as: UTF8.self)), let size = Int64(String(decoding: f[1], as: UTF8.self)) else { return nil }
            return (fid, size, f.count == 4 ? Sidecar.decode(f[3]) : nil)
        }
    }

    /// The monitor's test write and read; nil when it worked, else why not.
    func probe(_ d: DeviceInfo) async -> String? {
        let url = d.host.baseURL + "/_probe/dev\(d.device.id)"
        guard let r = try? await BlockingPool.run({ try http.perform(method: "POST", url: url) }) else { return "host \(d.host.name) did not answer" }
        return r.status == 200 ? nil : r.text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Has a node make its deferred-durability writes (the mount's) durable; true when done.
    func flush(_ host: HostRecord) async -> Bool {
        guard let r = try? await BlockingPool.run({ try http.perform(method: "POST", url: host.baseURL + "/_sync") }) else { return false }
        return r.status == 204
    }

    func status(of host: HostRecord) async -> NodeStatus? {
        let url = host.baseURL + "/_status"
        guard let r = try? await BlockingPool.run({ try http.get(url) }), r.status == 200 else { return nil }
        return try? JSONDecoder().decode(NodeStatus.self, from: Data(r.body))
    }
}

/// See `NodeGateway.acceptsReceipt`.
final class LocalReceiptKeys: Sendable {
    let byHost = Mutex<[String: String]>([:])
}
