import CairnCore
import CairnDevice
import CairnProtocol
import CairnTransfer
import Foundation
import Synchronization
import HTTPTypes
import Hummingbird
import Logging

/// How a storage node runs.
public struct StorageConfig: Sendable {
    public var host: String
    public var port: Int
    public var dataDir: String
    public var name: String
    /// Trackers to register with (none: manual `cairn admin host/device add`).
    public var trackers: [String]
    /// Cluster secret: writes need a tracker-signed token when set.
    public var secret: String?
    /// Devices to create at first registration when the data folder has none.
    public var newDevices: Int
    /// A device refuses writes (507) when fewer bytes than this would stay free.
    public var reserveBytes: Int64
    /// Background scrub rate in bytes per second (0: no scrubbing).
    public var scrubBytesPerSecond: Int64
    /// Seconds from the start of one scrub pass to the start of the next.
    public var scrubInterval: Double
    /// Size each device reports instead of its file system's (devices sharing one disk).
    public var capacityBytes: Int64?
    /// Longest time a deferred-durability write (the mount's) waits for its flush, in seconds.
    public var flushInterval: Double

    public init(host: String, port: Int, dataDir: String, name: String, trackers: [String], secret: String?,
                newDevices: Int = 1, reserveBytes: Int64 = 64 << 20, scrubBytesPerSecond: Int64 = 16 << 20,
                scrubInterval: Double = 86400, capacityBytes: Int64? = nil, flushInterval: Double = 2) {
        self.host = host; self.port = port; self.dataDir = dataDir; self.name = name; self.trackers = trackers
        self.secret = secret; self.newDevices = newDevices; self.reserveBytes = reserveBytes
        self.scrubBytesPerSecond = scrubBytesPerSecond; self.scrubInterval = scrubInterval; self.capacityBytes = capacityBytes
        self.flushInterval = flushInterval
    }
}

/// A storage node: an HTTP/1.1 keep-alive server over local devices (`DATA/dev<N>`).
/// PUT (streamed to a temp file, fsynced, renamed; with `Cairn-Durability: deferred`, fsynced by
/// the next flush instead), GET/HEAD with single ranges, DELETE,
/// MogileFS's usage file, a JSON status, and node-to-node copy for replication.
public final class StorageNode: Sendable {
    public let config: StorageConfig
    let folders: DeviceFolders
    let meter: UsageMeter
    let scrubber: Scrubber
    let deferredFlush: DeferredFlush
    let logger: Logger
    /// The data folder as an absolute path and the token proving it to local readers (`LocalReadMarker`).
    let absoluteDataDir: String
    let localToken = LocalReadMarker.newToken()
    /// Requests for blobs by method, since start (`/_status`): what the node's clients ask of it.
    let blobRequests = Mutex<[String: Int]>([:])

    public init(config: StorageConfig) {
        self.config = config
        self.folders = DeviceFolders(root: config.dataDir)
        self.meter = UsageMeter(capacity: config.capacityBytes)
        self.scrubber = Scrubber(bytesPerSecond: config.scrubBytesPerSecond, passInterval: config.scrubInterval)
        self.deferredFlush = DeferredFlush(interval: config.flushInterval)
        self.absoluteDataDir = URL(fileURLWithPath: config.dataDir).standardizedFileURL.path
        var logger = Logger(label: "cairn.storage.\(config.name)")
        logger.logLevel = .info
        self.logger = logger
    }

