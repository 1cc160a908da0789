import CCurl
import Foundation
import Synchronization

/// An HTTP response: status, headers (lower-cased names) and, unless streamed, the body.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]
    public var isSuccess: Bool { (200..<300).contains(status) }
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// A transfer that did not get an HTTP answer at all (connection refused, timeout…).
public struct TransferError: Error, Sendable, CustomStringConvertible {
    public let url: String
    public let reason: String
    public init(url: String, reason: String) { self.url = url; self.reason = reason }
    public var description: String { "\(url): \(reason)" }
}

/// Blocking HTTP/1.1 over libcurl. Easy handles are pooled, so connections to storage nodes
/// stay alive across requests. Call it from threads that may block (FUSE workers, the CLI,
/// or through `BlockingPool` from async code).
public final class HTTPTransfer: Sendable {
    private struct Handle: @unchecked Sendable { let raw: UnsafeMutableRawPointer }
    private let idle = Mutex<[Handle]>([])
    private let multis = Mutex<[Handle]>([])
    public let connectTimeoutMs: Int
    /// A transfer slower than 1 KiB/s for this long is abandoned (large bodies have no total timeout).
    public let stallTimeoutSeconds: Int

    private static let globalInit: Bool = { curl_global_init(Int(CURL_GLOBAL_ALL)) == CURLE_OK }()

    public init(connectTimeoutMs: Int = 2000, stallTimeoutSeconds: Int = 10) {
        _ = Self.globalInit
        self.connectTimeoutMs = connectTimeoutMs
        self.stallTimeoutSeconds = stallTimeoutSeconds
    }

    deinit {
        for h in idle.withLock({ $0 }) { curl_easy_cleanup(h.raw) }
        for m in multis.withLock({ $0 }) { curl_multi_cleanup(m.raw) }
    }

    public static let shared = HTTPTransfer()
    /// PUT bodies up to this size are sent with the headers (curl's limit for that is 64 KiB).
    static let inlineBodyLimit = 60 << 10

    /// What to send as the request body.
    public enum Body {
        case none
        case bytes(UnsafeRawBufferPointer)
    }

    /// Performs one request. `sink`, when given, receives the body as it arrives (the returned
    /// response then has an empty body); otherwise the body is collected, up to `maxBody` bytes.
    public func perform(method: String, url: String, headers: [String: String] = [:], body: Body = .none,
                        range: ClosedRange<Int64>? = nil, maxBody: Int = 64 << 20,
                        sink: ((UnsafeRawBufferPointer) throws -> Void)? = nil) throws -> HTTPResponse {
        let handle = takeHandle()
        defer { giveBack(handle) }
        let ctx = TransferContext(sink: sink, maxBody: maxBody)
        let list = configure(handle.raw, method: method, url: url, headers: headers, body: body, range: range, context: ctx)
        defer { curl_slist_free_all(list) }
        return try response(handle.raw, curl_easy_perform(handle.raw), url: url, context: ctx)
    }

    /// One request of `performAll`.
    public struct Request {
        public var method: String
        public var url: String
        public var headers: [String: String]
        public var body: Body
        public init(method: String, url: String, headers: [String: String] = [:], body: Body = .none) {
            self.method = method; self.url = url; self.headers = headers; self.body = body
        }
    }

