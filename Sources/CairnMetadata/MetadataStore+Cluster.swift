import CairnCore
import CairnPolicy
import Foundation
import GRDB

/// Domains, classes, hosts, devices and their usage data.
extension MetadataStore {
    // MARK: domains

    public func domains() async throws -> [DomainRecord] {
        try await read { db in try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM domain ORDER BY name")).map(Self.domain) }
    }

    /// Every domain and class, in one read (the tracker's catalog cache).
    public func catalog() async throws -> ([DomainRecord], [ClassRecord]) {
        try await read { db in
            (try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM domain ORDER BY name")).map(Self.domain),
             try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM class ORDER BY dmid, classid")).map(Self.classRecord))
        }
    }

    public func domain(named name: String) async throws -> DomainRecord? {
        try await read { db in try Self.domain(db, name: name) }
    }

    static func domain(_ db: Database, name: String) throws -> DomainRecord? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM domain WHERE name = ?"), arguments: [name]).map(domain)
    }

    static func domain(_ row: Row) -> DomainRecord { DomainRecord(id: row["dmid"], name: row["name"], root: row["root"]) }

    /// Creates a domain with its root directory and its `default` class.
    public func createDomain(_ name: String, defaultReplicas: Int = 2) async throws -> DomainRecord {
        guard !name.isEmpty, name.utf8.count <= 255, !name.contains("/"), name != ".", name != ".." else {
            throw StoreError("no_domain", "\"\(name)\" cannot be a domain name: it must be a non-empty file name without \"/\"", errno: 22)
        }
        return try await write { db in
            if try Self.domain(db, name: name) != nil {
                throw StoreError("domain_exists", "domain \"\(name)\" already exists", errno: 17)
            }
            return try Self.createDomain(db, name: name, defaultReplicas: defaultReplicas)
        }
    }

    static func createDomain(_ db: Database, name: String, defaultReplicas: Int) throws -> DomainRecord {
        do {
            let now = Clock.nowNanos()
            try db.cachedStatement(sql: "INSERT INTO inode(dmid, kind, mode, atime, mtime, ctime, nlink) VALUES (0, 'd', ?, ?, ?, ?, 2)").execute(
                           arguments: [0o40755, now, now, now])
            let root = db.lastInsertedRowID
            try db.cachedStatement(sql: "INSERT INTO domain(name, root) VALUES (?, ?)").execute(arguments: [name, root])
            let dmid = Int(db.lastInsertedRowID)
            try db.cachedStatement(sql: "UPDATE inode SET dmid = ? WHERE ino = ?").execute(arguments: [dmid, root])
            try Self.insertClass(db, ClassRecord(domain: dmid, id: 0, name: ClassRecord.defaultName, replicas: defaultReplicas))
            return DomainRecord(id: dmid, name: name, root: root)
        }
    }

    public func deleteDomain(_ name: String) async throws {
        try await write { db in
            guard let d = try Self.domain(db, name: name) else {
                throw StoreError("domain_not_found", "domain \"\(name)\" does not exist", errno: 2)
            }
            if try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM dirent WHERE parent = ?)"), arguments: [d.root]) == true {
                throw StoreError("domain_has_files", "domain \"\(name)\" still has files or directories; delete them first", errno: 39)
            }
            if try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM class WHERE dmid = ? AND classid != 0"), arguments: [d.id])! > 0 {
                throw StoreError("domain_has_classes", "domain \"\(name)\" still has classes other than default; delete them first", errno: 39)
            }
            try db.cachedStatement(sql: "DELETE FROM class WHERE dmid = ?").execute(arguments: [d.id])
            try db.cachedStatement(sql: "DELETE FROM xattr WHERE ino = ?").execute(arguments: [d.root])
            try db.cachedStatement(sql: "DELETE FROM inode WHERE ino = ?").execute(arguments: [d.root])
            try db.cachedStatement(sql: "DELETE FROM domain WHERE dmid = ?").execute(arguments: [d.id])
        }
    }

    // MARK: classes

    static func classRecord(_ row: Row) -> ClassRecord {
        ClassRecord(domain: row["dmid"], id: row["classid"], name: row["name"], replicas: row["replicas"],
                    syncCopies: row["sync_copies"], policy: PlacementPolicy(rawValue: row["policy"]) ?? .hosts,
                    checksum: ChecksumAlgorithm(rawValue: row["checksum"]) ?? .none, chunkSize: row["chunk_size"])
    }

    static func insertClass(_ db: Database, _ c: ClassRecord) throws {
        try db.cachedStatement(sql: """
            INSERT INTO class(dmid, classid, name, replicas, sync_copies, policy, checksum, chunk_size)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [c.domain, c.id, c.name, c.replicas, c.syncCopies, c.policy.rawValue, c.checksum.rawValue, c.chunkSize])
    }

    public func classes(domain: DomainID) async throws -> [ClassRecord] {
        try await read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM class WHERE dmid = ? ORDER BY classid"), arguments: [domain]).map(Self.classRecord)
        }
    }

    public func allClasses() async throws -> [ClassRecord] {
        try await read { db in try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM class ORDER BY dmid, classid")).map(Self.classRecord) }
    }

    static func classRecord(_ db: Database, domain: DomainID, name: String) throws -> ClassRecord? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM class WHERE dmid = ? AND name = ?"), arguments: [domain, name]).map(classRecord)
    }

    static func classRecord(_ db: Database, domain: DomainID, id: ClassID) throws -> ClassRecord? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM class WHERE dmid = ? AND classid = ?"), arguments: [domain, id]).map(classRecord)
    }

    public func classRecord(domain: DomainID, name: String) async throws -> ClassRecord? {
        try await read { db in try Self.classRecord(db, domain: domain, name: name) }
    }

    public func classRecord(domain: DomainID, id: ClassID) async throws -> ClassRecord? {
        try await read { db in try Self.classRecord(db, domain: domain, id: id) }
    }

    /// Creates a class (id = max+1 in its domain), or replaces an existing one when `update` is set.
    public func saveClass(domain: DomainID, name: String, update: Bool,
                          change: @Sendable @escaping (inout ClassRecord) -> Void) async throws -> ClassRecord {
        try await write { db in
            var existing = try Self.classRecord(db, domain: domain, name: name)
            if existing != nil, !update {
                throw StoreError("class_exists", "class \"\(name)\" already exists in this domain", errno: 17)
            }
            if existing == nil, update, name != ClassRecord.defaultName {
                throw StoreError("class_not_found", "class \"\(name)\" does not exist in this domain", errno: 2)
            }
            if existing == nil {
                let next = try Int.fetchOne(db.cachedStatement(sql: "SELECT COALESCE(MAX(classid), 0) + 1 FROM class WHERE dmid = ?"), arguments: [domain])!
                existing = ClassRecord(domain: domain, id: name == ClassRecord.defaultName ? 0 : next, name: name, replicas: 2)
                change(&existing!)
                try Self.insertClass(db, existing!)
            } else {
                let before = existing!
                change(&existing!)
                let c = existing!
                if c.chunkSize != before.chunkSize,
                   try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM inode WHERE dmid = ? AND classid = ? AND kind = 'f' AND size > 0)"), arguments: [domain, c.id]) == true {
                    // Chunk offsets of stored files are multiples of the chunk size they were written with.
                    throw StoreError("class_has_files", "the chunk size of class \"\(name)\" cannot change while it has files; create a new class instead", errno: EBUSY)
                }
                try db.cachedStatement(sql: """
                    UPDATE class SET replicas = ?, sync_copies = ?, policy = ?, checksum = ?, chunk_size = ?
                    WHERE dmid = ? AND classid = ?
                    """).execute(arguments: [c.replicas, c.syncCopies, c.policy.rawValue, c.checksum.rawValue, c.chunkSize, c.domain, c.id])
                // Files of this class may now need more copies.
                try db.cachedStatement(sql: """
                    INSERT OR IGNORE INTO replicate_queue(fid, nexttry) SELECT fid, 0 FROM blob WHERE dmid = ? AND classid = ?
                    """).execute(arguments: [c.domain, c.id])
            }
            return existing!
        }
    }

    public func deleteClass(domain: DomainID, name: String) async throws {
        try await write { db in
            guard name != ClassRecord.defaultName else {
                throw StoreError("nodel_default_class", "the default class cannot be deleted", errno: 1)
            }
            guard let c = try Self.classRecord(db, domain: domain, name: name) else {
                throw StoreError("class_not_found", "class \"\(name)\" does not exist in this domain", errno: 2)
            }
            if try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM inode WHERE dmid = ? AND classid = ? AND kind = 'f')"), arguments: [domain, c.id]) == true {
                throw StoreError("class_has_files", "class \"\(name)\" still has files; move them to another class first", errno: 39)
            }
            try db.cachedStatement(sql: "DELETE FROM class WHERE dmid = ? AND classid = ?").execute(arguments: [domain, c.id])
        }
    }

    // MARK: hosts and devices

    static func host(_ row: Row) -> HostRecord {
        HostRecord(id: row["hostid"], name: row["name"], ip: row["ip"], port: row["port"], getPort: row["get_port"],
                   status: HostStatus(rawValue: row["status"]) ?? .down, observed: ObservedState(rawValue: row["observed"]) ?? .unknown)
    }

    static func device(_ row: Row) -> DeviceRecord {
        DeviceRecord(id: row["devid"], host: row["hostid"], status: DeviceState(rawValue: row["status"]) ?? .down,
                     weight: row["weight"], totalBytes: row["total_bytes"], usedBytes: row["used_bytes"],
                     freeBytes: row["free_bytes"], ioUtilization: row["io_util"],
                     observed: ObservedState(rawValue: row["observed"]) ?? .unknown, usageAt: row["usage_at"])
    }

    public func hosts() async throws -> [HostRecord] {
        try await read { db in try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM host ORDER BY hostid")).map(Self.host) }
    }

    public func devices() async throws -> [DeviceRecord] {
        try await read { db in try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM device ORDER BY devid")).map(Self.device) }
    }

    /// Every device with its host: the input of placement and read ordering.
    public func deviceInfos() async throws -> [DeviceInfo] {
        try await read { db in try Self.deviceInfos(db) }
    }

    static func deviceInfos(_ db: Database) throws -> [DeviceInfo] {
        let hosts = Dictionary(uniqueKeysWithValues: try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM host")).map { (Int($0["hostid"] as Int), host($0)) })
        return try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM device ORDER BY devid")).compactMap { row in
            let d = device(row)
            return hosts[d.host].map { DeviceInfo(device: d, host: $0) }
        }
    }

    public struct HostChange: Sendable {
        public var ip: String?
        public var port: Int?
        public var getPort: Int?
        public var status: HostStatus?
        public init(ip: String? = nil, port: Int? = nil, getPort: Int? = nil, status: HostStatus? = nil) {
            self.ip = ip; self.port = port; self.getPort = getPort; self.status = status
        }
    }

    /// Creates a host (new hosts are `down` unless told, as in MogileFS) or changes one.
    public func saveHost(name: String, create: Bool, change: HostChange) async throws -> HostRecord {
        try await write { db in
            let existing = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM host WHERE name = ?"), arguments: [name]).map(Self.host)
            if create {
                if existing != nil { throw StoreError("host_exists", "host \"\(name)\" already exists", errno: 17) }
                guard let ip = change.ip, !ip.isEmpty else { throw StoreError("no_ip", "a new host needs an ip", errno: 22) }
                guard let port = change.port else { throw StoreError("no_port", "a new host needs a port", errno: 22) }
                try db.cachedStatement(sql: "INSERT INTO host(name, ip, port, get_port, status) VALUES (?, ?, ?, ?, ?)").execute(
                               arguments: [name, ip, port, change.getPort, (change.status ?? .down).rawValue])
                return try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM host WHERE hostid = ?"), arguments: [db.lastInsertedRowID]).map(Self.host)!
            }
            guard let h = existing else { throw StoreError("host_not_found", "host \"\(name)\" does not exist", errno: 2) }
            try db.cachedStatement(sql: "UPDATE host SET ip = ?, port = ?, get_port = ?, status = ? WHERE hostid = ?").execute(
                           arguments: [change.ip ?? h.ip, change.port ?? h.port, change.getPort ?? h.getPort,
                                       (change.status ?? h.status).rawValue, h.id])
            return try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM host WHERE hostid = ?"), arguments: [h.id]).map(Self.host)!
        }
    }

    public func deleteHost(name: String) async throws {
        try await write { db in
            guard let id = try Int.fetchOne(db.cachedStatement(sql: "SELECT hostid FROM host WHERE name = ?"), arguments: [name]) else {
                throw StoreError("unknown_host", "host \"\(name)\" does not exist", errno: 2)
            }
            if try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM device WHERE hostid = ? AND status != 'dead')"), arguments: [id]) == true {
                throw StoreError("host_not_empty", "host \"\(name)\" still has devices that are not dead; mark them dead first", errno: 39)
            }
            try db.cachedStatement(sql: "DELETE FROM device WHERE hostid = ?").execute(arguments: [id])
            try db.cachedStatement(sql: "DELETE FROM host WHERE hostid = ?").execute(arguments: [id])
        }
    }

    /// Adds a device. `id` nil takes the next id from the never-reused sequence.
    public func createDevice(id: DeviceID?, host: HostID, state: DeviceState = .alive) async throws -> DeviceID {
        try await write { db in try Self.createDevice(db, id: id, host: host, state: state) }
    }

    static func createDevice(_ db: Database, id: DeviceID?, host: HostID, state: DeviceState) throws -> DeviceID {
        guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM host WHERE hostid = ?)"), arguments: [host]) == true else {
            throw StoreError("unknown_hostid", "host id \(host) does not exist", errno: 2)
        }
        let devid: DeviceID
        if let id {
            guard id > 0 else { throw StoreError("invalid_devid", "device ids are positive integers", errno: 22) }
            if try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM device_seq WHERE devid = ?)"), arguments: [id]) == true {
                throw StoreError("existing_devid", "device id \(id) is or was in use; device ids are never reused", errno: 17)
            }
            try db.cachedStatement(sql: "INSERT INTO device_seq(devid) VALUES (?)").execute(arguments: [id])
            devid = id
        } else {
            try db.cachedStatement(sql: "INSERT INTO device_seq DEFAULT VALUES").execute()
            devid = Int(db.lastInsertedRowID)
        }
        try db.cachedStatement(sql: "INSERT INTO device(devid, hostid, status) VALUES (?, ?, ?)").execute(arguments: [devid, host, state.rawValue])
        return devid
    }

    public func setDeviceState(_ devid: DeviceID, hostName: String?, state: DeviceState) async throws {
        try await write { db in
            guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT d.status, h.name FROM device d JOIN host h USING(hostid) WHERE devid = ?"), arguments: [devid]) else {
                throw StoreError("no_device", "device \(devid) does not exist", errno: 2)
            }
            if let hostName, hostName != row["name"] as String {
                throw StoreError("host_mismatch", "device \(devid) belongs to host \(row["name"] as String), not \(hostName)", errno: 22)
            }
            let current = DeviceState(rawValue: row["status"]) ?? .down
            guard current.canChange(to: state) else {
                throw StoreError("state_too_high", "device \(devid) is dead; a dead device never comes back. Add a new device instead.", errno: 22)
            }
            try db.cachedStatement(sql: "UPDATE device SET status = ? WHERE devid = ?").execute(arguments: [state.rawValue, devid])
            if state == .dead {
                // Its copies no longer count: queue every blob it held for re-replication.
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO replicate_queue(fid, nexttry) SELECT fid, 0 FROM file_on WHERE devid = ?").execute(arguments: [devid])
                try db.cachedStatement(sql: "DELETE FROM file_on WHERE devid = ?").execute(arguments: [devid])
            }
        }
    }

    public func setDeviceWeight(_ devid: DeviceID, weight: Int) async throws {
        try await write { db in
            try db.cachedStatement(sql: "UPDATE device SET weight = ? WHERE devid = ?").execute(arguments: [weight, devid])
            if db.changesCount == 0 { throw StoreError("no_device", "device \(devid) does not exist", errno: 2) }
        }
    }

    /// A storage node announces itself: its host row is created or updated (and marked alive),
    /// the devices it already has are checked, and `newDevices` fresh ids are assigned.
    public func registerNode(name: String, ip: String, port: Int, existing: [DeviceID], newDevices: Int) async throws -> (HostRecord, [DeviceID]) {
        try await write { db in
            var host = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM host WHERE name = ?"), arguments: [name]).map(Self.host)
            if let h = host {
                try db.cachedStatement(sql: "UPDATE host SET ip = ?, port = ?, status = CASE status WHEN 'down' THEN 'alive' ELSE status END WHERE hostid = ?").execute(
                               arguments: [ip, port, h.id])
            } else {
                try db.cachedStatement(sql: "INSERT INTO host(name, ip, port, status) VALUES (?, ?, ?, 'alive')").execute(arguments: [name, ip, port])
            }
            host = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM host WHERE name = ?"), arguments: [name]).map(Self.host)
            let h = host!
            for devid in existing {
                if let owner = try Int.fetchOne(db.cachedStatement(sql: "SELECT hostid FROM device WHERE devid = ?"), arguments: [devid]) {
                    if owner != h.id {
                        throw StoreError("existing_devid", "device \(devid) belongs to another host; this node's data folder holds a device it does not own", errno: 17)
                    }
                } else {
                    _ = try Self.createDevice(db, id: devid, host: h.id, state: .alive)
                }
            }
            var fresh: [DeviceID] = []
            for _ in 0..<max(0, newDevices) { fresh.append(try Self.createDevice(db, id: nil, host: h.id, state: .alive)) }
            return (h, fresh)
        }
    }

    public struct DeviceUsage: Sendable {
        public var device: DeviceID
        public var totalBytes: Int64
        public var usedBytes: Int64
        public var freeBytes: Int64
        public var ioUtilization: Double
        public var observed: ObservedState
        public init(device: DeviceID, totalBytes: Int64, usedBytes: Int64, freeBytes: Int64, ioUtilization: Double, observed: ObservedState) {
            self.device = device; self.totalBytes = totalBytes; self.usedBytes = usedBytes; self.freeBytes = freeBytes
            self.ioUtilization = ioUtilization; self.observed = observed
        }
    }

    /// Stores what a poll of one host measured (usage data), or that it was unreachable.
    public func recordUsage(host: HostID, reachable: Bool, usage: [DeviceUsage]) async throws {
        try await write { db in
            let now = Clock.nowSeconds()
            try db.cachedStatement(sql: "UPDATE host SET observed = ?, last_seen = CASE WHEN ? THEN ? ELSE last_seen END WHERE hostid = ?").execute(
                           arguments: [reachable ? "reachable" : "unreachable", reachable, now, host])
            // A device the host no longer reports (its folder vanished, its disk unmounted) is
            // as unreachable as one on an unreachable host.
            try db.cachedStatement(sql: """
                UPDATE device SET observed = 'unreachable', unreachable_since = COALESCE(unreachable_since, ?) WHERE hostid = ?
                """).execute(arguments: [now, host])
            guard reachable else { return }
            for u in usage {
                try db.cachedStatement(sql: """
                    UPDATE device SET total_bytes = ?, used_bytes = ?, free_bytes = ?, io_util = ?, observed = ?, usage_at = ?,
                           unreachable_since = NULL
                    WHERE devid = ? AND hostid = ?
                    """).execute(arguments: [u.totalBytes, u.usedBytes, u.freeBytes, u.ioUtilization, u.observed.rawValue, now, u.device, host])
            }
        }
    }
}
