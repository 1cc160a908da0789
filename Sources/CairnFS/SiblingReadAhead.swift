import CairnCore
import Foundation
import Synchronization

/// Read-ahead across files. The kernel reads ahead within a file, never into the next one, so
/// a program reading many small files cold (`cp -r`, `tar`, `rsync --checksum`, `grep -r`, a
/// loop over a directory) waits for the disk at every file. Such programs open a directory's
/// files in its listing's order (names sorted, as the tracker lists them); when this mount sees
/// opens for reading follow that order (from the first file on), it has the next files' layouts
/// asked for and their first bytes read off the local disk in the background
/// (`LocalReplicas.warm`), as readahead does within a file: the window starts at 4 files and
/// doubles while the opens stay in order, up to 16, and is topped up when the reader is half a
/// window from its end.
///
/// Only hints are used (the directory's cached listing, where each file's first chunk was last
/// seen or what the layout asked for ahead says): a wrong guess costs a small read and a
/// tracker query nobody asked for, never a wrong byte. Opens that
/// jump about warm nothing; walks that only look at names (`ls -l`, `stat`, `rsync` with
/// nothing to copy) open nothing and so read nothing.
final class SiblingReadAhead: @unchecked Sendable {
    static let firstWindow = 4, maxWindow = 16
    /// Bytes warmed of each file ahead: a small file whole, the start of a larger one (whose
    /// own read-ahead takes over once it is read).
    static let bytesPerFile: Int64 = 128 << 10
    static let maxDirectories = 64

    private struct Walk {
        /// The directory's regular files, in name order, and where each is in it.
        let order: [Ino]
        let position: [Ino: Int]
        /// The file opened last, how many opens in a row followed the order, and the last
        /// file warmed so far. An open of the directory's first file counts as following the
        /// order: a tree walked in order has many directories of a few files each.
        var last = -1, run = 0, warmedThrough = -1
    }
    private let lock = NSLock()
    private var walks: [Ino: Walk] = [:]

    /// `ino` is being opened for reading: the files to warm now, in order (none unless this
    /// open follows the one before it in its directory's order).
    func opened(_ ino: Ino, listings: DirectoryCache) -> [Ino] {
        guard let dir = listings.directory(of: ino) else { return [] }
        // First open here, or the file is newer than the order taken: the order is taken
        // (again) from the listing, outside the lock (it sorts the names).
        let known = lock.withLock { walks[dir]?.position[ino] != nil }
        let order = known ? nil : listings.files(in: dir)
        guard known || order != nil else { return [] }
        return lock.withLock {
            var walk = walks[dir]
            if let order, walk?.position[ino] == nil {
                walk = Walk(order: order, position: Dictionary(zip(order, order.indices), uniquingKeysWith: { a, _ in a }))
            }
            guard var w = walk, let i = w.position[ino] else { return [] }
            var next: [Ino] = []
            if i == w.last + 1 {
                w.run += 1
                // Topped up when the reader is half a window from the last file warmed, a
                // window at a time: one background batch per several opens, not one each.
                let window = min(Self.maxWindow, Self.firstWindow << min(w.run - 1, 4))
                let end = min(w.order.count - 1, i + window)
                let start = max(w.warmedThrough, i) + 1
                if w.warmedThrough - i <= window / 2, start <= end {
                    next = Array(w.order[start...end])
                    w.warmedThrough = end
                }
            } else if i != w.last {
                w.run = 0
                w.warmedThrough = i
            }
            w.last = i
            if walks.count >= Self.maxDirectories, walks[dir] == nil { walks.removeAll() }
            walks[dir] = w
            return next
        }
    }
}

/// Layout queries sent ahead of opens (`ClusterFS.fetchLayoutsAhead`) and not answered yet:
/// what of the pipeline's backlog is the read-ahead's own, not changes to wait behind.
final class LayoutQueriesAhead: Sendable {
    private let outstanding = Atomic<Int>(0)
    var count: Int { outstanding.load(ordering: .relaxed) }
    func began() { outstanding.add(1, ordering: .relaxed) }
    func ended() { outstanding.subtract(1, ordering: .relaxed) }
}
