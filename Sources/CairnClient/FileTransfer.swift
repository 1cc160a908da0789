import CairnCore
import CairnProtocol
import CairnTransfer
import Dispatch
import Foundation

/// Whole-file put and get for the CLI: chunks move in parallel (a bounded window, so memory
/// stays at `parallel` × chunk size), and the file appears atomically at commit.
public struct FileTransfer: Sendable {
    public let tracker: TrackerClient
    public let chunks: ChunkTransfer
    public var parallel: Int

    public init(tracker: TrackerClient, parallel: Int = 4) {
        self.tracker = tracker
        self.chunks = ChunkTransfer(tracker: tracker)
        self.parallel = parallel
    }

    public struct Source {
        /// Reads up to `count` bytes at `offset` (sequential sources ignore the offset); fewer means end.
        public var read: (_ offset: Int64, _ count: Int) throws -> [UInt8]
        public var size: Int64?
        public var mode: UInt32?
        public var mtime: UnixNanos?
        public init(size: Int64?, mode: UInt32? = nil, mtime: UnixNanos? = nil, read: @escaping (Int64, Int) throws -> [UInt8]) {
            self.size = size; self.mode = mode; self.mtime = mtime; self.read = read
        }
    }

    /// Uploads and commits a file at `key`. `progress` gets the bytes stored so far.
    public func put(domain: String, key: String, className: String?, source: Source, meta: [(String, [UInt8])] = [],
                    progress: (Int64) -> Void = { _ in }) throws -> WireAttributes {
        _ = try KeyPath(key)
        let cls = try ClassInfo.named(className, domain: domain, tracker: tracker)
        var uploaded: [UploadedChunk] = []
        var total: Int64 = 0
        var index = 0
        var finished = false
        while !finished {
            // Read a window of chunks, then upload them together.
            var window: [(Int, [UInt8])] = []
            while window.count < parallel {
                let bytes = try source.read(Int64(index) * cls.chunkSize, Int(cls.chunkSize))
                if bytes.isEmpty { finished = true; break }
                window.append((index, bytes))
                index += 1
                if bytes.count < cls.chunkSize { finished = true; break }
            }
            let results = Mutex2<[Result<UploadedChunk, any Error>?]>(Array(repeating: nil, count: window.count))
            let batch = window
            Parallel.run(batch.count) { i in
                let (idx, bytes) = batch[i]
                let r = Result { try bytes.withUnsafeBytes { try chunks.upload(domain: domain, cls: cls, index: idx, bytes: $0) } }
                results.withLock { $0[i] = r }
            }
            for r in results.withLock({ $0 }) {
                let c = try r!.get()
                uploaded.append(c)
                total += c.length
            }
            progress(total)
        }
        var args: [(String, String)] = [("domain", domain), ("key", key), ("class", cls.name), ("size", String(total)),
                                         ("chunks", uploaded.map(\.commitSpec).joined(separator: ","))]
        if let m = source.mode { args.append(("mode", String(m))) }
        if let t = source.mtime { args.append(("mtime", String(t))) }
        let attrs = try WireAttributes(tracker.call("commit_file", args)).orThrow("commit_file reply without attributes")
        for (name, value) in meta {
            _ = try tracker.call("meta_set", [("ino", String(attrs.ino)), ("name", name), ("value_hex", Hex.encode(value))])
        }
        return attrs
    }

    /// Downloads a file, handing its bytes to `write` in order (offset, bytes). Sparse regions
    /// come as zeros.
    public func get(layout: FileLayout, write: (Int64, [UInt8]) throws -> Void) throws {
        let size = layout.attributes.size
        let byIndex = Dictionary(uniqueKeysWithValues: layout.chunks.map { ($0.index, $0) })
        let count = layout.chunkSize > 0 ? Int((size + layout.chunkSize - 1) / layout.chunkSize) : 0
        var next = 0
        while next < count {
            let window = Array(next..<min(count, next + parallel))
            let results = Mutex2<[Result<[UInt8], any Error>?]>(Array(repeating: nil, count: window.count))
            Parallel.run(window.count) { i in
                let idx = window[i]
                let expected = min(layout.chunkSize, size - Int64(idx) * layout.chunkSize)
                let r = Result { () -> [UInt8] in
                    var bytes = try byIndex[idx].map { Array(try chunks.download($0)) } ?? []
                    if bytes.count < expected { bytes += [UInt8](repeating: 0, count: Int(expected) - bytes.count) }
                    return bytes
                }
                results.withLock { $0[i] = r }
            }
            for (i, r) in results.withLock({ $0 }).enumerated() {
                try write(Int64(window[i]) * layout.chunkSize, try r!.get())
            }
            next += window.count
        }
    }
}

extension Optional {
    func orThrow(_ message: String) throws -> Wrapped {
        guard let v = self else { throw ProtocolError("bad_reply", message) }
        return v
    }
}
