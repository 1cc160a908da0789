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
    /// Reads bytes, not characters: every blob request on a node and every local blob write
    /// of a mount parses one.
    public static func parse(devicePath path: String) -> (device: DeviceID, fid: Fid)? {
        let b = path.utf8
        guard b.count <= 64, b.starts(with: "/dev".utf8), let nameStart = b.lastIndex(of: UInt8(ascii: "/")) else { return nil }
        var i = b.index(b.startIndex, offsetBy: 4)
        guard let device = number(b, &i, maxDigits: 9), device > 0, i != b.endIndex, b[i] == UInt8(ascii: "/") else { return nil }
        var n = b.index(after: nameStart)
        guard let fid = number(b, &n, maxDigits: 19), fid > 0, b[n...].elementsEqual(".fid".utf8) else { return nil }
        // The exact form: no leading zeros in the device, the fid's own B/MMM/TTT folders.
        guard devicePath(device: Int(device), fid: fid) == path else { return nil }
        return (Int(device), fid)
    }

    /// The decimal number at `i` (1 to `maxDigits` digits, no overflow); `i` moves past it.
    private static func number(_ b: String.UTF8View, _ i: inout String.UTF8View.Index, maxDigits: Int) -> Int64? {
        var value: Int64 = 0, digits = 0
        while i != b.endIndex, b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") {
            digits += 1
            guard digits <= maxDigits else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int64(b[i] - UInt8(ascii: "0")))
            guard !o1, !o2 else { return nil }
            value = a
            i = b.index(after: i)
        }
        return digits > 0 ? value : nil
    }
}
