import CairnClient
import CairnFS
import CairnTestSupport
import Foundation

/// A `ClusterFS` on the test cluster's domain "test", driven without the kernel (whose own
/// caches would hide what the mount answers); `timeout` is every cache's (entries, attributes,
/// custom metadata). Reads go over HTTP unless `localReads`; `configure` changes other options.
func clusterFS(_ c: TestCluster, timeout: Double, localReads: Bool = false,
               configure: (inout MountOptions) -> Void = { _ in }) throws -> ClusterFS {
    var o = MountOptions()
    o.domain = "test"
    o.entryTimeout = timeout
    o.attrTimeout = timeout
    o.localReads = localReads
    configure(&o)
    // A client of its own, as each mount has: its lease's `watcher=` goes with its calls only.
    return try ClusterFS(tracker: TrackerClient(trackers: c.client.trackers), options: o)
}

/// How many times the tracker has answered each of `commands`, in all.
func queries(_ c: TestCluster, _ commands: String...) throws -> Int {
    let stats = try trackerStats(port: c.trackerPort)
    return commands.reduce(0) { $0 + (stats["queries_\($1)"] ?? 0) }
}
