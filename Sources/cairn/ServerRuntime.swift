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
        // False (another hook is installed, or this Swift is outside NIO's supported range):
        // tasks stay on Swift's own pool, as before; only slower.
        _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
    }
}
