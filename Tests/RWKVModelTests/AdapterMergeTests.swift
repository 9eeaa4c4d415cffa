import Testing
import RWKVFormats
@testable import RWKVModel

/// RWKV-PEFT adapters (fixtures/make_adapters.py, torch) merged by us give the logits the
/// official package computes on the weights torch merged (fp32). Tolerance 1e-4 as in
/// OfficialAgreementTests: the merge itself adds only f32 summation-order differences (~1e-7
/// per weight), far below what a wrong scale, order or transpose does (checked below).
@Suite struct AdapterMergeTests {
    static let base = "models/rwkv7-tiny-bf16.pth"

    func logits(_ adapters: [Adapter], tokens: [Int]) throws -> [[Float]] {
        let merged = try MergedSource(base: try ModelFile.open(fixture(Self.base)), adapters: adapters)
        return try RWKVModelLoader.load(WeightLoader(source: merged)).logits(tokens, mode: .sequence).rows
    }

    func lora(_ name: String, alpha: Float) throws -> Adapter {
        Adapter(source: try ModelFile.open(fixture("adapters/\(name)")), kind: .lora(alpha: alpha))
    }

    @Test func twoLoRAAdaptersInOrderMatchTheOfficialLogits() throws {
        let reference = try OfficialCase(model: "", expected: "expected/rwkv7-tiny-lora.logits.safetensors").reference()
        let merged = try logits([try lora("rwkv7-tiny-lora-a.pth", alpha: 16), try lora("rwkv7-tiny-lora-b.pth", alpha: 32)],
                                tokens: reference.tokens)
        #expect(maxAbsDifference(reference.logits, merged) <= 1e-4)
        // The adapters matter, and so does each one's alpha.
        let base = try RWKVModelLoader.load(path: fixture(Self.base)).logits(reference.tokens, mode: .sequence).rows
        #expect(maxAbsDifference(reference.logits, base) > 0.1)
        let wrongAlpha = try logits([try lora("rwkv7-tiny-lora-a.pth", alpha: 16), try lora("rwkv7-tiny-lora-b.pth", alpha: 16)],
                                    tokens: reference.tokens)
        #expect(maxAbsDifference(reference.logits, wrongAlpha) > 1e-2)
    }

    @Test func pissaMatchesTheOfficialLogits() throws {
        let reference = try OfficialCase(model: "", expected: "expected/rwkv7-tiny-pissa.logits.safetensors").reference()
        let adapter = Adapter(source: try ModelFile.open(fixture("adapters/rwkv7-tiny-pissa.pth")),
                              kind: .pissa(initial: try ModelFile.open(fixture("adapters/rwkv7-tiny-pissa-init.pth"))))
        #expect(maxAbsDifference(reference.logits, try logits([adapter], tokens: reference.tokens)) <= 1e-4)
    }

    @Test func anAdapterThatDoesNotFitIsRefusedBeforeReading() throws {
        let v6 = try ModelFile.open(fixture("models/rwkv6-tiny-bf16.pth"))
        let adapter = try lora("rwkv7-tiny-lora-a.pth", alpha: 16)
        let noNorm = try ModelFile.open(fixture(Self.base))
        #expect(throws: RWKVError(adapter.source.path, "adapter tensor ln_out.weight replaces nothing: the base has no tensor of that name")) {
            _ = try MergedSource(base: ShapeList(path: "base", tensors: noNorm.tensors.filter { $0.name != "ln_out.weight" }), adapters: [adapter])
        }
        do {
            _ = try MergedSource(base: v6, adapters: [adapter])
            Issue.record("an RWKV-7 adapter merged into an RWKV-6 model")
        } catch let e as RWKVError {
            #expect(e.message.contains("do not fit blocks.0.ffn.key.weight [448, 128]"), "\(e.message)")
        }
    }

    @Test func pissaNeedsItsInitialAdapter() throws {
        let wrongInitial = Adapter(source: try ModelFile.open(fixture("adapters/rwkv7-tiny-pissa.pth")),
                                   kind: .pissa(initial: try ModelFile.open(fixture("adapters/rwkv7-tiny-lora-b.pth"))))
        #expect(throws: RWKVError.self) { _ = try MergedSource(base: try ModelFile.open(fixture(Self.base)), adapters: [wrongInitial]) }
    }

    @Test func commandLineCountsAreChecked() {
        #expect(throws: RWKVError(nil, "--lora-alpha is given 2 times for 3 adapters: give it once, or once per adapter")) {
            _ = try AdapterList(paths: ["a", "b", "c"], alphas: [1, 2]).open()
        }
    }
}
