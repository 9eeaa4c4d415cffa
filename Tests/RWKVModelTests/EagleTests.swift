import Foundation
import Testing
import RWKVFormats
@testable import RWKVModel

/// RWKV-5 ("Eagle") read as the RWKV-6 it equals, against logits the official `rwkv` package
/// (0.8.32, cpu fp32) computed on the RWKV-5 checkpoints themselves (fixtures/make_rwkv5.py).
///
/// Tolerance 1e-4 max |Δlogit|, as `OfficialAgreementTests`: the package runs its own RWKV-5
/// code, we run the RWKV-6 pass on 1 − μ lerps and channel-broadcast decays, so the two differ
/// by f32 rounding only. Measured: 1.9e-6..3.3e-6 on every version, RNN and sequence mode.
@Suite struct EagleTests {
    static let cases: [(model: String, version: EagleVersion, expected: String)] = [
        ("models/rwkv5.0-tiny-fp32.pth", .v5_0, "expected/rwkv5.0-tiny-fp32.logits.safetensors"),
        ("models/rwkv5.1-tiny-fp32.pth", .v5_1, "expected/rwkv5.1-tiny-fp32.logits.safetensors"),
        ("models/rwkv5.2-tiny-fp32.pth", .v5_2, "expected/rwkv5.2-tiny-fp32.logits.safetensors"),
        ("models/rwkv5.2-tiny-bf16.pth", .v5_2, "expected/rwkv5.2-tiny-bf16.logits.safetensors"),
        ("models/rwkv5.2-tiny.safetensors", .v5_2, "expected/rwkv5.2-tiny-bf16.logits.safetensors"),
    ]

    @Test(arguments: cases.indices)
    func matchesTheOfficialRWKV5Logits(_ i: Int) throws {
        let c = Self.cases[i]
        let reference = try OfficialCase(model: c.model, expected: c.expected).reference()
        let model = try RWKVModelLoader.load(path: fixture(c.model))
        #expect(model.config.eagle == c.version)
        #expect(model.config.hasGate == (c.version != .v5_0))
        for mode in ForwardMode.allCases {
            let difference = maxAbsDifference(reference.logits, try model.logits(reference.tokens, mode: mode).rows)
            #expect(difference <= OfficialAgreementTests.tolerance, "\(c.model) \(mode): max |Δlogit| \(difference)")
        }
    }

    /// The versions differ in what they compute: each fixture's logits are far from the others'
    /// (so a reader that treated 5.1 as 5.2, or ignored the gate, would fail above).
    @Test func theThreeVersionsAreDifferentModels() throws {
        let logits = try Self.cases.prefix(3).map { try OfficialCase(model: $0.model, expected: $0.expected).reference().logits }
        #expect(maxAbsDifference(logits[0], logits[1]) > 0.1)
        #expect(maxAbsDifference(logits[1], logits[2]) > 0.1)
    }

    /// Shared tensors pass through byte for byte (the large matrices are never re-encoded); the
    /// made ones follow their rule.
    @Test func sharedTensorsPassThroughAndMadeOnesFollowTheirRule() throws {
        let file = try ModelFile.open(fixture("models/rwkv5.1-tiny-fp32.pth"))
        let view = try EagleCheckpoint(file)
        let made = Set(ArchitectureSchema.rwkv5.map(\.rwkv6.rawValue))
        for t in view.tensors {
            let leaf = String(t.name.split(separator: ".", maxSplits: 2).last!)
            if t.name.hasPrefix("blocks."), made.contains(leaf) { continue }
            #expect(try view.data(t.name) == (try file.data(t.name)), "\(t.name)")
            #expect(view.info(t.name)?.dtype == file.info(t.name)?.dtype)
        }
        let mix = try file.floats("blocks.1.att.time_mix_k")
        #expect(try view.floats("blocks.1.att.time_maa_k") == mix.map { 1 - $0 })
        // 5.1: one decay and one bonus per head, given to each of the head's 32 channels.
        let decay = try file.floats("blocks.0.att.time_decay"), decayView = try view.floats("blocks.0.att.time_decay")
        #expect(decay.count == 2 && decayView.count == 64)
        #expect(decayView == decay.flatMap { [Float](repeating: $0, count: 32) })
        #expect(try view.floats("blocks.0.att.time_maa_w1").allSatisfy { $0 == 0 })
        #expect(try view.floats("blocks.0.att.time_decay_w1").allSatisfy { $0 == 0 })
        #expect(view.config.tokenShiftRank == 32 && view.config.decayRank == 64)
    }