    public func run() async throws {
        try FileManager.default.createDirectory(atPath: config.dataDir, withIntermediateDirectories: true)
        do { try LocalReadMarker.write(token: localToken, dataDir: absoluteDataDir) } catch {
            logger.warning("cannot write \(LocalReadMarker.fileName) in \(absoluteDataDir) (\(error)); mounts on this machine will read over HTTP")
        }
        if config.capacityBytes == nil {
            do { try LocalWriteGrant(node: config.name, reserveBytes: config.reserveBytes, secret: config.secret).write(dataDir: absoluteDataDir) } catch {
                logger.warning("cannot write \(LocalWriteGrant.fileName) in \(absoluteDataDir) (\(error)); mounts on this machine will write over HTTP")
            }
        } else {
            LocalWriteGrant.remove(dataDir: absoluteDataDir)
        }
        let responder = CallbackResponder<BasicRequestContext> { request, _ in await self.respond(request) }
        let app = Application(responder: responder,
                              configuration: .init(address: .hostname(config.host, port: config.port), serverName: "cairn-storage"),
                              onServerRunning: { _ in self.logger.info("storage node \(self.config.name) listening on \(self.config.host):\(self.config.port), data in \(self.config.dataDir)") },
                              logger: logger)
        if !config.trackers.isEmpty {
            Task.detached { await self.keepRegistered() }
        }
        let scrubber = self.scrubber, folders = self.folders
        let stop = StopFlag()
        Thread.detachNewThread { scrubber.run(folders: folders, isCancelled: { stop.isSet }) }
        let logger = self.logger, name = config.name
        Thread.detachNewThread {
            StaleTemporaries.sweep(folders: folders, isCancelled: { stop.isSet }) { device, done in
                if done.count > 0 {
                    logger.notice("\(name): removed \(done.count) unfinished temporary files (\(done.bytes) bytes) from device \(device), left by a writer that stopped mid-write over an hour ago")
                }
                if !done.failures.isEmpty {
                    logger.warning("\(name): cannot remove \(done.failures.count) abandoned temporary files on device \(device), which keep their space: \(done.failures.prefix(5).joined(separator: "; ")); check the folder's permissions")
                }
            }
        }
        let flush = deferredFlush
        Thread.detachNewThread {
            flush.run(isCancelled: { stop.isSet }) { failed in
                logger.error("\(name) could not make the mount's recent writes durable: \(failed.joined(separator: "; ")); check the disk")
            }
        }
        defer { stop.set(); flush.flush() }
        try await app.runService()
    }

    // MARK: registration

    /// Announces this node to a tracker; retried until one answers, so nodes may start first.
    /// Then a heartbeat every 10 s re-announces it to a tracker that lost it (a rebuilt database).
    func keepRegistered() async {
        var warned = false
        var registered = false
        while !Task.isCancelled {
            do {
                try await BlockingPool.run { [registered] in try self.register(heartbeat: registered) }
                registered = true
                warned = false
                try? await Task.sleep(for: .seconds(10))
            } catch {
                if !warned { logger.warning("cannot register with tracker \(config.trackers.joined(separator: ",")): \(error); retrying every 2 s") }
                warned = true
                try? await Task.sleep(for: .seconds(2))
            }
        }
    }

    func register(heartbeat: Bool = false) throws {
        var lastError: (any Error)?
        for tracker in config.trackers {
            do {
                let conn = try TrackerConnection(address: tracker)
                let existing = folders.deviceIDs()
                let reply = try conn.call("register_node", [
                    ("name", config.name), ("ip", config.host), ("port", String(config.port)),
                    ("devices", existing.map(String.init).joined(separator: ",")),
                    ("new_devices", existing.isEmpty ? String(config.newDevices) : "0"),
                    ("heartbeat", heartbeat ? "1" : "0"),
                ]).get()
                if heartbeat && (reply["new_devices"] ?? "").isEmpty && reply["hostid"] != nil { return }
                let fresh = (reply["new_devices"] ?? "").split(separator: ",").compactMap { DeviceID($0) }
                for id in fresh { try folders.create(id) }
                if !fresh.isEmpty {
                    // Announce again so the tracker measures the new folders right away.
                    _ = try conn.call("register_node", [
                        ("name", config.name), ("ip", config.host), ("port", String(config.port)),
                        ("devices", folders.deviceIDs().map(String.init).joined(separator: ",")), ("new_devices", "0"),
                    ]).get()
                }
                logger.info("registered with tracker \(tracker) as host \(reply["hostid"] ?? "?"), devices \(folders.deviceIDs())")
                return
            } catch { lastError = error }
        }
        throw lastError ?? TransferError(url: "", reason: "no tracker configured")
    }

    // MARK: requests

