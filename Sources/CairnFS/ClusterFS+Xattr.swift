import CairnClient
import CairnCore
import CairnProtocol
import Foundation

/// Extended attributes. `user.<name>` is the file's custom metadata `<name>` (what `cairn meta`
/// and `cairn put --meta` set), stored in the tracker, binary-safe, up to 64 KiB. `cairn.*`
/// shows storage facts (read-only, except `cairn.class`). Other namespaces (security.*, system.*,
/// trusted.*): ENOTSUP, also on reads — `ls -l` then stops asking for SELinux labels and ACLs on
/// this file system after the first file (coreutils caches "unsupported" per device; ENODATA
/// cost two FUSE round trips per file listed).
extension ClusterFS {
    static let userPrefix = "user."
    static let maxValue = 64 << 10
    static let storageAttributes = ["cairn.class", "cairn.replicas", "cairn.chunks", "cairn.locations", "cairn.checksum"]

    public func getxattr(_ ino: UInt64, name: String) throws -> [UInt8] {
        guard name.hasPrefix(Self.userPrefix) || name.hasPrefix("cairn.") else { throw FSError(ENOTSUP) }
        guard let c = map.cairn(ino) else { throw FSError(ENODATA) }
        guard name.hasPrefix(Self.userPrefix) else { return Array(try storageAttribute(c, name).utf8) }
        let key = String(name.dropFirst(Self.userPrefix.count))
        switch xattrs.answer(c, key) {
        case .value(let v): return v
        case .absent: throw FSError(ENODATA)
        case .unknown: break
        }
        if xattrs.fetchesWhole(c) {
            guard let v = try userAttributes(c)[key] else { throw FSError(ENODATA) }
            return v
        }
        let r = try call("meta_get", [("ino", String(c)), ("name", key)])
        return Hex.decode(r["value_hex"] ?? "") ?? []
    }

    var xattrs: XattrCache { context.xattrs }

    /// A change to a file's custom metadata; when it fails, what the cache holds for the file
    /// may no longer be what the tracker has (another client's change made it fail): forgotten.
    private func changingXattrs(of ino: Ino, _ change: () throws -> Void) throws {
        do { try change() } catch {
            xattrs.forget(ino)
            throw error
        }
    }

    /// Every custom attribute of the file, in one call; the cache keeps them.
    private func userAttributes(_ ino: Ino) throws -> [String: [UInt8]] {
        let since = xattrs.beginFetch()
        let r = try call("meta_list", [("ino", String(ino))])
        var all: [String: [UInt8]] = [:]
        for i in 0..<Int(r.int("count") ?? 0) {
            guard let name = r["name_\(i + 1)"] else { continue }
            all[name] = Hex.decode(r["value_hex_\(i + 1)"] ?? "") ?? []
        }
        xattrs.storeAll(ino, all, since: since)
        return all
    }

    func storageAttribute(_ ino: Ino, _ name: String) throws -> String {
        let layout: FileLayout
        do { layout = try FileLayout.fetch(ino: ino, tracker: tracker) } catch { throw FSError.from(error) }
        if layout.attributes.isDirectory {
            guard name == "cairn.class" else { throw FSError(ENODATA) }
            return layout.className
        }
        switch name {
        case "cairn.class": return layout.className
        case "cairn.replicas":
            return String(layout.chunks.map { Set($0.devices).count }.min() ?? layout.replicas)
        case "cairn.chunks": return String(layout.chunks.count)
        case "cairn.locations": return layout.chunks.flatMap(\.urls).joined(separator: "\n")
        case "cairn.checksum":
            let sums = layout.chunks.compactMap(\.checksum)
            guard !sums.isEmpty else { throw FSError(ENODATA) }
            return sums.joined(separator: "\n")
        default: throw FSError(ENODATA)
        }
    }

