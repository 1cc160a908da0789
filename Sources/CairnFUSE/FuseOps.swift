import CFuse3
import CairnFS
import Foundation

/// The op table. Each callback: find the file system, do the work, reply exactly once.
enum FuseOps {
    /// Every callback that does work starts here (not `forget`), so this is also where the mount
    /// notes it is in use.
    static func fs(_ req: fuse_req_t?) -> ClusterFS {
        let fs = Unmanaged<ClusterFS>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
        fs.idleMemory.noteRequest()
        return fs
    }

    static func fail(_ req: fuse_req_t?, _ error: any Error) {
        let e = FSError.from(error)
        // Expected answers (ENOENT, EEXIST...) stay quiet; data errors are logged with their cause.
        if e.errno == EIO || e.errno == ENOSPC {
            FileHandle.standardError.write(Data("cairn mount: \(e)\n".utf8))
        }
        fuse_reply_err(req, e.errno)
    }

    static func stat(_ a: FSAttributes) -> stat {
        var s = Glibc.stat()
        s.st_ino = UInt(a.ino)
        s.st_mode = a.mode
        s.st_nlink = UInt(a.nlink)
        s.st_uid = a.uid
        s.st_gid = a.gid
        s.st_size = Int(a.size)
        s.st_blksize = 1 << 20
        s.st_blocks = Int((a.size + 511) / 512)
        s.st_atim = timespec(tv_sec: Int(a.atime / 1_000_000_000), tv_nsec: Int(a.atime % 1_000_000_000))
        s.st_mtim = timespec(tv_sec: Int(a.mtime / 1_000_000_000), tv_nsec: Int(a.mtime % 1_000_000_000))
        s.st_ctim = timespec(tv_sec: Int(a.ctime / 1_000_000_000), tv_nsec: Int(a.ctime % 1_000_000_000))
        return s
    }

    static func entry(_ fs: ClusterFS, _ a: FSAttributes) -> fuse_entry_param {
        var e = fuse_entry_param()
        e.ino = a.ino
        e.generation = 0
        e.attr = stat(a)
        e.attr_timeout = fs.options.attrTimeout
        e.entry_timeout = fs.options.entryTimeout
        return e
    }

    static func replyEntry(_ req: fuse_req_t?, _ body: () throws -> FSAttributes) {
        let fs = fs(req)
        do {
            var e = entry(fs, try body())
            fuse_reply_entry(req, &e)
        } catch { fail(req, error) }
    }

    static func replyAttr(_ req: fuse_req_t?, _ body: () throws -> FSAttributes) {
        let fs = fs(req)
        do {
            var s = stat(try body())
            fuse_reply_attr(req, &s, fs.options.attrTimeout)
        } catch { fail(req, error) }
    }

    static func replyDone(_ req: fuse_req_t?, _ body: () throws -> Void) {
        do { try body(); fuse_reply_err(req, 0) } catch { fail(req, error) }
    }

