import CairnClient
import CSys
import CairnFS
import CairnTestSupport
import Foundation
import Testing

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

/// How many of a file's pages the page cache holds, and how many it has.
func residentPages(_ path: String) throws -> (Int, Int) {
    let fd = open(path, O_RDONLY)
    defer { close(fd) }
    var st = stat()
    try #require(fd >= 0 && fstat(fd, &st) == 0)
    let pages = (Int(st.st_size) + 4095) / 4096
    let map = try #require(mmap(nil, Int(st.st_size), PROT_READ, MAP_SHARED, fd, 0))
    try #require(map != MAP_FAILED)
    defer { munmap(map, Int(st.st_size)) }
    var vec = [UInt8](repeating: 0, count: pages)
    try #require(mincore(map, Int(st.st_size), &vec) == 0)
    return (vec.filter { $0 & 1 != 0 }.count, pages)
}

/// Whether the file system of `dir` takes O_DIRECT (ext4 does; tmpfs does not).
func takesDirectIO(_ dir: String) -> Bool {
    let probe = dir + "/direct-probe"
    defer { unlink(probe) }
    let fd = open(probe, O_WRONLY | O_CREAT | csys_o_direct(), 0o600)
    if fd >= 0 { close(fd) }
    return fd >= 0
}
