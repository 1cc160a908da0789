import CairnCore
import CairnMetadata
import CairnProtocol
import Foundation

/// Cairn's inode commands for the mount and the CLI: POSIX operations on inodes, paged
/// directory listings with attributes, and custom metadata (binary-safe values).
struct NamespaceCommands {
    let ctx: TrackerContext
    var store: MetadataStore { ctx.store }

    static let maxXattrValue = 64 << 10
    static let maxReaddirPage = 1000

    /// chmod, chown, utimes and truncate, as `fs_setattr` names them (no size after a prefix:
    /// a folded change never truncates).
    static func attributeChange(_ a: Args, prefix: String = "") throws -> MetadataStore.AttributeChange {
        func value(_ key: String) throws -> Int64? { try a.optionalInt(prefix + key) }
        return MetadataStore.AttributeChange(
            mode: try value("mode").map { UInt32(truncatingIfNeeded: $0) }, uid: try value("uid").map { UInt32(truncatingIfNeeded: $0) },
            gid: try value("gid").map { UInt32(truncatingIfNeeded: $0) }, size: prefix.isEmpty ? try value("size") : nil,
            atime: try value("atime"), mtime: try value("mtime"), ctime: prefix.isEmpty ? try value("ctime") : nil)
    }

    func register(into h: inout [String: CommandHandler]) {
        let s = self
        h["fs_root"] = { a in
            let d = try await ClusterCommands(ctx: s.ctx).domain(a)
            return AttributeCodec.pairs(try await s.store.getattr(ino: d.root))
        }
        h["fs_lookup"] = { a in AttributeCodec.pairs(try await s.store.lookup(parent: try a.requireInt("parent"), name: try a.require("name"))) }
        // Makes every change so far durable (the mount's fsync, fsyncdir and unmount).
        h["fs_sync"] = { _ in try await s.store.sync(); return [] }
        h["fs_getattr"] = { a in AttributeCodec.pairs(try await s.store.getattr(ino: try a.requireInt("ino"))) }
        h["fs_setattr"] = { a in
            let change = try Self.attributeChange(a)
            if let size = change.size, size < 0 { throw ProtocolError("bad_params", "size must be ≥ 0") }
            return AttributeCodec.pairs(try await s.store.setattr(ino: try a.requireInt("ino"), change))
        }
        h["fs_create"] = { a in
            let kind: InodeKind
            switch a["kind"] ?? "f" {
            case "f": kind = .file
            case "d": kind = .directory
            case "l": kind = .symlink
            default: throw ProtocolError("bad_params", "kind must be f, d or l")
            }
            if kind == .symlink, a.nonEmpty("target") == nil { throw ProtocolError("bad_params", "a symlink needs a target") }
            let n = MetadataStore.NewInode(kind: kind, mode: UInt32(truncatingIfNeeded: try a.optionalInt("mode") ?? (kind == .directory ? 0o755 : 0o644)),
                                           uid: UInt32(truncatingIfNeeded: try a.optionalInt("uid") ?? 0),
                                           gid: UInt32(truncatingIfNeeded: try a.optionalInt("gid") ?? 0), target: a["target"],
                                           className: a.nonEmpty("class"))
            let parent = try a.requireInt("parent")
            let exclusive = a["exclusive"].map { $0 != "0" } ?? true
            // alloc=1: the first chunk's upload is opened in the create's own transaction.
            let place = kind == .file && a["alloc"] == "1" ? try await s.firstChunkPlacement() : nil
            // ino=: a mount's delegated create, with a number `fs_delegate` reserved for it.
            let (created, parentNow, upload) = try await s.store.createEntry(parent: parent, name: try a.require("name"), n,
                                                                             exclusive: exclusive, placeFirstChunk: place,
                                                                             reservedIno: try a.optionalInt("ino"))
            // The parent's new times come along, so the mount need not ask for them.
            let parentAttributes = AttributeCodec.pairs(parentNow, prefix: "parent_")
            guard kind == .file, a.nonEmpty("ino") == nil else { return AttributeCodec.pairs(created) + parentAttributes }
            // A new file comes with its (empty) layout and a place for its first chunk: the
            // mount opens, writes and stores a small file without other calls.
            let files = FileCommands(ctx: s.ctx)
            let c = try await s.ctx.catalog.classRecord(domain: created.domain, id: created.classID)
            let layout: [(String, String)]
            if exclusive, let domain = try await s.ctx.catalog.domainName(id: created.domain) {
                layout = try await files.layoutPairs(StoredLayout(attributes: created, domainName: domain, classRecord: c))
            } else {
                layout = try await files.fileLayout(Args(["ino": String(created.ino)]))  // an existing file, perhaps with content
            }
            guard let upload else { return layout + parentAttributes }
            let devices = try await s.ctx.devices.byID()
            let urls = upload.devices.compactMap { devices[$0].map { s.ctx.gateway.writeURL($0, fid: upload.fid, algorithm: c?.checksum ?? .none) } }
            guard urls.count == upload.devices.count else { return layout + parentAttributes }
            return layout + parentAttributes
                + FileCommands.allocationPairs(fid: upload.fid, devices: upload.devices, urls: urls).map { ("upload_" + $0.0, $0.1) }
        }
        h["fs_unlink"] = { a in
            let parentNow = try await s.store.unlink(parent: try a.requireInt("parent"), name: try a.require("name"), directory: a.bool("dir"),
                                                   expectedIno: try a.optionalInt("ino"))
            return AttributeCodec.pairs(parentNow, prefix: "parent_")
        }
        h["fs_rename"] = { a in
            let mode: MetadataStore.RenameMode
            switch a["mode"] ?? "replace" {
            case "replace", "": mode = .replace
            case "noreplace": mode = .noReplace
            case "exchange": mode = .exchange
            default: throw ProtocolError("bad_params", "mode must be replace, noreplace or exchange")
            }
            let parent = try a.requireInt("parent"), newParent = try a.requireInt("newparent")
            // attr_…: the setattrs of the moved inode just before, folded in (`QuietFolding`).
            let folded = try Self.attributeChange(a, prefix: QuietFolding.foldedPrefix), ino = try a.optionalInt("ino")
            if !folded.isEmpty, ino == nil {
                throw ProtocolError("bad_params", "\(QuietFolding.foldedPrefix)… changes name the moved inode's: send its ino too; nothing was changed")
            }
            let now = try await s.store.rename(parent: parent, name: try a.require("name"), newParent: newParent, newName: try a.require("newname"),
                                               mode: mode, expectedIno: ino, ctime: try a.optionalInt("ctime"),
                                               attributes: folded.isEmpty ? nil : folded)
            // Both directories' new times, as creates return theirs, and the moved inode's (its ctime).
            return AttributeCodec.pairs(now.parent, prefix: "parent_") + (now.newParent.map { AttributeCodec.pairs($0, prefix: "newparent_") } ?? [])
                + (now.moved.map { AttributeCodec.pairs($0, prefix: "moved_") } ?? [])
        }
        h["fs_link"] = { a in
            AttributeCodec.pairs(try await s.store.link(ino: try a.requireInt("ino"), newParent: try a.requireInt("newparent"), newName: try a.require("newname")))
        }
        h["fs_readlink"] = { a in [("target", try await s.store.readlink(ino: try a.requireInt("ino")))] }
        h["fs_readdir"] = { a in
            let limit = Int(min(Int64(Self.maxReaddirPage), max(1, try a.optionalInt("limit") ?? Int64(Self.maxReaddirPage))))
            let entries = try await s.store.readdir(ino: try a.requireInt("ino"), after: a.nonEmpty("after"), limit: limit)
            var out = [("count", String(entries.count))]
            for (i, e) in entries.enumerated() {
                out.append(("e\(i + 1)_name", e.name))
                out += AttributeCodec.pairs(e.attributes, prefix: "e\(i + 1)_")
            }
            return out
        }
        h["meta_get"] = { a in
            let ino = try await s.inode(a)
            let name = try s.attributeName(a)
            guard let v = try await s.store.xattrGet(ino: ino, name: name) else {
                throw ProtocolError("no_xattr", "no attribute \"\(name)\" on this file")
            }
            return [("value_hex", Hex.encode(v))]
        }
        h["meta_list"] = { a in
            let ino = try await s.inode(a)
            let all = try await s.store.xattrList(ino: ino).filter { !$0.0.hasPrefix("cairn.") }
            var out = [("count", String(all.count))]
            for (i, (k, v)) in all.enumerated() { out += [("name_\(i + 1)", k), ("value_hex_\(i + 1)", Hex.encode(v))] }
            return out
        }
        h["meta_set"] = { a in
            let ino = try await s.inode(a)
            let name = try s.attributeName(a)
            guard let value = Hex.decode(a["value_hex"] ?? "") else { throw ProtocolError("bad_params", "value_hex must be hexadecimal") }
            guard value.count <= Self.maxXattrValue else {
                throw ProtocolError("value_too_large", "attribute values are limited to \(Self.maxXattrValue) bytes; got \(value.count)")
            }
            let mode: MetadataStore.XattrMode = a["mode"] == "create" ? .create : a["mode"] == "replace" ? .replace : .any
            // The inode's new attributes (ctime): a mount keeps its listing current with them.
            return AttributeCodec.pairs(try await s.store.xattrSet(ino: ino, name: name, value: value, mode: mode))
        }
        h["meta_remove"] = { a in
            AttributeCodec.pairs(try await s.store.xattrRemove(ino: try await s.inode(a), name: try s.attributeName(a)))
        }
        h["set_dir_class"] = { a in
            let ino = try a.requireInt("ino")
            let attrs = try await s.store.getattr(ino: ino)
            let cname = try a.require("class")
            guard let c = try await s.ctx.catalog.classRecord(domain: attrs.domain, name: cname) else {
                throw ProtocolError("class_not_found", "class \"\(cname)\" does not exist in this domain")
            }
            // A directory's class is the class of files created beneath it; a file moves to it.
            try await s.store.setClass(ino: ino, classID: c.id)
            return []
        }
    }

