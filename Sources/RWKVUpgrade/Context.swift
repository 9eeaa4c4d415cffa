import Foundation
import RWKVText
import RWKVFormats
import RWKVModel

/// The RWKV-6 checkpoint as matrices. Every read is checked for NaN/Inf (a non-finite weight
/// would otherwise spread silently through the SVD and the fits). Tensors smaller than C×C are
/// kept until the next layer starts, so a layer's small tensors are read once; big matrices are
/// read when needed and dropped.
final class V6Weights {
    let source: TensorSource
    private let cacheLimit: Int
    private var cache: [String: Matrix] = [:]
    /// While a step runs, the RWKV-6 tensors it declares (`UpgradeStep.sources`); reading any
    /// other is an internal error, so the report's sources are what was really read.
    var allowed: (step: String, names: Set<String>)?

    init(source: TensorSource, config: RWKVConfig) {
        self.source = source
        cacheLimit = config.embeddingSize * config.embeddingSize
    }

    func matrix(_ name: String) throws -> Matrix {
        if let allowed, !allowed.names.contains(name) {
            throw RWKVError(nil, "internal error: step \(allowed.step) read \(name), which it does not declare")
        }
        if let m = cache[name] { return m }
        let info = try source.requiredInfo(name)
        let values = try NonFiniteCount.checked(source.floats(name), path: source.path, tensor: name,
                                                advice: Self.nonFiniteAdvice)
        let cols = info.shape.last ?? 1
        let m = Matrix(rows: cols == 0 ? 0 : values.count / cols, cols: cols, values: values)
        if values.count < cacheLimit { cache[name] = m }
        return m
    }

    func vector(_ name: String) throws -> [Float] { try matrix(name).values }

    /// RWKV-6 tensor `key` of block `layer`.
    func matrix(_ key: RWKV6Key, _ layer: Int) throws -> Matrix { try matrix(key.name(layer: layer)) }
    func vector(_ key: RWKV6Key, _ layer: Int) throws -> [Float] { try matrix(key, layer).values }

    static let nonFiniteAdvice = "an upgrade would spread it through the new tensors"

    func dropCache() { cache.removeAll() }
}

/// The parts of the upgrade the report times (`UpgradeReport.stageSeconds`).
public enum UpgradeStage: String, Codable, CaseIterable, Sendable {
    /// The text through the RWKV-6's blocks and the upgraded ones.
    case calibration
    case tokenShift = "token-shift lerps"
    case decay
    case bonus
    case gate
    case projectionRefits = "projection refits"
    case channelMixFold = "channel-mix fold"
}

/// What the upgrade found and did in one layer, for the `--json` report.
public struct UpgradeLayerReport: Codable, Sendable {
    public let layer: Int
    /// Decay LoRA units kept when RWKV-7's rank is below RWKV-6's (indices into time_decay_w1's columns).
    public var decayUnitsKept: [Int]?
    /// preserve: channels whose RWKV-6 decay is faster than RWKV-7 can reach (clamped at ≈0.549/token).
    public var decayClampedChannels: Int?
    /// paper: ‖Gᵀ - rank-D SVD‖/‖G‖. preserve: relative error of the fitted gate's output on the fit batch.
    public var gateRelativeError: Double?
    /// preserve: per head, the factor on r_k standing in for GroupNorm's γ/σ (see PreserveRecipe.bonus).
    public var bonusOutsideScale: [Float]?
    /// preserve: mean of the FFN receptance factors folded into ffn.value.
    public var channelMixReceptanceScaleMean: Double?
    /// preserve: fits that did not run as asked, and what was done instead (a rank-deficient
    /// calibration batch raises a ridge; a batch without signal keeps the starting value).
    public var fitNotes: [String: String]?

    init(layer: Int) { self.layer = layer }
}

