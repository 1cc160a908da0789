import CairnClient
import CairnCore
import CairnProtocol
import Foundation

/// The file system a mount shows, without the kernel: every operation the FUSE adapter
/// forwards, in terms of tracker calls and chunk transfers. Inode numbers here are the
/// mount's (see `InodeMap`). Blocking: callers are FUSE worker threads.
public final class ClusterFS: @unchecked Sendable {
    let context: FSContext
    let map: InodeMap
    var tracker: TrackerClient { context.tracker }
    public var options: MountOptions { context.options }

    private let lock = NSLock()
    private var files: [UInt64: OpenFile] = [:]
    private var directories: [UInt64: DirectoryListing] = [:]
    /// Files unlinked while open here: renamed to a hidden name, removed at the last release
    /// (what libfuse's high-level API does), so open handles keep reading them.
    private var hidden: [Ino: (parent: UInt64, name: String)] = [:]
    static let hiddenPrefix = ".cairn-hidden-"
    private var nextHandle: UInt64 = 1
    /// Every kernel request notes itself here; after 10 s without one the mount frees what it keeps.
    public let idleMemory: IdleMemoryRelease

    /// Connects to the tracker and resolves the mounted domain, if any.
    public init(tracker: TrackerClient, options: MountOptions) throws {
        context = FSContext(tracker: tracker, options: options)
        idleMemory = IdleMemoryRelease { [context] in context.releaseKeptMemory() }
        if let d = options.domain {
            let root = try Self.call(tracker, "fs_root", [("domain", d)])
            map = InodeMap(domainRoot: WireAttributes(root)?.ino)
        } else {
            map = InodeMap(domainRoot: nil)
        }
    }

    static func call(_ t: TrackerClient, _ cmd: String, _ args: [(String, String)]) throws -> Args {
        do { return try t.call(cmd, args) } catch { throw FSError.from(error) }
    }

    static let readOnlyCommands: Set<String> = ["fs_root", "fs_lookup", "fs_getattr", "fs_readdir", "fs_readlink", "get_domains", "statfs", "meta_get", "meta_list"]
    /// Changes whose effect on directory listings the methods making them apply themselves
    /// (`DirectoryCache`); any other change drops every listing.
    static let listedChanges: Set<String> = ["fs_create", "fs_unlink", "fs_rename", "fs_link", "fs_setattr", "meta_set", "meta_remove", "fs_sync"]

    /// Commands that change entries or attributes of the inodes they name (and perhaps of files
    /// they reach through those names).
    static let namespaceCommands: Set<String> = ["fs_create", "fs_unlink", "fs_rename", "fs_link", "fs_setattr"]
    /// Changes the tracker answers with the changed inode's attributes.
    static let answeredWithAttributes: Set<String> = ["fs_setattr", "fs_create", "meta_set", "meta_remove"]
    /// Commands whose effects on attributes reach further: everything remembered is dropped.
    static let sweepingCommands: Set<String> = ["set_dir_class", "create_domain", "delete_domain"]

    func call(_ cmd: String, _ args: [(String, String)]) throws -> Args {
        if !Self.readOnlyCommands.contains(cmd), !Self.listedChanges.contains(cmd) { listings.forgetAll() }
        if Self.namespaceCommands.contains(cmd) {
            let named = args.filter { ["ino", "parent", "newparent"].contains($0.0) }.compactMap { Ino($0.1) }
            context.recentAttributes.forget(filesAnd: named)
        } else if Self.sweepingCommands.contains(cmd) {
            context.recentAttributes.forgetAll()
        }
        let dropLeased = leasedLayoutsChanged(by: cmd, args)
        defer { dropLeased?() }
        let r = try Self.call(tracker, cmd, args)
        // Creates, unlinks and renames answer with their directories' new attributes, creates,
        // setattrs and custom-attribute changes with the inode's: the kernel asks for them next
        // (a changed ctime voids what it holds), and gets them without a call.
        var prefixes = ["parent_", "newparent_"]
        if Self.answeredWithAttributes.contains(cmd) { prefixes.append("") }
        for prefix in prefixes {
            if let w = WireAttributes(r, prefix: prefix) { context.recentAttributes.remember(w) }
        }
        return r
    }

    /// What a change this mount makes does to the layouts it holds (the tracker sends a mount
    /// no `INVAL` for its own changes): drops the inode it names, or the one the name it
    /// removes or replaces held — all of them when the listing cannot tell which that is.
    /// Worked out before the change (the listing knows the old name), applied after it.
    private func leasedLayoutsChanged(by cmd: String, _ args: [(String, String)]) -> (() -> Void)? {
        guard let leases = context.leases, !Self.readOnlyCommands.contains(cmd) else { return nil }
        func arg(_ key: String) -> String? { args.first { $0.0 == key }?.1 }
        func held(_ dirKey: String, _ nameKey: String) -> (() -> Void)? {
            guard let dir = arg(dirKey).flatMap({ Ino($0) }), let name = arg(nameKey) else { return { leases.forget(nil) } }
            switch listings.enabled ? listings.answer(dir, name) : .unknown {
            case .absent: return nil
            case .present(let w, _): return { leases.forget(w.ino) }
            case .unknown: return { leases.forget(nil) }
            }
        }
        switch cmd {
        case "fs_create", "fs_sync": return nil  // no held file changes
        case "fs_setattr", "fs_link", "meta_set", "meta_remove": return { leases.forget(arg("ino").flatMap { Ino($0) }) }  // its attributes, link count, ctime
        case "fs_unlink": return held("parent", "name")
        case "fs_rename":
            // The inode replaced is gone; the one moved (each, for an exchange) has a new ctime.
            let moved = held("parent", "name"), target = held("newparent", "newname")
            return { moved?(); target?() }
        default: return { leases.forget(nil) }
        }
    }

