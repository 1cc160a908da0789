import CairnCore
import CairnMetadata
import CairnPolicy
import CairnProtocol
import Foundation

/// MogileFS's file commands (§1.2 of shared/notes/mogilefs.md) and Cairn's chunked uploads.
/// Every acknowledged write has its class's synchronous copies, verified, before the reply.
struct FileCommands {
    let ctx: TrackerContext
    var store: MetadataStore { ctx.store }
    var cluster: ClusterCommands { ClusterCommands(ctx: ctx) }

    func register(into h: inout [String: CommandHandler]) {
        let s = self
        h["create_open"] = { a in try await s.createOpen(a) }
        h["create_close"] = { a in try await s.createClose(a) }
        h["get_paths"] = { a in try await s.getPaths(a) }
        h["delete"] = { a in
            let d = try await s.cluster.domain(a)
            try await s.store.deleteKey(domain: d, key: try s.key(a))
            return []
        }
        h["rename"] = { a in
            let d = try await s.cluster.domain(a)
            guard let from = a.nonEmpty("from_key"), let to = a.nonEmpty("to_key") else { throw ProtocolError("no_key", "rename needs from_key and to_key") }
            try await s.store.renameKey(domain: d, from: try KeyPath(from), to: try KeyPath(to))
            return []
        }
        h["updateclass"] = { a in
            let d = try await s.cluster.domain(a)
            let key = try s.key(a)
            guard let cname = a.nonEmpty("class") else { throw ProtocolError("no_class", "no class given") }
            guard let c = try await s.ctx.catalog.classRecord(domain: d.id, name: cname) else { throw ProtocolError("class_not_found", "class \"\(cname)\" does not exist in domain \(d.name)") }
            guard let ino = try await s.store.resolve(domain: d, key: key) else { throw ProtocolError("invalid_key", "no key \"\(key)\" in domain \(d.name)") }
            try await s.store.setClass(ino: ino, classID: c.id)
            return []
        }
        h["file_info"] = { a in try await s.fileInfo(a) }
        h["file_debug"] = { a in try await s.fileDebug(a) }
        h["list_keys"] = { a in try await s.listKeys(a) }
        h["list_fids"] = { a in
            let from = try a.optionalInt("from") ?? 0
            let count = Int(min(500, max(1, try a.optionalInt("to") ?? 100)))
            let fids = try await s.store.listFids(from: from, count: count)
            var out = [("fid_count", String(fids.count))]
            for (i, f) in fids.enumerated() {
                let p = "fid_\(i + 1)_"
                out += [(p + "fid", String(f.fid)), (p + "domain", f.domain), (p + "class", f.className), (p + "key", f.key),
                        (p + "length", String(f.length)), (p + "devcount", String(f.devcount))]
            }
            return out
        }
        h["alloc_chunk"] = { a in try await s.createOpen(a, copiesArg: true) }
        h["httpcopy"] = { a in
            guard let fid = try a.optionalInt("fid"), let from = try a.optionalInt("sdevid"), let to = try a.optionalInt("ddevid") else {
                throw ProtocolError("bad_params", "httpcopy needs fid, sdevid and ddevid")
            }
            let devs = try await s.ctx.devices.byID()
            guard let src = devs[Int(from)], let dst = devs[Int(to)], let blob = try await s.store.blob(fid: fid) else {
                throw ProtocolError("copy_err", "unknown fid or device")
            }
            let c = try await s.ctx.catalog.classRecord(domain: blob.domain, id: blob.classID)
            let facts = try await s.ctx.gateway.copy(fid: fid, from: src, to: dst, algorithm: c?.checksum ?? .none)
            guard facts.size == blob.length else { throw ProtocolError("copy_err", "copy has \(facts.size) bytes, expected \(blob.length)") }
            try await s.store.addCopy(fid: fid, device: Int(to))
            return []
        }
        h["commit_file"] = { a in try await s.commitFile(a) }
        h["file_layout"] = { a in try await s.fileLayout(a) }
    }

    func key(_ a: Args) throws -> KeyPath {
        guard let k = a.nonEmpty("key") else { throw ProtocolError("no_key", "no key given") }
        return try KeyPath(k)
    }

    func classRecord(_ a: Args, domain: DomainRecord) async throws -> ClassRecord {
        let name = a.nonEmpty("class") ?? ClassRecord.defaultName
        guard let c = try await ctx.catalog.classRecord(domain: domain.id, name: name) else {
            throw ProtocolError("unreg_class", "class \"\(name)\" is not registered in domain \(domain.name)")
        }
        return c
    }

