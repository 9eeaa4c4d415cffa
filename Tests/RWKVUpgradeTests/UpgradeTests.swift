import Foundation
import Testing
import RWKVFormats
import RWKVModel
@testable import RWKVUpgrade

/// End to end: an RWKV-6 file in, an RWKV-7 file out, checked against the RWKV-7 layout.
@Suite struct UpgradeTests {
    @Test(arguments: UpgradeRecipeName.allCases)
    func outputHasExactlyTheRWKV7KeysAndShapes(recipe: UpgradeRecipeName) throws {
        let dir = try UpgradeScratch()
        let input = try TinyRWKV6.write(in: dir)
        let output = dir.file("out.safetensors")
        let report = try Upgrade.run(input: input, output: output, options: quickOptions(recipe))

        // C = 64 is not an official width: the trainer formula gives 32 for every rank.
        let expected = RWKVConfig(version: .v7, layerCount: 2, embeddingSize: 64, headSize: 32, vocabSize: 32, ffnSize: 256,
                                  decayRank: 32, iclrRank: 32, valueResidualRank: 32, gateRank: 32)
        #expect(report.target == expected)
        let source = try ModelFile.open(output)
        #expect(source.tensors.map(\.name) == expected.expectedShapes.map(\.name))
        #expect(source.tensors.map(\.shape) == expected.expectedShapes.map(\.shape))
        #expect(source.tensors.allSatisfy { $0.dtype == .bf16 })
        #expect(source.info("blocks.0.att.v0") != nil && source.info("blocks.0.att.v2") != nil)
        #expect(try RWKVConfig.detect(source) == expected)
        #expect(report.tensors.count == expected.expectedShapes.count)
        // paper drops the token-shift LoRA, the FFN receptance and the bonus (r_k starts at 0);
        // preserve folds all of them in.
        let unused = Set(report.unusedSourceTensors)
        if recipe == .paper {
            #expect(unused == Set((0..<2).flatMap { i in
                ["att.time_maa_x", "att.time_maa_w1", "att.time_maa_w2", "att.time_faaaa", "ffn.time_maa_r", "ffn.receptance.weight"].map { "blocks.\(i)." + $0 }
            }))
        } else {
            #expect(unused.isEmpty)
        }
    }

    @Test func ranksAndWidthCanBeChosen() throws {
        let dir = try UpgradeScratch()
        let input = try TinyRWKV6.write(in: dir)
        var options = quickOptions(.preserve)
        options.decayRank = 8        // narrower than RWKV-6's 16: strongest units kept
        options.iclrRank = 24
        options.valueResidualRank = 40
        options.gateRank = 64
        options.ffnMultiplier = 5
        let output = dir.file("out.safetensors")
        let report = try Upgrade.run(input: input, output: output, options: options, dtype: .f32)
        let config = try RWKVConfig.detect(ModelFile.open(output))
        #expect(config.decayRank == 8 && config.iclrRank == 24 && config.valueResidualRank == 40 && config.gateRank == 64)
        #expect(config.ffnSize == 320)
        #expect(report.layers.allSatisfy { $0.decayUnitsKept?.count == 8 })
        #expect(report.rankOrigin["gate"] == "given")
    }

    @Test func torchOutputRoundTripsThroughOurReader() throws {
        let dir = try UpgradeScratch()
        let input = upgradeFixtures + "/models/rwkv6-tiny-fp32.pth"
        let pth = dir.file("rwkv7-upgraded.pth"), st = dir.file("rwkv7-upgraded.safetensors")
        // The writer does not care which recipe made the values; preserve's are the more varied.
        for recipe in [UpgradeRecipeName.preserve] {
            _ = try Upgrade.run(input: input, output: pth, options: quickOptions(recipe), dtype: .f32)
            _ = try Upgrade.run(input: input, output: st, options: quickOptions(recipe), dtype: .f32)
            let a = try readAll(pth), b = try readAll(st)
            #expect(a.count == b.count)
            for (name, t) in b {
                #expect(a[name]?.shape == t.shape, "\(name)")
                #expect(a[name]?.values == t.values, "\(name)")
            }
            let source = try ModelFile.open(pth)
            #expect(source.formatName == ModelFormat.torchZip.rawValue)
            #expect(try RWKVConfig.detect(source).version == .v7)
        }
    }

    @Test func sameSeedSameBytesOtherSeedOnlyRandomPartsChange() throws {
        let dir = try UpgradeScratch()
        let input = try TinyRWKV6.write(in: dir)
        for recipe in UpgradeRecipeName.allCases {
            // Same output name in two folders: the .pth archive folder is named after the file.
            try FileManager.default.createDirectory(atPath: dir.file("a"), withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: dir.file("b"), withIntermediateDirectories: true)
            let a = dir.file("a/out.pth"), b = dir.file("b/out.pth"), c = dir.file("a/other.safetensors"), d = dir.file("b/other.safetensors")
            _ = try Upgrade.run(input: input, output: a, options: quickOptions(recipe, seed: 7))
            _ = try Upgrade.run(input: input, output: b, options: quickOptions(recipe, seed: 7))
            #expect(try Data(contentsOf: URL(fileURLWithPath: a)) == Data(contentsOf: URL(fileURLWithPath: b)))

            _ = try Upgrade.run(input: input, output: c, options: quickOptions(recipe, seed: 7))
            _ = try Upgrade.run(input: input, output: d, options: quickOptions(recipe, seed: 8))
            let x = try readAll(c), y = try readAll(d)
            // RWKV-6's decay rank 16 is widened to 32 (new U(±1e-4) units), the FFN from 224 to
            // 256 (new U(±1e-3) units), a2/v2 are orthogonal draws: exactly these differ.
            let random: Set<String> = Set((0..<2).flatMap { i in
                ["att.w1", "att.w2", "att.a2", "att.v2", "ffn.key.weight", "ffn.value.weight"].map { "blocks.\(i)." + $0 }
            })
            for (name, t) in x {
                let same = t.values == y[name]?.values
                #expect(same == !random.contains(name), "\(recipe) \(name)")
            }
        }
    }

    @Test func refusesWhatItCannotUpgrade() throws {
        let dir = try UpgradeScratch()
        let v7 = upgradeFixtures + "/models/rwkv7-tiny.safetensors"
        #expect(throws: RWKVError(v7, "is an RWKV-7 checkpoint; v6-to-v7 needs an RWKV-6 one")) {
            try Upgrade.run(input: v7, output: dir.file("x.pth"), options: UpgradeOptions())
        }
        let input = try TinyRWKV6.write(in: dir)
        #expect(throws: RWKVError(dir.file("x.bin"), "output must end in .pth (what the official trainer loads) or .safetensors")) {
            try Upgrade.run(input: input, output: dir.file("x.bin"), options: UpgradeOptions())
        }
        var narrow = UpgradeOptions()
        narrow.ffnMultiplier = 3
        #expect(throws: RWKVError(input, "--ffn-mult 3.0 gives an FFN width that is not a whole number of at least the RWKV-6 width 224 (n_embd 64)")) {
            try Upgrade.run(input: input, output: dir.file("x.pth"), options: narrow)
        }
        var zeroRank = UpgradeOptions()
        zeroRank.gateRank = 0
        #expect(throws: RWKVError(input, "--gate-rank 0 is out of range (1...1024 for this n_embd 64)")) {
            try Upgrade.run(input: input, output: dir.file("x.pth"), options: zeroRank)
        }
        #expect(throws: RWKVError(input, "refusing to overwrite the input file")) {
            try Upgrade.run(input: input, output: input, options: UpgradeOptions())
        }
        #expect(!FileManager.default.fileExists(atPath: dir.file("x.pth")))
    }

    @Test func nonFiniteWeightsAreReportedByName() throws {
        let dir = try UpgradeScratch()
        let path = dir.file("nan.safetensors")
        let infos = TinyRWKV6.config.expectedShapes.map { TensorInfo(name: $0.name, dtype: .f32, shape: $0.shape) }
        try SafetensorsWriter.write(to: path, tensors: infos) { info in
            var values = TinyRWKV6.values(info.name, info.shape)
            if info.name == "blocks.1.att.gate.weight" { values[5] = .nan }
            var overflow = 0
            return try ElementCodec.encode(values, as: .f32, overflowCount: &overflow)
        }
        #expect(throws: RWKVError(path, "tensor blocks.1.att.gate.weight holds 1 NaN or infinite value (first at element 5): a diverged or damaged checkpoint; an upgrade would spread it through the new tensors")) {
            try Upgrade.run(input: path, output: dir.file("out.safetensors"), options: UpgradeOptions())
        }
        #expect(!FileManager.default.fileExists(atPath: dir.file("out.safetensors")))
    }

    @Test func officialRanksAndTrainerFormula() {
        #expect(RWKV7Ranks.defaults(embeddingSize: 768) == RWKV7Ranks(decay: 64, iclr: 64, valueResidual: 32, gate: 128))
        #expect(RWKV7Ranks.defaults(embeddingSize: 1024) == RWKV7Ranks(decay: 64, iclr: 64, valueResidual: 32, gate: 128))
        #expect(RWKV7Ranks.defaults(embeddingSize: 2048) == RWKV7Ranks(decay: 96, iclr: 96, valueResidual: 64, gate: 256))
        #expect(RWKV7Ranks.defaults(embeddingSize: 2560) == RWKV7Ranks(decay: 96, iclr: 96, valueResidual: 64, gate: 320))
        // Widths outside the table take the current trainer's formula, which the file is loaded
        // into: 2.5·64 = 160, 1.7·64 = 108.8 → 96, 5·64 = 320.
        #expect(RWKV7Ranks.defaults(embeddingSize: 4096) == RWKV7Ranks(decay: 160, iclr: 160, valueResidual: 96, gate: 320))
        // The case: at C = 192 (and 128) the trainer builds a gate of 64 (5·√192 ≈ 69.3).
        #expect(RWKV7Ranks.defaults(embeddingSize: 192) == RWKV7Ranks(decay: 32, iclr: 32, valueResidual: 32, gate: 64))
        #expect(RWKV7Ranks.defaults(embeddingSize: 128) == RWKV7Ranks(decay: 32, iclr: 32, valueResidual: 32, gate: 64))
    }
}
