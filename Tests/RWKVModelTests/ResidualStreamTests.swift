import Foundation
import Testing
import RWKVFormats
@testable import RWKVModel

/// A model run one block at a time over a residual stream (each block loaded alone, as
/// rwkv-upgrade runs its calibration) is the model: its last residual through ln_out and the head
/// gives the official logits, for both architectures (RWKV-7's block-0 values carried in the
/// stream). Same kernels over the same 128-token chunks as `forward(.sequence)`, so the
/// tolerance is the forward pass's own (1e-4, the official package in fp32).
@Suite struct ResidualStreamTests {
    @Test(arguments: OfficialCase.safetensors)
    func blocksRunAloneAreTheModel(_ c: OfficialCase) throws {
        let reference = try c.reference()
        let source = try ModelFile.open(fixture(c.model))
        let loader = try WeightLoader(source: source)
        var stream = try ResidualStream(tokens: reference.tokens, loader: loader)
        for block in 0..<loader.config.layerCount {
            let model: BlockRunner = loader.config.version == .v7
                ? try RWKV7Model(block: block, of: loader) : try RWKV6Model(block: block, of: loader)
            try model.run(&stream)
        }
        #expect(stream.nextBlock == loader.config.layerCount)
        let whole = try c.load() as? any LayerStack
        let head = try #require(whole)
        var logits = [Float](repeating: 0, count: stream.count * loader.config.vocabSize)
        let normed = stream.layerNorm(weight: head.outputNorm.weight.array, bias: head.outputNorm.bias.array)
        normed.withUnsafeBufferPointer { x in
            logits.withUnsafeMutableBufferPointer { y in head.head.apply(x.baseAddress!, rows: stream.count, to: y.baseAddress!) }
        }
        let rows = (0..<stream.count).map { Array(logits[($0 * loader.config.vocabSize)..<(($0 + 1) * loader.config.vocabSize)]) }
        #expect(maxAbsDifference(reference.logits, rows) <= 1e-4)
        // Blocks come in order.
        #expect(throws: RWKVError.self) { try RWKV6Model(block: loader.config.layerCount, of: loader) }
    }
}
