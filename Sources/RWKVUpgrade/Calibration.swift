import Foundation
import RWKVFormats
import RWKVModel

/// The calibration text run through both models a block at a time, alongside the upgrade.
///
/// RWKV-6 side: block i of the checkpoint is loaded alone (`RWKV6Model(block:of:)`), run over the
/// text's residual stream, its LayerNorm outputs recorded, and dropped. RWKV-7 side: the upgraded
/// model's own stream. Block i's fits read the inputs the upgraded blocks 0..<i really produce
/// (not the RWKV-6's), so what earlier blocks miss is fitted for instead of passed on; its
/// channel-mix fits read what block i's own upgraded time mix produces.
///
/// Memory: two N×C residual streams (plus RWKV-7's N×C block-0 values), one block of each model
/// in f32, and the current block's recorded inputs; nothing grows with depth.
final class CalibrationStream {
    let tokens: [Int]
    private let source: WeightLoader
    private var rwkv6: ResidualStream
    private var rwkv7: ResidualStream?
    /// The RWKV-6 block last run, with its recorded inputs.
    private var current: (layer: Int, model: RWKV6Model, inputs: BlockInputs)?

    init(tokens: [Int], source: WeightLoader) throws {
        self.tokens = tokens
        self.source = source
        rwkv6 = try ResidualStream(tokens: tokens, loader: source)
    }

    /// Block `layer` of the RWKV-6: its time-mix and channel-mix inputs over the text, and the
    /// block's model (the bonus fit runs its time mix again). Blocks come in order; blocks
    /// skipped over are run without recording.
    func rwkv6Block(_ layer: Int) throws -> (model: RWKV6Model, inputs: BlockInputs) {
        if let current, current.layer == layer { return (current.model, current.inputs) }
        guard layer >= rwkv6.nextBlock else {
            throw RWKVError(nil, "internal error: calibration of block \(layer) asked for at block \(rwkv6.nextBlock)")
        }
        current = nil
        while rwkv6.nextBlock < layer { try RWKV6Model(block: rwkv6.nextBlock, of: source).run(&rwkv6) }
        let model = try RWKV6Model(block: layer, of: source)
        let inputs = try BlockInputRecorder.run(model, on: &rwkv6, tokens: tokens.count, layer: layer)
        current = (layer, model, inputs)
        return (model, inputs)
    }

    /// The RWKV-6's residual stream after its last block (blocks not run yet are run now).
    func rwkv6Final(blocks: Int) throws -> ResidualStream {
        while rwkv6.nextBlock < blocks { current = nil; try RWKV6Model(block: rwkv6.nextBlock, of: source).run(&rwkv6) }
        return rwkv6
    }

    /// The upgraded model's residual stream before block `layer` (built from its embedding and
    /// ln0 the first time).
    func rwkv7Stream(before layer: Int, embedding: () throws -> WeightLoader) throws -> ResidualStream {
        if rwkv7 == nil { rwkv7 = try ResidualStream(tokens: tokens, loader: embedding()) }
        guard let rwkv7, rwkv7.nextBlock == layer else {
            throw RWKVError(nil, "internal error: the upgraded model's stream is not at block \(layer)")
        }
        return rwkv7
    }

    /// Runs the upgraded block `layer` (a model of that block alone) over the RWKV-7 stream,
    /// returning its inputs.
    func advanceRWKV7(_ block: RWKV7Model) throws {
        guard var stream = rwkv7 else { throw RWKVError(nil, "internal error: no upgraded stream to advance") }
        rwkv7 = nil           // one copy of the stream while it runs
        try block.run(&stream)
        rwkv7 = stream
    }

    /// Runs block `layer` on a copy of the upgraded stream and returns what it saw, leaving the
    /// stream where it was (the time mix of a block whose output and FFN are not fitted yet).
    func peekRWKV7(_ block: RWKV7Model) throws -> BlockInputs {
        guard var stream = rwkv7, let layer = block.blockIndex else { throw RWKVError(nil, "internal error: no upgraded stream") }
        return try BlockInputRecorder.run(block, on: &stream, tokens: tokens.count, layer: layer)
    }
}

/// What one block saw over the text: its time-mix and channel-mix inputs (LayerNorm outputs), and
/// its time mix's output before the output projection (gate ⊙ GroupNorm(readout)).
struct BlockInputs {
    let timeMix: MixInputs
    let channelMix: MixInputs
    /// N×C.
    let timeMixOutput: Matrix
}

/// Records a one-block model's LayerNorm outputs (time mix ln1, channel mix ln2) and the input of
/// its time mix's output projection.
private final class BlockInputRecorder: LayerInputObserver, MatmulObserver {
    let width: Int
    var timeMix: [Float] = [], channelMix: [Float] = [], timeMixOutput: [Float] = []

    init(width: Int) { self.width = width }

    static func run(_ model: RWKVLanguageModel & BlockRunner, on stream: inout ResidualStream, tokens: Int, layer: Int) throws -> BlockInputs {
        let recorder = BlockInputRecorder(width: stream.width)
        model.layerInputObserver = recorder
        model.matmulObserver = recorder
        defer { model.layerInputObserver = nil; model.matmulObserver = nil }
        try model.run(&stream)
        return try recorder.inputs(tokens: tokens, layer: layer)
    }

    func observe(layer: Int, part: BlockPart, input: UnsafePointer<Float>, rows: Int, width: Int) {
        let rows = UnsafeBufferPointer(start: input, count: rows * width)
        switch part {
        case .timeMix: timeMix.append(contentsOf: rows)
        case .channelMix: channelMix.append(contentsOf: rows)
        case .timeMixReadout: break
        }
    }

    func observe(weight: String, input: UnsafePointer<Float>, rows: Int, width: Int, stride: Int) {
        guard TensorSpec.row(of: weight) == RWKV6Key.output.rawValue else { return }
        for r in 0..<rows { timeMixOutput.append(contentsOf: UnsafeBufferPointer(start: input + r * stride, count: width)) }
    }

    func inputs(tokens: Int, layer: Int) throws -> BlockInputs {
        guard timeMix.count == tokens * width, channelMix.count == tokens * width, timeMixOutput.count == tokens * width else {
            throw RWKVError(nil, "internal error: the forward pass did not show block \(layer)'s \(tokens) inputs")
        }
        func sequence(_ values: [Float]) -> MixInputs { MixInputs(sequence: Matrix(rows: tokens, cols: width, values: values)) }
        return BlockInputs(timeMix: sequence(timeMix), channelMix: sequence(channelMix),
                           timeMixOutput: Matrix(rows: tokens, cols: width, values: timeMixOutput))
    }
}
