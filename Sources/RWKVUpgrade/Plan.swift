import Foundation
import RWKVFormats
import RWKVModel

public enum UpgradeRecipeName: String, Codable, CaseIterable, Sendable {
    /// The published recipe (RWKV-7 paper, section 6).
    case paper
    /// Ours: an RWKV-7 that behaves as close as possible to the RWKV-6 before any training.
    case preserve
}

public struct UpgradeOptions: Codable, Sendable {
    public var recipe: UpgradeRecipeName = .paper
    /// RWKV-7 FFN width as a multiple of n_embd (RWKV-6 uses 3.5).
    public var ffnMultiplier: Double = 4
    /// nil: the official rank for this width (`RWKV7Ranks.defaults`).
    public var decayRank: Int?
    public var iclrRank: Int?
    public var valueResidualRank: Int?
    public var gateRank: Int?
    /// Seeds the new random parameters (U(±1e-4) decay LoRA units, U(±1e-3) FFN units,
    /// orthogonal a2/v2). The `preserve` fits use a fixed stream, so they do not depend on it.
    public var seed: UInt64 = 0

    // `preserve` settings (see docs/upgrade.md for how the defaults were measured).
    /// a0 and v0: sigmoid(-5) ≈ 0.0067, in-context learning and the value-first mix start
    /// almost off but still get gradient.
    public var switchedOffBias: Float = -5
    /// Divide receptance by the mean decay so RWKV-7's extra decay factor is undone on average.
    public var compensateDecayShift = false
    /// Add the token-shift LoRA's mean output to the static lerps.
    public var lerpIncludesLoRAMean = true
    /// Spreads (standard deviation over the fit batch) of the gate units' inputs to try; the
    /// best fit is kept (see PreserveRecipe.gateFit).
    public var gateUnitSpreads: [Float] = [0.5, 1, 2, 4, 8]
    /// Tokens in the batch the `preserve` fits run over.
    public var fitTokens = 4096
    /// A text to run the RWKV-6 model over; the `preserve` fits then use the inputs its layers
    /// really see (first `fitTokens` tokens) instead of the Gaussian stand-in, and receptance,
    /// key and value are refitted to make up for the token-shift LoRA (`refitProjection`).
    public var calibrationText: String?
    /// Fine-tune adapters merged into the RWKV-6 checkpoint before the upgrade (`--merge-lora`).
    public var adapters = AdapterList()

    public init() {}
}

/// One output tensor: its name and shape, the named step that computes it and the RWKV-6
/// tensors it reads.
public struct UpgradedTensor: Sendable {
    public let name: String
    public let shape: [Int]
    public let step: String
    public let sources: [String]
    let compute: @Sendable (UpgradeContext) throws -> Matrix

    var layer: Int? {
        guard name.hasPrefix("blocks.") else { return nil }
        return Int(name.dropFirst(7).prefix { $0 != "." })
    }
}

/// For each RWKV-7 tensor (every key of `RWKVConfig.expectedShapes` of the target, layer 0's
/// unused v0/v1/v2 included), how it is computed from the RWKV-6 tensors. Tensors are produced
/// one at a time in this order, so memory stays at a few tensors plus one layer's small ones.
public struct UpgradePlan: Sendable {
    public let source: RWKVConfig
    public let target: RWKVConfig
    public let options: UpgradeOptions
    public let tensors: [UpgradedTensor]

