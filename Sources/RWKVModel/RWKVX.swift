#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import RWKVFormats

// RWKV-X (Hou et al. 2025, arXiv 2504.21463): an RWKV-7 with attention blocks between groups of
// its blocks, computed exactly as the published `rwkv-x` package's inference model
// (`rwkv_x/model.py`, class RWKV_X, 0.2.7) does. docs/formats-reading.md, "RWKV-X", has the facts
// and their sources.

/// How many positions an attention block keeps as memory after a prefill: the package's
/// `RWKV_X_Memory_Config`. An argument of the model, not part of the checkpoint.
public enum AttentionMemory: Equatable, Sendable, CustomStringConvertible {
    /// At most this many positions (`memory_keep_tokens`).
    case tokens(Int)
    /// This fraction of the prefill's positions, at least one (`memory_keep_ratio`, in (0, 1]).
    case ratio(Double)

    /// The package's default: 128 tokens.
    public static let packageDefault = AttentionMemory.tokens(128)

    /// `tokens=N` or `ratio=R`, the notation of `--memory` and of the fixtures' metadata.
    public init(parsing text: String) throws {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        if parts.count == 2, parts[0] == "tokens", let n = Int(parts[1]), n > 0 {
            self = .tokens(n)
        } else if parts.count == 2, parts[0] == "ratio", let r = Double(parts[1]), r > 0, r <= 1 {
            self = .ratio(r)
        } else {
            throw RWKVError(nil, "memory setting \(Printable.escaped(text, limit: 80)) is neither tokens=N (N ≥ 1) nor ratio=R (0 < R ≤ 1)")
        }
    }

    public var description: String {
        switch self {
        case .tokens(let n): return "tokens=\(n)"
        case .ratio(let r): return "ratio=\(r)"
        }
    }

    /// Positions kept from a prefill of `t` tokens, as the package computes it.
    public func kept(of t: Int) -> Int {
        switch self {
        case .tokens(let n): return min(t, n)
        case .ratio(let r): return max(1, Int(Double(t) * r))
        }
    }
}

/// One step of an RWKV-X forward pass.
public enum HybridBlock: Equatable, Sendable {
    /// RWKV-7 blocks `range`, run one after the other.
    case rwkv(Range<Int>)
    /// Attention block `i`, which ranks positions by the RWKV-7 block just before it.
    case attention(Int)

    /// "RWKV-7 0-5", "attention 0": how reports name the step.
    public var label: String {
        switch self {
        case .rwkv(let r): return r.count == 1 ? "RWKV-7 \(r.lowerBound)" : "RWKV-7 \(r.lowerBound)-\(r.upperBound - 1)"
        case .attention(let i): return "attention \(i)"
        }
    }
}

extension RWKVConfig {
    /// The order the package runs the blocks in (`get_block_exe_order`): one attention block goes
    /// after all RWKV-7 blocks; A ≥ 2 go one after each group of L / A RWKV-7 blocks. A plain
    /// model is one group.
    public var blockOrder: [HybridBlock] {
        let a = attentionBlocks
        guard a > 0 else { return [.rwkv(0..<layerCount)] }
        if a == 1 { return [.rwkv(0..<layerCount), .attention(0)] }
        let step = layerCount / a
        return (0..<a).flatMap { [HybridBlock.rwkv($0 * step ..< ($0 + 1) * step), .attention($0)] }
    }

    /// The attention's heads (C / 64, as the package computes them) and their size.
    public var attentionHeads: (count: Int, size: Int) {
        let h = embeddingSize / RWKVXKey.headSize
        return (h, h > 0 ? embeddingSize / h : 0)
    }

    func validateRWKVX(path: String) throws {
        guard version == .v7 else { throw RWKVError(path, "RWKV-X attention blocks on an RWKV-\(version.rawValue): RWKV-X is built on RWKV-7") }
        // The package would silently skip the trailing RWKV-7 blocks (its interval is L // A).
        guard attentionBlocks == 1 || layerCount % attentionBlocks == 0 else {
            throw RWKVError(path, "RWKV-X with \(layerCount) RWKV-7 blocks and \(attentionBlocks) attention blocks: the depth must be a "
                                  + "multiple of the attention block count (the rwkv-x package would skip the last \(layerCount % attentionBlocks) blocks)")
        }
        let heads = attentionHeads
        guard heads.count >= 1, embeddingSize % heads.count == 0 else {
            throw RWKVError(path, "RWKV-X attention needs n_embd \(embeddingSize) to split into n_embd / \(RWKVXKey.headSize) equal heads")
        }
    }
}

