#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import RWKVFormats

/// The weights of an RWKV-7 model in f32, as the forward pass uses them.
public struct RWKV7Weights: @unchecked Sendable {
    struct Layer {
        /// The block's index in the checkpoint (its tensor names, what observers are told).
        let index: Int
        let ln1, ln2, lnX: NormWeights
        /// x_r, x_w, x_k, x_v, x_a, x_g.
        let lerps: [FloatBuffer]
        let w0, a0, kK, kA, rK: FloatBuffer
        let w1, w2, a1, a2, g1, g2: Linear
        /// v0, v1, v2; nil in layer 0, whose value-residual tensors the official package ignores.
        let valueResidual: (v0: FloatBuffer, v1: Linear, v2: Linear)?
        let receptance, key, value, output: Linear
        let ffnLerp: FloatBuffer
        let ffnKey, ffnValue: Linear
    }

    public let config: RWKVConfig
    public let path: String
    /// `emb.weight` with `blocks.0.ln0` already applied, as the official package precomputes it.
    let embedding: FloatBuffer
    let layers: [Layer]
    let outputNorm: NormWeights
    let head: Linear

    public init(_ loader: WeightLoader) throws {
        let c = loader.config
        guard c.version == .v7 else { throw RWKVError(loader.path, "not an RWKV-7 model") }
        config = c
        path = loader.path
        embedding = try normalizedEmbedding(loader, roundTo: nil)
        layers = try (0..<c.layerCount).map { try Self.layer($0, loader) }
        outputNorm = try loader.norm(RWKV7Key.lnOutWeight, .lnOutBias)
        head = try loader.matrix(RWKV7Key.head)
    }

    /// One block `i` (a model of that block alone: no embedding or head, state for one block).
    public init(block i: Int, of loader: WeightLoader) throws {
        config = try loader.config.oneBlock(i, of: .v7, path: loader.path)
        path = loader.path
        layers = [try Self.layer(i, loader)]
        (embedding, outputNorm, head) = noEnds()
    }

    static func layer(_ i: Int, _ loader: WeightLoader) throws -> Layer {
        typealias K = RWKV7Key
        func tensor(_ k: K) throws -> FloatBuffer { try loader.tensor(k, layer: i) }
        func matrix(_ k: K) throws -> Linear { try loader.matrix(k, layer: i) }
        return Layer(
            index: i,
            ln1: try loader.norm(K.ln1Weight, .ln1Bias, layer: i), ln2: try loader.norm(K.ln2Weight, .ln2Bias, layer: i),
            lnX: try loader.norm(K.lnXWeight, .lnXBias, layer: i),
            lerps: try K.lerps.map(tensor),
            w0: try tensor(.w0), a0: try tensor(.a0), kK: try tensor(.kK), kA: try tensor(.kA), rK: try tensor(.rK),
            w1: try matrix(.w1), w2: try matrix(.w2), a1: try matrix(.a1), a2: try matrix(.a2), g1: try matrix(.g1), g2: try matrix(.g2),
            valueResidual: i == 0 ? nil : (try tensor(.v0), try matrix(.v1), try matrix(.v2)),
            receptance: try matrix(.receptance), key: try matrix(.key), value: try matrix(.value), output: try matrix(.output),
            ffnLerp: try tensor(.ffnXK), ffnKey: try matrix(.ffnKey), ffnValue: try matrix(.ffnValue))
    }
}

/// RWKV-7 ("Goose") forward pass, matching the official `rwkv` package's `RWKV_x070` (cpu fp32).
/// Not thread-safe: one forward call at a time per instance (it reuses its scratch space).
public final class RWKV7Model: LayerStack {
    public let weights: RWKV7Weights
    public var config: RWKVConfig { weights.config }
    public var path: String { weights.path }
    var embedding: FloatBuffer { weights.embedding }
    var outputNorm: NormWeights { weights.outputNorm }
    var head: Linear { weights.head }
    private var cachedWorkspace: Workspace?
    public var matmulObserver: MatmulObserver?
    /// Sees each block's LayerNorm outputs (nil: none, the default).
    public var layerInputObserver: LayerInputObserver?
    /// Sees each block's keys (after the k_a scaling) and values (after the value residual) as
    /// the state update reads them: (state slot, k, v, rows). RWKV-X ranks its memory by them.
    var recurrenceObserver: ((Int, UnsafePointer<Float>, UnsafePointer<Float>, Int) -> Void)?

    /// The decay's scale: w = exp(-0.606531 · sigmoid(·)), the literal the official code uses (≈ e^-0.5).
    static let decayScale: Float = 0.606531
    /// `F.normalize` eps for kk.
    static let normalizeEpsilon: Float = 1e-12

    public init(weights: RWKV7Weights) { self.weights = weights }
    public convenience init(_ loader: WeightLoader) throws { self.init(weights: try RWKV7Weights(loader)) }

