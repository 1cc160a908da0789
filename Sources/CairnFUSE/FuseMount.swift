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
            guard fuse_set_signal_handlers(se) == 0 else { return -2 }
            defer { fuse_remove_signal_handlers(se) }
            guard fuse_session_mount(se, mountpoint) == 0 else { return -3 }
            Self.raiseReadAhead(mountpoint)
            onMounted()
            let cfg = fuse_loop_cfg_create()
            defer { fuse_loop_cfg_destroy(cfg) }
            fuse_loop_cfg_set_max_threads(cfg, 16)
            fuse_loop_cfg_set_idle_threads(cfg, 16)
            fuse_loop_cfg_set_clone_fd(cfg, 0)
            let loop = fuse_session_loop_mt(se, cfg)
            fs.flushAll()
            fuse_session_unmount(se)
            return loop
        }
        switch rc {
        case -1: throw FSError(EINVAL, "libfuse rejected the mount options: \(options)")
        case -2: throw FSError(EIO, "cannot install signal handlers")
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
