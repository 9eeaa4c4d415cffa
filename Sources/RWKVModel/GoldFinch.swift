#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import RWKVFormats

// GoldFinch (Goldstein et al. 2024, arXiv 2407.12077; github recursal/GoldFinch-paper): Finch
// layers (Finch-C2, or plain Finch as its upgrade configuration keeps them) with GOLD attention
// layers on top, whose keys all come from one compressed cache made at the last Finch layer.
// Computed as the repository's model code does (`src/model.py`, `tmix/tmix_x060c2.py`,
// `tmix/tmix_x060.py`, `tmix/tmix_gold.py`, `cmix/cmix_x060.py`); docs/formats-reading.md,
// "GoldFinch", has the facts and their sources.

/// A GoldFinch checkpoint's hyperparameters, read from its keys and shapes (it stores no configuration).
public struct GoldFinchConfig: Codable, Equatable, Sendable {
    /// Each block's kind, bottom up: Finch (x060 or C2) layers, then GOLD layers.
    public var layers: [GoldFinchLayer]
    public var embeddingSize: Int
    public var headSize: Int
    public var vocabSize: Int
    public var ffnSize: Int
    /// Finch layers: the token-shift LoRA rank per target and the decay LoRA rank; C2: the second value path's rank.
    public var tokenShiftRank: Int
    public var decayRank: Int
    public var value2Rank: Int
    /// GOLD layers: the query shift LoRA, the key/value shift LoRA (per stream) and the key/value LoRA ranks.
    public var queryRank: Int
    public var keyValueShiftRank: Int
    public var keyValueRank: Int
    /// The compressed key cache's width (C/16 in the published models); 0 without GOLD layers.
    public var compressedSize: Int

    public init(layers: [GoldFinchLayer], embeddingSize: Int, headSize: Int, vocabSize: Int, ffnSize: Int, tokenShiftRank: Int,
                decayRank: Int, value2Rank: Int, queryRank: Int, keyValueShiftRank: Int, keyValueRank: Int, compressedSize: Int) {
        self.layers = layers
        self.embeddingSize = embeddingSize
        self.headSize = headSize
        self.vocabSize = vocabSize
        self.ffnSize = ffnSize
        self.tokenShiftRank = tokenShiftRank
        self.decayRank = decayRank
        self.value2Rank = value2Rank
        self.queryRank = queryRank
        self.keyValueShiftRank = keyValueShiftRank
        self.keyValueRank = keyValueRank
        self.compressedSize = compressedSize
    }

    public var headCount: Int { embeddingSize / headSize }
    /// The first GOLD layer (the repository's `get_second_submodel_layer_id`); the layer count without any.
    public var split: Int { layers.firstIndex(of: .gold) ?? layers.count }

    /// Floats kept per token of context (besides its token id): our state (the compressed key row),
    /// the repository's (the decompressed row), and a transformer of the same depth and width (K and V per layer).
    public var cachePerToken: (ours: Int, repository: Int, transformer: Int) {
        (compressedSize, layers.contains(.gold) ? embeddingSize : 0, 2 * layers.count * embeddingSize)
    }

    /// "4 Finch-C2 + 2 GOLD layers": the kinds bottom up, runs of one kind counted.
    public static func describe(_ kinds: [String]) -> String {
        var runs: [(String, Int)] = []
        for k in kinds { if runs.last?.0 == k { runs[runs.count - 1].1 += 1 } else { runs.append((k, 1)) } }
        return runs.map { "\($0.1) \(GoldFinchLayer(rawValue: $0.0)?.displayName ?? $0.0)" }.joined(separator: " + ") + " layers"
    }

    /// Refuses sizes beyond what the tools read (`RWKVConfig.limits`), for a file or for an upgrade's result.
    public func validate(path: String) throws {
        try summary.validate(path: path)
        let ranks = [value2Rank, queryRank, keyValueShiftRank, keyValueRank, compressedSize]
        guard ranks.allSatisfy({ $0 <= RWKVConfig.limits.rank }) else { throw RWKVError(path, "a GoldFinch LoRA rank is above \(RWKVConfig.limits.rank)") }
    }

    /// The configuration the RWKV tools see: an RWKV-6 of this depth and width (for sizes in reports).
    var summary: RWKVConfig {
        RWKVConfig(version: .v6, layerCount: layers.count, embeddingSize: embeddingSize, headSize: headSize, vocabSize: vocabSize,
                   ffnSize: ffnSize, decayRank: decayRank, tokenShiftRank: tokenShiftRank)
    }