    public init(source: RWKVConfig, options: UpgradeOptions, path: String) throws {
        guard source.version == .v6 else {
            throw RWKVError(path, "is an RWKV-\(source.version.rawValue) checkpoint; v6-to-v7 needs an RWKV-6 one")
        }
        let c = source.embeddingSize
        let defaults = RWKV7Ranks.defaults(embeddingSize: c)
        let ranks = RWKV7Ranks(decay: options.decayRank ?? defaults.decay, iclr: options.iclrRank ?? defaults.iclr,
                               valueResidual: options.valueResidualRank ?? defaults.valueResidual,
                               gate: options.gateRank ?? defaults.gate)
        let given = [options.decayRank, options.iclrRank, options.valueResidualRank, options.gateRank]
        for (i, (name, r)) in [("decay", ranks.decay), ("iclr", ranks.iclr), ("value", ranks.valueResidual), ("gate", ranks.gate)].enumerated()
        where r < 1 || r > 16 * c {
            // Blame the option only when it was given; a default that does not fit is the file's width.
            if given[i] != nil { throw RWKVError(path, "--\(name)-rank \(r) is out of range (1...\(16 * c) for this n_embd \(c))") }
            throw RWKVError(path, "n_embd \(c) is too small for the default \(name) LoRA rank \(r) (at most 16 × n_embd); give --\(name)-rank")
        }
        let ffnValue = options.ffnMultiplier * Double(c)
        guard options.ffnMultiplier.isFinite, ffnValue.rounded() == ffnValue, Int(ffnValue) >= source.ffnSize,
              ffnValue <= Double(64 * c) else {
            throw RWKVError(path, "--ffn-mult \(options.ffnMultiplier) gives an FFN width that is not a whole number of at least the RWKV-6 width \(source.ffnSize) (n_embd \(c))")
        }
        if options.recipe != .preserve && options.calibrationText != nil {
            throw RWKVError(nil, "--calibrate only applies to --recipe preserve")
        }
        guard options.fitTokens >= 16, options.fitTokens <= 1 << 20 else {
            throw RWKVError(nil, "fit batch of \(options.fitTokens) tokens is out of range (16...1048576)")
        }
        let target = RWKVConfig(version: .v7, layerCount: source.layerCount, embeddingSize: c, headSize: source.headSize,
                                vocabSize: source.vocabSize, ffnSize: Int(ffnValue), decayRank: ranks.decay,
                                iclrRank: ranks.iclr, valueResidualRank: ranks.valueResidual, gateRank: ranks.gate)
        self.source = source
        self.target = target
        self.options = options
        let builder = PlanBuilder(source: source, target: target, options: options)
        tensors = try target.expectedShapes.map { try builder.plan($0.name, shape: $0.shape) }
    }

    /// RWKV-6 tensors no output reads (the token-shift LoRA; in the paper recipe also the FFN receptance).
    public var unusedSourceTensors: [String] {
        let used = Set(tensors.flatMap(\.sources))
        return source.expectedShapes.map(\.name).filter { !used.contains($0) }
    }
}

/// Builds each output tensor's entry; the recipe-specific arithmetic lives in `PaperRecipe`,
/// `PreserveRecipe` and `RWKV7Init`, the per-layer shared work in `UpgradeContext`.
struct PlanBuilder {
    let source: RWKVConfig
    let target: RWKVConfig
    let options: UpgradeOptions

    var preserve: Bool { options.recipe == .preserve }

