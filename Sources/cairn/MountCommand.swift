import ArgumentParser
import CairnClient
import CairnFS
import CairnFUSE
import CSys
import Foundation

struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount the cluster as a directory (FUSE).",
        discussion: """
        Without --domain every domain is a top-level directory. Cairn's -o options: attr_timeout=S, entry_timeout=S,
        class=NAME (class of new files), write_buffers=N (chunk uploads in flight; memory = N × chunk size),
        readahead=BYTES (ranged-read size), readahead_segments=N (ranged reads a sequential reader has in flight
        ahead of it, 0 to 8; memory per open file is about N+2 times readahead), local_reads=0 (read replicas on this machine's storage nodes over
        HTTP too; by default they are read straight from the node's device folder), local_writes=0 (send every blob
        through its storage node; by default a blob for a node on this machine that grants local writes is written
        straight into its device folder), leases=0 (every open asks the
        tracker for the file's layout; by default a layout seen here is reused until the tracker says it changed). Other -o options (allow_other, ro, ...) go to FUSE.
        Unmount with `fusermount3 -u MOUNTPOINT` (or SIGTERM); open files are committed first.
        """)

    @Argument(help: "Empty directory to mount on.") var mountpoint: String
    @OptionGroup var tracker: TrackerOptions
    @Option(help: "Mount one domain as the root.") var domain: String?
    @Option(name: .short, help: "Mount options, comma-separated.") var o: [String] = []
    @Flag(name: .short, help: "Stay in the foreground.") var f = false
    @Option(help: "Log file of the background mount.") var log: String?

    func run() throws {
        try reportingErrors {
            let path = URL(fileURLWithPath: mountpoint).standardizedFileURL.path
            try clearStaleMount(path)
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
                throw CommandFailure("mount point \(path) does not exist or is not a directory")
            }
            let (options, fuseOptions) = try parseOptions()
            if !f { try daemonize(path); return }
            MallocTuning.apply()
            // durable=0: metadata changes are visible at once and durable at fsync/unmount, as on
            // a local file system (and so are the blobs: `DeferredWrites`).
            let client = TrackerClient(trackers: tracker.addresses, timeoutSeconds: 15, commonArgs: [("durable", "0")])
            let fs = try ClusterFS(tracker: client, options: options)
            let mount = FuseMount(fs: fs, mountpoint: path, fuseOptions: fuseOptions)
            let code = try mount.run {
                FileHandle.standardError.write(Data("cairn: mounted \(options.domain.map { "domain \($0)" } ?? "all domains") at \(path) (tracker \(tracker.addresses.joined(separator: ",")))\n".utf8))
            }
            if code != 0 { throw ExitCode(code) }
        }
    }

    func parseOptions() throws -> (MountOptions, [String]) {
        var m = MountOptions()
        m.domain = domain
        var rest: [String] = []
        for opt in o.flatMap({ $0.split(separator: ",").map(String.init) }) {
            let kv = opt.split(separator: "=", maxSplits: 1).map(String.init)
            let value = kv.count > 1 ? kv[1] : ""
            switch kv[0] {
            case "attr_timeout": m.attrTimeout = try number(opt, value)
            case "entry_timeout": m.entryTimeout = try number(opt, value)
            case "xattr_timeout": m.xattrTimeout = try number(opt, value)
            case "class": m.className = value
            case "local_reads":
                guard value == "0" || value == "1" else { throw ValidationError("-o \(opt): give local_reads=0 or local_reads=1") }
                m.localReads = value == "1"
            case "local_writes":
                guard value == "0" || value == "1" else { throw ValidationError("-o \(opt): give local_writes=0 or local_writes=1") }
                m.localWrites = value == "1"
            case "leases":
                guard value == "0" || value == "1" else { throw ValidationError("-o \(opt): give leases=0 or leases=1") }
                m.leases = value == "1"
            case "write_buffers": m.writeBuffers = Int(try number(opt, value))
            case "readahead":
                guard let b = parseSize(value), b >= 64 << 10 else { throw ValidationError("-o \(opt): give a size of at least 64k") }
                m.readAheadBytes = b
            case "readahead_segments":
                guard let n = Int(value), (0...8).contains(n) else { throw ValidationError("-o \(opt): give a number of segments from 0 to 8") }
                m.readAheadSegments = n
            default: rest.append(opt)
            }
        }
        return (m, rest)
    }

    func number(_ opt: String, _ v: String) throws -> Double {
        guard let d = Double(v), d >= 0 else { throw ValidationError("-o \(opt): not a number") }
        return d
    }

    /// A mount left by a killed process answers ENOTCONN: unmount it (lazily) and say so.
    func clearStaleMount(_ path: String) throws {
        var st = stat()
        if stat(path, &st) != 0, errno == ENOTCONN || errno == ECONNABORTED {
            FileHandle.standardError.write(Data("cairn: \(path) is a stale mount left by a stopped cairn mount; clearing it\n".utf8))
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/fusermount3")
            p.arguments = ["-uz", path]
            try p.run()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw CommandFailure("cannot clear the stale mount at \(path); try `fusermount3 -uz \(path)`") }
        }
    }

    /// Starts the same command in the foreground as a background session and returns once
    /// the file system is mounted (or reports why it did not mount).
    func daemonize(_ path: String) throws {
        let logPath = log ?? (NSTemporaryDirectory() + "cairn-mount-\(getpid()).log")
        guard FileManager.default.createFile(atPath: logPath, contents: nil) else {
            throw CommandFailure("cannot create the log file \(logPath); check that its folder exists, is writable and is not full")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
        p.arguments = [ProcessGroup.executable] + CommandLine.arguments.dropFirst() + ["-f"]
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        p.standardOutput = h
        p.standardError = h
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if isMounted(path) { return }
            if !p.isRunning {
                let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                throw CommandFailure("mount failed: \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw CommandFailure("the mount did not come up within 30 s; see \(logPath)")
    }
}

func isMounted(_ path: String) -> Bool {
    guard let text = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return false }
    return text.split(separator: "\n").contains { line in
        let f = line.split(separator: " ")
        return f.count > 2 && f[1] == path && f[2].hasPrefix("fuse")
    }
}
