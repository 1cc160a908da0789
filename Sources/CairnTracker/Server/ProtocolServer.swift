import CairnProtocol
import Logging
import NIOCore
import NIOPosix

/// The tracker's server: TCP, and a Unix socket when configured, for clients on this machine
/// (a mount above all: sending and receiving over TCP loopback was a seventh of its CPU in an
/// rsync profile). Each connection's lines are answered in order by its `RequestHandler`
/// (pipelined requests get their replies in request order, as MogileFS does).
struct ProtocolServer {
    let host: String
    let port: Int
    /// Also listen here (a stale socket file from an earlier run is replaced).
    let socketPath: String?
    let dispatcher: Dispatcher
    let logger: Logger

    func run(onBound: @Sendable (Int) -> Void = { _ in }) async throws {
        let tcp = try await bootstrap()
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: host, port: port).get()
        var listeners = [tcp]
        if let socketPath {
            do {
                listeners.append(try await bootstrap().bind(unixDomainSocketPath: socketPath, cleanupExistingSocketFile: true).get())
            } catch {
                tcp.close(promise: nil)
                throw error
            }
        }
        onBound(tcp.localAddress?.port ?? port)
        // Serves until cancelled (the tracker stopping), then stops listening.
        let all = listeners
        try await withTaskCancellationHandler {
            for listener in all { try await listener.closeFuture.get() }
        } onCancel: {
            for listener in all { listener.close(promise: nil) }
        }
    }

    private func bootstrap() -> ServerBootstrap {
        let dispatcher = dispatcher, logger = logger
        return ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            // A client may send its requests and shut its side; it still gets every reply.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineFraming(maxLength: Request.maxLineBytes)))
                    try channel.pipeline.syncOperations.addHandler(RequestHandler(dispatcher: dispatcher, logger: logger, channel: channel))
                }
            }
    }
}

/// Answers one connection's request lines, one at a time and in order. A request that needs
/// no other thread (noop, cached reads) is answered on the connection's own event loop, with
/// no thread hop: its task runs there. While one is answered, later lines wait in `pending`;
/// past `maxPending` the handler stops reading the socket until the queue drains, and while
/// replies wait unread (the channel is not writable) it answers nothing more, so a client
/// pipelining without end cannot fill the tracker's memory.
///
/// This replaced a per-connection task over `NIOAsyncChannel`: a `noop` then cost the tracker
/// 27 µs of CPU, now 20 (session 19); that loop's profile had put much of the difference in
/// the Swift runtime's generic-metadata lookups behind the async sequence and writer.
final class RequestHandler: ChannelDuplexHandler {
    typealias InboundIn = InboundLine
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let maxPending = 256

    private let dispatcher: Dispatcher
    private let logger: Logger
    private let executor: EventLoopTaskExecutor
    private let link: WatchLink
    private var pending = CircularBuffer<InboundLine>()
    private var answering = false
    /// The client shut its side: once every line is answered, the connection closes.
    private var inputEnded = false
    /// A `read` held back while `pending` is full.
    private var readHeld = false
    /// The connection closed (the client went, or a write to it failed): the lines it left are
    /// still answered, unheard — a client may count a change as made once the socket has it
    /// (a mount's custom-metadata sets, see `TrackerPipeline`); NIO reads what the socket holds
    /// before it closes a connection whose write failed.
    private var closed = false

    init(dispatcher: Dispatcher, logger: Logger, channel: any Channel) {
        self.dispatcher = dispatcher
        self.logger = logger
        self.executor = EventLoopTaskExecutor(channel.eventLoop)
        self.link = WatchLink(channel: channel)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        pending.append(unwrapInboundIn(data))
        answerNext(context: context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            inputEnded = true
            answerNext(context: context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let id = link.watcher { dispatcher.watchers.remove(id) }
        closed = true
        answerNext(context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection ended: \(error)")
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        answerNext(context: context)
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if pending.count >= Self.maxPending { readHeld = true } else { context.read() }
    }

    /// Starts answering the oldest waiting line, unless one is being answered.
    private func answerNext(context: ChannelHandlerContext) {
        // Not while replies pile up unread (the client not reading them): they wait in the socket.
        while !answering, closed || context.channel.isWritable, let item = pending.popFirst() {
            if readHeld, !closed, pending.count < Self.maxPending { readHeld = false; context.read() }
            switch item {
            case .tooLong:
                reply(Reply.err(ProtocolError("line_too_long", "request line longer than \(Request.maxLineBytes) bytes; ignored")).encode(), context: context)
            case .incomplete:
                reply(Reply.err(ProtocolError("incomplete_line", "the connection ended inside a request line (no newline); ignored")).encode(), context: context)
            case .line(let buffer):
                answering = true
                let line = Array(buffer.readableBytesView), dispatcher = dispatcher, link = link, loop = context.eventLoop
                let bound = NIOLoopBound((self, context), eventLoop: loop)
                Task(executorPreference: executor) {
                    let answer = await dispatcher.answer(line: line, connection: link)
                    @Sendable func finish() {
                        let (handler, context) = bound.value
                        handler.answering = false
                        if let answer { handler.reply(answer, context: context) }
                        handler.answerNext(context: context)
                    }
                    // The task runs on the connection's loop, so this is almost always there already.
                    if loop.inEventLoop { finish() } else { loop.execute(finish) }
                }
            }
        }
        if !answering, pending.isEmpty, inputEnded, !closed { context.close(promise: nil) }
    }

    private func reply(_ bytes: [UInt8], context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: bytes)), promise: nil)
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
