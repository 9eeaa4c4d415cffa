#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import RWKVFormats

/// The weights of an RWKV-6 model in f32, as the forward pass uses them.
public struct RWKV6Weights: @unchecked Sendable {
    struct Layer {
        /// The block's index in the checkpoint (its tensor names, what observers are told).
        let index: Int
        let ln1, ln2, lnX: NormWeights
        /// time_maa_x, and the base lerps time_maa_w, _k, _v, _r, _g (the order of the LoRA's five outputs).
        let maaX: FloatBuffer
        let maa: [FloatBuffer]
        /// time_maa_w1 (C → 5·Dm) and the five (Dm → C) matrices of time_maa_w2.
        let maaW1: Linear
        let maaW2: [Linear]
        let decay: FloatBuffer
        let decayW1, decayW2: Linear
        /// time_faaaa, the bonus u of the current token.
        let first: FloatBuffer
        let receptance, key, value, output: Linear
        /// nil for RWKV-5.0, which has no output gate.
        let gate: Linear?
        let ffnMaaK, ffnMaaR: FloatBuffer
        let ffnKey, ffnReceptance, ffnValue: Linear
    }

    public let config: RWKVConfig
    public let path: String
    /// `emb.weight` with `blocks.0.ln0` applied. When the checkpoint stores the embedding and
    /// ln0 in bf16 (or all in fp16), the official package runs that LayerNorm in the stored
    /// type, so the rows are rounded to it; we reproduce that rounding to match its logits.
    let embedding: FloatBuffer
    let layers: [Layer]
    let outputNorm: NormWeights
    let head: Linear

    public init(_ loader: WeightLoader) throws {
        let c = loader.config
        guard c.version == .v6 else { throw RWKVError(loader.path, "not an RWKV-6 model") }
        config = c
        path = loader.path
        embedding = try normalizedEmbedding(loader, roundTo: Self.embeddingRounding(loader))
        layers = try (0..<c.layerCount).map { try Self.layer($0, loader) }
        outputNorm = try loader.norm(RWKV6Key.lnOutWeight, .lnOutBias)
        head = try loader.matrix(RWKV6Key.head)
    }

    /// One block `i` (a model of that block alone: no embedding or head, state for one block).
    /// `rwkv-upgrade` runs a checkpoint this way, a block in memory at a time.
    public init(block i: Int, of loader: WeightLoader) throws {
        config = try loader.config.oneBlock(i, of: .v6, path: loader.path)
        path = loader.path
        layers = [try Self.layer(i, loader)]
        (embedding, outputNorm, head) = noEnds()
    }

    static func layer(_ i: Int, _ loader: WeightLoader) throws -> Layer {
        typealias K = RWKV6Key
        let c = loader.config
        let C = c.embeddingSize, Dm = c.tokenShiftRank
        func tensor(_ k: K) throws -> FloatBuffer { try loader.tensor(k, layer: i) }
        func matrix(_ k: K) throws -> Linear { try loader.matrix(k, layer: i) }
        let w2 = try tensor(.maaW2)
        return Layer(
            index: i,
            ln1: try loader.norm(K.ln1Weight, .ln1Bias, layer: i), ln2: try loader.norm(K.ln2Weight, .ln2Bias, layer: i),
            lnX: try loader.norm(K.lnXWeight, .lnXBias, layer: i),
            maaX: try tensor(.maaX),
            maa: try K.lerps.map(tensor),
            maaW1: try matrix(.maaW1),
            maaW2: (0..<5).map { Linear(inputs: Dm, outputs: C, layout: .inputsByOutputs, weights: w2, offset: $0 * Dm * C) },
            decay: try tensor(.decay), decayW1: try matrix(.decayW1), decayW2: try matrix(.decayW2),
            first: try tensor(.faaaa),
            receptance: try matrix(.receptance), key: try matrix(.key), value: try matrix(.value), output: try matrix(.output),
            gate: c.hasGate ? try matrix(.gate) : nil,
            ffnMaaK: try tensor(.ffnMaaK), ffnMaaR: try tensor(.ffnMaaR),
            ffnKey: try matrix(.ffnKey), ffnReceptance: try matrix(.ffnReceptance), ffnValue: try matrix(.ffnValue))
    }

    /// The official package applies ln0 to the embedding before widening anything to fp32
    /// (`F.layer_norm(w['emb.weight'], ...)` on the stored tensors, falling back to float only if
    /// that fails). torch's LayerNorm on bf16/fp16 tensors computes in float and rounds the result
    /// to the input type; with mixed types it fails and the float fallback runs.
    static func embeddingRounding(_ loader: WeightLoader) -> DType? {
        let types = [RWKV6Key.emb.name, RWKV6Key.ln0Weight.name(layer: 0), RWKV6Key.ln0Bias.name(layer: 0)].map { loader.storedDType($0) }
        guard let first = types[0], first == .bf16 || first == .f16, types.allSatisfy({ $0 == first }) else { return nil }
        return first
    }
}

