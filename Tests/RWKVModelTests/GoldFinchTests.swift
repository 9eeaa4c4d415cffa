import Foundation
import Testing
import RWKVFormats
@testable import RWKVModel

/// GoldFinch against logits the GoldFinch repository's own model code (recursal/GoldFinch-paper
/// 4fbc70c6, its CUDA WKV kernel replaced by a torch loop checked against the official `rwkv`
/// package) computed on random tiny checkpoints (fixtures/make_goldfinch.py): sequence mode over
/// 24 tokens from the empty state.
///
/// Tolerance 1e-4 max |Δlogit|, as `OfficialAgreementTests` (f32 on both sides, summation order
/// only). Measured 3.1e-6..5.7e-6.
@Suite struct GoldFinchTests {
    static let tolerance: Float = 1e-4
    static let cases: [(name: String, layers: [GoldFinchLayer])] = [
        ("goldfinch-tiny", [.finchC2, .finchC2, .finchC2, .finchC2, .gold, .gold]),
        ("goldfinch-upgrade-tiny", [.finch, .finch, .finch, .finch, .gold]),
        ("goldfinch-r2-tiny", [.finchC2, .gold]),
    ]

    static func reference(_ name: String) throws -> (tokens: [Int], logits: [[Float]]) {
        let file = try SafetensorsReader(path: fixture("expected/\(name).logits.safetensors"))
        let tokens = try file.floats("tokens").map { Int($0) }
        let flat = try file.floats("logits"), V = flat.count / tokens.count
        return (tokens, (0..<tokens.count).map { Array(flat[$0 * V ..< ($0 + 1) * V]) })
    }

    static func model(_ name: String) throws -> GoldFinchModel {
        try GoldFinchModel(try GoldFinchCheckpoint(try ModelFile.open(fixture("models/\(name).pth"))))
    }

    @Test(arguments: cases.indices)
    func matchesTheRepositoryLogits(_ i: Int) throws {
        let c = Self.cases[i]
        let (tokens, expected) = try Self.reference(c.name)
        let model = try Self.model(c.name)
        #expect(model.goldFinch.layers == c.layers)
        for mode in ForwardMode.allCases {
            let difference = maxAbsDifference(expected, try model.logits(tokens, mode: mode).rows)
            #expect(difference <= Self.tolerance, "\(c.name) \(mode): max |Δlogit| \(difference)")
        }
    }

    /// Our causal mask is aligned to the end of the context, so a prefill of 12 then one call of 12
    /// gives the single call's logits (the repository's multi-token call after a non-empty cache
    /// does not: 3.3 to 4.1 in fixtures/expected/goldfinch-crosscheck.json). The state keeps the
    /// compressed cache: C/16 floats and the token id per token.
    @Test(arguments: cases.indices)
    func anySplitIntoCallsGivesTheSameLogits(_ i: Int) throws {
        let c = Self.cases[i]
        let (tokens, expected) = try Self.reference(c.name)
        let model = try Self.model(c.name)
        var state = model.makeState()
        var rows = try model.forward(Array(tokens[0..<12]), state: &state, mode: .sequence, positions: .all).rows
        rows += try model.forward(Array(tokens[12...]), state: &state, mode: .sequence, positions: .all).rows
        #expect(maxAbsDifference(expected, rows) <= Self.tolerance)
        #expect(state.cachedTokens == tokens)
        #expect(state.compressedKeys.count == tokens.count * model.goldFinch.compressedSize)
        #expect(model.goldFinch.compressedSize == model.goldFinch.embeddingSize / 16)
    }

    @Test func cacheSizesAgainstATransformer() throws {
        let g = try Self.model("goldfinch-tiny").goldFinch
        #expect(g.cachePerToken.ours == 4 && g.cachePerToken.repository == 64 && g.cachePerToken.transformer == 2 * 6 * 64)
        #expect(g.split == 4)
        #expect(GoldFinchConfig.describe(g.layers.map(\.rawValue)) == "4 Finch-C2 + 2 GOLD layers")
    }

    /// Damaged or ambiguous files are refused by name, before anything is computed.
    @Test func refusesDamagedCheckpoints() throws {
        let file = try ModelFile.open(fixture("models/goldfinch-tiny.pth"))
        let path = file.path
        func open(dropping drop: (String) -> Bool = { _ in false }, renaming rename: [String: String] = [:]) throws -> GoldFinchCheckpoint {
            try GoldFinchCheckpoint(EditedSource(file, drop: drop, rename: rename))
        }
        #expect(throws: RWKVError(path, "missing tensor blocks.5.att.ln_k.bias")) { try open(dropping: { $0 == "blocks.5.att.ln_k.bias" }) }
        #expect(throws: RWKVError(path, "missing tensor w_kv_cache_b.weight")) { try open(dropping: { $0 == "w_kv_cache_b.weight" }) }
        #expect(throws: RWKVError(path, "block 4 is none of Finch (att.gate.weight), Finch-C2 (att.time_maa_v2) and GOLD (att.query.weight)")) {
            try open(dropping: { $0 == "blocks.4.att.query.weight" })
        }
        #expect(throws: RWKVError(path, "GOLD block 4 is followed by a Finch block: GoldFinch's GOLD blocks are the top ones")) {
            try open(renaming: ["blocks.5.att.query.weight": "blocks.5.att.time_maa_v2"])
        }
        #expect(throws: RWKVError(path, "block 0 is more than one of Finch (att.gate.weight), Finch-C2 (att.time_maa_v2) and GOLD (att.query.weight)")) {
            try open(renaming: ["blocks.0.att.time_faaaa": "blocks.0.att.gate.weight"])
        }
    }
}
