import CairnCore
import CairnDevice
import CairnProtocol
import CairnTransfer
import Foundation
import Synchronization

/// Short-circuit reads and writes (see `LocalReadMarker`, `LocalWriteGrant`): a replica whose
/// storage node shares this machine's file system is read with pread from its device folder,
/// and a blob for it written there, instead of over HTTP — no request, no copy through the
/// node's process. Which nodes qualify is asked once per node and
/// re-checked every `recheckSeconds` (a node may restart elsewhere); anything unexpected (no
/// such file, a short file) returns nil and the caller reads over HTTP as usual.
public final class LocalReplicas: Sendable {
    private struct Node: Sendable {
        var dataDir: String?
        /// The node's local-write grant, when it gives one and this process may read it.
        var grant: LocalWriteGrant?
        /// A failed local write was reported since the node was last checked.
        var failureReported = false
        var checkedAt: Double
    }
    private let nodes = Mutex<[String: Node]>([:])
    private let http: HTTPTransfer
    static let recheckSeconds = 30.0

    /// What goes through the device folders (`-o local_reads=0`, `-o local_writes=0` turn each off).
    let readsLocally: Bool, writesLocally: Bool
    /// Page-aligned copies of large chunks written here. Uploads in flight each hold one and
    /// hand it on; the limit is what stays idle after a large write.
    let aligned = PageAlignedBuffers(limit: 2)

    /// Frees the page-aligned buffers kept for the next large chunk.
    public func releaseKeptBuffers() { aligned.removeAll() }

    /// Short timeouts: a node that does not answer keeps its last answer rather than stall a read.
    public init(http: HTTPTransfer = HTTPTransfer(connectTimeoutMs: 500, stallTimeoutSeconds: 1), reads: Bool = true, writes: Bool = true) {
        self.http = http
        self.readsLocally = reads
        self.writesLocally = writes
    }

    /// `count` bytes at `offset` of a chunk (its replicas' `urls`) read from a replica whose node
    /// is on this machine (`localCopies`). Every replica's node gets asked (once, then from the
    /// cache), not just the first that answers: each local copy stays readable if its node later
    /// stops answering. `pastCache`: a large read may skip the page cache (`BlobRead`).
    public func read(urls: [String], offset: Int64, count: Int, pastCache: Bool = false) -> ArraySlice<UInt8>? {
        guard readsLocally, count > 0 else { return nil }
        for path in localCopies(of: urls) {
            if let bytes = BlobRead.read(path: path, offset: offset, count: count, pastCache: pastCache) { return bytes }
        }
        return nil
    }

    /// The device-folder paths of a chunk's replicas on this machine, the one to read first
    /// first: chosen by the fid among the devices (sorted), not by the order of `urls` — the
    /// tracker lists replicas least loaded first, which changes from one answer to the next,
    /// and a reader must read the copy that was warmed for it (`warm`), not its twin on
    /// another local device. By the fid, a tree's blobs still spread over the local devices.
    private func localCopies(of urls: [String]) -> [String] {
        var copies = urls.compactMap { url -> (device: Int, fid: Int64, path: String)? in
            guard let (base, path) = Self.split(url), let (device, fid) = FidLayout.parse(devicePath: path),
                  let dir = dataDir(of: base) else { return nil }
            return (device, fid, dir + path)
        }
        guard copies.count > 1 else { return copies.map(\.path) }
        copies.sort { $0.device < $1.device }
        let first = Int(copies[0].fid % Int64(copies.count))
        return (copies[first...] + copies[..<first]).map(\.path)
    }

