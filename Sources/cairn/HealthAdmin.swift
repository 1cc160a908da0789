import ArgumentParser
import CairnClient
import CairnProtocol
import Foundation

/// `cairn admin fsck start|stop|status|log`.
struct FsckAdmin: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fsck", abstract: "Check every file's copies, sizes and checksums; find orphans; repair.",
                                                    subcommands: [Start.self, Stop.self, Status.self, Log.self])

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start a check (report only unless --repair).")
        @OptionGroup var tracker: TrackerOptions
        @Flag(help: "Fix what is found: bad copies replaced from good ones, missing copies made, surplus and old orphans deleted.") var repair = false
        @Option(help: "Only this domain.") var domain: String?
        @Option(help: "Only keys starting with this prefix.") var path: String?
        @Option(help: "Seconds an orphan blob must be old before repair deletes it.") var grace: Int?
        func run() throws {
            try reportingErrors {
                var args = [("repair", repair ? "1" : "0")]
                if let domain { args.append(("domain", domain)) }
                if let path { args.append(("path", path)) }
                if let grace { args.append(("grace", String(grace))) }
                _ = try tracker.client().call("fsck_start", args)
                print("fsck started\(repair ? " with repair" : " (report only)"); follow it with `cairn admin fsck status` and `cairn admin fsck log`")
            }
        }
    }
    struct Stop: ParsableCommand {
        @OptionGroup var tracker: TrackerOptions
        func run() throws { try reportingErrors { _ = try tracker.client().call("fsck_stop"); print("fsck stopped") } }
    }
    struct Status: ParsableCommand {
        @OptionGroup var tracker: TrackerOptions
        @Flag var json = false
        func run() throws {
            try reportingErrors {
                let r = try tracker.client().call("fsck_status")
                let secs = Double(r["seconds"] ?? "0") ?? 0
                let checked = Int(r.int("checked") ?? 0), bytes = r.int("bytes_verified") ?? 0
                var out: [String: Any] = [
                    "running": r["running"] == "1", "phase": r["phase"] ?? "", "repair": r["repair"] == "1",
                    "checked_files": checked, "verified_bytes": bytes, "seconds": secs, "findings": Int(r.int("findings") ?? 0),
                    "files_per_second": secs > 0 ? (Double(checked) / secs).rounded() : 0,
                    "mib_per_second": secs > 0 ? (Double(bytes) / 1_048_576 / secs * 10).rounded() / 10 : 0,
                ]
                var kinds: [String: Int] = [:]
                for k in r.values.keys where k.hasPrefix("num_") { kinds[String(k.dropFirst(4))] = Int(r[k] ?? "") ?? 0 }
                out["by_kind"] = kinds
                if json { printJSON(out); return }
                print("fsck: \(r["running"] == "1" ? "running (\(r["phase"] ?? ""))" : "not running")\(r["repair"] == "1" ? ", repairing" : ", report only")")
                print("checked: \(checked) blobs, \(humanBytes(bytes)) verified in \(String(format: "%.1f", secs)) s")
                print("findings: \(r["findings"] ?? "0")" + (kinds.isEmpty ? "" : " (" + kinds.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")"))
            }
        }
    }
    struct Log: ParsableCommand {
        @OptionGroup var tracker: TrackerOptions
        @Option(help: "At most this many findings.") var limit = 1000
        @Flag var json = false
        func run() throws {
            try reportingErrors {
                let r = try tracker.client().call("fsck_getlog", [("limit", String(limit))])
                let fields = ["logid", "utime", "evcode", "domain", "key", "fid", "devid", "repaired", "detail"]
                let n = Int(r.int("row_count") ?? 0)
                let rows = (1...max(1, n)).prefix(n).map { i in Dictionary(uniqueKeysWithValues: fields.map { ($0, r["row_\(i)_\($0)"] ?? "") }) }
                if json { printJSON(rows); return }
                for row in rows {
                    let key = row["key"]!.isEmpty ? "(fid \(row["fid"]!))" : "\(row["domain"]!)/\(row["key"]!)"
                    print("\(row["evcode"]!)\t\(key)\tfid \(row["fid"]!)\t\(row["repaired"] == "1" ? "repaired" : "not repaired")\t\(row["detail"]!)")
                }
            }
        }
    }
}