    /// The shape of tensor `name` (block-relative, or model-level) in a block of `kind`.
    func shape(_ name: String) -> [Int]? {
        let c = embeddingSize
        if let key = GoldFinchKey(rawValue: name) {
            switch key {
            case .maaV2, .maaQ, .maaVCache: return [1, 1, c]
            case .value2W1: return [c, value2Rank]
            case .value2W2: return [value2Rank, c]
            case .maaQW1: return [c, queryRank]
            case .maaQW2: return [queryRank, c]
            case .maaKVW1: return [c, 2 * keyValueShiftRank]
            case .maaKVW2: return [2, keyValueShiftRank, c]
            case .keyW1, .valueW1: return [c, keyValueRank]
            case .keyW2, .valueW2: return [keyValueRank, c]
            case .query: return [c, c]
            case .lnQWeight, .lnQBias, .lnKWeight, .lnKBias, .lnVWeight, .lnVBias: return [c]
            case .kvCacheA: return [compressedSize, c]
            case .kvCacheB: return [c, c + compressedSize]
            }
        }
        return RWKV6Key(rawValue: name).map { summary.shape($0.spec.shape) }
    }

    /// Every tensor of a checkpoint of this configuration, in the repository's order, with its shape.
    public var expectedShapes: [(name: String, shape: [Int])] {
        var out = [(RWKV6Key.emb.name, [vocabSize, embeddingSize])]
        for (i, kind) in layers.enumerated() {
            out += kind.keys(layer: i).map { (TensorSpec.blockPrefix + "\(i)." + $0, shape($0)!) }
        }
        out += [(RWKV6Key.lnOutWeight.name, [embeddingSize]), (RWKV6Key.lnOutBias.name, [embeddingSize]),
                (RWKV6Key.head.name, [vocabSize, embeddingSize])]
        if layers.contains(.gold) {
            out += [GoldFinchKey.kvCacheA, .kvCacheB].map { ($0.rawValue, shape($0.rawValue)!) }
        }
        return out
    }
}

/// A GoldFinch checkpoint, checked once, before anything is read: every block exactly one kind
/// with all its tensors in their shapes, the GOLD layers a contiguous top above at least one
/// Finch layer, the cache projections present exactly when there are GOLD layers, nothing else.
public struct GoldFinchCheckpoint {
    public let source: TensorSource
    public let config: GoldFinchConfig

    /// Whether `source` holds a GoldFinch (a Finch-C2 or GOLD block, or the key cache projections).
    public static func holdsGoldFinch(_ source: TensorSource) -> Bool {
        source.info(GoldFinchKey.kvCacheA.rawValue) != nil || source.tensors.contains {
            $0.name.hasSuffix("." + GoldFinchKey.maaV2.rawValue) || $0.name.hasSuffix("." + GoldFinchKey.query.rawValue)
        }
    }

    /// What every RWKV-6/7 writer (GGUF, exports, importance matrices) says to a GoldFinch.
    public static func notRWKV(_ path: String) -> RWKVError {
        RWKVError(path, "GoldFinch checkpoint (Finch with GOLD attention layers): llama.cpp has no GoldFinch architecture "
                        + "and the RWKV-6/7 layouts have no place for its GOLD layers (rwkv-convert inspect and rwkv-verify read it)")
    }

