import CairnClient
import CairnCore
import CairnProtocol
import Dispatch
import Foundation

/// One open file: its committed layout, the chunks being rewritten (buffers), chunks uploaded
/// but not yet committed, and a small cache of read segments.
///
/// Writes fill chunk buffers; a buffer that reaches the chunk size is uploaded in the
/// background at once (bounded by the mount's upload gate, which is the memory cap). `commit`
/// uploads the rest, waits, and swaps the file's chunk list in one tracker transaction, so
/// readers see the old content or the new, never half a file.
final class OpenFile: @unchecked Sendable {
    let ino: Ino
    let lock = NSLock()
    private let context: FSContext
    /// The committed layout; nil until first needed when the open did not fetch it.
    private var committed: FileLayout?
    private(set) var size: Int64
    /// Chunk index → bytes of that chunk being rewritten (count = its current length).
    private var buffers: [Int: [UInt8]] = [:]
    /// Chunk index → uploaded, uncommitted chunk.
    private var uploaded: [Int: UploadedChunk] = [:]
    /// Chunks being uploaded in the background, kept readable until they land.
    private var inFlight: [Int: [UInt8]] = [:]
    private let uploads = DispatchGroup()
    private var uploadError: (any Error)?
    /// Content or size changed since the last commit.
    private var changed = false
    private let segments: ReadSegments
    /// Where the last read ended: a read starting near there is sequential and reads whole
    /// segments; any other read fetches only the bytes it asks for.
    private var lastReadEnd: Int64 = 0
    /// Sequential reads in a row. Segments are read ahead in the background from the second
    /// on: a random reader lands near its last read now and then (within 2 MiB of 1 GiB:
    /// one read in 250), twice in a row almost never, and each false start costs
    /// `readAheadSegments` whole segments of disk reads (random 4 KiB reads fell tenfold).
    private var sequentialReads = 0
    let writable: Bool
    /// Where chunk 0 of a new file may go without asking the tracker (from its create).
    private var preallocated: ChunkTransfer.Allocation?

    /// Opened by its create on this mount.
    let createdHere: Bool
    /// Created here under this directory's delegation (`DelegatedDirectories`): its first
    /// commit, too, goes without waiting for the tracker while the delegation lasts.
    private let delegatedIn: Ino?
    /// Opened with a layout held under the lease (`LeasedLayouts`), not one fetched now.
    private var leased: Bool

    init(ino: Ino, layout: FileLayout, context: FSContext, writable: Bool, createdHere: Bool = false, delegatedIn: Ino? = nil,
         preallocated: ChunkTransfer.Allocation? = nil, leased: Bool = false) {
        self.leased = leased
        self.delegatedIn = delegatedIn
        self.preallocated = preallocated
        self.createdHere = createdHere
        self.ino = ino
        self.committed = layout
        self.size = layout.attributes.size
        self.context = context
        self.writable = writable
        self.segments = ReadSegments(options: context.options)
    }

    /// An open whose layout is fetched at its first read or write (close-to-open holds: that
    /// is later than the open). `size` is what this mount last saw.
    init(lazy ino: Ino, size: Int64, context: FSContext, writable: Bool) {
        self.leased = false
        self.preallocated = nil
        self.createdHere = false
        self.delegatedIn = nil
        self.ino = ino
        self.committed = nil
        self.size = size
        self.context = context
        self.writable = writable
        self.segments = ReadSegments(options: context.options)
    }

    /// The committed layout, fetched now if the open did not. Call with the lock held.
    private func layout() throws -> FileLayout {
        if let committed { return committed }
        let l = try FileLayout.fetch(ino: ino, tracker: context.tracker)
        committed = l
        if !changed { size = l.attributes.size }
        return l
    }

    var isDirty: Bool { lock.withLock { changed } }

    // MARK: writes

