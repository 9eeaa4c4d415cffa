import Foundation
import Testing
@testable import RWKVConvert
import RWKVFormats
import RWKVModel
import RWKVUpgrade

/// The hostile files of issue 9 in fixtures/bad/ (made by fixtures/make_bad.py), each class at
/// the program level: what `inspect` prints and what a conversion does.
@Suite struct HostileFileTests {
    static func bad(_ name: String) -> String { ConversionFiles.root + "/fixtures/bad/" + name }

    /// No control character but the newlines between lines reaches a terminal.
    static func isClean(_ text: String) -> Bool {
        text.unicodeScalars.allSatisfy { $0 == "\n" || !Printable.isControl($0) }
    }

    // MARK: class 5, strings from files

    @Test func inspectEscapesGGUFStrings() throws {
        let report = InspectReport(source: try ModelFile.open(Self.bad("gguf-arch-control-chars.gguf")))
        #expect(Self.isClean(report.text))
        #expect(report.text.contains("evil.key\\x0aerror: forged  \"value\\x1b]0;title\\x07\""))
        let error = try #require(report.unusableModelError)
        #expect(error.description.contains("GGUF architecture \"rwkv7\\x1b[2J\\x0aerror: forged\" is not rwkv6 or rwkv7"))
        #expect(Self.isClean(error.description) && !error.description.contains("\n"))
        // JSON stays exact: the key decodes back to the bytes in the file.
        let json = try JSONEncoder().encode(report)
        let back = try JSONDecoder().decode(InspectReport.self, from: json)
        #expect(back.metadata?.contains { $0.key == "evil.key\nerror: forged" } == true)
    }

    /// A 100,000-byte name is shortened (its length stated) and does not widen the other 2000 rows.
    @Test func inspectShortensLongNames() throws {
        let report = InspectReport(source: try ModelFile.open(Self.bad("st-long-name.safetensors")))
        let lines = report.text.split(separator: "\n")
        #expect(lines.count > 2000)
        #expect(lines.allSatisfy { $0.count < 200 })
        #expect(report.text.contains("… (100000 bytes)"))
        #expect(report.tensors.contains { $0.name.utf8.count == 100_000 })   // the data keeps the name whole
    }

    // MARK: class 3, non-finite weights

    static func convert(_ file: String, allowNonFinite: Bool = false, in dir: ConversionFiles.ScratchDirectory) throws -> ConversionReport {
        var options = ConversionOptions()
        options.type = .q8_0
        options.pieceElements = 4096   // several pieces per FFN matrix: the first index crosses piece boundaries
        options.allowNonFinite = allowNonFinite
        return try Converter.convert(input: bad(file), output: dir.path + "/out.gguf", options: options)
    }