    public init(_ source: TensorSource) throws {
        self.source = source
        let path = source.path
        func shape(_ name: String) throws -> [Int] { try source.requiredInfo(name).shape }
        func dims(_ name: String, _ count: Int) throws -> [Int] {
            let s = try shape(name)
            guard s.count == count, s.allSatisfy({ $0 >= 1 }) else {
                throw RWKVError(path, "tensor \(name) has shape \(s), expected \(count) dimensions of at least 1")
            }
            return s
        }
        let layerCount = try TensorSpec.blockCount(of: source)
        guard layerCount > 0 else { throw RWKVError(path, "GoldFinch checkpoint without blocks") }
        let layers = try (0..<layerCount).map { i -> GoldFinchLayer in
            let kinds = GoldFinchLayer.allCases.filter { source.info(TensorSpec.blockPrefix + "\(i)." + $0.marker) != nil }
            guard kinds.count == 1 else {
                let all = GoldFinchLayer.allCases.map { "\($0.displayName) (\($0.marker))" }
                throw RWKVError(path, "block \(i) is \(kinds.isEmpty ? "none" : "more than one") of \(all[0]), \(all[1]) and \(all[2])")
            }
            return kinds[0]
        }
        let split = layers.firstIndex(of: .gold) ?? layers.count
        guard layers[split...].allSatisfy({ $0 == .gold }) else {
            throw RWKVError(path, "GOLD block \(split) is followed by a Finch block: GoldFinch's GOLD blocks are the top ones")
        }
        guard split >= 1 else { throw RWKVError(path, "GoldFinch without Finch blocks: the GOLD blocks' key cache is made by the last Finch block") }

        let emb = try dims(RWKV6Key.emb.name, 2)
        let faaaa = try dims(RWKV6Key.faaaa.name(layer: 0), 2)
        let maaW2 = try dims(RWKV6Key.maaW2.name(layer: 0), 3)
        let decayW1 = try dims(RWKV6Key.decayW1.name(layer: 0), 2)
        let ffn = try dims(RWKV6Key.ffnKey.name(layer: 0), 2)
        var config = GoldFinchConfig(layers: layers, embeddingSize: emb[1], headSize: faaaa[1], vocabSize: emb[0], ffnSize: ffn[0],
                                     tokenShiftRank: maaW2[1], decayRank: decayW1[1], value2Rank: 0, queryRank: 0,
                                     keyValueShiftRank: 0, keyValueRank: 0, compressedSize: 0)
        if let c2 = layers.firstIndex(of: .finchC2) {
            config.value2Rank = try dims(GoldFinchKey.value2W1.name(layer: c2), 2)[1]
        }
        if layers.contains(.gold) {
            config.queryRank = try dims(GoldFinchKey.maaQW1.name(layer: split), 2)[1]
            config.keyValueShiftRank = try dims(GoldFinchKey.maaKVW2.name(layer: split), 3)[1]
            config.keyValueRank = try dims(GoldFinchKey.keyW1.name(layer: split), 2)[1]
            config.compressedSize = try dims(GoldFinchKey.kvCacheA.rawValue, 2)[0]
        }
        guard faaaa[0] * faaaa[1] == config.embeddingSize else {
            throw RWKVError(path, "tensor \(RWKV6Key.faaaa.name(layer: 0)) has shape \(faaaa): heads × head size must be n_embd \(config.embeddingSize)")
        }
        try config.validate(path: path)

        var expected = Set<String>()
        for (name, s) in config.expectedShapes {
            expected.insert(name)
            guard try shape(name) == s else { throw RWKVError(path, "tensor \(name) has shape \(try shape(name)), expected \(s)") }
        }
        let unknown = source.tensors.map(\.name).filter { !expected.contains($0) }
        if let first = unknown.first {
            throw RWKVError(path, "tensor \(Printable.escaped(first, limit: 80))\(unknown.count > 1 ? " (and \(unknown.count - 1) more)" : "") "
                                  + "is not part of a GoldFinch checkpoint")
        }
        self.config = config
    }

    /// Tensor `name`'s values (shape checked above), widened to f32; NaN or infinity is refused.
    func tensor(_ name: String) throws -> FloatBuffer {
        FloatBuffer(try NonFiniteCount.checked(source.floats(name), path: source.path, tensor: name, advice: WeightLoader.nonFiniteAdvice))
    }
}

// MARK: - Weights

/// A time-shift LoRA's second factors stacked as (targets, rank, C): one (rank → C) map per target.
private func stacked(_ buffer: FloatBuffer, targets: Int, rank: Int, width c: Int) -> [Linear] {
    (0..<targets).map { Linear(inputs: rank, outputs: c, layout: .inputsByOutputs, weights: buffer, offset: $0 * rank * c) }
}

struct GoldFinchWeights {
    struct FFN {
        let lerpK, lerpR: FloatBuffer
        let key, receptance, value: Linear
    }
    /// A Finch or Finch-C2 time mix: token-shift LoRA over five targets, decay LoRA, the WKV.
    struct Finch {
        let kind: GoldFinchLayer
        let maaX: FloatBuffer
        /// The five lerps in the LoRA's output order (x060: w k v r g; C2: r k v w v2).
        let lerps: [FloatBuffer]
        let maaW1: Linear
        let maaW2: [Linear]
        let decay: FloatBuffer
        let decayW1, decayW2: Linear
        /// x060 only (C2 has no bonus: u = 0).
        let bonus: FloatBuffer?
        let receptance, key, value, output: Linear
        let gate: Linear?
        /// C2 only: the second value path's LoRA.
        let value2: (w1: Linear, w2: Linear)?
        let lnX: NormWeights
    }
    struct Gold {
        let maaX, maaQ, maaVCache, maaK, maaV: FloatBuffer
        let qW1, qW2, kvW1: Linear
        let kvW2: [Linear]
        let keyW1, keyW2, valueW1, valueW2: Linear
        let query, output: Linear
        let lnQ, lnK, lnV, lnX: NormWeights
    }
    enum TimeMix {
        case finch(Finch)
        case gold(Gold)
    }
    struct Layer {
        let ln1, ln2: NormWeights
        let timeMix: TimeMix
        let ffn: FFN
    }

