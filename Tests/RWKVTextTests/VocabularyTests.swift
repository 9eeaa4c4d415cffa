import Foundation
import Testing
@testable import RWKVText
import RWKVFormats

@Suite struct VocabularyTests {
    @Test func pythonLiterals() throws {
        func parse(_ s: String) throws -> [UInt8] { try PythonLiteral.parse(Array(s.utf8)) }
        #expect(try parse("'abc'") == Array("abc".utf8))
        #expect(try parse("\"it's\"") == Array("it's".utf8))
        #expect(try parse(#"'\n\t\r\\\'\"'"#) == [0x0a, 0x09, 0x0d, 0x5c, 0x27, 0x22])
        #expect(try parse(#"'\x00\x7f'"#) == [0x00, 0x7f])
        #expect(try parse(#"'\xe9'"#) == [0xc3, 0xa9])                 // str: U+00E9, UTF-8 encoded
        #expect(try parse(#"b'\xe9'"#) == [0xe9])                      // bytes: the byte itself
        #expect(try parse(#"'\u2002'"#) == [0xe2, 0x80, 0x82])
        #expect(try parse(#"'\U0001F600'"#) == Array("😀".utf8))
        #expect(try parse("'é'") == [0xc3, 0xa9])                       // literal UTF-8 in a str
        #expect(try parse(#"'\$'"#) == Array(#"\$"#.utf8))             // unknown escape keeps its backslash
        #expect(try parse(#"'\101\0'"#) == [0x41, 0x00])               // octal
        #expect(throws: PythonLiteral.Error(message: "unescaped quote inside the literal")) { try parse("'a'b'") }
        #expect(throws: PythonLiteral.Error(message: "truncated escape")) { try parse(#"'\x4'"#) }
        #expect(throws: PythonLiteral.Error(message: "not a quoted Python literal: abc")) { try parse("abc") }
        #expect(throws: PythonLiteral.Error(message: "non-ASCII character in a bytes literal")) { try parse("b'é'") }
    }

    /// Python's repr(bytes)[2:-1], as llama.cpp's converter writes tokens (expected strings are
    /// what CPython 3.11 prints).
    @Test func escapingMatchesPythonRepr() {
        #expect(Vocabulary.escape(Array("hello".utf8)) == "hello")
        #expect(Vocabulary.escape([0x0a, 0x0a]) == #"\n\n"#)
        #expect(Vocabulary.escape([0x5c]) == #"\\"#)
        #expect(Vocabulary.escape(Array("'".utf8)) == "'")              // repr(b"'") == b"'" (Python switches to double quotes)
        #expect(Vocabulary.escape(Array("'\"".utf8)) == #"\'""#)        // repr(b'\'"') == b'\'"'
        #expect(Vocabulary.escape(Array("\"".utf8)) == "\"")
        #expect(Vocabulary.escape([0x00, 0x1f, 0x7f, 0x80, 0xff]) == #"\x00\x1f\x7f\x80\xff"#)
        #expect(Vocabulary.escape(Array("é".utf8)) == #"\xc3\xa9"#)
        #expect(Vocabulary.escape([0x09, 0x0d]) == #"\t\r"#)
    }

