import CairnDevice
import CairnTransfer
import Foundation

/// The storage nodes this client wrote to with deferred durability (`Cairn-Durability:
/// deferred`: renamed into place, fsynced by the node's next flush), and the device folders it
/// wrote blobs into itself (`LocalReplicas.write`), so that `sync()` can make every one of
/// those writes durable: the mount's fsync, fsyncdir and unmount. Its own writes it also
/// flushes within `flushInterval` seconds, as a node does its deferred ones.
public final class DeferredWrites: @unchecked Sendable {
    public static let header = ("Cairn-Durability", "deferred")
    private let lock = NSLock()
    private var nodes: Set<String> = []
    private var folders: Set<String> = []
    private var flusherStarted = false
    /// Held for a whole `syncfs` round, so a sync that starts while the background one runs
    /// waits for it rather than return before those writes are durable.
    private let syncingFolders = NSLock()
    let flushInterval: Double

    public init(flushInterval: Double = 2) { self.flushInterval = flushInterval }

    /// Device folders written into since they were last synced (tests, diagnostics).
    public var unsyncedFolders: Int { lock.withLock { folders.count } }

    /// Notes a device folder this client wrote a blob into without an fsync.
    func wroteLocally(folder: String) {
        let start = lock.withLock { () -> Bool in
            folders.insert(folder)
            defer { flusherStarted = true }
            return !flusherStarted
        }
        if start {
            Thread.detachNewThread { [weak self] in
                while let interval = self?.flushInterval {
                    Thread.sleep(forTimeInterval: interval)
                    _ = self?.syncFolders()
                }
            }
        }
    }

    /// One `syncfs` per device folder written since the last; the failures (kept for the next).
    private func syncFolders() -> [String] {
        syncingFolders.lock()
        defer { syncingFolders.unlock() }
        let pending = lock.withLock { () -> Set<String> in defer { folders.removeAll() }; return folders }
        let failed = FolderSync.sync(pending)
        lock.withLock { folders.formUnion(failed.map(\.folder)) }  // tried again at the next sync
        return failed.map(\.failure)
    }

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
        let failed = failures.withLock { $0 } + syncFolders()
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
