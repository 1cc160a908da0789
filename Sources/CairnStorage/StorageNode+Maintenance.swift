import CairnCore
import CairnDevice
import CairnProtocol
import CairnTransfer
import Foundation
import HTTPTypes
import Hummingbird

/// Endpoints the tracker's monitor and fsck use:
/// - `GET /_verify/dev<N>/B/MMM/TTT/<fid>.fid[?algorithm=sha256|md5]`: read the blob again,
///   answer its size, stored and recomputed checksums (JSON).
/// - `GET /_list/dev<N>[?after=FID&limit=N]`: the blobs on a device, one `fid size mtime` line each.
/// - `POST /_probe/dev<N>`: a test write and read on the device.
/// - `PUT|GET /_meta/[<write token>/]dev<N>/B/MMM/TTT/<fid>.fid`: the blob's sidecar (JSON the
///   tracker writes: which file and chunk it is, attributes, custom metadata).
/// - `POST /_meta/[<write token>/]dev<N>`: many sidecars of that device at once, one
///   `<fid> <json>` line each; answers `written N` and a `missing <fid>` line per absent blob.
/// - `POST /_delete/[<write token>/]dev<N>`: delete many blobs of that device at once, one
///   `<fid>` line each (the tracker's delete rounds: one request per device, not per copy);
///   answers `deleted N`, an `absent <fid>` line per blob already gone and a
///   `failed <fid> <reason>` line per blob that could not be deleted.
/// - `POST /_sync`: make every deferred-durability write so far durable (the mount's fsync):
///   one syncfs per device, which also covers blobs a local mount wrote into the folders.
extension StorageNode {
    static let maintenancePrefixes = ["/_verify/", "/_list/", "/_probe/", "/_meta/", "/_delete/", "/_sync"]

    func maintenance(_ request: Request) async -> Response? {
        let path = request.uri.path
        guard let prefix = Self.maintenancePrefixes.first(where: { path.hasPrefix($0) }) else { return nil }
        let rest = "/" + path.dropFirst(prefix.count)
        let query = request.uri.queryParameters
        switch prefix {
        case "/_verify/":
            guard let (device, fid) = FidLayout.parse(devicePath: rest) else { return text(.badRequest, "\(path.prefix(200)) names no blob") }
            guard folders.exists(device) else { return text(.notFound, "device \(device) is not on this node (\(config.name))") }
            var algorithm: ChecksumAlgorithm?
            if let name = query["algorithm"] {
                guard let a = ChecksumAlgorithm(name: String(name)) else { return text(.badRequest, "unknown checksum algorithm \(name.prefix(40))") }
                algorithm = a
            }
            let file = folders.file(device: device, fid: fid), chosen = algorithm
            guard access(file, F_OK) == 0 else { return text(.notFound, "no such blob: \(rest)") }
            do {
                let result = try await BlockingPool.run { try BlobVerifier.verify(path: file, algorithm: chosen) }
                return json(result)
            } catch {
                return text(.internalServerError, "verifying fid \(fid) on device \(device) (\(config.name)) failed: \(error)")
            }
        case "/_list/":
            guard let device = deviceID(rest) else { return text(.notFound, "no device \(rest.prefix(40)) on this node (\(config.name))") }
            let after = query["after"].flatMap { Fid(String($0)) } ?? 0
            let limit = query["limit"].flatMap { Int(String($0)) }.map { max(1, min($0, 100_000)) } ?? 10_000
            let dir = folders.devicePath(device), withSidecars = query["sidecars"] == "1", folders = self.folders
            let lines = (try? await BlockingPool.run {
                DeviceInventory.blobs(in: dir, after: after, limit: limit).map { e -> String in
                    let base = "\(e.fid) \(e.size) \(e.mtime)"
                    guard withSidecars, let meta = SidecarFile.read(blob: folders.file(device: device, fid: e.fid)) else { return base }
                    return base + " " + String(decoding: meta, as: UTF8.self)
                }
            }) ?? []
            return text(.ok, lines.joined(separator: "\n"))
        case "/_meta/":
            return await sidecar(request, path: rest)
        case "/_delete/":
            guard request.method == .post else { return text(.methodNotAllowed, "use POST for a batch of deletes") }
            guard let (token, devicePath) = splitToken(rest) else { return text(.badRequest, "malformed write token in \(path.prefix(200))") }
            guard let device = deviceID(devicePath) else { return text(.notFound, "no device \(devicePath.prefix(40)) on this node (\(config.name))") }
            if let denied = authorize(token: token, path: rest) { return denied }
            return await deleteBatch(request, device: device)
        case "/_sync":
            guard request.method == .post, rest == "/" else { return text(.methodNotAllowed, "use POST /_sync") }
            // Every device, not only those this node wrote to: a mount on this machine may have
            // written blobs straight into them (`LocalWriteGrant`), and the delete worker's
            // flush before it frees old copies must cover those too.
            let flush = deferredFlush, devices = folders.deviceIDs().map(folders.devicePath)
            let failed = await (try? BlockingPool.run { flush.flush(alsoDevices: devices) }) ?? ["the flush did not run"]
            guard failed.isEmpty else {
                return text(.internalServerError, "\(config.name) could not make its writes durable: \(failed.joined(separator: "; ")); check the disk")
            }
            return Response(status: .noContent)
        default:
            guard request.method == .post else { return text(.methodNotAllowed, "use POST for a probe") }
            guard let device = deviceID(rest) else { return text(.notFound, "no device \(rest.prefix(40)) on this node (\(config.name))") }
            let dir = folders.devicePath(device)
            if let problem = try? await BlockingPool.run({ DeviceProbe.run(devicePath: dir) }) {
                return text(.internalServerError, "device \(device) on \(config.name): \(problem)")
            }
            return text(.ok, "ok")
        }
    }

