import CairnCore

/// What policy decisions know of a device: its states and the usage data the tracker stored.
public struct DeviceView: Sendable, Equatable {
    public var device: DeviceID
    public var host: HostID
    public var state: DeviceState
    public var hostStatus: HostStatus
    public var observed: ObservedState
    public var totalBytes: Int64
    public var freeBytes: Int64
    /// I/O utilisation 0–100 (percent busy), as the node reported it.
    public var ioUtilization: Double

    public init(device: DeviceID, host: HostID, state: DeviceState = .alive, hostStatus: HostStatus = .alive,
                observed: ObservedState = .writeable, totalBytes: Int64, freeBytes: Int64, ioUtilization: Double = 0) {
        self.device = device; self.host = host; self.state = state; self.hostStatus = hostStatus
        self.observed = observed; self.totalBytes = totalBytes; self.freeBytes = freeBytes; self.ioUtilization = ioUtilization
    }

    /// May receive new blobs now: state allows, host up, monitor saw it writeable.
    public var acceptsNewFiles: Bool {
        state.takesNewFiles && hostStatus.canWrite && observed == .writeable && totalBytes > 0
    }
    /// Its replicas may be served.
    public var servesReads: Bool { state.canRead && hostStatus.canRead && observed != .unreachable }
    public var usedFraction: Double { totalBytes > 0 ? Double(totalBytes - freeBytes) / Double(totalBytes) : 1 }
}

/// How copies of a blob must be spread.
public enum PlacementPolicy: String, Sendable, CaseIterable, Codable {
    /// Each copy on a different host (MogileFS's MultipleHosts).
    case hosts
    /// Each copy on a different device (MultipleDevices), for single-host setups.
    case devices
}
