import Foundation

/// Short-circuit local reads, as HDFS does for clients on a DataNode's machine: a storage node
/// writes a random token into its data folder at start and reports the folder and the token in
/// `/_status`; a client that finds the same token at that path shares the node's file system and
/// may read blobs straight from the device folders. Blobs never change once renamed into place
/// (a new version is a new fid), so such a read sees exactly what a GET would.
public enum LocalReadMarker {
    public static let fileName = ".cairn-node"

    public static func newToken() -> String {
        (0..<4).map { _ in String(UInt32.random(in: 0...UInt32.max), radix: 16) }.joined(separator: "-")
    }

    public static func write(token: String, dataDir: String) throws {
        try token.write(toFile: dataDir + "/" + fileName, atomically: true, encoding: .utf8)
    }

    /// True when `dataDir`, as this process sees it, holds `token`.
    public static func matches(dataDir: String, token: String) -> Bool {
        guard !token.isEmpty, let text = try? String(contentsOfFile: dataDir + "/" + fileName, encoding: .utf8) else { return false }
        return text == token
    }
}