    let config: GoldFinchConfig
    let embedding: FloatBuffer
    let ln0, lnOut: NormWeights
    let head: Linear
    let layers: [Layer]
    let compress: Linear?, decompress: Linear?

    init(_ file: GoldFinchCheckpoint) throws {
        let c = file.config
        config = c
        let C = c.embeddingSize
        func block(_ i: Int, _ name: String) throws -> FloatBuffer { try file.tensor(TensorSpec.blockPrefix + "\(i)." + name) }
        func norm(_ i: Int, _ weight: String, _ bias: String) throws -> NormWeights {
            NormWeights(weight: try block(i, weight), bias: try block(i, bias))
        }
        func linear(_ i: Int, _ name: String) throws -> Linear {
            let s = c.shape(name)!
            return Linear(inputs: s[1], outputs: s[0], layout: .outputsByInputs, weights: try block(i, name))
        }
        func lora(_ i: Int, _ name: String) throws -> Linear {
            let s = c.shape(name)!
            return Linear(inputs: s[0], outputs: s[1], layout: .inputsByOutputs, weights: try block(i, name))
        }
        typealias K = RWKV6Key
        typealias G = GoldFinchKey
        embedding = try file.tensor(K.emb.name)
        ln0 = try norm(0, K.ln0Weight.rawValue, K.ln0Bias.rawValue)
        lnOut = NormWeights(weight: try file.tensor(K.lnOutWeight.name), bias: try file.tensor(K.lnOutBias.name))
        head = Linear(inputs: C, outputs: c.vocabSize, layout: .outputsByInputs, weights: try file.tensor(K.head.name))
        layers = try c.layers.enumerated().map { i, kind in
            let timeMix: TimeMix
            switch kind {
            case .finch, .finchC2:
                let targets: [String] = kind == .finch ? [K.maaW, .maaK, .maaV, .maaR, .maaG].map(\.rawValue)
                                                       : [K.maaR.rawValue, K.maaK.rawValue, K.maaV.rawValue, K.maaW.rawValue, G.maaV2.rawValue]
                timeMix = .finch(Finch(
                    kind: kind, maaX: try block(i, K.maaX.rawValue), lerps: try targets.map { try block(i, $0) },
                    maaW1: try lora(i, K.maaW1.rawValue),
                    maaW2: stacked(try block(i, K.maaW2.rawValue), targets: 5, rank: c.tokenShiftRank, width: C),
                    decay: try block(i, K.decay.rawValue), decayW1: try lora(i, K.decayW1.rawValue), decayW2: try lora(i, K.decayW2.rawValue),
                    bonus: kind == .finch ? try block(i, K.faaaa.rawValue) : nil,
                    receptance: try linear(i, K.receptance.rawValue), key: try linear(i, K.key.rawValue),
                    value: try linear(i, K.value.rawValue), output: try linear(i, K.output.rawValue),
                    gate: kind == .finch ? try linear(i, K.gate.rawValue) : nil,
                    value2: kind == .finchC2 ? (try lora(i, G.value2W1.rawValue), try lora(i, G.value2W2.rawValue)) : nil,
                    lnX: try norm(i, K.lnXWeight.rawValue, K.lnXBias.rawValue)))
            case .gold:
                timeMix = .gold(Gold(
                    maaX: try block(i, K.maaX.rawValue), maaQ: try block(i, G.maaQ.rawValue), maaVCache: try block(i, G.maaVCache.rawValue),
                    maaK: try block(i, K.maaK.rawValue), maaV: try block(i, K.maaV.rawValue),
                    qW1: try lora(i, G.maaQW1.rawValue), qW2: try lora(i, G.maaQW2.rawValue), kvW1: try lora(i, G.maaKVW1.rawValue),
                    kvW2: stacked(try block(i, G.maaKVW2.rawValue), targets: 2, rank: c.keyValueShiftRank, width: C),
                    keyW1: try lora(i, G.keyW1.rawValue), keyW2: try lora(i, G.keyW2.rawValue),
                    valueW1: try lora(i, G.valueW1.rawValue), valueW2: try lora(i, G.valueW2.rawValue),
                    query: try linear(i, G.query.rawValue), output: try linear(i, K.output.rawValue),
                    lnQ: try norm(i, G.lnQWeight.rawValue, G.lnQBias.rawValue), lnK: try norm(i, G.lnKWeight.rawValue, G.lnKBias.rawValue),
                    lnV: try norm(i, G.lnVWeight.rawValue, G.lnVBias.rawValue), lnX: try norm(i, K.lnXWeight.rawValue, K.lnXBias.rawValue)))
            }
            return Layer(ln1: try norm(i, K.ln1Weight.rawValue, K.ln1Bias.rawValue), ln2: try norm(i, K.ln2Weight.rawValue, K.ln2Bias.rawValue),
                         timeMix: timeMix,
                         ffn: FFN(lerpK: try block(i, K.ffnMaaK.rawValue), lerpR: try block(i, K.ffnMaaR.rawValue),
                                  key: try linear(i, K.ffnKey.rawValue), receptance: try linear(i, K.ffnReceptance.rawValue),
                                  value: try linear(i, K.ffnValue.rawValue)))
        }
        if c.layers.contains(.gold) {
            compress = Linear(inputs: C, outputs: c.compressedSize, layout: .outputsByInputs, weights: try file.tensor(G.kvCacheA.rawValue))
            decompress = Linear(inputs: C + c.compressedSize, outputs: C, layout: .outputsByInputs, weights: try file.tensor(G.kvCacheB.rawValue))
        } else {
            compress = nil
            decompress = nil
        }
    }
}

