import Foundation
import RWKVFormats
import RWKVModel

/// `--calibrate TEXT`: the RWKV-6 model is run over a text and the `preserve` fits use the
/// inputs its layers really see instead of the Gaussian stand-in.
///
/// The run advances one layer at a time, in step with the upgrade (which produces tensors layer
/// by layer), so memory holds the residual stream (tokens × C) and one layer's inputs, never the
/// whole model's activations. That is why this is a small forward pass of its own rather than
/// RWKVModel's RWKV6Model, which runs all layers per call and keeps its intermediates private.
/// It follows SPEC §3 (the official package's v6.0 path) in sequence mode, and is checked
/// against the official logits fixture.
final class RWKV6CalibrationRun {
    private let weights: V6Weights
    private let config: RWKVConfig
    /// Residual stream, tokens × C, after the layers run so far.
    private var residual: Matrix
    private(set) var nextLayer = 0

    init(tokens: [Int], weights: V6Weights, config: RWKVConfig) throws {
        self.weights = weights
        self.config = config
        let emb = try weights.matrix("emb.weight")
        let c = config.embeddingSize
        var x = Matrix(zeros: tokens.count, c)
        for (row, token) in tokens.enumerated() {
            guard token >= 0, token < emb.rows else { throw RWKVError(nil, "calibration token \(token) is outside the vocabulary (\(emb.rows))") }
            for j in 0..<c { x[row, j] = emb[token, j] }
        }
        residual = try Self.layerNorm(x, weights.vector("blocks.0.ln0.weight"), weights.vector("blocks.0.ln0.bias"))
    }

    /// Runs layer `layer` (the next one) and returns the LayerNorm outputs its time mix and
    /// channel mix saw, as token sequences.
    func runLayer(_ layer: Int) throws -> (timeMix: MixInputs, channelMix: MixInputs) {
        guard layer == nextLayer else { throw RWKVError(nil, "internal error: calibration asked for layer \(layer), next is \(nextLayer)") }
        let b = "blocks.\(layer).", att = b + "att.", ffn = b + "ffn."
        let c = config.embeddingSize, heads = config.headCount, n = config.headSize, t = residual.rows
        let w = weights

        // Time mix.
        let ln1 = try Self.layerNorm(residual, w.vector(b + "ln1.weight"), w.vector(b + "ln1.bias"))
        let timeInputs = MixInputs(sequence: ln1)
        let maaW2 = try w.matrix(att + "time_maa_w2")
        let d = maaW2.rows / 5
        let lora = try PreserveRecipe.tokenShiftLoRA(timeInputs, timeMaaX: w.vector(att + "time_maa_x"), w1: w.matrix(att + "time_maa_w1"),
                                                     w2: (0..<5).map { i in Matrix(rows: d, cols: c, values: Array(maaW2.values[(i * d * c)..<((i + 1) * d * c)])) })
        func mixed(_ which: String, _ index: Int) throws -> Matrix { try timeInputs.lerp(w.vector(att + "time_maa_" + which), plus: lora[index]) }
        let r = try mixed("r", 3).multiplied(by: w.matrix(att + "receptance.weight").transposed())
        let k = try mixed("k", 1).multiplied(by: w.matrix(att + "key.weight").transposed())
        let v = try mixed("v", 2).multiplied(by: w.matrix(att + "value.weight").transposed())
        let gz = try mixed("g", 4).multiplied(by: w.matrix(att + "gate.weight").transposed())
        let delta = try PreserveRecipe.tanhProduct(mixed("w", 0), w.matrix(att + "time_decay_w1"), w.matrix(att + "time_decay_w2"))
        let td = try w.vector(att + "time_decay"), u = try w.vector(att + "time_faaaa")
        let lnX = try (w.vector(att + "ln_x.weight"), w.vector(att + "ln_x.bias"))
        var y = Matrix(zeros: t, c)
        var state = [Float](repeating: 0, count: heads * n * n)        // [h][key j][value i]
        for s in 0..<t {
            for h in 0..<heads {
                var out = [Float](repeating: 0, count: n)
                for j in 0..<n {
                    let ch = h * n + j
                    let rj = r[s, ch], kj = k[s, ch]
                    let decay = exp(-exp(td[ch] + delta[s, ch]))
                    let base = ch * n
                    for i in 0..<n {
                        let kv = kj * v[s, h * n + i]
                        out[i] += rj * (u[ch] * kv + state[base + i])
                        state[base + i] = kv + decay * state[base + i]
                    }
                }
                // GroupNorm per head, eps 64e-5.
                let mean = out.reduce(0, +) / Float(n)
                let variance = out.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(n)
                let inv = 1 / (variance + 64e-5).squareRoot()
                for i in 0..<n {
                    let ch = h * n + i
                    let z = gz[s, ch]
                    y[s, ch] = ((out[i] - mean) * inv * lnX.0[ch] + lnX.1[ch]) * (z / (1 + exp(-z)))   // × silu(gate)
                }
            }
        }
        add(y.multiplied(by: try w.matrix(att + "output.weight").transposed()))

        // Channel mix.
        let ln2 = try Self.layerNorm(residual, w.vector(b + "ln2.weight"), w.vector(b + "ln2.bias"))
        let channelInputs = MixInputs(sequence: ln2)
        let key = try channelInputs.lerp(w.vector(ffn + "time_maa_k")).multiplied(by: w.matrix(ffn + "key.weight").transposed())
        let hidden = Matrix(rows: key.rows, cols: key.cols, values: key.values.map { let p = max($0, 0); return p * p })
        var out = try hidden.multiplied(by: w.matrix(ffn + "value.weight").transposed())
        let gate = try channelInputs.lerp(w.vector(ffn + "time_maa_r")).multiplied(by: w.matrix(ffn + "receptance.weight").transposed())
        for i in 0..<out.values.count { out.values[i] *= 1 / (1 + exp(-gate.values[i])) }
        add(out)

        nextLayer += 1
        return (timeInputs, channelInputs)
    }