    /// Chooses a new file's first-chunk devices (its class's synchronous copies) from the
    /// cached classes and devices, synchronously inside the create's transaction.
    func firstChunkPlacement() async throws -> MetadataStore.FirstChunkPlacement {
        let classes = try await ctx.catalog.classes()
        let views = try await ctx.devices.devices().map(\.view)
        let placement = ctx.placement
        return { domain, classID in
            guard let c = classes[domain]?[classID] else { return [] }
            return placement.choose(count: c.syncCopies, size: 0, from: views, policy: c.policy).map(\.device)
        }
    }

    /// The inode named by `ino`, or by `domain` + `key`.
    func inode(_ a: Args) async throws -> Ino {
        if let ino = try a.optionalInt("ino") { return ino }
        let d = try await ClusterCommands(ctx: ctx).domain(a)
        guard let k = a.nonEmpty("key") else { throw ProtocolError("no_key", "give ino, or domain and key") }
        let key = try KeyPath(k)
        guard let ino = try await store.resolve(domain: d, key: key) else { throw ProtocolError("unknown_key", "no key \"\(key)\" in domain \(d.name)") }
        return ino
    }

    func attributeName(_ a: Args) throws -> String {
        let name = try a.require("name")
        guard name.utf8.count <= 255, !name.utf8.contains(0) else { throw ProtocolError("bad_params", "attribute names are 1–255 bytes without NUL") }
        return name
    }
}

