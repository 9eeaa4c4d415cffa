/// A small strict JSON parser for file headers. Unlike Foundation's parsers it refuses
/// duplicate object keys (compared as bytes, like the safetensors reference), invalid UTF-8 and
/// trailing garbage, and caps nesting depth and array length (headers hold short arrays:
/// shapes and offsets; each parsed value costs tens of bytes, so a long array of small numbers
/// would take twenty times the header's size). `parseMembers` hands out a top-level object's
/// members one at a time, so a reader keeps what it makes of them, not the whole tree.
public indirect enum JSONValue: Equatable, Sendable {
    case object([(String, JSONValue)])
    case array([JSONValue])
    case string(String)
    case integer(Int64)
    case number(Double)
    case bool(Bool)
    case null

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.object(x), .object(y)): return x.map(\.0) == y.map(\.0) && x.map(\.1) == y.map(\.1)
        case let (.array(x), .array(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.integer(x), .integer(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }

    public subscript(key: String) -> JSONValue? {
        guard case let .object(members) = self else { return nil }
        return members.first { $0.0 == key }?.1
    }

    public static func parse(_ bytes: [UInt8]) throws(JSONError) -> JSONValue {
        var p = JSONParser(bytes: bytes)
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        guard p.i == bytes.count else { throw JSONError("unexpected data after the JSON value at byte \(p.i)") }
        return v
    }

    /// Parses `bytes` as one JSON object and calls `member` with each key and value in order.
    public static func parseMembers(_ bytes: [UInt8], _ member: (String, JSONValue) throws -> Void) throws {
        var p = JSONParser(bytes: bytes)
        p.skipSpace()
        guard p.i < bytes.count, bytes[p.i] == UInt8(ascii: "{") else { throw JSONError("not a JSON object") }
        try p.object(depth: 0, member: member)
        p.skipSpace()
        guard p.i == bytes.count else { throw JSONError("unexpected data after the JSON value at byte \(p.i)") }
    }

    /// Longest array accepted (shapes have at most a few dimensions).
    public static let maxArrayItems = 64
}

public struct JSONError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

private struct JSONParser {
    let bytes: [UInt8]
    var i = 0
    static let maxDepth = 64

    mutating func skipSpace() {
        while i < bytes.count {
            let c = bytes[i]
            guard c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d else { return }
            i += 1
        }
    }

    mutating func value(depth: Int) throws(JSONError) -> JSONValue {
        guard depth < Self.maxDepth else { throw JSONError("nesting deeper than \(Self.maxDepth) levels") }
        guard i < bytes.count else { throw JSONError("unexpected end of JSON") }
        switch bytes[i] {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default: return try number()
        }
    }

    mutating func literal(_ word: String) throws(JSONError) {
        let w = Array(word.utf8)
        guard i + w.count <= bytes.count, Array(bytes[i..<i + w.count]) == w else {
            throw JSONError("invalid JSON token at byte \(i)")
        }
        i += w.count
    }

    mutating func object(depth: Int) throws(JSONError) -> JSONValue {
        var members: [(String, JSONValue)] = []
        do {
            try object(depth: depth) { members.append(($0, $1)) }
        } catch let e as JSONError {
            throw e
        } catch {
            throw JSONError("\(error)")
        }
        return .object(members)
    }

    mutating func object(depth: Int, member: (String, JSONValue) throws -> Void) throws {
        i += 1
        var seen = Set<ExactName>()
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return }
        while true {
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw JSONError("expected a key at byte \(i)") }
            let key = try string()
            guard seen.insert(ExactName(key)).inserted else { throw JSONError("duplicate key \"\(Printable.escaped(key))\"") }
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw JSONError("expected ':' at byte \(i)") }
            i += 1
            skipSpace()
            try member(key, try value(depth: depth + 1))
            skipSpace()
            guard i < bytes.count else { throw JSONError("unexpected end of JSON") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "}") { i += 1; return }
            throw JSONError("expected ',' or '}' at byte \(i)")
        }
    }

    mutating func array(depth: Int) throws(JSONError) -> JSONValue {
        i += 1
        var items: [JSONValue] = []
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
        while true {
            skipSpace()
            guard items.count < JSONValue.maxArrayItems else { throw JSONError("an array holds more than \(JSONValue.maxArrayItems) values") }
            items.append(try value(depth: depth + 1))
            skipSpace()
            guard i < bytes.count else { throw JSONError("unexpected end of JSON") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            throw JSONError("expected ',' or ']' at byte \(i)")
        }
    }

    mutating func string() throws(JSONError) -> String {
        i += 1
        var out: [UInt8] = []
        while true {
            guard i < bytes.count else { throw JSONError("unterminated string") }
            let c = bytes[i]
            i += 1
            if c == UInt8(ascii: "\"") { break }
            if c < 0x20 { throw JSONError("control character in string at byte \(i - 1)") }
            if c != UInt8(ascii: "\\") { out.append(c); continue }
            guard i < bytes.count else { throw JSONError("unterminated escape") }
            let e = bytes[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0c)
            case UInt8(ascii: "n"): out.append(0x0a)
            case UInt8(ascii: "r"): out.append(0x0d)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var code = try hex4()
                if (0xD800..<0xDC00).contains(code) {
                    guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                        throw JSONError("unpaired surrogate in string")
                    }
                    i += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw JSONError("unpaired surrogate in string") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(code) {
                    throw JSONError("unpaired surrogate in string")
                }
                out.append(contentsOf: Array(String(Character(Unicode.Scalar(code)!)).utf8))
            default: throw JSONError("invalid escape \\\(Character(Unicode.Scalar(e)))")
            }
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw JSONError("string is not valid UTF-8") }
        return s
    }

    mutating func hex4() throws(JSONError) -> UInt32 {
        guard i + 4 <= bytes.count else { throw JSONError("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[i]
            i += 1
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw JSONError("bad hex digit in \\u escape")
            }
            v = v * 16 + d
        }
        return v
    }

    mutating func number() throws(JSONError) -> JSONValue {
        let start = i
        if i < bytes.count, bytes[i] == UInt8(ascii: "-") { i += 1 }
        var isInteger = true
        while i < bytes.count {
            let c = bytes[i]
            if (0x30...0x39).contains(c) { i += 1; continue }
            if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") || c == UInt8(ascii: "+") || c == UInt8(ascii: "-") {
                isInteger = false; i += 1; continue
            }
            break
        }
        let text = String(decoding: bytes[start..<i], as: UTF8.self)
        guard !text.isEmpty, text != "-" else { throw JSONError("invalid JSON token at byte \(start)") }
        if isInteger {
            // Integers that do not fit Int64 are an error, not a silent rounding to Double.
            guard let v = Int64(text) else { throw JSONError("integer \(text) out of range") }
            return .integer(v)
        }
        guard let d = Double(text) else { throw JSONError("invalid number \(text)") }
        return .number(d)
    }
}
