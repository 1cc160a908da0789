import ArgumentParser
import CairnClient
import CairnCore
import CairnProtocol
import Foundation

struct Put: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Store a file (or stdin with -) under DOMAIN KEY.")
    @OptionGroup var tracker: TrackerOptions
    @Argument var domain: String
    @Argument var key: String
    @Argument(help: "File to store, or - for standard input.") var file: String
    @Option(name: .customLong("class"), help: "Class of the new file (default: default).") var className: String?
    @Option(help: "Custom metadata NAME=VALUE (repeatable).") var meta: [String] = []

    func run() throws {
        try reportingErrors {
            let metadata = try meta.map { m -> (String, [UInt8]) in
                guard let eq = m.firstIndex(of: "="), eq != m.startIndex else { throw ValidationError("--meta wants NAME=VALUE, got \(m)") }
                return (String(m[..<eq]), Array(m[m.index(after: eq)...].utf8))
            }
            let source: FileTransfer.Source
            if file == "-" {
                source = FileTransfer.Source(size: nil) { _, count in try readStandardInput(count: count) }
            } else {
                let fd = open(file, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { throw CommandFailure("cannot open \(file): \(String(cString: strerror(errno)))") }
                var st = stat()
                fstat(fd, &st)
                guard (st.st_mode & S_IFMT) == S_IFREG else { throw CommandFailure("\(file) is not a regular file") }
                source = FileTransfer.Source(size: Int64(st.st_size), mode: UInt32(st.st_mode & 0o7777),
                                             mtime: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)) { offset, count in
                    var buf = [UInt8](repeating: 0, count: count)
                    var got = 0
                    while got < count {
                        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, count - got, off_t(offset) + off_t(got)) }
                        if n < 0 { throw CommandFailure("read of \(file) failed: \(String(cString: strerror(errno)))") }
                        if n == 0 { break }
                        got += n
                    }
                    return Array(buf[..<got])
                }
            }
            let bar = ProgressBar(total: source.size)
            let attrs = try FileTransfer(tracker: tracker.client()).put(domain: domain, key: key, className: className, source: source,
                                                                        meta: metadata, progress: bar.update)
            bar.finish()
            if isatty(1) != 0 { print("stored \(domain)/\(key): \(humanBytes(attrs.size))") }
        }
    }
}

func readStandardInput(count: Int) throws -> [UInt8] {
    var buf = [UInt8](repeating: 0, count: count)
    var got = 0
    while got < count {
        let n = buf.withUnsafeMutableBytes { read(0, $0.baseAddress! + got, count - got) }
        if n < 0 { if errno == EINTR { continue }; throw CommandFailure("read of standard input failed: \(String(cString: strerror(errno)))") }
        if n == 0 { break }
        got += n
    }
    return Array(buf[..<got])
}

/// A progress bar on stderr, only when it is a terminal and the file is large.
final class ProgressBar {
    let total: Int64?
    let enabled: Bool
    init(total: Int64?) { self.total = total; enabled = isatty(2) != 0 && (total ?? Int64.max) > 64 << 20 }
    func update(_ done: Int64) {
        guard enabled else { return }
        if let total, total > 0 {
            let pct = Int(Double(done) / Double(total) * 100)
            let bars = String(repeating: "#", count: pct / 4) + String(repeating: " ", count: 25 - pct / 4)
            FileHandle.standardError.write(Data("\r[\(bars)] \(pct)% \(humanBytes(done))".utf8))
        } else {
            FileHandle.standardError.write(Data("\r\(humanBytes(done))".utf8))
        }
    }
    func finish() { if enabled { FileHandle.standardError.write(Data("\n".utf8)) } }
}

struct Get: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Fetch DOMAIN KEY into FILE (default: standard output).")
    @OptionGroup var tracker: TrackerOptions
    @Argument var domain: String
    @Argument var key: String
    @Argument(help: "Where to write, or - for standard output.") var file: String = "-"

    func run() throws {
        try reportingErrors {
            let client = tracker.client()
            let layout = try FileLayout.fetch(domain: domain, key: key, tracker: client)
            guard layout.attributes.kind == "f" else { throw CommandFailure("\(domain)/\(key) is not a file") }
            // A regular file is written beside its destination and renamed over it at the end
            // (never half a file); a device, pipe or socket (/dev/null, a FIFO) is written as it is.
            var st = stat()
            let special = file != "-" && stat(file, &st) == 0 && (st.st_mode & S_IFMT) != S_IFREG
            let toStdout = file == "-"
            let direct = toStdout || special
            let tmp = direct ? file : file + ".cairn-part"
            let fd = toStdout ? 1 : special ? open(file, O_WRONLY | O_CLOEXEC) : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw CommandFailure("cannot create \(tmp): \(String(cString: strerror(errno)))") }
            do {
                try FileTransfer(tracker: client).get(layout: layout) { _, bytes in
                    var off = 0
                    while off < bytes.count {
                        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, bytes.count - off) }
                        if n < 0 { if errno == EINTR { continue }; throw CommandFailure("write to \(toStdout ? "standard output" : tmp) failed: \(String(cString: strerror(errno)))") }
                        off += n
                    }
                }
            } catch {
                if !toStdout { close(fd) }
                if !direct { unlink(tmp) }
                throw error
            }
            if special { close(fd) }
            if !direct {
                // A write the disk refuses late (full, failing) shows here: the destination
                // then keeps what it had, and nothing half-written is left beside it.
                let synced = fsync(fd) == 0 ? close(fd) : { let e = errno; close(fd); errno = e; return -1 }()
                guard synced == 0, rename(tmp, file) == 0 else {
                    let reason = String(cString: strerror(errno))
                    unlink(tmp)
                    throw CommandFailure("cannot complete \(file) (written as \(tmp)): \(reason)")
                }
            }
        }
    }
}

