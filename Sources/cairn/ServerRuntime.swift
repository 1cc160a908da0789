import CSys
import Foundation
import NIOCore
import NIOPosix

/// How the server processes run Swift tasks.
enum ServerRuntime {
    /// Subcommands that are SwiftNIO servers (the tracker's protocol server, the storage node's
    /// Hummingbird). Their request handlers are tasks.
    static let servers: Set<String> = ["tracker", "storage"]

    /// In a server, Swift's global executor becomes SwiftNIO's event loops: a request's task then
    /// resumes on the loop its bytes arrived on instead of waking a thread of Swift's own pool and
    /// hopping back to the loop to answer. On this 2-core machine those wake-ups were a third of
    /// a storage node's CPU per small PUT. Blocking work keeps going to `BlockingPool`.
    /// Must run on the main thread before the first task is enqueued (NIO's rule).
    static func prepare(arguments: [String]) {
        guard arguments.count > 1, servers.contains(arguments[1]) else { return }
        MallocTuning.apply()
        // False (another hook is installed, or this Swift is outside NIO's supported range):
        // tasks stay on Swift's own pool, as before; only slower.
        _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
    }
}

/// glibc's allocator, set for the long-running processes (mount, tracker, storage node).
enum MallocTuning {
    /// - Blocks of 8 MiB and more (a mount's 16 MiB chunk buffers) come from mmap and go back
    ///   to the system when freed: glibc's default raises its mmap threshold after the first
    ///   such free, after which every FUSE thread's arena kept freed chunk buffers (~480 MB
    ///   resident in a mount after one large copy).
    /// - Freed memory below 64 MiB at the top of an arena stays there instead of going back
    ///   with `madvise` at once (a fixed mmap threshold also fixes the trim threshold at
    ///   128 KiB) and being faulted in again: a mount's 4 MiB read segments (−45 % on cold
    ///   sequential reads), and the tracker's SQLite statements that open a temporary b-tree,
    ///   whose page cache was freed and returned once per create (an `madvise`, page faults
    ///   and TLB shootdowns per request).
    /// - One arena per core, at least two (glibc's default is eight per core). Each arena keeps
    ///   up to the trim threshold of freed memory, and a mount's FUSE and read-ahead threads each
    ///   took their own: random reads from 4 processes took a mount to 430–448 MB, nearly all
    ///   freed 4 MiB segments, against 264–280 MB with two arenas (reads no slower).
    static func apply() {
        _ = mallopt(M_MMAP_THRESHOLD, 8 << 20)
        _ = mallopt(M_TRIM_THRESHOLD, 64 << 20)
        _ = mallopt(M_ARENA_MAX, Int32(max(2, ProcessInfo.processInfo.activeProcessorCount)))
    }
}
