/// A device's administrative state. Policies ask its capabilities, never its name.
public enum DeviceState: String, Sendable, CaseIterable, Codable {
    case alive, readonly, drain, down, dead

    /// Replicas on it may be read.
    public var canRead: Bool { self == .alive || self == .readonly || self == .drain }
    /// New files and new replicas may be placed on it.
    public var takesNewFiles: Bool { self == .alive }
    /// Blobs on it may be deleted now (otherwise deletes wait).
    public var canDelete: Bool { self == .alive || self == .drain }
    /// Its blobs should be moved elsewhere.
    public var shouldDrain: Bool { self == .drain }
    /// Gone for good: its replicas no longer count.
    public var isGone: Bool { self == .dead }

    /// dead is final: a dead device never comes back (its id is never reused either).
    public func canChange(to next: DeviceState) -> Bool { self != .dead || next == .dead }
}

/// A storage host's administrative state.
public enum HostStatus: String, Sendable, CaseIterable, Codable {
    case alive, readonly, down, dead
    public var canRead: Bool { self == .alive || self == .readonly }
    public var canWrite: Bool { self == .alive }
}

/// What the monitor last saw of a device.
public enum ObservedState: String, Sendable, Codable {
    case unknown, writeable, readable, unreachable, reachable
}
