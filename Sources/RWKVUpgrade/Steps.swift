import RWKVFormats
import RWKVModel

/// RWKV-6's five data-dependent lerps, in time_maa_w2's order (its first axis).
enum TokenShiftLerp: Int, CaseIterable, Sendable {
    case w, k, v, r, g

    /// The RWKV-6 static lerp (RWKV6Key.lerps is in this order).
    var timeMaa: RWKV6Key { RWKV6Key.lerps[rawValue] }
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
    case staticLerp(RWKV6Key)
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
    func sources(target: RWKV7Key) -> [RWKV6Key] {
        typealias K = RWKV6Key
        // The token-shift LoRA over the fit batch (the Gaussian stand-in is built from ln1).
        let tokenShiftLoRA: [K] = [.maaX, .maaW1, .maaW2, .ln1Weight, .ln1Bias]
        let decay: [K] = [.decay, .decayW1, .decayW2, TokenShiftLerp.w.timeMaa]
        // The bonus runs RWKV-6's and RWKV-7's r, k, v over the batch, and reads ln_x's γ.
        let bonus: [K] = [.faaaa] + decay + tokenShiftLoRA + [.receptance, .key, .value, .lnXWeight]
            + [TokenShiftLerp.r, .k, .v].map(\.timeMaa)
        func same() -> K { Self.rwkv6(target) }   // only for the steps given shared rows
        switch self {
        case .copy, .halved, .normWeight, .widenedRows, .widenedColumns: return [same()]
        case .copyTimeDecay: return [.decay]
        case .staticLerp(let v6): return [v6]
        case .iclrLerp, .constant, .switchedOff, .zeroLoRA, .orthogonalLoRA, .zeroBonus: return []
        case .resizedDecayLoRA: return [.decayW1, .decayW2]
        case .gateFactors, .gateSVD: return [.gate]
        case .meanLerp(let lerp): return [lerp.timeMaa] + tokenShiftLoRA
        case .decayFit, .decayLoRATimesSlope: return decay + tokenShiftLoRA
        case .bonus: return bonus
        case .gateFit: return [.gate, TokenShiftLerp.g.timeMaa] + tokenShiftLoRA
        case .bonusReceptance: return [same()] + bonus.filter { $0 != same() }
        case .refitProjection(let lerp): return [same(), lerp.timeMaa] + tokenShiftLoRA
        // The RWKV-6 block's and the upgraded block's time mix over the text.
        case .outputRefit: return [same()]
        case .headRefit: return [same(), .lnOutWeight, .lnOutBias]
        case .channelMixFold: return [same(), .ffnReceptance, .ffnKey, .ffnMaaK, .ffnMaaR, .ln2Weight, .ln2Bias]
        }
    }

    /// The RWKV-6 tensor of the same name as RWKV-7 row `key`, for the steps that copy or rescale
    /// a tensor: the tables give them only rows both architectures have (a test runs every step of
    /// both recipes), so a miss is a programming error.
    static func rwkv6(_ key: RWKV7Key) -> RWKV6Key { RWKV6Key(rawValue: key.rawValue)! }

    /// Computes the tensor of `tensor` (RWKV-7 row `tensor.row`, in block `tensor.layer`).
    func compute(_ ctx: UpgradeContext, _ tensor: UpgradedTensor) throws -> Matrix {
        let name = tensor.name, shape = tensor.shape, c = ctx.plan.target.embeddingSize
        func layer() throws -> Int {
            guard let layer = tensor.layer else { throw RWKVError(nil, "internal error: \(name) is not in a block") }
            return layer
        }
        func source(_ row: RWKV6Key) throws -> Matrix { try ctx.weights.matrix(ctx.plan.sourceName(row, layer: tensor.layer)) }
        func same() -> RWKV6Key { Self.rwkv6(tensor.row) }   // only for the steps given shared rows
        switch self {
        case .copy: return try source(same())
        case .copyTimeDecay: return try source(.decay)
        case .halved: return try PaperRecipe.halved(source(same()))
        case .normWeight: return try PaperRecipe.normWeight(source(same()))
        case .staticLerp(let v6): return try PaperRecipe.lerpWithoutTokenShiftLoRA(source(v6))
        case .iclrLerp: return try RWKV7Init.iclrLerp(layer: layer(), layerCount: ctx.plan.target.layerCount, embeddingSize: c)
        case .resizedDecayLoRA:
            let lora = try ctx.decayLoRA(layer())
            return tensor.row == .w1 ? lora.w1 : lora.w2
        case .constant(let v), .switchedOff(let v): return RWKV7Init.constant(v, count: c)
        case .zeroLoRA: return RWKV7Init.zeroLoRA(rows: shape[0], cols: shape[1])
        case .orthogonalLoRA:
            var random = ctx.random(name)
            return RWKV7Init.orthogonalLoRA(rows: shape[0], cols: shape[1], random: &random)
        case .zeroBonus: return RWKV7Init.bonus(heads: shape[0], headSize: shape[1])
        case .gateFactors:
            let gate = try ctx.paperGate(layer())
            return tensor.row == .g1 ? gate.g1 : gate.g2
        case .gateSVD:
            // The paper's g2 carries the ½; doubling it back is exact.
            let gate = try ctx.paperGate(layer())
            return tensor.row == .g1 ? gate.g1 : Matrix(rows: gate.g2.rows, cols: gate.g2.cols, values: gate.g2.values.map { $0 * 2 })
        case .widenedRows:
            var random = ctx.random(name)
            return try PaperRecipe.widenedRows(source(same()), to: shape[0], bound: 1e-3, random: &random)
        case .widenedColumns:
            var random = ctx.random(name)
            return try PaperRecipe.widenedColumns(source(same()), to: shape[1], bound: 1e-3, random: &random)
        case .meanLerp(let lerp): return try Matrix(row: ctx.timeMixLerp(layer(), lerp))
        case .decayFit: return try Matrix(row: ctx.decayFit(layer()).w0)
        case .decayLoRATimesSlope:
            let l = try layer()
            return try ctx.decayLoRA(l).w2.scalingColumns(ctx.decayFit(l).slope)
        case .bonus: return try ctx.bonus(layer()).rk
        case .gateFit:
            let gate = try ctx.preserveGate(layer())
            return tensor.row == .g1 ? gate.g1 : gate.g2
        case .bonusReceptance:
            let l = try layer()
            return try ctx.refitted(l, .r, source(same())).scalingRows(ctx.bonus(l).receptanceRowScale)
        case .refitProjection(let lerp): return try ctx.refitted(layer(), lerp, source(same()))
        case .outputRefit: return try ctx.refittedOutput(layer(), source(same()))
        case .headRefit: return try ctx.refittedHead(source(same()))
        case .channelMixFold:
            var random = ctx.random(name)
            return try PaperRecipe.widenedColumns(ctx.channelMixFoldedValue(layer()), to: shape[1], bound: 1e-3, random: &random)
        }
    }
}