    func write(offset: Int64, bytes: UnsafeRawBufferPointer) throws -> Int {
        lock.lock()
        defer { lock.unlock() }
        if let e = uploadError { throw FSError.from(e) }
        let chunkSize = try layout().chunkSize
        var done = 0
        while done < bytes.count {
            let pos = offset + Int64(done)
            let index = Int(pos / chunkSize)
            let within = Int(pos - Int64(index) * chunkSize)
            let n = min(bytes.count - done, Int(chunkSize) - within)
            // Taken out of the table while written, so the chunk's bytes are never copied (a
            // shared array would be copied whole on every 128 KiB write).
            var buf = try buffer(for: index, covering: within, count: n)
            let source = UnsafeRawBufferPointer(rebasing: bytes[done..<done + n])
            if within >= buf.count {
                // Appending (a sequential writer): the bytes go in once, not zeroed first.
                if within > buf.count { buf.append(contentsOf: repeatElement(0, count: within - buf.count)) }
                buf.append(contentsOf: source.assumingMemoryBound(to: UInt8.self))
            } else {
                if buf.count < within + n { buf.append(contentsOf: repeatElement(0, count: within + n - buf.count)) }
                buf.withUnsafeMutableBytes { dst in _ = memcpy(dst.baseAddress! + within, source.baseAddress!, n) }
            }
            buffers[index] = buf
            done += n
            if buf.count == Int(chunkSize), within + n == Int(chunkSize) { startUpload(index) }
        }
        // Memory per open file is capped too: a random writer touching many chunks sends the
        // lowest partial ones up early (rewriting one later reloads it from the cluster).
        while buffers.count > max(2, context.options.writeBuffers), let oldest = buffers.keys.min() { startUpload(oldest) }
        size = max(size, offset + Int64(bytes.count))
        changed = true
        segments.removeAll()
        return done
    }

    /// The buffer for a chunk being rewritten, loaded with its current bytes when the write
    /// does not replace them all.
    private func buffer(for index: Int, covering within: Int, count n: Int) throws -> [UInt8] {
        if let b = buffers.removeValue(forKey: index) { return b }
        if let b = inFlight[index] { return b }
        if uploaded[index] != nil {
            // Rewriting a chunk uploaded in this session: its bytes are no longer in memory.
            lock.unlock()
            defer { lock.lock() }
            try commit()
        }
        let layout = try layout(), chunkSize = layout.chunkSize
        let capacity = Self.capacity(for: within + n, chunkSize: chunkSize)
        guard let chunk = layout.chunk(at: index) else { return context.chunkBuffers.take(capacity: capacity) }
        let existing = Int(min(chunk.length, max(0, size - Int64(index) * chunkSize)))
        if within == 0, n >= existing { return context.chunkBuffers.take(capacity: capacity) }
        var bytes = Array(try context.chunks.download(chunk, range: existing > 0 ? 0...Int64(existing - 1) : nil))
        if bytes.count > existing { bytes.removeLast(bytes.count - existing) }
        bytes.reserveCapacity(Self.capacity(for: max(existing, within + n), chunkSize: chunkSize))
        return bytes
    }

    /// Room for a chunk buffer about to hold `length` bytes. A large writer (1 MiB FUSE writes)
    /// gets the whole chunk at once, so the buffer never regrows; a small file gets what it
    /// needs: a 16 MiB reservation per small file cost an mmap, page faults and an munmap (whose
    /// TLB shootdown interrupts every CPU) on each create, ~0.9 of them per file in `strace -c`.
    static func capacity(for length: Int, chunkSize: Int64) -> Int {
        length >= ChunkBuffers.minimum ? Int(chunkSize) : length
    }

    /// `inline`: upload on the calling thread and return when done (the caller waits anyway;
    /// a small file's close then costs no thread hand-offs).
    private func startUpload(_ index: Int, inline: Bool = false) {
        // A buffer exists only after a write fetched the layout.
        guard let layout = committed, let taken = buffers.removeValue(forKey: index) else { return }
        let held = HeldBuffer(consume taken)
        inFlight[index] = held.bytes
        uploads.enter()
        lock.unlock()
        context.uploadGate.wait()  // back-pressure: at most N chunks in flight per mount
        lock.lock()
        let ctx = context
        let cls = layout.classInfo
        let domain = layout.domain
        let place = index == 0 ? preallocated : nil
        if index == 0 { preallocated = nil }
        let upload: @Sendable () -> Void = {
            defer { ctx.uploadGate.signal(); self.uploads.leave() }
            let result = Result { try held.bytes.withUnsafeBytes { try ctx.chunks.upload(domain: domain, cls: cls, index: index, bytes: $0, allocation: place) } }
            self.lock.withLock {
                self.inFlight.removeValue(forKey: index)
                switch result {
                case .success(let c): self.uploaded[index] = c
                case .failure(let e): self.uploadError = e
                }
            }
            ctx.chunkBuffers.give(&held.bytes)
        }
        if inline {
            lock.unlock()
            upload()
            lock.lock()
        } else {
            DispatchQueue.global().async(execute: upload)
        }
    }

