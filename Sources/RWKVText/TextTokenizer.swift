import Foundation
import RWKVFormats

/// Text to token ids for a model, as the official `rwkv` package and llama.cpp's `rwkv`
/// tokenizer do it: byte-level models (≤ 256 embedding rows) take each byte as its token id;
/// World models (65536 rows) the RWKV World tokenizer. No BOS/EOS is added (llama.cpp's RWKV
/// vocabulary has add_bos = add_eos = false).
public enum TextTokenizer: Sendable {
    case bytes(vocabularySize: Int)
    case world(WorldTokenizer)

    /// The tokenizer for a model with `vocabularySize` embedding rows; `vocabularyPath`
    /// replaces the bundled World vocabulary.
    public static func forModel(vocabularySize: Int, vocabularyPath: String? = nil) throws -> TextTokenizer {
        if let vocabularyPath {
            return .world(try WorldTokenizer(vocabularyFile: vocabularyPath))
        }
        if vocabularySize <= 256 { return .bytes(vocabularySize: vocabularySize) }
        guard vocabularySize == Vocabulary.worldRows else {
            throw RWKVError(nil, "text needs a byte-level (≤ 256) or RWKV World (65536) vocabulary, the model has \(vocabularySize) rows (give --vocab for another World-format vocabulary)")
        }
        return .world(try WorldTokenizer.shared())
    }

    /// The token ids of `text` (bytes, as read from a file; not required to be UTF-8).
    /// `path` names the text in errors.
    public func encode(_ text: [UInt8], path: String?) throws -> [Int] {
        switch self {
        case .bytes(let size):
            if let bad = text.first(where: { Int($0) >= size }) {
                throw RWKVError(path, "byte \(bad) is outside the model's \(size)-token vocabulary")
            }
            return text.map(Int.init)
        case .world(let tokenizer):
            return try tokenizer.encode(text, path: path)
        }
    }

    /// For reports: "bytes" or "world (<file>)".
    public var name: String {
        switch self {
        case .bytes: return "bytes"
        case .world(let t): return "world (\((t.vocabularyPath as NSString).lastPathComponent))"
        }
    }
}

/// The RWKV World tokenizer (the `rwkv` package's TRIE_TOKENIZER, llama.cpp's
/// `llm_tokenizer_rwkv`): each line of rwkv_vocab_v20230424.txt is `<id> <Python str or bytes
/// literal> <byte length>`; encoding takes, at each position, the longest vocabulary entry that
/// matches the bytes there. A byte no entry starts with is an error (the World file has all 256).
public struct WorldTokenizer: Sendable {
    public let vocabularyPath: String
    /// A trie over token bytes: node 0 is the root; the child of node n by byte b is
    /// `children[n << 8 | b]`; `tokenAt[n]` is the id of the token ending at n, or -1.
    private let children: [Int: Int32]
    private let tokenAt: [Int32]
    /// The root's children, looked up on every token: a plain table.
    private let rootChildren: [Int32]

    nonisolated(unsafe) private static var cached: WorldTokenizer?
    private static let lock = NSLock()

    /// The tokenizer of the bundled World vocabulary, read once per process.
    public static func shared() throws -> WorldTokenizer {
        lock.lock()
        defer { lock.unlock() }
        if let t = cached { return t }
        guard let path = Vocabulary.bundledWorldPath else {
            throw RWKVError(nil, "the bundled World vocabulary (rwkv-tools_RWKVText.resources) is not next to the program; give it with --vocab rwkv_vocab_v20230424.txt")
        }
        let t = try WorldTokenizer(vocabularyFile: path)
        cached = t
        return t
    }

    /// Reads a World-format vocabulary file (parsed and checked by `Vocabulary.worldTokens`).
    public init(vocabularyFile path: String) throws {
        let file = try InputFile(path)
        guard file.size <= 64 << 20 else { throw RWKVError(path, "vocabulary file is larger than 64 MiB") }
        try self.init(tokens: try Vocabulary.worldTokens(contents: try file.read(at: 0, count: file.size), path: path), path: path)
    }

    /// `tokens[i]` is the bytes of id i + 1. When two ids have the same bytes the later one wins,
    /// as in TRIE_TOKENIZER (its bytes-to-id dict keeps the last).
    init(tokens: [[UInt8]], path: String) throws {
        vocabularyPath = path
        var children: [Int: Int32] = [:]
        children.reserveCapacity(tokens.reduce(0) { $0 + $1.count })
        var tokenAt: [Int32] = [-1]
        var root = [Int32](repeating: -1, count: 256)
        for (i, token) in tokens.enumerated() where !token.isEmpty {
            var node = 0
            for (depth, b) in token.enumerated() {
                let existing = depth == 0 ? root[Int(b)] : (children[node << 8 | Int(b)] ?? -1)
                if existing >= 0 {
                    node = Int(existing)
                } else {
                    let new = Int32(tokenAt.count)
                    tokenAt.append(-1)
                    if depth == 0 { root[Int(b)] = new } else { children[node << 8 | Int(b)] = new }
                    node = Int(new)
                }
            }
            tokenAt[node] = Int32(i + 1)
        }
        self.children = children
        self.tokenAt = tokenAt
        rootChildren = root
    }

    public func encode(_ text: [UInt8], path: String? = nil) throws -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(text.count / 3)
        try text.withUnsafeBufferPointer { text in
            var i = 0
            while i < text.count {
                var best = -1, bestEnd = i
                var node = Int(rootChildren[Int(text[i])])
                var j = i + 1
                while node >= 0 {
                    if tokenAt[node] >= 0 { best = Int(tokenAt[node]); bestEnd = j }
                    guard j < text.count, let child = children[node << 8 | Int(text[j])] else { break }
                    node = Int(child)
                    j += 1
                }
                guard best >= 0 else { throw RWKVError(path, "byte \(text[i]) at offset \(i) has no World token") }
                out.append(best)
                i = bestEnd
            }
        }
        return out
    }
}