    /// Several requests at once, each answered or failed on its own. Small ones (bodies that go
    /// out with the headers) are driven together from the calling thread by one curl multi
    /// handle: a replicated small write then costs no hand-off to a helper thread and back,
    /// which on a virtual machine (a wake-up on another vCPU) costs about as much as the PUT.
    /// Larger ones each get a thread, so their copying and sending run in parallel.
    public func performAll(_ requests: [Request]) -> [Result<HTTPResponse, any Error>] {
        let small = requests.allSatisfy { r in
            if case .bytes(let b) = r.body { return b.count <= Self.inlineBodyLimit } else { return true }
        }
        guard small, requests.count > 1, let multi = takeMulti() else {
            let results = Mutex<[Result<HTTPResponse, any Error>?]>(Array(repeating: nil, count: requests.count))
            let boxed = UncheckedRequests(requests)
            Parallel.run(requests.count) { i in
                let r = boxed.list[i]
                let result = Result { try self.perform(method: r.method, url: r.url, headers: r.headers, body: r.body) }
                results.withLock { $0[i] = result }
            }
            return results.withLock { $0.map { $0! } }
        }
        var transfers: [(handle: Handle, context: TransferContext, list: UnsafeMutablePointer<curl_slist>?, added: CURLMcode)] = []
        for r in requests {
            let handle = takeHandle(), ctx = TransferContext(sink: nil, maxBody: 64 << 20)
            let list = configure(handle.raw, method: r.method, url: r.url, headers: r.headers, body: r.body, range: nil, context: ctx)
            transfers.append((handle, ctx, list, curl_multi_add_handle(multi.raw, handle.raw)))
        }
        var running: Int32 = 0
        var stuck = CURLM_OK  // the multi handle's own failure, if any: every unfinished transfer reports it
        repeat {
            stuck = curl_multi_perform(multi.raw, &running)
            if stuck == CURLM_OK, running > 0 { stuck = curl_multi_poll(multi.raw, nil, 0, 1000, nil) }
        } while stuck == CURLM_OK && running > 0
        // A multi handle that failed is not reused.
        defer { if stuck == CURLM_OK { multis.withLock { $0.append(multi) } } else { curl_multi_cleanup(multi.raw) } }
        var codes: [UnsafeMutableRawPointer: CURLcode] = [:]
        var queued: Int32 = 0
        while let m = curl_multi_info_read(multi.raw, &queued) {
            if m.pointee.msg == CURLMSG_DONE, let h = m.pointee.easy_handle { codes[h] = m.pointee.data.result }
        }
        var out: [Result<HTTPResponse, any Error>] = []
        for (t, r) in zip(transfers, requests) {
            if t.added == CURLM_OK { curl_multi_remove_handle(multi.raw, t.handle.raw) }
            curl_slist_free_all(t.list)
            out.append(Result {
                guard t.added == CURLM_OK else {
                    throw TransferError(url: r.url, reason: "transfer could not start: \(String(cString: curl_multi_strerror(t.added)))")
                }
                guard let code = codes[t.handle.raw] else {
                    throw TransferError(url: r.url, reason: "transfer did not finish: \(String(cString: curl_multi_strerror(stuck)))")
                }
                return try response(t.handle.raw, code, url: r.url, context: t.context)
            })
            giveBack(t.handle)
        }
        return out
    }

    private func takeHandle() -> Handle { idle.withLock { $0.popLast() } ?? Handle(raw: curl_easy_init()) }

    private func giveBack(_ handle: Handle) {
        curl_easy_reset(handle.raw)
        idle.withLock { if $0.count < 64 { $0.append(handle) } else { curl_easy_cleanup(handle.raw) } }
    }

    /// A multi handle keeps the connections its transfers opened (its own cache), so they are pooled too.
    private func takeMulti() -> Handle? {
        if let m = multis.withLock({ $0.popLast() }) { return m }
        return curl_multi_init().map { Handle(raw: $0) }
    }

    /// Sets up `h` for one request; returns the header list to free once it is done.
    private func configure(_ h: UnsafeMutableRawPointer, method: String, url: String, headers: [String: String], body: Body,
                           range: ClosedRange<Int64>?, context ctx: TransferContext) -> UnsafeMutablePointer<curl_slist>? {
        if case .bytes(let buf) = body { ctx.fixed = buf }
        let ud = Unmanaged.passUnretained(ctx).toOpaque()

        ccurl_setopt_string(h, CURLOPT_URL, url)
        ccurl_setopt_long(h, CURLOPT_NOSIGNAL, 1)
        ccurl_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, connectTimeoutMs)
        ccurl_setopt_long(h, CURLOPT_LOW_SPEED_LIMIT, 1024)
        ccurl_setopt_long(h, CURLOPT_LOW_SPEED_TIME, stallTimeoutSeconds)
        ccurl_setopt_long(h, CURLOPT_TCP_NODELAY, 1)
        ccurl_setopt_fn(h, CURLOPT_WRITEFUNCTION, transferWriteCallback)
        ccurl_setopt_ptr(h, CURLOPT_WRITEDATA, ud)
        ccurl_setopt_fn(h, CURLOPT_HEADERFUNCTION, transferHeaderCallback)
        ccurl_setopt_ptr(h, CURLOPT_HEADERDATA, ud)