/// RWKV-6 ("Finch") forward pass, matching the official `rwkv` package's v6.0 path (cpu fp32).
/// Not thread-safe: one forward call at a time per instance (it reuses its scratch space).
public final class RWKV6Model: LayerStack {
    public let weights: RWKV6Weights
    public var config: RWKVConfig { weights.config }
    public var path: String { weights.path }
    var embedding: FloatBuffer { weights.embedding }
    var outputNorm: NormWeights { weights.outputNorm }
    var head: Linear { weights.head }
    private var cachedWorkspace: Workspace?
    public var matmulObserver: MatmulObserver?
    /// Sees each block's LayerNorm outputs (nil: none, the default).
    public var layerInputObserver: LayerInputObserver?

    public init(weights: RWKV6Weights) { self.weights = weights }

    /// GroupNorm's ε on the time mix's readout (ln_x: 1e-5 × head_size_divisor² with divisor 8).
    public static var groupNormEpsilon: Float { Kernels.groupNormEpsilon }
    public convenience init(_ loader: WeightLoader) throws { self.init(weights: try RWKV6Weights(loader)) }

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
        let C = config.embeddingSize
        let x = work.x.base, xn = work.xn.base, shift = work.shift.base, y = work.y.base, g = work.g.base
        let xk = work.mixes[2].base, xr = work.mixes[4].base