    func attributes(_ r: Args, prefix: String = "") throws -> FSAttributes {
        guard let w = WireAttributes(r, prefix: prefix) else { throw FSError(EIO, "reply without attributes") }
        return map.attributes(w)
    }

    /// The Cairn inode behind a mount inode; the virtual root of domains has none.
    func cairn(_ ino: UInt64) throws -> Ino {
        guard let c = map.cairn(ino) else { throw FSError(EPERM, "the top level holds domains only") }
        return c
    }

    /// The virtual top level that lists domains (only when no --domain was given).
    func isDomainRoot(_ ino: UInt64) -> Bool { ino == InodeMap.root && map.domainRoot == nil }

    // MARK: attributes and names

    public func rootAttributes() -> FSAttributes {
        let now = Clock.nowNanos()
        return FSAttributes(ino: InodeMap.root, mode: 0o040755, nlink: 2, uid: 0, gid: 0, size: 0, atime: now, mtime: now, ctime: now)
    }

    var listings: DirectoryCache { context.listings }

    /// Where the domains' root directories are kept among the listings (`DirectoryCache.keep`):
    /// an inode number the tracker never gives.
    static let domainsListing: Ino = 0

    public func lookup(parent: UInt64, name: String) throws -> FSAttributes {
        if isDomainRoot(parent) { return try lookupDomain(name) }
        let dir = try cairn(parent)
        switch try listedEntry(dir, name) {
        case .absent: throw FSError(ENOENT)
        case .present(let w, current: true): return map.attributes(w)
        case .present(let w, current: false):
            if let known = context.knownAttributes(w.ino) { return map.attributes(known) }
            // Changed here since the listing: a layout held under the lease has its attributes as
            // this mount's last change left them (anyone else's change would have dropped it).
            if let held = context.leases?.layout(w.ino) { return map.attributes(held.attributes) }
        case .unknown: break
        }
        return try attributes(call("fs_lookup", [("parent", String(dir)), ("name", name)]))
    }

    /// A domain's root directory, as kept under the lease: a path walk whose kernel entry of the
    /// domain lapsed asks the tracker nothing (nor waits behind changes sent without waiting).
    /// Changed here since, it takes the attributes this mount's change left it with. A domain
    /// not kept is always asked for: one another client made is found at once.
    private func lookupDomain(_ name: String) throws -> FSAttributes {
        switch listings.held(Self.domainsListing, name) {
        case .present(let w, current: true): return map.attributes(w)
        case .present(let w, current: false):
            if let latest = context.recentAttributes.latest(w.ino) { return map.attributes(latest) }
        default: break
        }
        let stamp = listings.beginFetch()
        guard let w = WireAttributes(try call("fs_root", [("domain", name)])) else { throw FSError(EIO, "reply without attributes") }
        if listings.enabled { listings.keep(Self.domainsListing, name, w, since: stamp) }
        return map.attributes(w)
    }

    /// The name in the directory's listing, fetched now (one page) when not cached and the
    /// directory is small.
    private func listedEntry(_ dir: Ino, _ name: String) throws -> DirectoryCache.Answer {
        guard listings.enabled else { return .unknown }
        let cached = listings.answer(dir, name)
        guard cached == .unknown, listings.shouldList(dir) else { return cached }
        return try fetchFirstPage(dir).kept ? listings.answer(dir, name) : .unknown
    }

    /// A directory's first page, fetched now; a directory whole in it is kept as its listing
    /// (for lookups, and under the lease for later listings too), a larger one is marked so.
    private func fetchFirstPage(_ dir: Ino) throws -> (entries: [(String, WireAttributes)], more: Bool, kept: Bool) {
        let since = listings.beginFetch()
        let page = try fetchWirePage(directory: dir, after: nil)
        let kept = listings.enabled && listings.store(dir, entries: page.more ? nil : page.entries, since: since)
        return (page.entries, page.more, kept)
    }

    public func getattr(_ ino: UInt64) throws -> FSAttributes {
        if isDomainRoot(ino) { return rootAttributes() }
        let c = try cairn(ino)
        var a: FSAttributes
        if let known = context.knownAttributes(c) {
            a = map.attributes(known)
        } else {
            a = try attributes(call("fs_getattr", [("ino", String(c))]))
        }
        // An open file with unwritten changes knows its size better than the tracker.
        if let f = openFile(ofInode: c), f.isDirty { a.size = f.lock.withLock { f.size } }
        return a
    }

    public struct AttributeChange {
        public var mode: UInt32?, uid: UInt32?, gid: UInt32?, size: Int64?, atime: Int64?, mtime: Int64?
        public init(mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil, size: Int64? = nil, atime: Int64? = nil, mtime: Int64? = nil) {
            self.mode = mode; self.uid = uid; self.gid = gid; self.size = size; self.atime = atime; self.mtime = mtime
        }
    }

