import Foundation
import Testing
import RWKVFormats
import RWKVModel
@testable import RWKVUpgrade

/// `rwkv-upgrade v5-to-v6` and `v5-to-v7` on the RWKV-5 fixtures made by the official package.
@Suite struct EagleUpgradeTests {
    static let bf16 = upgradeFixtures + "/models/rwkv5.2-tiny-bf16.pth"
    static let officialBF16 = upgradeFixtures + "/expected/rwkv5.2-tiny-bf16.logits.safetensors"

    static let upcastBF16 = upgradeFixtures + "/expected/rwkv5.2-tiny-bf16.upcast.logits.safetensors"

    static func official(_ path: String = officialBF16) throws -> (tokens: [Int], logits: [[Float]]) {
        let file = try SafetensorsReader(path: path)
        let tokens = try file.floats("tokens").map { Int($0) }
        let flat = try file.floats("logits")
        let V = flat.count / tokens.count
        return (tokens, (0..<tokens.count).map { Array(flat[$0 * V ..< ($0 + 1) * V]) })
    }

    /// KL(p‖q) of two logit rows, in nats.
    static func kl(_ p: [Float], _ q: [Float]) -> Double {
        func logSoftmax(_ x: [Float]) -> [Double] {
            let m = Double(x.max()!)
            let z = x.reduce(0.0) { $0 + exp(Double($1) - m) }
            return x.map { Double($0) - m - log(z) }
        }
        let lp = logSoftmax(p), lq = logSoftmax(q)
        return zip(lp, lq).reduce(0) { $0 + exp($1.0) * ($1.0 - $1.1) }
    }

    /// Exact: the RWKV-6 it writes gives the official RWKV-5 logits (KL ≤ 1e-6 is the issue's
    /// bound; measured ~1e-13, f32 rounding), in bf16 too because the computed lerps stay fp32.
    @Test(arguments: [DType.bf16, .f32])
    func theRWKV6ComputesTheRWKV5(dtype: DType) throws {
        let dir = try UpgradeScratch()
        let out = dir.file("v6.pth")
        let report = try EagleUpgrade.run(input: Self.bf16, output: out, dtype: dtype)
        #expect(report.sourceVersion == "5.2" && report.target.version == .v6 && report.target.eagle == .v5_2)
        let written = try ModelFile.open(out)
        #expect(try RWKVConfig.detect(written).eagle == nil)   // a plain RWKV-6 checkpoint
        #expect(written.info("blocks.0.att.time_maa_k")?.dtype == .f32)
        #expect(written.info("blocks.0.att.key.weight")?.dtype == dtype)

        // An fp32 output no longer has the bf16 embedding the package rounds ln0's output to, so the
        // package runs it as it runs the RWKV-5 upcast to fp32 (that fixture's logits).
        let (tokens, reference) = try Self.official(dtype == .f32 ? Self.upcastBF16 : Self.officialBF16)
        let model = try RWKVModelLoader.load(path: out)
        for mode in ForwardMode.allCases {
            let rows = try model.logits(tokens, mode: mode).rows
            let worst = zip(reference, rows).map { Self.kl($0, $1) }.max()!
            #expect(worst <= 1e-6, "\(mode): KL \(worst)")
        }
    }

    /// Trainable: each LoRA's first factor is zero (exactness), its second uniform in ±0.01 as
    /// RWKV-LM draws it, so the first factor's gradient (which runs through the second) is
    /// nonzero at the first step. Shared tensors are the RWKV-5's, bit for bit.
    @Test func loRAsCanLearnAndSharedTensorsAreKept() throws {
        let dir = try UpgradeScratch()
        let out = dir.file("v6.safetensors")
        _ = try EagleUpgrade.run(input: Self.bf16, output: out, seed: 7)
        let written = try ModelFile.open(out), source = try ModelFile.open(Self.bf16)
        for layer in 0..<2 {
            let b = "blocks.\(layer).att."
            for first in ["time_maa_w1", "time_decay_w1"] { #expect(try written.floats(b + first).allSatisfy { $0 == 0 }) }
            for second in ["time_maa_w2", "time_decay_w2"] {
                let v = try written.floats(b + second)
                #expect(v.allSatisfy { abs($0) <= 0.0101 } && v.filter { $0 != 0 }.count > v.count * 9 / 10, "\(b + second)")
            }
        }
        for t in source.tensors where written.info(t.name) != nil {
            #expect(try written.data(t.name) == (try source.data(t.name)), "\(t.name)")
        }
        let again = dir.file("again.safetensors"), other = dir.file("other.safetensors")
        _ = try EagleUpgrade.run(input: Self.bf16, output: again, seed: 7)
        _ = try EagleUpgrade.run(input: Self.bf16, output: other, seed: 8)
        #expect(FileManager.default.contents(atPath: again) == FileManager.default.contents(atPath: out))
        #expect(try ModelFile.open(other).floats("blocks.0.att.time_maa_w2") != (try written.floats("blocks.0.att.time_maa_w2")))
    }

    @Test func refusesWhatItCannotUpgrade() throws {
        let dir = try UpgradeScratch()
        let v50 = upgradeFixtures + "/models/rwkv5.0-tiny-fp32.pth"
        #expect(throws: RWKVError(v50, "RWKV-5.0 has no output gate, so an RWKV-6 cannot compute it exactly (rwkv-convert inspect and rwkv-verify read it)")) {
            try EagleUpgrade.run(input: v50, output: dir.file("a.pth"))
        }
        let v6 = upgradeFixtures + "/models/rwkv6-tiny-bf16.pth"
        #expect(throws: RWKVError(v6, "is not an RWKV-5 checkpoint (v5-to-v6 reads RWKV-5.1 and 5.2; for RWKV-6 use v6-to-v7)")) {
            try EagleUpgrade.run(input: v6, output: dir.file("b.pth"))
        }
        #expect(throws: RWKVError(Self.bf16, "is an RWKV-5.2 checkpoint, not RWKV-6: use v5-to-v7 (or v5-to-v6)")) {
            try Upgrade.run(input: Self.bf16, output: dir.file("c.pth"), options: quickOptions(.paper))
        }
        #expect(throws: RWKVError(v6, "is an RWKV-6 checkpoint, not RWKV-5: use v6-to-v7")) {
            try Upgrade.run(input: v6, output: dir.file("d.pth"), options: quickOptions(.paper), fromEagle: true)
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        #expect(left.isEmpty)
    }

    /// v5-to-v7 runs the v6-to-v7 recipes on the RWKV-6 view; both give a working RWKV-7.
    @Test(arguments: [UpgradeRecipeName.paper, .preserve])
    func v5ToV7GivesARunningRWKV7(recipe: UpgradeRecipeName) throws {
        let dir = try UpgradeScratch()
        let out = dir.file("v7.pth")
        let report = try Upgrade.run(input: Self.bf16, output: out, options: quickOptions(recipe), fromEagle: true)
        #expect(report.source.eagle == .v5_2 && report.target.version == .v7)
        #expect(report.summary.hasPrefix("upgraded \(Self.bf16) (RWKV-5.2, 2×64)"))
        let (tokens, _) = try Self.official()
        let logits = try RWKVModelLoader.load(path: out).logits(tokens, mode: .rnn).rows
        #expect(logits.allSatisfy { $0.allSatisfy(\.isFinite) })
    }
}