    /// Older files hold `time_first`, used as u = exp(time_first) (the package's load transform).
    @Test func timeFirstIsExponentiated() throws {
        let file = try ModelFile.open(fixture("models/rwkv5.0-tiny-fp32.pth"))
        #expect(file.info("blocks.0.att.time_first") != nil)
        let view = try EagleCheckpoint(file)
        let u = try view.floats("blocks.0.att.time_faaaa"), first = try file.floats("blocks.0.att.time_first")
        #expect(u == first.flatMap { [Float](repeating: expf($0), count: 32) })
        #expect(view.info("blocks.0.att.gate.weight") == nil)
    }

    @Test func inspectionNamesTheVersion() throws {
        let source = try Checkpoint.open(fixture("models/rwkv5.2-tiny-bf16.pth"))
        #expect(source.formatName == "torch zip (.pth), RWKV-5.2 read as RWKV-6")
        #expect(Checkpoint.underlying(source) is TorchArchive)
    }

    // MARK: - Files that are not a complete RWKV-5

    /// The 5.2 fixture's shapes with one change.
    func shapes(_ change: (inout [(name: String, shape: [Int])]) -> Void) throws -> ShapesOnly {
        var list = try ModelFile.open(fixture("models/rwkv5.2-tiny-fp32.pth")).tensors.map { (name: $0.name, shape: $0.shape) }
        change(&list)
        return ShapesOnly(list)
    }

    @Test func refusesWhatIsNotACompleteRWKV5() throws {
        let noGate = try shapes { $0.removeAll { $0.name.hasSuffix("att.gate.weight") } }
        #expect(throws: RWKVError("shapes-only", "RWKV-5.2 checkpoint (2-D time_decay) without att.gate.weight")) { try EagleCheckpoint(noGate) }
        let rwkv4 = try shapes { $0.removeAll { $0.name.contains("ln_x") } }
        #expect(throws: RWKVError("shapes-only", "RWKV-4 checkpoint (token-shift time_mix_k without att.ln_x): only RWKV-5, 6 and 7 are supported")) {
            try EagleCheckpoint(rwkv4)
        }
        let extra = try shapes { $0.append((name: "blocks.1.att.time_maa_w1", shape: [64, 160])) }
        #expect(throws: RWKVError("shapes-only", "tensor blocks.1.att.time_maa_w1 is not part of an RWKV-5.2 checkpoint")) { try EagleCheckpoint(extra) }
        let missing = try shapes { $0.removeAll { $0.name == "blocks.1.ffn.time_mix_r" } }
        #expect(throws: RWKVError("shapes-only", "missing tensor blocks.1.ffn.time_mix_r")) { try EagleCheckpoint(missing) }
        let misshapen = try shapes { list in
            let i = list.firstIndex { $0.name == "blocks.1.att.time_decay" }!
            list[i].shape = [2, 16]
        }
        #expect(throws: RWKVError("shapes-only", "tensor blocks.1.att.time_decay has shape [2, 16], expected [2, 32]")) { try EagleCheckpoint(misshapen) }
        let oddHeads = try shapes { list in
            for i in list.indices where list[i].name.hasSuffix("att.time_decay") || list[i].name.hasSuffix("att.time_faaaa") { list[i].shape = [3, 21] }
        }
        #expect(throws: RWKVError("shapes-only", "tensor blocks.0.att.time_decay has shape [3, 21]; expected (heads) or (heads, head size) dividing n_embd 64")) {
            try EagleCheckpoint(oddHeads)
        }
    }
}