    public func setattr(_ ino: UInt64, _ c: AttributeChange) throws -> FSAttributes {
        if isDomainRoot(ino) { throw FSError(EPERM) }
        let cino = try cairn(ino)
        if let same = unchangedBy(c, cino) { return same }
        if let done = try setattrWithoutWaiting(cino, c) { return done }
        var answered: WireAttributes?
        defer { listings.attributesChanged(cino, now: answered) }
        var args: [(String, String)] = [("ino", String(cino))]
        if let m = c.mode { args.append(("mode", String(m))) }
        if let u = c.uid { args.append(("uid", String(u))) }
        if let g = c.gid { args.append(("gid", String(g))) }
        if let t = c.atime { args.append(("atime", String(t))) }
        if let t = c.mtime { args.append(("mtime", String(t))) }
        if let size = c.size {
            let open = openFiles(ofInode: cino)
            if open.contains(where: \.isDirty) {
                // Unwritten data: the open handles apply the new size and commit it later.
                for f in open { try f.truncate(to: size) }
            } else {
                args.append(("size", String(size)))
                defer { for f in open { try? f.reload() } }
                let r = try call("fs_setattr", args)
                answered = WireAttributes(r)
                return try attributes(r)
            }
        }
        let r = try call("fs_setattr", args)
        // A size given here went to dirty open handles: the tracker's answer lacks it.
        if c.size == nil { answered = WireAttributes(r) }
        var a = try attributes(r)
        if let size = c.size { a.size = size }
        return a
    }

    /// A chmod, chown or utimes (no truncation) of a file or directory created here under a
    /// delegation that still lasts (`DelegatedDirectories`) goes down the pipeline without waiting, as its
    /// create did: no other client can have changed the file meanwhile (the tracker recalls
    /// the delegation before another client's request names it), so its new attributes are
    /// known here. Sent again after a lost connection, it sets the same values. nil: wait.
    private func setattrWithoutWaiting(_ ino: Ino, _ c: AttributeChange) throws -> FSAttributes? {
        guard c.size == nil, let delegations = context.leases?.delegations, !openFiles(ofInode: ino).contains(where: \.isDirty),
              var a = context.knownAttributes(ino), a.kind != "l" else { return nil }
        let context = context
        return try delegations.whileHeld(file: ino, []) {
            var args: [(String, String)] = [("ino", String(ino))]
            if let m = c.mode { a.mode = (a.mode & 0o170000) | (m & 0o7777); args.append(("mode", String(m))) }
            if let u = c.uid { a.uid = u; args.append(("uid", String(u))) }
            if let g = c.gid { a.gid = g; args.append(("gid", String(g))) }
            if let t = c.atime { a.atime = t; args.append(("atime", String(t))) }
            if let t = c.mtime { a.mtime = t; args.append(("mtime", String(t))) }
            a.ctime = Clock.nowNanos()
            args.append(("ctime", String(a.ctime)))  // the tracker stores the time this mount shows
            args.append(("quiet", "1"))  // only a failure is read
            try tracker.send("fs_setattr", args) { result in
                guard case .failure(let error) = result else { return }
                context.recentAttributes.forget(ino)
                context.listings.forgetAll()
                if error.code != "unknown_inode" {
                    FileHandle.standardError.write(Data("cairn mount: the tracker refused a change of inode \(ino)'s attributes made here under its directory's delegation: \(error.text); it shows the tracker's attributes again\n".utf8))
                }
            }
            context.leases?.forget(ino)
            context.recentAttributes.remember(a)
            listings.attributesChanged(ino, now: a)
            return map.attributes(a)
        }
    }

    /// A chmod or chown of a file this mount is creating (open since its create) to the values
    /// the create gave it — rsync's fchmod right after creating its temporary file: nothing to
    /// do but touch ctime, which is left as the create set it.
    private func unchangedBy(_ c: AttributeChange, _ ino: Ino) -> FSAttributes? {
        guard c.size == nil, c.atime == nil, c.mtime == nil, openFiles(ofInode: ino).contains(where: \.createdHere),
              let known = context.recentAttributes.fresh(ino) else { return nil }
        if let m = c.mode, m & 0o7777 != known.mode & 0o7777 { return nil }
        if let u = c.uid, u != known.uid { return nil }
        if let g = c.gid, g != known.gid { return nil }
        return map.attributes(known)
    }

    // MARK: namespace

    public func mkdir(parent: UInt64, name: String, mode: UInt32, uid: UInt32, gid: UInt32) throws -> FSAttributes {
        if isDomainRoot(parent) {
            _ = try call("create_domain", [("domain", name)])
            return try lookup(parent: parent, name: name)
        }
        let dir = try cairn(parent)
        let stamp = listings.beginFetch()
        let args = [("parent", String(dir)), ("name", name), ("kind", "d"), ("mode", String(mode)), ("uid", String(uid)), ("gid", String(gid))]
        if let made = try mkdirWithoutWaiting(dir, name, mode: mode, uid: uid, gid: gid, args, since: stamp) { return made }
        let a = try created(in: parent, name, call("fs_create", args))
        if let made = map.cairn(a.ino) { listings.createdEmpty(made, since: stamp) }
        return a
    }

