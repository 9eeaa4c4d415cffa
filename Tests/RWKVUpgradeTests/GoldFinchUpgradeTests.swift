import Foundation
import Testing
import RWKVFormats
import RWKVModel
@testable import RWKVUpgrade

/// `rwkv-upgrade v6-to-goldfinch` on the RWKV-6 fixtures.
@Suite struct GoldFinchUpgradeTests {
    static let tiny = upgradeFixtures + "/models/rwkv6-tiny-fp32.pth"
    static let trained = upgradeFixtures + "/models/rwkv6-trained-bf16.pth"
    static let tokens = Array("The goose and the finch fly over the lake; the eagle waits.".utf8).map(Int.init)

    /// The repository's split rule (int(L·(r − 1)/r)) and the depth that puts exactly the Finch's
    /// blocks below it: 4 → 5 (the example), 24 → 29 (a Finch 1.6B), 3 → 4.
    @Test func depthFollowsTheSplitRule() {
        #expect(GoldFinchUpgrade.split(layers: 5, ratio: 6) == 4)
        #expect(GoldFinchUpgrade.depth(finchLayers: 4, ratio: 6) == 5)
        #expect(GoldFinchUpgrade.depth(finchLayers: 24, ratio: 6) == 29)
        #expect(GoldFinchUpgrade.depth(finchLayers: 3, ratio: 6) == 4)
        #expect(GoldFinchUpgrade.depth(finchLayers: 12, ratio: 3) == 18)
        for l in 1...64 { #expect(GoldFinchUpgrade.split(layers: GoldFinchUpgrade.depth(finchLayers: l, ratio: 6)!, ratio: 6) == l) }
    }

    /// Exact: the GOLD blocks' zero output and FFN value projections add exactly zero, so the
    /// GoldFinch computes the Finch: measured bit for bit against our RWKV-6 forward pass on the
    /// fp32 fixture (the same kernels); 1e-6 allowed for summation order.
    @Test func preserveComputesTheFinch() throws {
        let dir = try UpgradeScratch()
        let out = dir.file("gf.pth")
        let report = try GoldFinchUpgrade.run(input: Self.tiny, output: out, dtype: .f32)
        #expect(report.target.layers == [.finch, .finch, .gold])
        let finch = try RWKVModelLoader.load(path: Self.tiny)
        let goldFinch = try RWKVModelLoader.load(path: out)
        #expect(goldFinch is GoldFinchModel)
        for mode in ForwardMode.allCases {
            let a = try goldFinch.logits(Self.tokens, mode: mode).values, b = try finch.logits(Self.tokens, mode: mode).values
            let difference = zip(a, b).map { abs($0 - $1) }.max()!
            #expect(difference <= 1e-6, "\(mode): max |Δlogit| \(difference)")
        }
    }

    /// The Finch's tensors are stored as they were; the new ones follow the recipe: zero first
    /// LoRA factors and U(±0.01) second ones, the constructors' ramps, fresh LayerNorms, and the
    /// output projections zero (preserve) or drawn as torch's nn.Linear default (goldfinch).
    @Test(arguments: GoldFinchUpgrade.Recipe.allCases)
    func tensorsFollowTheRecipe(recipe: GoldFinchUpgrade.Recipe) throws {
        let dir = try UpgradeScratch()
        let out = dir.file("gf.pth")
        let report = try GoldFinchUpgrade.run(input: Self.trained, output: out, recipe: recipe)
        #expect(report.target.layers == [.finch, .finch, .finch, .gold] && report.target.compressedSize == 8)
        let source = try ModelFile.open(Self.trained), written = try ModelFile.open(out)
        for t in source.tensors {
            #expect(written.info(t.name) == t)
            #expect(try written.data(t.name) == source.data(t.name), "\(t.name)")
        }
        #expect(Set(written.tensors.map(\.name)) == Set(report.target.expectedShapes.map(\.name)))
        let b = "blocks.3."
        for zero in ["att.time_maa_q_w1", "att.time_maa_kv_w1", "att.time_key_w1", "att.time_value_w1", "att.ln_q.bias"] {
            #expect(try written.floats(b + zero).allSatisfy { $0 == 0 }, "\(zero)")
        }
        for second in ["att.time_maa_q_w2", "att.time_maa_kv_w2", "att.time_key_w2", "att.time_value_w2"] {
            let v = try written.floats(b + second)
            #expect(v.allSatisfy { abs($0) <= 0.0101 } && v.contains { $0 != 0 }, "\(second)")
        }
        #expect(try written.floats(b + "att.ln_x.weight").allSatisfy { $0 == 1 })
        // time_maa_x = 1 − (c/C)^(1 − i/L), i = 3, L = 4 (bf16-rounded).
        let maaX = try written.floats(b + "att.time_maa_x")
        #expect(zip(maaX, (0..<128).map { Float(1 - pow(Double($0) / 128, 0.25)) }).allSatisfy { abs($0 - $1) <= 4e-3 })
        for projection in ["att.output.weight", "ffn.value.weight"] {
            let v = try written.floats(b + projection)
            #expect(recipe == .preserve ? v.allSatisfy { $0 == 0 } : v.contains { $0 != 0 }, "\(projection)")
        }
        let kvA = try written.floats("w_kv_cache_a.weight")
        #expect(kvA.allSatisfy { abs($0) <= 1 / Float(128).squareRoot() + 1e-3 } && kvA.contains { $0 != 0 })
    }

    /// A tensor copied as stored is checked like every other: a NaN in the Finch is refused, by
    /// both hybrid upgrades, before an output exists.
    @Test func nonFiniteWeightsAreRefusedNotCopied() throws {
        let dir = try UpgradeScratch()
        for (source, name) in [(Self.tiny, "blocks.1.att.output.weight"), (upgradeFixtures + "/models/rwkv7-tiny-fp32.pth", "blocks.1.att.output.weight")] {
            let file = try ModelFile.open(source)
            let damaged = dir.file("nan.safetensors")
            try SafetensorsWriter.write(to: damaged, tensors: file.tensors) { info in
                var values = try file.floats(info.name)
                if info.name == name { values[7] = .nan }
                return try Upgrade.encode(values, .f32)
            }
            let error = RWKVError(damaged, "tensor \(name) holds 1 NaN or infinite value (first at element 7): a diverged or damaged checkpoint; a model with NaN or infinite weights cannot be run")
            if source == Self.tiny {
                #expect(throws: error) { try GoldFinchUpgrade.run(input: damaged, output: dir.file("out.pth")) }
            } else {
                #expect(throws: error) { try HybridUpgrade.run(input: damaged, output: dir.file("out.pth")) }
            }
            #expect(!FileManager.default.fileExists(atPath: dir.file("out.pth")))
        }
    }

    @Test func refusesWhatItCannotUpgrade() throws {
        let dir = try UpgradeScratch()
        let v7 = upgradeFixtures + "/models/rwkv7-tiny-fp32.pth"
        #expect(throws: RWKVError(v7, "is not an RWKV-6 (Finch) checkpoint (v6-to-goldfinch reads RWKV-6)")) {
            try GoldFinchUpgrade.run(input: v7, output: dir.file("a.pth"))
        }
        // An RWKV-5 read as RWKV-6 has LoRAs with both factors zero, which could never learn.
        let v52 = upgradeFixtures + "/models/rwkv5.2-tiny-fp32.pth"
        #expect(throws: RWKVError(v52, "RWKV-5.2 checkpoint: run rwkv-upgrade v5-to-v6 first (its RWKV-6 has LoRAs that can learn), then v6-to-goldfinch")) {
            try GoldFinchUpgrade.run(input: v52, output: dir.file("b.pth"))
        }
        #expect(!FileManager.default.fileExists(atPath: dir.file("a.pth")))
    }
}
