import Synchronization

/// Desired worker counts per job, changeable at run time (`!want`, `cairn admin workers`).
/// A count of 0 pauses that job.
final class WorkerRegistry: Sendable {
    private let counts: Mutex<[String: Int]>

    init(defaults: [String: Int]) { counts = Mutex(defaults) }

    func count(_ job: String) -> Int { counts.withLock { $0[job] ?? 0 } }

    func setCount(_ job: String, _ n: Int) -> Bool {
        counts.withLock { c in
            guard c[job] != nil else { return false }
            c[job] = n
            return true
        }
    }

    func jobs() -> [(name: String, count: Int)] { counts.withLock { $0.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } } }
}
