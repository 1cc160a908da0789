import CairnMetadata
import Foundation
import CairnProtocol
import Logging
import NIOCore
import NIOPosix
import Synchronization

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

/// Answers one connection's request lines in order: one at a time, except that consecutive
/// gatherable changes (a mount's sets and unlinks, sent without waiting) start together so
/// they share transactions, each once the one before has its place in their order; replies
/// always go out in request order. A request that needs no other thread (noop, cached reads)
/// is answered on the connection's own event loop, with no thread hop: its task runs there.
/// While one is answered, later lines wait in `pending`; past `maxPending` the handler stops
/// reading the socket until the queue drains, and while replies wait unread (the channel is
/// not writable) it answers nothing more, so a client pipelining without end cannot fill the
/// tracker's memory.
///
/// This replaced a per-connection task over `NIOAsyncChannel`: a `noop` then cost the tracker
/// 27 µs of CPU, now 20 (session 19); that loop's profile had put much of the difference in
/// the Swift runtime's generic-metadata lookups behind the async sequence and writer.
final class RequestHandler: ChannelDuplexHandler {
    typealias InboundIn = InboundLine
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let maxPending = 256
    /// Changes a client sends without waiting for their answers (a mount's custom-metadata sets
    /// and unlinks, and what it does under a create delegation: creates, first commits,
    /// setattrs, renames): consecutive ones are started together, each once the one before has
    /// its place in the order of transactions, so they share transactions (see
    /// `WriteGathering`). A line is gatherable when its handler reads nothing an earlier line
    /// of its transaction may have written before its own write (which sees them all): a
    /// create only with its reserved `ino=`, a commit only as a first commit (`fresh=1`, which
    /// names its class), a rename only naming its inode.
    static let gatherable: [(prefix: [UInt8], marker: [UInt8]?)] = [
        (Array("meta_set ".utf8), nil), (Array("fs_unlink ".utf8), nil), (Array("fs_setattr ".utf8), nil),
        (Array("fs_create ".utf8), Array("&ino=".utf8)), (Array("commit_file ".utf8), Array("&fresh=1".utf8)),
        (Array("fs_rename ".utf8), Array("&ino=".utf8)),
    ]
    /// Lines started together at most (a transaction's worth, `GroupCommit.maxBatch`).
    static let maxGathered = 64

    private let dispatcher: Dispatcher
    private let logger: Logger
    private let executor: EventLoopTaskExecutor
    private let link: WatchLink
    /// Each line with whether it is gatherable, decided once as it arrives (`answerNext` looks
    /// at the first waiting line each time a line finishes), and how many lines it stands for
    /// (lines folded into it, `QuietFolding`: each gets a reply, `Dispatcher.answer`).
    private var pending = CircularBuffer<(line: InboundLine, gatherable: Bool, copies: Int)>()
    /// Lines folded into one at most.
    static let maxFolded = 64
    /// Lines started and not answered yet; more than one only while all of them are gatherable.
    private var inFlight = 0
    private var inFlightGatherable = false
    private let gathering = ConnectionGathering()
    /// Replies go out in line order: lines are numbered as they start, and a reply that is
    /// ready before an earlier line's waits here.
    private var nextLine = 0, nextReply = 0
    private var finished: [Int: [UInt8]] = [:]
    /// Replies written and not flushed yet: one flush, after the loop's queued work, sends all
    /// of a gathered batch's replies (they are answered together, after one COMMIT) in one
    /// write, and wakes a pipelining client's reader once rather than once per line.
    private var flushScheduled = false
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

    /// Lines are queued as they are read and started once the read is done, so the lines of
    /// one read may be folded first.
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        if case .line(let next) = line, let last = pending.last, last.copies < Self.maxFolded, case .line(let before) = last.line,
           let folded = QuietFolding.fold(before, next) {
            pending[pending.index(before: pending.endIndex)] = (.line(folded), Self.isGatherable(line), last.copies + 1)
            dispatcher.stats.countFolded()
            return
        }
        pending.append((line, Self.isGatherable(line), 1))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        answerNext(context: context)
        context.fireChannelReadComplete()
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

    /// Starts answering the oldest waiting line, unless one is being answered — or, for a
    /// gatherable change after gatherable ones, unless the one before has no place yet.
    private func answerNext(context: ChannelHandlerContext) {
        // Not while replies pile up unread (the client not reading them): they wait in the socket.
        while closed || context.channel.isWritable, let (item, gatherable, copies) = pending.first {
            if inFlight > 0 {
                guard gatherable, inFlightGatherable, inFlight < Self.maxGathered, !gathering.awaitingPlace else { break }
            }
            _ = pending.popFirst()
            if readHeld, !closed, pending.count < Self.maxPending { readHeld = false; context.read() }
            let number = nextLine
            nextLine += 1
            switch item {
            case .tooLong:
                finish(number, Reply.err(ProtocolError("line_too_long", "request line longer than \(Request.maxLineBytes) bytes; ignored")).encode(), context: context)
            case .incomplete:
                finish(number, Reply.err(ProtocolError("incomplete_line", "the connection ended inside a request line (no newline); ignored")).encode(), context: context)
            case .line(let buffer):
                start(number, buffer, gatherable: gatherable, copies: copies, context: context)
            }
        }
        gathering.nextWaiting = inFlight > 0 && inFlight < Self.maxGathered && (closed || context.channel.isWritable)
            && pending.first?.gatherable == true
        if inFlight == 0, pending.isEmpty, inputEnded, !closed {
            context.flush()  // the replies a scheduled flush would send: a close drops unflushed writes
            context.close(promise: nil)
        }
    }