        for (slot, L) in weights.layers.enumerated() {
            let l = L.index
            Kernels.normalize(x, rows: T, width: C, L.ln1, eps: Kernels.layerNormEpsilon, into: xn)
            layerInputObserver?.observe(layer: l, part: .timeMix, input: xn, rows: T, width: C)
            timeMixReadout(L, slot: slot, rows: T, work: work, state: state)
            layerInputObserver?.observe(layer: l, part: .timeMixReadout, input: y, rows: T, width: C)
            Kernels.normalize(y, rows: T, width: C, groups: config.headCount, L.lnX, eps: Kernels.groupNormEpsilon, into: y)
            Kernels.multiply(y, by: g, count: T * C)
            observe(RWKV6Key.output.name(layer: l), L.output, y, rows: T)
            L.output.apply(y, rows: T, to: x, accumulate: true)

            // Channel mix: sigmoid(xr · Rᵀ) ⊙ (relu(xk · Kᵀ)² · Vᵀ).
            Kernels.normalize(x, rows: T, width: C, L.ln2, eps: Kernels.layerNormEpsilon, into: xn)
            layerInputObserver?.observe(layer: l, part: .channelMix, input: xn, rows: T, width: C)
            Kernels.tokenShift(xn, rows: T, width: C, previous: state.channelMix(slot), into: shift)
            Kernels.lerp(xn, shift, mix: L.ffnMaaK.base, rows: T, width: C, into: xk)
            Kernels.lerp(xn, shift, mix: L.ffnMaaR.base, rows: T, width: C, into: xr)
            observe(RWKV6Key.ffnReceptance.name(layer: l), L.ffnReceptance, xr, rows: T)
            L.ffnReceptance.apply(xr, rows: T, to: work.ffnGate.base)
            Kernels.applySigmoid(work.ffnGate.base, count: T * C)
            observe(RWKV6Key.ffnKey.name(layer: l), L.ffnKey, xk, rows: T)
            L.ffnKey.apply(xk, rows: T, to: work.ffn.base)
            Kernels.applySquaredReLU(work.ffn.base, count: T * config.ffnSize)
            observe(RWKV6Key.ffnValue.name(layer: l), L.ffnValue, work.ffn.base, rows: T)
            L.ffnValue.apply(work.ffn.base, rows: T, to: y)
            Kernels.multiply(y, by: work.ffnGate.base, count: T * C)
            Kernels.add(y, to: x, count: T * C)
        }
    }

    /// Block `l`'s time mix from its LayerNorm outputs (work.xn) up to the WKV readout before
    /// GroupNorm (work.y), with the silu gate in work.g.
    private func timeMixReadout(_ L: RWKV6Weights.Layer, slot: Int, rows T: Int, work: Workspace, state: StatePointers) {
        let C = config.embeddingSize, Dm = config.tokenShiftRank
        let xn = work.xn.base, shift = work.shift.base
        let r = work.r.base, k = work.k.base, v = work.v.base, w = work.w.base, g = work.g.base
        let lora = work.lora.base
        // mixes[0] holds xxx, then mixes[1...5] the w, k, v, r, g inputs.
        let xxx = work.mixes[0].base
        let xw = work.mixes[1].base, xk = work.mixes[2].base, xv = work.mixes[3].base
        let xr = work.mixes[4].base, xg = work.mixes[5].base
        Kernels.tokenShift(xn, rows: T, width: C, previous: state.timeMix(slot), into: shift)
        Kernels.lerp(xn, shift, mix: L.maaX.base, rows: T, width: C, into: xxx)
        let l = L.index
        observe(RWKV6Key.maaW1.name(layer: l), L.maaW1, xxx, rows: T)
        L.maaW1.apply(xxx, rows: T, to: lora)
        Kernels.applyTanh(lora, count: T * 5 * Dm)
        for i in 0..<5 {
            let out = work.mixes[i + 1].base
            // time_maa_w2 goes unobserved: llama.cpp multiplies it as a batch of 5 matrices
            // with one row per token and matrix, which llama-imatrix skips (fewer than 16 rows).
            L.maaW2[i].apply(lora + i * Dm, rows: T, xStride: 5 * Dm, to: out)
            let maa = L.maa[i].base
            for t in 0..<T {
                let o = t * C
                for c in 0..<C { out[o + c] = xn[o + c] + shift[o + c] * (maa[c] + out[o + c]) }
            }
        }
        observe(RWKV6Key.receptance.name(layer: l), L.receptance, xr, rows: T)
        L.receptance.apply(xr, rows: T, to: r)
        observe(RWKV6Key.key.name(layer: l), L.key, xk, rows: T)
        L.key.apply(xk, rows: T, to: k)
        observe(RWKV6Key.value.name(layer: l), L.value, xv, rows: T)
        L.value.apply(xv, rows: T, to: v)
        if let gate = L.gate {
            observe(RWKV6Key.gate.name(layer: l), gate, xg, rows: T)
            gate.apply(xg, rows: T, to: g)
            for i in 0..<T * C { g[i] = g[i] * Kernels.sigmoid(g[i]) }   // silu
        } else {
            g.update(repeating: 1, count: T * C)
        }
        observe(RWKV6Key.decayW1.name(layer: l), L.decayW1, xw, rows: T)
        L.decayW1.apply(xw, rows: T, to: lora)
        Kernels.applyTanh(lora, count: T * config.decayRank)
        observe(RWKV6Key.decayW2.name(layer: l), L.decayW2, lora, rows: T)
        L.decayW2.apply(lora, rows: T, to: w)
        let decay = L.decay.base
        for t in 0..<T {
            for c in 0..<C { w[t * C + c] = expf(-expf(decay[c] + w[t * C + c])) }
        }
        recurrence(L, slot: slot, rows: T, work: work, state: state)
    }

    /// Block `layer`'s time mix run over a sequence of its LayerNorm outputs (`inputs`, one row of
    /// C per token, from the zero state): each token's WKV readout before GroupNorm, row by row.
    /// `rwkv-upgrade` fits RWKV-7's bonus to the spread GroupNorm divides these by.
    public func timeMixReadout(layer: Int, inputs: [Float]) throws -> [Float] {
        let C = config.embeddingSize
        guard let slot = weights.layers.firstIndex(where: { $0.index == layer }), inputs.count % C == 0 else {
            throw RWKVError(path, "internal error: no time mix of block \(layer) over \(inputs.count) values")
        }
        let T = inputs.count / C, block = Self.sequenceBlockSize
        var state = makeState(), out = [Float](repeating: 0, count: inputs.count)
        let work = workspace(rows: min(block, max(T, 1)))
        state.withPointers { ptrs in
            var start = 0
            while start < T {
                let rows = min(block, T - start)
                inputs.withUnsafeBufferPointer { work.xn.base.update(from: $0.baseAddress! + start * C, count: rows * C) }
                timeMixReadout(weights.layers[slot], slot: slot, rows: rows, work: work, state: ptrs)
                out.withUnsafeMutableBufferPointer { ($0.baseAddress! + start * C).update(from: work.y.base, count: rows * C) }
                start += rows
            }
        }
        return out
    }

    /// Per token and head, with S[i][j] (key i, value j):
    /// y_j = Σ_i r_i (u_i k_i v_j + S_ij);  S_ij ← k_i v_j + w_i S_ij.
    private func recurrence(_ L: RWKV6Weights.Layer, slot: Int, rows T: Int, work: Workspace, state: StatePointers) {
        let C = config.embeddingSize, N = config.headSize
        let r = work.r.base, k = work.k.base, v = work.v.base, w = work.w.base, y = work.y.base
        let u = L.first.base
        let matrices = state.matrices(slot)
        for t in 0..<T {
            for h in 0..<config.headCount {
                let o = t * C + h * N
                let S = matrices + h * N * N
                let rt = r + o, kt = k + o, vt = v + o, wt = w + o, yt = y + o, ut = u + h * N
                yt.update(repeating: 0, count: N)
                for i in 0..<N {
                    let ri = rt[i], ki = kt[i]
                    Kernels.updateRowV6(S + i * N, readOut: yt, r: ri, bonus: ri * ut[i] * ki, k: ki, decay: wt[i], values: vt, count: N)
                }
            }
        }
    }
}
