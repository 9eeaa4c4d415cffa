import ArgumentParser
import Testing
import RWKVFormats
@testable import RWKVCommandLine

/// A stand-in command with the kinds of options the programs have.
private struct Tool: ParsableCommand {
    enum Kind: String, ExpressibleByArgument { case a, b }
    @Argument var file: String
    @Option var kind: Kind = .a
    @Option var threads: Int = 1
    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    }
}

struct CommandLineTests {
    /// README's promise: bad arguments are bad input like a bad file, exit 2, one line.
    @Test(arguments: [["x", "--kind", "q3_k"], ["x", "--threads", "0"], ["x", "--nope"], []])
    func argumentErrorsExitTwoOnOneLine(_ arguments: [String]) {
        do {
            _ = try Tool.parseAsRoot(arguments)
            Issue.record("parsed \(arguments)")
        } catch {
            let (status, line) = RWKVCommandLine.report(error, command: Tool.self)
            #expect(status == ExitStatus.badInput)
            #expect(line.hasPrefix("error: ") && !line.contains("\n") && line.count > 10)
        }
    }

    /// A file's error keeps its file name and has its control characters escaped.
    @Test func fileErrorIsOneEscapedLine() {
        let error = RWKVError("m\u{1b}]0;x.pth", "tensor \("a\nerror: forged") is bad")
        let (status, line) = RWKVCommandLine.report(error, command: Tool.self)
        #expect(status == 2)
        #expect(line == "error: m\\x1b]0;x.pth: tensor a\\x0aerror: forged is bad")
    }

    @Test func jsonEncodesNonFiniteAsStringsAndKeepsNamesExact() throws {
        struct R: Encodable { let name: String; let x: Double }
        let text = try RWKVCommandLine.json(R(name: "a\nb\u{1b}", x: .nan))
        #expect(text.contains("\"x\" : \"nan\""))
        #expect(text.contains(#""name" : "a\nb\u001b""#) || text.contains(#""name" : "a\nb\u001B""#))
    }

    @Test func progressLine() {
        let bar = ProgressBar(total: 200, label: "converting", enabled: false)   // not drawn: no terminal
        #expect(bar.line() == "converting [..............................]   0%")
        bar.update(50, detail: "blk.0.time_mix_key.weight")
        #expect(bar.line() == "converting [#######.......................]  25%  blk.0.time_mix_key.weight")
        #expect(bar.line(columns: 20) == "converting [#######.")
        bar.update(60, detail: "evil\u{1b}[2J\nname")
        #expect(bar.line().hasSuffix("evil\\x1b[2J\\x0aname"))
        bar.advance(by: 500)
        #expect(bar.line().hasPrefix("converting [##############################] 100%"))
    }

    /// rwkv-upgrade's bar: the time left from the pace so far, once a unit (a block) is done.
    @Test func timeLeft() {
        #expect(ProgressBar.timeLeft(done: 0, total: 24, elapsed: 30) == nil)
        #expect(ProgressBar.timeLeft(done: 6, total: 24, elapsed: 30) == "1m30s")
        #expect(ProgressBar.timeLeft(done: 23, total: 24, elapsed: 230) == "10s")
        #expect(ProgressBar.timeLeft(done: 24, total: 24, elapsed: 240) == nil)
        let bar = ProgressBar(total: 24, label: "upgrading", enabled: false, showsTimeLeft: true)
        bar.update(0, detail: "block 1/24")
        #expect(bar.line() == "upgrading [..............................]   0%  block 1/24")
    }
}