    func respond(_ request: Request) async -> Response {
        let path = request.uri.path
        if path == "/_status" { return status() }
        if let maintenance = await maintenance(request) { return maintenance }
        if path.hasSuffix("/usage"), let id = deviceOfUsagePath(path) { return usage(device: id) }
        if path.hasPrefix(ConcatenatedPath.prefix) {
            guard request.method == .get || request.method == .head, let cat = ConcatenatedPath(path: path) else {
                return text(.badRequest, "malformed concatenation path")
            }
            return serve(concatenation: cat, head: request.method == .head)
        }

        var devicePath = path
        var token: WriteToken?
        if path.hasPrefix(WriteToken.prefix) {
            guard let t = WriteToken.parse(path: path) else { return text(.badRequest, "malformed write token in \(path)") }
            token = t
            devicePath = t.devicePath
        }
        guard let (device, fid) = FidLayout.parse(devicePath: devicePath) else {
            return text(.badRequest, "\(path.prefix(200)) is not a blob path; expected /dev<N>/B/MMM/TTT/<10-digit fid>.fid")
        }
        guard folders.exists(device) else { return text(.notFound, "device \(device) is not on this node (\(config.name))") }
        let file = folders.file(device: device, fid: fid)
        blobRequests.withLock { $0[request.method.rawValue, default: 0] += 1 }

        switch request.method {
        case .get, .head:
            if token != nil { return text(.badRequest, "write tokens are for PUT and DELETE") }
            return await serve(file: file, request: request)
        case .put, .delete:
            if let denied = authorize(token: token, path: path) { return denied }
            scrubber.forget(device: device, fid: fid)
            if request.method == .delete { return delete(file: file) }
            return await store(file: file, device: device, fid: fid, request: request, algorithm: token?.algorithm ?? .none)
        default:
            return text(.methodNotAllowed, "\(request.method) is not supported; use GET, HEAD, PUT or DELETE")
        }
    }

    func authorize(token: WriteToken?, path: String) -> Response? {
        guard let secret = config.secret else { return nil }
        guard let token else { return text(.forbidden, "unsigned write refused: this cluster has a secret, so PUT and DELETE need a path from the tracker (create_open)") }
        switch token.verify(secret: secret) {
        case .valid: return nil
        case .expired: return text(.forbidden, "expired write token (expired at \(token.expiry)); ask the tracker for a new path")
        case .badSignature: return text(.forbidden, "bad write signature: the token was not made by a tracker with this cluster's secret")
        }
    }

    func deviceOfUsagePath(_ path: String) -> DeviceID? {
        let parts = path.split(separator: "/")
        guard parts.count == 2, parts[1] == "usage", parts[0].hasPrefix("dev"), let id = DeviceID(parts[0].dropFirst(3)) else { return nil }
        return folders.exists(id) ? id : nil
    }

    // MARK: PUT

    func store(file: String, device: DeviceID, fid: Fid, request: Request, algorithm: ChecksumAlgorithm) async -> Response {
        let copySource = request.headers[HTTPField.Name("Cairn-Copy-From")!]
        let durable = request.headers[HTTPField.Name("Cairn-Durability")!] != "deferred"
        if let copySource, !Self.isCopySource(copySource) {
            return text(.badRequest, "Cairn-Copy-From must be a blob URL (http://host:port/dev<N>/…/<fid>.fid), got \(copySource.prefix(200))")
        }
        // A copy request has an empty body; the size is the source's.
        let expected = copySource == nil ? request.headers[.contentLength].flatMap { Int64($0) } : nil
        if let expected, let u = meter.space(folders, id: device),
           u.free - expected < FreeSpaceReserve.bytes(total: u.total, cap: config.reserveBytes) {
            return text(Self.insufficientStorage, "device \(device) on \(config.name) is nearly full (\(u.free) bytes free); the tracker will place the blob elsewhere")
        }
        // Counted as stored from here, so concurrent PUTs see it; given back if nothing is stored.
        if let expected { meter.account(expected, on: device) }
        let response = await writeBlob(file: file, device: device, fid: fid, request: request, algorithm: algorithm, copySource: copySource,
                                       durable: durable, expected: expected)
        if let expected, response.status != .ok { meter.account(-expected, on: device) }
        return response
    }

