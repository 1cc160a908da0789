import CairnCore
import CairnProtocol
import CairnTransfer
import Dispatch
import Foundation

/// A chunk stored with its first copies, ready to be committed.
public struct UploadedChunk: Sendable, Equatable {
    public var index: Int
    public var fid: Fid
    public var length: Int64
    public var checksum: String?
    public var devices: [DeviceID]
    /// The nodes' signed receipts, aligned with `devices` ("-" where none).
    public var receipts: [String] = []

    /// Its entry in commit_file's `chunks=` list: `fid length checksum|- devid.devid index receipt.receipt`.
    public var commitSpec: String {
        let r = receipts.count == devices.count && !receipts.isEmpty ? " " + receipts.joined(separator: ".") : ""
        return "\(fid) \(length) \(checksum ?? "-") \(devices.map(String.init).joined(separator: ".")) \(index)" + r
    }
}

public struct UploadError: Error, CustomStringConvertible {
    public let message: String
    /// Every device asked was full (or the tracker had none with room): the store is full.
    public var noSpace = false
    public var description: String { message }
}

/// Moves chunk bytes to and from storage nodes. Uploads go to the class's synchronous-copy
/// count of devices at once (in parallel), retried on other devices when every PUT fails.
/// Downloads fall over from replica to replica.
public struct ChunkTransfer: Sendable {
    public let tracker: TrackerClient
    public let http: HTTPTransfer
    /// Set (the mount): PUTs ask for deferred durability, made durable by `deferred.sync()`.
    public let deferred: DeferredWrites?
    /// Set (the mount): replicas on this machine are read from disk (`LocalReplicas`).
    public let local: LocalReplicas?
    public static let attempts = 3

    public init(tracker: TrackerClient, http: HTTPTransfer = .shared, deferred: DeferredWrites? = nil, local: LocalReplicas? = nil) {
        self.tracker = tracker; self.http = http; self.deferred = deferred; self.local = local
    }

    /// Stores a chunk on the class's synchronous-copy count of devices (distinct hosts), PUTting
    /// to them in parallel; a failed PUT is replaced by one to another device. Returns once the
    /// copies exist, or with fewer only when no other device could take one (the tracker then
    /// makes the rest before it acknowledges the commit).
    /// A fid and where to PUT its copies, as `alloc_chunk` (or `fs_create … alloc=1`, with a
    /// prefix) answers.
    public struct Allocation: Sendable {
        public var fid: Fid
        public var targets: [(device: DeviceID, path: String)]

        public init?(_ r: Args, prefix: String = "") {
            guard let fid = r.int(prefix + "fid") else { return nil }
            let n = Int(r.int(prefix + "dev_count") ?? 0)
            self.fid = fid
            targets = (0..<n).compactMap { i in
                guard let d = r.int(prefix + "devid_\(i + 1)"), let p = r[prefix + "path_\(i + 1)"] else { return nil }
                return (DeviceID(d), p)
            }
            if targets.isEmpty { return nil }
        }
    }

    /// `allocation`: a place already given for this chunk (tried first, before asking again).
    public func upload(domain: String, cls: ClassInfo, index: Int, bytes: UnsafeRawBufferPointer,
                       allocation: Allocation? = nil) throws -> UploadedChunk {
        var avoid: [DeviceID] = []
        var failures: [String] = []
        var fullRefusals = 0
        var fid: Fid?
        var stored: [(device: DeviceID, checksum: String?, receipt: String?)] = []
        var given = allocation
        for _ in 0..<Self.attempts {
            let need = max(1, cls.syncCopies - stored.count)
            let place: Allocation
            if let g = given {
                place = g
                given = nil
            } else {
                var args = [("domain", domain), ("class", cls.name), ("size", String(bytes.count)), ("copies", String(need)),
                            ("avoid", (avoid + stored.map(\.device)).map(String.init).joined(separator: ","))]
                if let fid { args.append(("fid", String(fid))) }
                let r: Args
                do { r = try tracker.call("alloc_chunk", args) } catch let e as ProtocolError where e.code == "no_devices" {
                    if !stored.isEmpty { break }  // the tracker makes the other copies at commit
                    throw UploadError(message: "chunk \(index): \(e.text)" + (failures.isEmpty ? "" : " (after: " + failures.joined(separator: "; ") + ")"), noSpace: true)
                }
                guard let allocated = Allocation(r) else { throw UploadError(message: "alloc_chunk reply without fid or devices") }
                place = allocated
            }
            fid = place.fid
            let targets = place.targets.map { ($0.device, $0.path) }
            let (ok, errors, full) = put(bytes, to: targets)
            stored += ok
            failures += errors
            fullRefusals += full
            avoid += targets.map(\.0).filter { d in !ok.contains { $0.device == d } }
            if stored.count >= cls.syncCopies { break }
        }
        guard let fid, let first = stored.first else {
            throw UploadError(message: "chunk \(index) could not be stored after \(Self.attempts) attempts: " + failures.joined(separator: "; "),
                              noSpace: !failures.isEmpty && fullRefusals == failures.count)
        }
        return UploadedChunk(index: index, fid: fid, length: Int64(bytes.count), checksum: first.checksum, devices: stored.map(\.device),
                             receipts: stored.map { $0.receipt ?? "-" })
    }

