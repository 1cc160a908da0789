import CairnClient
import CairnCore
import CairnProtocol
import Dispatch
import Foundation

/// What every open file and operation of one mount shares.
final class FSContext: @unchecked Sendable {
    let tracker: TrackerClient
    let chunks: ChunkTransfer
    let options: MountOptions
    /// The mount-wide cap on chunk uploads in flight (and so on write-buffer memory).
    let uploadGate: DispatchSemaphore
    private let lock = NSLock()
    /// mtime and size last seen at close or open: unchanged content keeps the kernel's page cache.
    private var contentSeen: [Ino: (Int64, Int64)] = [:]

    init(tracker: TrackerClient, options: MountOptions) {
        self.tracker = tracker
        // Data becomes durable at fsync, fsyncdir and unmount, as on a local file system.
        self.chunks = ChunkTransfer(tracker: tracker, deferred: DeferredWrites())
        self.options = options
        self.uploadGate = DispatchSemaphore(value: max(1, options.writeBuffers))
    }


    func rememberContent(ino: Ino, _ a: WireAttributes) { lock.withLock { contentSeen[ino] = (a.mtime, a.size) } }

    /// True when the file is as it was when last seen, so cached pages are still right.
    func contentUnchanged(ino: Ino, _ a: WireAttributes) -> Bool {
        lock.withLock { contentSeen[ino].map { $0 == (a.mtime, a.size) } ?? false }
    }
}
