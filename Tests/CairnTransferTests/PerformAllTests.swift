import CairnTransfer
import Foundation
import Testing

/// `HTTPTransfer.performAll`: small requests are in flight together, driven from the calling
/// thread, and each is answered or fails on its own.
@Suite struct PerformAllTests {
    /// A one-shot HTTP server that answers nothing until `expected` requests have all arrived:
    /// requests sent one after another would never be answered.
    final class MeetingServer: @unchecked Sendable {
        let port: Int
        init(expected: Int) throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard bound == 0, listen(fd, 8) == 0 else { throw CancellationError() }
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
            port = Int(UInt16(bigEndian: addr.sin_port))
            let listener = fd
            Thread.detachNewThread {
                var clients: [(Int32, String)] = []
                for _ in 0..<expected {
                    let c = accept(listener, nil, nil)
                    var tv = timeval(tv_sec: 5, tv_usec: 0)
                    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                    var request = [UInt8]()
                    var buf = [UInt8](repeating: 0, count: 65536)
                    // Headers, then the body its Content-Length announces.
                    while true {
                        let n = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress, 65536, 0) }
                        if n <= 0 { break }
                        request += buf[..<n]
                        let text = String(decoding: request, as: UTF8.self)
                        if let end = text.range(of: "\r\n\r\n") {
                            let length = text.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                            if text.utf8.distance(from: end.upperBound, to: text.utf8.endIndex) >= length { break }
                        }
                    }
                    let path = String(decoding: request, as: UTF8.self).split(separator: " ").dropFirst().first.map(String.init) ?? "?"
                    clients.append((c, path))
                }
                for (c, path) in clients {
                    let answer = Array("HTTP/1.1 200 OK\r\nContent-Length: \(path.utf8.count)\r\nConnection: close\r\n\r\n\(path)".utf8)
                    _ = answer.withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    close(c)
                }
                close(listener)
            }
        }
    }

    @Test func smallRequestsAreInFlightTogetherAndEachGetsItsOwnAnswer() throws {
        let server = try MeetingServer(expected: 2)
        let body = Array("four".utf8)
        let http = HTTPTransfer(connectTimeoutMs: 2000, stallTimeoutSeconds: 5)
        let answers = body.withUnsafeBytes { b in
            http.performAll([
                .init(method: "PUT", url: "http://127.0.0.1:\(server.port)/a", body: .bytes(b)),
                .init(method: "PUT", url: "http://127.0.0.1:1/unreachable", body: .bytes(b)),  // refused
                .init(method: "PUT", url: "http://127.0.0.1:\(server.port)/b", body: .bytes(b)),
            ])
        }
        #expect(answers.count == 3)
        #expect((try? answers[0].get())?.text == "/a", "\(answers[0])")
        #expect((try? answers[2].get())?.text == "/b", "\(answers[2])")
        guard case .failure = answers[1] else {
            Issue.record("a request to a closed port succeeded")
            return
        }
    }
}