    /// A mkdir in a directory delegated to this mount, decided here as `createWithoutWaiting`
    /// decides a create. The new directory is delegated here at birth (the tracker notes it as
    /// it stores the mkdir) and its listing is held, empty: what is made in it waits for the
    /// tracker no more than what is made beside it. nil: ask the tracker.
    private func mkdirWithoutWaiting(_ dir: Ino, _ name: String, mode: UInt32, uid: UInt32, gid: UInt32,
                                     _ args: [(String, String)], since stamp: DirectoryCache.FetchStamp) throws -> FSAttributes? {
        guard let delegations = context.leases?.delegations, listings.enabled,
              listings.held(dir, name) == .absent else { return nil }
        for attempt in 0..<2 {
            if attempt > 0, !delegations.ask(dir, className: options.className) { return nil }
            let made = try delegations.mkdir(in: dir) { ino, classOf -> WireAttributes in
                let now = Clock.nowNanos()
                try sendDelegatedCreate(args, ino: ino, in: dir, name: name, lost: "the directory and what was made in it are not stored")
                return WireAttributes(ino: ino, kind: "d", mode: 0o040000 | (mode & 0o7777), uid: uid, gid: gid, size: 0,
                                      atime: now, mtime: now, ctime: now, nlink: 2, classID: Int(classOf.int("dir_class") ?? 0))
            }
            guard let attributes = made else { continue }
            touchedDirectory(dir, subdirectoriesAdded: 1)
            listings.added(dir, name, attributes)
            listings.createdEmpty(attributes.ino, since: stamp)
            context.recentAttributes.remember(attributes)
            return map.attributes(attributes)
        }
        return nil
    }

    /// Sends a create decided here under `dir`'s delegation down the pipeline. Its answer's
    /// directory attributes are kept where this mount remembers none (the kernel asks for them
    /// at each create); not the new inode's: this mount may have changed them since. Refused
    /// (another client made the name after all, this mount's watch having been cut off
    /// meanwhile, or the tracker could not store it), the mount's log says so and the inode's
    /// next fsync fails.
    private func sendDelegatedCreate(_ args: [(String, String)], ino: Ino, in dir: Ino, name: String, lost: String) throws {
        let context = context
        try tracker.send("fs_create", args + [("ino", String(ino))]) { result in
            switch result {
            case .success(let reply):
                context.rememberAnsweredDirectory(reply)
            case .failure(let error):
                context.listings.forgetAll()
                context.recentAttributes.forget(filesAnd: [dir, ino])
                context.unstoredCommits.failed(ino)
                FileHandle.standardError.write(Data("cairn mount: the tracker refused the create of \"\(name)\" in directory inode \(dir) (inode \(ino), made here under the directory's delegation): \(error.text); \(lost)\n".utf8))
            }
        }
    }

    /// A new name's attributes, the directory's listing told of it.
    private func created(in parent: UInt64, _ name: String, _ reply: Args) throws -> FSAttributes {
        guard let w = WireAttributes(reply) else { throw FSError(EIO, "reply without attributes") }
        listings.added(try cairn(parent), name, w)
        return map.attributes(w)
    }

    public func symlink(parent: UInt64, name: String, target: String, uid: UInt32, gid: UInt32) throws -> FSAttributes {
        try created(in: parent, name, call("fs_create", [("parent", String(try cairn(parent))), ("name", name), ("kind", "l"), ("target", target),
                                                         ("mode", "511"), ("uid", String(uid)), ("gid", String(gid))]))
    }

    public func readlink(_ ino: UInt64) throws -> String {
        try call("fs_readlink", [("ino", String(try cairn(ino)))])["target"] ?? ""
    }

    public func unlink(parent: UInt64, name: String) throws {
        // Only a file open on this mount needs hiding; with none open, no lookup (a tracker call).
        if lock.withLock({ !files.isEmpty }), let a = try? lookup(parent: parent, name: name), !a.isDirectory, a.nlink <= 1, let c = map.cairn(a.ino), !openFiles(ofInode: c).isEmpty {
            let hiddenName = Self.hiddenPrefix + String(c)
            try rename(parent: parent, name: name, newParent: parent, newName: hiddenName, flags: 0)
            lock.withLock { hidden[c] = (parent, hiddenName) }
            return
        }
        let dir = try cairn(parent)
        if try unlinkWithoutWaiting(dir, name) { return }
        _ = try call("fs_unlink", [("parent", String(dir)), ("name", name)])
        listings.removed(dir, name)
    }

    /// An unlink of a file this mount's listing shows returns once the tracker's socket holds
    /// it (`TrackerClient.send`), as a plain setxattr does: a loop of them (`rm -r`) costs the
    /// tracker's time, not a round trip each. What decides its outcome is known here: the
    /// name and the inode it names (the kernel checked permissions; a directory goes through
    /// rmdir, which waits). The request names that inode, so the tracker removes the name only
    /// while it still names it — sent again after a lost answer, it cannot remove a file
    /// created under that name since. This mount shows the name gone at once; every later call
    /// waits for the answer (an rmdir of the directory, a create of the same name). Should the
    /// tracker refuse (another client removed or replaced the file first), this mount drops
    /// its listings, so the name shows as the tracker has it.
    private func unlinkWithoutWaiting(_ dir: Ino, _ name: String) throws -> Bool {
        guard case .present(let file, _) = listings.enabled ? listings.answer(dir, name) : .unknown, !file.isDirectory else { return false }
        touchedDirectory(dir)
        context.recentAttributes.forget(filesAnd: [])  // a link count may change where this mount cannot see
        context.leases?.forget(file.ino)
        listings.removed(dir, name)
        let context = context
        do {
            try tracker.send("fs_unlink", [("parent", String(dir)), ("name", name), ("ino", String(file.ino))]) { result in
                switch result {
                case .success(let r):
                    context.rememberAnsweredDirectory(r)
                case .failure(let error):
                    context.listings.forgetAll()
                    context.recentAttributes.forgetAll()
                    if error.code != "unknown_key" {
                        FileHandle.standardError.write(Data("cairn mount: \"\(name)\" (inode \(file.ino)) in directory inode \(dir) was not removed: \(error.text)\n".utf8))
                    }
                }
            }
        } catch {
            listings.forgetAll()  // no tracker took it: the name is still there
            throw FSError.from(error)
        }
        return true
    }

