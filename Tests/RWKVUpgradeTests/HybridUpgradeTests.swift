import Foundation
import Testing
import RWKVFormats
import RWKVModel
@testable import RWKVUpgrade

/// `rwkv-upgrade v7-to-x` on the trained RWKV-7 fixture (3 × 128, RWKV-LM's trainer on English
/// text) and the RWKV-7 fixtures made by the official package.
@Suite struct HybridUpgradeTests {
    static let trained = upgradeFixtures + "/models/rwkv7-trained-bf16.pth"
    static let tiny = upgradeFixtures + "/models/rwkv7-tiny-fp32.pth"
    static let tokens = Array("The goose and the finch fly over the lake; the eagle waits.".utf8).map(Int.init)

    /// Exact: the preserve recipe's attention blocks add zero (zero output and FFN value
    /// projections), so the RWKV-X's logits are the RWKV-7's, bit for bit, whatever the block
    /// count, in prefill and decode alike.
    @Test(arguments: [1, 3])
    func preserveKeepsTheLogits(blocks: Int) throws {
        let dir = try UpgradeScratch()
        let out = dir.file("x.pth")
        let report = try HybridUpgrade.run(input: Self.trained, output: out, recipe: .preserve, blocks: blocks)
        #expect(report.target.attentionBlocks == blocks)
        let rwkv7 = try RWKVModelLoader.load(path: Self.trained)
        let hybrid = try RWKVModelLoader.load(path: out, memory: .tokens(8))
        #expect(hybrid is RWKVXModel)
        for mode in ForwardMode.allCases {
            #expect(try hybrid.logits(Self.tokens, mode: mode).values == (try rwkv7.logits(Self.tokens, mode: mode).values))
        }
        // A prefill then decode: the same as the RWKV-7 token after token.
        var xState = hybrid.makeState(), state = rwkv7.makeState()
        _ = try hybrid.forward(Array(Self.tokens[0..<20]), state: &xState, mode: .sequence, positions: .last)
        _ = try rwkv7.forward(Array(Self.tokens[0..<20]), state: &state, mode: .sequence, positions: .last)
        for t in Self.tokens[20...] {
            #expect(try hybrid.forward([t], state: &xState, mode: .rnn, positions: .last).values
                    == (try rwkv7.forward([t], state: &state, mode: .rnn, positions: .last).values))
        }
    }

    /// The RWKV-7 tensors are stored as they were (names under rwkv., bytes and types unchanged);
    /// the attention blocks follow the recipe: q/k/v and the FFN key from the RWKV-7 block before
    /// (both recipes), output projections zero (preserve) or copied (rwkv-x, the published init),
    /// fresh LayerNorms, the trainer's x_k.
    @Test(arguments: HybridUpgrade.Recipe.allCases)
    func tensorsFollowTheRecipe(recipe: HybridUpgrade.Recipe) throws {
        let dir = try UpgradeScratch()
        let out = dir.file("x.pth")
        let report = try HybridUpgrade.run(input: Self.trained, output: out, recipe: recipe, blocks: 3, dtype: .f32)
        #expect(report.copiedFrom == [0, 1, 2] && report.ffnKeyCopied)
        let source = try ModelFile.open(Self.trained), written = try ModelFile.open(out)
        for t in source.tensors {
            #expect(written.info("rwkv." + t.name) == TensorInfo(name: "rwkv." + t.name, dtype: t.dtype, shape: t.shape))
            #expect(try written.data("rwkv." + t.name) == source.data(t.name), "\(t.name)")
        }
        #expect(written.tensors.count == source.tensors.count + 3 * RWKVXKey.allCases.count)
        for i in 0..<3 {
            for (key, from) in [(RWKVXKey.receptance, "att.receptance.weight"), (.key, "att.key.weight"), (.value, "att.value.weight"),
                                (.ffnKey, "ffn.key.weight"), (.output, "att.output.weight"), (.ffnValue, "ffn.value.weight")] {
                let copied = try written.floats(key.name(block: i)) == source.floats("blocks.\(i).\(from)")
                let zero = try written.floats(key.name(block: i)).allSatisfy { $0 == 0 }
                if recipe == .preserve, key == .output || key == .ffnValue { #expect(zero, "\(key) \(i)") }
                else { #expect(copied, "\(key) \(i)") }
            }
            #expect(try written.floats(RWKVXKey.ln1Weight.name(block: i)).allSatisfy { $0 == 1 })
            #expect(try written.floats(RWKVXKey.ln2Bias.name(block: i)).allSatisfy { $0 == 0 })
            let xk = try written.floats(RWKVXKey.ffnXK.name(block: i))
            let exponent = pow(1 - Double(i) / 3, 4)
            #expect(zip(xk, (0..<128).map { Float(1 - pow(Double($0) / 128, exponent)) }).allSatisfy { $0 == $1 })
        }
        // The published init changes the model; measured on this text KL ~0.25 (docs/upgrade.md).
        if recipe == .rwkvX {
            let a = try RWKVModelLoader.load(path: out).logits(Self.tokens, mode: .sequence).values
            let b = try RWKVModelLoader.load(path: Self.trained).logits(Self.tokens, mode: .sequence).values
            #expect(zip(a, b).map { abs($0 - $1) }.max()! > 0.1)
        }
    }

    @Test func defaultsAndRefusals() throws {
        #expect(HybridUpgrade.publishedBlocks(depth: 12) == 1)
        #expect(HybridUpgrade.publishedBlocks(depth: 32) == 8)
        let dir = try UpgradeScratch()
        let report = try HybridUpgrade.run(input: Self.tiny, output: dir.file("x.safetensors"))
        #expect(report.target.attentionBlocks == 1 && report.blockOrder == ["RWKV-7 0-1", "attention 0"])
        #expect(throws: RWKVError(Self.trained, "RWKV-X with 3 RWKV-7 blocks and 2 attention blocks: the depth must be a multiple of the attention block count (the rwkv-x package would skip the last 1 blocks)")) {
            try HybridUpgrade.run(input: Self.trained, output: dir.file("y.pth"), blocks: 2)
        }
        let hybrid = upgradeFixtures + "/models/rwkvx-tiny-2x1.pth"
        #expect(throws: RWKVError(hybrid, "is already an RWKV-X checkpoint")) { try HybridUpgrade.run(input: hybrid, output: dir.file("z.pth")) }
        let v6 = upgradeFixtures + "/models/rwkv6-tiny-fp32.pth"
        #expect(throws: RWKVError(v6, "is not an RWKV-7 checkpoint (v7-to-x reads RWKV-7)")) { try HybridUpgrade.run(input: v6, output: dir.file("z.pth")) }
        #expect(!FileManager.default.fileExists(atPath: dir.file("y.pth")) && !FileManager.default.fileExists(atPath: dir.file("z.pth")))
    }
}
