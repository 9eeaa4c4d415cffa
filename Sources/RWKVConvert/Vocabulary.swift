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
    public let tokens: [String]
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
        let relative = "rwkv-tools_RWKVConvert.resources/rwkv_vocab_v20230424.txt"
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
            throw RWKVError(nil, "the bundled World vocabulary (rwkv-tools_RWKVConvert.resources) is not next to the program; give it with --vocab rwkv_vocab_v20230424.txt")
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
        let entries = try worldTokens(contents: contents, path: path)
        let tokens = ["<s>"] + entries.map(escape)
        guard tokens.count <= rows else {
            throw RWKVError(path, "vocabulary has \(tokens.count) tokens (with id 0) but the model's embedding has only \(rows) rows")
        }
        return padded(kind: .file(path), tokens: tokens, types: [control] + [Int32](repeating: normal, count: entries.count), rows: rows)
    }

    /// The bytes of every token of a World-format vocabulary file, in id order (ids 1, 2, ...;
    /// id 0, end-of-text, has no line). Each line is checked: ids in order, the literal parsed,
    /// its byte length matched.
    public static func worldTokens(contents: [UInt8], path: String) throws -> [[UInt8]] {
        var tokens: [[UInt8]] = []
        var lineNumber = 0
        for line in contents.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            var bytes = Array(line)
            if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
            if bytes.isEmpty { continue }
            func fail(_ why: String) -> RWKVError { RWKVError(path, "line \(lineNumber): \(why)") }
            guard let firstSpace = bytes.firstIndex(of: 0x20), let lastSpace = bytes.lastIndex(of: 0x20), firstSpace < lastSpace,
                  let id = Int(String(decoding: bytes[..<firstSpace], as: UTF8.self)),
                  let length = Int(String(decoding: bytes[(lastSpace + 1)...], as: UTF8.self)) else {
                throw fail("expected \"<id> <python literal> <byte length>\"")
            }
            guard id == tokens.count + 1 else { throw fail("token id \(id) out of order (expected \(tokens.count + 1))") }
            let token: [UInt8]
            do { token = try PythonLiteral.parse(Array(bytes[(firstSpace + 1)..<lastSpace])) } catch let e as PythonLiteral.Error {
                throw fail(e.message)
            }
            guard token.count == length else { throw fail("token is \(token.count) bytes, the line says \(length)") }
            tokens.append(token)
        }
        return tokens
    }

    /// 256 byte tokens (id i is byte i), then placeholders up to `rows` (or fewer bytes when
    /// the model has fewer rows).
    public static func bytes(rows: Int) -> Vocabulary {
        let n = min(256, rows)
        return padded(kind: .bytes, tokens: (0..<n).map { escape([UInt8($0)]) },
                      types: [Int32](repeating: normal, count: n), rows: rows)
    }

    private static func padded(kind: Kind, tokens: [String], types: [Int32], rows: Int) -> Vocabulary {
        let real = tokens.count
        return Vocabulary(kind: kind, tokens: tokens + (real..<max(real, rows)).map { "[PAD\($0)]" },
                          types: types + [Int32](repeating: unused, count: max(0, rows - real)), realTokenCount: real)
    }

    /// Python's `repr(bytes)[2:-1]`: printable ASCII as is, `\\`, `\t`, `\n`, `\r`, other bytes
    /// `\xhh` (lowercase); the quote Python picks is escaped (`'` unless the bytes hold `'`
    /// and no `"`).
    public static func escape(_ bytes: [UInt8]) -> String {
        let quote: UInt8 = bytes.contains(0x27) && !bytes.contains(0x22) ? 0x22 : 0x27
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes {
            switch b {
            case quote, 0x5c: out += [0x5c, b]
            case 0x09: out += Array("\\t".utf8)
            case 0x0a: out += Array("\\n".utf8)
            case 0x0d: out += Array("\\r".utf8)
            case 0x20..<0x7f: out.append(b)
            default: out += [0x5c, UInt8(ascii: "x"), hex[Int(b >> 4)], hex[Int(b & 15)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The GGUF metadata: model, tokens, token types and the special ids llama.cpp's converter
    /// sets for World models (bos = eos = 0, eot = 261 "\n\n", chat template "rwkv-world").
    public var metadata: [GGUFKeyValue] {
        var kv: [GGUFKeyValue] = [
            GGUFKeyValue("tokenizer.ggml.model", .string("rwkv")),
            GGUFKeyValue("tokenizer.ggml.tokens", .array(.string, tokens.map { .string($0) })),
            GGUFKeyValue("tokenizer.ggml.token_type", .array(.int32, types.map { .int32($0) })),
        ]
        if case .file = kind, realTokenCount > 261 {
            kv += [GGUFKeyValue("tokenizer.ggml.bos_token_id", .uint32(0)),
                   GGUFKeyValue("tokenizer.ggml.eos_token_id", .uint32(0)),
                   GGUFKeyValue("tokenizer.ggml.eot_token_id", .uint32(261)),
                   GGUFKeyValue("tokenizer.chat_template", .string("rwkv-world"))]
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

/// A Python string or bytes literal as `repr` writes it ('...', "...", b'...', b"..."), parsed
/// to bytes (str literals encoded as UTF-8). Escapes: \\ \' \" \n \t \r \a \b \f \v \0-\777
/// \xhh \uhhhh \Uhhhhhhhh (the last two in str only); an unknown escape keeps its backslash,
/// as Python does.
public enum PythonLiteral {
    public struct Error: Swift.Error, Equatable { public let message: String }

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
