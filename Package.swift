// swift-tools-version:6.0
// Cairn: a replicated file store in the line of MogileFS, mounted as a directory.
// The dependency graph reads top-down: the `cairn` executable composes the rooms,
// each room depends only on rooms below it, and every outside library has one importer.
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "Cairn",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "cairn", targets: ["cairn"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
    ],
    targets: [
        // C shims: what Swift cannot call directly (variadics, macros).
        .target(name: "CCurl", path: "CShims/CCurl", linkerSettings: [.linkedLibrary("curl")]),
        .target(name: "CFuse3", path: "CShims/CFuse3", linkerSettings: [.linkedLibrary("fuse3")]),
        .target(name: "CSys", path: "CShims/CSys"),

        // Vocabulary, no I/O.
        .target(name: "CairnCore", dependencies: [
            .product(name: "Crypto", package: "swift-crypto"),
        ], swiftSettings: swiftSettings),
        // MogileFS's line protocol and Cairn's extensions; storage URL scheme and write tokens.
        .target(name: "CairnProtocol", dependencies: ["CairnCore"], swiftSettings: swiftSettings),
        // Pure decisions from usage data: placement, replica order, replication needs.
        .target(name: "CairnPolicy", dependencies: ["CairnCore"], swiftSettings: swiftSettings),
        // The metadata store (GRDB/SQLite) behind narrow protocols.
        .target(name: "CairnMetadata", dependencies: [
            "CairnCore", "CairnPolicy",
            .product(name: "GRDB", package: "GRDB.swift"),
            // SQLite's C API, for the inode rows decoded without GRDB's `Row` (InodeRows).
            .product(name: "GRDBSQLite", package: "GRDB.swift"),
        ], swiftSettings: swiftSettings),
        // The wire: HTTP blob transfer over libcurl and blocking tracker connections; used by the
        // client, the tracker (node checks, copies) and storage nodes (registration, peer copies).
        .target(name: "CairnTransfer", dependencies: ["CairnCore", "CairnProtocol", "CCurl"], swiftSettings: swiftSettings),
        // A device folder's blobs on disk (temp file, checksum xattr, rename): written by storage
        // nodes and, through a node's local-write grant, by a mount on the same machine.
        .target(name: "CairnDevice", dependencies: ["CairnCore", "CairnProtocol", "CSys"], swiftSettings: swiftSettings),
        // The storage node (Hummingbird).
        .target(name: "CairnStorage", dependencies: [
            "CairnCore", "CairnProtocol", "CairnDevice", "CairnTransfer", "CSys",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        // The tracker: protocol server (SwiftNIO) and workers.
        .target(name: "CairnTracker", dependencies: [
            "CairnCore", "CairnProtocol", "CairnPolicy", "CairnMetadata", "CairnTransfer",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        // Tracker client with failover, chunked upload and parallel download.
        .target(name: "CairnClient", dependencies: [
            "CairnCore", "CairnProtocol", "CairnDevice", "CairnTransfer", "CSys",
        ], swiftSettings: swiftSettings),
        // File-system semantics without the kernel: inode mapping, open files with chunk write
        // buffers and read-ahead, directory paging, xattr mapping.
        .target(name: "CairnFS", dependencies: [
            "CairnCore", "CairnProtocol", "CairnClient", "CairnTransfer", "CSys",
        ], swiftSettings: swiftSettings),
        // The thin libfuse3 (low-level API) adapter over CairnFS.
        .target(name: "CairnFUSE", dependencies: ["CairnFS", "CFuse3"], swiftSettings: swiftSettings),
        // The executable: argument parsing and wiring only.
        .executableTarget(name: "cairn", dependencies: [
            "CairnCore", "CairnProtocol", "CairnClient", "CairnTracker", "CairnStorage", "CairnMetadata", "CairnFS", "CairnFUSE", "CSys",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),

        .testTarget(name: "CairnCoreTests", dependencies: ["CairnCore"]),
        .testTarget(name: "CairnProtocolTests", dependencies: ["CairnProtocol"]),
        .testTarget(name: "CairnPolicyTests", dependencies: ["CairnPolicy"]),
        .testTarget(name: "CairnMetadataTests", dependencies: ["CairnMetadata"]),
        .testTarget(name: "CairnTransferTests", dependencies: ["CairnTransfer"]),
        // Real clusters and mounts for tests: processes on free loopback ports, temporary folders.
        .target(name: "CairnTestSupport", dependencies: ["CairnClient", "CairnProtocol", "CairnTransfer"], path: "Tests/Support"),
        .testTarget(name: "ClusterTests", dependencies: ["CairnTestSupport", "CairnClient", "CairnProtocol", "cairn"]),
        .testTarget(name: "MountTests", dependencies: ["CairnTestSupport", "CairnClient", "CairnFS", "CairnProtocol", "CairnTransfer", "CSys", "cairn"]),
    ]
)
