import CairnProtocol
import Foundation

/// A blocking connection to one tracker speaking the line protocol. Not thread-safe: one
/// caller at a time (pools hand connections out), except that one thread may `send` while
/// another reads with `readLine` (a pipeline: `send` touches only the socket). On any I/O
/// error or timeout the connection is dead and must be dropped, since a late reply would
/// answer the wrong request.
public final class TrackerConnection {
    public let address: String
    private var fd: Int32 = -1
    /// Received bytes not yet returned as lines: `buffer[bufferStart...]` (a pipeline's reader
    /// gets many replies in one receive; moving the rest down after each line would cost a copy
    /// of it per line).
    private var buffer: [UInt8] = []
    private var bufferStart = 0
    /// Receive space, reused: a reply is usually a few hundred bytes.
    private var scratch = [UInt8](repeating: 0, count: 65536)

    /// `address`: HOST:PORT, or the path of a tracker's Unix socket (`cairn tracker --socket`),
    /// which a client on the tracker's machine reaches without the TCP stack.
    public init(address: String, timeoutSeconds: Int = 10) throws {
        self.address = address
        if address.hasPrefix("/") {
            fd = try Self.connectUnix(path: address, timeoutSeconds: timeoutSeconds)
            return
        }
        let (host, port) = try Self.split(address)
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &res) == 0, let first = res else {
            throw TransferError(url: address, reason: "cannot resolve tracker host \(host)")
        }
        defer { freeaddrinfo(res) }
        var lastErrno: Int32 = 0
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            let s = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
            if s >= 0 {
                Self.setTimeouts(s, seconds: timeoutSeconds)
                var one: Int32 = 1
                setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                if connect(s, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { fd = s; break }
                lastErrno = errno
                close(s)
            }
            ai = a.pointee.ai_next
        }
        guard fd >= 0 else {
            throw TransferError(url: address, reason: "cannot connect to tracker: \(String(cString: strerror(lastErrno))). Is `cairn tracker` running there?")
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Ends the connection both ways at once (the file descriptor stays open until deinit),
    /// so a thread blocked reading it returns and nothing more is sent after a line a failed
    /// `send` may have left cut short; the tracker refuses such a line.
    public func abandon() { shutdown(fd, Int32(SHUT_RDWR)) }

    /// The longest Unix socket path (`sockaddr_un` holds it with its terminating NUL); the
    /// tracker's `--socket` and `cairn up` keep to it too.
    public static let maxSocketPathBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    private static func setTimeouts(_ s: Int32, seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    private static func connectUnix(path: String, timeoutSeconds: Int) throws -> Int32 {
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count <= maxSocketPathBytes else {
            throw TransferError(url: path, reason: "tracker socket path is longer than \(maxSocketPathBytes) bytes; use HOST:PORT")
        }
        withUnsafeMutableBytes(of: &sa.sun_path) { $0.copyBytes(from: bytes) }
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { throw TransferError(url: path, reason: "cannot create a socket: \(String(cString: strerror(errno)))") }
        setTimeouts(s, seconds: timeoutSeconds)
        let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard rc == 0 else {
            let e = errno
            close(s)
            throw TransferError(url: path, reason: "cannot connect to the tracker's socket: \(String(cString: strerror(e))). Is `cairn tracker --socket \(path)` running?")
        }
        return s
    }

    static func split(_ address: String) throws -> (String, Int) {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            return (address.isEmpty ? "127.0.0.1" : address, 7001)
        }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }

    /// Sends one request and reads its reply. Tracker errors come back as `.failure`;
    /// I/O failures throw (and leave this connection unusable).
    public func call(_ command: String, _ args: [(String, String)]) throws -> Result<Args, ProtocolError> {
        try send(Request.encode(command: command, args: args))
        return Reply.parse(line: try readLine())
    }

    /// Sends raw bytes (tests use this for malformed lines).
    public func send(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw TransferError(url: address, reason: "lost the connection to the tracker while sending") }
            off += n
        }
    }

    /// Whether a line can be read now, waiting up to `timeoutMillis` for bytes (a connection
    /// the tracker also writes to unasked: a watch).
    public func lineReady(timeoutMillis: Int32) -> Bool {
        if buffer[bufferStart...].contains(10) { return true }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, timeoutMillis) > 0
    }

    /// Reads one line (without `\r\n`).
    public func readLine() throws -> [UInt8] {
        var searched = bufferStart
        while true {
            if let nl = buffer[searched...].firstIndex(of: 10) {
                let end = nl > bufferStart && buffer[nl - 1] == 13 ? nl - 1 : nl
                let line = Array(buffer[bufferStart..<end])
                bufferStart = nl + 1
                if bufferStart == buffer.count { buffer.removeAll(keepingCapacity: true); bufferStart = 0 }
                return line
            }
            searched = buffer.count
            if bufferStart > 0 {
                // A partial line is left: move it down before more is appended.
                buffer.removeSubrange(..<bufferStart)
                searched -= bufferStart
                bufferStart = 0
            }
            let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 {
                throw TransferError(url: address, reason: n == 0 ? "the tracker closed the connection" : "no answer from the tracker in time")
            }
            buffer += scratch[..<n]
        }
    }
}