    /// Removes a hidden (unlinked-while-open) file once nothing here has it open.
    private func removeHiddenIfClosed(_ ino: Ino) {
        guard openFiles(ofInode: ino).isEmpty, let h = lock.withLock({ hidden.removeValue(forKey: ino) }), let dir = map.cairn(h.parent) else { return }
        do {
            _ = try call("fs_unlink", [("parent", String(dir)), ("name", h.name)])
            listings.removed(dir, h.name)
        } catch {
            // The last close already succeeded; nobody is left to get an errno.
            FileHandle.standardError.write(Data("cairn mount: inode \(ino), unlinked while open, stays as \(h.name) in directory inode \(dir): \(FSError.from(error)); remove it by hand\n".utf8))
        }
    }

    public func rmdir(parent: UInt64, name: String) throws {
        if isDomainRoot(parent) {
            _ = try call("delete_domain", [("domain", name)])
            listings.removed(Self.domainsListing, name)
            return
        }
        let dir = try cairn(parent)
        _ = try call("fs_unlink", [("parent", String(dir)), ("name", name), ("dir", "1")])
        listings.removed(dir, name)
    }

    public static let renameNoReplace: UInt32 = 1
    public static let renameExchange: UInt32 = 2

    public func rename(parent: UInt64, name: String, newParent: UInt64, newName: String, flags: UInt32) throws {
        let mode = flags & Self.renameExchange != 0 ? "exchange" : flags & Self.renameNoReplace != 0 ? "noreplace" : "replace"
        let dir = try cairn(parent), newDir = try cairn(newParent)
        if mode != "exchange", try renameWithoutWaiting(dir, name, newDir, newName, noReplace: mode == "noreplace") { return }
        let r = try call("fs_rename", [("parent", String(dir)), ("name", name), ("newparent", String(newDir)), ("newname", newName), ("mode", mode)])
        listings.renamed(dir, name, to: newDir, newName, exchange: mode == "exchange", moved: WireAttributes(r, prefix: "moved_"))
    }

    /// A rename of a file created here, between directories delegated to this mount whose
    /// listings it holds (rsync's temporary file onto its real name), goes down the pipeline
    /// without waiting: both names are known here, and no other client can change them
    /// meanwhile (the tracker recalls the delegations first). The request names the moved
    /// inode, so sent again after a lost answer it moves nothing else. A file open here under
    /// the name it replaces, or a directory, is renamed the waiting way.
    private func renameWithoutWaiting(_ dir: Ino, _ name: String, _ newDir: Ino, _ newName: String, noReplace: Bool) throws -> Bool {
        guard let delegations = context.leases?.delegations, listings.enabled,
              case .present(let moved, _) = listings.held(dir, name), !moved.isDirectory else { return false }
        let target = listings.held(newDir, newName)
        switch target {
        case .unknown: return false
        case .present(let victim, _):
            if noReplace { throw FSError(EEXIST) }
            if victim.isDirectory || !openFiles(ofInode: victim.ino).isEmpty || victim.ino == moved.ino { return false }
        case .absent: break
        }
        let context = context
        var now = moved
        now.ctime = Clock.nowNanos()  // sent along: the tracker stores the time this mount shows
        let sent: Void? = try delegations.whileHeld(file: moved.ino, [dir, newDir]) {
            try tracker.send("fs_rename", [("parent", String(dir)), ("name", name), ("newparent", String(newDir)), ("newname", newName),
                                           ("mode", noReplace ? "noreplace" : "replace"), ("ino", String(moved.ino)),
                                           ("ctime", String(now.ctime)), ("quiet", "1")]) { result in
                guard case .failure(let error) = result else { return }
                context.listings.forgetAll()
                context.recentAttributes.forgetAll()
                FileHandle.standardError.write(Data("cairn mount: the tracker refused the rename of \"\(name)\" (inode \(moved.ino)) in directory inode \(dir) to \"\(newName)\" in \(newDir), made here under the directories' delegations: \(error.text); names show as the tracker has them\n".utf8))
            }
        }
        guard sent != nil else { return false }
        touchedDirectory(dir)
        if newDir != dir { touchedDirectory(newDir) }
        context.leases?.forget(moved.ino)
        if case .present(let victim, _) = target {
            context.leases?.forget(victim.ino)
            context.recentAttributes.forget(filesAnd: [])  // the replaced file's link count, wherever else it is named
        }
        context.recentAttributes.remember(now)
        listings.renamed(dir, name, to: newDir, newName, exchange: false, moved: now)
        return true
    }