    // MARK: uploads

    /// create_open (and alloc_chunk): a fid and the devices to PUT it to.
    func createOpen(_ a: Args, copiesArg: Bool = false) async throws -> [(String, String)] {
        let d = try await cluster.domain(a)
        let c = try await classRecord(a, domain: d)
        let keyText = a["key"] ?? ""
        if !keyText.isEmpty { _ = try KeyPath(keyText) }
        let size = max(0, try a.optionalInt("size") ?? 0)
        let count = copiesArg ? Int(min(8, max(1, try a.optionalInt("copies") ?? Int64(c.syncCopies)))) : (a.bool("multi_dest") ? 3 : 1)
        let avoid = Set((a["avoid"] ?? "").split(separator: ",").compactMap { DeviceID($0) })
        let all = try await ctx.devices.devices()
        let byID = Dictionary(uniqueKeysWithValues: all.map { ($0.device.id, $0) })
        // alloc_chunk with the fid of an open upload asks for more copies of it (on other hosts).
        let existing = copiesArg ? try a.optionalInt("fid") : nil
        let avoidHosts = existing == nil ? [] : Set(avoid.compactMap { byID[$0]?.host.id })
        let chosen = ctx.placement.choose(count: count, size: size, from: all.map(\.view), policy: c.policy,
                                          avoidDevices: avoid, avoidHosts: avoidHosts)
        guard !chosen.isEmpty else {
            throw ProtocolError("no_devices", "no device can take a new file of \(size) bytes: none is alive, writeable and has room. Check `cairn admin device list`.")
        }
        let fid: Fid
        if let existing {
            guard try await store.tempfile(fid: existing) != nil else { throw ProtocolError("no_temp_file", "fid \(existing) is not an open upload") }
            fid = existing
        } else {
            let explicit = copiesArg ? nil : try a.optionalInt("fid").flatMap { $0 > 0 ? $0 : nil }
            fid = try await store.openUpload(domain: d.id, classID: c.id, key: keyText, devices: chosen.map(\.device), fid: explicit)
        }
        let urls = chosen.map { ctx.gateway.writeURL(byID[$0.device]!, fid: fid, algorithm: c.checksum) }
        if a.bool("multi_dest") || copiesArg { return Self.allocationPairs(fid: fid, devices: chosen.map(\.device), urls: urls) }
        return [("fid", String(fid)), ("devid", String(chosen[0].device)), ("path", urls[0])]
    }

    /// An upload's fid and every device with its write URL, as alloc_chunk answers.
    static func allocationPairs(fid: Fid, devices: [DeviceID], urls: [String]) -> [(String, String)] {
        var out = [("fid", String(fid)), ("dev_count", String(devices.count))]
        for (i, d) in devices.enumerated() { out += [("devid_\(i + 1)", String(d)), ("path_\(i + 1)", urls[i])] }
        return out
    }

    /// create_close: verify the upload, make the synchronous copies, then publish the key.
    func createClose(_ a: Args) async throws -> [(String, String)] {
        let d = try await cluster.domain(a)
        guard let fid = try a.optionalInt("fid") else { throw ProtocolError("no_fid", "no fid given") }
        guard let devid = a.nonEmpty("devid").flatMap({ Int($0) }) else { throw ProtocolError("no_devid", "no devid given") }
        guard let path = a.nonEmpty("path") else { throw ProtocolError("no_path", "no path given") }
        var checksum: String?
        if let cs = a.nonEmpty("checksum") {
            guard let parsed = Checksum(parsing: cs) else { throw ProtocolError("invalid_checksum_format", "checksum must look like MD5:<32 hex digits> or sha256:<64 hex digits>") }
            checksum = parsed.description
        }
        guard let temp = try await store.tempfile(fid: fid) else {
            throw ProtocolError("no_temp_file", "fid \(fid) is not an open upload (unknown, already closed or expired)")
        }
        guard temp.devices.contains(devid) else { throw ProtocolError("invalid_destdev", "device \(devid) was not one offered for fid \(fid)") }
        let devicePath = WriteToken.parse(path: URL(string: path)?.path ?? path)?.devicePath ?? (URL(string: path)?.path ?? path)
        guard let parsed = FidLayout.parse(devicePath: devicePath), parsed.fid == fid, parsed.device == devid else {
            throw ProtocolError("bogus_args", "path \(path.prefix(200)) does not match fid \(fid) on device \(devid)")
        }
        let keyText = a["key"] ?? temp.key
        if keyText.isEmpty {
            try await store.abandonUpload(fid: fid, devices: [devid])
            return []
        }
        let key = try KeyPath(keyText)
        guard let c = try await ctx.catalog.classRecord(domain: d.id, id: temp.classID) else { throw ProtocolError("unreg_class", "the class of fid \(fid) no longer exists") }
        let size = try a.optionalInt("size").flatMap { $0 > 0 ? $0 : nil }
        do {
            let outcome = try await ctx.replicator.ensure(fid: fid, claimed: [devid], expectedSize: size, expectedChecksum: checksum,
                                                          target: c.syncCopies, policy: c.policy, algorithm: c.checksum)
            if let shortfall = outcome.shortfall {
                throw ProtocolError("sync_copies_failed", "fid \(fid) for key \(key): \(shortfall)")
            }
            let chunk = CommittedChunk(fid: fid, length: outcome.size, checksum: outcome.checksum, devices: outcome.devices)
            _ = try await store.commitFile(domain: d, key: key, classID: c.id, size: outcome.size, chunks: [chunk], replicas: c.replicas)
            return []
        } catch {
            try? await store.abandonUpload(fid: fid, devices: [devid])
            throw error
        }
    }