    /// The bundled World vocabulary gives exactly the token list and types llama.cpp's converter
    /// writes: the digests come from scripts/world-vocab-digest.py, which runs that converter's
    /// own logic (ast.literal_eval + repr) over the same file.
    @Test func bundledWorldVocabularyMatchesLlamaCppConverter() throws {
        let v = try Vocabulary.automatic(rows: 65536)
        #expect(v.tokens.count == 65536 && v.types.count == 65536)
        #expect(v.realTokenCount == 65530)
        #expect(v.tokens[0] == "<s>" && v.types[0] == Vocabulary.control)
        #expect(v.tokens[261] == #"\n\n"# && v.types[261] == Vocabulary.normal)
        #expect(v.tokens[65530] == "[PAD65530]" && v.types[65535] == Vocabulary.unused)
        #expect(SHA256.hex(SHA256.hash(Array(v.tokens.joined(separator: "\n").utf8)))
                == "9e80d6151e81ecf11ef3c228cd9bfcd4dcfdd60995d243815d35e5836523a8ef")
        #expect(SHA256.hex(SHA256.hash(Array(v.types.map(String.init).joined(separator: ",").utf8)))
                == "0a499d123f7066d239611eefa0399b5ee58fe26c0f07d93df3629d0d14862f71")
        let keys = v.metadata.map(\.key)
        #expect(keys.contains("tokenizer.ggml.eot_token_id"))
        #expect(v.metadata.first { $0.key == "tokenizer.ggml.eot_token_id" }?.value == .uint32(261))
    }

    /// Most lines of a World file take a fast path (`PythonLiteral.plainBody`: the literal's
    /// bytes as they stand); it must give what the general parser gives, on every line of the
    /// bundled file and on edge cases, and must decline whatever the parser decodes or refuses.
    @Test func plainLiteralsAgreeWithTheParser() throws {
        func check(_ literal: [UInt8]) -> (plain: Bool, agrees: Bool) {
            let parsed = try? PythonLiteral.parse(literal)
            let body = literal.withUnsafeBufferPointer { PythonLiteral.plainBody($0).map(Array.init) }
            return (body != nil, body == nil || body == parsed)
        }
        let path = try #require(Vocabulary.bundledWorldPath)
        let file = try InputFile(path)
        var plain = 0, declined = 0, disagreeing: [String] = []
        for line in try file.read(at: 0, count: file.size).split(separator: 0x0a) {
            let literal = Array(line[(line.firstIndex(of: 0x20)! + 1)..<line.lastIndex(of: 0x20)!])
            let (isPlain, agrees) = check(literal)
            if isPlain { plain += 1 } else { declined += 1 }
            if !agrees { disagreeing.append(String(decoding: line, as: UTF8.self)) }
        }
        #expect(disagreeing.isEmpty)
        #expect(plain + declined == 65529 && plain > 60_000 && declined > 500)   // both paths taken

        let edges = ["''", "b''", "'é'", "b'é'", #"'a\nb'"#, "'a'b'", "\"it's\"", "'it\"s'", "'", "b", "b'", "",
                     "'abc\"", "x'a'", "b\"\"", #"b'\\'"#, "'\u{7f}'", "b'\u{80}'"]
        for e in edges {
            let (isPlain, agrees) = check(Array(e.utf8))
            #expect(agrees, "\(e)")
            #expect(isPlain == ["''", "b''", "'é'", "\"it's\"", "'it\"s'", "b\"\"", "'\u{7f}'"].contains(e), "\(e)")
        }
    }

    /// A long vocabulary file (several 64 KiB blocks, a 100 KB line, CRLF, blank lines, a last
    /// line without "\n") reads from disk as it does from memory, and an error far into it names
    /// its line.
    @Test func vocabularyFileReadInBlocks() throws {
        let dir = try ScratchDirectory()
        var text = "", id = 0
        func line(_ literal: String, _ length: Int, ending: String = "\n") {
            id += 1
            text += "\(id) \(literal) \(length)" + ending
        }
        for i in 0..<9000 {
            line("'t\(i)'", "t\(i)".utf8.count, ending: i % 7 == 0 ? "\r\n" : "\n")
            if i % 1000 == 0 { text += "\n" }
        }
        line("'" + String(repeating: "é", count: 50_000) + "'", 100_000)   // 100 KB of text
        line(#"b'\xff'"#, 1)
        for i in 0..<5000 { line("'x \(i)'", "x \(i)".utf8.count) }
        line("'end'", 3, ending: "")
        #expect(text.utf8.count > 3 * (64 << 10))
        func write(_ name: String, _ text: String) throws -> String {
            let path = dir.path + "/" + name
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            return path
        }
        let path = try write("v.txt", text)
        let fromFile = try Vocabulary.world(path: path, rows: 20_000)
        let fromMemory = try Vocabulary.world(contents: Array(text.utf8), path: path, rows: 20_000)
        #expect(fromFile.tokens == fromMemory.tokens && fromFile.types == fromMemory.types)
        #expect(fromFile.realTokenCount == id + 1 && fromFile.tokens[id] == "end" && fromFile.tokens[9001].count == 400_000)

        let newlines = text.utf8.filter { $0 == 0x0a }.count
        let bad = try write("bad.txt", text + "\n\(id + 2) 'x' 1\n")
        #expect(throws: RWKVError(bad, "line \(newlines + 2): token id \(id + 2) out of order (expected \(id + 1))")) {
            try Vocabulary.world(path: bad, rows: 20_000)
        }
        #expect(try Vocabulary.world(path: try write("empty.txt", ""), rows: 3).tokens == GGUFStringList(["<s>", "[PAD1]", "[PAD2]"]))
    }

    @Test func byteVocabularyForOtherSizes() {
        let v = Vocabulary.bytes(rows: 300)
        #expect(v.tokens.count == 300 && v.realTokenCount == 256)
        #expect(v.tokens[0] == #"\x00"# && v.tokens[32] == " " && v.tokens[256] == "[PAD256]")
        #expect(v.types[255] == Vocabulary.normal && v.types[256] == Vocabulary.unused)
        #expect(!v.metadata.map(\.key).contains("tokenizer.ggml.eot_token_id"))
        #expect(Vocabulary.bytes(rows: 100).tokens.count == 100)
    }

    @Test func vocabularyFileErrors() throws {
        func load(_ text: String, rows: Int = 10) throws -> Vocabulary {
            try Vocabulary.world(contents: Array(text.utf8), path: "v.txt", rows: rows)
        }
        #expect(Array(try load("1 'a' 1\n2 b'\\xff' 1\n").tokens.prefix(3)) == ["<s>", "a", #"\xff"#])
        #expect(try load("1 ' ' 1\r\n2 'x y' 3\r\n").tokens[2] == "x y")          // spaces inside, CRLF
        #expect(throws: RWKVError("v.txt", "line 1: token id 2 out of order (expected 1)")) { try load("2 'a' 1\n") }
        #expect(throws: RWKVError("v.txt", "line 1: expected \"<id> <python literal> <byte length>\"")) { try load("1 'a'\n") }
        #expect(throws: RWKVError("v.txt", "line 1: token is 1 bytes, the line says 2")) { try load("1 'a' 2\n") }
        #expect(throws: RWKVError("v.txt", "line 1: unescaped quote inside the literal")) { try load("1 'a'b' 3\n") }
        #expect(throws: RWKVError("v.txt", "line 2: non-ASCII character in a bytes literal")) { try load("1 'a' 1\n2 b'é' 2\n") }
        // Numbers read as Int(String) reads them: a sign or leading zeros are fine, overflow is not.
        #expect(try load("+1 'a' 01\n00000000000000000002 'b' 1\n").tokens[2] == "b")
        #expect(throws: RWKVError("v.txt", "line 1: expected \"<id> <python literal> <byte length>\"")) {
            try load("1 'a' 99999999999999999999\n")
        }
        #expect(throws: RWKVError("v.txt", "line 3: token id 3 out of order (expected 2)")) { try load("1 'a' 1\n\n3 'b' 1\n") }
        #expect(throws: RWKVError("v.txt", "vocabulary has 3 tokens (with id 0) but the model's embedding has only 2 rows")) {
            try load("1 'a' 1\n2 'b' 1\n", rows: 2)
        }
    }

    @Test func vocabularyLiteralsDecodeLikePython() throws {
        func parse(_ s: String) throws -> [UInt8] { try PythonLiteral.parse(Array(s.utf8)) }
        #expect(try parse("'a\\'b'") == Array("a'b".utf8))
        #expect(try parse("\"'\"") == [0x27])
        #expect(try parse("b'\\xf9'") == [0xf9])
        #expect(try parse("'\\xe9'") == Array("é".utf8))          // str \x: a code point, UTF-8 encoded
        #expect(try parse("'\\u2002\\n\\t\\\\'") == Array("\u{2002}\n\t\\".utf8))
        #expect(throws: PythonLiteral.Error.self) { try parse("'unterminated") }
        #expect(try parse("'\\q'") == [0x5c, 0x71])                  // Python keeps unknown escapes as they are
    }
}