    public func link(_ ino: UInt64, newParent: UInt64, newName: String) throws -> FSAttributes {
        let newDir = try cairn(newParent)
        let r = try call("fs_link", [("ino", String(try cairn(ino))), ("newparent", String(newDir)), ("newname", newName)])
        guard let w = WireAttributes(r) else { throw FSError(EIO, "reply without attributes") }
        listings.linked(newDir, newName, w)
        return map.attributes(w)
    }

    public func statfs() throws -> (total: Int64, free: Int64) {
        let r = try call("statfs", [])
        return (r.int("total") ?? 0, r.int("free") ?? 0)
    }

    // MARK: files

    /// Creates and opens a new file.
    public func create(parent: UInt64, name: String, mode: UInt32, uid: UInt32, gid: UInt32) throws -> (FSAttributes, UInt64) {
        let dir = try cairn(parent)
        var args = [("parent", String(dir)), ("name", name), ("kind", "f"),
                    ("mode", String(mode)), ("uid", String(uid)), ("gid", String(gid))]
        if let cls = options.className { args.append(("class", cls)) }
        if let made = try createWithoutWaiting(dir, name, mode: mode, uid: uid, gid: gid, args) { return made }
        args.append(("alloc", "1"))
        let r = try call("fs_create", args)
        let attrs = try created(in: parent, name, r)
        let layout: FileLayout
        do { layout = try FileLayout(r) } catch { throw FSError.from(error) }
        return (attrs, open(layout, writable: true, created: true, preallocated: ChunkTransfer.Allocation(r, prefix: "upload_")).handle)
    }

    /// A create in a directory the tracker has delegated to this mount (`DelegatedDirectories`),
    /// whose listing it holds under its lease: decided here (the name is free: nobody else can
    /// add one there without taking the delegation back first), with an inode number and a
    /// first-chunk upload the tracker reserved; the create goes down the pipeline and the file
    /// is open at once. Its first commit goes the same way (`OpenFile`). nil: ask the tracker.
    /// `args`: the create's request, as it would be sent to wait.
    private func createWithoutWaiting(_ dir: Ino, _ name: String, mode: UInt32, uid: UInt32, gid: UInt32,
                                      _ args: [(String, String)]) throws -> (FSAttributes, UInt64)? {
        guard let delegations = context.leases?.delegations, listings.enabled, listings.held(dir, name) == .absent else { return nil }
        let context = context
        for attempt in 0..<2 {
            if attempt > 0, !delegations.ask(dir, className: options.className) { return nil }
            let made = try delegations.create(in: dir) { r -> (WireAttributes, DelegatedDirectories.Reservation) in
                let now = Clock.nowNanos()
                let attributes = WireAttributes(ino: r.ino, kind: "f", mode: 0o100000 | (mode & 0o7777), uid: uid, gid: gid, size: 0,
                                                atime: now, mtime: now, ctime: now, nlink: 1, classID: Int(r.classOf.int("class") ?? 0))
                try sendDelegatedCreate(args, ino: r.ino, in: dir, name: name, lost: "the file and what was written to it are not stored")
                return (attributes, r)
            }
            guard let (attributes, r) = made else { continue }
            touchedDirectory(dir)
            listings.added(dir, name, attributes)
            context.recentAttributes.remember(attributes)
            let layout = FileLayout(empty: attributes, classOf: r.classOf)
            context.rememberContent(ino: r.ino, attributes)
            let handle = register(OpenFile(ino: r.ino, layout: layout, context: context, writable: true, createdHere: true,
                                           delegatedIn: dir, preallocated: r.upload))
            return (map.attributes(attributes), handle)
        }
        return nil
    }

    /// A change to `dir`'s names sent without waiting: what the kernel asks next (the
    /// directory's attributes, for its next permission check) is answered as the tracker will
    /// change it, mtime and ctime now (and a link more for each directory made in it).
    private func touchedDirectory(_ dir: Ino, subdirectoriesAdded: Int = 0) {
        guard var d = context.knownAttributes(dir) else { return context.recentAttributes.forget(dir) }
        d.mtime = Clock.nowNanos(); d.ctime = d.mtime
        d.nlink += subdirectoriesAdded
        context.recentAttributes.remember(d)
    }

    /// Opens a file: its layout is fetched now (close-to-open: the newest committed content).
    /// A file this mount has just changed (its attributes are fresh here) gets its layout at its
    /// first read or write instead: rsync's open to fchmod the file it has just written then
    /// costs no tracker call. Its cached pages are dropped, as the layout is not known yet.
    public func open(_ ino: UInt64, writable: Bool) throws -> (handle: UInt64, keepCache: Bool) {
        let c = try cairn(ino)
        let fresh = context.recentAttributes.fresh(c)
        // A file this mount has just written is not being read through: rsync opens each file it
        // has written to set its attributes (its temporary name, first in the directory's order).
        if !writable, fresh == nil { warmFilesAhead(of: c) }
        // A layout held under the lease is current: the tracker would have said otherwise.
        if !writable, let held = context.leases?.layout(c) { return open(held, writable: false, leased: true) }
        if let known = fresh, known.kind == "f" {
            return (register(OpenFile(lazy: c, size: known.size, context: context, writable: writable)), false)
        }
        // One asked for ahead of this open (`fetchLayoutsAhead`) may be on its way: the pipeline
        // is waited for here, as the tracker call below would wait for it anyway (and, should
        // the tracker not answer, fail with what is still unanswered and where).
        if !writable, let leases = context.leases {
            try? tracker.settle()
            if let held = leases.layout(c) { return open(held, writable: false, leased: true) }
        }
        // Reading is what a read-only open is for: its bytes start coming off the local disk
        // while the tracker answers (cold small files: the disk read and the round trip overlap).
        if !writable, let local = context.chunks.local, let last = context.firstChunks.chunk(c) {
            local.warm([(urls: last.urls, count: Int(min(last.length, options.readAheadBytes)))])
        }
        let since = context.leases?.beginFetch()
        let layout: FileLayout
        do { layout = try FileLayout.fetch(ino: c, tracker: tracker) } catch { throw FSError.from(error) }
        guard layout.attributes.kind == "f" else { throw FSError(EISDIR) }
        if let since { context.leases?.keep(layout, since: since) }
        context.firstChunks.remember(layout)
        return open(layout, writable: writable)
    }

