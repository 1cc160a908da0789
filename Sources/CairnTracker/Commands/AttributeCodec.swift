import CairnMetadata
import CairnProtocol

enum AttributeCodec {
    static func wire(_ a: InodeAttributes) -> WireAttributes {
        WireAttributes(ino: a.ino, kind: a.kind.rawValue, mode: a.mode, uid: a.uid, gid: a.gid, size: a.size, atime: a.atime,
                       mtime: a.mtime, ctime: a.ctime, nlink: a.nlink, classID: a.classID)
    }
    static func pairs(_ a: InodeAttributes, prefix: String = "") -> [(String, String)] { wire(a).pairs(prefix: prefix) }
}
