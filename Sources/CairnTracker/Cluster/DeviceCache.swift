import CairnMetadata
import Foundation

/// The devices and their stored usage data, re-read from the database at most once a
/// second: placement and get_paths run on every request and must not each query it.
final class DeviceCache: Sendable {
    private let snapshot: ExpiringSnapshot<(infos: [DeviceInfo], byID: [Int: DeviceInfo])>

    init(store: MetadataStore, maxAge: TimeInterval = 1) {
        snapshot = ExpiringSnapshot(maxAge: maxAge) {
            let infos = try await store.deviceInfos()
            return (infos, Dictionary(uniqueKeysWithValues: infos.map { ($0.device.id, $0) }))
        }
    }

    func devices() async throws -> [DeviceInfo] { try await snapshot.get().infos }

    func byID() async throws -> [Int: DeviceInfo] { try await snapshot.get().byID }

    /// Forgets the cache (after admin changes and monitor rounds).
    func invalidate() { snapshot.invalidate() }
}
