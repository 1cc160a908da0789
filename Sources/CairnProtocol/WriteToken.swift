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
    public static func parse(path: String) -> WriteToken? {
        guard path.hasPrefix(prefix) else { return nil }
        let rest = path.dropFirst(prefix.count)
        guard let slash = rest.firstIndex(of: "/") else { return nil }
        let parts = rest[..<slash].split(separator: "-", maxSplits: 2)
        guard parts.count == 3, let expiry = Int64(parts[0]),
              let alg = ChecksumAlgorithm(rawValue: String(parts[1])) else { return nil }
        return WriteToken(expiry: expiry, algorithm: alg, signature: String(parts[2]), devicePath: String(rest[slash...]))
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
