import Foundation
import RWKVFormats

/// Exit codes shared by the three programs.
public enum ExitCode2 {
    /// Bad input: unreadable, malformed or unsupported file, or bad arguments.
    public static let badInput: Int32 = 2
}

/// Runs a command body; an `RWKVError` becomes one line on stderr and exit status 2.
public func runReportingErrors(_ body: () throws -> Void) rethrows {
    do {
        try body()
    } catch let error as RWKVError {
        FileHandle.standardError.write(Data("error: \(error.description)\n".utf8))
        exit(ExitCode2.badInput)
    }
}

/// Pretty, key-sorted JSON for `--json` reports.
public func jsonString<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