struct Ls: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the keys of DOMAIN starting with PREFIX.")
    @OptionGroup var tracker: TrackerOptions
    @Argument var domain: String
    @Argument var prefix: String = ""

    func run() throws {
        try reportingErrors {
            let client = tracker.client()
            var after: String?
            while true {
                var args = [("domain", domain), ("prefix", prefix), ("limit", "1000")]
                if let after { args.append(("after", after)) }
                let r: Args
                do { r = try client.call("list_keys", args) } catch let e as ProtocolError where e.code == "none_match" { return }
                let n = Int(r.int("key_count") ?? 0)
                for i in 1...max(1, n) { if let k = r["key_\(i)"] { print(k) } }
                if n < 1000 { return }
                after = r["next_after"]
            }
        }
    }
}

struct Rm: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete DOMAIN KEY (its space is freed in the background).")
    @OptionGroup var tracker: TrackerOptions
    @Argument var domain: String
    @Argument var key: String
    func run() throws { try reportingErrors { _ = try tracker.client().call("delete", [("domain", domain), ("key", key)]) } }
}

struct Mv: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Rename DOMAIN FROM to TO.")
    @OptionGroup var tracker: TrackerOptions
    @Argument var domain: String
    @Argument var from: String
    @Argument var to: String
    func run() throws {
        try reportingErrors { _ = try tracker.client().call("rename", [("domain", domain), ("from_key", from), ("to_key", to)]) }
    }
}

struct Stat: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a file's size, class, chunks, replicas and custom metadata.")
    @OptionGroup var tracker: TrackerOptions
    @Argument var domain: String
    @Argument var key: String
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        try reportingErrors {
            let client = tracker.client()
            let l = try FileLayout.fetch(domain: domain, key: key, tracker: client)
            let meta = try MetaList.fetch(client: client, domain: domain, key: key)
            let a = l.attributes
            if json {
                printJSON([
                    "domain": domain, "key": key, "ino": a.ino, "kind": a.kind, "size": a.size, "mode": String(a.mode, radix: 8),
                    "uid": a.uid, "gid": a.gid, "mtime_ns": a.mtime, "class": l.className, "replicas": l.replicas,
                    "chunk_size": l.chunkSize,
                    "chunks": l.chunks.map { ["index": $0.index, "fid": $0.fid, "length": $0.length, "devices": $0.devices, "urls": $0.urls] as [String: Any] },
                    "meta": Dictionary(uniqueKeysWithValues: meta.map { ($0.0, String(decoding: $0.1, as: UTF8.self)) }),
                ] as [String: Any])
                return
            }
            print("key:      \(domain)/\(key)")
            print("size:     \(a.size) (\(humanBytes(a.size)))")
            print("class:    \(l.className) (\(l.replicas) replicas)")
            print("mode:     \(String(a.mode, radix: 8))  uid \(a.uid)  gid \(a.gid)")
            print("chunks:   \(l.chunks.count) of up to \(humanBytes(l.chunkSize))")
            for c in l.chunks {
                print("  chunk \(c.index): fid \(c.fid), \(c.length) bytes, \(c.devices.count) copies")
                for u in c.urls { print("    \(u)") }
            }
            for (k, v) in meta { print("meta:     \(k)=\(String(decoding: v, as: UTF8.self))") }
        }
    }
}

enum MetaList {
    static func fetch(client: TrackerClient, domain: String, key: String) throws -> [(String, [UInt8])] {
        let r = try client.call("meta_list", [("domain", domain), ("key", key)])
        return (0..<Int(r.int("count") ?? 0)).compactMap { i in
            guard let n = r["name_\(i + 1)"], let v = Hex.decode(r["value_hex_\(i + 1)"] ?? "") else { return nil }
            return (n, v)
        }
    }
}

struct Meta: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Custom metadata of a file.", subcommands: [MetaGet.self, MetaSet.self, MetaRm.self, MetaListCommand.self])

    struct MetaGet: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "get", abstract: "Print one value (raw bytes).")
        @OptionGroup var tracker: TrackerOptions
        @Argument var domain: String
        @Argument var key: String
        @Argument var name: String
        func run() throws {
            try reportingErrors {
                let r = try tracker.client().call("meta_get", [("domain", domain), ("key", key), ("name", name)])
                FileHandle.standardOutput.write(Data(Hex.decode(r["value_hex"] ?? "") ?? []))
                if isatty(1) != 0 { print() }
            }
        }
    }

    struct MetaSet: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set", abstract: "Set NAME to VALUE.")
        @OptionGroup var tracker: TrackerOptions
        @Argument var domain: String
        @Argument var key: String
        @Argument var name: String
        @Argument var value: String
        func run() throws {
            try reportingErrors {
                _ = try tracker.client().call("meta_set", [("domain", domain), ("key", key), ("name", name), ("value_hex", Hex.encode(Array(value.utf8)))])
            }
        }
    }

    struct MetaRm: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove NAME.")
        @OptionGroup var tracker: TrackerOptions
        @Argument var domain: String
        @Argument var key: String
        @Argument var name: String
        func run() throws {
            try reportingErrors { _ = try tracker.client().call("meta_remove", [("domain", domain), ("key", key), ("name", name)]) }
        }
    }

    struct MetaListCommand: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List NAME=VALUE pairs.")
        @OptionGroup var tracker: TrackerOptions
        @Argument var domain: String
        @Argument var key: String
        func run() throws {
            try reportingErrors {
                for (k, v) in try MetaList.fetch(client: tracker.client(), domain: domain, key: key) { print("\(k)=\(String(decoding: v, as: UTF8.self))") }
            }
        }
    }
}
