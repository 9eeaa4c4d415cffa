import RWKVFormats
import RWKVModel

/// Expected logits made by the official implementation: a safetensors file holding `tokens`
/// (int32 or int64 [T]) and `logits` (f32 [T, V], row t = the logits after token t, from the
/// zero state). Its `__metadata__` says how it was made, and for an RWKV-X, whose result
/// depends on it, how the tokens were split into calls (`calls`, e.g. "12,1,1": a 12-token
/// prefill, then two tokens one at a time) and the attention memory setting (`memory`).
public struct LogitFixture: Sendable {
    public let path: String
    public let tokens: [Int]
    /// [T][V]
    public let logits: [[Float]]
    public let metadata: [String: String]
    /// Token counts of the forward calls that made the logits, in order (one call by default).
    public let calls: [Int]
    /// The RWKV-X attention memory setting the logits were made with, when recorded.
    public let memory: AttentionMemory?

    public var vocabSize: Int { logits.first?.count ?? 0 }

    public init(path: String) throws {
        let file = try SafetensorsReader(path: path)
        guard let tokenInfo = file.info("tokens"), let logitInfo = file.info("logits") else {
            throw RWKVError(path, "not a logits fixture: needs tensors `tokens` [T] and `logits` [T, V]")
        }
        guard tokenInfo.shape.count == 1, tokenInfo.dtype == .i32 || tokenInfo.dtype == .i64 else {
            throw RWKVError(path, "`tokens` must be int32 or int64 of shape [T], found \(tokenInfo.dtype.rawValue) \(tokenInfo.shape)")
        }
        let T = tokenInfo.shape[0]
        guard T > 0 else { throw RWKVError(path, "`tokens` is empty") }
        guard logitInfo.dtype == .f32, logitInfo.shape.count == 2, logitInfo.shape[0] == T, logitInfo.shape[1] > 0 else {
            throw RWKVError(path, "`logits` must be f32 of shape [\(T), V], found \(logitInfo.dtype.rawValue) \(logitInfo.shape)")
        }
        let raw = try file.data("tokens")
        tokens = raw.withUnsafeBytes { b in
            (0..<T).map { i in
                tokenInfo.dtype == .i32 ? Int(Int32(littleEndian: b.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)))
                                        : Int(Int64(littleEndian: b.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)))
            }
        }
        if let bad = tokens.first(where: { $0 < 0 }) { throw RWKVError(path, "negative token id \(bad)") }
        let V = logitInfo.shape[1]
        let flat = try file.floats("logits")
        logits = (0..<T).map { Array(flat[$0 * V ..< ($0 + 1) * V]) }
        metadata = file.metadata
        if let text = metadata["calls"] {
            let counts = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0) }
            // Each count is checked against T before any is added, so the sum cannot overflow.
            guard counts.allSatisfy({ ($0 ?? 0) > 0 && ($0 ?? 0) <= T }), counts.reduce(0, { $0 + ($1 ?? 0) }) == T else {
                throw RWKVError(path, "metadata calls \(Printable.escaped(text, limit: 80)) is not a list of positive token counts adding up to \(T)")
            }
            calls = counts.map { $0! }
        } else {
            calls = [T]
        }
        do {
            memory = try metadata["memory"].map(AttentionMemory.init(parsing:))
        } catch let error as RWKVError {
            throw RWKVError(path, "metadata: \(error.message)")
        }
        self.path = path
    }
}
