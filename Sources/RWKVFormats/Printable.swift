import Foundation
/// Strings that come from files (tensor names, metadata, paths) made safe for a terminal or a
/// log: a newline in a name must not forge a second `error:` line, an escape sequence must not
/// clear the screen or set the window title, and a 200 KB name must not flood the output.
/// JSON output does not use this: the JSON encoder escapes what JSON needs and stays exact.
public enum Printable {
    /// Longest string shown whole; longer ones keep their start and say their length.
    public static let defaultLimit = 200

    /// Control characters (C0, DEL, C1) as `\xNN` (C1 as `\u{NN}`); strings over `limit`
    /// characters cut to their first `limit / 2` with "… (N bytes)" appended. Other text,
    /// backslashes included, is unchanged, so ordinary names print as they are.
    public static func escaped(_ s: String, limit: Int = defaultLimit) -> String {
        var needsWork = false
        var count = 0
        for u in s.unicodeScalars {
            count += 1
            if isControl(u) || BytePath.rawByte(u) != nil || count > limit { needsWork = true; break }
        }
        guard needsWork else { return s }
        var out = ""
        var shown = 0
        let keep = count > limit ? max(limit / 2, 1) : Int.max
        for u in s.unicodeScalars {
            if shown >= keep {
                out += "… (\(s.utf8.count) bytes)"
                return out
            }
            shown += 1
            if let b = BytePath.rawByte(u) {
                out += "\\x" + hex2(UInt32(b))   // a file-name byte that is not UTF-8
            } else if isControl(u) {
                out += u.value < 0x80 ? "\\x" + hex2(u.value) : "\\u{" + hex2(u.value) + "}"
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out
    }

    /// One line: like `escaped` with no length limit (a whole error message stays whole).
    public static func line(_ s: String) -> String { escaped(s, limit: Int.max) }

    public static func isControl(_ u: Unicode.Scalar) -> Bool {
        u.value < 0x20 || (0x7f...0x9f).contains(u.value)
    }

    private static func hex2(_ v: UInt32) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(v >> 4) & 15], digits[Int(v) & 15]])
    }
}

/// Interpolating a file's string into an error message escapes and shortens it
/// (`"tensor \(name) ..."` in an `RWKVError` cannot carry a raw newline or a 200 KB name).
public struct ErrorMessage: ExpressibleByStringInterpolation, Sendable, Equatable, CustomStringConvertible {
    public let description: String

    public init(stringLiteral value: String) { description = value }
    public init(stringInterpolation: Interpolation) { description = stringInterpolation.text }
    /// An already-built message (another error's): escaped, never shortened.
    public init(_ text: String) { description = Printable.line(text) }
    private init(built: String) { description = built }

    /// Long messages are written as literals joined with `+`.
    public static func + (a: ErrorMessage, b: ErrorMessage) -> ErrorMessage { ErrorMessage(built: a.description + b.description) }

    public struct Interpolation: StringInterpolationProtocol {
        var text = ""
        public init(literalCapacity: Int, interpolationCount: Int) { text.reserveCapacity(literalCapacity) }
        public mutating func appendLiteral(_ literal: String) { text += literal }
        /// Strings (names, keys, values) are escaped and shortened.
        public mutating func appendInterpolation(_ s: String) { text += Printable.escaped(s) }
        public mutating func appendInterpolation(_ s: Substring) { text += Printable.escaped(String(s)) }
        /// Another error's message: escaped, kept whole.
        public mutating func appendInterpolation(_ e: RWKVError) { text += Printable.line(e.description) }
        public mutating func appendInterpolation(_ m: ErrorMessage) { text += m.description }
        /// Anything else (numbers, shapes, enums) through its description, escaped and shortened.
        public mutating func appendInterpolation<T>(_ value: T) { text += Printable.escaped(String(describing: value), limit: 1000) }
    }
}

/// "1.5 MB" style sizes for people.
public func formatBytes(_ n: Int) -> String {
    let units = ["bytes", "KB", "MB", "GB", "TB"]
    var v = Double(n), u = 0
    while v >= 1000, u < units.count - 1 { v /= 1000; u += 1 }
    return u == 0 ? "\(n) bytes" : String(format: "%.1f %@", v, units[u])
}