    /// A read's answer, its pieces sent as they are held (one writev, no copy into one buffer).
    static func reply(_ req: fuse_req_t?, _ data: ReadBytes) {
        var vectors: [iovec] = []
        vectors.reserveCapacity(data.pieces.count)
        // Nested so every piece's pointer stays valid until the reply is sent.
        func send(_ i: Int) {
            guard i < data.pieces.count else {
                _ = vectors.withUnsafeBufferPointer { fuse_reply_iov(req, $0.baseAddress, Int32($0.count)) }
                return
            }
            data.pieces[i].withUnsafeBytes { piece in
                vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: piece.baseAddress), iov_len: piece.count))
                send(i + 1)
            }
        }
        send(0)
    }

    static func context(_ req: fuse_req_t?) -> (uid: UInt32, gid: UInt32, umask: UInt32) {
        guard let c = fuse_req_ctx(req) else { return (0, 0, 0o022) }
        return (c.pointee.uid, c.pointee.gid, c.pointee.umask)
    }

    static func name(_ p: UnsafePointer<CChar>?) -> String { String(cString: p!) }

    static func install(into ops: inout fuse_lowlevel_ops) {
        ops.`init` = { _, conn in
            guard let conn else { return }
            conn.pointee.max_write = 1 << 20
            // Locks stay local to this mount: without getlk/setlk/flock the kernel handles them.
        }
        ops.lookup = { req, parent, n in
            let fs = FuseOps.fs(req)
            do {
                var e = FuseOps.entry(fs, try fs.lookup(parent: parent, name: FuseOps.name(n)))
                fuse_reply_entry(req, &e)
            } catch let error where FSError.from(error).errno == ENOENT && fs.options.entryTimeout > 0 {
                // A negative entry the kernel keeps for the entry timeout: `rsync` and `cp` look
                // a missing name up several times (stat, open, the rename's target).
                var e = fuse_entry_param()
                e.ino = 0
                e.entry_timeout = fs.options.entryTimeout
                fuse_reply_entry(req, &e)
            } catch { FuseOps.fail(req, error) }
        }
        ops.forget = { req, _, _ in fuse_reply_none(req) }
        ops.getattr = { req, ino, _ in FuseOps.replyAttr(req) { try FuseOps.fs(req).getattr(ino) } }
        ops.setattr = { req, ino, attr, toSet, _ in
            FuseOps.replyAttr(req) {
                let a = attr!.pointee
                var c = ClusterFS.AttributeChange()
                let set = UInt32(bitPattern: toSet)
                if set & UInt32(FUSE_SET_ATTR_MODE) != 0 { c.mode = a.st_mode }
                if set & UInt32(FUSE_SET_ATTR_UID) != 0 { c.uid = a.st_uid }
                if set & UInt32(FUSE_SET_ATTR_GID) != 0 { c.gid = a.st_gid }
                if set & UInt32(FUSE_SET_ATTR_SIZE) != 0 { c.size = Int64(a.st_size) }
                let now = Int64(Date().timeIntervalSince1970 * 1e9)
                if set & UInt32(FUSE_SET_ATTR_ATIME_NOW) != 0 { c.atime = now }
                else if set & UInt32(FUSE_SET_ATTR_ATIME) != 0 { c.atime = Int64(a.st_atim.tv_sec) * 1_000_000_000 + Int64(a.st_atim.tv_nsec) }
                if set & UInt32(FUSE_SET_ATTR_MTIME_NOW) != 0 { c.mtime = now }
                else if set & UInt32(FUSE_SET_ATTR_MTIME) != 0 { c.mtime = Int64(a.st_mtim.tv_sec) * 1_000_000_000 + Int64(a.st_mtim.tv_nsec) }
                return try FuseOps.fs(req).setattr(ino, c)
            }
        }
        ops.readlink = { req, ino in
            do { fuse_reply_readlink(req, try FuseOps.fs(req).readlink(ino)) } catch { FuseOps.fail(req, error) }
        }
        ops.mkdir = { req, parent, n, mode in
            let ctx = FuseOps.context(req)
            FuseOps.replyEntry(req) { try FuseOps.fs(req).mkdir(parent: parent, name: FuseOps.name(n), mode: mode & ~ctx.umask, uid: ctx.uid, gid: ctx.gid) }
        }
        ops.unlink = { req, parent, n in FuseOps.replyDone(req) { try FuseOps.fs(req).unlink(parent: parent, name: FuseOps.name(n)) } }
        ops.rmdir = { req, parent, n in FuseOps.replyDone(req) { try FuseOps.fs(req).rmdir(parent: parent, name: FuseOps.name(n)) } }
        ops.symlink = { req, target, parent, n in
            let ctx = FuseOps.context(req)
            FuseOps.replyEntry(req) { try FuseOps.fs(req).symlink(parent: parent, name: FuseOps.name(n), target: FuseOps.name(target), uid: ctx.uid, gid: ctx.gid) }
        }
        ops.rename = { req, parent, n, newParent, newName, flags in
            FuseOps.replyDone(req) { try FuseOps.fs(req).rename(parent: parent, name: FuseOps.name(n), newParent: newParent, newName: FuseOps.name(newName), flags: flags) }
        }
        ops.link = { req, ino, newParent, newName in FuseOps.replyEntry(req) { try FuseOps.fs(req).link(ino, newParent: newParent, newName: FuseOps.name(newName)) } }
        ops.create = { req, parent, n, mode, fi in
            let ctx = FuseOps.context(req)
            let fs = FuseOps.fs(req)
            do {
                let (a, fh) = try fs.create(parent: parent, name: FuseOps.name(n), mode: mode & ~ctx.umask & 0o7777, uid: ctx.uid, gid: ctx.gid)
                var e = FuseOps.entry(fs, a)
                fi!.pointee.fh = fh
                fuse_reply_create(req, &e, fi)
            } catch { FuseOps.fail(req, error) }
        }
        ops.open = { req, ino, fi in
            do {
                let access = fi!.pointee.flags & O_ACCMODE
                let (fh, keep) = try FuseOps.fs(req).open(ino, writable: access != O_RDONLY)
                fi!.pointee.fh = fh
                fi!.pointee.keep_cache = keep ? 1 : 0
                // Closing a read-only handle has nothing to commit: no FLUSH round trip at close().
                fi!.pointee.noflush = access == O_RDONLY ? 1 : 0
                fuse_reply_open(req, fi)
            } catch { FuseOps.fail(req, error) }
        }
        ops.read = { req, _, size, off, fi in
            do {
                FuseOps.reply(req, try FuseOps.fs(req).read(fi!.pointee.fh, offset: Int64(off), count: size))
            } catch { FuseOps.fail(req, error) }
        }
        ops.write = { req, _, buf, size, off, fi in
            do {
                let n = try FuseOps.fs(req).write(fi!.pointee.fh, offset: Int64(off), bytes: UnsafeRawBufferPointer(start: buf, count: size))
                fuse_reply_write(req, n)
            } catch { FuseOps.fail(req, error) }
        }
        ops.flush = { req, _, fi in FuseOps.replyDone(req) { try FuseOps.fs(req).flush(fi!.pointee.fh) } }
        ops.fsync = { req, _, _, fi in FuseOps.replyDone(req) { try FuseOps.fs(req).fsync(fi!.pointee.fh) } }
        ops.fsyncdir = { req, _, _, _ in FuseOps.replyDone(req) { try FuseOps.fs(req).fsync(nil) } }
        ops.release = { req, _, fi in FuseOps.replyDone(req) { try FuseOps.fs(req).release(fi!.pointee.fh) } }
        ops.opendir = { req, ino, fi in
            do {
                fi!.pointee.fh = try FuseOps.fs(req).opendir(ino)
                fuse_reply_open(req, fi)
            } catch { FuseOps.fail(req, error) }
        }
        ops.releasedir = { req, _, fi in
            FuseOps.fs(req).releasedir(fi!.pointee.fh)
            fuse_reply_err(req, 0)
        }
        ops.readdir = { req, ino, size, off, fi in FuseOps.listDirectory(req, ino, size, off, fi!.pointee.fh, plus: false) }
        ops.readdirplus = { req, ino, size, off, fi in FuseOps.listDirectory(req, ino, size, off, fi!.pointee.fh, plus: true) }
        ops.statfs = { req, _ in
            do {
                let (total, free) = try FuseOps.fs(req).statfs()
                var s = statvfs()
                s.f_bsize = 1 << 20
                s.f_frsize = 4096
                s.f_blocks = UInt(total / 4096)
                s.f_bfree = UInt(free / 4096)
                s.f_bavail = UInt(free / 4096)
                s.f_files = 1 << 32
                s.f_ffree = 1 << 31
                s.f_favail = 1 << 31
                s.f_namemax = 255
                fuse_reply_statfs(req, &s)
            } catch { FuseOps.fail(req, error) }
        }
        ops.getxattr = { req, ino, n, size in
            do {
                let value = try FuseOps.fs(req).getxattr(ino, name: FuseOps.name(n))
                FuseOps.replyXattr(req, value, size)
            } catch { FuseOps.fail(req, error) }
        }
        ops.listxattr = { req, ino, size in
            do {
                let names = try FuseOps.fs(req).listxattr(ino)
                FuseOps.replyXattr(req, names.flatMap { Array($0.utf8) + [0] }, size)
            } catch { FuseOps.fail(req, error) }
        }
        ops.setxattr = { req, ino, n, value, size, flags in
            FuseOps.replyDone(req) {
                let bytes = size > 0 ? Array(UnsafeRawBufferPointer(start: value, count: size)) : []
                try FuseOps.fs(req).setxattr(ino, name: FuseOps.name(n), value: bytes, flags: flags)
            }
        }
        ops.removexattr = { req, ino, n in FuseOps.replyDone(req) { try FuseOps.fs(req).removexattr(ino, name: FuseOps.name(n)) } }
    }

    static func replyXattr(_ req: fuse_req_t?, _ value: [UInt8], _ size: Int) {
        if size == 0 { fuse_reply_xattr(req, value.count); return }
        guard value.count <= size else { fuse_reply_err(req, ERANGE); return }
        _ = value.withUnsafeBytes { fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) }
    }

    /// readdir and readdirplus: "." and ".." first (offsets 1 and 2), then the listing.
    static func listDirectory(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ size: Int, _ off: off_t, _ fh: UInt64, plus: Bool) {
        let fs = fs(req)
        // The kernel offers up to max_pages (1 MiB here) per call; zeroing that much for every
        // directory was an eighth of `ls -lR`'s CPU in the mount. Fewer bytes are allowed.
        let size = min(size, 128 << 10)
        let buf = UnsafeMutablePointer<CChar>.allocate(capacity: size)  // only the first `used` bytes are sent
        defer { buf.deallocate() }
        var used = 0
        do {
            var offset = Int(off)
            func add(_ name: String, _ attrs: FSAttributes, next: Int, lookup: Bool) -> Bool {
                let room = size - used
                let n: Int
                if plus {
                    var e = entry(fs, attrs)
                    if !lookup { e.ino = attrs.ino; e.attr_timeout = 0; e.entry_timeout = 0 }
                    n = fuse_add_direntry_plus(req, buf + used, room, name, &e, off_t(next))
                } else {
                    var s = stat(attrs)
                    n = fuse_add_direntry(req, buf + used, room, name, &s, off_t(next))
                }
                if n > room { return false }
                used += n
                return true
            }
            if offset == 0 {
                let me = FSAttributes(ino: ino, mode: 0o040755, nlink: 2, uid: 0, gid: 0, size: 0, atime: 0, mtime: 0, ctime: 0)
                guard add(".", me, next: 1, lookup: false) else { throw FSError(EINVAL) }
                offset = 1
            }
            if offset == 1 {
                let up = FSAttributes(ino: 1, mode: 0o040755, nlink: 2, uid: 0, gid: 0, size: 0, atime: 0, mtime: 0, ctime: 0)
                if add("..", up, next: 2, lookup: false) { offset = 2 }
            }
            if offset >= 2 {
                var index = offset - 2
                outer: while true {
                    let entries = try fs.readdir(fh, offset: index)
                    if entries.isEmpty { break }
                    for e in entries {
                        if !add(e.name, e.attributes, next: index + 3, lookup: true) { break outer }
                        index += 1
                    }
                }
            }
            fuse_reply_buf(req, buf, used)
        } catch { fail(req, error) }
    }
}