    /// Truncate or extend (setattr size) while open: buffers and pending chunks follow.
    func truncate(to newSize: Int64) throws {
        try lock.withLock {
            let chunkSize = try layout().chunkSize
            let keepChunks = Int((newSize + chunkSize - 1) / chunkSize)
            buffers = buffers.filter { $0.key < keepChunks }
            uploaded = uploaded.filter { $0.key < keepChunks }
            let lastIndex = keepChunks - 1
            let lastLen = Int(newSize - Int64(max(0, lastIndex)) * chunkSize)
            if lastIndex >= 0, var b = buffers[lastIndex], b.count > lastLen { b.removeLast(b.count - lastLen); buffers[lastIndex] = b }
            if lastIndex >= 0, let u = uploaded[lastIndex], u.length > Int64(lastLen) {
                // The uploaded chunk is longer than the file now: keep it, cut its recorded length.
                var cut = u; cut.length = Int64(lastLen); uploaded[lastIndex] = cut
            }
            size = newSize
            changed = true
            segments.removeAll()
        }
    }

    // MARK: commit

    /// Makes everything written so far visible (flush, fsync, release). `waiting`: the
    /// tracker's answer is awaited even for a first commit (fsync).
    func commit(waiting: Bool = false) throws {
        lock.lock()
        let pending = Array(buffers.keys)
        lock.unlock()
        // Remaining (partial) buffers go up in parallel.
        // startUpload expects the lock held (it may drop it while waiting for the upload gate).
        let alone = pending.count == 1 && lock.withLock { inFlight.isEmpty }
        for index in pending.sorted() { lock.withLock { startUpload(index, inline: alone) } }
        uploads.wait()
        lock.lock()
        defer { lock.unlock() }
        if let e = uploadError {
            uploadError = nil
            uploaded.removeAll()
            buffers.removeAll()
            changed = false
            throw FSError.from(e)
        }
        guard changed else { return }
        let layout = try layout(), chunkSize = layout.chunkSize
        var specs: [String] = []
        let count = Int((size + chunkSize - 1) / chunkSize)
        for index in 0..<count {
            let maxLen = min(chunkSize, size - Int64(index) * chunkSize)
            if var u = uploaded[index] {
                u.length = min(u.length, maxLen)
                specs.append(u.commitSpec)
            } else if let c = layout.chunk(at: index) {
                specs.append("\(c.fid) \(min(c.length, maxLen)) - \(c.devices.map(String.init).joined(separator: ".")) \(index)")
            }
        }
        let mtime = Clock.nowNanos()
        let args = [("domain", layout.domain), ("ino", String(ino)), ("size", String(size)),
                    ("chunks", specs.joined(separator: ",")), ("mtime", String(mtime))]
        if let dir = delegatedIn, !waiting, layout.chunks.isEmpty,
           try context.leases?.delegations.whileHeld([dir], body: {
               try sendFirstCommit(args + [("class", layout.className), ("fresh", "1")], mtime: mtime, over: layout.attributes)
           }) != nil {
            return
        }
        let since = context.leases?.beginFetch()
        let now: FileLayout
        do {
            now = try FileLayout(context.tracker.call("commit_file", args))
        } catch {
            context.leases?.forget(ino)  // it may have been committed all the same
            throw error
        }
        if let since { context.leases?.keep(now, since: since) }
        committed = now
        context.listings.attributesChanged(ino, now: now.attributes)
        uploaded.removeAll()
        changed = false
        context.rememberContent(ino: ino, now.attributes)
        context.recentAttributes.remember(now.attributes)
        context.firstChunks.remember(now)
    }

