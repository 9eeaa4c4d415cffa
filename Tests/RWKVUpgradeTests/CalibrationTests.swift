import Foundation
import Testing
import RWKVFormats
import RWKVModel
@testable import RWKVUpgrade

/// `--calibrate`: the RWKV-6 run that records activations, the tokenizer, and the calibrated upgrade.
@Suite struct UpgradeCalibrationTests {
    /// The run records through RWKVModel's layer-input hook (its logits are checked against the
    /// official package with the hook attached, ForwardTests). Before the old RWKV-6 copy in this
    /// module was deleted, the recorded inputs were checked against it on english.txt: max |Δ|
    /// 3.6e-6 for the fp32 fixture; 0.022 for bf16, where RWKVModel rounds ln0(emb) to bf16 as the
    /// official package does and the copy did not (docs/upgrade.md).
    @Test func calibrationRunRecordsEveryBlockAsASequence() throws {
        let model = try ModelFile.open(upgradeFixtures + "/models/rwkv6-tiny-fp32.pth")
        let config = try RWKVConfig.detect(model)
        let tokens = try ModelFile.open(upgradeFixtures + "/expected/rwkv6-tiny-fp32.logits.safetensors").floats("tokens").map { Int($0) }
        let rwkv6 = try RWKV6Model(WeightLoader(source: model))
        let run = try CalibrationRun(tokens: tokens, model: rwkv6)
        // A budget below one block's inputs: every block is recorded by a pass of its own.
        let onePerPass = try CalibrationRun(tokens: tokens, model: rwkv6, recordBudget: 1)
        for layer in (0..<config.layerCount).reversed() {
            let inputs = try run.inputs(layer), again = try onePerPass.inputs(layer)
            #expect(inputs.timeMix.count == tokens.count && inputs.channelMix.count == tokens.count)
            // The token shift: each row's previous input is the row before, zero before the first.
            #expect(Array(inputs.timeMix.previous.row(1)) == Array(inputs.timeMix.current.row(0)))
            #expect(inputs.timeMix.previous.row(0).allSatisfy { $0 == 0 })
            #expect(inputs.timeMix.current != inputs.channelMix.current)
            #expect(again.timeMix.current == inputs.timeMix.current && again.channelMix.current == inputs.channelMix.current)
        }
        #expect(throws: RWKVError(nil, "internal error: no block \(config.layerCount) to calibrate")) { try run.inputs(config.layerCount) }
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
        #expect(report.tensors.first { $0.name == "blocks.1.att.key.weight" }?.step == "PreserveRecipe.refitProjection")
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
        var short = quickOptions(.preserve)
        try Data("tiny".utf8).write(to: URL(fileURLWithPath: dir.file("short.txt")))
        short.calibration = .file(dir.file("short.txt"))
        #expect(throws: RWKVError(dir.file("short.txt"), "calibration text gives 4 tokens; at least 16 are needed")) {
            try Upgrade.run(input: input, output: dir.file("x.pth"), options: short)
        }
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
        #expect(report.tensors.first { $0.name == "blocks.0.att.key.weight" }?.step == "PreserveRecipe.refitProjection")
        let a = try readAll(dir.file("default.safetensors")), b = try readAll(dir.file("file.safetensors"))
        #expect(a.count == b.count && a.allSatisfy { b[$0.key]?.values == $0.value.values })

        let tiny = try TinyRWKV6.write(in: dir)      // 32 rows: no tokenizer reads ASCII into it
        let fallback = try Upgrade.run(input: tiny, output: dir.file("tiny.safetensors"), options: quickOptions(.preserve))
        #expect(fallback.calibration?.hasPrefix("Gaussian stand-in (the built-in text needs a byte-level or World vocabulary, the model has 32 rows") == true)
        #expect(fallback.tensors.first { $0.name == "blocks.0.att.key.weight" }?.step == "copy")
        #expect(BuiltInCalibrationText.tokens(vocabularySize: 65536).map { $0.count > 2000 && $0.count < 4096 } == true)
    }

    /// A second calibration pass fits the RWKV-7 side on the inputs the first pass's RWKV-7 sees:
    /// the fitted tensors of block 1 (whose inputs block 0's upgrade changed) move, copied ones
    /// do not, and block 0's time-mix inputs are the same embedding in both models, so its
    /// receptance refit stays (up to the bf16 embedding being the same: exactly).
    @Test func aSecondPassFitsOnTheUpgradedModelsInputs() throws {
        let dir = try UpgradeScratch()
        let input = upgradeFixtures + "/models/rwkv6-tiny-fp32.pth"
        var options = quickOptions(.preserve)
        _ = try Upgrade.run(input: input, output: dir.file("one.safetensors"), options: options, dtype: .f32)
        options.calibrationPasses = 2
        _ = try Upgrade.run(input: input, output: dir.file("two.safetensors"), options: options, dtype: .f32)
        let one = try readAll(dir.file("one.safetensors")), two = try readAll(dir.file("two.safetensors"))
        #expect(one["emb.weight"]?.values == two["emb.weight"]?.values)
        #expect(one["blocks.1.att.ln_x.weight"]?.values == two["blocks.1.att.ln_x.weight"]?.values)
        #expect(one["blocks.0.att.key.weight"]?.values == two["blocks.0.att.key.weight"]?.values)
        for name in ["blocks.1.att.key.weight", "blocks.1.att.g1", "blocks.1.att.w0", "blocks.1.ffn.value.weight"] {
            #expect(one[name]?.values != two[name]?.values, "\(name)")
        }
        options.calibrationPasses = 0
        #expect(throws: RWKVError(nil, "calibration passes 0 out of range (1...8)")) {
            try Upgrade.run(input: input, output: dir.file("x.pth"), options: options)
        }
    }
}
