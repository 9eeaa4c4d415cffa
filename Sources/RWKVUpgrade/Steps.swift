import RWKVFormats
import RWKVModel

/// RWKV-6's five data-dependent lerps, in time_maa_w2's order (its first axis).
enum TokenShiftLerp: Int, CaseIterable, Sendable {
    case w, k, v, r, g

    /// The RWKV-6 static lerp (schema row name).
    var timeMaa: String { "att.time_maa_\(self)" }
}

/// How one RWKV-7 tensor is made. Each step knows the name the report prints and the RWKV-6
/// tensors it reads (RWKV-6 schema row names, resolved in the tensor's block); the context lets a
/// step read nothing else (`V6Weights.allowed`), and a test runs every step of both recipes alone
/// to prove it.
enum UpgradeStep: Equatable, Sendable {
    /// The RWKV-6 tensor of the same name, unchanged.
    case copy
    /// Paper: w0 is time_decay as it is.
    case copyTimeDecay
    case halved
    case normWeight
    /// The RWKV-6 static lerp (`att.time_maa_*`, `ffn.time_maa_k`), without the token-shift LoRA.
    case staticLerp(String)
    case iclrLerp
    /// w1 or w2: the decay LoRA at RWKV-7's rank.
    case resizedDecayLoRA
    case constant(Float)
    /// preserve: a0 and v0, nearly off.
    case switchedOff(Float)
    case zeroLoRA
    case orthogonalLoRA
    case zeroBonus
    /// g1 or g2 by SVD, the product halved (paper).
    case gateFactors
    /// g1 or g2 by SVD, not halved (`--ablate gate`).
    case gateSVD
    /// FFN key and value widened to RWKV-7's FFN width with U(±1e-3).
    case widenedRows
    case widenedColumns
    // preserve
    case meanLerp(TokenShiftLerp)
    case decayFit
    case decayLoRATimesSlope
    case bonus
    /// g1 or g2 fitted on the batch.
    case gateFit
    /// Time-mix receptance: refitted (with calibration) or copied, rows × the bonus's receptance scale.
    case bonusReceptance(refit: Bool)
    case refitProjection(TokenShiftLerp)
    /// att.output refitted on the upgraded time mix's own output (calibration on the upgraded model's inputs).
    case outputRefit
    /// The head refitted on the two models' final residual streams.
    case headRefit
    /// ffn.value with the FFN receptance folded in: refitted (with calibration) or scaled per channel.
    case channelMixFold(refit: Bool)

    /// As the `--json` report prints it.
    /// The step's name in reports and `--json` (`tensors[].step`): stable, documented in
    /// docs/upgrade.md ("The --json report"), independent of the Swift names that implement it.
    var name: String {
        switch self {
        case .copy: return "copy"
        case .copyTimeDecay: return "copy-time-decay"
        case .halved: return "halved"
        case .normWeight: return "norm-weight"
        case .staticLerp: return "static-lerp"
        case .iclrLerp: return "init-iclr-lerp"
        case .resizedDecayLoRA: return "resized-decay-lora"
        case .constant(let v): return "constant(\(Self.number(v)))"
        case .switchedOff(let v): return "switched-off(\(Self.number(v)))"
        case .zeroLoRA: return "init-zero-lora"
        case .orthogonalLoRA: return "init-orthogonal-lora"
        case .zeroBonus: return "init-bonus"
        case .gateFactors: return "gate-svd-halved"
        case .gateSVD: return "gate-svd"
        case .widenedRows: return "widened-rows(1e-3)"
        case .widenedColumns: return "widened-columns(1e-3)"
        case .meanLerp: return "mean-lerp"
        case .decayFit: return "decay-fit"
        case .decayLoRATimesSlope: return "resized-decay-lora, columns x decay-fit slope"
        case .bonus: return "bonus-fit"
        case .gateFit: return "gate-fit"
        case .bonusReceptance(let refit): return (refit ? "refit-projection" : "copy") + ", rows x bonus receptance scale"
        case .refitProjection: return "refit-projection"
        case .outputRefit: return "output-refit"
        case .headRefit: return "head-refit"
        case .channelMixFold(let refit):
            return (refit ? "channel-mix-refit" : "channel-mix-receptance-scale") + ", widened-columns(1e-3)"
        }
    }

