import Foundation
import Testing
@testable import RWKVConvert
import RWKVFormats
import RWKVModel

/// RWKV-5 into llama.cpp's `rwkv6` GGUF: an RWKV-5.1/5.2 block is an RWKV-6 block whose LoRAs
/// add nothing, so the file is an ordinary rwkv6 file, in every type and preset.
@Suite struct EagleConversionTests {
    /// fixtures/make_rwkv5.py: 2 layers, n_embd 64, head size 32, FFN 224; LoRA ranks RWKV-LM's.
    static let table = LlamaLoaderTable.rwkv6(L: 2, C: 64, V: 256, F: 224, N: 32, Dm: 32, Dd: 64)

    @Test(arguments: ["rwkv5.2-tiny.safetensors", "rwkv5.1-tiny-fp32.pth"], OutputType.allCases)
    func tensorsMatchTheLlamaLoader(model: String, type: OutputType) throws {
        let (out, report) = try ConversionFiles.conversion(model, type)
        let gguf = try GGUFReader(path: out)
        #expect(Set(gguf.tensorInfos.map(\.name)) == Set(Self.table.keys))
        for t in gguf.tensorInfos {
            guard let expected = Self.table[t.name] else { continue }
            #expect(LlamaLoaderTable.loaderAccepts(file: t.dimensions, expected: expected), "\(t.name): ne \(t.dimensions)")
            #expect(t.dtype == (LlamaLoaderTable.isLargeMatrix(t.name)
                                ? ConversionTests.storedType(t.name, type, rowLength: t.dimensions[0]) : .f32), "\(t.name) is \(t.dtype)")
        }
        #expect(report.overflowCount == 0)
        #expect(gguf.value("general.architecture") == .string("rwkv6"))
        #expect(gguf.value("rwkv6.wkv.head_size") == .uint32(32))
        #expect(gguf.value("rwkv6.time_mix_extra_dim") == .uint32(32))
        #expect(gguf.value("rwkv6.time_decay_extra_dim") == .uint32(64))
    }

    /// The f32 file holds the RWKV-6 view bit for bit, and its logits are the official RWKV-5's.
    @Test(arguments: ["5.1", "5.2"])
    func f32FileRunsAsTheOfficialRWKV5(version: String) throws {
        let model = "rwkv5.\(version.last!)-tiny-fp32.pth"
        let out = try ConversionFiles.converted(model, .f32)
        let view = try GGUFCanonicalSource(path: out)
        let eagle = try EagleCheckpoint(try ModelFile.open(ConversionFiles.fixture(model)))
        var plain = eagle.config
        plain.eagle = nil
        #expect(view.config == plain)
        for t in eagle.tensors { #expect(try view.floats(t.name) == eagle.floats(t.name), "\(t.name)") }

        let expected = try SafetensorsReader(path: ConversionFiles.root + "/fixtures/expected/rwkv5.\(version.last!)-tiny-fp32.logits.safetensors")
        let tokens = try expected.floats("tokens").map { Int($0) }
        let reference = try expected.floats("logits")
        let logits = try RWKVModelLoader.load(path: out).logits(tokens, mode: .rnn).rows.flatMap { $0 }
        let worst = zip(reference, logits).map { abs($0 - $1) }.max() ?? .nan
        #expect(worst <= 1e-4, "max |Δlogit| \(worst)")   // the tolerance of EagleTests (f32 rounding only)
    }

    /// RWKV-5.0 has no gate: no rwkv6 file computes it, so none is written.
    @Test func rwkv5_0IsRefusedForGGUF() throws {
        let dir = try ConversionFiles.ScratchDirectory()
        let input = ConversionFiles.fixture("rwkv5.0-tiny-fp32.pth")
        #expect(throws: RWKVError(input, "RWKV-5.0 has no output gate, so llama.cpp's rwkv6 architecture cannot compute it exactly (rwkv-convert inspect and rwkv-verify read it)")) {
            try Converter.convert(input: input, output: dir.path + "/out.gguf")
        }
        #expect(dir.files.isEmpty)
    }

    @Test func inspectNamesTheVersionAndListsTheFilesOwnTensors() throws {
        let report = InspectReport(source: try Checkpoint.open(ConversionFiles.fixture("rwkv5.0-tiny-fp32.pth")))
        #expect(report.config?.eagle == .v5_0)
        #expect(report.text.contains("model:   RWKV-5.0 (Eagle), read as RWKV-6: 2 layers, n_embd 64, head size 32 (2 heads), vocab 256, FFN 224, no output gate"))
        #expect(report.tensors.contains { $0.name == "blocks.0.att.time_first" })
        #expect(!report.tensors.contains { $0.name == "blocks.0.att.time_maa_x" })
    }

    @Test func exportsRefuseRWKV5() throws {
        let dir = try ConversionFiles.ScratchDirectory()
        let input = ConversionFiles.fixture("rwkv5.2-tiny-fp32.pth")
        #expect(throws: RWKVError(input, "RWKV-5.2 checkpoint: exports write RWKV-6/7 layouts; use rwkv-upgrade v5-to-v6 for a trainable RWKV-6 .pth, or to-gguf")) {
            try Export.toPth(input: input, output: dir.path + "/out.pth")
        }
    }
}
