import Crypto
import Synchronization

/// A class's checksum algorithm. MD5 is for MogileFS compatibility; SHA-256 is the default
/// for new classes that ask for one.
public enum ChecksumAlgorithm: String, Sendable, CaseIterable, Codable {
    case none, md5, sha256

    /// Parses Cairn names and MogileFS's hashtype names (`MD5`, `NONE`).
    public init?(name: String) {
        switch name.lowercased() {
        case "none", "": self = .none
        case "md5": self = .md5
        case "sha256", "sha-256": self = .sha256
        default: return nil
        }
    }

    /// MogileFS's wire name (`MD5:<hex>` checksums, `hashtype=` in get_domains).
    public var mogileName: String {
        switch self { case .none: "NONE"; case .md5: "MD5"; case .sha256: "SHA-256" }
    }
}

/// A checksum as text: `md5:<hex>` / `sha256:<hex>`.
public struct Checksum: Hashable, Sendable, CustomStringConvertible {
    public let algorithm: ChecksumAlgorithm
    public let hex: String
    public init(algorithm: ChecksumAlgorithm, hex: String) { self.algorithm = algorithm; self.hex = hex.lowercased() }
    public var description: String { "\(algorithm.rawValue):\(hex)" }
    public var mogileDescription: String { "\(algorithm.mogileName):\(hex)" }

    /// Accepts `sha256:…`, `md5:…` and MogileFS's `MD5:…`.
    public init?(parsing text: String) {
        guard let colon = text.firstIndex(of: ":"),
              let alg = ChecksumAlgorithm(name: String(text[..<colon])), alg != .none else { return nil }
        let hex = text[text.index(after: colon)...]
        let expected = alg == .md5 ? 32 : 64
        guard hex.count == expected, hex.allSatisfy(\.isHexDigit) else { return nil }
        self.init(algorithm: alg, hex: String(hex))
    }
}

/// Computes a checksum while bytes stream by.
public struct StreamingChecksum {
    private enum State { case none, md5(Insecure.MD5), sha256(SHA256) }
    private var state: State
    public let algorithm: ChecksumAlgorithm

    public init(_ algorithm: ChecksumAlgorithm) {
        self.algorithm = algorithm
        switch algorithm {
        case .none: state = .none
        case .md5: state = .md5(Insecure.MD5())
        case .sha256: state = .sha256(SHA256())
        }
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        switch state {
        case .none: break
        case .md5(var h): h.update(bufferPointer: bytes); state = .md5(h)
        case .sha256(var h): h.update(bufferPointer: bytes); state = .sha256(h)
        }
    }

    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    public func finalize() -> Checksum? {
        switch state {
        case .none: return nil
        case .md5(let h): return Checksum(algorithm: .md5, hex: Self.hex(h.finalize()))
        case .sha256(let h): return Checksum(algorithm: .sha256, hex: Self.hex(h.finalize()))
        }
    }

    private static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 { Hex.encode(Array(digest)) }
}

/// HMAC-SHA256 for write tokens (the tracker signs, storage nodes verify).
public enum Signer {
    /// An HMAC keyed with each secret in use, copied for each signature: keying hashes two
    /// blocks and builds a key, which was over half of a signature's cost (several per small
    /// file: the create's write URLs, the blobs' receipts and their checks). Kept per secret,
    /// as a small file takes turns between several: the cluster secret and each local node's
    /// receipt key.
    private static let keyed = Mutex<[String: HMAC<SHA256>]>([:])
    static let keyedLimit = 64

    public static func sign(_ message: String, secret: String) -> String {
        var mac = keyed.withLock { cached -> HMAC<SHA256> in
            if let mac = cached[secret] { return mac }
            let fresh = HMAC<SHA256>(key: SymmetricKey(data: Array(secret.utf8)))
            if cached.count >= keyedLimit { cached.removeAll() }  // secrets rotate rarely: start over
            cached[secret] = fresh
            return fresh
        }
        mac.update(data: Array(message.utf8))
        return Hex.encode(Array(mac.finalize()))
    }
}
