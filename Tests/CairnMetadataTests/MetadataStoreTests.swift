import CairnCore
import Foundation
import GRDB
import Testing
@testable import CairnMetadata

func temporaryDatabase() -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cairn-meta-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent("t.db").path
}

/// A committed file with one fresh blob.
func commit(_ store: MetadataStore, _ d: DomainRecord, _ key: String, size: Int64 = 10, devices: [DeviceID] = [1, 2]) async throws -> (InodeAttributes, Fid) {
    let fid = try await store.openUpload(domain: d.id, classID: 0, key: key, devices: devices)
    let a = try await store.commitFile(domain: d, key: try KeyPath(key), classID: 0, size: size,
                                       chunks: [CommittedChunk(fid: fid, length: size, checksum: nil, devices: devices)], replicas: 2)
    return (a, fid)
}

@Suite struct MetadataStoreTests {
    @Test func commitCreatesParentsAndListsKeys() async throws {
        let store = try MetadataStore(path: temporaryDatabase())
        let d = try await store.createDomain("photos")
        _ = try await commit(store, d, "2024/jan/a.jpg")
        _ = try await commit(store, d, "2024/feb/b.jpg")
        _ = try await commit(store, d, "readme")
        #expect(try await store.listKeys(domain: d.id, prefix: "", after: nil, limit: 10) == ["2024/feb/b.jpg", "2024/jan/a.jpg", "readme"])
        #expect(try await store.listKeys(domain: d.id, prefix: "2024/j", after: nil, limit: 10) == ["2024/jan/a.jpg"])
        #expect(try await store.listKeys(domain: d.id, prefix: "2024/", after: "2024/feb/b.jpg", limit: 10) == ["2024/jan/a.jpg"])
        let root = try await store.readdir(ino: d.root, after: nil, limit: 10)
        #expect(root.map(\.name) == ["2024", "readme"])
        #expect(root[0].attributes.kind == .directory)
        #expect(root[0].attributes.nlink == 4)  // ., .., jan, feb
    }

    @Test func overwriteQueuesOldBlobAndKeepsInode() async throws {
        let store = try MetadataStore(path: temporaryDatabase())
        let d = try await store.createDomain("d")
        let (a1, fid1) = try await commit(store, d, "k")
        let (a2, fid2) = try await commit(store, d, "k", size: 20)
        #expect(a1.ino == a2.ino)
        #expect(a2.size == 20)
        #expect(try await store.blob(fid: fid1) == nil)
        #expect(try await store.blob(fid: fid2) != nil)
        let due = try await store.dueDeletes(limit: 10)
        #expect(due.map(\.fid) == [fid1])
        #expect(Set(due[0].devices) == [1, 2])
    }

