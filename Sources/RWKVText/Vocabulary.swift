import Foundation
import RWKVFormats

/// The tokenizer written into the GGUF file, as llama.cpp's `_set_vocab_rwkv_world`
/// (convert_hf_to_gguf.py) writes it and `llm_tokenizer_rwkv` (llama-vocab.cpp) reads it:
/// `tokenizer.ggml.model = "rwkv"`, one token text per embedding row, each the token's bytes
/// escaped like Python's `repr(bytes)[2:-1]` (llama.cpp unescapes \t \n \r \xhh and \<char>),
/// token 0 `<s>` (control), then the file's tokens (normal), then `[PAD<i>]` (unused) up to the
/// number of embedding rows.
public struct Vocabulary: Sendable {
    public enum Kind: Sendable, Equatable {
        /// A vocabulary file in the World format (`<id> <python literal> <byte length>`).
        case file(String)
        /// No vocabulary file: 256 single-byte tokens.
        case bytes
    }

    public let kind: Kind
    /// Token texts, escaped for GGUF, one per embedding row.
    public let tokens: GGUFStringList
    /// gguf-py `TokenType` values: 1 normal, 3 control, 5 unused.
    public let types: [Int32]
    /// How many tokens came from the vocabulary (the rest are placeholders).
    public let realTokenCount: Int

    public static let normal: Int32 = 1, control: Int32 = 3, unused: Int32 = 5

    /// The bundled World vocabulary file (rwkv_vocab_v20230424.txt, from the `rwkv` package), in
    /// the resource bundle SwiftPM puts next to the program. Looked up by hand rather than with
    /// `Bundle.module`, whose accessor stops the program when the bundle is missing (a binary
    /// copied without it): we want an error that says to use --vocab instead.
    public static var bundledWorldPath: String? {
        let relative = "rwkv-tools_RWKVText.resources/rwkv_vocab_v20230424.txt"
        let places = [Bundle.main.executableURL?.deletingLastPathComponent(), Bundle.main.resourceURL, Bundle.main.bundleURL]
        return places.compactMap { $0?.appendingPathComponent(relative).path }
            .first { FileManager.default.isReadableFile(atPath: $0) }
    }

    /// 65529 tokens plus id 0: the number of embedding rows of every World model.
    public static let worldRows = 65536

    /// The vocabulary a model gets when none is given: the World one for 65536 rows, bytes otherwise.
    public static func automatic(rows: Int) throws -> Vocabulary {
        guard rows == worldRows else { return bytes(rows: rows) }
        guard let path = bundledWorldPath else {
            throw RWKVError(nil, "the bundled World vocabulary (rwkv-tools_RWKVText.resources) is not next to the program; give it with --vocab rwkv_vocab_v20230424.txt")
        }
        return try world(path: path, rows: rows)
    }

    /// Reads a World-format vocabulary file.
    public static func world(path: String, rows: Int) throws -> Vocabulary {
        let file = try InputFile(path)
        guard file.size <= 64 << 20 else { throw RWKVError(path, "vocabulary file is larger than 64 MiB") }
        return try world(contents: try file.read(at: 0, count: file.size), path: path, rows: rows)
    }

    public static func world(contents: [UInt8], path: String, rows: Int) throws -> Vocabulary {
        var tokens = GGUFStringList()
        // Escaped tokens take about as many bytes as their lines, plus a length each.
        tokens.reserveCapacity(items: rows, bytes: contents.count + 8 * rows)
        tokens.append("<s>")
        try WorldFile.forEachToken(in: contents, path: path) { appendEscaped($0, to: &tokens) }
        guard tokens.count <= rows else {
            throw RWKVError(path, "vocabulary has \(tokens.count) tokens (with id 0) but the model's embedding has only \(rows) rows")
        }
        return Vocabulary(kind: .file(path), tokens: &tokens, controlTokens: 1, rows: rows)
    }

    /// The bytes of every token of a World-format vocabulary file, in id order (ids 1, 2, ...;
    /// id 0, end-of-text, has no line), checked as `WorldFile` checks them.
    public static func worldTokens(contents: [UInt8], path: String) throws -> [[UInt8]] {
        var tokens: [[UInt8]] = []
        try WorldFile.forEachToken(in: contents, path: path) { tokens.append(Array($0)) }
        return tokens
    }

