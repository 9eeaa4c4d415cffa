import Testing
import RWKVFormats
@testable import RWKVModel

/// The schema tables are the one description of each architecture: these tests check that they
/// are self-consistent and that what is derived from them (detection, GGUF layout) holds.
@Suite struct TensorSchemaTests {
    static let configs = [ArchitectureTests.v7, ArchitectureTests.v6]

    @Test(arguments: ArchitectureSchema.all.map(\.version)) func ggufOrderListsEveryLayerTensorOnce(version: RWKVVersion) {
        let schema = ArchitectureSchema.of(version)
        let layerNames = schema.tensors.filter { $0.scope == .layer }.map(\.gguf.name)
        #expect(Set(layerNames) == Set(schema.ggufLayerOrder))
        #expect(Set(schema.ggufLayerOrder).count == schema.ggufLayerOrder.count)
    }

    @Test(arguments: ArchitectureSchema.all.map(\.version)) func namesAreUniqueAndStacksComplete(version: RWKVVersion) {
        let schema = ArchitectureSchema.of(version)
        #expect(Set(schema.tensors.map(\.name)).count == schema.tensors.count)
        let stacked = Dictionary(grouping: schema.tensors.filter { $0.gguf.stackIndex != nil }, by: \.gguf.name)
        for (name, rows) in stacked {
            #expect(rows.compactMap(\.gguf.stackIndex).sorted() == Array(0..<rows.count), "\(name)")
        }
        for row in schema.tensors {
            if let standIn = row.firstLayerStandIn {
                #expect(schema.tensors.contains { $0.name == standIn && $0.role == row.role }, "\(row.name)")
            }
        }
    }

    /// Every GGUF tensor reads sources that exist in the checkpoint with the shapes it expects,
    /// and every checkpoint tensor is written somewhere (RWKV-7 block 0's v0/v1/v2 as copies).
    @Test(arguments: configs) func ggufLayoutCoversTheCheckpoint(config: RWKVConfig) {
        let shapes = Dictionary(uniqueKeysWithValues: config.expectedShapes.map { ($0.name, $0.shape) })
        let layouts = GGUFLayout.tensors(for: config)
        #expect(Set(layouts.map(\.name)).count == layouts.count)
        for l in layouts {
            for (name, shape) in zip(l.sources, l.sourceShapes) { #expect(shapes[name] == shape, "\(l.name) <- \(name)") }
            #expect(l.elementCount == l.sourceShapes.map { $0.reduce(1, *) }.reduce(0, +), "\(l.name)")
        }
        #expect(Set(layouts.flatMap(\.canonicalNames)) == Set(shapes.keys))
    }

    @Test func newerVariantsAreRefusedByName() {
        let base = ArchitectureTests.v7.expectedShapes
        let cases: [(String, [Int], String)] = [
            ("blocks.1.ffn.s_emb.weight", [256, 32], "RWKV-7a (DeepEmbed)"),
            ("blocks.0.qkv.qq.weight", [128, 128], "RWKV-7b (DeepEmbed Attention)"),
            ("blocks.0.ffn.enn.weight", [256, 128], "RWKV-8"),
        ]
        for (name, shape, variant) in cases {
            #expect(throws: RWKVError("shapes-only", "\(variant) checkpoint: llama.cpp cannot run it yet, so neither do we")) {
                try RWKVConfig.detect(ShapesOnly(base + [(name, shape)]))
            }
        }
    }

    /// A real RWKV-7a checkpoint (fixtures/make_variants.py: the tensor set the official package
    /// runs with RWKV_DE_VERSION=1) is refused by name, not converted without its DeepEmbed tensors.
    @Test func aDeepEmbedCheckpointIsRefusedByName() throws {
        let path = fixture("variants/rwkv7a-tiny-bf16.pth")
        #expect(throws: RWKVError(path, "RWKV-7a (DeepEmbed) checkpoint: llama.cpp cannot run it yet, so neither do we")) {
            try RWKVConfig.detect(try ModelFile.open(path))
        }
    }

    @Test func unknownTensorsAreAnError() {
        let extra = ArchitectureTests.v6.expectedShapes + [("blocks.1.att.extra", [4]), ("zzz", [1])]
        #expect(throws: RWKVError("shapes-only", "tensor blocks.1.att.extra (and 1 more) is not part of an RWKV-6 checkpoint")) {
            try RWKVConfig.detect(ShapesOnly(extra))
        }
    }

    /// One key per hyperparameter, each under the architecture's prefix (reading them back is
    /// GGUFLoadingTests' job).
    @Test(arguments: configs) func hyperparameterKeysAreUniqueAndPrefixed(config: RWKVConfig) throws {
        let written = GGUFLayout.hyperparameters(for: config)
        #expect(Set(written.map(\.key)).count == written.count)
        #expect(written.allSatisfy { $0.key.hasPrefix(GGUFLayout.architecture(config.version) + ".") })
    }
}