    /// A commit's chunks are the file's own, open uploads (which become blobs) or blobs already
    /// committed; anything else fails the whole commit, which then changes nothing.
    @Test func commitTakesOpenUploadsAndKeepsUnchangedChunks() async throws {
        let store = try MetadataStore(path: temporaryDatabase())
        let d = try await store.createDomain("d")
        let (a, fid1) = try await commit(store, d, "k", size: 10)
        let stray = fid1 + 1000
        await #expect(throws: StoreError.self) {
            _ = try await store.commitInode(ino: a.ino, size: 20, chunks: [(0, CommittedChunk(fid: fid1, length: 10, checksum: nil, devices: [1, 2])),
                                                                          (1, CommittedChunk(fid: stray, length: 10, checksum: nil, devices: [1, 2]))],
                                            replicas: 2, mtime: nil)
        }
        #expect(try await store.content(ino: a.ino).1.map(\.fid) == [fid1], "the failed commit changed nothing")
        let fid2 = try await store.openUpload(domain: d.id, classID: 0, key: "", devices: [1, 2])
        let l = try await store.commitInode(ino: a.ino, size: 20, chunks: [(0, CommittedChunk(fid: fid1, length: 10, checksum: nil, devices: [1, 2])),
                                                                           (1, CommittedChunk(fid: fid2, length: 10, checksum: nil, devices: [1, 2]))],
                                           replicas: 2, mtime: nil)
        #expect(l.chunks.map(\.fid) == [fid1, fid2] && l.attributes.size == 20)
        #expect(try await store.blob(fid: fid1) != nil)
        #expect(try await store.blob(fid: fid2) != nil)
        #expect(try await store.dueDeletes(limit: 10).isEmpty, "the unchanged chunk's blob stays")
    }

    @Test func deleteFreesBlobsAndFidsAreNeverReused() async throws {
        let path = temporaryDatabase()
        var store = try MetadataStore(path: path)
        let d = try await store.createDomain("d")
        let (_, fid) = try await commit(store, d, "x")
        try await store.deleteKey(domain: d, key: try KeyPath("x"))
        #expect(try await store.file(domain: d, key: try KeyPath("x")) == nil)
        #expect(try await store.dueDeletes(limit: 10).map(\.fid) == [fid])
        try await store.recordDeletes([.init(fid: fid, devices: [1])])
        #expect(try await store.pendingDeletes() == 1, "one copy left: the delete is retried")
        #expect(try await store.dueDeletes(limit: 10).isEmpty, "later, with backoff")
        try await store.recordDeletes([.init(fid: fid, devices: [2])])
        #expect(try await store.pendingDeletes() == 0)
        store = try MetadataStore(path: path)  // reopen: the sequence survives
        let next = try await store.openUpload(domain: d.id, classID: 0, key: "", devices: [])
        #expect(next > fid)
    }

    @Test func renameDirectoryRewritesKeys() async throws {
        let store = try MetadataStore(path: temporaryDatabase())
        let d = try await store.createDomain("d")
        _ = try await commit(store, d, "a/b/c")
        _ = try await commit(store, d, "a-sibling")
        try await store.renameKey(domain: d, from: try KeyPath("a"), to: try KeyPath("z/y"))
        #expect(try await store.listKeys(domain: d.id, prefix: "", after: nil, limit: 10) == ["a-sibling", "z/y/b/c"])
        #expect(try await store.file(domain: d, key: try KeyPath("z/y/b/c")) != nil)
        await #expect(throws: StoreError.self) { try await store.renameKey(domain: d, from: try KeyPath("a-sibling"), to: try KeyPath("z/y/b/c")) }
    }

    @Test func newEntriesTakeTheClassOfTheNearestClassedDirectoryAbove() async throws {
        let store = try MetadataStore(path: temporaryDatabase())
        let d = try await store.createDomain("d")
        let gold = try await store.saveClass(domain: d.id, name: "gold", update: false) { _ in }
        let silver = try await store.saveClass(domain: d.id, name: "silver", update: false) { _ in }
        func mkdir(_ parent: Ino, _ name: String) async throws -> Ino {
            try await store.create(parent: parent, name: name, .init(kind: .directory, mode: 0o755, uid: 0, gid: 0)).ino
        }
        func newFile(_ parent: Ino, _ name: String) async throws -> ClassID {
            try await store.create(parent: parent, name: name, .init(kind: .file, mode: 0o644, uid: 0, gid: 0)).classID
        }
        // Directories made before any class was set: the class is found by walking up.
        let top = try await mkdir(d.root, "top"), a = try await mkdir(top, "a"), b = try await mkdir(a, "b"), c = try await mkdir(b, "c")
        let other = try await mkdir(d.root, "other"), deepOther = try await mkdir(try await mkdir(other, "x"), "y")
        #expect(try await newFile(c, "before") == 0, "no class anywhere above: the default")
        try await store.setClass(ino: top, classID: gold.id)
        #expect(try await newFile(c, "deep") == gold.id, "four levels below the classed directory")
        #expect(try await newFile(top, "direct") == gold.id)
        #expect(try await newFile(deepOther, "elsewhere") == 0, "a sibling tree keeps the default")
        try await store.setClass(ino: a, classID: silver.id)
        #expect(try await newFile(c, "nearer") == silver.id, "the nearest classed directory wins")
        #expect(try await newFile(try await mkdir(c, "new"), "below a new directory") == silver.id)
    }

    @Test func createAnswersWithTheStoredInodeAndItsDirectory() async throws {
        let store = try MetadataStore(path: temporaryDatabase())
        let d = try await store.createDomain("d")
        for (name, kind) in [("dir", InodeKind.directory), ("file", .file), ("link", .symlink)] {
            let (created, parent, _) = try await store.createEntry(parent: d.root, name: name,
                                                                  .init(kind: kind, mode: 0o640, uid: 7, gid: 8, target: kind == .symlink ? "dir" : nil))
            #expect(created == (try await store.getattr(ino: created.ino)), "\(name): the answer is the inode as stored")
            #expect(parent == (try await store.getattr(ino: d.root)), "\(name): its directory as stored after the create (times, links)")
        }
        #expect(try await store.getattr(ino: d.root).nlink == 3, "a new subdirectory's '..' counts")
    }

    /// A new file takes the class of the nearest directory above that names one, however deep,
    /// also below directories made before that class was set; default when none does.
    @Test func newFilesTakeTheClassOfTheNearestDirectoryThatNamesOne() async throws {
        let store = try MetadataStore(path: temporaryDatabase())
        let d = try await store.createDomain("d")
        let other = try await store.createDomain("other")
        let three = try await store.saveClass(domain: d.id, name: "three", update: false) { $0.replicas = 3 }
        func mk(_ parent: Ino, _ name: String, _ kind: InodeKind = .directory) async throws -> InodeAttributes {
            try await store.createEntry(parent: parent, name: name, .init(kind: kind, mode: 0o755, uid: 0, gid: 0)).inode
        }
        let a = try await mk(d.root, "a"), b = try await mk(a.ino, "b"), c = try await mk(b.ino, "c")
        #expect(try await mk(c.ino, "before", .file).classID == 0)
        try await store.setClass(ino: a.ino, classID: three.id)
        #expect(try await mk(c.ino, "deep", .file).classID == three.id, "found three levels up")
        #expect(try await mk(try await mk(c.ino, "new").ino, "deeper", .file).classID == three.id)
        #expect(try await mk(d.root, "beside", .file).classID == 0, "not below it")
        #expect(try await mk(try await mk(other.root, "x").ino, "f", .file).classID == 0, "another domain has none")
        #expect(try await mk(c.ino, "link", .symlink).classID == 0)
    }

    @Test func durableCommitsStayDurableBetweenDeferredOnes() async throws {
        let store = try MetadataStore(path: temporaryDatabase())
        let d = try await store.createDomain("d")
        // The writer connection's level, as SQLite reports it: 1 NORMAL, 2 FULL.
        func level() async throws -> Int? { try await store.pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") } }
        func create(_ name: String, deferred: Bool) async throws {
            _ = try await MetadataStore.$deferDurability.withValue(deferred) {
                try await store.createEntry(parent: d.root, name: name, .init(kind: .file, mode: 0o644, uid: 0, gid: 0))
            }
        }
        #expect(try await level() == 2)
        try await create("a", deferred: true)
        #expect(try await level() == 1, "the mount's writes commit without an fsync")
        try await create("b", deferred: true)
        try await create("c", deferred: false)
        #expect(try await level() == 2, "a durable write after deferred ones fsyncs (and so covers them)")
        try await create("d", deferred: true)
        try await store.sync()
        #expect(try await level() == 2, "sync commits at FULL")
    }

    @Test func posixRenameModesAndLinks() async throws {
        let store = try MetadataStore(path: temporaryDatabase())
        let d = try await store.createDomain("d")
        let (f1, _) = try await commit(store, d, "one")
        let (f2, _) = try await commit(store, d, "two")
        await #expect(throws: StoreError.self) { try await store.rename(parent: d.root, name: "one", newParent: d.root, newName: "two", mode: .noReplace) }
        try await store.rename(parent: d.root, name: "one", newParent: d.root, newName: "two", mode: .exchange)
        #expect(try await store.lookup(parent: d.root, name: "two").ino == f1.ino)
        #expect(try await store.lookup(parent: d.root, name: "one").ino == f2.ino)
        try await store.rename(parent: d.root, name: "one", newParent: d.root, newName: "two")
        #expect(try await store.lookup(parent: d.root, name: "two").ino == f2.ino)
        let linked = try await store.link(ino: f2.ino, newParent: d.root, newName: "hard")
        #expect(linked.nlink == 2)
        try await store.unlink(parent: d.root, name: "two", directory: false)
        #expect(try await store.getattr(ino: f2.ino).nlink == 1)
        let dir = try await store.create(parent: d.root, name: "dir", .init(kind: .directory, mode: 0o700, uid: 5, gid: 6))
        _ = try await store.create(parent: dir.ino, name: "f", .init(kind: .file, mode: 0o600, uid: 5, gid: 6))
        await #expect(throws: StoreError.self) { try await store.unlink(parent: d.root, name: "dir", directory: true) }
        let sym = try await store.create(parent: d.root, name: "s", .init(kind: .symlink, mode: 0o777, uid: 0, gid: 0, target: "dir/f"))
        #expect(try await store.readlink(ino: sym.ino) == "dir/f")
        // Domains are separate namespaces: a rename into another domain's directory is refused
        // (EXDEV, so `mv` copies instead) and moves nothing.
        let other = try await store.createDomain("other")
        await #expect { try await store.rename(parent: d.root, name: "s", newParent: other.root, newName: "s") } throws: { error in
            (error as? StoreError)?.code == "cross_domain"
        }
        #expect(try await store.lookup(parent: d.root, name: "s").ino == sym.ino)
    }

    /// An unlink that names the inode it expects (the mount's, sent without waiting and sent
    /// again after a lost answer) removes the name only while it names that inode.
    @Test func unlinkNamingAnInodeRemovesOnlyThatInode() async throws {
        let store = try MetadataStore(path: temporaryDatabase())
        let d = try await store.createDomain("d")
        let (first, _) = try await commit(store, d, "k")
        try await store.unlink(parent: d.root, name: "k", directory: false, expectedIno: first.ino)
        let (second, _) = try await commit(store, d, "k")  // made again under the same name
        await #expect(throws: StoreError.self, "a resend of the first unlink") {
            try await store.unlink(parent: d.root, name: "k", directory: false, expectedIno: first.ino)
        }
        #expect(try await store.lookup(parent: d.root, name: "k").ino == second.ino, "the new file stays")
        try await store.unlink(parent: d.root, name: "k", directory: false, expectedIno: second.ino)
        await #expect(throws: StoreError.self) { try await store.lookup(parent: d.root, name: "k") }
    }

    /// A rename answers with the moved inode and its directories as stored afterwards, and
    /// keeps every key right: in a subdirectory (the new key is derived from the old one), at
    /// the domain root, across directories, and for a directory's whole subtree.
    @Test func renamesAnswerAsStoredAndKeepKeys() async throws {
        let store = try MetadataStore(path: temporaryDatabase())
        let d = try await store.createDomain("d")
        func key(_ k: String) async throws -> Ino? { try await store.resolve(domain: d, key: try KeyPath(k)) }
        func dir(_ parent: Ino, _ name: String) async throws -> Ino {
            try await store.create(parent: parent, name: name, .init(kind: .directory, mode: 0o755, uid: 0, gid: 0)).ino
        }
        let a = try await dir(d.root, "a"), b = try await dir(a, "b"), c = try await dir(d.root, "c")
        let f = try await store.create(parent: b, name: ".f.tmp", .init(kind: .file, mode: 0o600, uid: 0, gid: 0))
        try await Task.sleep(for: .milliseconds(2))  // a later ctime and mtime than the create's
        let inB = try await store.rename(parent: b, name: ".f.tmp", newParent: b, newName: "f")
        #expect(inB.newParent == nil)
        #expect(inB.parent == (try await store.getattr(ino: b)))
        #expect(inB.moved == (try await store.getattr(ino: f.ino)))
        #expect(try #require(inB.moved).ctime > f.ctime)
        #expect(try await key("a/b/f") == f.ino)
        #expect(try await key("a/b/.f.tmp") == nil)
        let atRoot = try await store.rename(parent: b, name: "f", newParent: d.root, newName: "top")
        #expect(atRoot.parent == (try await store.getattr(ino: b)))
        #expect(atRoot.newParent == (try await store.getattr(ino: d.root)))
        #expect(try await key("top") == f.ino)
        _ = try await store.rename(parent: d.root, name: "top", newParent: d.root, newName: "top2")
        #expect(try await key("top2") == f.ino)
        _ = try await store.rename(parent: d.root, name: "top2", newParent: b, newName: "back")
        let moved = try await store.rename(parent: d.root, name: "a", newParent: c, newName: "a2")
        #expect(moved.moved == (try await store.getattr(ino: a)))
        #expect(moved.parent == (try await store.getattr(ino: d.root)))
        #expect(moved.newParent == (try await store.getattr(ino: c)))
        #expect(try #require(moved.newParent).nlink == 3, "the moved directory's '..' now counts in c")
        #expect(try await key("c/a2/b/back") == f.ino)
        #expect(try await key("c/a2/b") == b)
        #expect(try await key("a/b/back") == nil)
    }

    /// A commit answers with the layout as stored: built from what it wrote when every chunk is
    /// new and the caller's class is the file's, read back otherwise (a chunk kept, another class).
    @Test func commitAnswersWithTheStoredLayout() async throws {
        let store = try MetadataStore(path: temporaryDatabase())
        let d = try await store.createDomain("d")
        let cls = try #require(try await store.classRecord(domain: d.id, id: 0))
        let f = try await store.create(parent: d.root, name: "f", .init(kind: .file, mode: 0o644, uid: 0, gid: 0))
        func upload(_ devices: [DeviceID]) async throws -> Fid { try await store.openUpload(domain: d.id, classID: 0, key: "", devices: devices) }
        let head = CommittedChunk(fid: try await upload([2, 1]), length: 16, checksum: "MD5:00112233445566778899aabbccddeeff", devices: [2, 1, 2])
        let tail = CommittedChunk(fid: try await upload([3]), length: 14, checksum: nil, devices: [3])
        let built = try await store.commitInode(ino: f.ino, size: 30, chunks: [(1, tail), (0, head)], replicas: 2, mtime: 5, catalog: ("d", cls))
        #expect(built == (try await store.layout(ino: f.ino)))
        #expect(built.copies[head.fid] == [1, 2])
        let newTail = CommittedChunk(fid: try await upload([1]), length: 4, checksum: nil, devices: [1])
        let kept = try await store.commitInode(ino: f.ino, size: 20, chunks: [(0, head), (1, newTail)], replicas: 2, mtime: nil, catalog: ("d", cls))
        #expect(kept == (try await store.layout(ino: f.ino)))
        var other = cls
        other.id = 99
        let again = CommittedChunk(fid: try await upload([2]), length: 3, checksum: nil, devices: [2])
        let readBack = try await store.commitInode(ino: f.ino, size: 3, chunks: [(0, again)], replicas: 2, mtime: nil, catalog: ("d", other))
        #expect(readBack == (try await store.layout(ino: f.ino)))
        #expect(readBack.classRecord == cls)
    }

    /// `InodeRows` reads SQLite's columns itself; it must decode every kind of inode, with and
    /// without a checksum, at any column offset, as GRDB's `Row` does.
    @Test func inodeRowsDecodeAsRowsDo() async throws {
        let store = try MetadataStore(path: temporaryDatabase())
        let d = try await store.createDomain("d")
        let (file, _) = try await commit(store, d, "f", size: 12_345)
        _ = try await store.setattr(ino: file.ino, .init(mode: 0o4751, uid: 4_000_000_000, gid: 77, atime: -5, mtime: 1 << 61))
        let dir = try await store.create(parent: d.root, name: "dir", .init(kind: .directory, mode: 0o700, uid: 1, gid: 2))
        _ = try await store.create(parent: dir.ino, name: "s", .init(kind: .symlink, mode: 0o777, uid: 3, gid: 4, target: "../f"))
        try await store.pool.writeWithoutTransaction { db in
            try db.execute(sql: "UPDATE inode SET checksum = 'MD5:0123456789abcdef0123456789abcdef', classid = 3 WHERE ino = ?", arguments: [file.ino])
        }
        let (viaRows, viaCursor) = try await store.pool.read { db in
            let sql = "SELECT 'x', \(MetadataStore.inodeColumns) FROM inode ORDER BY ino"
            return (try Row.fetchAll(db, sql: sql).map { MetadataStore.attributes($0, at: 1) },
                    try Array(InodeRows(db.makeStatement(sql: sql), arguments: [], offset: 1)))
        }
        #expect(viaRows.count == 4)  // the root, f, dir, s
        #expect(Set(viaRows.map(\.kind)) == [.directory, .file, .symlink])
        #expect(viaRows.contains { $0.checksum != nil } && viaRows.contains { $0.checksum == nil })
        #expect(viaCursor == viaRows)
    }

    @Test func truncateKeepsChunksBelowTheSize() async throws {
        let store = try MetadataStore(path: temporaryDatabase())
        let d = try await store.createDomain("d")
        let (a, fid) = try await commit(store, d, "t", size: 100)
        let cut = try await store.setattr(ino: a.ino, .init(size: 40))
        #expect(cut.size == 40)
        #expect(try await store.chunks(ino: a.ino) == [ChunkRef(index: 0, fid: fid, length: 40)])
        _ = try await store.setattr(ino: a.ino, .init(size: 0))
        #expect(try await store.chunks(ino: a.ino).isEmpty)
        #expect(try await store.dueDeletes(limit: 5).map(\.fid) == [fid])
    }

    @Test func xattrsAreBinarySafe() async throws {
        let store = try MetadataStore(path: temporaryDatabase())
        let d = try await store.createDomain("d")
        let (a, _) = try await commit(store, d, "x")
        let value: [UInt8] = [0, 255, 10, 13, 0x26, 0x3d]
        try await store.xattrSet(ino: a.ino, name: "user.bin", value: value)
        #expect(try await store.xattrGet(ino: a.ino, name: "user.bin") == value)
        await #expect(throws: StoreError.self) { try await store.xattrSet(ino: a.ino, name: "user.bin", value: [1], mode: .create) }
        try await store.xattrRemove(ino: a.ino, name: "user.bin")
        #expect(try await store.xattrGet(ino: a.ino, name: "user.bin") == nil)
    }

    @Test func deviceIdsAreNeverReused() async throws {
        let store = try MetadataStore(path: temporaryDatabase())
        let (host, ids) = try await store.registerNode(name: "n1", ip: "127.0.0.1", port: 1, existing: [], newDevices: 2)
        #expect(ids == [1, 2])
        try await store.setDeviceState(2, hostName: nil, state: .dead)
        await #expect(throws: StoreError.self) { try await store.setDeviceState(2, hostName: nil, state: .alive) }
        try await store.setDeviceState(1, hostName: nil, state: .dead)
        try await store.deleteHost(name: "n1")
        let (_, again) = try await store.registerNode(name: "n2", ip: "127.0.0.1", port: 2, existing: [], newDevices: 1)
        #expect(again == [3])
        await #expect(throws: StoreError.self) { _ = try await store.createDevice(id: 1, host: host.id + 1) }
    }

    /// Writes that queue while one runs share its transaction, each undone alone when it fails.
    @Test func writesThatComeTogetherShareATransaction() async throws {
        let store = try MetadataStore(path: temporaryDatabase())
        let setSQL = "INSERT INTO setting(key, value) VALUES (?, 'v')"
        let gate = DispatchSemaphore(value: 0)
        let before = store.writeCounts
        // A durable leader runs on GRDB's writer thread, holding it until every other write has queued.
        let leader = Task { try await store.write { db in gate.wait(); try db.execute(sql: setSQL, arguments: ["leader"]) } }
        while !store.commits.isRunning { try await Task.sleep(for: .milliseconds(5)) }
        struct Refused: Error {}
        let joiners = (0..<4).map { i in
            Task {
                try await store.writeDeferred { db in
                    try db.execute(sql: setSQL, arguments: ["joiner\(i)"])
                    if i == 2 { throw Refused() }  // after its insert, which must be undone alone
                }
            }
        }
        let durable = Task { try await store.write { db in try db.execute(sql: setSQL, arguments: ["durable"]) } }
        while store.commits.waiting < 5 { try await Task.sleep(for: .milliseconds(5)) }
        gate.signal()
        try await leader.value
        for (i, j) in joiners.enumerated() {
            if i == 2 { await #expect(throws: StoreError.self) { try await j.value } } else { try await j.value }
        }
        try await durable.value
        let keys = Set(try await store.settings().map(\.0))
        #expect(keys.isSuperset(of: ["leader", "joiner0", "joiner1", "joiner3", "durable"]))
        #expect(!keys.contains("joiner2"))
        let after = store.writeCounts
        #expect(after.transactions - before.transactions == 1)
        #expect(after.writes - before.writes == 6)
        #expect(!store.commits.isRunning && store.commits.waiting == 0)
    }
}
