import Foundation
import Testing
import RWKVFormats
import RWKVModel
@testable import RWKVUpgrade

/// `--calibrate`: the RWKV-6 run that records activations, the tokenizer, and the calibrated upgrade.
@Suite struct UpgradeCalibrationTests {
    /// The stream runs the checkpoint a block at a time (each block loaded alone) and records
    /// the inputs the whole-model forward pass shows its observer: the same kernels over the
    /// same 128-token chunks, so equal to the bit. Blocks come in order.
    @Test func calibrationStreamRecordsEachBlockAsTheWholeModelDoes() throws {
        let model = try ModelFile.open(upgradeFixtures + "/models/rwkv6-tiny-bf16.pth")
        let config = try RWKVConfig.detect(model)
        let tokens = try ModelFile.open(upgradeFixtures + "/expected/rwkv6-tiny-bf16.logits.safetensors").floats("tokens").map { Int($0) }
        let loader = try WeightLoader(source: model)
        let whole = try RWKV6Model(loader)
        let recorder = WholeModelRecorder()
        whole.layerInputObserver = recorder
        _ = try whole.logits(tokens, mode: .sequence)
        let stream = try CalibrationStream(tokens: tokens, source: loader)
        for layer in 0..<config.layerCount {
            let block = try stream.rwkv6Block(layer).inputs
            #expect(block.timeMix.current.values == recorder.inputs[layer]?.timeMix)
            #expect(block.channelMix.current.values == recorder.inputs[layer]?.channelMix)
            // The token shift: each row's previous input is the row before, zero before the first.
            #expect(Array(block.timeMix.previous.row(1)) == Array(block.timeMix.current.row(0)))
            #expect(block.timeMix.previous.row(0).allSatisfy { $0 == 0 })
        }
        #expect(throws: RWKVError(nil, "internal error: calibration of block 0 asked for at block \(config.layerCount)")) {
            try stream.rwkv6Block(0)
        }
    }

    private final class WholeModelRecorder: LayerInputObserver {
        var inputs: [Int: (timeMix: [Float], channelMix: [Float])] = [:]
        func observe(layer: Int, part: BlockPart, input: UnsafePointer<Float>, rows: Int, width: Int) {
            let values = Array(UnsafeBufferPointer(start: input, count: rows * width))
            var entry = inputs[layer] ?? ([], [])
            switch part {
            case .timeMix: entry.timeMix += values
            case .channelMix: entry.channelMix += values
            case .timeMixReadout: break
            }
            inputs[layer] = entry
        }
    }

    @Test func calibratedUpgradeFitsOnTheText() throws {
        let dir = try UpgradeScratch()
        let input = upgradeFixtures + "/models/rwkv6-tiny-fp32.pth"
        let text = dir.file("calibration.txt")
        try Data(String(repeating: "Calibration text for the tiny model, bytes as tokens. ", count: 6).utf8).write(to: URL(fileURLWithPath: text))
        var options = quickOptions(.preserve)
        options.calibration = .file(text)
        var standIn = quickOptions(.preserve)
        standIn.calibration = .standIn
        let out = dir.file("calibrated.safetensors"), plain = dir.file("plain.safetensors")
        let report = try Upgrade.run(input: input, output: out, options: options, dtype: .f32)
        let plainReport = try Upgrade.run(input: input, output: plain, options: standIn, dtype: .f32)
        #expect(report.calibration == text && report.calibrationTokens == 128)
        #expect(plainReport.calibration == "Gaussian stand-in" && plainReport.calibrationTokens == nil)
        #expect(report.tensors.first { $0.name == "blocks.1.att.key.weight" }?.step == "refit-projection")
        let a = try readAll(out), b = try readAll(plain), source = try readAll(input)
        // Without calibration key is RWKV-6's; with it, refitted (and still close: same map, other lerp).
        #expect(b["blocks.1.att.key.weight"]?.values == source["blocks.1.att.key.weight"]?.values)
        let refit = try #require(a["blocks.1.att.key.weight"]?.values), original = try #require(source["blocks.1.att.key.weight"]?.values)
        #expect(refit != original)
        let change = zip(refit, original).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }.squareRoot()
        let norm = original.reduce(0.0) { $0 + Double($1 * $1) }.squareRoot()
        #expect(change < 0.5 * norm)
        #expect(try RWKVConfig.detect(ModelFile.open(out)).version == .v7)

        var paper = UpgradeOptions()
        paper.recipe = .paper
        paper.calibration = .file(text)
        #expect(throws: RWKVError(nil, "--calibrate only applies to --recipe preserve")) {
            try Upgrade.run(input: input, output: dir.file("x.pth"), options: paper)
        }
        // Too short a text says too little to fit on: the stand-in, and the report says why.
        var short = quickOptions(.preserve)
        try Data("tiny".utf8).write(to: URL(fileURLWithPath: dir.file("short.txt")))
        short.calibration = .file(dir.file("short.txt"))
        let fallback = try Upgrade.run(input: input, output: dir.file("x.pth"), options: short)
        #expect(fallback.calibration == "Gaussian stand-in (the calibration text gives 4 tokens, at least 16 are needed)")
    }

    /// By default `preserve` calibrates on the built-in text: its first tokens are what the
    /// fits see, the same as giving that text as a file; a vocabulary it cannot be tokenised
    /// for falls back to the stand-in, and the report says why.
    @Test func builtInTextIsTheDefault() throws {
        let dir = try UpgradeScratch()
        let input = upgradeFixtures + "/models/rwkv6-tiny-fp32.pth"
        let text = dir.file("builtin.txt")
        try Data(BuiltInCalibrationText.english.utf8).write(to: URL(fileURLWithPath: text))
        #expect(BuiltInCalibrationText.english.utf8.allSatisfy { $0 < 128 })
        var asFile = quickOptions(.preserve)
        asFile.calibration = .file(text)
        let report = try Upgrade.run(input: input, output: dir.file("default.safetensors"), options: quickOptions(.preserve), dtype: .f32)
        _ = try Upgrade.run(input: input, output: dir.file("file.safetensors"), options: asFile, dtype: .f32)
        #expect(report.calibration == BuiltInCalibrationText.name && report.calibrationTokens == 128)
        #expect(report.tensors.first { $0.name == "blocks.0.att.key.weight" }?.step == "refit-projection")
        let a = try readAll(dir.file("default.safetensors")), b = try readAll(dir.file("file.safetensors"))
        #expect(a.count == b.count && a.allSatisfy { b[$0.key]?.values == $0.value.values })

        let tiny = try TinyRWKV6.write(in: dir)      // 32 rows: no tokenizer reads ASCII into it
        let fallback = try Upgrade.run(input: tiny, output: dir.file("tiny.safetensors"), options: quickOptions(.preserve))
        #expect(fallback.calibration?.hasPrefix("Gaussian stand-in (the built-in text needs a byte-level or World vocabulary, the model has 32 rows") == true)
        #expect(fallback.tensors.first { $0.name == "blocks.0.att.key.weight" }?.step == "copy")
        #expect(BuiltInCalibrationText.tokens(vocabularySize: 65536).map { $0.count > 2000 && $0.count < 4096 } == true)
    }

    /// The fits' RWKV-7 side reads what the upgraded blocks before it produce: block 0 sees the
    /// same embedding either way (fp32 fixture: no rounding on either side), so its refits are
    /// the same; block 1's fitted tensors move, copied ones do not.
    @Test func theFitsReadTheUpgradedModelsOwnInputs() throws {
        let dir = try UpgradeScratch()
        let input = upgradeFixtures + "/models/rwkv6-tiny-fp32.pth"
        var options = quickOptions(.preserve)
        _ = try Upgrade.run(input: input, output: dir.file("upgraded.safetensors"), options: options, dtype: .f32)
        options.fitsOnUpgradedInputs = false
        _ = try Upgrade.run(input: input, output: dir.file("rwkv6.safetensors"), options: options, dtype: .f32)
        let upgraded = try readAll(dir.file("upgraded.safetensors")), rwkv6 = try readAll(dir.file("rwkv6.safetensors"))
        #expect(upgraded["emb.weight"]?.values == rwkv6["emb.weight"]?.values)
        #expect(upgraded["blocks.1.att.ln_x.weight"]?.values == rwkv6["blocks.1.att.ln_x.weight"]?.values)
        #expect(upgraded["blocks.0.att.key.weight"]?.values == rwkv6["blocks.0.att.key.weight"]?.values)
        for name in ["blocks.1.att.key.weight", "blocks.1.att.g1", "blocks.1.att.w0", "blocks.1.ffn.value.weight",
                     "blocks.0.ffn.value.weight"] {
            #expect(upgraded[name]?.values != rwkv6[name]?.values, "\(name)")
        }
        // Only on the upgraded model's own activations: att.output and the head refitted.
        #expect(upgraded["blocks.0.att.output.weight"]?.values != rwkv6["blocks.0.att.output.weight"]?.values)
        #expect(upgraded["head.weight"]?.values != rwkv6["head.weight"]?.values)
        #expect(rwkv6["head.weight"]?.values == (try readAll(input))["head.weight"]?.values)
    }
}