    private func start(_ number: Int, _ buffer: ByteBuffer, gatherable: Bool, copies: Int, context: ChannelHandlerContext) {
        inFlight += 1
        inFlightGatherable = gatherable
        let line = Array(buffer.readableBytesView), dispatcher = dispatcher, link = link, loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        // Once this line's change has its place, the next gatherable line may start.
        let placed: (any WriteGathering)? = gatherable ? gathering.started(number) {
            loop.execute { let (handler, context) = bound.value; handler.answerNext(context: context) }
        } : nil
        Task(executorPreference: executor) {
            let answer = await MetadataStore.$gathering.withValue(placed) { await dispatcher.answer(line: line, connection: link, folded: copies - 1) }
            @Sendable func done() {
                let (handler, context) = bound.value
                handler.inFlight -= 1
                handler.gathering.settle(number)  // a line that wrote nothing has its place too
                handler.finish(number, answer ?? [], context: context)
                handler.answerNext(context: context)
            }
            // The task runs on the connection's loop, so this is almost always there already.
            if loop.inEventLoop { done() } else { loop.execute(done) }
        }
    }

    /// Sends line `number`'s reply (none when empty; with its folded lines' replies) once
    /// every earlier line's has gone.
    private func finish(_ number: Int, _ bytes: [UInt8], context: ChannelHandlerContext) {
        finished[number] = bytes
        while let ready = finished.removeValue(forKey: nextReply) {
            if !ready.isEmpty { reply(ready, context: context) }
            nextReply += 1
        }
    }

    private static func isGatherable(_ item: InboundLine) -> Bool {
        guard case .line(let buffer) = item else { return false }
        // On the raw bytes: the generic collection searches cost more than the request itself.
        return buffer.withUnsafeReadableBytes { line in
            gatherable.contains { g in
                guard line.count > g.prefix.count, memcmp(line.baseAddress!, g.prefix, g.prefix.count) == 0 else { return false }
                guard let marker = g.marker else { return true }
                return contains(line, marker)
            }
        }
    }

    private static func contains(_ haystack: UnsafeRawBufferPointer, _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count, let first = needle.first else { return false }
        var i = 0
        while i <= haystack.count - needle.count {
            if haystack[i] == first, memcmp(haystack.baseAddress! + i, needle, needle.count) == 0 { return true }
            i += 1
        }
        return false
    }

    private func reply(_ bytes: [UInt8], context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        context.write(wrapOutboundOut(ByteBuffer(bytes: bytes)), promise: nil)
        guard !flushScheduled else { return }
        flushScheduled = true
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = bound.value
            handler.flushScheduled = false
            context.flush()
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

/// What a connection's handler tells its gatherable changes' writes (see `WriteGathering`):
/// whether a started line's write has no place in the order of transactions yet, or another
/// line is waiting to start. Read by a leading write on whatever thread runs it.
final class ConnectionGathering: Sendable {
    private struct State {
        var unplaced: Int?
        var nextWaiting = false
    }
    private let state = Mutex(State())

    var awaitingPlace: Bool { state.withLock { $0.unplaced != nil } }
    var nextWaiting: Bool {
        get { state.withLock { $0.nextWaiting } }
        set { state.withLock { $0.nextWaiting = newValue } }
    }
    var moreComing: Bool { state.withLock { $0.unplaced != nil || $0.nextWaiting } }

    /// Line `number` starts; `placed` runs once its write has its place.
    func started(_ number: Int, placed: @escaping @Sendable () -> Void) -> any WriteGathering {
        state.withLock { $0.unplaced = number }
        return LineGathering(connection: self, line: number, placed: placed)
    }

    /// True when `line` was the one without a place (it has one now).
    @discardableResult
    func settle(_ line: Int) -> Bool {
        state.withLock { s in
            guard s.unplaced == line else { return false }
            s.unplaced = nil
            return true
        }
    }
}

/// One gatherable line's view of its connection, for its writes.
private struct LineGathering: WriteGathering {
    let connection: ConnectionGathering
    let line: Int
    let placed: @Sendable () -> Void

    func joined() { if connection.settle(line) { placed() } }
    var moreComing: Bool { connection.moreComing }
}