    /// A reader opening a directory's files in order has the next ones' first bytes read off
    /// the local disk ahead of it (`SiblingReadAhead`), from where their first chunks were last
    /// seen; the layouts of those this mount holds none of are asked for ahead of their opens.
    private func warmFilesAhead(of ino: Ino) {
        let next = context.siblingReadAhead.opened(ino, listings: listings)
        guard !next.isEmpty else { return }
        var seen: [FileLayout.Chunk] = [], unseen: [Ino] = []
        for n in next {
            if let first = context.firstChunks.chunk(n) { seen.append(first) } else { unseen.append(n) }
        }
        context.chunks.local?.warm(seen.map(Self.warmable))
        fetchLayoutsAhead(next.filter { context.leases?.layout($0) == nil }, warm: Set(unseen))
    }

    private static func warmable(_ first: FileLayout.Chunk) -> (urls: [String], count: Int) {
        (urls: first.urls, count: Int(min(first.length, SiblingReadAhead.bytesPerFile)))
    }

    /// Layout queries `fetchLayoutsAhead` sent and the tracker has not answered yet.
    private let layoutsAsked = LayoutQueriesAhead()

    /// Asks the tracker for the layouts of files about to be opened (`SiblingReadAhead`), down
    /// the pipeline without waiting, and keeps them under the lease: their opens then ask the
    /// tracker nothing. A file rsync has just written (its times and rename drop the layout the
    /// commit left) or one another client wrote is then read at the local disk's pace, not one
    /// round trip per file. `warm`: files whose first chunk was not known, warmed when answered.
    private func fetchLayoutsAhead(_ inos: [Ino], warm: Set<Ino>) {
        // Not while changes are on their way: the queries would wait behind them, and hold up
        // the changes sent after them (a copy out of and into the mount at once).
        guard let leases = context.leases, !inos.isEmpty, leases.heldGeneration() != nil,
              tracker.unanswered <= layoutsAsked.count else { return }
        let context = context, asked = layoutsAsked
        for ino in inos {
            let since = leases.beginFetch()
            asked.began()
            do {
                try tracker.send("file_layout", [("ino", String(ino))]) { result in
                    asked.ended()
                    guard case .success(let r) = result, let layout = try? FileLayout(r), layout.attributes.kind == "f" else { return }
                    leases.keep(layout, since: since)
                    context.firstChunks.remember(layout)
                    if warm.contains(ino), let first = layout.chunk(at: 0) { context.chunks.local?.warm([Self.warmable(first)]) }
                }
            } catch {
                return  // only ahead of need: each open asks for itself
            }
        }
    }

    private func open(_ layout: FileLayout, writable: Bool, created: Bool = false, preallocated: ChunkTransfer.Allocation? = nil,
                      leased: Bool = false) -> (handle: UInt64, keepCache: Bool) {
        let ino = layout.attributes.ino
        let keep = context.contentUnchanged(ino: ino, layout.attributes)
        context.rememberContent(ino: ino, layout.attributes)
        return (register(OpenFile(ino: ino, layout: layout, context: context, writable: writable, createdHere: created,
                                  preallocated: preallocated, leased: leased)), keep)
    }

    private func register(_ f: OpenFile) -> UInt64 {
        lock.withLock {
            let h = nextHandle
            nextHandle += 1
            files[h] = f
            return h
        }
    }

    func file(_ fh: UInt64) throws -> OpenFile {
        guard let f = lock.withLock({ files[fh] }) else { throw FSError(EBADF, "unknown file handle \(fh)") }
        return f
    }

    func openFiles(ofInode ino: Ino) -> [OpenFile] { lock.withLock { files.values.filter { $0.ino == ino } } }
    func openFile(ofInode ino: Ino) -> OpenFile? { openFiles(ofInode: ino).first { $0.isDirty } }

    public func read(_ fh: UInt64, offset: Int64, count: Int) throws -> ReadBytes {
        do { return try file(fh).read(offset: offset, count: count) } catch { throw FSError.from(error) }
    }

    public func write(_ fh: UInt64, offset: Int64, bytes: UnsafeRawBufferPointer) throws -> Int {
        do { return try file(fh).write(offset: offset, bytes: bytes) } catch { throw FSError.from(error) }
    }

    /// flush (close): the data has its synchronous copies and is visible when this returns.
    public func flush(_ fh: UInt64) throws {
        let f = try file(fh)
        do { try f.commit() } catch { throw FSError.from(error) }
    }