    /// 256 byte tokens (id i is byte i), then placeholders up to `rows` (or fewer bytes when
    /// the model has fewer rows).
    public static func bytes(rows: Int) -> Vocabulary {
        var tokens = GGUFStringList()
        for b in 0..<min(256, rows) { [UInt8(b)].withUnsafeBufferPointer { appendEscaped($0, to: &tokens) } }
        return Vocabulary(kind: .bytes, tokens: &tokens, controlTokens: 0, rows: rows)
    }

    /// `tokens`, the first `controlTokens` of them control tokens and the rest normal, then
    /// placeholders up to `rows`. (`inout`: the placeholders go on the caller's list, not on a
    /// copy of its megabyte of text.)
    private init(kind: Kind, tokens: inout GGUFStringList, controlTokens: Int, rows: Int) {
        let real = tokens.count
        for i in real..<max(real, rows) { tokens.append("[PAD\(i)]") }
        var types = [Int32](repeating: Self.normal, count: tokens.count)
        types.replaceSubrange(0..<controlTokens, with: repeatElement(Self.control, count: controlTokens))
        types.replaceSubrange(real..., with: repeatElement(Self.unused, count: tokens.count - real))
        self.kind = kind
        self.tokens = tokens
        self.types = types
        realTokenCount = real
    }

    /// Python's `repr(bytes)[2:-1]`: printable ASCII as is, `\\`, `\t`, `\n`, `\r`, other bytes
    /// `\xhh` (lowercase); the quote Python picks is escaped (`'` unless the bytes hold `'`
    /// and no `"`).
    public static func escape(_ bytes: [UInt8]) -> String {
        bytes.withUnsafeBufferPointer { bytes in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 4 * bytes.count + 1) { out in
                String(decoding: out[..<escape(bytes, into: out)], as: UTF8.self)
            }
        }
    }

    private static func appendEscaped(_ bytes: UnsafeBufferPointer<UInt8>, to list: inout GGUFStringList) {
        list.append(maxCount: 4 * bytes.count) { escape(bytes, into: $0) }
    }

    /// Writes `escape(bytes)` into `out` (at least 4 bytes per input byte) and returns its length.
    private static func escape(_ bytes: UnsafeBufferPointer<UInt8>, into out: UnsafeMutableBufferPointer<UInt8>) -> Int {
        let quote: UInt8 = bytes.contains(0x27) && !bytes.contains(0x22) ? 0x22 : 0x27
        let hex: StaticString = "0123456789abcdef"
        var n = 0
        func put(_ b: UInt8) { out[n] = b; n += 1 }
        for b in bytes {
            if b >= 0x20, b < 0x7f, b != quote, b != 0x5c { put(b); continue }   // most bytes: tested first
            switch b {
            case quote, 0x5c: put(0x5c); put(b)
            case 0x09: put(0x5c); put(UInt8(ascii: "t"))
            case 0x0a: put(0x5c); put(UInt8(ascii: "n"))
            case 0x0d: put(0x5c); put(UInt8(ascii: "r"))
            default: put(0x5c); put(UInt8(ascii: "x")); put(hex.utf8Start[Int(b >> 4)]); put(hex.utf8Start[Int(b & 15)])
            }
        }
        return n
    }

    /// The GGUF metadata: model, tokens, token types and the special ids llama.cpp's converter
    /// sets for World models (bos = eos = 0, eot = 261 "\n\n", chat template "rwkv-world").
    public var metadata: [GGUFKeyValue] {
        var kv: [GGUFKeyValue] = [
            GGUFKeyValue(GGUFKey.Tokenizer.model, .string("rwkv")),
            GGUFKeyValue(GGUFKey.Tokenizer.tokens, .strings(tokens)),
            GGUFKeyValue(GGUFKey.Tokenizer.tokenType, .int32s(types)),
        ]
        if case .file = kind, realTokenCount > 261 {
            kv += [GGUFKeyValue(GGUFKey.Tokenizer.bosID, .uint32(0)),
                   GGUFKeyValue(GGUFKey.Tokenizer.eosID, .uint32(0)),
                   GGUFKeyValue(GGUFKey.Tokenizer.eotID, .uint32(261)),
                   GGUFKeyValue(GGUFKey.Tokenizer.chatTemplate, .string("rwkv-world"))]
        }
        return kv
    }

    public var summary: String {
        switch kind {
        case .file(let p):
            return "\(realTokenCount) tokens from \((p as NSString).lastPathComponent)"
                + (tokens.count > realTokenCount ? " + \(tokens.count - realTokenCount) placeholders" : "")
        case .bytes:
            return "\(realTokenCount) byte tokens" + (tokens.count > realTokenCount ? " + \(tokens.count - realTokenCount) placeholders" : "")
        }
    }
}

