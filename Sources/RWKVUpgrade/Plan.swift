import Foundation
import RWKVText
import RWKVFormats
import RWKVModel

public enum UpgradeRecipeName: String, Codable, CaseIterable, Sendable {
    /// The published recipe (RWKV-7 paper, section 6).
    case paper
    /// Ours: an RWKV-7 that behaves as close as possible to the RWKV-6 before any training.
    case preserve
}

/// What the `preserve` fits run over.
public enum CalibrationSource: Codable, Sendable, Equatable {
    /// A Gaussian stand-in per layer (`MixInputs.gaussianProxy`): no text.
    case standIn
    /// `BuiltInCalibrationText.english`, shipped with the tool (the default).
    case builtIn
    /// A text file.
    case file(String)
}

/// One `preserve` mapping, which `--ablate` puts back to its plain counterpart to measure what
/// it is worth (docs/upgrade.md, "Ablations").
public enum PreserveMapping: String, Codable, CaseIterable, Sendable {
    /// w0 and w2 mapped into RWKV-7's decay parametrisation → time_decay and the LoRA as they are.
    case decay
    /// r_k fitted from the bonus → 0.
    case bonus
    /// The gate fitted over the batch → the plain rank-D SVD of Gᵀ (the paper's, not halved).
    case gate
    /// FFN receptance folded into ffn.value → dropped.
    case ffnFold = "ffn-fold"
    /// In-context learning and value residual switched off (a0 = v0 = -5, k_a = 0) → the
    /// trainer's init (a0 = 0, v0 = 1, k_a = 1), as the paper starts them.
    case switchedOff = "switched-off"
    /// Token-shift LoRA's mean folded into the lerps → time_maa as it is.
    case tokenShift = "token-shift"
    /// With calibration, receptance, key, value and ffn.value refitted and the gate refined →
    /// copied, scaled per channel, and the gate left on its singular vectors.
    case refit
}

public struct UpgradeOptions: Codable, Sendable {
    public var recipe: UpgradeRecipeName = .preserve
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
    /// Mappings put back to their plain counterparts (experiments only).
    public var ablations: Set<PreserveMapping> = []
    /// Spreads (standard deviation over the fit batch) of the gate units' inputs to try; the
    /// best fit is kept (see PreserveRecipe.gateFit).
    public var gateUnitSpreads: [Float] = [0.5, 1, 2, 4, 8]
    /// With real activations, gradient steps that move the gate's units off the singular vectors
    /// (`PreserveRecipe.refineGate`; docs/upgrade.md measures the count).
    public var gateRefineSteps = 30
    /// The ridge of the gate's g2 solve (`PreserveRecipe.defaultGateRidge`).
    public var gateRidge = PreserveRecipe.defaultGateRidge
    /// Principal directions of the gate's target its search sees (nil: 2 × the gate rank).
    public var gateTargetRank: Int?
    /// With real activations: the fits' RWKV-7 side reads the inputs the upgraded blocks before
    /// it produce (`CalibrationStream`); false (experiments only): the RWKV-6's inputs.
    public var fitsOnUpgradedInputs = true
    /// Tokens in the batch the `preserve` fits run over.
    public var fitTokens = 4096
    /// The text the RWKV-6 model is run over; the `preserve` fits then use the inputs its layers
    /// really see (first `fitTokens` tokens) instead of the Gaussian stand-in, and receptance,
    /// key and value are refitted to make up for the token-shift LoRA (`refitProjection`).
    /// nil: the recipe's default (`preserve`: the built-in text; `paper`: none).
    public var calibration: CalibrationSource?
    /// Fine-tune adapters merged into the RWKV-6 checkpoint before the upgrade (`--merge-lora`).
    public var adapters = AdapterList()

    public init() {}
}

/// One output tensor: its name and shape, its schema row and block, and the recipe step that
/// computes it from the RWKV-6 tensors `sources`.
public struct UpgradedTensor: Sendable {
    public let name: String
    public let shape: [Int]
    /// The RWKV-7 schema row and the block (nil outside the blocks).
    let row: RWKV7Key
    let layer: Int?
    let recipeStep: UpgradeStep
    public let sources: [String]

    /// The step's name, as the report prints it.
    public var step: String { recipeStep.name }
}

