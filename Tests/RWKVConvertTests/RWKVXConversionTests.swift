import Foundation
import Testing
@testable import RWKVConvert
import RWKVFormats
import RWKVModel

/// RWKV-X has no GGUF architecture in llama.cpp and no RWKV-6/7 export layout holds its attention
/// blocks: every writer refuses it by name instead of dropping the blocks; inspect describes it.
@Suite struct RWKVXConversionTests {
    static let input = ConversionFiles.fixture("rwkvx-tiny-2x2.pth")

    @Test func writersRefuseRWKVX() throws {
        let dir = try ConversionFiles.ScratchDirectory()
        let reason = "RWKV-X checkpoint (2 RWKV-7 + 2 attention blocks): "
        #expect(throws: RWKVError(Self.input, "\(reason)" + "GGUF (llama.cpp has no RWKV-X architecture) has no place for its attention blocks (rwkv-convert inspect and rwkv-verify read it)")) {
            try Converter.convert(input: Self.input, output: dir.path + "/out.gguf")
        }
        #expect(throws: RWKVError(Self.input, "\(reason)" + "an RWKV-6/7 export has no place for its attention blocks (rwkv-convert inspect and rwkv-verify read it)")) {
            try Export.toPth(input: Self.input, output: dir.path + "/out.pth")
        }
        #expect(throws: RWKVError(Self.input, "\(reason)" + "an RWKV-6/7 export has no place for its attention blocks (rwkv-convert inspect and rwkv-verify read it)")) {
            try Export.toHuggingFace(input: Self.input, output: dir.path + "/hf")
        }
        #expect(dir.files.isEmpty)
    }

    @Test func inspectNamesTheHybridAndItsBlockOrder() throws {
        let report = InspectReport(source: try Checkpoint.open(Self.input))
        #expect(report.config?.attentionBlocks == 2)
        #expect(report.blockOrder == ["RWKV-7 0", "attention 0", "RWKV-7 1", "attention 1"])
        #expect(report.text.contains("model:   RWKV-X (RWKV-7 with 2 attention blocks): 2 layers, n_embd 128"))
        #expect(report.text.contains("blocks:  RWKV-7 0, attention 0, RWKV-7 1, attention 1 (attention: 2 heads of 64, FFN 512)"))
        // The file's own names, prefixes and all.
        #expect(report.tensors.contains { $0.name == "rwkv.blocks.0.att.x_r" })
        #expect(report.tensors.contains { $0.name == "moba.1.ffn.x_k" })
        #expect(report.tensors.count == 94)
    }
}

/// GoldFinch has no GGUF architecture in llama.cpp and no RWKV-6/7 layout holds its GOLD layers.
@Suite struct GoldFinchConversionTests {
    static let input = ConversionFiles.fixture("goldfinch-tiny.pth")

    @Test func writersRefuseGoldFinch() throws {
        let dir = try ConversionFiles.ScratchDirectory()
        let error = RWKVError(Self.input, "GoldFinch checkpoint (Finch with GOLD attention layers): llama.cpp has no GoldFinch architecture and the RWKV-6/7 layouts have no place for its GOLD layers (rwkv-convert inspect and rwkv-verify read it)")
        #expect(throws: error) { try Converter.convert(input: Self.input, output: dir.path + "/out.gguf") }
        #expect(throws: error) { try Export.toPth(input: Self.input, output: dir.path + "/out.pth") }
        #expect(dir.files.isEmpty)
    }

    /// A damaged GoldFinch: inspect exits with the reader's own reason, not a generic one.
    @Test func inspectSaysWhyADamagedGoldFinchIsUnusable() throws {
        let file = try ModelFile.open(Self.input)
        let dir = try ConversionFiles.ScratchDirectory()
        let damaged = dir.path + "/damaged.safetensors"
        let kept = file.tensors.filter { $0.name != "blocks.5.att.ln_q.bias" }
        try SafetensorsWriter.write(to: damaged, tensors: kept) { try file.data($0.name) }
        let report = InspectReport(source: try Checkpoint.open(damaged))
        #expect(report.unusableModelError == RWKVError(damaged, "not a usable RWKV-6/7 model: missing tensor blocks.5.att.ln_q.bias"))
    }

    @Test func inspectNamesTheLayersAndTheCache() throws {
        let report = InspectReport(source: try Checkpoint.open(Self.input))
        #expect(report.unusableModelError == nil)
        #expect(report.goldFinch?.layers == [.finchC2, .finchC2, .finchC2, .finchC2, .gold, .gold])
        #expect(report.text.contains("model:   GoldFinch: 4 Finch-C2 + 2 GOLD layers (GOLD from block 4), n_embd 64, head size 32 (2 heads), vocab 256, FFN 224"))
        #expect(report.text.contains("cache:   4 floats + the token id per token of context (the repository keeps 64 + the id; a transformer of this depth and width 768)"))
    }
}