// MARK: - The forward pass

/// GoldFinch forward pass. The state holds, besides every layer's token shifts and (Finch layers)
/// WKV matrices, the compressed key cache: per token of context its C/16-wide row and its token
/// id, from which each call rebuilds every GOLD layer's keys and values (as the repository
/// rebuilds them from its cache). Each call attends with the causal mask aligned to the end of
/// the context, so any split of a sequence into calls gives the same logits; the repository's
/// multi-token call after a non-empty cache aligns it to the start instead (docs/formats-reading.md).
/// `.sequence` runs the tokens in calls of up to 512, `.rnn` one at a time.
public final class GoldFinchModel: RWKVLanguageModel {
    let weights: GoldFinchWeights
    public let goldFinch: GoldFinchConfig
    public let config: RWKVConfig
    public let path: String
    /// Not reported for GoldFinch (its matrices are not llama.cpp's); kept for the protocol.
    public var matmulObserver: MatmulObserver?
    public var layerInputObserver: LayerInputObserver?

    static let sequenceBlock = 512
    /// rms_norm's epsilon, added to the RMS (`src/norm.py`).
    static let rmsEpsilon: Float = 1e-8

    public init(_ file: GoldFinchCheckpoint) throws {
        weights = try GoldFinchWeights(file)
        goldFinch = file.config
        config = file.config.summary
        path = file.source.path
    }

    public func forward(_ tokens: [Int], state: inout RWKVState, mode: ForwardMode, positions: LogitPositions) throws -> Logits {
        let V = config.vocabSize
        try checkCall(tokens, state: state, stateFits: state.cachedTokens.count * goldFinch.compressedSize == state.compressedKeys.count)
        let block = mode == .rnn ? 1 : Self.sequenceBlock
        var values: [Float] = []
        var start = 0
        while start < tokens.count {
            let n = min(block, tokens.count - start), last = start + n == tokens.count
            let logits = call(Array(tokens[start ..< start + n]), state: &state, logits: positions == .all || last)
            values += positions == .all ? logits : (last ? Array(logits.suffix(V)) : [])
            start += n
        }
        return Logits(vocabSize: V, values: values)
    }

    /// One call of `T` tokens; returns every position's logits (none when `wantLogits` is false).
    private func call(_ tokens: [Int], state: inout RWKVState, logits wantLogits: Bool) -> [Float] {
        let c = goldFinch, C = c.embeddingSize, T = tokens.count, W = weights
        let x = FloatBuffer(count: T * C), xn = FloatBuffer(count: T * C)
        for (t, token) in tokens.enumerated() { (x.base + t * C).update(from: W.embedding.base + token * C, count: C) }
        Kernels.normalize(x.base, rows: T, width: C, W.ln0, eps: Kernels.layerNormEpsilon, into: x.base)
        var keys: FloatBuffer? = nil
        var compressed = state.compressedKeys, context = state.cachedTokens
        let keyValuesStart = context.count
        state.withPointers { ptrs in
            for (i, layer) in W.layers.enumerated() {
                if i == c.split, let compress = W.compress {
                    // The compressed key cache: one C/16 row per new token, from the last Finch block's output.
                    let rows = FloatBuffer(count: T * c.compressedSize)
                    compress.apply(x.base, rows: T, to: rows.base)
                    compressed += rows.array
                    context += tokens
                    keys = decompressedKeys(tokens: context, compressed: compressed)
                }
                Kernels.normalize(x.base, rows: T, width: C, layer.ln1, eps: Kernels.layerNormEpsilon, into: xn.base)
                switch layer.timeMix {
                case .finch(let f):
                    finchTimeMix(f, xn.base, rows: T, shift: ptrs.timeMix(i), wkv: ptrs.matrices(i), into: x.base)
                case .gold(let g):
                    goldTimeMix(g, xn.base, rows: T, shift: ptrs.timeMix(i), context: context, keys: keys!,
                                firstNew: keyValuesStart, into: x.base)
                }
                Kernels.normalize(x.base, rows: T, width: C, layer.ln2, eps: Kernels.layerNormEpsilon, into: xn.base)
                channelMix(layer.ffn, xn.base, rows: T, shift: ptrs.channelMix(i), into: x.base)
            }
        }
        state.compressedKeys = compressed
        state.cachedTokens = context
        state.tokenCount += T
        guard wantLogits else { return [] }
        Kernels.normalize(x.base, rows: T, width: C, W.lnOut, eps: Kernels.layerNormEpsilon, into: xn.base)
        var out = [Float](repeating: 0, count: T * c.vocabSize)
        out.withUnsafeMutableBufferPointer { W.head.apply(xn.base, rows: T, to: $0.baseAddress!) }
        return out
    }

