import NIOCore

/// Folds a mount's attribute changes into the change of the same inode that follows them,
/// when they reach the tracker in one read: rsync's `utimes` and `chmod` of its temporary file
/// and then its rename become one `fs_rename` (one line to parse and answer, one write), as
/// two setattrs in a row become one. Only lines sent with `quiet=1` (a bare OK expected, see
/// `Dispatcher`) and no `callid` are folded, so each of them still gets its own reply (the
/// folded line's, except that setattrs folded into a rename that failed are told their change
/// was made, as it was); and only lines naming nothing beyond the keys below, so no argument
/// is dropped.
/// Lines are folded as bytes: their values are copied, still encoded.
///
/// Folding happens only when lines wait: under load, where it saves the most.
enum QuietFolding {
    /// The keys a folded rename carries its setattrs' changes under (`mode` names the rename's own mode).
    static let foldedPrefix = "attr_"

    private static let setattr = Array("fs_setattr ".utf8), rename = Array("fs_rename ".utf8)
    /// Keys every foldable line may carry, which two folded lines must agree on.
    private static let shared = ["ino", "quiet", "watcher", "durable"]
    private static let changes = ["mode", "uid", "gid", "atime", "mtime"]
    private static let setattrKeys = shared + changes + ["ctime"]
    private static let renameKeys = ["parent", "name", "newparent", "newname", "mode", "ino", "ctime", "quiet", "watcher", "durable"]
    private static let setattrKeyBytes = setattrKeys.map { Array($0.utf8) }, renameKeyBytes = renameKeys.map { Array($0.utf8) }

    /// Whether `first` is a line others may be folded into: a quiet setattr (checked in full by `fold`).
    private static func mayFold(_ first: ByteBuffer) -> Bool { first.readableBytesView.starts(with: setattr) }

    /// One line doing what `first` and then `second` do, or nil when they are not foldable.
    static func fold(_ first: ByteBuffer, _ second: ByteBuffer) -> ByteBuffer? {
        let secondIsRename = second.readableBytesView.starts(with: rename)
        guard mayFold(first), secondIsRename || second.readableBytesView.starts(with: setattr),
              let a = RawPairs(first, after: setattr.count, allowing: setattrKeyBytes),
              let b = RawPairs(second, after: secondIsRename ? rename.count : setattr.count, allowing: secondIsRename ? renameKeyBytes : setattrKeyBytes),
              a["quiet"].map({ $0.elementsEqual("1".utf8) }) == true, a["ino"]?.isEmpty == false,
              shared.allSatisfy({ k in a[k] == b[k] }) else { return nil }
        var out = ByteBuffer(bytes: secondIsRename ? rename : setattr)
        func add<Key: Collection<UInt8>>(_ key: Key, _ value: ArraySlice<UInt8>) {
            if out.readableBytes > (secondIsRename ? rename.count : setattr.count) { out.writeInteger(UInt8(ascii: "&")) }
            out.writeBytes(key)
            out.writeInteger(UInt8(ascii: "="))
            out.writeBytes(value)
        }
        if secondIsRename {
            for pair in b.pairs { add(b.name(pair), pair.value) }
            for k in changes { if let v = a[k] { add((foldedPrefix + k).utf8, v) } }
        } else {
            for k in setattrKeys { if let v = b[k] ?? a[k] { add(k.utf8, v) } }
        }
        return out
    }
}

/// A request line's arguments as they came (still encoded), when it names only known keys,
/// each once. Keys are compared as bytes: no strings are made per line.
private struct RawPairs {
    /// Each pair's key (an index into the allowed keys) and value, in line order.
    private(set) var pairs: [(key: Int, value: ArraySlice<UInt8>)] = []
    private let keys: [[UInt8]]

    init?(_ line: ByteBuffer, after prefix: Int, allowing keys: [[UInt8]]) {
        self.keys = keys
        var bytes = Array(line.readableBytesView.dropFirst(prefix))
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        // Anything after a space would be a part the tracker ignores (MogileFS's convention): not folded.
        guard !bytes.contains(UInt8(ascii: " ")) else { return nil }
        for pair in bytes.split(separator: UInt8(ascii: "&")) {
            let eq = pair.firstIndex(of: UInt8(ascii: "=")) ?? pair.endIndex
            guard let key = keys.firstIndex(where: { $0.elementsEqual(pair[..<eq]) }), !pairs.contains(where: { $0.key == key }) else { return nil }
            pairs.append((key, eq == pair.endIndex ? [] : pair[(eq + 1)...]))
        }
    }

    subscript(key: String) -> ArraySlice<UInt8>? {
        pairs.first { keys[$0.key].elementsEqual(key.utf8) }?.value
    }

    func name(_ pair: (key: Int, value: ArraySlice<UInt8>)) -> [UInt8] { keys[pair.key] }
}