    func plan(_ name: String, shape: [Int]) throws -> UpgradedTensor {
        func entry(_ step: String, _ sources: [String], _ compute: @escaping @Sendable (UpgradeContext) throws -> Matrix) -> UpgradedTensor {
            UpgradedTensor(name: name, shape: shape, step: step, sources: sources, compute: compute)
        }
        let paper = !preserve
        switch name {
        case "emb.weight":
            return paper ? entry("PaperRecipe.halved", [name]) { try PaperRecipe.halved($0.weights.matrix(name)) }
                         : entry("copy", [name]) { try $0.weights.matrix(name) }
        case "head.weight":
            return entry("copy", [name]) { try $0.weights.matrix(name) }
        default:
            break
        }
        if name.hasSuffix(".weight") && isNorm(name) {
            return paper ? entry("PaperRecipe.normWeight", [name]) { try PaperRecipe.normWeight($0.weights.matrix(name)) }
                         : entry("copy", [name]) { try $0.weights.matrix(name) }
        }
        if name.hasSuffix(".bias") && isNorm(name) {
            return paper ? entry("PaperRecipe.halved", [name]) { try PaperRecipe.halved($0.weights.matrix(name)) }
                         : entry("copy", [name]) { try $0.weights.matrix(name) }
        }
        guard name.hasPrefix("blocks."), let layer = Int(name.dropFirst(7).prefix { $0 != "." }) else {
            throw RWKVError(nil, "no upgrade step for tensor \(name)")
        }
        let b = "blocks.\(layer)."
        let att = b + "att.", ffn = b + "ffn."
        let leaf = String(name.dropFirst(b.count))
        let c = target.embeddingSize
        let loraSources = [att + "time_maa_x", att + "time_maa_w1", att + "time_maa_w2", b + "ln1.weight", b + "ln1.bias"]

        switch leaf {
        case "att.x_r", "att.x_w", "att.x_k", "att.x_v", "att.x_g":
            let v6 = att + "time_maa_" + leaf.suffix(1)
            if paper {
                return entry("PaperRecipe.lerpWithoutTokenShiftLoRA", [v6]) {
                    try PaperRecipe.lerpWithoutTokenShiftLoRA($0.weights.matrix(v6))
                }
            }
            let which = String(leaf.suffix(1))
            return entry("PreserveRecipe.meanLerp", [v6] + loraSources) { try Matrix(row: $0.timeMixLerp(layer, which)) }
        case "att.x_a":
            return entry("RWKV7Init.iclrLerp", []) { _ in
                RWKV7Init.iclrLerp(layer: layer, layerCount: target.layerCount, embeddingSize: c)
            }
        case "att.w0":
            if paper { return entry("copy time_decay", [att + "time_decay"]) { try $0.weights.matrix(att + "time_decay") } }
            return entry("PreserveRecipe.decayFit", decaySources(layer) + loraSources) { try Matrix(row: $0.decayFit(layer).w0) }
        case "att.w1":
            return entry("PaperRecipe.resizedDecayLoRA", [att + "time_decay_w1", att + "time_decay_w2"]) { try $0.decayLoRA(layer).w1 }
        case "att.w2":
            if paper {
                return entry("PaperRecipe.resizedDecayLoRA", [att + "time_decay_w1", att + "time_decay_w2"]) { try $0.decayLoRA(layer).w2 }
            }
            return entry("PaperRecipe.resizedDecayLoRA, columns × PreserveRecipe.decayFit slope", decaySources(layer) + loraSources) {
                try $0.decayLoRA(layer).w2.scalingColumns($0.decayFit(layer).slope)
            }
        case "att.a0":
            let bias: Float = paper ? 0 : options.switchedOffBias
            return entry(paper ? "RWKV7Init.constant(0)" : "switched off: constant(\(bias))", []) { _ in RWKV7Init.constant(bias, count: c) }
        case "att.v0":
            let bias: Float = paper ? 1 : options.switchedOffBias
            return entry(paper ? "RWKV7Init.constant(1)" : "switched off: constant(\(bias))", []) { _ in RWKV7Init.constant(bias, count: c) }
        case "att.a1", "att.v1":
            return entry("RWKV7Init.zeroLoRA", []) { _ in RWKV7Init.zeroLoRA(rows: shape[0], cols: shape[1]) }
        case "att.a2", "att.v2":
            return entry("RWKV7Init.orthogonalLoRA", []) { ctx in
                var random = ctx.random(name)
                return RWKV7Init.orthogonalLoRA(rows: shape[0], cols: shape[1], random: &random)
            }
        case "att.k_k":
            return entry("RWKV7Init.constant(0.85)", []) { _ in RWKV7Init.constant(0.85, count: c) }
        case "att.k_a":
            let value: Float = paper ? 1 : 0
            return entry("RWKV7Init.constant(\(Int(value)))", []) { _ in RWKV7Init.constant(value, count: c) }
        case "att.r_k":
            if paper { return entry("RWKV7Init.bonus", []) { _ in RWKV7Init.bonus(heads: shape[0], headSize: shape[1]) } }
            return entry("PreserveRecipe.bonus", [att + "time_faaaa"] + decaySources(layer) + loraSources) { try $0.bonus(layer).rk }
        case "att.g1", "att.g2":
            let first = leaf == "att.g1"
            if paper {
                return entry("PaperRecipe.gateFactors", [att + "gate.weight"]) { try first ? $0.paperGate(layer).g1 : $0.paperGate(layer).g2 }
            }
            return entry("PreserveRecipe.gateFit", [att + "gate.weight", att + "time_maa_g"] + loraSources) {
                try first ? $0.preserveGate(layer).g1 : $0.preserveGate(layer).g2
            }
        case "att.receptance.weight":
            if paper { return entry("PaperRecipe.halved", [name]) { try PaperRecipe.halved($0.weights.matrix(name)) } }
            let step = options.calibrationText != nil ? "PreserveRecipe.refitProjection, rows × PreserveRecipe.bonus receptance scale"
                                                      : "copy, rows × PreserveRecipe.bonus receptance scale"
            return entry(step, [name, att + "time_faaaa"] + decaySources(layer) + loraSources) {
                try $0.refitted(layer, "r", $0.weights.matrix(name)).scalingRows($0.bonus(layer).receptanceRowScale)
            }
        case "att.output.weight":
            if paper { return entry("PaperRecipe.halved", [name]) { try PaperRecipe.halved($0.weights.matrix(name)) } }
            return entry("copy", [name]) { try $0.weights.matrix(name) }
        case "att.key.weight", "att.value.weight":
            if preserve && options.calibrationText != nil {
                let which = leaf == "att.key.weight" ? "k" : "v"
                return entry("PreserveRecipe.refitProjection", [name, att + "time_maa_" + which] + loraSources) {
                    try $0.refitted(layer, which, $0.weights.matrix(name))
                }
            }
            return entry("copy", [name]) { try $0.weights.matrix(name) }
        case "ffn.x_k":
            return entry("PaperRecipe.lerpWithoutTokenShiftLoRA", [ffn + "time_maa_k"]) {
                try PaperRecipe.lerpWithoutTokenShiftLoRA($0.weights.matrix(ffn + "time_maa_k"))
            }
        case "ffn.key.weight":
            return entry("PaperRecipe.widenedRows(±1e-3)", [name]) { ctx in
                var random = ctx.random(name)
                return try PaperRecipe.widenedRows(ctx.weights.matrix(name), to: shape[0], bound: 1e-3, random: &random)
            }
        case "ffn.value.weight":
            if paper {
                return entry("PaperRecipe.widenedColumns(±1e-3)", [name]) { ctx in
                    var random = ctx.random(name)
                    return try PaperRecipe.widenedColumns(ctx.weights.matrix(name), to: shape[1], bound: 1e-3, random: &random)
                }
            }
            let sources = [name, ffn + "receptance.weight", ffn + "key.weight", ffn + "time_maa_k", ffn + "time_maa_r",
                           b + "ln2.weight", b + "ln2.bias"]
            return entry("rows × PreserveRecipe.channelMixReceptanceScale, PaperRecipe.widenedColumns(±1e-3)", sources) { ctx in
                var random = ctx.random(name)
                let scaled = try ctx.weights.matrix(name).scalingRows(ctx.channelMixReceptanceScale(layer))
                return PaperRecipe.widenedColumns(scaled, to: shape[1], bound: 1e-3, random: &random)
            }
        default:
            throw RWKVError(nil, "no upgrade step for tensor \(name)")
        }
    }

    func isNorm(_ name: String) -> Bool {
        name.hasPrefix("ln_out.") || name.contains(".ln0.") || name.contains(".ln1.") || name.contains(".ln2.") || name.contains(".ln_x.")
    }

    func decaySources(_ layer: Int) -> [String] {
        let att = "blocks.\(layer).att."
        return [att + "time_decay", att + "time_decay_w1", att + "time_decay_w2", att + "time_maa_w"]
    }
}