    /// rms_norm(z) = z / (√mean(z²) + 1e-8), per row (`src/norm.py`).
    static func rmsNormalize(_ z: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        for r in 0..<rows {
            let row = z + r * width
            var sum = 0.0
            for j in 0..<width { sum += Double(row[j]) * Double(row[j]) }
            let scale = Float(1 / ((sum / Double(width)).squareRoot() + Double(rmsEpsilon)))
            for j in 0..<width { row[j] *= scale }
        }
    }

    /// ln0(emb) of every context token, rms-normalised: GOLD's value stream (`o`).
    private func valueStream(_ tokens: [Int]) -> FloatBuffer {
        let C = goldFinch.embeddingSize, o = FloatBuffer(count: tokens.count * C)
        for (s, token) in tokens.enumerated() { (o.base + s * C).update(from: weights.embedding.base + token * C, count: C) }
        Kernels.normalize(o.base, rows: tokens.count, width: C, weights.ln0, eps: Kernels.layerNormEpsilon, into: o.base)
        return o
    }

    /// The key cache of every context token: rms_norm(W_b · [ln0(emb); compressed]).
    private func decompressedKeys(tokens: [Int], compressed: [Float]) -> FloatBuffer {
        let C = goldFinch.embeddingSize, D = goldFinch.compressedSize, S = tokens.count
        let both = FloatBuffer(count: S * (C + D)), embedded = valueStream(tokens), kc = FloatBuffer(count: S * C)
        compressed.withUnsafeBufferPointer { comp in
            for s in 0..<S {
                (both.base + s * (C + D)).update(from: embedded.base + s * C, count: C)
                (both.base + s * (C + D) + C).update(from: comp.baseAddress! + s * D, count: D)
            }
        }
        weights.decompress!.apply(both.base, rows: S, to: kc.base)
        Self.rmsNormalize(kc.base, rows: S, width: C)
        return kc
    }

    /// x = x + dx·(μ + LoRA_j) for the five targets, from the shifted rows `dx`.
    private func shiftLoRA(_ xn: UnsafePointer<Float>, _ dx: UnsafePointer<Float>, rows T: Int, maaX: FloatBuffer, w1: Linear, w2: [Linear],
                           lerps: [FloatBuffer]) -> [FloatBuffer] {
        let C = goldFinch.embeddingSize, R = w2[0].inputs
        let mixed = FloatBuffer(count: T * C), hidden = FloatBuffer(count: T * w1.outputs)
        Kernels.lerp(xn, dx, mix: maaX.base, rows: T, width: C, into: mixed.base)
        w1.apply(mixed.base, rows: T, to: hidden.base)
        Kernels.applyTanh(hidden.base, count: T * w1.outputs)
        return lerps.enumerated().map { j, mu in
            let out = FloatBuffer(count: T * C)
            w2[j].apply(hidden.base + j * R, rows: T, xStride: w1.outputs, to: out.base)
            for t in 0..<T {
                for k in 0..<C { let o = t * C + k; out.base[o] = xn[o] + dx[o] * (mu.base[k] + out.base[o]) }
            }
            return out
        }
    }

