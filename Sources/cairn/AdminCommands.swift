import ArgumentParser
import CairnClient
import CairnProtocol
import Foundation

struct Admin: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Cluster administration: hosts, devices, domains, classes, stats, fsck, rebalance, workers, settings.",
        subcommands: [HostAdmin.self, DeviceAdmin.self, DomainAdmin.self, ClassAdmin.self, StatsAdmin.self,
                      FsckAdmin.self, RebalanceAdmin.self, WorkersAdmin.self, SettingsAdmin.self, RecoverAdmin.self])
}

/// Prints rows `prefix<i>_<field>` of a reply as a table or JSON.
func printRows(_ r: Args, count: String, prefix: (Int) -> String, fields: [String], json: Bool) {
    let n = Int(r.int(count) ?? 0)
    let rows: [[String: String]] = (0..<n).map { i in Dictionary(uniqueKeysWithValues: fields.map { ($0, r[prefix(i + 1) + $0] ?? "") }) }
    if json { printJSON(rows); return }
    let widths = fields.map { f in max(f.count, rows.map { $0[f]!.count }.max() ?? 0) }
    func line(_ cells: [String]) -> String { zip(cells, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ") }
    print(line(fields))
    for row in rows { print(line(fields.map { row[$0]! })) }
}

struct HostAdmin: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "host", abstract: "Storage hosts.", subcommands: [List.self, Add.self, Modify.self, Remove.self])

    struct List: ParsableCommand {
        @OptionGroup var tracker: TrackerOptions
        @Flag var json = false
        func run() throws {
            try reportingErrors {
                printRows(try tracker.client().call("get_hosts"), count: "hosts", prefix: { "host\($0)_" },
                          fields: ["hostid", "hostname", "hostip", "http_port", "status", "observed_state"], json: json)
            }
        }
    }
    struct Add: ParsableCommand {
        @OptionGroup var tracker: TrackerOptions
        @Argument var name: String
        @Option var ip: String
        @Option var port: Int
        @Option var status = "alive"
        func run() throws {
            try reportingErrors {
                let r = try tracker.client().call("create_host", [("host", name), ("ip", ip), ("port", String(port)), ("status", status)])
                print("host \(name) added as host \(r["hostid"] ?? "?")")
            }
        }
    }
    struct Modify: ParsableCommand {
        @OptionGroup var tracker: TrackerOptions
        @Argument var name: String
        @Option var ip: String?
        @Option var port: Int?
        @Option(help: "alive, readonly, down or dead") var status: String?
        func run() throws {
            try reportingErrors {
                var args = [("host", name)]
                if let ip { args.append(("ip", ip)) }
                if let port { args.append(("port", String(port))) }
                if let status { args.append(("status", status)) }
                _ = try tracker.client().call("update_host", args)
            }
        }
    }
    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm")
        @OptionGroup var tracker: TrackerOptions
        @Argument var name: String
        func run() throws { try reportingErrors { _ = try tracker.client().call("delete_host", [("host", name)]) } }
    }
}

struct DeviceAdmin: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "device", abstract: "Devices (disks) and their states.", subcommands: [List.self, Add.self, State.self, Weight.self])

    struct List: ParsableCommand {
        @OptionGroup var tracker: TrackerOptions
        @Flag var json = false
        func run() throws {
            try reportingErrors {
                printRows(try tracker.client().call("get_devices"), count: "devices", prefix: { "dev\($0)_" },
                          fields: ["devid", "hostid", "status", "observed_state", "mb_total", "mb_used", "mb_free", "utilization", "weight", "copies", "mb_stored"], json: json)
            }
        }
    }
    struct Add: ParsableCommand {
        @OptionGroup var tracker: TrackerOptions
        @Argument var host: String
        @Option(help: "Device id (default: the next unused one).") var devid: Int?
        @Option var state = "alive"
        func run() throws {
            try reportingErrors {
                var args = [("hostname", host), ("state", state)]
                if let devid { args.append(("devid", String(devid))) }
                let r = try tracker.client().call("create_device", args)
                print("device \(r["devid"] ?? "?") added on \(host); create the folder dev\(r["devid"] ?? "N") in that node's data folder")
            }
        }
    }
    struct State: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set a device's state: alive, readonly, drain, down or dead.")
        @OptionGroup var tracker: TrackerOptions
        @Argument var devid: Int
        @Argument var state: String
        func run() throws {
            try reportingErrors { _ = try tracker.client().call("set_state", [("device", String(devid)), ("state", state)]) }
        }
    }
    struct Weight: ParsableCommand {
        @OptionGroup var tracker: TrackerOptions
        @Argument var devid: Int
        @Argument var weight: Int
        func run() throws {
            try reportingErrors { _ = try tracker.client().call("set_weight", [("device", String(devid)), ("weight", String(weight))]) }
        }
    }
}

