import RWKVFormats

/// How the tokens of one call go through the layers.
public enum ForwardMode: String, CaseIterable, Sendable, Codable {
    /// One token at a time, as generation runs: matrix-vector products.
    case rnn
    /// Blocks of tokens at once, as prompt processing runs: every matrix product is a GEMM over
    /// the block; only the state recurrence walks token by token.
    case sequence
}

/// Which positions' logits a call returns.
public enum LogitPositions: Sendable {
    case all
    /// Only the last token's (prompt processing before generation).
    case last
}

/// Logits, one row of `vocabSize` values per returned position.
public struct Logits: Sendable {
    public let vocabSize: Int
    /// Row-major [positions][vocabSize].
    public let values: [Float]

    public var count: Int { vocabSize == 0 ? 0 : values.count / vocabSize }
    public func row(_ i: Int) -> ArraySlice<Float> { values[i * vocabSize ..< (i + 1) * vocabSize] }
    public var rows: [[Float]] { (0..<count).map { Array(row($0)) } }
}

/// An RWKV model that turns tokens into logits; the verifier and benchmarks see only this.
public protocol RWKVLanguageModel: AnyObject {
    var config: RWKVConfig { get }
    /// The model file, for messages.
    var path: String { get }
    /// Runs `tokens` from `state` (updated to include them) and returns logits.
    /// Throws when a token is outside the vocabulary or the state belongs to another shape.
    func forward(_ tokens: [Int], state: inout RWKVState, mode: ForwardMode, positions: LogitPositions) throws -> Logits
    /// Whether the logits depend on how the tokens are split into calls (RWKV-X: a call of
    /// several tokens is a prefill that replaces the attention memory). Text evaluation then runs
    /// each chunk as one call.
    var logitsDependOnCalls: Bool { get }
    /// Sees the input of every weight-matrix product (nil: none, the default).
    var matmulObserver: MatmulObserver? { get set }
    /// Sees each block's LayerNorm outputs (nil: none, the default).
    var layerInputObserver: LayerInputObserver? { get set }
}

/// Sees the input rows of each weight-matrix product of a forward pass just before it runs: the
/// activations llama-imatrix collects at `ggml_mul_mat`. `weight` is the checkpoint's name
/// (`blocks.3.att.key.weight`, `blocks.3.att.w1`, `head.weight`); the rows are `width` values
/// each, `stride` apart. Called on the forward pass's thread, once per block of rows.
public protocol MatmulObserver: AnyObject {
    func observe(weight: String, input: UnsafePointer<Float>, rows: Int, width: Int, stride: Int)
}

/// Sees the LayerNorm output each block's time mix (ln1) and channel mix (ln2) reads, before
/// the token shift: the inputs `rwkv-upgrade --calibrate` fits each block on. `input` holds
/// `rows` tokens of `width` values; called on the forward pass's thread, once per block of rows.
public protocol LayerInputObserver: AnyObject {
    func observe(layer: Int, part: BlockPart, input: UnsafePointer<Float>, rows: Int, width: Int)
}

public enum BlockPart: Sendable {
    case timeMix, channelMix
    /// Not an input: RWKV-6's time-mix WKV readout before GroupNorm (what `RWKV6Model.timeMixReadout`
    /// returns), reported so that a test can hold that entry point to the checked forward pass.
    case timeMixReadout
}

extension RWKVLanguageModel {
    public var logitsDependOnCalls: Bool { false }

    /// What every forward call checks first: the state belongs to this model (`stateFits`: a
    /// model's own further condition), and every token id is in the vocabulary.
    func checkCall(_ tokens: [Int], state: RWKVState, stateFits: Bool = true) throws {
        guard state.matches(config), stateFits else {
            throw RWKVError(path, "state shape (\(state.layerCount) layers × \(state.embeddingSize), head \(state.headSize), "
                                  + "\(state.attention.count) attention blocks) does not match the model")
        }
        if let bad = tokens.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
            throw RWKVError(path, "token id \(bad) is outside the vocabulary (0..<\(config.vocabSize))")
        }
    }
    public func makeState() -> RWKVState { RWKVState(config: config) }

    /// Logits of every position, from the zero state.
    public func logits(_ tokens: [Int], mode: ForwardMode) throws -> Logits {
        var state = makeState()
        return try forward(tokens, state: &state, mode: mode, positions: .all)
    }
}

public enum RWKVModelLoader {
    /// Builds the model its weights describe (RWKV-6 or RWKV-7).
    public static func load(_ loader: WeightLoader) throws -> RWKVLanguageModel {
        switch loader.config.version {
        case .v7: return try RWKV7Model(loader)
        case .v6: return try RWKV6Model(loader)
        }
    }