    /// One chunk of a `commit_file` request, parsed.
    typealias ParsedChunk = (index: Int, fid: Fid, length: Int64, checksum: String?, devices: [DeviceID], receipts: [DeviceID: String])

    /// commit_file: the chunk list in order (format below).
    /// Each new chunk is verified and brought to the class's synchronous copies, then the file's
    /// chunk list is replaced in one transaction. Either `key` (creating directories) or `ino`.
    func commitFile(_ a: Args) async throws -> [(String, String)] {
        let d = try await cluster.domain(a)
        let chunkSpecs = (a["chunks"] ?? "").split(separator: ",", omittingEmptySubsequences: true)
        var parsed: [ParsedChunk] = []
        // chunks=<fid> <length> <checksum|-> <devid>.<devid>[ <index>],... (space-separated fields)
        for (i, spec) in chunkSpecs.enumerated() {
            let f = spec.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 4, let fid = Fid(f[0]), let len = Int64(f[1]), len >= 0 else {
                throw ProtocolError("bad_params", "chunk \(i) is malformed: \(spec.prefix(80)); expected \"fid length checksum devids [index]\"")
            }
            var checksum: String?
            if f[2] != "-" {
                guard let cs = Checksum(parsing: String(f[2])) else { throw ProtocolError("invalid_checksum_format", "chunk \(i): bad checksum \(f[2].prefix(80))") }
                checksum = cs.description
            }
            // The index is optional (the mount commits lists where unchanged chunks keep theirs).
            let index = f.count >= 5 ? (Int(f[4]) ?? i) : i
            let devices = f[3].split(separator: ".").compactMap { Int($0) }
            let receiptList = f.count >= 6 ? f[5].split(separator: ".").map(String.init) : []
            var receipts: [DeviceID: String] = [:]
            if receiptList.count == devices.count { for (d, r) in zip(devices, receiptList) where r != "-" { receipts[d] = r } }
            parsed.append((index, fid, len, checksum, devices, receipts))
        }
        let size = try a.requireInt("size")
        let ino = try a.optionalInt("ino")
        let c: ClassRecord
        let existing: Set<Fid>
        if ino != nil, a.bool("fresh") {
            // A first commit (of a file the writer created) names its class rather than having
            // it read off the inode here: a delegated create sent just before it may share its
            // transaction (`WriteGathering`), so the inode is not readable yet. The store checks
            // it is the inode's.
            c = try await classRecord(a, domain: d)
            existing = []
        } else if let ino {
            let (attrs, chunks) = try await store.content(ino: ino)
            guard let cls = try await ctx.catalog.classRecord(domain: attrs.domain, id: attrs.classID) else { throw ProtocolError("unreg_class", "class of inode \(ino) is gone") }
            c = cls
            existing = Set(chunks.map(\.fid))
        } else {
            c = try await classRecord(a, domain: d)
            existing = []
        }
        let replicator = ctx.replicator
        /// A chunk the file keeps as it is, or a new one whose copies are verified (and made).
        @Sendable func verified(_ p: ParsedChunk) async throws -> (Int, CommittedChunk) {
            if existing.contains(p.fid) { return (p.index, CommittedChunk(fid: p.fid, length: p.length, checksum: p.checksum, devices: p.devices)) }
            let o = try await replicator.ensure(fid: p.fid, claimed: p.devices, expectedSize: p.length, expectedChecksum: p.checksum,
                                                target: c.syncCopies, policy: c.policy, algorithm: c.checksum, receipts: p.receipts)
            if let shortfall = o.shortfall { throw ProtocolError("sync_copies_failed", "chunk \(p.index) (fid \(p.fid)): \(shortfall)") }
            return (p.index, CommittedChunk(fid: p.fid, length: o.size, checksum: o.checksum, devices: o.devices))
        }
        // A small file's one chunk is verified here; several run concurrently (each is independent).
        let committed: [(Int, CommittedChunk)]
        if parsed.count == 1 {
            committed = [try await verified(parsed[0])]
        } else {
            committed = try await withThrowingTaskGroup(of: (Int, CommittedChunk).self) { group in
                for p in parsed { group.addTask { try await verified(p) } }
                var out: [(Int, CommittedChunk)] = []
                for try await r in group { out.append(r) }
                return out.sorted { $0.0 < $1.0 }
            }
        }
        let mtime = try a.optionalInt("mtime")
        if let ino {
            // The new layout, so the writer needs no second call to see where its chunks are.
            let domainName = try await ctx.catalog.domainName(id: c.domain)
            return try await layoutPairs(try await store.commitInode(ino: ino, size: size, chunks: committed.map { ($0.0, $0.1) },
                                                                     replicas: c.replicas, mtime: mtime, first: a.bool("fresh"),
                                                                     catalog: domainName.map { ($0, c) }))
        } else {
            let change = MetadataStore.AttributeChange(mode: try a.optionalInt("mode").map { UInt32(truncatingIfNeeded: $0) },
                                                       uid: try a.optionalInt("uid").map { UInt32(truncatingIfNeeded: $0) },
                                                       gid: try a.optionalInt("gid").map { UInt32(truncatingIfNeeded: $0) }, mtime: mtime)
            let attrs = try await store.commitFile(domain: d, key: try key(a), classID: c.id, size: size, chunks: committed.map(\.1),
                                                   replicas: c.replicas, attributes: change)
            return try await fileLayout(Args(["ino": String(attrs.ino)]))
        }
    }

