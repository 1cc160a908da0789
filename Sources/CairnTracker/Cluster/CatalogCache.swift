import CairnCore
import CairnMetadata
import Foundation

/// Domains and classes, re-read from the database at most once a second (every file command
/// names a domain and a class; they change only by admin commands). A name the cache does not
/// know is looked up in the database before it is refused, so a domain or class another
/// tracker just created works at once; this tracker's own changes invalidate the cache.
final class CatalogCache: Sendable {
    private struct Catalog: Sendable {
        let domains: [String: DomainRecord]
        let domainNames: [DomainID: String]
        let classesByName: [DomainID: [String: ClassRecord]]
        let classesByID: [DomainID: [ClassID: ClassRecord]]
    }
    private let store: MetadataStore
    private let snapshot: ExpiringSnapshot<Catalog>

    init(store: MetadataStore, maxAge: TimeInterval = 1) {
        self.store = store
        snapshot = ExpiringSnapshot(maxAge: maxAge) {
            let (domains, classes) = try await store.catalog()
            let grouped = Dictionary(grouping: classes, by: \.domain)
            return Catalog(domains: Dictionary(domains.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }),
                           domainNames: Dictionary(domains.map { ($0.id, $0.name) }, uniquingKeysWith: { a, _ in a }),
                           classesByName: grouped.mapValues { Dictionary($0.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }) },
                           classesByID: grouped.mapValues { Dictionary($0.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a }) })
        }
    }

    func domain(named name: String) async throws -> DomainRecord? {
        if let d = try await snapshot.get().domains[name] { return d }
        return try await store.domain(named: name)
    }

    /// The name of a domain by id; nil when the cache does not know it.
    func domainName(id: DomainID) async throws -> String? { try await snapshot.get().domainNames[id] }

    func classRecord(domain: DomainID, name: String) async throws -> ClassRecord? {
        if let c = try await snapshot.get().classesByName[domain]?[name] { return c }
        return try await store.classRecord(domain: domain, name: name)
    }

    /// Every class by domain and id, as last loaded.
    func classes() async throws -> [DomainID: [ClassID: ClassRecord]] { try await snapshot.get().classesByID }

    func classRecord(domain: DomainID, id: ClassID) async throws -> ClassRecord? {
        if let c = try await snapshot.get().classesByID[domain]?[id] { return c }
        return try await store.classRecord(domain: domain, id: id)
    }

    /// Forgets the cache (after this tracker changed a domain or class).
    func invalidate() { snapshot.invalidate() }
}
