import CairnMetadata
import Foundation
import Synchronization

/// The devices and their stored usage data, re-read from the database at most once a
/// second: placement and get_paths run on every request and must not each query it.
final class DeviceCache: Sendable {
    private let store: MetadataStore
    private let state = Mutex<(at: Date, infos: [DeviceInfo])?>(nil)
    let maxAge: TimeInterval

    init(store: MetadataStore, maxAge: TimeInterval = 1) { self.store = store; self.maxAge = maxAge }

    func devices() async throws -> [DeviceInfo] {
        if let cached = state.withLock({ $0 }), Date().timeIntervalSince(cached.at) < maxAge { return cached.infos }
        let infos = try await store.deviceInfos()
        state.withLock { $0 = (Date(), infos) }
        return infos
    }

    func byID() async throws -> [Int: DeviceInfo] {
        Dictionary(uniqueKeysWithValues: try await devices().map { ($0.device.id, $0) })
    }

    /// Forgets the cache (after admin changes and monitor rounds).
    func invalidate() { state.withLock { $0 = nil } }
}