    /// The body (or the copy source's bytes) into the blob file.
    private func writeBlob(file: String, device: DeviceID, fid: Fid, request: Request, algorithm: ChecksumAlgorithm, copySource: String?,
                           durable: Bool, expected: Int64?) async -> Response {
        if copySource == nil, let expected, expected <= Self.smallBlob {
            // Most blobs of a tree of files: the body in memory, then one blocking job creates,
            // writes and renames the file (one thread hop instead of three).
            let body: ByteBuffer
            do { body = try await request.body.collect(upTo: Int(expected)) } catch {
                return text(.badRequest, "upload to device \(device) on \(config.name) failed: \(error); nothing stored")
            }
            guard body.readableBytes == expected else {
                return text(.badRequest, "body was \(body.readableBytes) bytes, Content-Length said \(expected); nothing stored")
            }
            let write = { @Sendable () throws -> Checksum? in
                let blob = try BlobFile(path: file, algorithm: algorithm)
                do {
                    try body.withUnsafeReadableBytes { try blob.append($0) }
                    return try blob.commit(durable: durable)
                } catch { blob.discard(); throw error }
            }
            do {
                // Without an fsync the write is a create, a copy into the page cache and a
                // rename, tens of microseconds: done in place, as a hop to the blocking pool and
                // back costs more than the work. An fsync waits for the disk, off the loop.
                let sum = durable ? try await BlockingPool.run(write) : try write()
                return stored(device: device, fid: fid, size: expected, checksum: sum, durable: durable)
            } catch {
                return uploadFailed(device, error, status: .internalServerError)
            }
        }
        let blob: BlobFile
        do { blob = try BlobFile(path: file, algorithm: algorithm) }
        catch { return uploadFailed(device, error, status: .internalServerError) }
        let box = BlobBox(blob)
        do {
            if let source = copySource {
                try await copy(from: source, into: box)
            } else {
                try await receive(request.body, into: box)
            }
            if let expected, blob.written != expected {
                blob.discard()
                return text(.badRequest, "body was \(blob.written) bytes, Content-Length said \(expected); nothing stored")
            }
            let sum = try await BlockingPool.run { try box.blob.commit(durable: durable) }
            return stored(device: device, fid: fid, size: blob.written, checksum: sum, durable: durable)
        } catch {
            blob.discard()
            return uploadFailed(device, error, status: Self.status(for: error))
        }
    }

    /// What a streamed PUT that stored nothing answers: the device failed (500), the peer to
    /// copy from did not hand over the blob (502), or the body broke off (400).
    static func status(for error: any Error) -> HTTPResponse.Status {
        switch error {
        case is StorageError: .internalServerError
        case is CopySourceError: .badGateway
        default: .badRequest
        }
    }

    static let insufficientStorage = HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage")

    /// A PUT that stored nothing: 507 when the device ran out of space, else `status`.
    func uploadFailed(_ device: DeviceID, _ error: any Error, status: HTTPResponse.Status) -> Response {
        if case StorageError.full = error {
            return text(Self.insufficientStorage, "device \(device) on \(config.name) is full: \(error); nothing stored, the tracker will place the blob elsewhere")
        }
        return text(status, "upload to device \(device) on \(config.name) failed: \(error); nothing stored")
    }

    /// Bodies up to this size are stored in one blocking job.
    static let smallBlob: Int64 = 256 << 10

    /// The answer to a stored blob: its size, checksum and (with a secret) a signed receipt.
    func stored(device: DeviceID, fid: Fid, size: Int64, checksum sum: Checksum?, durable: Bool) -> Response {
        if !durable { deferredFlush.wrote(device: folders.devicePath(device)) }
        var headers = HTTPFields()
        headers[HTTPField.Name("X-Cairn-Size")!] = String(size)
        if let sum { headers[HTTPField.Name("X-Cairn-Checksum")!] = sum.description }
        if let secret = config.secret {
            headers[HTTPField.Name("X-Cairn-Receipt")!] = StoreReceipt.make(
                devicePath: FidLayout.devicePath(device: device, fid: fid), size: size, checksum: sum?.description, secret: secret)
        }
        headers[.contentLength] = "0"
        return Response(status: .ok, headers: headers)
    }

    /// Streams the body to disk in ~1 MiB batches, off the async executor.
    func receive(_ body: RequestBody, into box: BlobBox) async throws {
        var pending = ByteBuffer()
        for try await var piece in body {
            pending.writeBuffer(&piece)
            if pending.readableBytes >= 1 << 20 {
                let batch = pending
                pending = ByteBuffer()
                try await BlockingPool.run { try batch.withUnsafeReadableBytes { try box.blob.append($0) } }
            }
        }
        if pending.readableBytes > 0 {
            let batch = pending
            try await BlockingPool.run { try batch.withUnsafeReadableBytes { try box.blob.append($0) } }
        }
    }

