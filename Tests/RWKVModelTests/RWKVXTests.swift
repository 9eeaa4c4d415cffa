import Foundation
import Testing
import RWKVFormats
@testable import RWKVModel

/// RWKV-X (RWKV-7 + attention blocks) against logits the published `rwkv-x` package (0.2.7,
/// `RWKV_X(path, 'cpu fp32', memory)`) computed on the same files (fixtures/make_rwkvx.py): a
/// prefill, token-by-token decode, and (2x2) a second prefill that replaces the kept memory.
///
/// Tolerance 1e-4 max |Δlogit|, as `OfficialAgreementTests`: both sides compute in f32 and differ
/// in summation order only. Measured: 3.1e-6..4.7e-6 in both modes. A wrong memory setting moves
/// the logits by 1.6 or more (`theMemorySettingAndTheCallSplitMatter`), so the selection of kept
/// positions is checked too, not only the arithmetic.
@Suite struct RWKVXTests {
    static let tolerance: Float = 1e-4
    static let cases = ["rwkvx-tiny-2x2", "rwkvx-tiny-2x1"]

    struct PackageRun {
        let tokens: [Int]
        let logits: [[Float]]
        let calls: [Int]
        let memory: AttentionMemory

        init(_ name: String) throws {
            let file = try SafetensorsReader(path: fixture("expected/\(name).logits.safetensors"))
            tokens = try file.floats("tokens").map { Int($0) }
            let flat = try file.floats("logits"), V = flat.count / tokens.count
            logits = (0..<tokens.count).map { Array(flat[$0 * V ..< ($0 + 1) * V]) }
            calls = file.metadata["calls"]!.split(separator: ",").map { Int($0)! }
            memory = try AttentionMemory(parsing: file.metadata["memory"]!)
        }
    }

    static func model(_ name: String, memory: AttentionMemory) throws -> RWKVXModel {
        try RWKVXModel(try RWKVXCheckpoint(try ModelFile.open(fixture("models/\(name).pth"))), memory: memory)
    }

    /// The logits of `calls` from the zero state.
    static func run(_ model: RWKVXModel, _ tokens: [Int], calls: [Int], mode: ForwardMode) throws -> [[Float]] {
        var state = model.makeState(), rows: [[Float]] = [], start = 0
        for n in calls {
            rows += try model.forward(Array(tokens[start ..< start + n]), state: &state, mode: mode, positions: .all).rows
            start += n
        }
        return rows
    }

    @Test(arguments: cases)
    func matchesTheRWKVXPackage(_ name: String) throws {
        let run = try PackageRun(name)
        let model = try Self.model(name, memory: run.memory)
        for mode in ForwardMode.allCases {
            let difference = maxAbsDifference(run.logits, try Self.run(model, run.tokens, calls: run.calls, mode: mode))
            #expect(difference <= Self.tolerance, "\(name) \(mode): max |Δlogit| \(difference)")
        }
    }

    /// The fixtures keep fewer positions than a prefill has, and how the tokens are split into
    /// calls changes what is kept: another setting or one prefill gives other logits.
    @Test func theMemorySettingAndTheCallSplitMatter() throws {
        let run = try PackageRun("rwkvx-tiny-2x2")
        #expect(run.memory == .tokens(5))
        let other = try Self.model("rwkvx-tiny-2x2", memory: .tokens(4))
        #expect(maxAbsDifference(run.logits, try Self.run(other, run.tokens, calls: run.calls, mode: .sequence)) > 0.5)
        let same = try Self.model("rwkvx-tiny-2x2", memory: run.memory)
        #expect(maxAbsDifference(run.logits, try Self.run(same, run.tokens, calls: [run.tokens.count], mode: .sequence)) > 0.5)
        // A second prefill replaces the memory: the state keeps 5 rows per block, not 5 + 5.
        var state = same.makeState()
        _ = try same.forward(Array(run.tokens[0..<12]), state: &state, mode: .sequence, positions: .last)
        _ = try same.forward(Array(run.tokens[12..<18]), state: &state, mode: .sequence, positions: .last)
        #expect(state.attention.map(\.rows) == [5, 5])
        _ = try same.forward([run.tokens[18]], state: &state, mode: .rnn, positions: .last)
        #expect(state.attention.map(\.rows) == [5, 5])   // decode adds nothing
    }

    @Test func memorySettingsAsThePackageComputesThem() throws {
        #expect(AttentionMemory.tokens(5).kept(of: 3) == 3)
        #expect(AttentionMemory.tokens(5).kept(of: 12) == 5)
        #expect(AttentionMemory.ratio(0.3).kept(of: 16) == 4)   // int(4.8)
        #expect(AttentionMemory.ratio(0.01).kept(of: 16) == 1)  // at least one
        #expect(try AttentionMemory(parsing: "ratio=0.3") == .ratio(0.3))
        #expect(AttentionMemory.ratio(0.3).description == "ratio=0.3")
        for bad in ["tokens=0", "ratio=0", "ratio=1.5", "tokens", "keep=3", "tokens=-2"] {
            #expect(throws: RWKVError.self) { try AttentionMemory(parsing: bad) }
        }
    }

