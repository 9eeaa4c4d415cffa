import Foundation
import Testing
@testable import RWKVText
import RWKVFormats

/// The tokenizer against ids the official `rwkv` package's TRIE_TOKENIZER gave
/// (fixtures/expected/text/world-tokens.json, made by fixtures/text_fixtures.py).
struct TextTokenizerTests {
    static let expected = repositoryRoot + "/fixtures/expected/text/world-tokens.json"
    static let text = repositoryRoot + "/fixtures/text/english.txt"

    struct Fixture: Decodable {
        struct Text: Decodable { let tokens: [Int] }
        struct Sample: Decodable { let hex: String; let tokens: [Int] }
        let text: Text
        let samples: [Sample]
    }

    static func bytes(hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            out.append(UInt8(hex[i..<j], radix: 16)!)
            i = j
        }
        return out
    }

    @Test func worldTokensMatchTheOfficialTrieTokenizer() throws {
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: URL(fileURLWithPath: Self.expected)))
        let tokenizer = try TextTokenizer.forModel(vocabularySize: 65536)
        let text = try InputFile(Self.text)
        let ids = try tokenizer.encode(try text.read(at: 0, count: text.size), path: Self.text)
        #expect(ids.count > 500)
        #expect(ids == fixture.text.tokens)
        #expect(fixture.samples.count >= 8)
        for sample in fixture.samples {
            #expect(try tokenizer.encode(Self.bytes(hex: sample.hex), path: nil) == sample.tokens, "sample \(sample.hex)")
        }
    }

    @Test func byteLevelModelsTakeBytesAsIds() throws {
        let tokenizer = try TextTokenizer.forModel(vocabularySize: 256)
        #expect(try tokenizer.encode([0x54, 0x00, 0xff], path: "t") == [0x54, 0, 255])
        #expect(throws: RWKVError("t", "byte 200 is outside the model's 128-token vocabulary")) {
            try TextTokenizer.forModel(vocabularySize: 128).encode([65, 200], path: "t")
        }
        #expect(throws: RWKVError.self) { try TextTokenizer.forModel(vocabularySize: 1000) }
    }

    @Test func aVocabularyWithoutSomeByteFailsWithAnError() throws {
        // Longest match: "ab" beats "a"; a byte no token starts with is an error, not a loop.
        let tokenizer = try WorldTokenizer(tokens: [Array("a".utf8), Array("ab".utf8), Array("b".utf8), Array("abc".utf8)], path: "v")
        #expect(try tokenizer.encode(Array("abab a".utf8.prefix(4))) == [2, 2])
        #expect(try tokenizer.encode(Array("abcab".utf8)) == [4, 2])
        #expect(throws: RWKVError("t", "byte 120 at offset 2 has no World token")) { try tokenizer.encode(Array("abx".utf8), path: "t") }
    }

    @Test func chunksFollowLlamaPerplexity() throws {
        let chunks = try TextChunks(tokens: Array(0..<1000), size: 128, path: "t", tokenizer: "bytes")
        #expect(chunks.count == 7)                               // the remainder (104 tokens) is dropped
        #expect(Array(chunks.chunk(2)) == Array(256..<384))
        #expect(chunks.scoredPositions == 64..<127)              // first = n_ctx/2, n_ctx - 1 - first tokens
        #expect(chunks.scoredTokenCount == 7 * 63)
        #expect(try TextChunks(tokens: Array(0..<1000), size: 128, maxChunks: 3, path: "t", tokenizer: "bytes").count == 3)
        #expect(throws: RWKVError("t", "the text is 200 tokens; chunks of 128 need at least 256 (as llama-perplexity); use a smaller --chunk")) {
            try TextChunks(tokens: Array(0..<200), size: 128, path: "t", tokenizer: "bytes")
        }
        #expect(throws: RWKVError.self) { try TextChunks(tokens: Array(0..<200), size: 2, path: "t", tokenizer: "bytes") }
        #expect(throws: RWKVError.self) { try TextChunks(tokens: Array(0..<200), size: 16, maxChunks: 0, path: "t", tokenizer: "bytes") }
    }

    @Test func worldTokenizerMatchesTheOfficialOne() throws {
        // Expected ids from the official rwkv package: TRIE_TOKENIZER('rwkv_vocab_v20230424.txt').encode(text).
        let tokenizer = try WorldTokenizer.shared()
        let text = "Hello, world! 你好 — ½\n\tcafé's \"RWKV\""
        #expect(try tokenizer.encode(Array(text.utf8)) == [33155, 45, 40213, 34, 33, 10464, 11685, 22898, 4935, 260, 1784, 7596, 460, 269, 1413, 1184, 35])
        #expect(try tokenizer.encode(Array("The quick brown fox".utf8)) == [6699, 39418, 37917, 21704])
    }
}
