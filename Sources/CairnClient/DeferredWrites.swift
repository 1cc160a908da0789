import CairnTransfer
import Foundation

/// The storage nodes this client wrote to with deferred durability (`Cairn-Durability:
/// deferred`: renamed into place, fsynced by the node's next flush), so that `sync()` can make
/// every one of those writes durable: the mount's fsync, fsyncdir and unmount.
public final class DeferredWrites: @unchecked Sendable {
    public static let header = ("Cairn-Durability", "deferred")
    private let lock = NSLock()
    private var nodes: Set<String> = []

    public init() {}

    /// Notes the node behind a PUT URL (`http://host:port/...`).
    func wrote(url: String) {
        guard let node = Self.node(of: url) else { return }
        lock.withLock { _ = nodes.insert(node) }
    }

    /// Asks every node written to since the last sync to flush (`POST /_sync`), in parallel.
    public func sync(http: HTTPTransfer = .shared) throws {
        let pending = lock.withLock { () -> [String] in let n = Array(nodes); nodes.removeAll(); return n }
        let failures = Mutex2<[String]>([])
        Parallel.run(pending.count) { i in
            let node = pending[i]
            do {
                let r = try http.perform(method: "POST", url: node + "/_sync")
                guard r.status == 204 else { throw UploadError(message: "HTTP \(r.status) \(r.text.trimmingCharacters(in: .whitespacesAndNewlines))") }
            } catch {
                failures.withLock { $0.append("\(node): \(error)") }
                self.lock.withLock { _ = self.nodes.insert(node) }  // asked again at the next sync
            }
        }
        let failed = failures.withLock { $0 }
        if !failed.isEmpty {
            throw UploadError(message: "written data could not be made durable on " + failed.joined(separator: "; ") + "; the storage node may be down or its disk failing")
        }
    }

    static func node(of url: String) -> String? {
        guard let scheme = url.range(of: "://") else { return nil }
        let rest = url[scheme.upperBound...]
        let end = rest.firstIndex(of: "/") ?? rest.endIndex
        return String(url[..<end])
    }
}
