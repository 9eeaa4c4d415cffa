import ArgumentParser
import Foundation
import RWKVFormats

/// Exit statuses of all three programs (README, "Exit codes").
public enum ExitStatus {
    public static let success: Int32 = 0
    /// rwkv-verify: a check outside tolerance.
    public static let outsideTolerance: Int32 = 1
    /// Bad input: an unreadable, malformed, unsupported or unusable file, or bad arguments.
    public static let badInput: Int32 = 2
    // Killed by a signal (Ctrl-C, SIGTERM, Ctrl-\): temporary files removed, then the signal's
    // default action, so the shell reports 128 + the signal number (130, 143, 131).
}

/// Thrown by a command that ran to the end but must exit with a status other than 0
/// (rwkv-verify outside tolerance, after printing its report).
public struct CommandOutcome: Error {
    public let status: Int32
    public init(status: Int32) { self.status = status }
}

/// The shared shell of rwkv-convert, rwkv-upgrade and rwkv-verify: parse, run, and turn every
/// error into one escaped line on stderr and a status from `ExitStatus`.
public enum RWKVCommandLine {
    /// Parses the arguments, runs the command and exits.
    public static func main(_ command: any ParsableCommand.Type, arguments: [String]? = nil) -> Never {
        CleanupOnSignal.shared.installHandlers()
        do {
            var parsed = try command.parseAsRoot(arguments ?? Self.arguments())
            try parsed.run()
            exit(ExitStatus.success)
        } catch {
            if let outcome = error as? CommandOutcome { exit(outcome.status) }
            if !(error is RWKVError), command.exitCode(for: error) == .success {
                command.exit(withError: error)   // --help, --version: ArgumentParser prints them
            }
            let (status, line) = report(error, command: command)
            FileHandle.standardError.write(Data((line + "\n").utf8))
            exit(status)
        }
    }

    /// The arguments with their bytes kept: a file name that is not UTF-8 still opens (BytePath).
    static func arguments() -> [String] {
        (1..<Int(CommandLine.argc)).compactMap { i in CommandLine.unsafeArgv[i].map { BytePath.decode(cString: $0) } }
    }

    /// The status and the one line (without newline) an error ends a program with.
    /// Argument errors and bad files alike are bad input (2); ArgumentParser's several lines
    /// (usage, help hint) are cut to the first, which says what is wrong.
    public static func report(_ error: Error, command: any ParsableCommand.Type) -> (Int32, String) {
        if let outcome = error as? CommandOutcome { return (outcome.status, "") }
        let message: String
        if let e = error as? RWKVError {
            message = e.description
        } else {
            // ArgumentParser's message: what is wrong, perhaps a list of choices ("  - f16"), then
            // help and usage lines. Kept: what is wrong and the choices, on one line.
            let lines = command.message(for: error).split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            let wanted = lines.prefix { !$0.hasPrefix("Help:") && !$0.hasPrefix("Usage:") && !$0.hasPrefix("See '") }
            let choices = wanted.filter { $0.hasPrefix("- ") }.map { $0.dropFirst(2) }
            var first = wanted.first { !$0.hasPrefix("- ") } ?? "bad arguments"
            if first.hasPrefix("Error: ") { first = String(first.dropFirst(7)) }
            message = choices.isEmpty ? first : first + " " + choices.joined(separator: ", ")
        }
        return (ExitStatus.badInput, errorLine(message))
    }

    /// "error: MESSAGE", with control characters escaped so it stays one line.
    public static func errorLine(_ message: String) -> String { "error: " + Printable.line(message) }

    /// "warning: MESSAGE" on stderr, escaped to one line.
    public static func warn(_ message: String) {
        FileHandle.standardError.write(Data(("warning: " + Printable.line(message) + "\n").utf8))
    }

    /// Pretty, key-sorted JSON for `--json`; NaN and infinities (a broken model's logits)
    /// become the strings "nan", "inf", "-inf". Strings from files stay exact (JSON escapes them).
    public static func json<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