    /// 1 rather than 1.0; 0.85 as it is.
    private static func number(_ v: Float) -> String { v == v.rounded() ? String(Int(v)) : "\(v)" }

    /// The RWKV-6 rows the step reads when it makes the tensor of RWKV-7 row `target`.
    func sources(target: String) -> [String] {
        // The token-shift LoRA over the fit batch (the Gaussian stand-in is built from ln1).
        let tokenShiftLoRA = ["att.time_maa_x", "att.time_maa_w1", "att.time_maa_w2", "ln1.weight", "ln1.bias"]
        let decay = ["att.time_decay", "att.time_decay_w1", "att.time_decay_w2", TokenShiftLerp.w.timeMaa]
        // The bonus runs RWKV-6's and RWKV-7's r, k, v over the batch, and reads ln_x's γ.
        let bonus = ["att.time_faaaa"] + decay + tokenShiftLoRA
            + ["att.receptance.weight", "att.key.weight", "att.value.weight", "att.ln_x.weight"]
            + [TokenShiftLerp.r, .k, .v].map(\.timeMaa)
        switch self {
        case .copy, .halved, .normWeight, .widenedRows, .widenedColumns: return [target]
        case .copyTimeDecay: return ["att.time_decay"]
        case .staticLerp(let v6): return [v6]
        case .iclrLerp, .constant, .switchedOff, .zeroLoRA, .orthogonalLoRA, .zeroBonus: return []
        case .resizedDecayLoRA: return ["att.time_decay_w1", "att.time_decay_w2"]
        case .gateFactors, .gateSVD: return ["att.gate.weight"]
        case .meanLerp(let lerp): return [lerp.timeMaa] + tokenShiftLoRA
        case .decayFit, .decayLoRATimesSlope: return decay + tokenShiftLoRA
        case .bonus: return bonus
        case .gateFit: return ["att.gate.weight", TokenShiftLerp.g.timeMaa] + tokenShiftLoRA
        case .bonusReceptance: return [target] + bonus.filter { $0 != target }
        case .refitProjection(let lerp): return [target, lerp.timeMaa] + tokenShiftLoRA
        // The RWKV-6 block's and the upgraded block's time mix over the text.
        case .outputRefit: return [target]
        case .headRefit: return [target, "ln_out.weight", "ln_out.bias"]
        case .channelMixFold:
            return [target, "ffn.receptance.weight", "ffn.key.weight", "ffn.time_maa_k", "ffn.time_maa_r", "ln2.weight", "ln2.bias"]
        }
    }