    @Test(arguments: [
        ("nonfinite-nan-matrix.pth", "tensor blocks.0.ffn.key.weight holds 3 NaN or infinite values (first at element 16000)"),
        ("nonfinite-f64-overflow.pth", "tensor blocks.0.ffn.key.weight holds 1 NaN or infinite value (first at element 16000)"),
        ("nonfinite-inf-small.safetensors", "tensor blocks.0.att.w0 holds 2 NaN or infinite values (first at element 3)"),
    ])
    func conversionRefusesNonFiniteWeights(file: String, message: String) throws {
        let dir = try ConversionFiles.ScratchDirectory()
        #expect(throws: RWKVError(Self.bad(file), ErrorMessage(message + ": a diverged or damaged checkpoint; --allow-non-finite converts it anyway"))) {
            _ = try Self.convert(file, in: dir)
        }
        #expect(dir.files.isEmpty, "left behind: \(dir.files)")
    }

    @Test func allowNonFiniteConvertsAndCounts() throws {
        let dir = try ConversionFiles.ScratchDirectory()
        let report = try Self.convert("nonfinite-nan-matrix.pth", allowNonFinite: true, in: dir)
        // 3 NaN in each of the 4 FFN matrices (2 layers × key, value) that view the storage past element 16000.
        #expect(report.nonFiniteCount == 12)
        #expect(report.nonFiniteTensors == ["blk.0.channel_mix_key.weight", "blk.0.channel_mix_value.weight",
                                            "blk.1.channel_mix_key.weight", "blk.1.channel_mix_value.weight"])
        #expect(report.nonFiniteWarning?.contains("12 NaN or infinite source values") == true)
        #expect(report.text.contains("warning:    12 NaN"))
    }

    /// rwkv-verify loads through WeightLoader: a NaN weight is bad input there too, not a failed check.
    @Test func modelLoadingRefusesNonFiniteWeights() throws {
        let path = Self.bad("nonfinite-inf-small.safetensors")
        #expect(throws: RWKVError(path, "tensor blocks.0.att.w0 holds 2 NaN or infinite values (first at element 3): a diverged or damaged checkpoint; a model with NaN or infinite weights cannot be run")) {
            _ = try RWKVModelLoader.load(path: path)
        }
    }

    // MARK: classes 1 and 4, dimensions

    /// Zero widths are refused, with what is required, by conversion, the forward pass and the
    /// upgrade alike (they trapped, or made GGUF files llama.cpp aborts on), leaving nothing behind.
    @Test(arguments: [
        ("rwkv7-n-embd-0.pth", "n_embd is 0"), ("rwkv7-vocab-0.pth", "vocabulary size is 0"),
        ("rwkv7-lora-rank-0.pth", "decay LoRA rank is 0"), ("rwkv7-ffn-0.pth", "FFN width is 0"),
        ("rwkv7-vocab-2g-zero-width.safetensors", "n_embd is 0"), ("gguf-rwkv7-n-embd-0.gguf", "n_embd is 0"),
        ("rwkv6-decay-rank-0.safetensors", "decay LoRA rank is 0"),   // rwkv-upgrade trapped on it
    ])
    func zeroWidthModelsAreRefusedEverywhere(file: String, what: String) throws {
        let path = Self.bad(file)
        let expected = RWKVError(path, ErrorMessage(what + "; an RWKV model needs at least 1"))
        let dir = try ConversionFiles.ScratchDirectory()
        if !file.hasSuffix(".gguf") {
            #expect(throws: expected) { _ = try Self.convert(file, in: dir) }
            #expect(throws: expected) { _ = try Upgrade.run(input: path, output: dir.path + "/up.pth", options: UpgradeOptions()) }
        }
        #expect(throws: expected) { _ = try RWKVModelLoader.load(path: path) }
        let report = InspectReport(source: try ModelFile.open(path))
        #expect(report.unusableModelError?.message.hasSuffix(expected.message) == true)
        #expect(dir.files.isEmpty, "left behind: \(dir.files)")
    }

    @Test func limitsAreChecked() throws {
        var c = RWKVConfig(version: .v7, layerCount: 2, embeddingSize: 64, headSize: 64, vocabSize: 16, ffnSize: 256,
                           decayRank: 16, iclrRank: 8, valueResidualRank: 8, gateRank: 16)
        try c.validate(path: "m")
        c.vocabSize = (1 << 24) + 1
        #expect(throws: RWKVError("m", "vocabulary size is 16777217; this tool reads at most 16777216")) { try c.validate(path: "m") }
        c.vocabSize = 16
        c.valueResidualRank = 0
        #expect(throws: RWKVError("m", "value residual LoRA rank is 0; an RWKV model needs at least 1")) { try c.validate(path: "m") }
        c.layerCount = 1   // layer 0 has no value residual
        try c.validate(path: "m")
    }

    // MARK: class 2, time

    /// 1000 layers of tensors looked up by name before the missing last one is found.
    @Test func manyLayersAreLookedUpInLinearTime() throws {
        let report = InspectReport(source: try ModelFile.open(Self.bad("gguf-1000-layers.gguf")))
        #expect(report.tensors.count == 28_005)   // 3 + 1000 × 28 - 1 + 3
        #expect(report.unusableModelError?.message.hasSuffix("GGUF file has no tensor blk.999.channel_mix_value.weight") == true)
    }
}