        // A small PUT body goes out with the request's headers, in one send (and one read on
        // the node) instead of a send per part; curl rewinds it itself for a retry.
        var inline = false
        if method == "PUT", case .bytes(let buf) = body, buf.count <= Self.inlineBodyLimit, let base = buf.baseAddress {
            ccurl_setopt_string(h, CURLOPT_CUSTOMREQUEST, "PUT")
            ccurl_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(buf.count))
            ccurl_setopt_ptr(h, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: base))
            inline = true
        } else {
            Self.setMethod(h, method, body: body, context: ud)
        }
        if let range { ccurl_setopt_string(h, CURLOPT_RANGE, "\(range.lowerBound)-\(range.upperBound)") }

        var list: UnsafeMutablePointer<curl_slist>? = nil
        // No 100-continue round trip: our nodes answer errors early anyway.
        list = curl_slist_append(list, "Expect:")
        if inline { list = curl_slist_append(list, "Content-Type:") }  // not a form post
        for (k, v) in headers { list = curl_slist_append(list, "\(k): \(v)") }
        ccurl_setopt_ptr(h, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(list))
        return list
    }

    /// The outcome of a finished transfer on `h`.
    private func response(_ h: UnsafeMutableRawPointer, _ rc: CURLcode, url: String, context ctx: TransferContext) throws -> HTTPResponse {
        if let error = ctx.error { throw error }
        guard rc == CURLE_OK else {
            throw TransferError(url: url, reason: String(cString: curl_easy_strerror(rc)))
        }
        var status = 0
        ccurl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: ctx.headers, body: ctx.body)
    }

    /// The verb and, for uploads, the body through curl's read and seek callbacks.
    private static func setMethod(_ h: UnsafeMutableRawPointer, _ method: String, body: Body, context ud: UnsafeMutableRawPointer) {
        switch method {
        case "GET": break
        case "HEAD": ccurl_setopt_long(h, CURLOPT_NOBODY, 1)
        case "PUT": ccurl_setopt_long(h, CURLOPT_UPLOAD, 1)
        default:
            ccurl_setopt_string(h, CURLOPT_CUSTOMREQUEST, method)
            // curl sends a body only for uploads; the custom verb replaces the upload's PUT.
            if case .none = body {} else { ccurl_setopt_long(h, CURLOPT_UPLOAD, 1) }
        }
        switch body {
        case .none:
            if method == "PUT" { ccurl_setopt_off(h, CURLOPT_INFILESIZE_LARGE, 0) }
        case .bytes(let buf):
            ccurl_setopt_off(h, CURLOPT_INFILESIZE_LARGE, curl_off_t(buf.count))
            ccurl_setopt_fn(h, CURLOPT_READFUNCTION, transferReadCallback)
            ccurl_setopt_ptr(h, CURLOPT_READDATA, ud)
            // curl resends the body when a kept-alive connection turns out closed by the node.
            ccurl_setopt_seek_fn(h, transferSeekCallback)
            ccurl_setopt_ptr(h, CURLOPT_SEEKDATA, ud)
        }
    }

    // Conveniences.

    public func head(_ url: String) throws -> HTTPResponse { try perform(method: "HEAD", url: url) }
    public func get(_ url: String, range: ClosedRange<Int64>? = nil) throws -> HTTPResponse { try perform(method: "GET", url: url, range: range) }
    public func delete(_ url: String) throws -> HTTPResponse { try perform(method: "DELETE", url: url) }
    public func put(_ url: String, bytes: UnsafeRawBufferPointer, headers: [String: String] = [:]) throws -> HTTPResponse {
        try perform(method: "PUT", url: url, headers: headers, body: .bytes(bytes))
    }
}