    /// The first commit of a file created under its directory's delegation returns once the
    /// tracker's socket holds it, as its create did (`TrackerPipeline`): its chunks already
    /// have their synchronous copies, so only the tracker's transaction is left, which shares
    /// one with the creates and commits sent around it. `fresh=1` makes the resend after a
    /// lost connection safe: the tracker takes it only while the file has no chunks or exactly
    /// these. Call with the lock held.
    private func sendFirstCommit(_ args: [(String, String)], mtime: UnixNanos, over created: WireAttributes) throws {
        var attributes = context.recentAttributes.fresh(ino) ?? created  // a chmod since the create stays
        attributes.size = size
        attributes.mtime = mtime
        attributes.ctime = mtime
        let ino = ino, context = context
        context.leases?.forget(ino)
        let since = context.leases?.beginFetch()
        try context.tracker.send("commit_file", args) { result in
            switch result {
            case .success(let r):
                // Where its chunk is, for reads (its next open asks nothing, as after a commit
                // that waited), unless this mount changed it since; not its attributes: this
                // mount shows those already, and may have changed them since (a chmod).
                guard let now = try? FileLayout(r) else { return }
                if let since { context.leases?.keep(now, unlessDroppedSince: since) }
                context.firstChunks.remember(now)
            case .failure(let error):
                // What this mount showed for the file is not what the tracker has: drop it, and
                // fail the file's next fsync (as a local file system reports a lost writeback).
                context.recentAttributes.forget(filesAnd: [ino])
                context.listings.forgetAll()
                context.leases?.forget(ino)
                guard error.code != "unknown_inode" else { return }  // removed meanwhile: nothing lost
                context.unstoredCommits.failed(ino)
                FileHandle.standardError.write(Data("cairn mount: what was written to inode \(ino) before its close was not stored (the tracker refused its commit: \(error.text)); the file keeps what the tracker had, and its next fsync fails\n".utf8))
            }
        }
        committed = nil  // fetched again if this handle reads or writes on
        context.listings.attributesChanged(ino, now: attributes)
        uploaded.removeAll()
        changed = false
        context.rememberContent(ino: ino, attributes)
        context.recentAttributes.remember(attributes)
    }

    // MARK: reads

    func read(offset: Int64, count: Int) throws -> ReadBytes {
        do {
            return try readNow(offset: offset, count: count)
        } catch where lock.withLock({ leased && !changed }) {
            // A held layout's copies may have moved since (drain, rebalance, a dead device):
            // the content is the same, ask where it is now and read again.
            lock.withLock { leased = false }
            context.leases?.forget(ino)
            try reload()
            return try readNow(offset: offset, count: count)
        }
    }

    private func readNow(offset: Int64, count: Int) throws -> ReadBytes {
        lock.lock()
        defer { lock.unlock() }
        let chunkSize = try layout().chunkSize  // before the size check: a lazy open learns the size here
        guard offset < size, count > 0 else { return ReadBytes() }
        let end = min(size, offset + Int64(count))
        // The kernel's read-ahead sends neighbouring requests out of order: near enough counts.
        let near = abs(offset - lastReadEnd) <= 2 << 20
        sequentialReads = near ? sequentialReads + 1 : 0
        let readsAhead = sequentialReads >= 2
        let sequential = near || segments.covers(offset, length: context.options.readAheadBytes)
        lastReadEnd = end
        var out = ReadBytes()
        var pos = offset
        while pos < end {
            let index = Int(pos / chunkSize)
            let chunkStart = Int64(index) * chunkSize
            let within = Int(pos - chunkStart)
            let n = Int(min(end - pos, chunkSize - Int64(within)))
            if let b = buffers[index] ?? inFlight[index] {
                // Copied: a slice would keep the buffer shared, and the next write would copy it whole.
                let have = max(0, min(n, b.count - within))
                if have > 0 { out.append(ArraySlice(Array(b[within..<(within + have)]))) }
                out.appendZeros(n - have)
            } else if uploaded[index] != nil {
                // Uploaded in this session, not committed: commit so it can be read back.
                lock.unlock()
                do { try commit() } catch { lock.lock(); throw error }
                lock.lock()
                continue
            } else if let chunk = try layout().chunk(at: index) {
                out.append(sequential ? try readCommitted(chunk, chunkStart: chunkStart, within: within, count: n, readsAhead: readsAhead)
                                      : try readExact(chunk, within: within, count: n))
            } else {
                out.appendZeros(n)
            }
            pos += Int64(n)
        }
        return out
    }

