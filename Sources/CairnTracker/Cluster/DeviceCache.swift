import CairnMetadata
import Foundation
import Synchronization

/// The devices and their stored usage data, re-read from the database at most once a
/// second: placement and get_paths run on every request and must not each query it.
final class DeviceCache: Sendable {
    private struct Snapshot { let at: Date; let infos: [DeviceInfo]; let byID: [Int: DeviceInfo] }
    private let store: MetadataStore
    private let state = Mutex<Snapshot?>(nil)
    let maxAge: TimeInterval

    init(store: MetadataStore, maxAge: TimeInterval = 1) { self.store = store; self.maxAge = maxAge }

    private func snapshot() async throws -> Snapshot {
        if let cached = state.withLock({ $0 }), Date().timeIntervalSince(cached.at) < maxAge { return cached }
        let infos = try await store.deviceInfos()
        let fresh = Snapshot(at: Date(), infos: infos, byID: Dictionary(uniqueKeysWithValues: infos.map { ($0.device.id, $0) }))
        state.withLock { $0 = fresh }
        return fresh
    }

    func devices() async throws -> [DeviceInfo] { try await snapshot().infos }

    func byID() async throws -> [Int: DeviceInfo] { try await snapshot().byID }

    /// Forgets the cache (after admin changes and monitor rounds).
    func invalidate() { state.withLock { $0 = nil } }
}