    private func finchTimeMix(_ f: GoldFinchWeights.Finch, _ xn: UnsafePointer<Float>, rows T: Int, shift: UnsafeMutablePointer<Float>,
                              wkv: UnsafeMutablePointer<Float>, into x: UnsafeMutablePointer<Float>) {
        let C = goldFinch.embeddingSize, N = goldFinch.headSize, H = goldFinch.headCount
        let dx = FloatBuffer(count: T * C)
        Kernels.tokenShift(xn, rows: T, width: C, previous: shift, into: dx.base)
        let m = shiftLoRA(xn, dx.base, rows: T, maaX: f.maaX, w1: f.maaW1, w2: f.maaW2, lerps: f.lerps)
        let isC2 = f.kind == .finchC2
        let (xr, xk, xv, xw, xLast) = isC2 ? (m[0], m[1], m[2], m[3], m[4]) : (m[3], m[1], m[2], m[0], m[4])
        let r = FloatBuffer(count: T * C), k = FloatBuffer(count: T * C), v = FloatBuffer(count: T * C), w = FloatBuffer(count: T * C)
        f.receptance.apply(xr.base, rows: T, to: r.base)
        f.key.apply(xk.base, rows: T, to: k.base)
        f.value.apply(xv.base, rows: T, to: v.base)
        let hidden = FloatBuffer(count: T * f.decayW1.outputs)
        f.decayW1.apply(xw.base, rows: T, to: hidden.base)
        Kernels.applyTanh(hidden.base, count: T * f.decayW1.outputs)
        f.decayW2.apply(hidden.base, rows: T, to: w.base)
        for t in 0..<T {
            for j in 0..<C {
                let o = t * C + j
                w.base[o] = expf(-expf(f.decay.base[j] + w.base[o]))
                if isC2 { k.base[o] *= 1 - w.base[o] }   // keys scaled by 1 − decay (use_one_minus_w)
            }
        }
        // WKV, per head, with S[key i][value j]: y_j = Σ_i r_i (u_i k_i v_j + S_ij); S_ij ← d_i S_ij + k_i v_j.
        let y = FloatBuffer(count: T * C)
        for t in 0..<T {
            for h in 0..<H {
                let o = t * C + h * N, S = wkv + h * N * N
                for i in 0..<N {
                    let ri = r.base[o + i], ki = k.base[o + i]
                    let bonus = f.bonus.map { ri * $0.base[h * N + i] * ki } ?? 0
                    Kernels.updateRowV6(S + i * N, readOut: y.base + o, r: ri, bonus: bonus, k: ki, decay: w.base[o + i],
                                        values: v.base + o, count: N)
                }
            }
        }
        if let (w1, w2) = f.value2 {
            // C2: y += value(x_v2) + LoRA(x_v2), then a LayerNorm over all channels.
            let hidden2 = FloatBuffer(count: T * w1.outputs)
            f.value.apply(xLast.base, rows: T, to: y.base, accumulate: true)
            w1.apply(xLast.base, rows: T, to: hidden2.base)
            Kernels.applyTanh(hidden2.base, count: T * w1.outputs)
            w2.apply(hidden2.base, rows: T, to: y.base, accumulate: true)
            Kernels.normalize(y.base, rows: T, width: C, f.lnX, eps: Kernels.layerNormEpsilon, into: y.base)
        } else {
            // x060: GroupNorm per head, then the silu gate.
            Kernels.normalize(y.base, rows: T, width: C, groups: H, f.lnX, eps: Kernels.groupNormEpsilon, into: y.base)
            let g = FloatBuffer(count: T * C)
            f.gate!.apply(xLast.base, rows: T, to: g.base)
            for o in 0..<(T * C) { let z = g.base[o]; y.base[o] *= z * Kernels.sigmoid(z) }
        }
        f.output.apply(y.base, rows: T, to: x, accumulate: true)
    }