    /// A random read: exactly the bytes asked for, one ranged GET, no read-ahead.
    private func readExact(_ chunk: FileLayout.Chunk, within: Int, count n: Int) throws -> ReadBytes {
        var out = ReadBytes()
        let start = Int64(within)
        if start < chunk.length {
            let have = min(Int64(n), chunk.length - start)
            out.append(try context.chunks.download(chunk, range: start...(start + have - 1)))
        }
        out.appendZeros(n - out.count)
        return out
    }

    /// Reads from a committed chunk through the read segments (ranged GETs of the read-ahead
    /// size), and (`readsAhead`) starts fetching the segments that follow.
    private func readCommitted(_ chunk: FileLayout.Chunk, chunkStart: Int64, within: Int, count n: Int, readsAhead: Bool) throws -> ReadBytes {
        let seg = context.options.readAheadBytes
        var out = ReadBytes()
        var pos = Int64(within)
        let end = Int64(within + n)
        while pos < end {
            if pos >= chunk.length { out.appendZeros(Int(end - pos)); break }
            let segStart = (pos / seg) * seg
            // A streaming reader's segments skip the page cache; a segment fetched for a read
            // that only landed near the last one stays there for its neighbours.
            let bytes = try segments.bytes(at: chunkStart + segStart) {
                try context.chunks.download(chunk, range: segment(of: chunk, from: segStart), pastCache: readsAhead)
            }
            let from = Int(pos - segStart)
            let take = Int(min(end - pos, Int64(bytes.count - from)))
            guard take > 0 else { throw FSError(EIO, "chunk \(chunk.index) of inode \(ino) is shorter than recorded") }
            out.append(bytes.dropFirst(from).prefix(take))
            pos += Int64(take)
            if readsAhead { readAhead(after: chunk, chunkStart: chunkStart, segStart: segStart) }
        }
        return out
    }

    /// The bytes of the segment of `chunk` that starts at `segStart` (within the chunk).
    private func segment(of chunk: FileLayout.Chunk, from segStart: Int64) -> ClosedRange<Int64> {
        segStart...(min(chunk.length, segStart + context.options.readAheadBytes) - 1)
    }

    /// Starts fetching the committed segments after the one at `segStart` of `chunk`, up to
    /// `readAheadSegments` of them, crossing into the next chunks.
    private func readAhead(after chunk: FileLayout.Chunk, chunkStart: Int64, segStart: Int64) {
        guard let layout = committed else { return }
        let seg = context.options.readAheadBytes
        var (chunk, chunkStart, segStart) = (chunk, chunkStart, segStart)
        for _ in 0..<context.options.readAheadSegments {
            segStart += seg
            if segStart >= chunk.length {
                // The next chunk, when it is committed content (not bytes being rewritten here).
                let next = chunk.index + 1
                guard buffers[next] == nil, inFlight[next] == nil, uploaded[next] == nil,
                      let c = layout.chunk(at: next) else { return }
                chunkStart += layout.chunkSize
                (chunk, segStart) = (c, 0)
            }
            guard chunkStart + segStart < size else { return }
            let (transfer, c, range) = (context.chunks, chunk, segment(of: chunk, from: segStart))
            segments.readAhead(at: chunkStart + segStart) { try transfer.download(c, range: range, pastCache: true) }
        }
    }

    /// Fresh layout from the tracker (after a truncate through another handle, or a class change).
    func reload() throws {
        let l = try FileLayout.fetch(ino: ino, tracker: context.tracker)
        lock.withLock {
            if !changed { committed = l; size = l.attributes.size; segments.removeAll() }
        }
    }
}

/// A chunk buffer on its way up, held by reference so the upload can hand its storage back
/// to `ChunkBuffers` as the only owner.
private final class HeldBuffer: @unchecked Sendable {
    var bytes: [UInt8]
    init(_ bytes: consuming [UInt8]) { self.bytes = bytes }
}