    /// Node-to-node copy: fetch the blob from a peer into this one (replication never
    /// passes through the tracker).
    func copy(from source: String, into box: BlobBox) async throws {
        let response: CairnTransfer.HTTPResponse
        do {
            response = try await BlockingPool.run { () throws -> CairnTransfer.HTTPResponse in
                try HTTPTransfer.shared.perform(method: "GET", url: source, sink: { try box.blob.append($0) })
            }
        } catch let e as StorageError {
            throw e  // this device failed while the bytes came in
        } catch {
            throw CopySourceError(description: "copy source \(source) could not be read: \(error)")
        }
        guard response.status == 200 else { throw CopySourceError(description: "copy source \(source) answered \(response.status)") }
    }

    /// Whether a `Cairn-Copy-From` value is a blob URL (http, a device path to a fid file).
    static func isCopySource(_ source: String) -> Bool {
        source.hasPrefix("http://") && URL(string: source).map { FidLayout.parse(devicePath: $0.path) != nil } == true
    }

    // MARK: GET / HEAD

    func serve(file: String, request: Request) async -> Response {
        let fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return text(.notFound, "no such blob: \(request.uri.path)") }
        var st = stat()
        fstat(fd, &st)
        let size = Int64(st.st_size)
        var headers = HTTPFields()
        headers[.acceptRanges] = "bytes"
        if let sum = BlobFile.storedChecksum(path: file) { headers[HTTPField.Name("X-Cairn-Checksum")!] = sum }
        var start: Int64 = 0, end: Int64 = size - 1
        var status: HTTPResponse.Status = .ok
        if let rangeHeader = request.headers[.range] {
            guard let r = ByteRange.parse(rangeHeader, size: size) else {
                close(fd)
                headers[.contentRange] = "bytes */\(size)"
                headers[.contentLength] = "0"
                return Response(status: .rangeNotSatisfiable, headers: headers)
            }
            start = r.lowerBound; end = r.upperBound; status = .partialContent
            headers[.contentRange] = "bytes \(start)-\(end)/\(size)"
        }
        let length = max(0, end - start + 1)
        headers[.contentLength] = String(length)
        if request.method == .head {
            close(fd)
            return Response(status: status, headers: headers, body: ResponseBody(contentLength: Int(length)) { writer in try await writer.finish(nil) })
        }
        let handle = FileBox(fd: fd)
        let first = start
        return Response(status: status, headers: headers, body: ResponseBody(contentLength: Int(length)) { writer in
            defer { close(handle.fd) }
            var offset = first
            let stop = first + length
            while offset < stop {
                let n = Int(min(1 << 20, stop - offset))
                let at = offset
                let buffer = try await BlockingPool.run { () -> ByteBuffer in
                    var b = ByteBuffer()
                    b.reserveCapacity(n)
                    let got = try b.writeWithUnsafeMutableBytes(minimumWritableBytes: n) { p in
                        let r = pread(handle.fd, p.baseAddress, n, off_t(at))
                        if r < 0 { throw StorageError.io("read failed: \(String(cString: strerror(errno)))") }
                        return r
                    }
                    if got == 0 { throw StorageError.io("blob shrank while being read") }
                    return b
                }
                offset += Int64(buffer.readableBytes)
                try await writer.write(buffer)
            }
            try await writer.finish(nil)
        })
    }

    /// A multi-chunk file as one body: each chunk in order (local file, or fetched from its
    /// node), zeros where a sparse file has no chunk.
    func serve(concatenation cat: ConcatenatedPath, head: Bool) -> Response {
        var headers = HTTPFields()
        headers[.contentLength] = String(cat.size)
        let size = cat.size
        return Response(status: .ok, headers: headers, body: ResponseBody(contentLength: Int(size)) { writer in
            if head { try await writer.finish(nil); return }
            var offset: Int64 = 0
            for piece in cat.pieces {
                let start = Int64(piece.index) * cat.chunkSize
                guard start < size else { break }
                if start > offset { try await Self.writeZeros(count: start - offset, to: &writer); offset = start }
                let wanted = min(piece.length, size - start)
                let url = piece.url
                let data = try await BlockingPool.run { () -> [UInt8] in
                    let r = try HTTPTransfer.shared.perform(method: "GET", url: url, range: wanted > 0 ? 0...(wanted - 1) : nil, maxBody: Int(cat.chunkSize) + 1)
                    guard r.status == 200 || r.status == 206 else { throw StorageError.io("chunk \(piece.index) at \(url) answered \(r.status)") }
                    return r.body
                }
                guard Int64(data.count) == wanted else { throw StorageError.io("chunk \(piece.index) at \(url) was short") }
                try await writer.write(ByteBuffer(bytes: data))
                offset += wanted
            }
            if offset < size { try await Self.writeZeros(count: size - offset, to: &writer) }
            try await writer.finish(nil)
        })
    }

    static func writeZeros(count: Int64, to writer: inout any ResponseBodyWriter) async throws {
        var left = count
        while left > 0 {
            let n = Int(min(left, 1 << 20))
            try await writer.write(ByteBuffer(repeating: 0, count: n))
            left -= Int64(n)
        }
    }

    // MARK: DELETE

    func delete(file: String) -> Response {
        switch BlobRemoval.remove(file) {
        case .deleted: Response(status: .noContent)
        case .absent: text(.notFound, "no such blob")
        case .failed(let reason): text(.internalServerError, "delete failed: \(reason)")
        }
    }

    // MARK: usage and status

    func usage(device: DeviceID) -> Response {
        guard let u = meter.measure(folders, id: device, reserveBytes: config.reserveBytes) else { return text(.notFound, "device \(device) unavailable") }
        let kib = { (b: Int64) in String(b / 1024) }
        let pct = u.totalBytes > 0 ? Int((Double(u.usedBytes) / Double(u.totalBytes) * 100).rounded(.up)) : 0
        let body = """
        available: \(kib(u.freeBytes))
        device: \(folders.devicePath(device))
        disk: \(folders.devicePath(device))
        time: \(Clock.nowSeconds())
        total: \(kib(u.usedBytes + u.freeBytes))
        use: \(pct)%
        used: \(kib(u.usedBytes))

        """
        return text(.ok, body)
    }

    public struct Status: Codable, Sendable {
        public var name: String
        public var devices: [DeviceUsage]
        /// Blobs the scrubber found whose bytes no longer match their stored checksum.
        var corrupt: [Scrubber.Finding]
        var scrubbedBlobs: Int64
        /// Deferred-durability writes (the mount's) not yet flushed to disk.
        var unflushedWrites: Int
        /// For short-circuit reads by clients on this machine (`LocalReadMarker`).
        var dataDir: String
        var localToken: String
        /// Requests for blobs since start, by method (`PUT`, `GET`, `HEAD`, `DELETE`).
        var blobRequests: [String: Int]
    }

    func status() -> Response {
        let devices = folders.deviceIDs().compactMap { meter.measure(folders, id: $0, reserveBytes: config.reserveBytes) }
        return json(Status(name: config.name, devices: devices, corrupt: scrubber.findings, scrubbedBlobs: scrubber.blobsScanned,
                           unflushedWrites: deferredFlush.pending, dataDir: absoluteDataDir, localToken: localToken,
                           blobRequests: blobRequests.withLock { $0 }))
    }

    func json<T: Encodable>(_ value: T) -> Response {
        let data = (try? JSONEncoder().encode(value)) ?? Data()
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    func text(_ status: HTTPResponse.Status, _ message: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        let line = message.hasSuffix("\n") ? message : message + "\n"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: line)))
    }
}

