import CFuse3
import CairnFS
import Foundation

/// The libfuse3 low-level adapter: an op table whose callbacks translate kernel requests into
/// `ClusterFS` calls and replies. Callbacks run on libfuse's worker threads and may block
/// (tracker calls, chunk transfers); the multi-threaded loop keeps other requests moving.
public final class FuseMount: Sendable {
    let fs: ClusterFS
    public let mountpoint: String
    let fuseOptions: [String]

    public init(fs: ClusterFS, mountpoint: String, fuseOptions: [String]) {
        self.fs = fs
        self.mountpoint = mountpoint
        self.fuseOptions = fuseOptions
    }

    /// Mounts and serves until unmounted (`fusermount3 -u`) or signalled (SIGTERM, SIGINT);
    /// then commits what is still open. Returns 0 on a clean stop.
    public func run(onMounted: () -> Void = {}) throws -> Int32 {
        var ops = fuse_lowlevel_ops()
        FuseOps.install(into: &ops)
        let options = (["fsname=cairn", "subtype=cairn", "default_permissions"] + fuseOptions).joined(separator: ",")
        let argv = ["cairn", "-o", options].map { (s: String) -> UnsafeMutablePointer<CChar>? in strdup(s) }
        defer { argv.forEach { free($0) } }
        var cargs = argv
        let ud = Unmanaged.passRetained(fs).toOpaque()
        defer { Unmanaged<ClusterFS>.fromOpaque(ud).release() }
        let rc: Int32 = cargs.withUnsafeMutableBufferPointer { buf in
            var args = fuse_args(argc: Int32(buf.count), argv: buf.baseAddress, allocated: 0)
            defer { fuse_opt_free_args(&args) }
            guard let se = fuse_session_new(&args, &ops, MemoryLayout<fuse_lowlevel_ops>.size, ud) else { return -1 }
            defer { fuse_session_destroy(se) }
            guard fuse_session_mount(se, mountpoint) == 0 else { return -3 }
            let stopper = SignalStopper(mountpoint: mountpoint, session: se)
            Self.raiseReadAhead(mountpoint)
            onMounted()
            fs.idleMemory.start()
            let cfg = fuse_loop_cfg_create()
            defer { fuse_loop_cfg_destroy(cfg) }
            fuse_loop_cfg_set_max_threads(cfg, 16)
            fuse_loop_cfg_set_idle_threads(cfg, 16)
            fuse_loop_cfg_set_clone_fd(cfg, 0)
            let loop = fuse_session_loop_mt(se, cfg)
            fs.flushAll()
            if stopper.signalled { SignalStopper.unmount(mountpoint) } else { fuse_session_unmount(se) }
            return stopper.signalled ? 0 : loop
        }
        switch rc {
        case -1: throw FSError(EINVAL, "libfuse rejected the mount options: \(options)")
        case -3: throw FSError(EIO, "cannot mount at \(mountpoint): is /dev/fuse available and the folder empty and not already mounted?")
        default: return rc == 0 || rc == SIGTERM || rc == SIGINT || rc == SIGHUP ? 0 : rc
        }
    }

    /// The kernel reads ahead 128 KiB at a time by default; 1 MiB lets reads arrive in 1 MiB
    /// requests (pitfall 16 in shared/notes/fuse-in-swift.md).
    static func raiseReadAhead(_ mountpoint: String) {
        // Never stat() the mount point here: the loop is not serving yet, so it would hang.
        guard let info = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return }
        for line in info.split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count > 4, f[4] == mountpoint {
                try? "1024".write(toFile: "/sys/class/bdi/\(f[2])/read_ahead_kb", atomically: false, encoding: .utf8)
            }
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP end the mount. libfuse's own handlers only wake the thread the
/// signal lands on, which in a Swift process is often not a FUSE worker, so the loop would
/// wait for the next request; instead the session is told to exit and one request is sent
/// (a lookup of a name that does not exist) so a worker wakes, sees it, and ends the loop.
final class SignalStopper: @unchecked Sendable {
    private struct Session: @unchecked Sendable { let raw: OpaquePointer }
    private var sources: [any DispatchSourceSignal] = []
    private let lock = NSLock()
    private var fired = false
    var signalled: Bool { lock.withLock { fired } }

    init(mountpoint: String, session: OpaquePointer) {
        let se = Session(raw: session)
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { [weak self] in
                self?.lock.withLock { self?.fired = true }
                fuse_session_exit(se.raw)
                _ = access(mountpoint + "/.cairn-stop-\(UInt64.random(in: 0...UInt64.max))", F_OK)
            }
            s.resume()
            sources.append(s)
        }
    }

    /// Unmounts after a signal: normally, or lazily when applications still hold files open
    /// (closing the session then ends their access).
    static func unmount(_ mountpoint: String) {
        for args in [["-u", mountpoint], ["-u", "-z", mountpoint]] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/fusermount3")
            p.arguments = ["-q"] + args
            p.standardError = FileHandle.nullDevice
            try? p.run()
            p.waitUntilExit()
            if p.terminationStatus == 0 { return }
        }
    }
}
