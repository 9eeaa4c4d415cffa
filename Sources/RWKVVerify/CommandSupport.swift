import Foundation
import RWKVFormats

/// `rwkv-verify` exit statuses.
public enum VerifyExitCode {
    /// Every check within tolerance.
    public static let pass: Int32 = 0
    /// A check outside tolerance.
    public static let outsideTolerance: Int32 = 1
    /// Unreadable or malformed input, or bad arguments.
    public static let badInput: Int32 = 2
}

/// Runs a verification and exits: 0 when it passed, 1 when it did not, 2 (one line on stderr)
/// on an `RWKVError`. Verification has three outcomes, so it does not share rwkv-convert's
/// two-outcome `runReportingErrors` (which lives in RWKVConvert; RWKVFormats stays Foundation-free).
public func runVerification(_ body: () throws -> Bool) -> Never {
    do {
        exit(try body() ? VerifyExitCode.pass : VerifyExitCode.outsideTolerance)
    } catch let error as RWKVError {
        reportBadInput(error.description)
    } catch {
        reportBadInput("\(error)")
    }
}

/// One line on stderr, exit status 2.
public func reportBadInput(_ message: String) -> Never {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    exit(VerifyExitCode.badInput)
}

/// Pretty, key-sorted JSON; NaN and infinities (a broken model's logits) become strings.
public func verifyJSON<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

/// Token sequences given on the command line.
public enum TokenList {
    /// "1,2,3" → [1, 2, 3].
    public static func parse(_ text: String) throws -> [Int] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        let values = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, values.count == parts.count, values.allSatisfy({ $0 >= 0 }) else {
            throw RWKVError(nil, "--tokens must be comma-separated non-negative integers, got \"\(text)\"")
        }
        return values
    }

    /// `count` token ids uniform in 0..<vocab, the same for the same seed on every machine
    /// (SplitMix64, not the system generator).
    public static func random(count: Int, vocab: Int, seed: UInt64) -> [Int] {
        var state = seed
        return (0..<count).map { _ in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Int(z % UInt64(max(vocab, 1)))
        }
    }
}