    /// Opens a checkpoint file (any format `ModelFile` reads) and builds its model. `memory` is an
    /// RWKV-X's attention memory setting (the package's default when nil; ignored by other models).
    public static func load(path: String, memory: AttentionMemory? = nil) throws -> RWKVLanguageModel {
        let source = try Checkpoint.open(path)
        if let gguf = source as? GGUFReader { return try load(WeightLoader(gguf: gguf)) }
        if let hybrid = source as? RWKVXCheckpoint { return try RWKVXModel(hybrid, memory: memory ?? .packageDefault) }
        if GoldFinchCheckpoint.holdsGoldFinch(source) { return try GoldFinchModel(try GoldFinchCheckpoint(source)) }
        return try load(WeightLoader(source: source))
    }
}

// MARK: - The part both versions share

/// What the shared driver needs from a model version: the embedding (ln0 already applied), the
/// output norm and head, and the layers.
protocol LayerStack: RWKVLanguageModel {
    var embedding: FloatBuffer { get }
    var outputNorm: NormWeights { get }
    var head: Linear { get }
    /// Scratch space for blocks of up to `rows` tokens, kept between calls.
    func workspace(rows: Int) -> Workspace
    /// Runs every layer over the residual rows `work.x[0..<rows]`, updating the state.
    func runLayers(rows: Int, work: Workspace, state: StatePointers)
    /// The block's index when the model holds one block only (`init(block:of:)`), else nil.
    var blockIndex: Int? { get }
}

extension LayerStack {
    /// Shows `rows` inputs of `linear` to the observer, if there is one (the name is only built then).
    @inline(__always)
    func observe(_ weight: @autoclosure () -> String, _ linear: Linear, _ x: UnsafePointer<Float>, rows: Int, xStride: Int? = nil) {
        guard let observer = matmulObserver else { return }
        observer.observe(weight: weight(), input: x, rows: rows, width: linear.inputs, stride: xStride ?? linear.inputs)
    }
}

/// Scratch buffers of a forward pass, each `rows` × its width, allocated once and reused.
final class Workspace {
    let rows: Int
    let x, xn, shift, y: FloatBuffer                 // residual, normalised input, token-shift delta, attention output
    let mixes: [FloatBuffer]                         // interpolated inputs (v7: r w k v a g, v6: x w k v r g)
    let r, k, v, w, a, g, kk, vFirst, vGate: FloatBuffer
    let lora: FloatBuffer                            // LoRA hidden activations (widest rank)
    let ffn: FloatBuffer                             // channel-mix hidden layer (F wide)
    let ffnGate: FloatBuffer                         // v6 channel-mix receptance

    init(rows: Int, config c: RWKVConfig) {
        self.rows = rows
        let C = rows * c.embeddingSize
        func make(_ n: Int) -> FloatBuffer { FloatBuffer(count: n) }
        x = make(C); xn = make(C); shift = make(C); y = make(C)
        mixes = (0..<6).map { _ in make(C) }
        r = make(C); k = make(C); v = make(C); w = make(C); a = make(C); g = make(C)
        kk = make(C); vFirst = make(C); vGate = make(C)
        let rank = [c.decayRank, c.iclrRank, c.valueResidualRank, c.gateRank, 5 * c.tokenShiftRank].max() ?? 0
        lora = make(rows * rank)
        ffn = make(rows * c.ffnSize)
        ffnGate = make(C)
    }
}

extension LayerStack {
    /// Tokens per block in sequence mode: big enough for efficient GEMMs, small enough to keep
    /// the scratch space modest on large models.
    static var sequenceBlockSize: Int { 128 }

    func runForward(_ tokens: [Int], state: inout RWKVState, mode: ForwardMode, positions: LogitPositions) throws -> Logits {
        let V = config.vocabSize, C = config.embeddingSize
        try checkCall(tokens, state: state)
        let T = tokens.count
        let wanted = positions == .all ? T : min(T, 1)
        var out = [Float](repeating: 0, count: wanted * V)
        guard T > 0 else { return Logits(vocabSize: V, values: out) }

        let block = mode == .rnn ? 1 : Self.sequenceBlockSize
        let work = workspace(rows: min(block, T))
        state.withPointers { ptrs in
            out.withUnsafeMutableBufferPointer { logits in
                var start = 0
                while start < T {
                    let rows = min(block, T - start)
                    for i in 0..<rows {
                        (work.x.base + i * C).update(from: embedding.base + tokens[start + i] * C, count: C)
                    }
                    runLayers(rows: rows, work: work, state: ptrs)
                    // Only the rows whose logits are wanted go through ln_out and the head.
                    let first = positions == .all ? 0 : (start + rows == T ? rows - 1 : rows)
                    if first < rows {
                        let n = rows - first
                        Kernels.normalize(work.x.base + first * C, rows: n, width: C, outputNorm,
                                          eps: Kernels.layerNormEpsilon, into: work.xn.base)
                        let dst = logits.baseAddress! + (positions == .all ? (start + first) * V : 0)
                        observe(config.schema.headName, head, work.xn.base, rows: n)
                        head.apply(work.xn.base, rows: n, to: dst)
                    }
                    start += rows
                }
            }
        }
        state.tokenCount += T
        return Logits(vocabSize: V, values: out)
    }
}