/// Single byte ranges: `bytes=a-b`, `bytes=a-`, `bytes=-n`.
public enum ByteRange {
    public static func parse(_ header: String, size: Int64) -> ClosedRange<Int64>? {
        guard header.hasPrefix("bytes="), !header.contains(",") else { return nil }
        let spec = header.dropFirst(6)
        guard let dash = spec.firstIndex(of: "-") else { return nil }
        let a = spec[..<dash], b = spec[spec.index(after: dash)...]
        if a.isEmpty {
            guard let n = Int64(b), n > 0, size > 0 else { return nil }
            return max(0, size - n)...(size - 1)
        }
        guard let start = Int64(a), start >= 0, start < size else { return nil }
        let end = b.isEmpty ? size - 1 : (Int64(b).map { min($0, size - 1) } ?? -1)
        guard end >= start else { return nil }
        return start...end
    }
}

/// Hands a blob (used from one task at a time) across the blocking pool.
final class BlobBox: @unchecked Sendable {
    let blob: BlobFile
    init(_ blob: BlobFile) { self.blob = blob }
}

struct FileBox: @unchecked Sendable { let fd: Int32 }

/// The peer a node-to-node copy reads from failed to hand over the blob (answered 502).
struct CopySourceError: Error, CustomStringConvertible {
    let description: String
}
