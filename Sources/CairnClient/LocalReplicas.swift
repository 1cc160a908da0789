import CairnCore
import CairnTransfer
import Foundation
import Synchronization

/// Short-circuit reads (see `LocalReadMarker`): a replica whose storage node shares this
/// machine's file system is read with pread from its device folder instead of over HTTP — no
/// request, no copy through the node's process. Which nodes qualify is asked once per node and
/// re-checked every `recheckSeconds` (a node may restart elsewhere); anything unexpected (no
/// such file, a short file) returns nil and the caller reads over HTTP as usual.
public final class LocalReplicas: Sendable {
    private struct Node: Sendable {
        var dataDir: String?
        var checkedAt: Double
    }
    private let nodes = Mutex<[String: Node]>([:])
    private let http: HTTPTransfer
    static let recheckSeconds = 30.0

    /// Short timeouts: a node that does not answer keeps its last answer rather than stall a read.
    public init(http: HTTPTransfer = HTTPTransfer(connectTimeoutMs: 500, stallTimeoutSeconds: 1)) { self.http = http }

    /// `count` bytes at `offset` of the first of `urls` (a chunk's replicas) whose node is on
    /// this machine. Every replica's node gets asked (once, then from the cache), not just
    /// the first that answers: each local copy stays readable if its node later stops answering.
    public func read(urls: [String], offset: Int64, count: Int) -> [UInt8]? {
        var found: [UInt8]?
        for url in urls {
            if found == nil { found = read(url: url, offset: offset, count: count) } else if let (base, _) = Self.split(url) { _ = dataDir(of: base) }
        }
        return found
    }

    /// Starts reading the first `count` bytes of the first local replica into the page cache,
    /// in the background, and returns at once: a read expected soon (the open that is asking
    /// the tracker for this layout) then finds the blob's inode and bytes in memory. Only nodes
    /// already known to be local are used; a replica that is gone costs nothing.
    public func warm(urls: [String], count: Int) {
        guard count > 0, let local = urls.lazy.compactMap({ self.localPath(url: $0, ask: false) }).first else { return }
        Self.warming.async {
            let fd = open(local, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            guard fd >= 0 else { return }
            _ = posix_fadvise(fd, 0, off_t(count), Int32(POSIX_FADV_WILLNEED))
            close(fd)
        }
    }

    private static let warming = DispatchQueue(label: "cairn.local-replicas.warm", attributes: .concurrent)

    /// The device-folder path of the blob `url` names, when its node is on this machine
    /// (`ask`: find out now if not known yet, one status request).
    private func localPath(url: String, ask: Bool) -> String? {
        guard let (base, path) = Self.split(url), FidLayout.parse(devicePath: path) != nil else { return nil }
        let dir = ask ? dataDir(of: base) : nodes.withLock({ $0[base]?.dataDir })
        return dir.map { $0 + path }
    }

    /// `count` bytes at `offset` of the blob `url` names, when its node is on this machine.
    private func read(url: String, offset: Int64, count: Int) -> [UInt8]? {
        guard count > 0, let local = localPath(url: url, ask: true) else { return nil }
        let fd = open(local, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, filled in
            filled = 0
            while filled < count {
                let r = pread(fd, buffer.baseAddress! + filled, count - filled, off_t(offset) + off_t(filled))
                if r < 0, errno == EINTR { continue }
                if r <= 0 { break }
                filled += r
            }
        }
        return bytes.count == count ? bytes : nil
    }

    /// `http://host:port` and `/dev<N>/…fid` of a blob URL.
    static func split(_ url: String) -> (String, String)? {
        guard url.hasPrefix("http://") else { return nil }
        let rest = url.dropFirst(7)
        guard let slash = rest.firstIndex(of: "/") else { return nil }
        return (String(url[..<slash]), String(rest[slash...]))
    }

    /// The node's data folder when it is on this machine, nil otherwise.
    private func dataDir(of base: String) -> String? {
        let now = Date().timeIntervalSince1970
        if let n = nodes.withLock({ $0[base] }), now - n.checkedAt < Self.recheckSeconds { return n.dataDir }
        var found = nodes.withLock { $0[base]?.dataDir }  // kept when the node does not answer now
        struct Status: Decodable { var dataDir: String?; var localToken: String? }
        if let r = try? http.get(base + "/_status"), r.status == 200,
           let s = try? JSONDecoder().decode(Status.self, from: Data(r.body)) {
            found = nil
            if let dir = s.dataDir, let token = s.localToken, LocalReadMarker.matches(dataDir: dir, token: token) { found = dir }
        }
        nodes.withLock { $0[base] = Node(dataDir: found, checkedAt: now) }
        return found
    }
}