    /// Logits after every layer has run (tokens × V): for checking against the official package.
    func logits() throws -> Matrix {
        guard nextLayer == config.layerCount else { throw RWKVError(nil, "internal error: logits before the last layer") }
        let x = try Self.layerNorm(residual, weights.vector("ln_out.weight"), weights.vector("ln_out.bias"))
        return try x.multiplied(by: weights.matrix("head.weight").transposed())
    }

    private func add(_ m: Matrix) {
        for i in 0..<residual.values.count { residual.values[i] += m.values[i] }
    }

    static func layerNorm(_ x: Matrix, _ weight: [Float], _ bias: [Float]) -> Matrix {
        var out = x
        for r in 0..<x.rows {
            let row = x.row(r)
            let mean = row.reduce(0, +) / Float(x.cols)
            let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(x.cols)
            let inv = 1 / (variance + 1e-5).squareRoot()
            for c in 0..<x.cols { out[r, c] = (x[r, c] - mean) * inv * weight[c] + bias[c] }
        }
        return out
    }
}

/// `--calibrate TEXT` through RWKVModel's RWKV-6 forward pass: a `LayerInputObserver` records
/// the LayerNorm outputs the blocks see over the text (the sequence-mode pass the official
/// logits are checked against, ForwardTests). Memory is bounded: one pass records the inputs of
/// as many consecutive blocks as fit in `recordBudget` bytes; a block outside them is recorded
/// by another pass. The model itself is held in f32 (4 bytes a parameter), as rwkv-verify does.
final class CalibrationRun {
    private let model: RWKV6Model
    private let tokens: [Int]
    private let blocksPerPass: Int
    private var recorded: [Int: (timeMix: MixInputs, channelMix: MixInputs)] = [:]

    static let recordBudget = 512 << 20

    init(tokens: [Int], source: TensorSource) throws {
        model = try RWKV6Model(WeightLoader(source: source))
        self.tokens = tokens
        let perBlock = 2 * tokens.count * model.config.embeddingSize * MemoryLayout<Float>.size
        blocksPerPass = max(1, Self.recordBudget / max(perBlock, 1))
    }

    /// The time-mix and channel-mix inputs of block `layer`, as token sequences.
    func inputs(_ layer: Int) throws -> (timeMix: MixInputs, channelMix: MixInputs) {
        if let inputs = recorded[layer] { return inputs }
        guard layer >= 0, layer < model.config.layerCount else { throw RWKVError(nil, "internal error: no block \(layer) to calibrate") }
        let recorder = Recorder(blocks: layer..<min(layer + blocksPerPass, model.config.layerCount), width: model.config.embeddingSize)
        model.layerInputObserver = recorder
        defer { model.layerInputObserver = nil }
        var state = model.makeState()
        _ = try model.forward(tokens, state: &state, mode: .sequence, positions: .last)
        recorded = [:]
        for block in recorder.blocks {
            let c = model.config.embeddingSize
            func sequence(_ values: [Float]) -> MixInputs { MixInputs(sequence: Matrix(rows: values.count / c, cols: c, values: values)) }
            recorded[block] = (sequence(recorder.timeMix[block - recorder.blocks.lowerBound]),
                               sequence(recorder.channelMix[block - recorder.blocks.lowerBound]))
        }
        guard let inputs = recorded[layer], inputs.timeMix.count == tokens.count, inputs.channelMix.count == tokens.count else {
            throw RWKVError(nil, "internal error: the forward pass did not show block \(layer)'s \(tokens.count) inputs")
        }
        return inputs
    }

    private final class Recorder: LayerInputObserver {
        let blocks: Range<Int>
        var timeMix: [[Float]], channelMix: [[Float]]

        init(blocks: Range<Int>, width: Int) {
            self.blocks = blocks
            timeMix = Array(repeating: [], count: blocks.count)
            channelMix = timeMix
        }

        func observe(layer: Int, part: BlockPart, input: UnsafePointer<Float>, rows: Int, width: Int) {
            guard blocks.contains(layer) else { return }
            let rows = UnsafeBufferPointer(start: input, count: rows * width)
            switch part {
            case .timeMix: timeMix[layer - blocks.lowerBound].append(contentsOf: rows)
            case .channelMix: channelMix[layer - blocks.lowerBound].append(contentsOf: rows)
            }
        }
    }
}