    public func forward(_ tokens: [Int], state: inout RWKVState, mode: ForwardMode, positions: LogitPositions) throws -> Logits {
        try runForward(tokens, state: &state, mode: mode, positions: positions)
    }

    func workspace(rows: Int) -> Workspace {
        if let w = cachedWorkspace, w.rows >= rows { return w }
        let w = Workspace(rows: rows, config: config)
        cachedWorkspace = w
        return w
    }

    func runLayers(rows T: Int, work: Workspace, state: StatePointers) {
        runLayers(rows: T, work: work, state: state, slots: weights.layers.indices)
    }

    /// Runs the blocks in state slots `slots` only (RWKV-X runs its groups of blocks apart).
    func runLayers(rows T: Int, work: Workspace, state: StatePointers, slots: Range<Int>) {
        let C = config.embeddingSize
        let x = work.x.base, xn = work.xn.base, shift = work.shift.base, y = work.y.base
        let r = work.r.base, k = work.k.base, v = work.v.base, w = work.w.base, a = work.a.base, g = work.g.base
        let lora = work.lora.base
        let xr = work.mixes[0].base, xw = work.mixes[1].base, xk = work.mixes[2].base
        let xv = work.mixes[3].base, xa = work.mixes[4].base, xg = work.mixes[5].base

        for slot in slots {
            let L = weights.layers[slot], l = L.index
            // Time mix: token-shifted interpolations, then every projection as one GEMM over the block.
            Kernels.normalize(x, rows: T, width: C, L.ln1, eps: Kernels.layerNormEpsilon, into: xn)
            layerInputObserver?.observe(layer: l, part: .timeMix, input: xn, rows: T, width: C)
            Kernels.tokenShift(xn, rows: T, width: C, previous: state.timeMix(slot), into: shift)
            for (i, mix) in L.lerps.enumerated() {
                Kernels.lerp(xn, shift, mix: mix.base, rows: T, width: C, into: work.mixes[i].base)
            }
            observe(RWKV7Key.receptance.name(layer: l), L.receptance, xr, rows: T)
            L.receptance.apply(xr, rows: T, to: r)
            observe(RWKV7Key.key.name(layer: l), L.key, xk, rows: T)
            L.key.apply(xk, rows: T, to: k)
            observe(RWKV7Key.value.name(layer: l), L.value, xv, rows: T)
            L.value.apply(xv, rows: T, to: v)
            observe(RWKV7Key.w1.name(layer: l), L.w1, xw, rows: T)
            L.w1.apply(xw, rows: T, to: lora)
            Kernels.applyTanh(lora, count: T * L.w1.outputs)
            observe(RWKV7Key.w2.name(layer: l), L.w2, lora, rows: T)
            L.w2.apply(lora, rows: T, to: w)
            observe(RWKV7Key.a1.name(layer: l), L.a1, xa, rows: T)
            L.a1.apply(xa, rows: T, to: lora)
            observe(RWKV7Key.a2.name(layer: l), L.a2, lora, rows: T)
            L.a2.apply(lora, rows: T, to: a)
            observe(RWKV7Key.g1.name(layer: l), L.g1, xg, rows: T)
            L.g1.apply(xg, rows: T, to: lora)
            Kernels.applySigmoid(lora, count: T * L.g1.outputs)
            observe(RWKV7Key.g2.name(layer: l), L.g2, lora, rows: T)
            L.g2.apply(lora, rows: T, to: g)
            if let vr = L.valueResidual {
                observe(RWKV7Key.v1.name(layer: l), vr.v1, xv, rows: T)
                vr.v1.apply(xv, rows: T, to: lora)
                observe(RWKV7Key.v2.name(layer: l), vr.v2, lora, rows: T)
                vr.v2.apply(lora, rows: T, to: work.vGate.base)
            }
            prepareKeysAndValues(L, rows: T, work: work)
            recurrenceObserver?(slot, k, v, T)
            recurrence(slot: slot, rows: T, work: work, state: state)

            Kernels.normalize(y, rows: T, width: C, groups: config.headCount, L.lnX, eps: Kernels.groupNormEpsilon, into: y)
            addBonus(L, rows: T, work: work)
            Kernels.multiply(y, by: g, count: T * C)
            observe(RWKV7Key.output.name(layer: l), L.output, y, rows: T)
            L.output.apply(y, rows: T, to: x, accumulate: true)

            // Channel mix: relu(lerp · Kᵀ)² · Vᵀ.
            Kernels.normalize(x, rows: T, width: C, L.ln2, eps: Kernels.layerNormEpsilon, into: xn)
            layerInputObserver?.observe(layer: l, part: .channelMix, input: xn, rows: T, width: C)
            Kernels.tokenShift(xn, rows: T, width: C, previous: state.channelMix(slot), into: shift)
            Kernels.lerp(xn, shift, mix: L.ffnLerp.base, rows: T, width: C, into: xr)
            observe(RWKV7Key.ffnKey.name(layer: l), L.ffnKey, xr, rows: T)
            L.ffnKey.apply(xr, rows: T, to: work.ffn.base)
            Kernels.applySquaredReLU(work.ffn.base, count: T * config.ffnSize)
            observe(RWKV7Key.ffnValue.name(layer: l), L.ffnValue, work.ffn.base, rows: T)
            L.ffnValue.apply(work.ffn.base, rows: T, to: x, accumulate: true)
        }
    }

