import Foundation
import Synchronization

/// Paces background copies between storage nodes (replication, reaping, drain, rebalance,
/// fsck repair) so their bytes average at most `limit` per second: each transfer is given a
/// start time after the previous ones' share of the bandwidth, so client traffic keeps the rest.
final class BandwidthMeter: Sendable {
    /// Bytes per second; 0 is unlimited. Changed at run time through the `background_bandwidth` setting.
    let limit: Atomic<Int64>
    private let nextStart = Mutex<Double>(0)

    init(bytesPerSecond: Int64) { limit = Atomic(bytesPerSecond) }

    /// Waits for this transfer's turn.
    func admit(_ bytes: Int64) async {
        let max = Double(limit.load(ordering: .relaxed))
        guard max > 0 else { return }
        let now = Date().timeIntervalSince1970
        let start = nextStart.withLock { next -> Double in
            let start = Swift.max(now, next)
            next = start + Double(bytes) / max
            return start
        }
        if start > now { try? await Task.sleep(for: .seconds(start - now)) }
    }
}