struct DomainAdmin: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "domain", abstract: "Domains (top-level namespaces).", subcommands: [List.self, Add.self, Remove.self])

    struct List: ParsableCommand {
        @OptionGroup var tracker: TrackerOptions
        @Flag var json = false
        func run() throws {
            try reportingErrors {
                let r = try tracker.client().call("get_domains")
                let names = (0..<Int(r.int("domains") ?? 0)).compactMap { r["domain\($0 + 1)"] }
                if json { printJSON(names) } else { names.forEach { print($0) } }
            }
        }
    }
    struct Add: ParsableCommand {
        @OptionGroup var tracker: TrackerOptions
        @Argument var name: String
        func run() throws { try reportingErrors { _ = try tracker.client().call("create_domain", [("domain", name)]) } }
    }
    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm")
        @OptionGroup var tracker: TrackerOptions
        @Argument var name: String
        func run() throws { try reportingErrors { _ = try tracker.client().call("delete_domain", [("domain", name)]) } }
    }
}

struct ClassAdmin: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "class", abstract: "Classes: replicas, sync copies, policy, checksum, chunk size.", subcommands: [List.self, Add.self, Modify.self, Remove.self])

    struct Settings: ParsableArguments {
        @Option(help: "Copies each file keeps.") var replicas: Int?
        @Option(name: .customLong("sync-copies"), help: "Copies that must exist before a write is acknowledged (default min(2, replicas)).") var syncCopies: Int?
        @Option(help: "Spread copies over distinct hosts or devices.") var policy: String?
        @Option(help: "none, md5 or sha256.") var checksum: String?
        @Option(name: .customLong("chunk-size"), help: "Chunk size in bytes (suffixes k, m, g).") var chunkSize: String?

        func args() throws -> [(String, String)] {
            var a: [(String, String)] = []
            if let replicas { a.append(("mindevcount", String(replicas))) }
            if let syncCopies { a.append(("sync_copies", String(syncCopies))) }
            if let policy { a.append(("policy", policy)) }
            if let checksum { a.append(("checksum", checksum)) }
            if let chunkSize {
                guard let bytes = parseSize(chunkSize) else { throw ValidationError("--chunk-size: \(chunkSize) is not a size") }
                a.append(("chunk_size", String(bytes)))
            }
            return a
        }
    }

    struct List: ParsableCommand {
        @OptionGroup var tracker: TrackerOptions
        @Argument var domain: String
        @Flag var json = false
        func run() throws {
            try reportingErrors {
                printRows(try tracker.client().call("get_classes", [("domain", domain)]), count: "class_count", prefix: { "class\($0)_" },
                          fields: ["name", "replicas", "sync_copies", "policy", "checksum", "chunk_size"], json: json)
            }
        }
    }
    struct Add: ParsableCommand {
        @OptionGroup var tracker: TrackerOptions
        @Argument var domain: String
        @Argument var name: String
        @OptionGroup var settings: Settings
        func run() throws {
            try reportingErrors {
                var args = [("domain", domain), ("class", name)] + (try settings.args())
                if settings.replicas == nil { args.append(("mindevcount", "2")) }
                _ = try tracker.client().call("create_class", args)
            }
        }
    }
    struct Modify: ParsableCommand {
        @OptionGroup var tracker: TrackerOptions
        @Argument var domain: String
        @Argument var name: String
        @OptionGroup var settings: Settings
        func run() throws {
            try reportingErrors {
                let client = tracker.client()
                var args = [("domain", domain), ("class", name)] + (try settings.args())
                if settings.replicas == nil {
                    let current = try ClassInfo.named(name, domain: domain, tracker: client)
                    args.append(("mindevcount", String(current.replicas)))
                }
                _ = try client.call("update_class", args)
            }
        }
    }
    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm")
        @OptionGroup var tracker: TrackerOptions
        @Argument var domain: String
        @Argument var name: String
        func run() throws { try reportingErrors { _ = try tracker.client().call("delete_class", [("domain", domain), ("class", name)]) } }
    }
}

func parseSize(_ s: String) -> Int64? {
    let lower = s.lowercased()
    let mult: Int64 = lower.hasSuffix("k") ? 1 << 10 : lower.hasSuffix("m") ? 1 << 20 : lower.hasSuffix("g") ? 1 << 30 : 1
    let digits = mult == 1 ? lower : String(lower.dropLast())
    return Int64(digits).map { $0 * mult }
}

struct StatsAdmin: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Cluster capacity and queues.")
    @OptionGroup var tracker: TrackerOptions
    @Flag var json = false
    func run() throws {
        try reportingErrors {
            let client = tracker.client()
            let fs = try client.call("statfs")
            let st = try client.call("cluster_stats")
            let out: [String: Any] = [
                "total_bytes": fs.int("total") ?? 0, "free_bytes": fs.int("free") ?? 0, "devices": fs.int("devices") ?? 0,
                "files": st.int("files") ?? 0, "blobs": st.int("blobs") ?? 0, "stored_bytes": st.int("bytes") ?? 0,
                "copies": st.int("copies") ?? 0, "replication_queue": st.int("replication_queue") ?? 0, "delete_queue": st.int("delete_queue") ?? 0,
                "sidecar_queue": st.int("sidecar_queue") ?? 0,
            ]
            if json { printJSON(out); return }
            for k in out.keys.sorted() { print("\(k): \(out[k]!)") }
        }
    }
}
