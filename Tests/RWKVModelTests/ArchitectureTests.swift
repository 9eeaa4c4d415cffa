import Testing
import RWKVFormats
@testable import RWKVModel

/// A checkpoint made of shapes only: architecture detection never reads data.
final class ShapesOnly: TensorSource {
    let path = "shapes-only"
    let formatName = "test"
    var tensors: [TensorInfo]
    init(_ shapes: [(name: String, shape: [Int])]) {
        tensors = shapes.map { TensorInfo(name: $0.name, dtype: .bf16, shape: $0.shape) }
    }
    func data(_ name: String) throws -> [UInt8] { throw RWKVError(path, "no data") }
}

@Suite struct ArchitectureTests {
    static let v7 = RWKVConfig(version: .v7, layerCount: 3, embeddingSize: 128, headSize: 64, vocabSize: 256, ffnSize: 512,
                               decayRank: 32, iclrRank: 24, valueResidualRank: 16, gateRank: 48)
    static let v6 = RWKVConfig(version: .v6, layerCount: 2, embeddingSize: 128, headSize: 64, vocabSize: 256, ffnSize: 448,
                               decayRank: 64, tokenShiftRank: 32)

    @Test(arguments: [v7, v6]) func detectsWhatItDescribes(config: RWKVConfig) throws {
        #expect(try RWKVConfig.detect(ShapesOnly(config.expectedShapes)) == config)
    }

    @Test func reportsAMissingTensorByName() {
        let shapes = Self.v7.expectedShapes.filter { $0.name != "blocks.1.att.k_k" }
        #expect(throws: RWKVError("shapes-only", "missing tensor blocks.1.att.k_k")) { try RWKVConfig.detect(ShapesOnly(shapes)) }
    }

    @Test func reportsAMisShapedTensor() {
        let shapes = Self.v7.expectedShapes.map { $0.name == "blocks.2.att.a2" ? ($0.name, [128, 24]) : $0 }
        #expect(throws: RWKVError("shapes-only", "tensor blocks.2.att.a2 has shape [128, 24], expected [24, 128]")) {
            try RWKVConfig.detect(ShapesOnly(shapes))
        }
    }

    @Test func refusesOlderAndForeignCheckpoints() {
        let v5 = ShapesOnly([("emb.weight", [256, 64]), ("blocks.0.att.time_faaaa", [1, 64]), ("blocks.0.att.time_mix_k", [1, 1, 64])])
        #expect(throws: RWKVError("shapes-only", "RWKV-4/5 checkpoint: open it through Checkpoint.open, which reads RWKV-5 as RWKV-6")) { try RWKVConfig.detect(v5) }
        let other = ShapesOnly([("model.embed_tokens.weight", [10, 4])])
        #expect(throws: RWKVError("shapes-only", "not an RWKV checkpoint (no emb.weight and blocks.* tensors)")) { try RWKVConfig.detect(other) }
    }
}
