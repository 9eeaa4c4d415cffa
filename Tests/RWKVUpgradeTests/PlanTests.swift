import Foundation
import Testing
import RWKVFormats
import RWKVModel
@testable import RWKVUpgrade

/// The recipe tables: every RWKV-7 tensor has a step, and every step reads only the RWKV-6
/// tensors it declares (which the report lists as its sources).
@Suite struct PlanTests {
    /// The tables are exhaustive switches over RWKV7Key (a missing row does not compile); here:
    /// every step that copies or rescales a tensor is given a row RWKV-6 has too, and every step's
    /// sources are RWKV-6 rows.
    @Test func tablesMapEveryRowToRWKV6Rows() {
        var ablated = UpgradeOptions()
        ablated.ablations = Set(PreserveMapping.allCases)
        let tables = [RecipeTable.paper] + [UpgradeOptions(), ablated].flatMap { o in [false, true].map { RecipeTable.preserve(o, refit: $0) } }
        for table in tables {
            for key in RWKV7Key.allCases {
                let step = table(key)
                switch step {
                case .copy, .halved, .normWeight, .widenedRows, .widenedColumns, .bonusReceptance, .refitProjection,
                     .outputRefit, .headRefit, .channelMixFold:
                    #expect(RWKV6Key(rawValue: key.rawValue) != nil, "\(key) -> \(step.name)")
                default: break
                }
                #expect(!step.sources(target: key).isEmpty || [UpgradeStep.iclrLerp, .zeroLoRA, .orthogonalLoRA, .zeroBonus].contains(step)
                        || { if case .constant = step { return true }; if case .switchedOff = step { return true }; return false }())
            }
        }
    }

    /// Each tensor computed alone, in a fresh context: nothing a step needs comes from work an
    /// earlier tensor's step left behind, so an undeclared read cannot hide behind the cache.
    @Test(arguments: [(UpgradeRecipeName.paper, false, false), (.preserve, false, false), (.preserve, true, false), (.preserve, true, true)])
    func everyStepReadsOnlyWhatItDeclares(recipe: UpgradeRecipeName, calibrated: Bool, ablated: Bool) throws {
        let input = upgradeFixtures + "/models/rwkv6-tiny-fp32.pth"
        let source = try Checkpoint.open(input)
        var options = quickOptions(recipe)
        if recipe == .preserve { options.calibration = calibrated ? .file(upgradeFixtures + "/text/english.txt") : .standIn }
        if ablated { options.ablations = Set(PreserveMapping.allCases) }
        // Alone, a block's tensors cannot see the upgraded blocks before it: the RWKV-6's inputs.
        options.fitsOnUpgradedInputs = false
        let plan = try UpgradePlan(source: RWKVConfig.detect(source), options: options, path: input)
        for tensor in plan.tensors {
            #expect(throws: Never.self, "\(tensor.name)") { _ = try UpgradeContext(source: source, plan: plan).compute(tensor) }
        }
    }

    @Test func anUndeclaredReadIsAnError() throws {
        let source = try Checkpoint.open(upgradeFixtures + "/models/rwkv6-tiny-fp32.pth")
        let weights = V6Weights(source: source, config: try RWKVConfig.detect(source))
        weights.allowed = ("copy", ["blocks.0.att.key.weight"])
        _ = try weights.matrix("blocks.0.att.key.weight")
        #expect(throws: RWKVError(nil, "internal error: step copy read blocks.0.att.value.weight, which it does not declare")) {
            try weights.matrix("blocks.0.att.value.weight")
        }
    }

    /// A block's fits are typed and belong to that block: once block 1's tensors run, block 0's
    /// results are gone and asking for them is an error, never another block's answer.
    @Test func fitsBelongToTheirBlock() throws {
        let input = upgradeFixtures + "/models/rwkv6-tiny-fp32.pth"
        let source = try Checkpoint.open(input)
        // On the stand-in: with calibration the blocks run in order through the text.
        var options = quickOptions(.preserve)
        options.calibration = .standIn
        let plan = try UpgradePlan(source: RWKVConfig.detect(source), options: options, path: input)
        let ctx = try UpgradeContext(source: source, plan: plan)
        let w0 = try #require(plan.tensors.first { $0.name == "blocks.1.att.w0" })
        let first = try ctx.compute(w0)
        #expect(try ctx.decayFit(1).w0 == first.values)
        #expect(throws: RWKVError(nil, "internal error: block 0's fits asked for while computing block 1")) { try ctx.decayFit(0) }
    }

    @Test func sourcesAreRWKV6TensorsOfTheBlock() throws {
        let config = TinyRWKV6.config
        #expect(try UpgradePlan.sourceName(.decay, layer: 1, of: config) == "blocks.1.att.time_decay")
        #expect(try UpgradePlan.sourceName(.ln0Weight, layer: 0, of: config) == "blocks.0.ln0.weight")
        #expect(try UpgradePlan.sourceName(.head, layer: nil, of: config) == "head.weight")
        #expect(throws: RWKVError.self) { try UpgradePlan.sourceName(.ln0Weight, layer: 1, of: config) }   // block 0 only
        #expect(throws: RWKVError.self) { try UpgradePlan.sourceName(.ln1Weight, layer: nil, of: config) }
    }

    /// The names the report has always printed (scripts and docs read them).
    @Test func stepNames() {
        #expect(UpgradeStep.constant(0.85).name == "constant(0.85)")
        #expect(UpgradeStep.constant(1).name == "constant(1)")
        #expect(UpgradeStep.switchedOff(-5).name == "switched-off(-5)")
        #expect(UpgradeStep.bonusReceptance(refit: false).name == "copy, rows x bonus receptance scale")
    }
}
