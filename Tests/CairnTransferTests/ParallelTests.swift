import CairnTransfer
import Dispatch
import Testing

@Suite struct ParallelTests {
    /// Each body waits for the other: they finish only if they really run at the same time,
    /// on reused helper threads as on new ones.
    @Test func bodiesOverlapEveryTime() {
        for round in 0..<300 {
            let first = DispatchSemaphore(value: 0), second = DispatchSemaphore(value: 0)
            let met = Counter()
            Parallel.run(2) { i in
                if i == 0 {
                    first.signal()
                    if second.wait(timeout: .now() + 5) == .success { met.add() }
                } else {
                    second.signal()
                    if first.wait(timeout: .now() + 5) == .success { met.add() }
                }
            }
            #expect(met.value == 2, "round \(round): the two bodies did not run side by side")
            if met.value != 2 { break }
        }
    }

    @Test func everyIndexRunsOnce() {
        let seen = Counter()
        let hits = (0..<16).map { _ in Counter() }
        Parallel.run(16) { i in hits[i].add(); seen.add() }
        #expect(seen.value == 16)
        #expect(hits.allSatisfy { $0.value == 1 })
    }
}

final class Counter: @unchecked Sendable {
    private let lock = DispatchSemaphore(value: 1)
    private var n = 0
    func add() { lock.wait(); n += 1; lock.signal() }
    var value: Int { lock.wait(); defer { lock.signal() }; return n }
}