/// `cairn admin rebalance plan|start|stop|status`.
struct RebalanceAdmin: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rebalance", abstract: "Move copies from the most to the least used devices (by stored usage).",
                                                    subcommands: [Plan.self, Start.self, Stop.self, Status.self])

    static func printPlan(_ r: Args, json: Bool) {
        let moves = (0..<Int(r.int("moves") ?? 0)).compactMap { r["move_\($0 + 1)"] }
        let devices = (0..<Int(r.int("devices") ?? 0)).map { i in
            (r["dev\(i + 1)_devid"] ?? "", r["dev\(i + 1)_before"] ?? "", r["dev\(i + 1)_after"] ?? "")
        }
        if json {
            printJSON(["moves": moves.map { m -> [String: Int64] in
                let f = m.split(separator: ":").compactMap { Int64($0) }
                return f.count == 4 ? ["fid": f[0], "from": f[1], "to": f[2], "bytes": f[3]] : [:]
            }, "devices": devices.map { ["devid": $0.0, "percent_used_before": $0.1, "percent_used_after": $0.2] }])
            return
        }
        print("\(moves.count) moves, \(humanBytes(r.int("bytes") ?? 0))")
        for m in moves {
            let f = m.split(separator: ":")
            if f.count == 4 { print("  fid \(f[0]): dev\(f[1]) -> dev\(f[2]) (\(humanBytes(Int64(f[3]) ?? 0)))") }
        }
        for d in devices { print("  dev\(d.0): \(d.1)% used -> \(d.2)%") }
    }

    struct Plan: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show what a rebalance would move (a dry run); `start` within 10 minutes carries out this plan.")
        @OptionGroup var tracker: TrackerOptions
        @Option(help: "Percent a device may be from the average use.") var threshold: Double?
        @Flag var json = false
        func run() throws {
            try reportingErrors {
                RebalanceAdmin.printPlan(try tracker.client().call("rebalance_test", threshold.map { [("threshold", String($0))] } ?? []), json: json)
            }
        }
    }
    struct Start: ParsableCommand {
        @OptionGroup var tracker: TrackerOptions
        @Option(help: "Percent a device may be from the average use (plans anew).") var threshold: Double?
        func run() throws {
            try reportingErrors {
                let r = try tracker.client().call("rebalance_start", threshold.map { [("threshold", String($0))] } ?? [])
                print("rebalance started: \(r["moves"] ?? "0") moves, \(humanBytes(r.int("bytes") ?? 0)); follow it with `cairn admin rebalance status`")
            }
        }
    }
    struct Stop: ParsableCommand {
        @OptionGroup var tracker: TrackerOptions
        func run() throws { try reportingErrors { _ = try tracker.client().call("rebalance_stop"); print("rebalance stopped (moves in flight finish)") } }
    }
    struct Status: ParsableCommand {
        @OptionGroup var tracker: TrackerOptions
        @Flag var json = false
        func run() throws {
            try reportingErrors {
                let r = try tracker.client().call("rebalance_status")
                let usage = (0..<Int(r.int("devices") ?? 0)).map { i in (r["dev\(i + 1)_devid"] ?? "", r["dev\(i + 1)_percent_used"] ?? "") }
                if json {
                    printJSON(["running": r["running"] == "1", "pending_moves": Int(r.int("pending_moves") ?? 0), "pending_bytes": r.int("pending_bytes") ?? 0,
                               "planned_moves": Int(r.int("planned_moves") ?? 0), "drain_moves": Int(r.int("drain_moves") ?? 0),
                               "percent_used": Dictionary(uniqueKeysWithValues: usage.map { ($0.0, Double($0.1) ?? 0) })])
                    return
                }
                print("rebalance: \(r["running"] == "1" ? "running" : "idle"), \(r["pending_moves"] ?? "0") moves pending (\(humanBytes(r.int("pending_bytes") ?? 0)))"
                      + (r["planned_moves"].map { " of \($0) planned" } ?? ""))
                print("drain: \(r["drain_moves"] ?? "0") moves pending")
                for u in usage { print("  dev\(u.0): \(u.1)% used") }
            }
        }
    }
}

