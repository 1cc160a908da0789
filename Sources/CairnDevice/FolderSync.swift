import CSys
import Foundation

/// Makes what was written under folders durable, one `syncfs` per folder: the call that covers
/// every blob and directory entry written on that file system since, whoever wrote them (the
/// node's deferred PUTs, a local mount's blobs). Used by nodes' flushes and mounts' syncs.
public enum FolderSync {
    /// The folders that could not be synced, as "folder: reason".
    public static func sync<Folders: Sequence<String>>(_ folders: Folders) -> [(folder: String, failure: String)] {
        var failed: [(folder: String, failure: String)] = []
        for folder in folders {
            let fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if fd < 0 || syncfs(fd) != 0 { failed.append((folder, "\(folder): \(String(cString: strerror(errno)))")) }
            if fd >= 0 { close(fd) }
        }
        return failed
    }
}