    /// A path's write token (if it starts with one) and the device path it signs; nil when the
    /// token is malformed.
    func splitToken(_ path: String) -> (WriteToken?, String)? {
        guard path.hasPrefix(WriteToken.prefix) else { return (nil, path) }
        guard let t = WriteToken.parse(path: path) else { return nil }
        return (t, t.devicePath)
    }

    func sidecar(_ request: Request, path: String) async -> Response {
        guard let (token, devicePath) = splitToken(path) else { return text(.badRequest, "malformed write token in \(path.prefix(200))") }
        if request.method == .post {
            guard let device = deviceID(devicePath) else { return text(.notFound, "no device \(devicePath.prefix(40)) on this node (\(config.name))") }
            if let denied = authorize(token: token, path: path) { return denied }
            return await sidecarBatch(request, device: device)
        }
        guard let (device, fid) = FidLayout.parse(devicePath: devicePath) else { return text(.badRequest, "\(path.prefix(200)) names no blob") }
        guard folders.exists(device) else { return text(.notFound, "device \(device) is not on this node (\(config.name))") }
        let blob = folders.file(device: device, fid: fid)
        switch request.method {
        case .get:
            guard let data = SidecarFile.read(blob: blob) else { return text(.notFound, "no sidecar for fid \(fid) on device \(device)") }
            return Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
        case .put:
            if let denied = authorize(token: token, path: path) { return denied }
            guard access(blob, F_OK) == 0 else { return text(.notFound, "no blob fid \(fid) on device \(device) to describe") }
            do {
                let body = try await request.body.collect(upTo: 1 << 20)
                try SidecarFile.write(Array(buffer: body), blob: blob)
                return Response(status: .noContent)
            } catch {
                return text(.badRequest, "sidecar for fid \(fid) on device \(device) not stored: \(error)")
            }
        default:
            return text(.methodNotAllowed, "use GET or PUT for a sidecar, POST for a batch")
        }
    }

    /// Writes a batch of sidecars (see the list above); a line for a blob this device does not
    /// hold is skipped and reported.
    func sidecarBatch(_ request: Request, device: DeviceID) async -> Response {
        let body: ByteBuffer
        do { body = try await request.body.collect(upTo: 64 << 20) } catch {
            return text(.badRequest, "sidecar batch for device \(device) not read: \(error)")
        }
        let folders = self.folders
        do {
            let (written, missing) = try await BlockingPool.run {
                var written = 0, missing: [Fid] = []
                for line in body.readableBytesView.split(separator: UInt8(ascii: "\n")) {
                    guard let space = line.firstIndex(of: UInt8(ascii: " ")),
                          let fid = Fid(String(decoding: line[line.startIndex..<space], as: UTF8.self)) else {
                        throw StorageError.io("malformed line \(String(decoding: line.prefix(60), as: UTF8.self)); expected \"<fid> <json>\"")
                    }
                    let blob = folders.file(device: device, fid: fid)
                    guard access(blob, F_OK) == 0 else { missing.append(fid); continue }
                    try SidecarFile.write(Array(line[line.index(after: space)...]), blob: blob)
                    written += 1
                }
                return (written, missing)
            }
            return text(.ok, (["written \(written)"] + missing.map { "missing \($0)" }).joined(separator: "\n"))
        } catch {
            return text(.badRequest, "sidecar batch for device \(device) on \(config.name) stopped: \(error)")
        }
    }

    /// Deletes a batch of blobs (see the list above). A malformed line stops the batch before
    /// anything is deleted.
    func deleteBatch(_ request: Request, device: DeviceID) async -> Response {
        let body: ByteBuffer
        do { body = try await request.body.collect(upTo: 16 << 20) } catch {
            return text(.badRequest, "delete batch for device \(device) not read: \(error)")
        }
        let lines = body.readableBytesView.split(separator: UInt8(ascii: "\n")).map { String(decoding: $0, as: UTF8.self) }
        if let bad = lines.first(where: { Fid($0) == nil }) {
            return text(.badRequest, "malformed line \(bad.prefix(60)) in a delete batch for device \(device); expected one fid per line; nothing deleted")
        }
        let fids = lines.compactMap { Fid($0) }
        for fid in fids { scrubber.forget(device: device, fid: fid) }
        let folders = self.folders
        // Hundreds of unlinks: off the event loop. The job cannot fail; each blob's outcome is a line.
        let answer = await BlockingPool.perform { () -> [String] in
            var deleted = 0, other: [String] = []
            for fid in fids {
                switch BlobRemoval.remove(folders.file(device: device, fid: fid)) {
                case .deleted: deleted += 1
                case .absent: other.append("absent \(fid)")
                case .failed(let reason): other.append("failed \(fid) \(reason)")
                }
            }
            return ["deleted \(deleted)"] + other
        }
        return text(.ok, answer.joined(separator: "\n"))
    }

    private func deviceID(_ rest: String) -> DeviceID? {
        let name = rest.dropFirst()
        guard name.hasPrefix("dev"), let id = DeviceID(name.dropFirst(3)), "dev\(id)" == name, folders.exists(id) else { return nil }
        return id
    }
}