/// `cairn admin workers [JOB COUNT]`: background worker counts, changeable at run time.
struct WorkersAdmin: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "workers", abstract: "Show or set how many workers each background job runs (0 pauses it).")
    @OptionGroup var tracker: TrackerOptions
    @Argument(help: "Job: replicate, delete, monitor, drain, rebalance, fsck.") var job: String?
    @Argument var count: Int?
    func run() throws {
        try reportingErrors {
            let client = tracker.client()
            if let job {
                guard let count else { throw ValidationError("give a count: cairn admin workers \(job) N") }
                _ = try client.call("set_workers", [("job", job), ("count", String(count))])
            }
            let r = try client.call("workers")
            print("job master: \(r["job_master"] == "1" ? "this tracker" : "another tracker")")
            for i in 0..<Int(r.int("jobs") ?? 0) { print("\(r["job\(i + 1)_name"] ?? "")\t\(r["job\(i + 1)_count"] ?? "")") }
        }
    }
}

/// `cairn admin settings [set KEY VALUE]`: server settings (background_bandwidth, maintenance, …).
struct SettingsAdmin: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "settings", abstract: "Show or set server settings (background_bandwidth in bytes/s, maintenance on|off).")
    @OptionGroup var tracker: TrackerOptions
    @Argument(help: "`set KEY VALUE` to change one.") var words: [String] = []
    func run() throws {
        try reportingErrors {
            let client = tracker.client()
            if !words.isEmpty {
                guard words.count == 3, words[0] == "set" else { throw ValidationError("usage: cairn admin settings set KEY VALUE") }
                _ = try client.call("set_server_setting", [("key", words[1]), ("value", words[2])])
            }
            let r = try client.call("server_settings")
            for i in 0..<Int(r.int("key_count") ?? 0) {
                let k = r["key_\(i + 1)"] ?? ""
                if k == "fsck" || k == "rebalance_plan" || k == "jobmaster" { continue }  // internal state
                print("\(k) = \(r["value_\(i + 1)"] ?? "")")
            }
        }
    }
}

/// `cairn admin recover --from-storage`: rebuild the metadata from the storage nodes' sidecars.
struct RecoverAdmin: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recover",
        abstract: "Rebuild the metadata database from the storage nodes (after losing it).",
        discussion: """
        Start a tracker on a new, empty database and let the storage nodes register with it (they \
        do so by themselves within 10 s), then run this. Every file whose blobs carry sidecars comes \
        back under its key with its content, attributes and custom metadata; existing keys are kept.
        """)
    @OptionGroup var tracker: TrackerOptions
    @Flag(name: .customLong("from-storage"), help: "Read the sidecars on every registered storage node (the only source so far).") var fromStorage = false
    func run() throws {
        guard fromStorage else { throw ValidationError("say where to recover from: --from-storage") }
        try reportingErrors {
            let r = try TrackerClient(trackers: tracker.addresses, timeoutSeconds: 3600).call("recover_from_storage")
            print("read \(r["blobs"] ?? "0") blobs on \(r["devices"] ?? "0") devices (\(r["without_sidecar"] ?? "0") without a sidecar); restored \(r["restored"] ?? "0") of \(r["files"] ?? "0") files")
            if let u = r["unreachable_devices"], !u.isEmpty { print("warning: devices \(u) did not answer; run this again once they are up") }
        }
    }
}
