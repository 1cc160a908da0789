import CairnMetadata
import Foundation

/// MogileFS's `!` admin lines, answered as text blocks ending in `.`.
struct AdminLines: Sendable {
    let store: MetadataStore
    let counters: TrackerCounters
    let workers: WorkerRegistry
    let watchers: Watchers

    static let version = "cairn 0.1.0"

    func answer(_ text: String) async -> [UInt8] {
        let parts = text.split(separator: " ").map(String.init)
        var lines: [String]
        switch parts.first?.lowercased() ?? "" {
        case "version":
            lines = [Self.version]
        case "stats":
            let s = try? await store.stats()
            let written = store.writeCounts
            let census = watchers.census
            lines = [
                "uptime \(Int(Date().timeIntervalSince(counters.started)))",
                "queries \(counters.queryCount)",
                "files \(s?.files ?? 0)",
                "blobs \(s?.blobs ?? 0)",
                "work_queue_for_replicate \(s?.replicationQueue ?? 0)",
                "work_queue_for_delete \(s?.deleteQueue ?? 0)",
                "lease_waits \(counters.leaseWaitCount)",
                "delegation_recalls \(counters.recallCount)",
                // Mounts watching now, and the directories they create in on their own.
                "watchers \(census.watchers)",
                "delegated_directories \(census.delegated)",
                "lines_folded \(counters.foldedCount)",
                // Writes share transactions when they come together (`GroupCommit`).
                "write_transactions \(written.transactions)",
                "writes \(written.writes)",
            ] + counters.commandCounts.map { "queries_\($0.0) \($0.1)" }
              + counters.commandMicros.map { "micros_\($0.0) \($0.1)" }
        case "jobs":
            lines = workers.jobs().flatMap { ["\($0.name) count \($0.count)", "\($0.name) desired \($0.count)"] }
        case "want":
            if parts.count == 3, let n = Int(parts[1]), n >= 0, workers.setCount(parts[2], n) {
                lines = ["Now desiring \(n) children doing '\(parts[2])'."]
            } else {
                lines = ["ERROR: usage: !want <count> <job>; jobs: \(workers.jobs().map(\.name).joined(separator: ", "))"]
            }
        default:
            lines = ["Unknown command.  Try:", "!version", "!stats", "!jobs", "!want <count> <job>"]
        }
        return Array((lines.map { $0 + "\r\n" }.joined() + ".\r\n").utf8)
    }
}
