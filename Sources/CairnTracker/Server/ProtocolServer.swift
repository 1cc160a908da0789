import CairnProtocol
import Logging
import NIOCore
import NIOPosix

/// The tracker's server: TCP, and a Unix socket when configured, for clients on this machine
/// (a mount above all: sending and receiving over TCP loopback was a seventh of its CPU in an
/// rsync profile). One task per connection reads lines and answers them in order (pipelined
/// requests get their replies in request order, as MogileFS does).
struct ProtocolServer {
    let host: String
    let port: Int
    /// Also listen here (a stale socket file from an earlier run is replaced).
    let socketPath: String?
    let dispatcher: Dispatcher
    let logger: Logger

    typealias Listener = NIOAsyncChannel<NIOAsyncChannel<InboundLine, ByteBuffer>, Never>

    func run(onBound: @Sendable (Int) -> Void = { _ in }) async throws {
        let tcp = try await bootstrap()
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: host, port: port, childChannelInitializer: Self.lines)
        var unix: Listener?
        if let socketPath {
            unix = try await bootstrap().bind(unixDomainSocketPath: socketPath, cleanupExistingSocketFile: true, childChannelInitializer: Self.lines)
        }
        onBound(tcp.channel.localAddress?.port ?? port)
        try await withThrowingDiscardingTaskGroup { group in
            if let unix { group.addTask { try await accept(unix) } }
            try await accept(tcp)
        }
    }

    private func bootstrap() -> ServerBootstrap {
        ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            // A client may send its requests and shut its side; it still gets every reply.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
    }

    @Sendable private static func lines(_ channel: any Channel) -> EventLoopFuture<NIOAsyncChannel<InboundLine, ByteBuffer>> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineFraming(maxLength: Request.maxLineBytes)))
            return try NIOAsyncChannel<InboundLine, ByteBuffer>(wrappingChannelSynchronously: channel,
                                                                configuration: .init(isOutboundHalfClosureEnabled: true))
        }
    }

    private func accept(_ listener: Listener) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            try await listener.executeThenClose { inbound in
                for try await connection in inbound {
                    // Run the connection's loop on its own event loop: a request that needs no
                    // other thread (noop, cached reads) is answered without a single thread hop.
                    let executor = EventLoopTaskExecutor(connection.channel.eventLoop)
                    group.addTask(executorPreference: executor) { await serve(connection) }
                }
            }
        }
    }

    func serve(_ connection: NIOAsyncChannel<InboundLine, ByteBuffer>) async {
        let link = WatchLink(channel: connection.channel)
        defer { if let id = link.watcher { dispatcher.watchers.remove(id) } }
        do {
            try await connection.executeThenClose { inbound, outbound in
                for try await item in inbound {
                    let reply: [UInt8]
                    switch item {
                    case .tooLong:
                        reply = Reply.err(ProtocolError("line_too_long", "request line longer than \(Request.maxLineBytes) bytes; ignored")).encode()
                    case .line(let buffer):
                        guard let r = await dispatcher.answer(line: Array(buffer.readableBytesView), connection: link) else { continue }
                        reply = r
                    }
                    try await outbound.write(ByteBuffer(bytes: reply))
                }
            }
        } catch {
            logger.debug("connection ended: \(error)")
        }
    }
}

/// Lets Swift tasks run on a NIO event loop thread.
final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    let loop: any EventLoop
    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        loop.execute { unowned.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