    public func listxattr(_ ino: UInt64) throws -> [String] {
        guard let c = map.cairn(ino) else { return [] }
        let user = try (xattrs.names(c) ?? userAttributes(c).keys.sorted()).map { Self.userPrefix + $0 }
        let attrs = try context.recentAttributes.fresh(c).map(map.attributes) ?? attributes(call("fs_getattr", [("ino", String(c))]))
        if attrs.isDirectory { return user + ["cairn.class"] }
        if attrs.mode & 0o170000 == 0o120000 { return user }
        return user + Self.storageAttributes.filter { $0 != "cairn.checksum" }
    }

    /// flags: 1 = XATTR_CREATE, 2 = XATTR_REPLACE.
    public func setxattr(_ ino: UInt64, name: String, value: [UInt8], flags: Int32) throws {
        let c = try cairn(ino)
        if name.hasPrefix(Self.userPrefix) {
            guard name.count > Self.userPrefix.count else { throw FSError(EINVAL) }
            guard value.count <= Self.maxValue else { throw FSError(E2BIG, "values are limited to 64 KiB") }
            let key = String(name.dropFirst(Self.userPrefix.count))
            var args = [("ino", String(c)), ("name", key), ("value_hex", Hex.encode(value))]
            guard flags & 3 == 0 else {
                // XATTR_CREATE / XATTR_REPLACE: the answer decides, so it is waited for.
                args.append(("mode", flags & 1 != 0 ? "create" : "replace"))
                var answered: WireAttributes?
                try changingXattrs(of: c) { answered = WireAttributes(try call("meta_set", args)) }
                xattrs.set(c, key, value)
                listings.attributesChanged(c, now: answered)  // its ctime, from the tracker's answer
                return
            }
            try setWithoutWaiting(c, key, value, args)
            return
        }
        if name == "cairn.class" {
            let cls = String(decoding: value, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            _ = try call("set_dir_class", [("ino", String(c)), ("class", cls)])
            for f in openFiles(ofInode: c) { try? f.reload() }
            return
        }
        if name.hasPrefix("cairn.") { throw FSError(EPERM, "\(name) is read-only") }
        throw FSError(ENOTSUP)
    }

    /// A plain set (no XATTR_CREATE / XATTR_REPLACE) cannot fail on a file that exists, so it
    /// returns once the tracker's socket holds it (`TrackerClient.send`): a loop of sets costs
    /// the tracker's time, not a round trip each. This mount sees the value at once (its cache),
    /// others as when it is answered; every later call of this mount waits for the answer, and
    /// fsync makes it durable. Until the answer, the file's listed attributes are not current
    /// (the set changes its ctime); the answer brings them.
    private func setWithoutWaiting(_ c: Ino, _ key: String, _ value: [UInt8], _ args: [(String, String)]) throws {
        xattrs.set(c, key, value)
        listings.attributesChanged(c, now: nil)
        context.recentAttributes.forget(c)
        context.leases?.forget(c)
        let context = context
        do {
            try tracker.send("meta_set", args) { result in
                switch result {
                case .success(let r):
                    guard let w = WireAttributes(r) else { return }
                    context.recentAttributes.remember(w)
                    context.listings.attributesChanged(c, now: w)
                case .failure(let error):
                    // The file was removed meanwhile, or the tracker refused: what this mount
                    // holds for it is no longer what the tracker has.
                    context.xattrs.forget(c)
                    if error.code != "unknown_inode" {
                        FileHandle.standardError.write(Data("cairn mount: custom attribute user.\(key) of inode \(c) was not stored: \(error.text)\n".utf8))
                    }
                }
            }
        } catch {
            xattrs.forget(c)
            throw FSError.from(error)
        }
    }

    public func removexattr(_ ino: UInt64, name: String) throws {
        let c = try cairn(ino)
        guard name.hasPrefix(Self.userPrefix) else { throw name.hasPrefix("cairn.") ? FSError(EPERM) : FSError(ENOTSUP) }
        let key = String(name.dropFirst(Self.userPrefix.count))
        var answered: WireAttributes?
        try changingXattrs(of: c) { answered = WireAttributes(try call("meta_remove", [("ino", String(c)), ("name", key)])) }
        xattrs.removed(c, key)
        listings.attributesChanged(c, now: answered)
    }
}
