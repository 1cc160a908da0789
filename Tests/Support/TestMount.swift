import Foundation

/// A real `cairn mount` of a test cluster, in the foreground process it runs as.
public final class TestMount: @unchecked Sendable {
    public let path: String
    public private(set) var process: Process?
    let cluster: TestCluster
    let options: [String]

    public init(_ cluster: TestCluster, options: [String] = []) throws {
        self.cluster = cluster
        self.options = options
        path = cluster.root + "/mnt"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try mount()
    }

    public func mount() throws {
        var args = ["mount", path, "--tracker", cluster.trackerSocket, "-f"]  // as under `cairn up`
        for o in options { args += ["-o", o] }
        process = try cluster.spawn(args, log: "mount.log", withSecret: false)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if Self.isMounted(path) { return }
            if let p = process, !p.isRunning { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw TestFailure("mount did not come up: \(cluster.log("mount.log"))")
    }

    public static func isMounted(_ path: String) -> Bool {
        let text = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").contains { $0.split(separator: " ").dropFirst().first.map(String.init) == path }
    }

    /// `fusermount3 -u`, as a person unmounts; returns the mount process's exit status.
    @discardableResult
    public func unmount() -> Int32 {
        guard let p = process else { return 0 }
        for args in [["-u", path], ["-uz", path]] {
            let u = Process()
            u.executableURL = URL(fileURLWithPath: "/bin/fusermount3")
            u.arguments = args
            try? u.run()
            u.waitUntilExit()
            if u.terminationStatus == 0 { break }
        }
        let deadline = Date().addingTimeInterval(20)
        while p.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if p.isRunning { cluster.kill(p) }
        process = nil
        return p.terminationStatus
    }

    deinit { unmount() }
}

/// Runs a tool (cp, rsync, getfattr…) and returns its status and output.
@discardableResult
public func run(_ tool: String, _ args: [String], cwd: String? = nil) throws -> (status: Int32, out: String, err: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [tool] + args
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errors = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self), String(decoding: errors, as: UTF8.self))
}