/// One block's work shared by several of its tensors (decay mapping, gate factorisation, fit
/// batches), each computed when first needed. It belongs to one block: the context starts a new
/// one when the next block's tensors begin, and refuses to hand it to another block's step.
struct LayerFits {
    let layer: Int
    var decayLoRA: (w1: Matrix, w2: Matrix, kept: [Int])?
    var paperGate: (g1: Matrix, g2: Matrix)?
    var timeMixInputs: MixInputs?
    var channelMixInputs: MixInputs?
    /// In time_maa_w2 order (`TokenShiftLerp.rawValue`).
    var tokenShiftLoRA: [Matrix]?
    var lerps: [TokenShiftLerp: [Float]] = [:]
    var mixed: [TokenShiftLerp: (v6: Matrix, v7: Matrix)] = [:]
    var decayFit: PreserveRecipe.DecayFit?
    var bonus: (rk: Matrix, receptanceRowScale: [Float])?
    var preserveGate: PreserveRecipe.GateFit?
    var channelMixReceptanceScale: [Float]?
    var refits: [TokenShiftLerp: Matrix] = [:]
    /// The RWKV-6 block alone in f32 (the bonus fit runs its time mix).
    var rwkv6Block: RWKV6Model?
    /// With calibration: the inputs the upgraded model's block sees.
    var rwkv7TimeMixInputs: MixInputs?
    var rwkv7ChannelMixInputs: MixInputs?
    /// With calibration: the upgraded block's time-mix output before its output projection.
    var rwkv7TimeMixOutput: Matrix?
    var outputRefit: Matrix?
    /// The block's RWKV-7 tensors computed so far (the upgraded block is run from them).
    var outputs: [String: Matrix] = [:]

    init(layer: Int) { self.layer = layer }
}

/// Runs the plan's computations, keeping the current block's shared work in `LayerFits`.
final class UpgradeContext: @unchecked Sendable {
    let weights: V6Weights
    let plan: UpgradePlan
    var options: UpgradeOptions { plan.options }
    private var fits: LayerFits?
    private var currentLayer: Int?
    private(set) var layerReports: [Int: UpgradeLayerReport] = [:]

    /// With calibration: the text through both models, a block at a time.
    private let stream: CalibrationStream?
    /// The block before the current one, kept until the upgraded stream has run it.
    private var finished: LayerFits?
    private let byName: [String: UpgradedTensor]