/// Reading a World-format vocabulary file (`<id> <python literal> <byte length>` per line), each
/// line checked: ids in order from 1, the literal parsed, its byte length matched. Errors name
/// the file and line.
private struct WorldFile {
    let path: String
    private var lineNumber = 0
    private var tokenCount = 0

    /// Calls `body` with the bytes of every token of `contents`, in id order.
    static func forEachToken(in contents: [UInt8], path: String, _ body: (UnsafeBufferPointer<UInt8>) -> Void) throws {
        var reader = WorldFile(path: path)
        try contents.withUnsafeBufferPointer { try forEachLine(in: $0) { try reader.read(line: $0, body) } }
    }

    /// Calls `body` with each line of `bytes` (without its "\n"; the last one may have none).
    private static func forEachLine(in bytes: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) throws -> Void) rethrows {
        guard let base = bytes.baseAddress else { return }
        var start = 0
        while start < bytes.count {
            guard let newline = memchr(base + start, 0x0a, bytes.count - start) else {
                return try body(UnsafeBufferPointer(rebasing: bytes[start...]))
            }
            let end = UnsafeRawPointer(base).distance(to: newline)
            try body(UnsafeBufferPointer(rebasing: bytes[start..<end]))
            start = end + 1
        }
    }

    /// Reads one line, passing its token, if it has one, to `body`. Plain literals (see
    /// `PythonLiteral.plainBody`), most of a World file, are passed straight from the line;
    /// the rest go through `PythonLiteral.parse`.
    mutating func read(line: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) -> Void) throws {
        lineNumber += 1
        let line = line.last == UInt8(ascii: "\r") ? UnsafeBufferPointer(rebasing: line.dropLast()) : line
        if line.isEmpty { return }
        guard let firstSpace = line.firstIndex(of: 0x20), let lastSpace = line.lastIndex(of: 0x20), firstSpace < lastSpace,
              let id = Self.integer(UnsafeBufferPointer(rebasing: line[..<firstSpace])),
              let length = Self.integer(UnsafeBufferPointer(rebasing: line[(lastSpace + 1)...])) else {
            throw fail("expected \"<id> <python literal> <byte length>\"")
        }
        guard id == tokenCount + 1 else { throw fail("token id \(id) out of order (expected \(tokenCount + 1))") }
        func deliver(_ token: UnsafeBufferPointer<UInt8>) throws {
            guard token.count == length else { throw fail("token is \(token.count) bytes, the line says \(length)") }
            body(token)
        }
        let literal = UnsafeBufferPointer(rebasing: line[(firstSpace + 1)..<lastSpace])
        if let plain = PythonLiteral.plainBody(literal) {
            try deliver(plain)
        } else {
            let token: [UInt8]
            do { token = try PythonLiteral.parse(Array(literal)) } catch let e as PythonLiteral.Error {
                throw fail(e.message)
            }
            try token.withUnsafeBufferPointer { try deliver($0) }
        }
        tokenCount += 1
    }

    private func fail(_ why: String) -> RWKVError { RWKVError(path, "line \(lineNumber): \(why)") }

    /// The decimal integer `text` holds, as `Int(String)` reads it, without making a String for
    /// the usual case of a few digits.
    private static func integer(_ text: UnsafeBufferPointer<UInt8>) -> Int? {
        var value = 0
        for c in text {
            let digit = c &- UInt8(ascii: "0")
            guard digit < 10, text.count <= 18 else {   // signs, overflow, junk: the general rules
                return Int(String(decoding: text, as: UTF8.self))
            }
            value = value &* 10 &+ Int(digit)           // 18 digits cannot overflow
        }
        return text.isEmpty ? nil : value
    }
}

