import Foundation
import Synchronization

/// A value loaded from the database and reused for `maxAge` seconds, or until invalidated:
/// what every request needs (devices, domains, classes) without a query per request.
final class ExpiringSnapshot<Value: Sendable>: Sendable {
    private let state = Mutex<(at: Date, value: Value)?>(nil)
    private let load: @Sendable () async throws -> Value
    let maxAge: TimeInterval

    init(maxAge: TimeInterval, load: @Sendable @escaping () async throws -> Value) { self.maxAge = maxAge; self.load = load }

    func get() async throws -> Value {
        if let cached = state.withLock({ $0 }), Date().timeIntervalSince(cached.at) < maxAge { return cached.value }
        let fresh = try await load()
        state.withLock { $0 = (Date(), fresh) }
        return fresh
    }

    func invalidate() { state.withLock { $0 = nil } }
}
