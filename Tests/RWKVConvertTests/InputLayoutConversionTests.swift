import Foundation
import Testing
@testable import RWKVConvert
import RWKVFormats
import RWKVModel

/// A Hugging Face folder converts to the GGUF its BlinkDL .pth converts to: every tensor's
/// type, shape and bytes, and every metadata value except the provenance (the source's name and
/// SHA-256 differ by design).
@Suite struct HuggingFaceConversionTests {
    static let cases: [(folder: String, pth: String)] = [
        ("hf/rwkv7-tiny", "models/rwkv7-tiny-bf16.pth"),
        ("hf/rwkv7-tiny-xx-sharded", "models/rwkv7-tiny-bf16.pth"),
        ("hf/rwkv6-tiny-bin", "models/rwkv6-tiny-bf16.pth"),
    ]

    @Test(arguments: cases.map(\.folder), [OutputType.f32, .q8_0])
    func folderConvertsLikeItsPth(_ folder: String, _ type: OutputType) throws {
        let pth = Self.cases.first { $0.folder == folder }!.pth
        let scratch = try ConversionFiles.ScratchDirectory()
        let dir = scratch.path
        var options = ConversionOptions()
        options.type = type
        options.name = "same"
        _ = try Converter.convert(input: ConversionFiles.root + "/fixtures/" + folder, output: dir + "/hf.gguf", options: options)
        _ = try Converter.convert(input: ConversionFiles.root + "/fixtures/" + pth, output: dir + "/pth.gguf", options: options)
        let a = try GGUFReader(path: dir + "/hf.gguf"), b = try GGUFReader(path: dir + "/pth.gguf")
        #expect(a.tensorInfos.map(\.name) == b.tensorInfos.map(\.name))
        for t in b.tensors {
            #expect(a.info(t.name) == t, "\(t.name)")
            #expect(try a.data(t.name) == (try b.data(t.name)), "\(t.name)")
        }
        let provenance: Set = [Provenance.sourceFileKey, Provenance.sourceSHA256Key]
        #expect(a.metadata.filter { !provenance.contains($0.key) } == b.metadata.filter { !provenance.contains($0.key) })
    }
}

/// `--merge-lora` on conversion: the GGUF of base + adapters runs like the official package on
/// the weights torch merged (fixtures/make_adapters.py), and records the adapters.
@Suite struct AdapterConversionTests {
    @Test func mergedConversionMatchesTheOfficialLogits() throws {
        let scratch = try ConversionFiles.ScratchDirectory()
        var options = ConversionOptions()
        options.type = .f32
        let fixtures = ConversionFiles.root + "/fixtures/"
        options.adapters = AdapterList(paths: [fixtures + "adapters/rwkv7-tiny-lora-a.pth", fixtures + "adapters/rwkv7-tiny-lora-b.pth"],
                                       alphas: [16, 32])
        let report = try Converter.convert(input: ConversionFiles.fixture("rwkv7-tiny-bf16.pth"), output: scratch.path + "/m.gguf", options: options)
        #expect(report.notes.first == "merged adapters: rwkv7-tiny-lora-a.pth (lora alpha 16.0), rwkv7-tiny-lora-b.pth (lora alpha 32.0)")
        let gguf = try GGUFReader(path: scratch.path + "/m.gguf")
        #expect(gguf.value(Provenance.adaptersKey) == .string("rwkv7-tiny-lora-a.pth (lora alpha 16.0), rwkv7-tiny-lora-b.pth (lora alpha 32.0)"))
        let reference = try SafetensorsReader(path: fixtures + "expected/rwkv7-tiny-lora.logits.safetensors")
        let tokens = try reference.floats("tokens").map { Int($0) }
        let expected = try reference.floats("logits")
        let logits = try RWKVModelLoader.load(path: scratch.path + "/m.gguf").logits(tokens, mode: .sequence).rows.flatMap { $0 }
        // 1e-4: f32 weights, as OfficialAgreementTests.
        #expect(zip(expected, logits).map { abs($0 - $1) }.max()! <= 1e-4)
    }
}

/// A Hugging Face folder's own World vocabulary (as the rwkv7-hf converter copies it in) is the
/// one a 65536-row model's GGUF gets, unless --vocab says otherwise; byte-level models ignore it.
@Suite struct FolderVocabularyTests {
    @Test func aFoldersWorldVocabularyIsUsed() throws {
        let scratch = try ConversionFiles.ScratchDirectory()
        let folder = scratch.path + "/hf"
        try FileManager.default.copyItem(atPath: ConversionFiles.root + "/fixtures/hf/rwkv7-tiny", toPath: folder)
        let plain = try #require(try Checkpoint.open(folder) as? HuggingFaceFolder)
        #expect(plain.worldVocabularyPath == nil)
        try "".write(toFile: folder + "/" + HuggingFaceFolder.worldVocabularyFile, atomically: true, encoding: .utf8)
        let source = try Checkpoint.open(folder)
        var options = ConversionOptions()
        #expect(Converter.vocabularyFile(for: source, options: options, rows: 65536) == folder + "/rwkv_vocab_v20230424.txt")
        #expect(Converter.vocabularyFile(for: source, options: options, rows: 256) == nil)
        options.vocabularyPath = "/elsewhere/vocab.txt"
        #expect(Converter.vocabularyFile(for: source, options: options, rows: 65536) == "/elsewhere/vocab.txt")
    }
}