    // MARK: reads

    /// URLs that return a file's bytes, in read order. A one-chunk file: its copies' URLs.
    /// Otherwise: concatenating URLs on storage nodes (`/_cat/…`), so MogileFS clients still
    /// get the whole file from one URL.
    func getPaths(_ a: Args) async throws -> [(String, String)] {
        let d = try await cluster.domain(a)
        let key = try key(a)
        let (file, copies) = try await store.fileForReading(domain: d, key: key)
        guard let f = file, f.attributes.kind == .file else {
            throw ProtocolError("unknown_key", "no file \"\(key)\" in domain \(d.name)")
        }
        let want = max(2, Int(try a.optionalInt("pathcount") ?? 2))
        var urls = try await ReadPaths(ctx: ctx).urls(for: f.chunks, size: f.attributes.size, copies: copies, limit: want + 1)
        // noverify=0: the first replica is HEAD-checked and skipped when missing or of the wrong size.
        if !a.bool("noverify"), f.chunks.count == 1, let first = f.chunks.first, let url = urls.first,
           await !ctx.gateway.verify(url: url, size: first.length) {
            urls.removeFirst()
        }
        urls = Array(urls.prefix(want))
        var out = [("paths", String(urls.count))]
        for (i, u) in urls.enumerated() { out.append(("path\(i + 1)", u)) }
        return out
    }

    func fileInfo(_ a: Args) async throws -> [(String, String)] {
        let d = try await cluster.domain(a)
        let key = try key(a)
        guard let f = try await store.file(domain: d, key: key), f.attributes.kind == .file else {
            throw ProtocolError("unknown_key", "no file \"\(key)\" in domain \(d.name)")
        }
        let c = try await ctx.catalog.classRecord(domain: d.id, id: f.attributes.classID)
        let copies = try await store.copies(of: f.chunks.map(\.fid))
        let devcount = f.chunks.map { copies[$0.fid]?.count ?? 0 }.min() ?? 0
        var out: [(String, String)] = [("fid", String(f.chunks.first?.fid ?? 0)), ("domain", d.name), ("class", c?.name ?? "default"),
                                       ("key", f.key), ("length", String(f.attributes.size)), ("devcount", String(devcount)),
                                       ("chunks", String(f.chunks.count))]
        if let c, c.checksum != .none {
            out.append(("checksum", f.attributes.checksum.flatMap { Checksum(parsing: $0)?.mogileDescription } ?? "MISSING"))
        }
        if a.bool("devices") {
            out.append(("devids", (copies[f.chunks.first?.fid ?? 0] ?? []).map(String.init).joined(separator: ",")))
        }
        return out
    }

