import NIOCore

/// One inbound protocol line, or the marker that a line exceeded the limit (it is skipped
/// up to its newline so the connection stays in sync and keeps serving), or that the
/// connection ended inside a line.
enum InboundLine: Sendable {
    case line(ByteBuffer)
    case tooLong
    case incomplete
}

/// Splits the byte stream into `\n`-terminated lines (a trailing `\r` is dropped later).
struct LineFraming: ByteToMessageDecoder {
    typealias InboundOut = InboundLine
    let maxLength: Int
    private var discarding = false

    init(maxLength: Int) { self.maxLength = maxLength }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let nl = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > maxLength {
                if !discarding { context.fireChannelRead(wrapInboundOut(.tooLong)) }
                discarding = true
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            }
            return .needMoreData
        }
        let length = nl - buffer.readerIndex
        let line = buffer.readSlice(length: length)!
        buffer.moveReaderIndex(forwardBy: 1)
        if discarding {
            discarding = false
            return .continue
        }
        if length > maxLength {
            context.fireChannelRead(wrapInboundOut(.tooLong))
        } else {
            context.fireChannelRead(wrapInboundOut(.line(line)))
        }
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A last line without its newline is not run: it may be the front of a request whose
        // sender was killed while writing it (a value cut short would be stored as sent).
        if buffer.readableBytes > 0, !discarding { context.fireChannelRead(wrapInboundOut(.incomplete)) }
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
        return .needMoreData
    }
}