    /// Computes the tensor of `tensor` (RWKV-7 row `tensor.row`, in block `tensor.layer`).
    func compute(_ ctx: UpgradeContext, _ tensor: UpgradedTensor) throws -> Matrix {
        let name = tensor.name, shape = tensor.shape, c = ctx.plan.target.embeddingSize
        func layer() throws -> Int {
            guard let layer = tensor.layer else { throw RWKVError(nil, "internal error: \(name) is not in a block") }
            return layer
        }
        func source(_ row: String) throws -> Matrix { try ctx.weights.matrix(ctx.plan.sourceName(row, layer: tensor.layer)) }
        switch self {
        case .copy: return try source(tensor.row)
        case .copyTimeDecay: return try source("att.time_decay")
        case .halved: return try PaperRecipe.halved(source(tensor.row))
        case .normWeight: return try PaperRecipe.normWeight(source(tensor.row))
        case .staticLerp(let v6): return try PaperRecipe.lerpWithoutTokenShiftLoRA(source(v6))
        case .iclrLerp: return try RWKV7Init.iclrLerp(layer: layer(), layerCount: ctx.plan.target.layerCount, embeddingSize: c)
        case .resizedDecayLoRA:
            let lora = try ctx.decayLoRA(layer())
            return tensor.row == "att.w1" ? lora.w1 : lora.w2
        case .constant(let v), .switchedOff(let v): return RWKV7Init.constant(v, count: c)
        case .zeroLoRA: return RWKV7Init.zeroLoRA(rows: shape[0], cols: shape[1])
        case .orthogonalLoRA:
            var random = ctx.random(name)
            return RWKV7Init.orthogonalLoRA(rows: shape[0], cols: shape[1], random: &random)
        case .zeroBonus: return RWKV7Init.bonus(heads: shape[0], headSize: shape[1])
        case .gateFactors:
            let gate = try ctx.paperGate(layer())
            return tensor.row == "att.g1" ? gate.g1 : gate.g2
        case .gateSVD:
            // The paper's g2 carries the ½; doubling it back is exact.
            let gate = try ctx.paperGate(layer())
            return tensor.row == "att.g1" ? gate.g1 : Matrix(rows: gate.g2.rows, cols: gate.g2.cols, values: gate.g2.values.map { $0 * 2 })
        case .widenedRows:
            var random = ctx.random(name)
            return try PaperRecipe.widenedRows(source(tensor.row), to: shape[0], bound: 1e-3, random: &random)
        case .widenedColumns:
            var random = ctx.random(name)
            return try PaperRecipe.widenedColumns(source(tensor.row), to: shape[1], bound: 1e-3, random: &random)
        case .meanLerp(let lerp): return try Matrix(row: ctx.timeMixLerp(layer(), lerp))
        case .decayFit: return try Matrix(row: ctx.decayFit(layer()).w0)
        case .decayLoRATimesSlope:
            let l = try layer()
            return try ctx.decayLoRA(l).w2.scalingColumns(ctx.decayFit(l).slope)
        case .bonus: return try ctx.bonus(layer()).rk
        case .gateFit:
            let gate = try ctx.preserveGate(layer())
            return tensor.row == "att.g1" ? gate.g1 : gate.g2
        case .bonusReceptance:
            let l = try layer()
            return try ctx.refitted(l, .r, source(tensor.row)).scalingRows(ctx.bonus(l).receptanceRowScale)
        case .refitProjection(let lerp): return try ctx.refitted(layer(), lerp, source(tensor.row))
        case .outputRefit: return try ctx.refittedOutput(layer(), source(tensor.row))
        case .headRefit: return try ctx.refittedHead(source(tensor.row))
        case .channelMixFold:
            var random = ctx.random(name)
            return try PaperRecipe.widenedColumns(ctx.channelMixFoldedValue(layer()), to: shape[1], bound: 1e-3, random: &random)
        }
    }
}

/// The recipes' tables: for every RWKV-7 schema row (`ArchitectureSchema.rwkv7`), its step.
enum RecipeTable {
    static let paper: [String: UpgradeStep] = [
        "emb.weight": .halved,
        "ln0.weight": .normWeight, "ln0.bias": .halved,
        "ln1.weight": .normWeight, "ln1.bias": .halved,
        "ln2.weight": .normWeight, "ln2.bias": .halved,
        "att.x_r": .staticLerp("att.time_maa_r"), "att.x_w": .staticLerp("att.time_maa_w"),
        "att.x_k": .staticLerp("att.time_maa_k"), "att.x_v": .staticLerp("att.time_maa_v"),
        "att.x_a": .iclrLerp, "att.x_g": .staticLerp("att.time_maa_g"),
        "att.w0": .copyTimeDecay, "att.a0": .constant(0), "att.v0": .constant(1),
        "att.k_k": .constant(0.85), "att.k_a": .constant(1),
        "att.w1": .resizedDecayLoRA, "att.w2": .resizedDecayLoRA,
        "att.a1": .zeroLoRA, "att.a2": .orthogonalLoRA, "att.v1": .zeroLoRA, "att.v2": .orthogonalLoRA,
        "att.g1": .gateFactors, "att.g2": .gateFactors,
        "att.r_k": .zeroBonus,
        "att.receptance.weight": .halved, "att.key.weight": .copy, "att.value.weight": .copy, "att.output.weight": .halved,
        "att.ln_x.weight": .normWeight, "att.ln_x.bias": .halved,
        "ffn.x_k": .staticLerp("ffn.time_maa_k"), "ffn.key.weight": .widenedRows, "ffn.value.weight": .widenedColumns,
        "ln_out.weight": .normWeight, "ln_out.bias": .halved,
        "head.weight": .copy,
    ]

