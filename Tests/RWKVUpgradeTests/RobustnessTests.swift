import Foundation
import Testing
import RWKVFormats
import RWKVModel
@testable import RWKVUpgrade

/// Legal inputs that make the fits' batches degenerate: every one upgrades, and the upgraded
/// model's logits are finite. What was done instead of the asked-for fit is in the report.
@Suite struct RobustnessTests {
    static let texts: [(name: String, text: String)] = [
        ("one repeated byte", String(repeating: "a", count: 600)),
        ("two bytes", "ab"),
        ("a periodic sentence", String(repeating: "Calibration text for the tiny model, bytes as tokens. ", count: 6)),
        ("one repeated word", String(repeating: "word ", count: 120)),
        ("shorter than the fit batch", "A short text of ninety bytes, fewer tokens than the fit batch has room for in it."),
    ]

    @Test(arguments: texts.map(\.name))
    func aDegenerateTextStillUpgrades(name: String) throws {
        let dir = try UpgradeScratch()
        let text = try #require(Self.texts.first { $0.name == name }).text
        try Data(text.utf8).write(to: URL(fileURLWithPath: dir.file("text.txt")))
        var options = quickOptions(.preserve)
        options.calibration = .file(dir.file("text.txt"))
        let out = dir.file("out.safetensors")
        let report = try Upgrade.run(input: upgradeFixtures + "/models/rwkv6-tiny-fp32.pth", output: out, options: options, dtype: .f32)
        if text.utf8.count < UpgradePlan.minimumCalibrationTokens {
            #expect(report.calibration == "Gaussian stand-in (the calibration text gives \(text.utf8.count) tokens, at least 16 are needed)")
        } else {
            #expect(report.calibrationTokens == min(text.utf8.count, options.fitTokens))
        }
        try expectFiniteLogits(out)
    }

    /// Channels that are zero for every token at a block's inputs (ln1 and ln2 weight and bias
    /// zero there) and a constant embedding channel: rank-deficient features in every fit.
    @Test func deadAndConstantChannelsStillUpgrade() throws {
        let dir = try UpgradeScratch()
        let source = try readAll(upgradeFixtures + "/models/rwkv6-tiny-fp32.pth")
        let c = try #require(source["blocks.0.ln1.weight"]).values.count
        var tensors = source
        for layer in 0..<2 {
            for norm in ["ln1", "ln2"] {
                for part in ["weight", "bias"] {
                    let name = "blocks.\(layer).\(norm).\(part)"
                    var t = try #require(tensors[name])
                    for channel in stride(from: 0, to: c, by: 3) { t.values[channel] = 0 }
                    tensors[name] = t
                }
            }
        }
        var emb = try #require(tensors["emb.weight"])
        for row in 0..<(emb.values.count / c) { emb.values[row * c + 1] = 0.25 }
        tensors["emb.weight"] = emb
        let input = dir.file("dead-channels.safetensors")
        let order = try ModelFile.open(upgradeFixtures + "/models/rwkv6-tiny-fp32.pth").tensors.map(\.name)
        try SafetensorsWriter.write(to: input, tensors: order.map { TensorInfo(name: $0, dtype: .f32, shape: tensors[$0]!.shape) }) { info in
            var overflow = 0
            return try ElementCodec.encode(tensors[info.name]!.values, as: .f32, overflowCount: &overflow)
        }
        for calibration in [CalibrationSource.builtIn, .standIn] {
            var options = quickOptions(.preserve)
            options.calibration = calibration
            let out = dir.file("out.safetensors")
            _ = try Upgrade.run(input: input, output: out, options: options, dtype: .f32)
            try expectFiniteLogits(out)
        }
    }

    private func expectFiniteLogits(_ path: String) throws {
        let model = try RWKVModelLoader.load(path: path)
        #expect(model.config.version == .v7)
        let logits = try model.logits(Array("The cat sat on the mat.".utf8).map(Int.init), mode: .sequence)
        #expect(logits.values.allSatisfy { $0.isFinite })
    }
}