/// The recipes' tables: for every RWKV-7 schema row (`RWKV7Key`), its step. Exhaustive
/// switches, so a row without a step does not compile.
enum RecipeTable {
    static func paper(_ key: RWKV7Key) -> UpgradeStep {
        switch key {
        case .emb: return .halved
        case .ln0Weight, .ln1Weight, .ln2Weight, .lnXWeight, .lnOutWeight: return .normWeight
        case .ln0Bias, .ln1Bias, .ln2Bias, .lnXBias, .lnOutBias: return .halved
        case .xR: return .staticLerp(TokenShiftLerp.r.timeMaa)
        case .xW: return .staticLerp(TokenShiftLerp.w.timeMaa)
        case .xK: return .staticLerp(TokenShiftLerp.k.timeMaa)
        case .xV: return .staticLerp(TokenShiftLerp.v.timeMaa)
        case .xA: return .iclrLerp
        case .xG: return .staticLerp(TokenShiftLerp.g.timeMaa)
        case .w0: return .copyTimeDecay
        case .a0: return .constant(0)
        case .v0: return .constant(1)
        case .kK: return .constant(0.85)
        case .kA: return .constant(1)
        case .w1, .w2: return .resizedDecayLoRA
        case .a1, .v1: return .zeroLoRA
        case .a2, .v2: return .orthogonalLoRA
        case .g1, .g2: return .gateFactors
        case .rK: return .zeroBonus
        case .receptance, .output: return .halved
        case .key, .value, .head: return .copy
        case .ffnXK: return .staticLerp(.ffnMaaK)
        case .ffnKey: return .widenedRows
        case .ffnValue: return .widenedColumns
        }
    }

    /// `refit`: receptance, key and value are refitted (`UpgradePlan.refitsProjections`).
    /// `options.ablations`: mappings put back to their plain counterparts.
    static func preserve(_ options: UpgradeOptions, refit: Bool) -> (RWKV7Key) -> UpgradeStep {
        let ablations = options.ablations, off = options.switchedOffBias
        func lerp(_ l: TokenShiftLerp) -> UpgradeStep { ablations.contains(.tokenShift) ? .staticLerp(l.timeMaa) : .meanLerp(l) }
        let on = ablations.contains(.switchedOff), bonus = !ablations.contains(.bonus), decay = !ablations.contains(.decay)
        let upgradedInputs = refit && options.fitsOnUpgradedInputs
        return { key in
            switch key {
            case .emb, .ln0Weight, .ln0Bias, .ln1Weight, .ln1Bias, .ln2Weight, .ln2Bias, .lnXWeight, .lnXBias,
                 .lnOutWeight, .lnOutBias: return .copy
            case .xR: return lerp(.r)
            case .xW: return lerp(.w)
            case .xK: return lerp(.k)
            case .xV: return lerp(.v)
            case .xA: return .iclrLerp
            case .xG: return lerp(.g)
            case .w0: return decay ? .decayFit : .copyTimeDecay
            case .a0: return on ? .constant(0) : .switchedOff(off)
            case .v0: return on ? .constant(1) : .switchedOff(off)
            case .kK: return .constant(0.85)
            case .kA: return .constant(on ? 1 : 0)
            case .w1: return .resizedDecayLoRA
            case .w2: return decay ? .decayLoRATimesSlope : .resizedDecayLoRA
            case .a1, .v1: return .zeroLoRA
            case .a2, .v2: return .orthogonalLoRA
            case .g1, .g2: return ablations.contains(.gate) ? .gateSVD : .gateFit
            case .rK: return bonus ? .bonus : .zeroBonus
            case .receptance: return bonus ? .bonusReceptance(refit: refit) : refit ? .refitProjection(.r) : .copy
            case .key: return refit ? .refitProjection(.k) : .copy
            case .value: return refit ? .refitProjection(.v) : .copy
            case .output: return upgradedInputs ? .outputRefit : .copy
            case .ffnXK: return .staticLerp(.ffnMaaK)
            case .ffnKey: return .widenedRows
            case .ffnValue: return ablations.contains(.ffnFold) ? .widenedColumns : .channelMixFold(refit: refit)
            case .head: return upgradedInputs ? .headRefit : .copy
            }
        }
    }

    static func of(_ options: UpgradeOptions, refit: Bool) -> (RWKV7Key) -> UpgradeStep {
        options.recipe == .paper ? paper : preserve(options, refit: refit)
    }
}