    /// Starts reading the first `count` bytes of each blob's first local replica into the page
    /// cache, in the background, and returns at once: a read expected
    /// soon (the open that is asking the tracker for this layout, the next files of a directory
    /// being read through) then finds the blob's inode and bytes in memory. A node not known
    /// yet is asked about there too (a fresh mount's first files); a replica that is gone costs
    /// nothing.
    public func warm(_ blobs: [(urls: [String], count: Int)]) {
        guard readsLocally, blobs.contains(where: { $0.count > 0 }) else { return }
        Self.warming.async {
            let local = blobs.compactMap { blob -> (path: String, count: Int)? in
                guard blob.count > 0, let path = self.localCopies(of: blob.urls).first else { return nil }
                return (path, blob.count)
            }
            // In a few lanes: each open waits for the blob's inode to come off the disk (60 µs
            // mean under rsync --checksum; the bytes are read asynchronously), which a walk
            // opening files every ~100 µs can catch up with. Not measured apart from the rest.
            let lanes = min(Self.warmingLanes, local.count)
            for lane in 0..<lanes {
                Self.warming.async {
                    for blob in stride(from: lane, to: local.count, by: lanes).map({ local[$0] }) {
                        let fd = open(blob.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
                        guard fd >= 0 else { continue }
                        _ = posix_fadvise(fd, 0, off_t(blob.count), Int32(POSIX_FADV_WILLNEED))
                        close(fd)
                    }
                }
            }
        }
    }

    private static let warmingLanes = 4

    private static let warming = DispatchQueue(label: "cairn.local-replicas.warm", attributes: .concurrent)

    /// A blob stored straight into a local node's device folder.
    public struct LocalWrite: Sendable {
        public var checksum: String?
        /// Signed with the node's grant key ("-" without a cluster secret: the tracker then checks the copy).
        public var receipt: String?
        /// The device folder, which a `syncfs` makes durable.
        public var deviceFolder: String
    }

    /// Stores `bytes` as the blob the write URL `url` (from the tracker's allocation) names,
    /// straight into its device folder, when its node is on this machine and grants local
    /// writes; not durable until the device's file system is synced. Nil when it cannot (the
    /// node is elsewhere, grants nothing, the device is near its reserve, the write failed):
    /// the caller PUTs the blob to the node, which then says what is wrong.
    public func write(_ bytes: UnsafeRawBufferPointer, url: String) -> LocalWrite? {
        guard writesLocally, let (base, path) = Self.split(url) else { return nil }
        let token = WriteToken.parse(path: path)
        let devicePath = token?.devicePath ?? path
        guard let dir = dataDir(of: base), let grant = nodes.withLock({ $0[base]?.grant }) else { return nil }
        do {
            guard let stored = try grant.store(bytes, devicePath: devicePath, dataDir: dir, algorithm: token?.algorithm ?? .none) else { return nil }
            return LocalWrite(checksum: stored.checksum?.description, receipt: stored.receipt, deviceFolder: stored.deviceFolder)
        } catch {
            // The node gets the blob as a PUT and answers for its device; said once per node
            // between its checks, not per blob.
            let first = nodes.withLock { n -> Bool in
                guard n[base]?.failureReported == false else { return false }
                n[base]?.failureReported = true
                return true
            }
            if first {
                FileHandle.standardError.write(Data("cairn mount: cannot write blobs into \(dir) for storage node \(base) (\(error)); sending them to the node instead\n".utf8))
            }
            return nil
        }
    }

    /// `http://host:port` and `/dev<N>/…fid` of a blob URL.
    static func split(_ url: String) -> (String, String)? {
        let bytes = url.utf8
        guard bytes.starts(with: "http://".utf8),
              let slash = bytes[bytes.index(bytes.startIndex, offsetBy: 7)...].firstIndex(of: UInt8(ascii: "/")) else { return nil }
        return (String(Substring(bytes[..<slash])), String(Substring(bytes[slash...])))
    }

    /// The node's data folder when it is on this machine, nil otherwise.
    private func dataDir(of base: String) -> String? {
        let now = Date().timeIntervalSince1970
        if let n = nodes.withLock({ $0[base] }), now - n.checkedAt < Self.recheckSeconds { return n.dataDir }
        var found = nodes.withLock { $0[base] ?? Node(dataDir: nil, checkedAt: now) }  // kept when the node does not answer now
        struct Status: Decodable { var dataDir: String?; var localToken: String? }
        if let r = try? http.get(base + "/_status"), r.status == 200,
           let s = try? JSONDecoder().decode(Status.self, from: Data(r.body)) {
            found = Node(dataDir: nil, checkedAt: now)
            if let dir = s.dataDir, let token = s.localToken, LocalReadMarker.matches(dataDir: dir, token: token) {
                found.dataDir = dir
                found.grant = writesLocally ? LocalWriteGrant.read(dataDir: dir) : nil
            }
        }
        found.checkedAt = now
        nodes.withLock { $0[base] = found }
        return found.dataDir
    }
}
