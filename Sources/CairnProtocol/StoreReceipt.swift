import CairnCore

/// Proof from a storage node that it durably stored a blob: HMAC-SHA256, with the cluster
/// secret, over the device path, the size and the checksum. The tracker accepts a copy with a
/// valid receipt without asking the node again (a HEAD per copy per chunk otherwise).
public enum StoreReceipt {
    public static func make(devicePath: String, size: Int64, checksum: String?, secret: String) -> String {
        Signer.sign("receipt:\(devicePath):\(size):\(checksum ?? "-")", secret: secret)
    }

    public static func isValid(_ receipt: String, devicePath: String, size: Int64, checksum: String?, secret: String) -> Bool {
        make(devicePath: devicePath, size: size, checksum: checksum, secret: secret) == receipt
    }
}