    /// `refit`: receptance, key and value are refitted (`UpgradePlan.refitsProjections`).
    /// `options.ablations`: mappings put back to their plain counterparts.
    static func preserve(_ options: UpgradeOptions, refit: Bool) -> [String: UpgradeStep] {
        let ablations = options.ablations, off = options.switchedOffBias
        func lerp(_ l: TokenShiftLerp) -> UpgradeStep { ablations.contains(.tokenShift) ? .staticLerp(l.timeMaa) : .meanLerp(l) }
        let on = ablations.contains(.switchedOff), bonus = !ablations.contains(.bonus), decay = !ablations.contains(.decay)
        return [
            "emb.weight": .copy,
            "ln0.weight": .copy, "ln0.bias": .copy,
            "ln1.weight": .copy, "ln1.bias": .copy,
            "ln2.weight": .copy, "ln2.bias": .copy,
            "att.x_r": lerp(.r), "att.x_w": lerp(.w), "att.x_k": lerp(.k), "att.x_v": lerp(.v),
            "att.x_a": .iclrLerp, "att.x_g": lerp(.g),
            "att.w0": decay ? .decayFit : .copyTimeDecay,
            "att.a0": on ? .constant(0) : .switchedOff(off), "att.v0": on ? .constant(1) : .switchedOff(off),
            "att.k_k": .constant(0.85), "att.k_a": .constant(on ? 1 : 0),
            "att.w1": .resizedDecayLoRA, "att.w2": decay ? .decayLoRATimesSlope : .resizedDecayLoRA,
            "att.a1": .zeroLoRA, "att.a2": .orthogonalLoRA, "att.v1": .zeroLoRA, "att.v2": .orthogonalLoRA,
            "att.g1": ablations.contains(.gate) ? .gateSVD : .gateFit, "att.g2": ablations.contains(.gate) ? .gateSVD : .gateFit,
            "att.r_k": bonus ? .bonus : .zeroBonus,
            "att.receptance.weight": bonus ? .bonusReceptance(refit: refit) : refit ? .refitProjection(.r) : .copy,
            "att.key.weight": refit ? .refitProjection(.k) : .copy,
            "att.value.weight": refit ? .refitProjection(.v) : .copy,
            "att.output.weight": refit && options.fitsOnUpgradedInputs ? .outputRefit : .copy,
            "att.ln_x.weight": .copy, "att.ln_x.bias": .copy,
            "ffn.x_k": .staticLerp("ffn.time_maa_k"), "ffn.key.weight": .widenedRows,
            "ffn.value.weight": ablations.contains(.ffnFold) ? .widenedColumns : .channelMixFold(refit: refit),
            "ln_out.weight": .copy, "ln_out.bias": .copy,
            "head.weight": refit && options.fitsOnUpgradedInputs ? .headRefit : .copy,
        ]
    }

    static func of(_ options: UpgradeOptions, refit: Bool) -> [String: UpgradeStep] {
        options.recipe == .paper ? paper : preserve(options, refit: refit)
    }
}
