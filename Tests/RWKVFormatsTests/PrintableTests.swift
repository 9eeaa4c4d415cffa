import Testing
@testable import RWKVFormats

/// Strings from files on their way to a terminal (issue 9, class 5).
struct PrintableTests {
    @Test func controlCharactersAreEscapedAndOrdinaryTextIsNot() {
        #expect(Printable.escaped("blocks.0.att.key.weight") == "blocks.0.att.key.weight")
        #expect(Printable.escaped("caf\u{e9} \\x41") == "caf\u{e9} \\x41")
        #expect(Printable.escaped("a\nb\u{1b}]0;t\u{07}\u{7f}") == "a\\x0ab\\x1b]0;t\\x07\\x7f")
        #expect(Printable.escaped("\u{9b}2J") == "\\u{9b}2J")   // C1 CSI: some terminals obey it
    }

    @Test func longStringsAreShortenedWithTheirLength() {
        let name = String(repeating: "n", count: 100_000)
        let shown = Printable.escaped(name)
        #expect(shown == String(repeating: "n", count: 100) + "… (100000 bytes)")
        #expect(Printable.escaped(String(repeating: "n", count: 200)).count == 200)   // at the limit: whole
        #expect(Printable.line(name) == name)   // a whole message is never cut
    }

    @Test func errorMessagesEscapeWhatIsInterpolated() {
        let name = "a\nerror: forged"
        let e = RWKVError("x\u{1b}.pth", "tensor \(name) has \(3) values")
        #expect(e.message == "tensor a\\x0aerror: forged has 3 values")
        #expect(e.description == "x\\x1b.pth: tensor a\\x0aerror: forged has 3 values")
        let long = String(repeating: "z", count: 5000)
        #expect(RWKVError(nil, "no tensor named \(long)").message.count < 200)
    }
}
