import Foundation
import Testing
import RWKVFormats
import RWKVConvert
import RWKVModel
@testable import RWKVUpgrade

/// `--calibrate`: the RWKV-6 run that records activations, the tokenizer, and the calibrated upgrade.
@Suite struct UpgradeCalibrationTests {
    @Test func calibrationRunReproducesTheOfficialLogits() throws {
        let model = try ModelFile.open(upgradeFixtures + "/models/rwkv6-tiny-fp32.pth")
        let config = try RWKVConfig.detect(model)
        let expected = try ModelFile.open(upgradeFixtures + "/expected/rwkv6-tiny-fp32.logits.safetensors")
        let tokens = try expected.floats("tokens").map { Int($0) }
        let official = try expected.floats("logits")
        let run = try RWKV6CalibrationRun(tokens: tokens, weights: V6Weights(source: model, config: config), config: config)
        var previousInputs: MixInputs?
        for layer in 0..<config.layerCount {
            let inputs = try run.runLayer(layer)
            #expect(inputs.timeMix.count == tokens.count && inputs.channelMix.count == tokens.count)
            // The token shift: each row's previous input is the row before, zero before the first.
            #expect(Array(inputs.timeMix.previous.row(1)) == Array(inputs.timeMix.current.row(0)))
            #expect(inputs.timeMix.previous.row(0).allSatisfy { $0 == 0 })
            previousInputs = inputs.channelMix
        }
        #expect(previousInputs != nil)
        let logits = try run.logits()
        // The official package runs fp32 token by token, we run sequence mode in fp32 with
        // another summation order; logits are O(10), agreement to 1e-3 is float rounding.
        #expect(maxAbsDifference(logits.values, official) < 1e-3)
        #expect(throws: RWKVError(nil, "internal error: calibration asked for layer 0, next is 2")) { try run.runLayer(0) }
    }

    /// The layer inputs RWKVModel's forward pass shows its observer are those the upgrade's own
    /// RWKV-6 run computed (same formulas; BLAS GEMMs and another summation order, and for bf16
    /// files the official package's bf16 rounding of ln0(emb) that only RWKVModel reproduces).
    @Test(arguments: ["fp32", "bf16"])
    func observedLayerInputsMatchTheUpgradesOwnRun(dtype: String) throws {
        let model = try ModelFile.open(upgradeFixtures + "/models/rwkv6-tiny-\(dtype).pth")
        let config = try RWKVConfig.detect(model)
        let text = try InputFile(upgradeFixtures + "/text/english.txt")
        let tokens = try TextTokenizer.forModel(vocabularySize: config.vocabSize).encode(text.read(at: 0, count: text.size), path: nil)
        let old = try RWKV6CalibrationRun(tokens: tokens, weights: V6Weights(source: model, config: config), config: config)
        let new = try CalibrationRun(tokens: tokens, source: model)
        for layer in 0..<config.layerCount {
            let a = try old.runLayer(layer), b = try new.inputs(layer)
            let scale = a.timeMix.current.values.reduce(0) { max($0, abs($1)) }
            let dt = maxAbsDifference(a.timeMix.current.values, b.timeMix.current.values)
            let dc = maxAbsDifference(a.channelMix.current.values, b.channelMix.current.values)
            print("calibration inputs \(dtype) block \(layer): max |Δ| time mix \(dt), channel mix \(dc), max |x| \(scale)")
            #expect(b.timeMix.count == tokens.count && b.channelMix.count == tokens.count)
            // fp32: float rounding on values up to ~6 (measured ≤ 4e-6). bf16: RWKVModel rounds
            // ln0(emb) to bf16 as the official package does (relative 2^-9, ≈ 0.01 on values of
            // ~5, carried through the blocks; measured ≤ 0.023).
            let tolerance: Float = dtype == "fp32" ? 1e-4 : 0.05
            #expect(dt < tolerance && dc < tolerance)
        }
    }

    @Test func calibratedUpgradeFitsOnTheText() throws {
        let dir = try UpgradeScratch()
        let input = upgradeFixtures + "/models/rwkv6-tiny-fp32.pth"
        let text = dir.file("calibration.txt")
        try Data(String(repeating: "Calibration text for the tiny model, bytes as tokens. ", count: 6).utf8).write(to: URL(fileURLWithPath: text))
        var options = quickOptions(.preserve)
        options.calibrationText = text
        let out = dir.file("calibrated.safetensors"), plain = dir.file("plain.safetensors")
        let report = try Upgrade.run(input: input, output: out, options: options, dtype: .f32)
        _ = try Upgrade.run(input: input, output: plain, options: quickOptions(.preserve), dtype: .f32)
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
        paper.calibrationText = text
        #expect(throws: RWKVError(nil, "--calibrate only applies to --recipe preserve")) {
            try Upgrade.run(input: input, output: dir.file("x.pth"), options: paper)
        }
        var short = quickOptions(.preserve)
        try Data("tiny".utf8).write(to: URL(fileURLWithPath: dir.file("short.txt")))
        short.calibrationText = dir.file("short.txt")
        #expect(throws: RWKVError(dir.file("short.txt"), "calibration text gives 4 tokens; at least 16 are needed")) {
            try Upgrade.run(input: input, output: dir.file("x.pth"), options: short)
        }
    }
}