    init(source: TensorSource, plan: UpgradePlan) throws {
        weights = V6Weights(source: source, config: plan.source)
        self.plan = plan
        byName = Dictionary(plan.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        stream = try plan.calibrationTokens.map {
            try CalibrationStream(tokens: $0, source: WeightLoader(source: source, nonFiniteAdvice: V6Weights.nonFiniteAdvice))
        }
    }

    /// The RWKV-7 side's time-mix inputs of block `layer`: what the upgraded blocks before it
    /// produce, normalised by the block's own upgraded ln1 (or the RWKV-6's inputs).
    private func rwkv7TimeMixInputs(_ layer: Int) throws -> MixInputs {
        guard let stream, options.fitsOnUpgradedInputs else { return try timeMixInputs(layer) }
        return try remember(layer, \.rwkv7TimeMixInputs) {
            let upgraded = try upgradedStream(before: layer, stream)
            let w = try output(RWKV7Key.ln1Weight.name(layer: layer)), b = try output(RWKV7Key.ln1Bias.name(layer: layer))
            return MixInputs(sequence: Matrix(rows: upgraded.count, cols: upgraded.width,
                                              values: upgraded.layerNorm(weight: w.values, bias: b.values)))
        }
    }

    /// The RWKV-7 side's channel-mix inputs of block `layer`: the upgraded stream plus the
    /// block's upgraded time mix (its output projection as written), through its ln2.
    private func rwkv7ChannelMixInputs(_ layer: Int) throws -> MixInputs {
        guard let stream, options.fitsOnUpgradedInputs else { return try channelMixInputs(layer) }
        return try remember(layer, \.rwkv7ChannelMixInputs) {
            // The output projection first: its refit runs the block, under its own declared reads.
            let projection = try output(RWKV7Key.output.name(layer: layer))
            let y = try rwkv7TimeMixOutput(layer)
            var residual = try upgradedStream(before: layer, stream)
            residual.add(y.multiplied(by: projection.transposed()).values)
            let w = try output(RWKV7Key.ln2Weight.name(layer: layer)), b = try output(RWKV7Key.ln2Bias.name(layer: layer))
            return MixInputs(sequence: Matrix(rows: residual.count, cols: residual.width,
                                              values: residual.layerNorm(weight: w.values, bias: b.values)))
        }
    }

    /// The upgraded block's time mix over the upgraded stream, up to its output projection: the
    /// block run alone with the tensors computed so far (its output projection and FFN, not
    /// fitted yet, do not change it: they stand in as the RWKV-6's and zero).
    private func rwkv7TimeMixOutput(_ layer: Int) throws -> Matrix {
        guard let stream else { throw RWKVError(nil, "internal error: no upgraded model to run without calibration") }
        return try remember(layer, \.rwkv7TimeMixOutput) {
            _ = try upgradedStream(before: layer, stream)
            let c = plan.target
            let value = RWKV7Key.ffnValue.name(layer: layer), output = RWKV7Key.output.name(layer: layer)
            let block = try upgradedBlock(layer) { name in
                if name == value { return [Float](repeating: 0, count: c.embeddingSize * c.ffnSize) }
                if name == output { return try self.weights.matrix(name).values }
                return try self.output(name).values
            }
            return try timed(.calibration) { try stream.peekRWKV7(block).timeMixOutput }
        }
    }

    /// The head refitted so that the upgraded model's logits over the text match the RWKV-6's:
    /// argmin ‖LN(x7)·H'ᵀ - LN(x6)·Hᵀ‖² + λ‖H' - H‖² with x6, x7 the two models' final residual
    /// streams (ln_out as written): what the blocks still miss, corrected once at the end.
    func refittedHead(_ head: Matrix) throws -> Matrix {
        guard let stream, options.fitsOnUpgradedInputs else { return head }
        let blocks = plan.target.layerCount
        let upgraded = try upgradedStream(before: blocks, stream)
        let rwkv6 = try timed(.calibration) { try stream.rwkv6Final(blocks: blocks) }
        func normalized(_ s: ResidualStream) throws -> Matrix {
            let w = try computeAside(RWKV7Key.lnOutWeight.name), b = try computeAside(RWKV7Key.lnOutBias.name)
            return Matrix(rows: s.count, cols: s.width, values: s.layerNorm(weight: w.values, bias: b.values))
        }
        let fit = try timed(.projectionRefits) {
            try PreserveRecipe.refitProjection(head, v6Input: normalized(rwkv6), v7Input: normalized(upgraded))
        }
        if let text = fit.note { headNote = text }
        return fit.coefficients
    }

    /// What the head's refit did other than asked (the report's `fitNotes` has the blocks').
    private(set) var headNote: String?

    /// att.output refitted so that the upgraded time mix's output, projected, matches the
    /// RWKV-6's: what the lerps, the state order and the bonus still miss is fitted for here,
    /// on the upgraded model's own activations (`PreserveRecipe.refitProjection`).
    func refittedOutput(_ layer: Int, _ matrix: Matrix) throws -> Matrix {
        guard let stream else { return matrix }
        return try remember(layer, \.outputRefit) {
            let y7 = try rwkv7TimeMixOutput(layer)
            let y6 = try timed(.calibration) { try stream.rwkv6Block(layer).inputs.timeMixOutput }
            let fit = try timed(.projectionRefits) { try PreserveRecipe.refitProjection(matrix, v6Input: y6, v7Input: y7) }
            note(layer, "att.output refit", fit)
            return fit.coefficients
        }
    }

    /// The upgraded stream before block `layer`, after running the finished block before it.
    private func upgradedStream(before layer: Int, _ stream: CalibrationStream) throws -> ResidualStream {
        if layer > 0, let done = finished, done.layer == layer - 1 {
            let block = try upgradedBlock(done.layer) { name in
                guard let m = done.outputs[name] else { throw RWKVError(nil, "internal error: block \(done.layer) has no \(name)") }
                return m.values
            }
            finished = nil
            try timed(.calibration) { _ = try stream.advanceRWKV7(block) }
        }
        return try stream.rwkv7Stream(before: layer) {
            try WeightLoader(path: "upgraded model", config: plan.target) { name in try self.computeAside(name).values }
        }
    }

    /// A model of the upgraded block `layer` alone, its tensors from `values`.
    private func upgradedBlock(_ layer: Int, _ values: @escaping (String) throws -> [Float]) throws -> RWKV7Model {
        try RWKV7Model(block: layer, of: WeightLoader(path: "upgraded model", config: plan.target, fetch: values))
    }

    /// Output tensor `name` of the current block, computed now if it was not yet.
    private func output(_ name: String) throws -> Matrix {
        if let m = fits?.outputs[name] { return m }
        guard let tensor = byName[name], tensor.layer == currentLayer else {
            throw RWKVError(nil, "internal error: \(name) asked for while computing block \(currentLayer.map(String.init) ?? "none")")
        }
        return try computeInBlock(tensor)
    }

    /// A tensor outside the blocks (the upgraded embedding), computed without touching the block's state.
    private func computeAside(_ name: String) throws -> Matrix {
        if let layer = currentLayer, TensorSpec.layer(of: name) == layer { return try output(name) }
        guard let tensor = byName[name], tensor.layer == nil else { throw RWKVError(nil, "internal error: no upgraded \(name) to compute aside") }
        let saved = weights.allowed
        weights.allowed = (tensor.step, Set(tensor.sources))
        defer { weights.allowed = saved }
        return try tensor.recipeStep.compute(self, tensor)
    }

    func compute(_ tensor: UpgradedTensor) throws -> Matrix {
        if tensor.layer != currentLayer {
            finished = stream != nil ? fits : nil
            fits = tensor.layer.map(LayerFits.init)
            weights.dropCache()
            currentLayer = tensor.layer
        }
        if let m = fits?.outputs[tensor.name] { return m }
        return try computeInBlock(tensor)
    }

    private func computeInBlock(_ tensor: UpgradedTensor) throws -> Matrix {
        let saved = weights.allowed
        weights.allowed = (tensor.step, Set(tensor.sources))
        defer { weights.allowed = saved }
        let m = try tensor.recipeStep.compute(self, tensor)
        guard m.values.count == tensor.shape.reduce(1, *) else {
            throw RWKVError(nil, "internal error: \(tensor.name) computed \(m.values.count) values for shape \(tensor.shape)")
        }
        if let bad = m.values.firstIndex(where: { !$0.isFinite }) {
            throw RWKVError(weights.source.path, "upgrade produced a non-finite value for \(tensor.name) at element \(bad) (step \(tensor.step))")
        }
        // With calibration the upgraded block is run from its tensors; otherwise nothing is kept.
        if stream != nil, tensor.layer != nil { fits?.outputs[tensor.name] = m }
        return m
    }

    // MARK: where the time goes

    /// Seconds spent in each stage (exclusive: a stage inside another is not counted twice).
    private(set) var stageSeconds: [UpgradeStage: Double] = [:]
    private var stageStack: [(stage: UpgradeStage, since: Date)] = []

    func timed<T>(_ stage: UpgradeStage, _ body: () throws -> T) rethrows -> T {
        let start = Date()
        if let top = stageStack.last { stageSeconds[top.stage, default: 0] += start.timeIntervalSince(top.since) }
        stageStack.append((stage, start))
        defer {
            let end = Date()
            let top = stageStack.removeLast()
            stageSeconds[top.stage, default: 0] += end.timeIntervalSince(top.since)
            if !stageStack.isEmpty { stageStack[stageStack.count - 1].since = end }
        }
        return try body()
    }

    /// The stream for a new random parameter: depends on the user's seed and the tensor's name only.
    func random(_ name: String) -> SeededRandom { SeededRandom(seed: options.seed, stream: name) }

    /// `layer`'s result at `key`, computed by `make` the first time.
    private func remember<T>(_ layer: Int, _ key: WritableKeyPath<LayerFits, T?>, _ make: () throws -> T) throws -> T {
        guard let current = fits, current.layer == layer else {
            throw RWKVError(nil, "internal error: block \(layer)'s fits asked for while computing block \(currentLayer.map(String.init) ?? "none")")
        }
        if let v = current[keyPath: key] { return v }
        let v = try make()
        fits?[keyPath: key] = v
        return v
    }

    private func report(_ layer: Int, _ update: (inout UpgradeLayerReport) -> Void) {
        var r = layerReports[layer] ?? UpgradeLayerReport(layer: layer)
        update(&r)
        layerReports[layer] = r
    }

    // MARK: decay LoRA (both recipes)

    func decayLoRA(_ layer: Int) throws -> (w1: Matrix, w2: Matrix, kept: [Int]) {
        try remember(layer, \.decayLoRA) {
            var r1 = random(RWKV7Key.w1.name(layer: layer)), r2 = random(RWKV7Key.w2.name(layer: layer))
            let result = try PaperRecipe.resizedDecayLoRA(w1: weights.matrix(.decayW1, layer), w2: weights.matrix(.decayW2, layer),
                                                          rank: plan.target.decayRank, bound: 1e-4, random1: &r1, random2: &r2)
            if plan.target.decayRank < plan.source.decayRank { report(layer) { $0.decayUnitsKept = result.kept } }
            return result
        }
    }

    // MARK: paper gate

    func paperGate(_ layer: Int) throws -> (g1: Matrix, g2: Matrix) {
        try remember(layer, \.paperGate) {
            let factors = try PaperRecipe.gateFactors(gate: weights.matrix(.gate, layer), rank: plan.target.gateRank)
            report(layer) { $0.gateRelativeError = factors.relativeError }
            return (factors.g1, factors.g2)
        }
    }

    // MARK: preserve: fit batches

    /// Time-mix inputs for the fits: the calibration text's when given, else the Gaussian
    /// stand-in built from ln1's weight and bias. The stand-in's stream is fixed (not the
    /// user's seed), so the fits do not change with --seed.
    func timeMixInputs(_ layer: Int) throws -> MixInputs {
        try remember(layer, \.timeMixInputs) { try fitInputs(layer, .timeMix) }
    }

    func channelMixInputs(_ layer: Int) throws -> MixInputs {
        try remember(layer, \.channelMixInputs) { try fitInputs(layer, .channelMix) }
    }

    /// Block `layer` of the RWKV-6 alone in f32: the calibration stream's, or loaded for the
    /// stand-in (the bonus fit runs its time mix).
    func rwkv6Block(_ layer: Int) throws -> RWKV6Model {
        if let stream { return try timed(.calibration) { try stream.rwkv6Block(layer).model } }
        return try remember(layer, \.rwkv6Block) {
            try RWKV6Model(block: layer, of: WeightLoader(source: weights.source, nonFiniteAdvice: V6Weights.nonFiniteAdvice))
        }
    }

    private func fitInputs(_ layer: Int, _ part: BlockPart) throws -> MixInputs {
        if let stream {
            let block = try timed(.calibration) { try stream.rwkv6Block(layer) }
            return part == .timeMix ? block.inputs.timeMix : block.inputs.channelMix
        }
        let (weight, bias): (RWKV6Key, RWKV6Key) = part == .timeMix ? (.ln1Weight, .ln1Bias) : (.ln2Weight, .ln2Bias)
        // The stream is named after the norm ("fit batch blocks.3.ln1"), as it always was.
        let norm = weight.name(layer: layer).split(separator: ".").dropLast().joined(separator: ".")
        var random = SeededRandom(seed: 0, stream: "fit batch " + norm)
        return try MixInputs.gaussianProxy(lnWeight: weights.vector(weight, layer), lnBias: weights.vector(bias, layer),
                                           count: options.fitTokens, random: &random)
    }

    /// RWKV-6's token-shift LoRA outputs over the fit batch, in time_maa_w2 order (w k v r g).
    func tokenShiftLoRA(_ layer: Int) throws -> [Matrix] {
        try remember(layer, \.tokenShiftLoRA) {
            let w2 = try weights.matrix(.maaW2, layer)        // (5·D)×C
            let d = w2.rows / 5
            let parts = (0..<5).map { i in Matrix(rows: d, cols: w2.cols, values: Array(w2.values[(i * d * w2.cols)..<((i + 1) * d * w2.cols)])) }
            return try timed(.tokenShift) { try PreserveRecipe.tokenShiftLoRA(timeMixInputs(layer), timeMaaX: weights.vector(.maaX, layer),
                                                     w1: weights.matrix(.maaW1, layer), w2: parts) }
        }
    }

    /// The RWKV-7 static lerp for RWKV-6's `lerp`.
    func timeMixLerp(_ layer: Int, _ lerp: TokenShiftLerp) throws -> [Float] {
        try remember(layer, \.lerps[lerp]) {
            let maa = try weights.vector(lerp.timeMaa, layer)
            if options.ablations.contains(.tokenShift) { return maa }
            return try PreserveRecipe.meanLerp(timeMaa: maa, lora: tokenShiftLoRA(layer)[lerp.rawValue], inputs: timeMixInputs(layer))
        }
    }

    /// The fit batch mixed as RWKV-6 mixes it (static + LoRA) and as RWKV-7 will (static only).
    func mixedTimeMixInputs(_ layer: Int, _ lerp: TokenShiftLerp) throws -> (v6: Matrix, v7: Matrix) {
        try remember(layer, \.mixed[lerp]) {
            let inputs = try timeMixInputs(layer)
            let maa = try weights.vector(lerp.timeMaa, layer)
            return try (inputs.lerp(maa, plus: tokenShiftLoRA(layer)[lerp.rawValue]), rwkv7TimeMixInputs(layer).lerp(timeMixLerp(layer, lerp)))
        }
    }

    /// With calibration: receptance, key or value refitted for the static lerp; else unchanged.
    func refitted(_ layer: Int, _ lerp: TokenShiftLerp, _ matrix: Matrix) throws -> Matrix {
        guard plan.refitsProjections else { return matrix }
        return try remember(layer, \.refits[lerp]) {
            let (v6Input, v7Input) = try mixedTimeMixInputs(layer, lerp)
            let fit = try timed(.projectionRefits) { try PreserveRecipe.refitProjection(matrix, v6Input: v6Input, v7Input: v7Input) }
            note(layer, "att.\(lerp) refit", fit)
            return fit.coefficients
        }
    }

    /// Records what a fit did other than asked (`RidgeSolution.note`) in the layer's report.
    private func note(_ layer: Int, _ fit: String, _ solution: RidgeSolution) {
        guard let text = solution.note else { return }
        report(layer) { $0.fitNotes = ($0.fitNotes ?? [:]).merging([fit: text]) { $1 } }
    }

    // MARK: preserve: decay, bonus, gate, channel mix

    func decayFit(_ layer: Int) throws -> PreserveRecipe.DecayFit {
        try remember(layer, \.decayFit) {
            let (v6Input, v7Input) = try mixedTimeMixInputs(layer, .w)
            // The fit sees the units that came from RWKV-6 only: new U(±1e-4) units add ~1e-8 to
            // the decay, and leaving them out keeps the fit independent of --seed.
            let lora = try decayLoRA(layer)
            let units = lora.kept.count
            let w1 = Matrix(rows: lora.w1.rows, cols: units, values: (0..<lora.w1.rows).flatMap { lora.w1.row($0).prefix(units) })
            let w2 = Matrix(rows: units, cols: lora.w2.cols, values: Array(lora.w2.values.prefix(units * lora.w2.cols)))
            let fit = try timed(.decay) { try PreserveRecipe.decayFit(timeDecay: weights.vector(.decay, layer), v6Input: v6Input,
                                                  v6W1: weights.matrix(.decayW1, layer), v6W2: weights.matrix(.decayW2, layer),
                                                  v7Input: v7Input, w1: w1, w2: w2) }
            report(layer) { $0.decayClampedChannels = fit.clampedChannels }
            return fit
        }
    }

    func bonus(_ layer: Int) throws -> (rk: Matrix, receptanceRowScale: [Float]) {
        try remember(layer, \.bonus) {
            let u = try weights.matrix(.faaaa, layer)
            let fit = try decayFit(layer)
            let rowScale: [Float] = options.compensateDecayShift ? fit.meanDecay.map { 1 / $0 } : [Float](repeating: 1, count: fit.meanDecay.count)
            let missing = PreserveRecipe.bonusMissingInside(timeFirst: u, meanDecay: fit.meanDecay, compensateShift: options.compensateDecayShift)
            // RWKV-6's time mix over the fit batch (RWKVModel's), and RWKV-7's r, k, v.
            let inputs = try timeMixInputs(layer)
            let readout = try timed(.bonus) { try rwkv6Block(layer).timeMixReadout(layer: layer, inputs: inputs.current.values) }
            let (_, xr7) = try mixedTimeMixInputs(layer, .r)
            let (_, xk7) = try mixedTimeMixInputs(layer, .k)
            let (_, xv7) = try mixedTimeMixInputs(layer, .v)
            let r = try weights.matrix(.receptance, layer), k = try weights.matrix(.key, layer)
            let v = try weights.matrix(.value, layer)
            let scale = try timed(.bonus) { try PreserveRecipe.bonusOutsideScale(
                missing: missing, lnXWeight: weights.vector(.lnXWeight, layer),
                readout6: Matrix(rows: inputs.count, cols: r.rows, values: readout),
                r7: xr7.multiplied(by: refitted(layer, .r, r).transposed()).scalingColumns(rowScale),
                k7: xk7.multiplied(by: refitted(layer, .k, k).transposed()), v7: xv7.multiplied(by: refitted(layer, .v, v).transposed())) }
            report(layer) { $0.bonusOutsideScale = scale }
            return PreserveRecipe.bonus(timeFirst: u, meanDecay: fit.meanDecay, compensateShift: options.compensateDecayShift,
                                        outsideScale: scale)
        }
    }

    func preserveGate(_ layer: Int) throws -> PreserveRecipe.GateFit {
        try remember(layer, \.preserveGate) {
            let (v6Input, v7Input) = try mixedTimeMixInputs(layer, .g)
            let fit = try timed(.gate) { try PreserveRecipe.gateFit(gate: weights.matrix(.gate, layer), v6Input: v6Input,
                                                 v7Input: v7Input, rank: plan.target.gateRank,
                                                 spreads: options.gateUnitSpreads,
                                                 // On the stand-in a refined gate fits the noise (docs/upgrade.md).
                                                 refineSteps: plan.refitsProjections ? options.gateRefineSteps : 0,
                                                 ridge: options.gateRidge, targetRank: options.gateTargetRank) }
            report(layer) { $0.gateRelativeError = fit.relativeError }
            note(layer, "gate", fit.ridge)
            return fit
        }
    }

    func channelMixReceptanceScale(_ layer: Int) throws -> [Float] {
        try remember(layer, \.channelMixReceptanceScale) {
                let inputs = try channelMixInputs(layer)
            let scale = try PreserveRecipe.channelMixReceptanceScale(
                receptance: weights.matrix(.ffnReceptance, layer), key: weights.matrix(.ffnKey, layer),
                value: weights.matrix(.ffnValue, layer), keyInput: inputs.lerp(weights.vector(.ffnMaaK, layer)),
                receptanceInput: inputs.lerp(weights.vector(.ffnMaaR, layer)))
            report(layer) { $0.channelMixReceptanceScaleMean = scale.reduce(0.0) { $0 + Double($1) } / Double(max(scale.count, 1)) }
            return scale
        }
    }

    /// ffn.value with RWKV-6's FFN receptance folded in (before widening): refitted over the batch
    /// with calibration, else scaled per channel.
    func channelMixFoldedValue(_ layer: Int) throws -> Matrix {
        let value = try weights.matrix(.ffnValue, layer), scale = try channelMixReceptanceScale(layer)
        guard plan.refitsProjections else { return value.scalingRows(scale) }
        let inputs = try channelMixInputs(layer), maaK = try weights.vector(.ffnMaaK, layer)
        let fit = try timed(.channelMixFold) { try PreserveRecipe.channelMixRefit(
            receptance: weights.matrix(.ffnReceptance, layer), key: weights.matrix(.ffnKey, layer), value: value,
            keyInput: inputs.lerp(maaK), receptanceInput: inputs.lerp(weights.vector(.ffnMaaR, layer)),
            rwkv7KeyInput: rwkv7ChannelMixInputs(layer).lerp(maaK), scale: scale) }
        note(layer, "ffn.value refit", fit)
        return fit.coefficients
    }
}