/// A Python string or bytes literal as `repr` writes it ('...', "...", b'...', b"..."), parsed
/// to bytes (str literals encoded as UTF-8). Escapes: \\ \' \" \n \t \r \a \b \f \v \0-\777
/// \xhh \uhhhh \Uhhhhhhhh (the last two in str only); an unknown escape keeps its backslash,
/// as Python does.
public enum PythonLiteral {
    public struct Error: Swift.Error, Equatable { public let message: String }

    /// The body of a literal that needs no decoding – quoted, no backslash or quote inside,
    /// ASCII if it is a bytes literal – which is then its value; nil for any other text.
    /// `parse` gives the same bytes for these.
    public static func plainBody(_ text: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8>? {
        let isBytes = text.first == UInt8(ascii: "b")
        let quoted = UnsafeBufferPointer(rebasing: text[(isBytes ? 1 : 0)...])
        guard quoted.count >= 2, let q = quoted.first, q == 0x27 || q == 0x22, quoted.last == q else { return nil }
        let body = UnsafeBufferPointer(rebasing: quoted[1..<(quoted.count - 1)])
        for c in body where c == q || c == 0x5c || (isBytes && c >= 0x80) { return nil }
        return body
    }

    public static func parse(_ text: [UInt8]) throws -> [UInt8] {
        var s = text[...]
        let isBytes = s.first == UInt8(ascii: "b")
        if isBytes { s = s.dropFirst() }
        guard s.count >= 2, let q = s.first, q == 0x27 || q == 0x22, s.last == q else {
            throw Error(message: "not a quoted Python literal: \(String(decoding: text.prefix(40), as: UTF8.self))")
        }
        let body = Array(s.dropFirst().dropLast())
        var out: [UInt8] = []
        var i = 0
        func hexValue(_ digits: Int) throws -> UInt32 {
            guard i + digits <= body.count else { throw Error(message: "truncated escape") }
            var v: UInt32 = 0
            for d in body[i..<i + digits] {
                guard let h = hexDigit(d) else { throw Error(message: "bad hex digit in escape") }
                v = v << 4 | h
            }
            i += digits
            return v
        }
        func appendScalar(_ v: UInt32) throws {
            guard let u = Unicode.Scalar(v) else { throw Error(message: "escape \(v) is not a Unicode scalar") }
            out += Array(String(Character(u)).utf8)
        }
        while i < body.count {
            let c = body[i]
            i += 1
            if c == q { throw Error(message: "unescaped quote inside the literal") }
            guard c == 0x5c else {
                if isBytes, c >= 0x80 { throw Error(message: "non-ASCII character in a bytes literal") }
                out.append(c)
                continue
            }
            guard i < body.count else { throw Error(message: "literal ends with a backslash") }
            let e = body[i]
            i += 1
            switch e {
            case 0x5c, 0x27, 0x22: out.append(e)
            case UInt8(ascii: "n"): out.append(0x0a)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0d)
            case UInt8(ascii: "a"): out.append(0x07)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0c)
            case UInt8(ascii: "v"): out.append(0x0b)
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                var v = UInt32(e - 0x30)
                var n = 1
                while n < 3, i < body.count, (0x30...0x37).contains(body[i]) { v = v * 8 + UInt32(body[i] - 0x30); i += 1; n += 1 }
                if isBytes { out.append(UInt8(truncatingIfNeeded: v)) } else { try appendScalar(v) }
            case UInt8(ascii: "x"):
                let v = try hexValue(2)
                if isBytes { out.append(UInt8(v)) } else { try appendScalar(v) }
            case UInt8(ascii: "u") where !isBytes: try appendScalar(try hexValue(4))
            case UInt8(ascii: "U") where !isBytes: try appendScalar(try hexValue(8))
            default: out += [0x5c, e]
            }
        }
        return out
    }

    private static func hexDigit(_ c: UInt8) -> UInt32? {
        switch c {
        case 0x30...0x39: return UInt32(c - 0x30)
        case 0x61...0x66: return UInt32(c - 0x61 + 10)
        case 0x41...0x46: return UInt32(c - 0x41 + 10)
        default: return nil
        }
    }
}
