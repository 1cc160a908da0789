/// A key is a file's path under its domain: `/`-separated components. These are the rules
/// that make every key a valid POSIX path (so the mount can show it), enforced on every
/// entry point (protocol, CLI, mount).
public struct KeyPath: Hashable, Sendable, CustomStringConvertible {
    public static let maxComponentBytes = 255
    public static let maxBytes = 4096

    public let components: [String]

    public var description: String { components.joined(separator: "/") }
    public var name: String { components.last ?? "" }
    public var parent: KeyPath { KeyPath(uncheckedComponents: Array(components.dropLast())) }
    public var isRoot: Bool { components.isEmpty }

    init(uncheckedComponents: [String]) { components = uncheckedComponents }

    /// Parses a key. A single leading `/` is tolerated (people type it); anything that
    /// cannot be a path is rejected with the reason.
    public init(_ key: String) throws(KeyError) {
        var body = Substring(key)
        if body.hasPrefix("/") { body = body.dropFirst() }
        guard !body.isEmpty else { throw .empty }
        guard key.utf8.count <= Self.maxBytes else { throw .tooLong(key.utf8.count) }
        var parts: [String] = []
        for part in body.split(separator: "/", omittingEmptySubsequences: false) {
            try Self.validate(name: part)
            parts.append(String(part))
        }
        components = parts
    }

    /// Validates one path component (a directory entry name).
    public static func validate<S: StringProtocol>(name: S) throws(KeyError) {
        if name.isEmpty { throw .emptyComponent }
        if name == "." || name == ".." { throw .dotComponent(String(name)) }
        if name.utf8.contains(0) { throw .nul }
        if name.utf8.contains(UInt8(ascii: "/")) { throw .slashInName }
        if name.utf8.count > maxComponentBytes { throw .componentTooLong(name.utf8.count) }
    }

    public func appending(_ name: String) -> KeyPath { KeyPath(uncheckedComponents: components + [name]) }
    public static let root = KeyPath(uncheckedComponents: [])
}

public enum KeyError: Error, Equatable, CustomStringConvertible {
    case empty, emptyComponent, dotComponent(String), nul, slashInName, componentTooLong(Int), tooLong(Int)

    public var description: String {
        switch self {
        case .empty: "the key is empty"
        case .emptyComponent: "the key has an empty path component (\"//\" or a trailing \"/\")"
        case .dotComponent(let c): "the key has a \"\(c)\" path component"
        case .nul: "the key contains a NUL byte"
        case .slashInName: "a name cannot contain \"/\""
        case .componentTooLong(let n): "a path component is \(n) bytes long; the limit is \(KeyPath.maxComponentBytes)"
        case .tooLong(let n): "the key is \(n) bytes long; the limit is \(KeyPath.maxBytes)"
        }
    }
}