// MARK: - The checkpoint

/// An RWKV-X checkpoint seen as its RWKV-7 (the `rwkv.` tensors under their usual names), so the
/// RWKV-7 schema, detection and loader read it unchanged; the attention blocks (`moba.{i}.`) are
/// checked here, once, against `RWKVXKey`'s shapes, and read through `attentionTensor`.
public final class RWKVXCheckpoint: TensorSource {
    public let base: TensorSource
    /// How many attention blocks the file holds (`moba.0.` … `moba.{A-1}.`).
    public let attentionBlocks: Int
    public var path: String { base.path }
    public var formatName: String { base.formatName + ", RWKV-X" }
    public let tensors: [TensorInfo]
    private let infos: [String: TensorInfo]

    /// Whether `source` holds an RWKV-X checkpoint (its embedding under `rwkv.`).
    public static func holdsRWKVX(_ source: TensorSource) -> Bool {
        source.info(RWKVXKey.rwkvPrefix + RWKV7Key.emb.name) != nil
    }

    /// `source` itself, or its RWKV-X view.
    public static func wrappingIfRWKVX(_ source: TensorSource) throws -> TensorSource {
        holdsRWKVX(source) ? try RWKVXCheckpoint(source) : source
    }

    public init(_ base: TensorSource) throws {
        self.base = base
        let path = base.path, prefix = RWKVXKey.rwkvPrefix
        var inner: [TensorInfo] = [], blocks = Set<Int>(), other: [String] = []
        for t in base.tensors {
            if t.name.hasPrefix(prefix) {
                inner.append(TensorInfo(name: String(t.name.dropFirst(prefix.count)), dtype: t.dtype, shape: t.shape))
            } else if let b = RWKVXKey.block(of: t.name), b >= 0, b < base.tensors.count {
                blocks.insert(b)
            } else {
                other.append(t.name)
            }
        }
        if let first = other.first {
            throw RWKVError(path, "tensor \(Printable.escaped(first, limit: 80))\(other.count > 1 ? " (and \(other.count - 1) more)" : "") "
                                  + "is not part of an RWKV-X checkpoint (rwkv.* and moba.N.* only)")
        }
        guard !blocks.isEmpty else { throw RWKVError(path, "RWKV-X checkpoint without attention blocks (no moba.0.*): save the RWKV-7 without the rwkv. prefix") }
        let count = blocks.max()! + 1
        guard blocks.count == count else {
            throw RWKVError(path, "RWKV-X attention blocks are numbered up to \(count - 1) but block \((0..<count).first { !blocks.contains($0) }!) is missing")
        }
        guard let emb = inner.first(where: { $0.name == RWKV7Key.emb.name }), emb.shape.count == 2 else {
            throw RWKVError(path, "tensor \(prefix + RWKV7Key.emb.name) must have 2 dimensions")
        }
        let c = emb.shape[1]
        var expected = Set<String>()
        for b in 0..<count {
            for key in RWKVXKey.allCases {
                let name = key.name(block: b)
                expected.insert(name)
                let info = try base.requiredInfo(name)
                guard info.shape == key.shape(embedding: c) else {
                    throw RWKVError(path, "tensor \(name) has shape \(info.shape), expected \(key.shape(embedding: c))")
                }
            }
        }
        if let extra = base.tensors.first(where: { RWKVXKey.block(of: $0.name) != nil && !expected.contains($0.name) }) {
            throw RWKVError(path, "tensor \(Printable.escaped(extra.name, limit: 80)) is not part of an RWKV-X attention block")
        }
        attentionBlocks = count
        tensors = inner
        infos = Dictionary(inner.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    public func info(_ name: String) -> TensorInfo? { infos[name] }
    public func data(_ name: String) throws -> [UInt8] {
        guard infos[name] != nil else { throw RWKVError(path, "no tensor named \(name)") }
        return try base.data(RWKVXKey.rwkvPrefix + name)
    }
    public func read(_ name: String, inPiecesOf pieceBytes: Int, using buffer: ReusableBuffer,
                     _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard infos[name] != nil else { throw RWKVError(path, "no tensor named \(name)") }
        try base.read(RWKVXKey.rwkvPrefix + name, inPiecesOf: pieceBytes, using: buffer, body)
    }

    /// Attention block `block`'s tensor `key`, widened to f32; a NaN or infinite value is refused.
    public func attentionTensor(_ key: RWKVXKey, block: Int) throws -> [Float] {
        let name = key.name(block: block)
        return try NonFiniteCount.checked(base.floats(name), path: path, tensor: name, advice: WeightLoader.nonFiniteAdvice)
    }
}

// MARK: - State and weights

/// What an attention block remembers between calls: the K/V rows it kept after the last prefill
/// (the package's `k_cache`/`v_cache`; decode attends to these only and adds nothing to them),
/// and its FFN's token shift.
public struct AttentionState: Equatable, Sendable {
    public let width: Int
    /// [rows][C] each.
    public var keys: [Float]
    public var values: [Float]
    /// The previous LN2 output (C).
    public var channelMixShift: [Float]

    public var rows: Int { keys.count / width }

    init(width: Int) {
        self.width = width
        keys = []
        values = []
        channelMixShift = [Float](repeating: 0, count: width)
    }
}

struct AttentionBlockWeights {
    let ln1, ln2: NormWeights
    let receptance, key, value, output: Linear
    let ffnLerp: FloatBuffer
    let ffnKey, ffnValue: Linear

    init(_ file: RWKVXCheckpoint, block b: Int, width c: Int) throws {
        func buffer(_ k: RWKVXKey) throws -> FloatBuffer { FloatBuffer(try file.attentionTensor(k, block: b)) }
        func linear(_ k: RWKVXKey) throws -> Linear {
            let s = k.shape(embedding: c)
            return Linear(inputs: s[1], outputs: s[0], layout: .outputsByInputs, weights: try buffer(k))
        }
        ln1 = NormWeights(weight: try buffer(.ln1Weight), bias: try buffer(.ln1Bias))
        ln2 = NormWeights(weight: try buffer(.ln2Weight), bias: try buffer(.ln2Bias))
        receptance = try linear(.receptance)
        key = try linear(.key)
        value = try linear(.value)
        output = try linear(.output)
        ffnLerp = try buffer(.ffnXK)
        ffnKey = try linear(.ffnKey)
        ffnValue = try linear(.ffnValue)
    }
}

// MARK: - The forward pass

/// RWKV-X forward pass, matching the `rwkv-x` package (cpu fp32). A call of several tokens is a
/// prefill: the RWKV-7 blocks run as usual, each attention block attends causally over the call's
/// tokens, then keeps as memory the K/V rows of the positions the RWKV-7 block before it
/// remembers worst (largest mean (v − Sᵀk)², S its state after the call), replacing what it kept
/// before. A call of one token is a decode: the query attends to the kept memory only.
/// `mode` chooses how the RWKV-7 blocks run (token by token or in blocks); the result is the same.
public final class RWKVXModel: RWKVLanguageModel {
    public let rwkv: RWKV7Model
    public let memory: AttentionMemory
    let attention: [AttentionBlockWeights]
    public var config: RWKVConfig { rwkv.config }
    public var path: String { rwkv.path }
    public var matmulObserver: MatmulObserver? {
        get { rwkv.matmulObserver }
        set { rwkv.matmulObserver = newValue }
    }
    public var layerInputObserver: LayerInputObserver? {
        get { rwkv.layerInputObserver }
        set { rwkv.layerInputObserver = newValue }
    }

    /// A prefill keeps only some positions, so splitting a sequence into calls changes the logits.
    public var logitsDependOnCalls: Bool { true }


    public init(_ file: RWKVXCheckpoint, memory: AttentionMemory = .packageDefault) throws {
        let loader = try WeightLoader(source: file)
        rwkv = try RWKV7Model(loader)
        let c = loader.config.embeddingSize
        attention = try (0..<loader.config.attentionBlocks).map { try AttentionBlockWeights(file, block: $0, width: c) }
        self.memory = memory
    }

    public func forward(_ tokens: [Int], state: inout RWKVState, mode: ForwardMode, positions: LogitPositions) throws -> Logits {
        let V = config.vocabSize, C = config.embeddingSize, T = tokens.count
        try checkCall(tokens, state: state)
        let wanted = positions == .all ? T : min(T, 1)
        var out = [Float](repeating: 0, count: wanted * V)
        guard T > 0 else { return Logits(vocabSize: V, values: out) }

        let x = FloatBuffer(count: T * C), vFirst = FloatBuffer(count: T * C)
        for (i, token) in tokens.enumerated() { (x.base + i * C).update(from: rwkv.embedding.base + token * C, count: C) }
        // The last RWKV-7 block before each attention block: its k and v for every token (prefill only).
        let captured = T > 1 ? (k: FloatBuffer(count: T * C), v: FloatBuffer(count: T * C)) : nil
        let block = mode == .rnn ? 1 : RWKV7Model.sequenceBlockSize
        let work = rwkv.workspace(rows: min(block, T))
        var attentionStates = state.attention
        state.withPointers { ptrs in
            for step in config.blockOrder {
                switch step {
                case .rwkv(let slots):
                    var start = 0
                    if let captured {
                        rwkv.recurrenceObserver = { slot, k, v, rows in
                            guard slot == slots.upperBound - 1 else { return }
                            (captured.k.base + start * C).update(from: k, count: rows * C)
                            (captured.v.base + start * C).update(from: v, count: rows * C)
                        }
                    }
                    defer { rwkv.recurrenceObserver = nil }
                    while start < T {
                        let rows = min(block, T - start)
                        work.x.base.update(from: x.base + start * C, count: rows * C)
                        work.vFirst.base.update(from: vFirst.base + start * C, count: rows * C)
                        rwkv.runLayers(rows: rows, work: work, state: ptrs, slots: slots)
                        (x.base + start * C).update(from: work.x.base, count: rows * C)
                        (vFirst.base + start * C).update(from: work.vFirst.base, count: rows * C)
                        start += rows
                    }
                case .attention(let i):
                    let previous = blockBefore(i)
                    var kept: [Int]? = nil
                    if let captured {
                        kept = Self.worstRemembered(keys: captured.k.base, values: captured.v.base, rows: T,
                                                    state: ptrs.matrices(previous), config: config, keep: memory.kept(of: T))
                    }
                    runAttention(i, x: x.base, rows: T, keep: kept, state: &attentionStates[i])
                }
            }
        }
        state.attention = attentionStates

        // ln_out and the head over the wanted rows, in the blocks the mode uses (as `runForward`
        // does: a GEMV per token in RNN mode), so a preserve upgrade equals its RWKV-7 bit for bit.
        let first = positions == .all ? 0 : T - 1
        let normed = FloatBuffer(count: min(block, T - first) * C)
        out.withUnsafeMutableBufferPointer { logits in
            var start = first
            while start < T {
                let n = min(block, T - start)
                Kernels.normalize(x.base + start * C, rows: n, width: C, rwkv.outputNorm, eps: Kernels.layerNormEpsilon, into: normed.base)
                rwkv.observe(config.schema.headName, rwkv.head, normed.base, rows: n)
                rwkv.head.apply(normed.base, rows: n, to: logits.baseAddress! + (start - first) * V)
                start += n
            }
        }
        state.tokenCount += T
        return Logits(vocabSize: V, values: out)
    }

    /// The state slot of the RWKV-7 block just before attention block `i`.
    private func blockBefore(_ i: Int) -> Int {
        let order = config.blockOrder
        let at = order.firstIndex(of: .attention(i))!
        guard case .rwkv(let slots) = order[at - 1] else { preconditionFailure("block order alternates") }
        return slots.upperBound - 1
    }

    /// The `keep` positions the RWKV-7 state S remembers worst, largest loss first: per token,
    /// mean over heads and channels of (v − v̂)² with v̂[j] = Σ_i S[i][j]·k[i] (the package's
    /// `einsum('hkv,thk->thv')` on S stored [value][key]: it contracts k with S's first index).
    static func worstRemembered(keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, rows T: Int,
                                state S: UnsafePointer<Float>, config: RWKVConfig, keep: Int) -> [Int] {
        let C = config.embeddingSize, N = config.headSize, H = config.headCount
        var loss = [Double](repeating: 0, count: T)
        var restored = [Float](repeating: 0, count: N)
        for t in 0..<T {
            var sum = 0.0
            for h in 0..<H {
                let kt = k + t * C + h * N, vt = v + t * C + h * N, Sh = S + h * N * N
                for j in 0..<N { restored[j] = 0 }
                for i in 0..<N {
                    let ki = kt[i], row = Sh + i * N
                    for j in 0..<N { restored[j] += row[j] * ki }
                }
                for j in 0..<N { let d = Double(vt[j] - restored[j]); sum += d * d }
            }
            loss[t] = sum / Double(C)
        }
        return Array((0..<T).sorted { loss[$0] != loss[$1] ? loss[$0] > loss[$1] : $0 < $1 }.prefix(keep))
    }

    /// Attention block `i` on the residual rows `x` (T × C), in place. With `keep` (a prefill):
    /// causal attention over these rows, then the kept positions' K/V become the memory. Without
    /// (a decode, one row): attention over the memory.
    private func runAttention(_ i: Int, x: UnsafeMutablePointer<Float>, rows T: Int, keep: [Int]?, state: inout AttentionState) {
        let W = attention[i], C = config.embeddingSize
        let xn = FloatBuffer(count: T * C), q = FloatBuffer(count: T * C), y = FloatBuffer(count: T * C)
        Kernels.normalize(x, rows: T, width: C, W.ln1, eps: Kernels.layerNormEpsilon, into: xn.base)
        W.receptance.apply(xn.base, rows: T, to: q.base)
        if let keep {
            let k = FloatBuffer(count: T * C), v = FloatBuffer(count: T * C)
            W.key.apply(xn.base, rows: T, to: k.base)
            W.value.apply(xn.base, rows: T, to: v.base)
            attend(q.base, rows: T, keys: k.base, values: v.base, memory: T, causal: true, into: y.base)
            state.keys = keep.flatMap { Array(UnsafeBufferPointer(start: k.base + $0 * C, count: C)) }
            state.values = keep.flatMap { Array(UnsafeBufferPointer(start: v.base + $0 * C, count: C)) }
        } else {
            state.keys.withUnsafeBufferPointer { k in
                state.values.withUnsafeBufferPointer { v in
                    attend(q.base, rows: T, keys: k.baseAddress ?? UnsafePointer(q.base), values: v.baseAddress ?? UnsafePointer(q.base),
                           memory: state.rows, causal: false, into: y.base)
                }
            }
        }
        W.output.apply(y.base, rows: T, to: x, accumulate: true)

        // FFN: relu(lerp · Kᵀ)² · Vᵀ with its own token shift, in blocks of rows (it is 4·C wide).
        let block = min(T, RWKV7Model.sequenceBlockSize)
        let shift = FloatBuffer(count: block * C), mixed = FloatBuffer(count: block * C)
        let hidden = FloatBuffer(count: block * W.ffnKey.outputs)
        Kernels.normalize(x, rows: T, width: C, W.ln2, eps: Kernels.layerNormEpsilon, into: xn.base)
        state.channelMixShift.withUnsafeMutableBufferPointer { previous in
            var start = 0
            while start < T {
                let rows = min(block, T - start)
                Kernels.tokenShift(xn.base + start * C, rows: rows, width: C, previous: previous.baseAddress!, into: shift.base)
                Kernels.lerp(xn.base + start * C, shift.base, mix: W.ffnLerp.base, rows: rows, width: C, into: mixed.base)
                W.ffnKey.apply(mixed.base, rows: rows, to: hidden.base)
                Kernels.applySquaredReLU(hidden.base, count: rows * W.ffnKey.outputs)
                W.ffnValue.apply(hidden.base, rows: rows, to: x + start * C, accumulate: true)
                start += rows
            }
        }
    }

    /// Attention over `M` key/value rows: causal within this call's rows (a prefill), or over all
    /// of the kept memory (a decode).
    private func attend(_ q: UnsafePointer<Float>, rows T: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>,
                        memory M: Int, causal: Bool, into y: UnsafeMutablePointer<Float>) {
        let (heads, hs) = config.attentionHeads
        Attention.attend(q, rows: T, keys: k, values: v, keyCount: M, heads: heads, headSize: hs, width: config.embeddingSize,
                         firstPosition: causal ? 0 : nil, into: y)
    }
}
