import CairnClient
import CairnProtocol
import CairnTransfer
import Foundation

/// A failed file-system operation: the errno the kernel gets, and what to log.
public struct FSError: Error, CustomStringConvertible {
    public let errno: Int32
    public let message: String
    public init(_ errno: Int32, _ message: String = "") { self.errno = errno; self.message = message }
    public var description: String { "\(String(cString: strerror(errno))): \(message)" }

    /// Maps tracker error codes (MogileFS's and Cairn's) and transfer failures to errno.
    public static func from(_ error: any Error) -> FSError {
        switch error {
        case let e as FSError: return e
        case let e as ProtocolError:
            let code: Int32 = switch e.code {
            case "unknown_key", "unknown_inode", "unreg_domain", "domain_not_found", "no_key", "unknown_fid": ENOENT
            case "key_exists", "domain_exists", "xattr_exists", "class_exists": EEXIST
            case "not_a_directory": ENOTDIR
            case "is_a_directory": EISDIR
            case "not_empty", "domain_has_files", "domain_has_classes": ENOTEMPTY
            case "invalid_key", "bad_params", "invalid_rename", "not_a_symlink", "no_domain": EINVAL
            case "cross_domain": EXDEV
            case "no_xattr": ENODATA
            case "value_too_large": E2BIG
            case "no_devices": ENOSPC
            case "class_not_found", "unreg_class": EINVAL
            default: EIO
            }
            return FSError(code, "\(e.code): \(e.text)")
        case let e as UploadError: return FSError(e.noSpace ? ENOSPC : EIO, e.description)
        case let e as TransferError: return FSError(EIO, e.description)
        default: return FSError(EIO, "\(error)")
        }
    }
}
