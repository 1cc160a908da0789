import CairnCore
import CairnProtocol

/// A class as the client needs it: chunk size and how many copies to upload at once.
public typealias ClassInfo = ClassSettings

extension ClassSettings {
    public static func all(domain: String, tracker: TrackerClient) throws -> [ClassInfo] {
        let r = try tracker.call("get_classes", [("domain", domain)])
        let n = Int(r.int("class_count") ?? 0)
        return (1...max(1, n)).compactMap { i -> ClassInfo? in
            let p = "class\(i)_"
            guard let name = r[p + "name"] else { return nil }
            return ClassInfo(name: name, replicas: Int(r.int(p + "replicas") ?? 2), syncCopies: Int(r.int(p + "sync_copies") ?? 1),
                             policy: r[p + "policy"] ?? "hosts", checksum: r[p + "checksum"] ?? "none",
                             chunkSize: r.int(p + "chunk_size") ?? ChunkLayout.defaultChunkSize)
        }
    }

    public static func named(_ name: String?, domain: String, tracker: TrackerClient) throws -> ClassInfo {
        let wanted = name ?? "default"
        guard let c = try all(domain: domain, tracker: tracker).first(where: { $0.name == wanted }) else {
            throw ProtocolError("unreg_class", "class \"\(wanted)\" does not exist in domain \(domain); see `cairn admin class list \(domain)`")
        }
        return c
    }
}
