import CairnCore
import CairnMetadata

/// Rebuilds the metadata from the storage nodes alone: every device's blobs and sidecars are
/// listed; for each file the newest sidecars name its domain, keys, class, attributes, custom
/// metadata and which fid is which chunk; copies whose size differs from the sidecar's are
/// ignored. Files whose key already exists are left alone, so running it twice is harmless.
struct StorageRecovery {
    let ctx: TrackerContext

    struct Report: Sendable {
        var devices = 0
        var blobs = 0
        var withoutSidecar = 0
        var files = 0
        var restored = 0
        var unreachable: [DeviceID] = []
    }

    func run() async throws -> Report {
        var report = Report()
        // (domain, old inode) → chunk index → the newest sidecar and the devices holding that fid.
        var files: [String: [Int: (sidecar: Sidecar, devices: Set<DeviceID>)]] = [:]
        for d in try await ctx.devices.devices() where d.view.servesReads {
            report.devices += 1
            var after: Fid = 0
            while true {
                guard let page = await ctx.gateway.listSidecars(d, after: after, limit: 1000) else { report.unreachable.append(d.device.id); break }
                guard let last = page.last else { break }
                for entry in page {
                    report.blobs += 1
                    guard let s = entry.sidecar, s.fid == entry.fid else { report.withoutSidecar += 1; continue }
                    guard s.length == entry.size else { continue }  // a copy that does not match its own description
                    let file = "\(s.domain)\u{0}\(s.ino)"
                    if let have = files[file]?[s.index], have.sidecar.fid == s.fid {
                        files[file]![s.index]!.devices.insert(d.device.id)
                        if s.version > have.sidecar.version { files[file]![s.index]!.sidecar = s }
                    } else if files[file]?[s.index].map({ s.version > $0.sidecar.version }) ?? true {
                        files[file, default: [:]][s.index] = (s, [d.device.id])
                    }
                }
                after = last.fid
            }
        }
        var recovered: [MetadataStore.RecoveredFile] = []
        for chunks in files.values {
            guard let newest = chunks.values.max(by: { $0.sidecar.version < $1.sidecar.version })?.sidecar else { continue }
            // Chunks older than the file's newest description belong to content it no longer has.
            let current = chunks.filter { $0.key < newest.attributes.chunks }.sorted { $0.key < $1.key }
            var head = chunks[0]?.sidecar ?? newest
            if head.version < newest.version { head.attributes = newest.attributes; head.keys = newest.keys; head.xattrs = head.xattrs ?? newest.xattrs }
            recovered.append(.init(sidecar: head, chunks: current.map { ($0.key, $0.value.sidecar.fid, $0.value.sidecar.length, $0.value.sidecar.checksum, Array($0.value.devices).sorted()) }))
        }
        report.files = recovered.count
        report.restored = try await ctx.store.restore(recovered)
        ctx.logger.info("recovery from storage: \(report.devices) devices, \(report.blobs) blobs (\(report.withoutSidecar) without sidecar), \(report.restored) of \(report.files) files restored")
        return report
    }
}
