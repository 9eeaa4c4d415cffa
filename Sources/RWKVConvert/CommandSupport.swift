import Foundation
import RWKVFormats

/// Exit status of rwkv-convert and rwkv-upgrade (rwkv-verify adds 1, outside tolerance: VerifyExitCode).
public enum ExitStatus {
    /// Bad input: unreadable, malformed or unsupported file, or bad arguments.
    public static let badInput: Int32 = 2
}

/// Runs a command body; an `RWKVError` becomes one line on stderr and exit status 2.
public func runReportingErrors(_ body: () throws -> Void) rethrows {
    do {
        try body()
    } catch let error as RWKVError {
        FileHandle.standardError.write(Data("error: \(error.description)\n".utf8))
        exit(ExitStatus.badInput)
    }
}

/// Pretty, key-sorted JSON for `--json` reports.
public func jsonString<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