    /// Per channel: in-context learning rate a, decay w, normalised removal key kk, the key
    /// scaled by a, and the value residual mixed towards layer 0's values.
    /// Leaves `a` holding kk·a, the "replacement" vector of the state update.
    private func prepareKeysAndValues(_ L: RWKV7Weights.Layer, rows T: Int, work: Workspace) {
        let C = config.embeddingSize, N = config.headSize
        let k = work.k.base, v = work.v.base, w = work.w.base, a = work.a.base, kk = work.kk.base
        let vFirst = work.vFirst.base, vGate = work.vGate.base
        let w0 = L.w0.base, a0 = L.a0.base, kK = L.kK.base, kA = L.kA.base
        let v0 = L.valueResidual?.v0.base
        for t in 0..<T {
            let o = t * C
            for c in 0..<C {
                let ac = Kernels.sigmoid(a0[c] + a[o + c])
                w[o + c] = expf(-Self.decayScale * Kernels.sigmoid(w0[c] + w[o + c]))
                kk[o + c] = k[o + c] * kK[c]
                k[o + c] = k[o + c] * (1 + (ac - 1) * kA[c])
                a[o + c] = ac
                if let v0 {
                    v[o + c] = v[o + c] + (vFirst[o + c] - v[o + c]) * Kernels.sigmoid(v0[c] + vGate[o + c])
                } else {
                    vFirst[o + c] = v[o + c]   // layer 0: its values are the residual every later layer mixes in
                }
            }
            // kk = F.normalize(k * k_k) per head: x / max(‖x‖₂, eps).
            for h in stride(from: o, to: o + C, by: N) {
                var sq: Float = 0
                for j in 0..<N { sq += kk[h + j] * kk[h + j] }
                let inv = 1 / max(sq.squareRoot(), Self.normalizeEpsilon)
                for j in 0..<N {
                    kk[h + j] *= inv
                    a[h + j] *= kk[h + j]
                }
            }
        }
    }

    /// Per token and head, with S[i][j] (value i, key j):
    /// S ← S·diag(w) + (S·(-kk)) (kk·a)ᵀ + v kᵀ;  y = S r.
    private func recurrence(slot: Int, rows T: Int, work: Workspace, state: StatePointers) {
        let C = config.embeddingSize, N = config.headSize
        let r = work.r.base, k = work.k.base, v = work.v.base, w = work.w.base, b = work.a.base
        let kk = work.kk.base, y = work.y.base
        let matrices = state.matrices(slot)
        for t in 0..<T {
            for h in 0..<config.headCount {
                let o = t * C + h * N
                let S = matrices + h * N * N
                let rt = r + o, kt = k + o, vt = v + o, wt = w + o, bt = b + o, kkt = kk + o
                for i in 0..<N {
                    let row = S + i * N
                    let sa = -Kernels.dot(row, kkt, count: N)
                    y[o + i] = Kernels.updateRow(row, decay: wt, sa, bt, vt[i], kt, readOut: rt, count: N)
                }
            }
        }
    }

    /// y += (Σ_j r_j k_j r_k_j) v per head: the current token's direct contribution.
    private func addBonus(_ L: RWKV7Weights.Layer, rows T: Int, work: Workspace) {
        let C = config.embeddingSize, N = config.headSize
        let r = work.r.base, k = work.k.base, v = work.v.base, y = work.y.base, rK = L.rK.base
        for t in 0..<T {
            for h in 0..<config.headCount {
                let o = t * C + h * N
                var s: Float = 0
                for j in 0..<N { s += r[o + j] * k[o + j] * rK[h * N + j] }
                for j in 0..<N { y[o + j] += s * v[o + j] }
            }
        }
    }
}

/// `emb.weight` normalised by `blocks.0.ln0`, optionally rounded to a half type (see RWKV-6).
func normalizedEmbedding(_ loader: WeightLoader, roundTo half: DType?) throws -> FloatBuffer {
    let c = loader.config
    let emb = try loader.embedding()
    let ln0 = try loader.ln0()
    Kernels.normalize(emb.base, rows: c.vocabSize, width: c.embeddingSize, ln0, eps: Kernels.layerNormEpsilon, into: emb.base)
    if let half {
        var overflow = 0
        let rounded = try ElementCodec.decode(try ElementCodec.encode(emb.array, as: half, overflowCount: &overflow),
                                              as: half, count: emb.count, context: loader.path)
        return FloatBuffer(rounded)
    }
    return emb
}
