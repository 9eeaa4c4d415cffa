import Foundation
import RWKVFormats
import RWKVModel

/// `--calibrate TEXT` through RWKVModel's RWKV-6 forward pass (and, for a second calibration pass,
/// the RWKV-7 of the first pass's tensors): a `LayerInputObserver` records
/// the LayerNorm outputs the blocks see over the text (the sequence-mode pass the official
/// logits are checked against, ForwardTests). Memory is bounded: one pass records the inputs of
/// as many consecutive blocks as fit in its record budget; a block outside them is recorded
/// by another pass. The model itself is held in f32 (4 bytes a parameter), as rwkv-verify does.
final class CalibrationRun {
    private let model: RWKVLanguageModel
    private let tokens: [Int]
    private let blocksPerPass: Int
    private var recorded: [Int: (timeMix: MixInputs, channelMix: MixInputs)] = [:]

    /// - Parameter recordBudget: bytes of recorded inputs one pass may hold (default 512 MiB).
    init(tokens: [Int], model: RWKVLanguageModel, recordBudget: Int = 512 << 20) throws {
        self.model = model
        self.tokens = tokens
        let perBlock = 2 * tokens.count * model.config.embeddingSize * MemoryLayout<Float>.size
        blocksPerPass = max(1, recordBudget / max(perBlock, 1))
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
            case .timeMixReadout: break
            }
        }
    }
}
