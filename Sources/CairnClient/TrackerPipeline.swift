import CairnProtocol
import CairnTransfer
import Foundation
import Synchronization

/// Requests whose sender need not wait for the answer, sent down one tracker connection in
/// order while a thread of their own reads the answers: the mount's custom-metadata sets and
/// unlinks of listed files, which it acknowledges once the tracker's socket holds them, so a
/// loop of them costs the tracker's time rather than a round trip each.
///
/// A process kill loses none of them: if this process dies, the tracker still answers every
/// line its socket holds (it answers what a closed connection left); if the tracker dies or
/// the connection fails, every request not answered yet is sent again, in order, to the
/// tracker reached next — so requests sent this way must be idempotent (an unlink names the
/// inode it removes, so a resend cannot remove a file made under that name since). `TrackerClient.call`
/// first waits until every request sent here is answered, so its calls see their effects.
final class TrackerPipeline: @unchecked Sendable {
    typealias Answered = @Sendable (Result<Args, ProtocolError>) -> Void
    private struct Outstanding {
        let sequence: UInt64
        let line: [UInt8]
        let answered: Answered
    }

    /// Above this many unanswered requests, senders wait: it bounds memory, and keeps the
    /// tracker's queue for one connection (256 lines) from filling, so it always reads on.
    static let maxOutstanding = 128

    private let connect: @Sendable () throws -> TrackerConnection
    private let timeout: TimeInterval
    private let describe: String

    /// Guards everything below; broadcast when an answer arrives or a line reaches a socket.
    private let state = NSCondition()
    private var outstanding: [Outstanding] = []
    private var head = 0  // `outstanding[head...]` are unanswered
    private var connection: TrackerConnection?
    private var lastSequence: UInt64 = 0
    /// Every request up to this one is in the current connection's socket.
    private var writtenThrough: UInt64 = 0
    private var readerStarted = false
    /// Unanswered requests, for `waitUntilAnswered`'s check without the lock.
    private let unanswered = Atomic<Int>(0)
    /// Held while lines are written, so they reach the socket in the order of `outstanding`.
    private let sending = NSLock()

    init(timeoutSeconds: Int, describe: String, connect: @escaping @Sendable () throws -> TrackerConnection) {
        self.timeout = TimeInterval(timeoutSeconds)
        self.describe = describe
        self.connect = connect
    }

    /// Queues `line` and returns once a tracker's socket holds it; `answered` runs later on the
    /// pipeline's thread (it must not call the tracker). Throws when no tracker took it within
    /// the timeout; the line then stays queued and is sent when one answers.
    func send(_ line: [UInt8], answered: @escaping Answered) throws {
        let deadline = Date().addingTimeInterval(timeout)
        state.lock()
        while unansweredCount >= Self.maxOutstanding {
            if !state.wait(until: deadline) { state.unlock(); throw notTaken() }
        }
        state.unlock()
        guard sending.lock(before: deadline) else { throw notTaken() }
        let sequence: UInt64
        let conn: TrackerConnection?
        var delivered = false
        do {
            defer { sending.unlock() }
            state.lock()
            lastSequence += 1
            sequence = lastSequence
            outstanding.append(Outstanding(sequence: sequence, line: line, answered: answered))
            unanswered.add(1, ordering: .releasing)
            startReaderIfNeeded()
            conn = connection
            state.broadcast()  // the reader has something to read (or to connect for)
            state.unlock()
            // On failure (part of the line may have gone) the connection is ended: the reader
            // finds it dead, reconnects and sends every unanswered line again.
            if let conn {
                do {
                    try conn.send(line)
                    delivered = state.withLock {
                        guard connection === conn else { return false }
                        writtenThrough = sequence
                        return true
                    }
                } catch {
                    conn.abandon()
                }
            }
        }
        if delivered { return }
        state.lock()
        defer { state.unlock() }
        while writtenThrough < sequence {
            if !state.wait(until: deadline) { throw notTaken() }
        }
    }

    /// Returns once every request sent before this call is answered (not those sent while it
    /// waits: a stream of sets on one thread must not hold up another's call); throws after
    /// the timeout.
    func waitUntilAnswered() throws {
        guard unanswered.load(ordering: .acquiring) > 0 else { return }
        let deadline = Date().addingTimeInterval(timeout)
        state.lock()
        defer { state.unlock() }
        let target = lastSequence
        while answeredThrough < target {
            if !state.wait(until: deadline) {
                throw TransferError(url: describe, reason: "\(unansweredCount) changes sent to the tracker without waiting (custom-metadata sets, unlinks) are still unanswered after \(Int(timeout)) s; they stay queued, and are sent again, while this process runs")
            }
        }
    }

    private var unansweredCount: Int { outstanding.count - head }

    /// Requests sent here still waiting for their answers.
    var waiting: Int { unanswered.load(ordering: .acquiring) }
    /// Every request up to this one is answered (sequences are consecutive).
    private var answeredThrough: UInt64 { head < outstanding.count ? outstanding[head].sequence - 1 : lastSequence }

    private func notTaken() -> TransferError {
        TransferError(url: describe, reason: "no tracker took the change within \(Int(timeout)) s; it stays queued, and is sent when one answers, while this process runs")
    }

    private func startReaderIfNeeded() {
        guard !readerStarted else { return }
        readerStarted = true
        let thread = Thread { [self] in readAnswers() }
        thread.name = "cairn-tracker-pipeline"
        thread.start()
    }

    // MARK: the reader thread

    private func readAnswers() {
        var lostSince: Date?
        while true {
            state.lock()
            while unansweredCount == 0 { state.wait() }
            let conn = connection
            state.unlock()
            guard let conn else {
                guard let failure = reconnect() else { lostSince = nil; continue }
                if lostSince == nil { lostSince = Date() }
                if let since = lostSince, Date().timeIntervalSince(since) > 5 {
                    report("\(unanswered.load(ordering: .relaxed)) changes wait for a tracker at \(describe) (\(failure)); still trying")
                    lostSince = Date()
                }
                Thread.sleep(forTimeInterval: 0.2)
                continue
            }
            let line: [UInt8]
            do { line = try conn.readLine() } catch {
                state.withLock { if connection === conn { connection = nil } }
                report("lost the tracker connection (\(error)); sending its \(unanswered.load(ordering: .relaxed)) unanswered changes again")
                continue
            }
            let done: Outstanding = state.withLock {
                let o = outstanding[head]
                head += 1
                if head > 256, head * 2 > outstanding.count {
                    outstanding.removeFirst(head)
                    head = 0
                }
                unanswered.subtract(1, ordering: .releasing)
                state.broadcast()
                return o
            }
            done.answered(Reply.parse(line: line))
        }
    }

    /// A new connection with every unanswered request sent again, in order; or why no tracker
    /// could be reached (the caller waits and tries again).
    private func reconnect() -> (any Error)? {
        sending.lock()
        defer { sending.unlock() }
        do {
            let conn = try connect()
            let (lines, last) = state.withLock { (outstanding[head...].map(\.line), lastSequence) }
            for line in lines { try conn.send(line) }
            state.withLock {
                connection = conn
                writtenThrough = last
                state.broadcast()
            }
            return nil
        } catch {
            return error
        }
    }

    private func report(_ message: String) {
        FileHandle.standardError.write(Data("cairn: \(message)\n".utf8))
    }
}