    /// Stores the same bytes on every target at once: straight into the device folders of nodes
    /// on this machine (deferred writes only: the mount's), PUT to the others.
    /// `full`: how many of the errors were devices refusing for lack of space (507).
    private func put(_ bytes: UnsafeRawBufferPointer, to targets: [(DeviceID, String)])
        -> (ok: [(device: DeviceID, checksum: String?, receipt: String?)], errors: [String], full: Int) {
        var ok: [(device: DeviceID, checksum: String?, receipt: String?)] = [], errors: [String] = [], full = 0
        var remote = targets
        if let deferred, let local {
            let written = writeLocally(bytes, to: targets, local)
            remote = []
            for (target, stored) in zip(targets, written) {
                guard let stored else { remote.append(target); continue }
                deferred.wroteLocally(folder: stored.deviceFolder)
                ok.append((target.0, stored.checksum, stored.receipt))
            }
        }
        let headers = deferred == nil ? [:] : [DeferredWrites.header.0: DeferredWrites.header.1]
        let answers = http.performAll(remote.map { HTTPTransfer.Request(method: "PUT", url: $0.1, headers: headers, body: .bytes(bytes)) })
        for ((dev, url), answer) in zip(remote, answers) {
            switch answer {
            case .success(let resp) where resp.status == 200 && resp.headers["x-cairn-size"] == String(bytes.count):
                deferred?.wrote(url: url)
                ok.append((dev, resp.headers["x-cairn-checksum"], resp.headers["x-cairn-receipt"]))
            case .success(let resp):
                if resp.status == 507 { full += 1 }
                errors.append("device \(dev): HTTP \(resp.status) \(resp.text.trimmingCharacters(in: .whitespacesAndNewlines))")
            case .failure(let error):
                errors.append("device \(dev): \(error)")
            }
        }
        return (ok, errors, full)
    }

    /// `LocalReplicas.write` for each target (nil: not local): one after another for a small
    /// blob (microseconds each), in parallel for a large one (a direct write to disk and
    /// perhaps a checksum each), all from one page-aligned copy of a chunk of 1 MiB or more.
    private func writeLocally(_ bytes: UnsafeRawBufferPointer, to targets: [(DeviceID, String)], _ local: LocalReplicas) -> [LocalReplicas.LocalWrite?] {
        guard local.writesLocally else { return targets.map { _ in nil } }
        return local.aligned.withAligned(bytes) { bytes in
            guard bytes.count > Self.smallBlob, targets.count > 1 else { return targets.map { local.write(bytes, url: $0.1) } }
            let results = Mutex2<[LocalReplicas.LocalWrite?]>(Array(repeating: nil, count: targets.count))
            let shared = UnsafeSendableBytes(bytes)
            Parallel.run(targets.count) { i in
                let stored = local.write(shared.bytes, url: targets[i].1)
                results.withLock { $0[i] = stored }
            }
            return results.withLock { $0 }
        }
    }

    static let smallBlob = 256 << 10

    /// Fetches `range` (relative to the chunk) of a chunk, trying each replica in turn.
    /// `pastCache`: a local replica may be read past the page cache (a streaming reader's).
    public func download(_ chunk: FileLayout.Chunk, range: ClosedRange<Int64>? = nil, pastCache: Bool = false) throws -> ArraySlice<UInt8> {
        let want = range.map { $0.upperBound - $0.lowerBound + 1 } ?? chunk.length
        if want == 0 { return [] }
        if let local, let bytes = local.read(urls: chunk.urls, offset: range?.lowerBound ?? 0, count: Int(want), pastCache: pastCache) { return bytes }
        var failures: [String] = []
        for url in chunk.urls {
            do {
                let r = try http.perform(method: "GET", url: url, range: range, maxBody: Int(want) + 1)
                if (r.status == 200 || r.status == 206), Int64(r.body.count) >= want {
                    return r.body.prefix(Int(want))
                }
                failures.append("\(url): HTTP \(r.status), \(r.body.count) bytes")
            } catch {
                failures.append("\(error)")
            }
        }
        throw UploadError(message: "chunk \(chunk.index) (fid \(chunk.fid)) could not be read from any replica: " + (failures.isEmpty ? "no replica is readable" : failures.joined(separator: "; ")))
    }
}

/// Bytes the caller keeps alive and unchanged while parallel jobs read them.
struct UnsafeSendableBytes: @unchecked Sendable {
    let bytes: UnsafeRawBufferPointer
    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }
}

/// A tiny lock box for results gathered from parallel transfers.
final class Mutex2<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ v: T) { value = v }
    func withLock<R>(_ body: (inout T) throws -> R) rethrows -> R { lock.lock(); defer { lock.unlock() }; return try body(&value) }
}
