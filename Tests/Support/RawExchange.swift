import Foundation

/// Sends raw bytes to a TCP port and returns everything answered until the peer closes or
/// `timeout` passes.
public func rawExchange(port: Int, _ bytes: [UInt8], timeout: Int = 5, closeWrite: Bool = true) throws -> String {
    let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(s) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = UInt16(port).bigEndian
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard rc == 0 else { throw TestFailure("connect to \(port) failed") }
    var tv = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    _ = bytes.withUnsafeBytes { send(s, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    if closeWrite { shutdown(s, Int32(SHUT_WR)) }
    var out = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { recv(s, $0.baseAddress, 65536, 0) }
        if n <= 0 { break }
        out += buf[..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

/// The tracker's `!stats` counters, by name.
public func trackerStats(port: Int) throws -> [String: Int] {
    var stats: [String: Int] = [:]
    for line in try rawExchange(port: port, Array("!stats\r\n".utf8)).split(separator: "\r\n") {
        let parts = line.split(separator: " ")
        if parts.count == 2, let v = Int(parts[1]) { stats[String(parts[0])] = v }
    }
    return stats
}
