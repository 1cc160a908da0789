@testable import CairnTransfer
import Testing

@Suite struct HeaderLineTests {
    func parse(_ s: String) -> HeaderLine? { Array(s.utf8).withUnsafeBytes { HeaderLine($0) } }

    @Test func namesAreLowerCasedAndValuesTrimmed() {
        let h = parse("X-Cairn-Checksum: \t MD5:abc \r\n")
        #expect(h?.name == "x-cairn-checksum")
        #expect(h?.value == "MD5:abc")
        #expect(parse("Content-Range: bytes 0-9/10\r\n")?.value == "bytes 0-9/10")
        // Only the first colon separates: values keep theirs.
        #expect(parse("Location: http://h:1/x\r\n")?.value == "http://h:1/x")
        #expect(parse("Empty:\r\n")?.value == "")
    }

    @Test func linesWithoutAColonAreNotHeaders() {
        #expect(parse("HTTP/1.1 200 OK\r\n") == nil)
        #expect(parse("\r\n") == nil)
    }
}
