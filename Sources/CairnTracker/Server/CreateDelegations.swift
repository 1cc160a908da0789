import CairnCore
import CairnMetadata
import CairnProtocol

/// Create delegations, as CephFS's asynchronous creates: a mount that holds a directory's
/// delegation (and its listing, under its lease) creates files there on its own — it picks
/// the inode number and the first chunk's upload from what this tracker reserved for it
/// (`fs_delegate`), answers the kernel at once, and sends the create, and later the file's
/// first commit, down its pipeline (`TrackerPipeline`) without waiting.
///
/// Another client's request that touches what the holder may have done there first takes the
/// delegation back (`Watchers.recall`): the holder stops creating there and acks down the same
/// pipeline, behind every create and commit it sent, so once the ack is read here they are all
/// in, and only then does the request run. `Scope` says what a request takes back: a name
/// looked up, listed, made or removed in a delegated directory; a file created there while the
/// delegation lasts (`Watchers.delegatedFiles`), read or changed by inode; anything
/// named by path (MogileFS's commands), an rmdir or a rename: every delegation. So every
/// client sees a file whole once the holder's close returned, and no name is made twice.
enum CreateDelegations {
    struct Scope: Equatable {
        var directories: [Ino] = []
        /// Inodes that matter only while they are files created under a delegation still held.
        var files: [Ino] = []
        var all = false
        static let none = Scope()
        var isEmpty: Bool { !all && directories.isEmpty && files.isEmpty }
    }

    /// Requests that read and change nothing a delegation covers.
    static let leaveDelegations: Set<String> = [
        "noop", "fs_root", "fs_sync", "fs_watch_ping", "fs_watch_ack", "fs_delegate", "list_fids", "get_domains",
        "get_classes", "get_hosts", "get_devices", "statfs", "create_open", "alloc_chunk", "cluster_stats",
        "server_setting", "server_settings", "fsck_status", "fsck_getlog", "rebalance_status", "workers",
        "clear_cache", "sleep", "do_monitor_round", "httpcopy", "file_debug",
    ]

    static func scope(_ command: String, _ args: Args) -> Scope {
        if leaveDelegations.contains(command) { return .none }
        func ino(_ key: String) -> Ino? { args.nonEmpty(key).flatMap { Ino($0) } }
        func directory(_ key: String) -> Scope { ino(key).map { Scope(directories: [$0]) } ?? Scope(all: true) }
        func file(_ key: String) -> Scope { ino(key).map { Scope(files: [$0]) } ?? Scope(all: true) }
        switch command {
        case "fs_create", "fs_lookup":
            return directory("parent")
        case "fs_readdir":
            return directory("ino")
        case "fs_unlink":
            // An rmdir's directory is known only by name.
            return args.bool("dir") ? Scope(all: true) : directory("parent")
        case "fs_link":
            var s = directory("newparent")
            s.files += ino("ino").map { [$0] } ?? []
            return s
        case "fs_getattr", "fs_setattr", "fs_readlink", "meta_get", "meta_list", "meta_set", "meta_remove", "file_layout", "commit_file":
            // By inode; by key (MogileFS's form of some of them), anything.
            return file("ino")
        default:
            return Scope(all: true)
        }
    }

    /// A holder's create under its delegation (`ino=` reserved): the new inode, its
    /// directory, and whether it is a directory itself (then delegated to the holder too).
    static func delegatedCreate(_ command: String, _ args: Args) -> (ino: Ino, directory: Ino, isDirectory: Bool)? {
        guard command == "fs_create", let ino = args.nonEmpty("ino").flatMap({ Ino($0) }),
              let dir = args.nonEmpty("parent").flatMap({ Ino($0) }) else { return nil }
        return (ino, dir, args["kind"] == "d")
    }
}

/// `fs_delegate parent=<dir> count=<n> [class=<name>] watcher=<id>`: delegates the directory to
/// the asking mount (unless another holds it) and reserves `n` inode numbers and first-chunk
/// uploads for the files it will create there. Answers `granted=0` when another mount holds
/// it or this tracker grants no leases; else the reservation, the class's layout parameters
/// (so the mount can show and write the new files), the class a new directory there gets
/// (`dir_class`), and each upload as `upload<i>_…`.
struct DelegateCommand {
    let ctx: TrackerContext
    let watchers: Watchers
    static let maxCount: Int64 = 256

    func register(into h: inout [String: CommandHandler]) {
        let c = self
        h["fs_delegate"] = { a in try await c.delegate(a) }
    }

    func delegate(_ a: Args) async throws -> [(String, String)] {
        let parent = try a.requireInt("parent")
        guard let watcher = a.nonEmpty("watcher").flatMap({ UInt64($0) }), watchers.delegate(parent, to: watcher) else {
            return [("granted", "0")]
        }
        let count = Int(min(Self.maxCount, max(1, try a.optionalInt("count") ?? 64)))
        let r = try await ctx.store.reserveCreates(parent: parent, count: count, className: a.nonEmpty("class"),
                                                   place: try await NamespaceCommands(ctx: ctx).firstChunkPlacement())
        let cls = try await ctx.catalog.classRecord(domain: r.domain, id: r.classID)
        let devices = try await ctx.devices.byID()
        var out: [(String, String)] = [
            ("granted", "1"), ("ino_first", String(r.firstIno)), ("ino_count", String(r.count)),
            ("domain", try await ctx.catalog.domainName(id: r.domain) ?? ""), ("class", String(r.classID)), ("dir_class", String(r.directoryClassID)),
            ("class_name", cls?.name ?? "default"), ("replicas", String(cls?.replicas ?? 0)),
            ("sync_copies", String(cls?.syncCopies ?? 1)), ("chunk_size", String(cls?.chunkSize ?? ChunkLayout.defaultChunkSize)),
            ("upload_count", String(r.uploads.count)),
        ]
        for (i, u) in r.uploads.enumerated() {
            let urls = u.devices.compactMap { devices[$0].map { ctx.gateway.writeURL($0, fid: u.fid, algorithm: cls?.checksum ?? .none) } }
            guard urls.count == u.devices.count else { continue }
            out += FileCommands.allocationPairs(fid: u.fid, devices: u.devices, urls: urls).map { ("upload\(i + 1)_" + $0.0, $0.1) }
        }
        return out
    }
}
