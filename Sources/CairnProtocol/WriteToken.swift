import CairnCore

/// Storage URL scheme for writes. The tracker hands out write paths of the form
/// `/_w/<expiry>-<algorithm>-<signature>/dev<N>/B/MMM/TTT/<fid>.fid`: every character is one
/// MogileFS's reply encoding leaves as it is, so MogileFS clients PUT to it unchanged.
/// The signature is HMAC-SHA256 over expiry, algorithm and device path with the cluster secret;
/// without a secret it is `0` and nodes accept the path unsigned.
public struct WriteToken: Sendable, Equatable {
    public static let prefix = "/_w/"

    public let expiry: Int64
    public let algorithm: ChecksumAlgorithm
    public let signature: String
    public let devicePath: String

    public static func make(devicePath: String, algorithm: ChecksumAlgorithm, secret: String?,
                            lifetime: Int64 = 3600, now: Int64 = Clock.nowSeconds()) -> WriteToken {
        let expiry = now + lifetime
        let sig = secret.map { Signer.sign(message(expiry: expiry, algorithm: algorithm, devicePath: devicePath), secret: $0) } ?? "0"
        return WriteToken(expiry: expiry, algorithm: algorithm, signature: sig, devicePath: devicePath)
    }

    static func message(expiry: Int64, algorithm: ChecksumAlgorithm, devicePath: String) -> String {
        "\(expiry):\(algorithm.rawValue):\(devicePath)"
    }

    public var path: String { "\(Self.prefix)\(expiry)-\(algorithm.rawValue)-\(signature)\(devicePath)" }

    /// Splits a request path into its token and device path; nil when it carries no token.
    /// Reads UTF-8 bytes (every blob write parses one, on the node or in a mount): expiry,
    /// algorithm and signature, each non-empty, separated by the first two dashes.
    public static func parse(path: String) -> WriteToken? {
        let bytes = path.utf8
        guard bytes.starts(with: prefix.utf8) else { return nil }
        let start = bytes.index(bytes.startIndex, offsetBy: prefix.utf8.count)
        guard let slash = bytes[start...].firstIndex(of: UInt8(ascii: "/")),
              let dash1 = bytes[start..<slash].firstIndex(of: UInt8(ascii: "-")),
              let dash2 = bytes[bytes.index(after: dash1)..<slash].firstIndex(of: UInt8(ascii: "-")),
              start < dash1, bytes.index(after: dash1) < dash2, bytes.index(after: dash2) < slash,
              let expiry = Int64(Substring(bytes[start..<dash1])),
              let alg = ChecksumAlgorithm(rawValue: String(Substring(bytes[bytes.index(after: dash1)..<dash2]))) else { return nil }
        return WriteToken(expiry: expiry, algorithm: alg, signature: String(Substring(bytes[bytes.index(after: dash2)..<slash])),
                          devicePath: String(Substring(bytes[slash...])))
    }

    public enum Verdict: Equatable { case valid, expired, badSignature }

    public func verify(secret: String, now: Int64 = Clock.nowSeconds()) -> Verdict {
        if expiry < now { return .expired }
        let expected = Signer.sign(Self.message(expiry: expiry, algorithm: algorithm, devicePath: devicePath), secret: secret)
        return constantTimeEqual(expected, signature) ? .valid : .badSignature
    }

    private func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<x.count { diff |= x[i] ^ y[i] }
        return diff == 0
    }
}
