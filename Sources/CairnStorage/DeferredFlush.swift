import CairnDevice
import Foundation

/// Blobs the mount writes with deferred durability (`Cairn-Durability: deferred`) are renamed
/// into place without an fsync; they become durable at the next flush: when a client asks
/// (`POST /_sync`, the mount's fsync and unmount) or within `interval` seconds in the
/// background, like a local file system's commit interval. One syncfs per device covers
/// every blob and directory entry written since the last flush.
final class DeferredFlush: @unchecked Sendable {
    let interval: Double
    private let lock = NSLock()
    private var dirty: Set<String> = []
    private var unflushed = 0
    /// Held for a whole flush, so a flush that starts while another runs waits for it:
    /// returning early would acknowledge writes the running flush has not made durable yet.
    private let flushing = NSLock()

    init(interval: Double) { self.interval = interval }

    func wrote(device path: String) { lock.withLock { _ = dirty.insert(path); unflushed += 1 } }

    /// Writes not yet covered by a finished flush (reported in `/_status`).
    var pending: Int { lock.withLock { unflushed } }

    /// Makes every deferred write so far durable, and syncs `alsoDevices` (device folders written
    /// by others) even when this node wrote nothing there; the devices that could not be synced.
    @discardableResult
    func flush(alsoDevices: [String] = []) -> [String] {
        flushing.lock()
        defer { flushing.unlock() }
        let (devices, count) = lock.withLock { () -> (Set<String>, Int) in
            let d = (dirty.union(alsoDevices), unflushed); dirty.removeAll(); return d
        }
        let failed = FolderSync.sync(devices)
        lock.withLock { dirty.formUnion(failed.map(\.folder)) }  // tried again at the next flush
        if failed.isEmpty { lock.withLock { unflushed -= count } }
        return failed.map(\.failure)
    }

    /// The background flush loop (its own thread: syncfs blocks); `report` hears of devices
    /// that could not be synced (their writes are tried again at the next flush).
    func run(isCancelled: @escaping () -> Bool, report: ([String]) -> Void) {
        while !isCancelled() {
            Thread.sleep(forTimeInterval: interval)
            let failed = flush()
            if !failed.isEmpty { report(failed) }
        }
    }
}