/// `performAll`'s requests, handed to helper threads (their bodies point at the caller's
/// memory, which outlives the call).
private struct UncheckedRequests: @unchecked Sendable {
    let list: [HTTPTransfer.Request]
    init(_ list: [HTTPTransfer.Request]) { self.list = list }
}

/// Per-transfer state reached from libcurl's C callbacks.
final class TransferContext {
    var headers: [String: String] = [:]
    var body: [UInt8] = []
    let sink: ((UnsafeRawBufferPointer) throws -> Void)?
    let maxBody: Int
    var fixed: UnsafeRawBufferPointer?
    var fixedOffset = 0
    var error: (any Error)?

    init(sink: ((UnsafeRawBufferPointer) throws -> Void)?, maxBody: Int) { self.sink = sink; self.maxBody = maxBody }
}

private let transferWriteCallback: ccurl_data_fn = { ptr, size, nmemb, ud in
    let ctx = Unmanaged<TransferContext>.fromOpaque(ud!).takeUnretainedValue()
    let n = size * nmemb
    let buf = UnsafeRawBufferPointer(start: ptr, count: n)
    if let sink = ctx.sink {
        do { try sink(buf) } catch { ctx.error = error; return 0 }
    } else {
        if ctx.body.count + n > ctx.maxBody { return 0 }
        ctx.body.append(contentsOf: buf)
    }
    return n
}

private let transferHeaderCallback: ccurl_data_fn = { ptr, size, nmemb, ud in
    let ctx = Unmanaged<TransferContext>.fromOpaque(ud!).takeUnretainedValue()
    let n = size * nmemb
    let line = UnsafeRawBufferPointer(start: ptr, count: n)
    if line.starts(with: "HTTP/".utf8) { ctx.headers = [:] }  // a new response (after a 100 or a redirect)
    if let header = HeaderLine(line) { ctx.headers[header.name] = header.value }
    return n
}

/// One `Name: value` header line, parsed from bytes (this runs for every header of every
/// transfer: Foundation's trimming and case mapping cost more than the small PUT itself).
struct HeaderLine {
    let name: String
    let value: String

    init?(_ line: UnsafeRawBufferPointer) {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D || b == 0x0A }
        var start = colon + 1, end = line.count
        while start < end, isSpace(line[start]) { start += 1 }
        while end > start, isSpace(line[end - 1]) { end -= 1 }
        name = String(decoding: line[..<colon].lazy.map { (0x41...0x5A).contains($0) ? $0 + 0x20 : $0 }, as: UTF8.self)
        value = String(decoding: UnsafeRawBufferPointer(rebasing: line[start..<end]), as: UTF8.self)
    }
}

private let transferReadCallback: ccurl_data_fn = { ptr, size, nmemb, ud in
    let ctx = Unmanaged<TransferContext>.fromOpaque(ud!).takeUnretainedValue()
    let capacity = size * nmemb
    if let fixed = ctx.fixed {
        let n = min(capacity, fixed.count - ctx.fixedOffset)
        if n > 0, let base = fixed.baseAddress { memcpy(ptr!, base + ctx.fixedOffset, n) }
        ctx.fixedOffset += n
        return n
    }
    return 0
}

private let transferSeekCallback: ccurl_seek_fn = { ud, offset, origin in
    let ctx = Unmanaged<TransferContext>.fromOpaque(ud!).takeUnretainedValue()
    guard let fixed = ctx.fixed, origin == SEEK_SET, offset >= 0, offset <= fixed.count else { return CURL_SEEKFUNC_CANTSEEK }
    ctx.fixedOffset = Int(offset)
    return CURL_SEEKFUNC_OK
}
