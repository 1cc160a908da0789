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

    /// The key a client on node `node`'s machine signs receipts with when it writes blobs into
    /// that node's device folders itself (the node hands it over in its local-write grant).
    public static func localKey(node: String, secret: String) -> String {
        Signer.sign("local-receipts:\(node)", secret: secret)
    }

    /// True when the node signed the receipt with the cluster secret, or a client its
    /// local-write grant let write straight into its device folders did, with `localKey`.
    public static func isValid(_ receipt: String, devicePath: String, size: Int64, checksum: String?, secret: String, localKey: String) -> Bool {
        isValid(receipt, devicePath: devicePath, size: size, checksum: checksum, secret: secret)
            || isValid(receipt, devicePath: devicePath, size: size, checksum: checksum, secret: localKey)
    }
}
