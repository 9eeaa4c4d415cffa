import RWKVFormats

/// Expected logits made by the official implementation: a safetensors file holding `tokens`
/// (int32 or int64 [T]) and `logits` (f32 [T, V], row t = the logits after token t, from the
/// zero state). Its `__metadata__` says how it was made.
public struct LogitFixture: Sendable {
    public let path: String
    public let tokens: [Int]
    /// [T][V]
    public let logits: [[Float]]
    public let metadata: [String: String]

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
        self.path = path
    }
}