    func fileDebug(_ a: Args) async throws -> [(String, String)] {
        var fid = try a.optionalInt("fid")
        if fid == nil {
            let d = try await cluster.domain(a)
            guard let f = try await store.file(domain: d, key: try key(a)), let first = f.chunks.first else {
                throw ProtocolError("unknown_key", "no such key")
            }
            fid = first.fid
        }
        guard let b = try await store.blob(fid: fid!) else { throw ProtocolError("unknown_fid", "fid \(fid!) is not a committed blob") }
        let devs = try await ctx.devices.byID()
        var out: [(String, String)] = [("fid_fid", String(b.fid)), ("fid_dmid", String(b.domain)), ("fid_length", String(b.length)),
                                       ("fid_classid", String(b.classID)), ("fid_devcount", String(b.devices.count)),
                                       ("devids", b.devices.map(String.init).joined(separator: ",")),
                                       ("checksum", b.checksum.flatMap { Checksum(parsing: $0)?.mogileDescription } ?? "NONE")]
        for id in b.devices { if let dv = devs[id] { out.append(("devpath_\(id)", dv.url(fid: b.fid))) } }
        return out
    }

    func listKeys(_ a: Args) async throws -> [(String, String)] {
        let d = try await cluster.domain(a)
        let prefix = a["prefix"] ?? ""
        let after = a.nonEmpty("after")
        if let after, !after.hasPrefix(prefix) { throw ProtocolError("after_mismatch", "after (\(after)) does not start with prefix (\(prefix))") }
        let limit = Int(min(1000, max(1, try a.optionalInt("limit") ?? 1000)))
        let keys = try await store.listKeys(domain: d.id, prefix: prefix, after: after, limit: limit)
        guard let last = keys.last else { throw ProtocolError("none_match", "no keys match") }
        var out = [("key_count", String(keys.count)), ("next_after", last)]
        for (i, k) in keys.enumerated() { out.append(("key_\(i + 1)", k)) }
        return out
    }

    /// file_layout: a file's attributes and every chunk with its replicas' URLs (read order).
    func fileLayout(_ a: Args) async throws -> [(String, String)] {
        let ino: Ino
        if let given = try a.optionalInt("ino") {
            ino = given
        } else {
            let d = try await cluster.domain(a)
            let key = try key(a)
            guard let found = try await store.resolve(domain: d, key: key) else { throw ProtocolError("unknown_key", "no key \"\(key)\" in domain \(d.name)") }
            ino = found
        }
        return try await layoutPairs(try await store.layout(ino: ino))
    }

    /// A layout as file_layout answers it: attributes, class settings, and every chunk with its
    /// replicas' URLs in read order.
    func layoutPairs(_ l: StoredLayout) async throws -> [(String, String)] {
        let devs = try await ctx.devices.byID()
        let c = l.classRecord
        var out = AttributeCodec.pairs(l.attributes)
        out += [("domain", l.domainName), ("class_name", c?.name ?? "default"), ("replicas", String(c?.replicas ?? 0)),
                ("sync_copies", String(c?.syncCopies ?? 1)), ("chunk_size", String(c?.chunkSize ?? ChunkLayout.defaultChunkSize)),
                ("chunk_count", String(l.chunks.count))]
        for (i, ch) in l.chunks.enumerated() {
            let p = "chunk\(i + 1)_"
            let holders = Placement.readOrder((l.copies[ch.fid] ?? []).compactMap { devs[$0]?.view }).compactMap { devs[$0.device] }
            out += [(p + "index", String(ch.index)), (p + "fid", String(ch.fid)), (p + "length", String(ch.length)),
                    (p + "checksum", l.checksums[ch.fid] ?? ""),
                    (p + "devids", holders.map { String($0.device.id) }.joined(separator: ",")),
                    (p + "urls", holders.map { $0.url(fid: ch.fid) }.joined(separator: " "))]
        }
        return out
    }
}

