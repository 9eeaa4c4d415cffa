import Foundation
import RWKVFormats

/// A text cut into chunks the way llama-perplexity and llama-imatrix cut it
/// (tools/perplexity/perplexity.cpp, tools/imatrix/imatrix.cpp): the whole file is tokenized
/// (no BOS: llama.cpp's RWKV vocabulary adds none), cut into consecutive, non-overlapping chunks
/// of `size` tokens, the remainder dropped; `--chunks` caps their number. Each chunk is run from
/// the zero state (llama.cpp clears the memory per chunk). llama.cpp refuses a text of fewer
/// than 2 × size tokens, and so do we, so that the same flags give the same chunks.
public struct TextChunks: Sendable {
    /// llama-perplexity's and llama-imatrix's default context (`-c`).
    public static let defaultSize = 512

    public let path: String
    public let tokenizer: String
    /// Every token of the text (the chunks are its first `count × size`).
    public let tokens: [Int]
    public let size: Int
    public let count: Int

    /// Reads and tokenizes `path` for a model with `vocabularySize` rows.
    public init(textFile path: String, vocabularySize: Int, vocabularyPath: String? = nil,
                size: Int = TextChunks.defaultSize, maxChunks: Int? = nil) throws {
        let file = try InputFile(path)
        // Tokens take 8 bytes each here, logits are bounded per chunk: 1 GiB of text is plenty.
        guard file.size <= 1 << 30 else { throw RWKVError(path, "text file is larger than 1 GiB") }
        let tokenizer = try TextTokenizer.forModel(vocabularySize: vocabularySize, vocabularyPath: vocabularyPath)
        let tokens = try tokenizer.encode(try file.read(at: 0, count: file.size, what: "text"), path: path)
        try self.init(tokens: tokens, size: size, maxChunks: maxChunks, path: path, tokenizer: tokenizer.name)
    }

    public init(tokens: [Int], size: Int, maxChunks: Int? = nil, path: String, tokenizer: String) throws {
        guard size >= 4, size <= 1 << 20 else { throw RWKVError(nil, "--chunk must be between 4 and 1048576 tokens, got \(size)") }
        if let maxChunks, maxChunks < 1 { throw RWKVError(nil, "--chunks must be at least 1, got \(maxChunks)") }
        guard tokens.count >= 2 * size else {
            throw RWKVError(path, "the text is \(tokens.count) tokens; chunks of \(size) need at least \(2 * size) (as llama-perplexity); use a smaller --chunk")
        }
        self.path = path
        self.tokenizer = tokenizer
        self.tokens = tokens
        self.size = size
        count = min(tokens.count / size, maxChunks ?? .max)
    }

    public func chunk(_ i: Int) -> ArraySlice<Int> { tokens[(i * size)..<((i + 1) * size)] }

    /// The positions of a chunk whose logits are scored, each against the next token: the
    /// second half, as llama-perplexity scores (`first = n_ctx/2`, `n_ctx - 1 - first` tokens),
    /// so every scored token has at least half a chunk of context.
    public var scoredPositions: Range<Int> { (size / 2)..<(size - 1) }

    public var scoredTokenCount: Int { count * scoredPositions.count }
}

/// Elapsed seconds, for tokens/s.
public struct Stopwatch: Sendable {
    private let start = ContinuousClock.now
    public init() {}
    public var seconds: Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
}