    /// A first call of one token is a decode over an empty memory: the attention adds nothing
    /// (torch's scaled_dot_product_attention over no keys gives zeros), and the logits are finite.
    @Test func decodeBeforeAnyPrefillAttendsToNothing() throws {
        let model = try Self.model("rwkvx-tiny-2x1", memory: .tokens(3))
        var state = model.makeState()
        let logits = try model.forward([65], state: &state, mode: .rnn, positions: .all)
        #expect(logits.values.allSatisfy { $0.isFinite })
        #expect(state.attention.map(\.rows) == [0])
    }

    @Test func blockOrderFollowsThePackage() throws {
        var c = SyntheticConfigs.v7
        c.layerCount = 4
        c.attentionBlocks = 1
        #expect(c.blockOrder == [.rwkv(0..<4), .attention(0)])
        c.attentionBlocks = 2
        #expect(c.blockOrder == [.rwkv(0..<2), .attention(0), .rwkv(2..<4), .attention(1)])
        c.attentionBlocks = 4
        #expect(c.blockOrder == [.rwkv(0..<1), .attention(0), .rwkv(1..<2), .attention(1), .rwkv(2..<3), .attention(2), .rwkv(3..<4), .attention(3)])
        // 4 blocks and 3 attention blocks: the package would run blocks 0-2 and skip block 3.
        c.attentionBlocks = 3
        #expect(throws: RWKVError("x", "RWKV-X with 4 RWKV-7 blocks and 3 attention blocks: the depth must be a multiple of the attention block count (the rwkv-x package would skip the last 1 blocks)")) {
            try c.validate(path: "x")
        }
    }

    /// A checkpoint the package would misread, or that is not RWKV-X, is refused by name.
    @Test func refusesDamagedCheckpoints() throws {
        let file = try ModelFile.open(fixture("models/rwkvx-tiny-2x2.pth"))
        func open(dropping drop: (String) -> Bool = { _ in false }, renaming rename: [String: String] = [:]) throws -> RWKVXModel {
            try RWKVXModel(try RWKVXCheckpoint(EditedSource(file, drop: drop, rename: rename)))
        }
        let path = file.path
        // RWKV-7 depth 1 with 2 attention blocks.
        #expect(throws: RWKVError(path, "RWKV-X with 1 RWKV-7 blocks and 2 attention blocks: the depth must be a multiple of the attention block count (the rwkv-x package would skip the last 1 blocks)")) {
            try open(dropping: { $0.hasPrefix("rwkv.blocks.1.") })
        }
        #expect(throws: RWKVError(path, "missing tensor moba.1.ffn.x_k")) { try open(dropping: { $0 == "moba.1.ffn.x_k" }) }
        #expect(throws: RWKVError(path, "RWKV-X attention blocks are numbered up to 2 but block 1 is missing")) {
            try open(renaming: Dictionary(uniqueKeysWithValues: RWKVXKey.allCases.map { ($0.name(block: 1), $0.name(block: 2)) }))
        }
        #expect(throws: RWKVError(path, "tensor moba.0.att.gate.weight is not part of an RWKV-X attention block")) {
            try open(renaming: ["rwkv.blocks.0.att.x_r": "moba.0.att.gate.weight"])
        }
        #expect(throws: RWKVError(path, "tensor extra.weight is not part of an RWKV-X checkpoint (rwkv.* and moba.N.* only)")) {
            try open(renaming: ["rwkv.blocks.0.att.x_r": "extra.weight"])
        }
    }
}

/// `base` with some tensors left out and some renamed (the data still comes from the old name).
final class EditedSource: TensorSource {
    let base: TensorSource
    let tensors: [TensorInfo]
    private let from: [String: String]
    var path: String { base.path }
    var formatName: String { base.formatName }

    init(_ base: TensorSource, drop: (String) -> Bool, rename: [String: String]) {
        self.base = base
        var from: [String: String] = [:], list: [TensorInfo] = []
        for t in base.tensors where !drop(t.name) {
            let name = rename[t.name] ?? t.name
            from[name] = t.name
            list.append(TensorInfo(name: name, dtype: t.dtype, shape: t.shape))
        }
        tensors = list
        self.from = from
    }

    func data(_ name: String) throws -> [UInt8] {
        guard let original = from[name] else { throw RWKVError(path, "no tensor named \(name)") }
        return try base.data(original)
    }
}