    /// GOLD: queries from this call's rows; keys and values for every context position from the
    /// key cache and the embeddings (each with a token shift over the whole context, a LoRA and a
    /// LayerNorm); causal softmax attention, scale 1/√N; LayerNorm over all channels; output.
    private func goldTimeMix(_ g: GoldFinchWeights.Gold, _ xn: UnsafePointer<Float>, rows T: Int, shift: UnsafeMutablePointer<Float>,
                             context tokens: [Int], keys kc: FloatBuffer, firstNew P: Int, into x: UnsafeMutablePointer<Float>) {
        let C = goldFinch.embeddingSize, N = goldFinch.headSize, H = goldFinch.headCount, S = tokens.count
        // Query.
        let dx = FloatBuffer(count: T * C)
        Kernels.tokenShift(xn, rows: T, width: C, previous: shift, into: dx.base)
        let q = FloatBuffer(count: T * C)
        let xq = shiftLoRA(xn, dx.base, rows: T, maaX: g.maaX, w1: g.qW1, w2: [g.qW2], lerps: [g.maaQ])[0]
        g.query.apply(xq.base, rows: T, to: q.base)
        Kernels.normalize(q.base, rows: T, width: C, g.lnQ, eps: Kernels.layerNormEpsilon, into: q.base)
        // Keys and values of the whole context.
        let o = valueStream(tokens)
        Self.rmsNormalize(o.base, rows: S, width: C)
        let dO = FloatBuffer(count: S * C), dK = FloatBuffer(count: S * C)
        let zero = [Float](repeating: 0, count: C)
        var previous = zero
        previous.withUnsafeMutableBufferPointer { Kernels.tokenShift(o.base, rows: S, width: C, previous: $0.baseAddress!, into: dO.base) }
        previous = zero
        previous.withUnsafeMutableBufferPointer { Kernels.tokenShift(kc.base, rows: S, width: C, previous: $0.baseAddress!, into: dK.base) }
        let mixed = FloatBuffer(count: S * C), hidden = FloatBuffer(count: S * g.kvW1.outputs)
        Kernels.lerp(o.base, dO.base, mix: g.maaVCache.base, rows: S, width: C, into: mixed.base)
        g.kvW1.apply(mixed.base, rows: S, to: hidden.base)
        Kernels.applyTanh(hidden.base, count: S * g.kvW1.outputs)
        let k = FloatBuffer(count: S * C), v = FloatBuffer(count: S * C)
        let R = g.kvW2[0].inputs
        g.kvW2[0].apply(hidden.base, rows: S, xStride: g.kvW1.outputs, to: k.base)
        g.kvW2[1].apply(hidden.base + R, rows: S, xStride: g.kvW1.outputs, to: v.base)
        for s in 0..<S {
            for j in 0..<C {
                let i = s * C + j
                k.base[i] = kc.base[i] + dK.base[i] * (g.maaK.base[j] + k.base[i])
                v.base[i] = o.base[i] + dO.base[i] * (g.maaV.base[j] + v.base[i])
            }
        }
        for (z, w1, w2) in [(k, g.keyW1, g.keyW2), (v, g.valueW1, g.valueW2)] {
            let h = FloatBuffer(count: S * w1.outputs)
            w1.apply(z.base, rows: S, to: h.base)
            Kernels.applyTanh(h.base, count: S * w1.outputs)
            w2.apply(h.base, rows: S, to: z.base, accumulate: true)
        }
        Kernels.normalize(k.base, rows: S, width: C, g.lnK, eps: Kernels.layerNormEpsilon, into: k.base)
        Kernels.normalize(v.base, rows: S, width: C, g.lnV, eps: Kernels.layerNormEpsilon, into: v.base)
        // Query row t (context position P + t) attends to positions 0 … P + t.
        let y = FloatBuffer(count: T * C)
        Attention.attend(q.base, rows: T, keys: k.base, values: v.base, keyCount: S, heads: H, headSize: N, width: C,
                         firstPosition: P, into: y.base)
        Kernels.normalize(y.base, rows: T, width: C, g.lnX, eps: Kernels.layerNormEpsilon, into: y.base)
        g.output.apply(y.base, rows: T, to: x, accumulate: true)
    }

    /// RWKV-6's channel mix: sigmoid(R·mix_r) ⊙ V·relu(K·mix_k)².
    private func channelMix(_ f: GoldFinchWeights.FFN, _ xn: UnsafePointer<Float>, rows T: Int, shift: UnsafeMutablePointer<Float>,
                            into x: UnsafeMutablePointer<Float>) {
        let C = goldFinch.embeddingSize, F = goldFinch.ffnSize
        let dx = FloatBuffer(count: T * C), mk = FloatBuffer(count: T * C), mr = FloatBuffer(count: T * C)
        let hidden = FloatBuffer(count: T * F), r = FloatBuffer(count: T * C), out = FloatBuffer(count: T * C)
        Kernels.tokenShift(xn, rows: T, width: C, previous: shift, into: dx.base)
        Kernels.lerp(xn, dx.base, mix: f.lerpK.base, rows: T, width: C, into: mk.base)
        Kernels.lerp(xn, dx.base, mix: f.lerpR.base, rows: T, width: C, into: mr.base)
        f.key.apply(mk.base, rows: T, to: hidden.base)
        Kernels.applySquaredReLU(hidden.base, count: T * F)
        f.value.apply(hidden.base, rows: T, to: out.base)
        f.receptance.apply(mr.base, rows: T, to: r.base)
        for o in 0..<(T * C) { x[o] += Kernels.sigmoid(r.base[o]) * out.base[o] }
    }
}