/// For each RWKV-7 tensor (every key of `RWKVConfig.expectedShapes` of the target, layer 0's
/// unused v0/v1/v2 included), how it is computed from the RWKV-6 tensors. Tensors are produced
/// one at a time in this order, so memory stays at a few tensors plus one layer's small ones.
public struct UpgradePlan: Sendable {
    public let source: RWKVConfig
    public let target: RWKVConfig
    public let options: UpgradeOptions
    /// What the fits run over: the options' choice, the recipe's default when none was made; the
    /// text falls back to the stand-in for a vocabulary it cannot be tokenised for, or when it
    /// gives too few tokens (`calibrationFallback` says why).
    public let calibration: CalibrationSource
    /// The text's tokens the fits run over (the first `fitTokens`); nil on the stand-in.
    public let calibrationTokens: [Int]?
    /// Why the stand-in replaced the text asked for (nil when it did not).
    public let calibrationFallback: String?
    /// Fewer tokens than this and the text says too little to fit on: the stand-in is used.
    public static let minimumCalibrationTokens = 16
    /// `preserve` with real activations: receptance, key, value and ffn.value are refitted and
    /// the gate refined (each made things worse on the Gaussian stand-in, docs/upgrade.md).
    public let refitsProjections: Bool
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
        if options.recipe != .preserve, case .file = options.calibration {
            throw RWKVError(nil, "--calibrate only applies to --recipe preserve")
        }
        if options.recipe != .preserve, !options.ablations.isEmpty {
            throw RWKVError(nil, "--ablate only applies to --recipe preserve")
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
        (calibration, calibrationTokens, calibrationFallback) = try Self.calibration(options, vocabularySize: source.vocabSize)
        refitsProjections = calibration != .standIn && !options.ablations.contains(.refit)
        let table = RecipeTable.of(options, refit: refitsProjections)
        var tensors: [UpgradedTensor] = []
        for (name, spec, layer) in target.checkpointTensors {
            guard let key = RWKV7Key(rawValue: spec.name) else { throw RWKVError(nil, "internal error: no key for tensor \(name)") }
            let step = table(key)
            let layer = spec.scope == .layer || spec.scope == .firstLayer ? layer : nil
            let sources = try step.sources(target: key).map { try Self.sourceName($0, layer: layer, of: source) }
            tensors.append(UpgradedTensor(name: name, shape: target.shape(spec.shape), row: key, layer: layer,
                                          recipeStep: step, sources: sources))
        }
        self.tensors = tensors
    }

    static func calibration(_ options: UpgradeOptions, vocabularySize: Int) throws -> (CalibrationSource, [Int]?, String?) {
        guard options.recipe == .preserve else { return (.standIn, nil, nil) }
        let tokens: [Int]
        switch options.calibration ?? .builtIn {
        case .standIn: return (.standIn, nil, nil)
        case .builtIn:
            guard let builtIn = BuiltInCalibrationText.tokens(vocabularySize: vocabularySize) else {
                return (.standIn, nil, "the built-in text needs a byte-level or World vocabulary, the model has \(vocabularySize) rows; give --calibrate FILE")
            }
            tokens = builtIn
        case .file(let path):
            // A World token is at most a few dozen bytes: 128 bytes a token bounds what is read.
            let file = try InputFile(path)
            let bytes = try file.read(at: 0, count: min(file.size, options.fitTokens * 128), what: "calibration text")
            tokens = try TextTokenizer.forModel(vocabularySize: vocabularySize).encode(bytes, path: path)
        }
        let batch = Array(tokens.prefix(options.fitTokens))
        guard batch.count >= minimumCalibrationTokens else {
            return (.standIn, nil, "the calibration text gives \(batch.count) tokens, at least \(minimumCalibrationTokens) are needed")
        }
        return (options.calibration ?? .builtIn, batch, nil)
    }

    /// The checkpoint name of RWKV-6 row `row` in block `layer`, checked against the RWKV-6 schema.
    static func sourceName(_ row: RWKV6Key, layer: Int?, of config: RWKVConfig) throws -> String {
        let spec = row.spec
        guard spec.scope == .start || spec.scope == .end || layer != nil, layer.map(spec.isPresent(inLayer:)) ?? true else {
            throw RWKVError(nil, "internal error: the upgrade reads \(row.rawValue), which is no RWKV-6 tensor\(layer.map { " of block \($0)" } ?? "")")
        }
        return spec.checkpointName(layer: layer ?? 0)
    }

    func sourceName(_ row: RWKV6Key, layer: Int?) throws -> String { try Self.sourceName(row, layer: layer, of: source) }

    /// RWKV-6 tensors no output reads (the token-shift LoRA; in the paper recipe also the FFN receptance).
    public var unusedSourceTensors: [String] {
        let used = Set(tensors.flatMap(\.sources))
        return source.expectedShapes.map(\.name).filter { !used.contains($0) }
    }
}