    /// fsync: as flush, and everything this mount wrote so far is durable.
    public func fsync(_ fh: UInt64?) throws {
        guard let fh else { return try sync() }
        let f = try file(fh)
        do { try f.commit(waiting: true) } catch { throw FSError.from(error) }
        try sync()
        // A commit sent at an earlier close and refused since (answered before fs_sync's answer).
        if context.unstoredCommits.take(f.ino) {
            throw FSError(EIO, "inode \(f.ino): what was written before an earlier close was not stored (see the mount's log)")
        }
    }

    /// Blobs first (the nodes flush the writes this mount deferred), then the metadata (the
    /// tracker syncs its log), so a durable name never points at bytes that are not.
    public func sync() throws {
        do {
            try context.chunks.deferred?.sync()
            _ = try context.tracker.call("fs_sync")
        } catch { throw FSError.from(error) }
    }

    public func release(_ fh: UInt64) throws {
        guard let f = lock.withLock({ files.removeValue(forKey: fh) }) else { return }
        defer { removeHiddenIfClosed(f.ino) }
        do { try f.commit() } catch { throw FSError.from(error) }
    }

    /// At unmount: commit whatever is still open, drop hidden files.
    public func flushAll() {
        let open = lock.withLock { Array(files.values) }
        for f in open {
            do { try f.commit() } catch {
                // Nobody is left to get an errno: say which file lost its last writes.
                FileHandle.standardError.write(Data("cairn mount: at unmount, inode \(f.ino) could not be committed: \(FSError.from(error))\n".utf8))
            }
        }
        lock.withLock { files.removeAll() }
        for ino in lock.withLock({ Array(hidden.keys) }) { removeHiddenIfClosed(ino) }
        do { try sync() } catch {
            FileHandle.standardError.write(Data("cairn mount: at unmount, the tracker could not make the last changes durable: \(error)\n".utf8))
        }
        context.leases?.stop()
    }

    // MARK: directories

    public func opendir(_ ino: UInt64) throws -> UInt64 {
        let listing = DirectoryListing(ino: ino)
        return lock.withLock {
            let h = nextHandle
            nextHandle += 1
            directories[h] = listing
            return h
        }
    }

    public func releasedir(_ fh: UInt64) { _ = lock.withLock { directories.removeValue(forKey: fh) } }

    /// Entries from `offset` on (offset = index of the next entry); pages come from the tracker
    /// as needed, a thousand at a time, with their attributes.
    public func readdir(_ fh: UInt64, offset: Int) throws -> [DirectoryListing.Entry] {
        guard let listing = lock.withLock({ directories[fh] }) else { throw FSError(EBADF) }
        return try listing.entries(from: offset, fs: self)
    }

    func fetchPage(directory ino: UInt64, after: String?) throws -> (entries: [DirectoryListing.Entry], more: Bool) {
        if isDomainRoot(ino) {
            let r = try call("get_domains", [])
            let names = (0..<Int(r.int("domains") ?? 0)).compactMap { r["domain\($0 + 1)"] }.filter { after == nil || $0 > after! }
            let entries = try names.map { DirectoryListing.Entry(name: $0, attributes: try lookup(parent: ino, name: $0)) }
            return (entries, false)
        }
        let dir = try cairn(ino)
        // Hidden names (files unlinked while open here) are left out, also from a held listing,
        // which this mount's rename to the hidden name updated.
        func entries(_ wire: [(String, WireAttributes)]) -> [DirectoryListing.Entry] {
            wire.filter { !$0.0.hasPrefix(Self.hiddenPrefix) }.map { DirectoryListing.Entry(name: $0.0, attributes: map.attributes($0.1)) }
        }
        if after == nil {
            if let held = listings.heldEntries(dir) { return (entries(held), false) }
            let first = try fetchFirstPage(dir)
            return (entries(first.entries), first.more)
        }
        let page = try fetchWirePage(directory: dir, after: after)
        return (entries(page.entries), page.more)
    }

    /// One page of a directory's entries, as the tracker answers (hidden names left out).
    func fetchWirePage(directory: Ino, after: String?) throws -> (entries: [(String, WireAttributes)], more: Bool) {
        var args = [("ino", String(directory)), ("limit", "1000")]
        if let after { args.append(("after", after)) }
        let r = try call("fs_readdir", args)
        let n = Int(r.int("count") ?? 0)
        let entries = try (0..<n).map { i in
            guard let w = WireAttributes(r, prefix: "e\(i + 1)_") else { throw FSError(EIO, "directory listing without attributes") }
            return (r["e\(i + 1)_name"] ?? "", w)
        }
        return (entries.filter { !$0.0.hasPrefix(Self.hiddenPrefix) }, n == 1000)
    }
}

/// One open directory: the entries fetched so far, so offsets stay stable while paging.
public final class DirectoryListing: @unchecked Sendable {
    public struct Entry: Sendable { public var name: String; public var attributes: FSAttributes }
    let ino: UInt64
    private let lock = NSLock()
    private var fetched: [Entry] = []
    private var complete = false

    init(ino: UInt64) { self.ino = ino }

    func entries(from offset: Int, fs: ClusterFS) throws -> [Entry] {
        try lock.withLock {
            if offset >= fetched.count, !complete {
                let page = try fs.fetchPage(directory: ino, after: fetched.last?.name)
                fetched += page.entries
                complete = !page.more
            }
            return offset < fetched.count ? Array(fetched[offset...]) : []
        }
    }
}
