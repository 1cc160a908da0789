/// A stored blob's id (a chunk, or a whole small file). Allocated by the tracker, never reused.
public typealias Fid = Int64
/// A device (one disk, a `dev<N>` folder on a storage node). Cluster-wide, never reused.
public typealias DeviceID = Int
/// A storage node.
public typealias HostID = Int
/// A namespace inode (file, directory or symlink).
public typealias Ino = Int64
/// A domain (top-level namespace).
public typealias DomainID = Int
/// A class within a domain.
public typealias ClassID = Int

/// MogileFS's on-disk layout for fids: the fid zero-padded to 10 digits and split
/// `B/MMM/TTT` = digits 1, 2–4, 5–7: fid 123 on device 1 → `/dev1/0/000/000/0000000123.fid`.
public enum FidLayout {
    public static func relativePath(fid: Fid) -> String {
        // Built from bytes: it is in every URL get_paths and file_layout return.
        var digits = Array(String(fid).utf8)
        if digits.count < 10 { digits = [UInt8](repeating: UInt8(ascii: "0"), count: 10 - digits.count) + digits }
        var out = [UInt8](); out.reserveCapacity(digits.count + 15)
        out.append(digits[0]); out.append(UInt8(ascii: "/"))
        out += digits[1...3]; out.append(UInt8(ascii: "/"))
        out += digits[4...6]; out.append(UInt8(ascii: "/"))
        out += digits; out += Array(".fid".utf8)
        return String(decoding: out, as: UTF8.self)
    }

    /// `/dev<N>/B/MMM/TTT/NNNNNNNNNN.fid`
    public static func devicePath(device: DeviceID, fid: Fid) -> String {
        "/dev\(device)/" + relativePath(fid: fid)
    }

    /// Parses `/dev<N>/B/MMM/TTT/NNNNNNNNNN.fid` back into (device, fid), accepting only the
    /// exact form `devicePath` produces. Anything else (traversal, other names) is nil.
    public static func parse(devicePath path: String) -> (device: DeviceID, fid: Fid)? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0].isEmpty, parts[1].hasPrefix("dev"),
              let device = DeviceID(parts[1].dropFirst(3)), device > 0,
              String(device) == parts[1].dropFirst(3) else { return nil }
        let name = parts[5]
        guard name.hasSuffix(".fid"), name.count >= 14, name.count <= 24 else { return nil }
        let digits = name.dropLast(4)
        guard digits.allSatisfy({ $0.isASCII && $0.isNumber }), let fid = Fid(digits), fid > 0 else { return nil }
        guard devicePath(device: device, fid: fid) == path else { return nil }
        return (device, fid)
    }
}
