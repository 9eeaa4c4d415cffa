import Foundation
import Testing
import RWKVFormats
import RWKVModel
@testable import RWKVVerify
import RWKVCommandLine

private let fixturesDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("fixtures").path
private func fixture(_ relative: String) -> String { fixturesDirectory + "/" + relative }

private let v7Model = fixture("models/rwkv7-tiny.safetensors")
private let v6Model = fixture("models/rwkv6-tiny.safetensors")
private let v7Expected = fixture("expected/rwkv7-tiny-bf16.logits.safetensors")
private let v6Expected = fixture("expected/rwkv6-tiny-bf16.logits.safetensors")

/// The model in `path` with one canonical tensor changed on its way to the forward pass: the
/// kind of mistake a converter or an upgrade recipe makes.
private func perturbed(_ path: String, _ change: @escaping (String, [Float]) -> [Float]) throws -> RWKVLanguageModel {
    let source = try ModelFile.open(path)
    let config = try RWKVConfig.detect(source)
    let loader = try WeightLoader(path: path, config: config, storedType: { source.info($0)?.dtype }) { name in
        change(name, try source.floats(name))
    }
    return try RWKVModelLoader.load(loader)
}

/// A (rows, cols) matrix's values laid out as if it had been stored transposed.
private func transposed(_ v: [Float], rows: Int, cols: Int) -> [Float] {
    var out = v
    for i in 0..<rows { for j in 0..<cols { out[j * rows + i] = v[i * cols + j] } }
    return out
}

/// One realistic mistake, applied to the canonical tensors.
struct Perturbation: CustomTestStringConvertible, Sendable {
    let name: String
    let model: String
    let expected: String
    let change: @Sendable (String, [Float]) -> [Float]
    var testDescription: String { name }

    static let all: [Perturbation] = [
        Perturbation(name: "RWKV-7 w1 LoRA stored transposed", model: v7Model, expected: v7Expected) { name, v in
            name == "blocks.1.att.w1" ? transposed(v, rows: 128, cols: 32) : v
        },
        Perturbation(name: "RWKV-7 x_r and x_k lerps swapped", model: v7Model, expected: v7Expected) { name, v in
            guard name.hasPrefix("blocks.0.att.x_") else { return v }
            let other = name.hasSuffix("x_r") ? "x_k" : name.hasSuffix("x_k") ? "x_r" : nil
            guard let other else { return v }
            return (try? ModelFile.open(v7Model).floats("blocks.0.att." + other)) ?? v
        },
        Perturbation(name: "RWKV-6 time_decay_w1 stored transposed", model: v6Model, expected: v6Expected) { name, v in
            name == "blocks.1.att.time_decay_w1" ? transposed(v, rows: 128, cols: 64) : v
        },
        Perturbation(name: "RWKV-6 time_maa_k and time_maa_v swapped", model: v6Model, expected: v6Expected) { name, v in
            let other = name == "blocks.1.att.time_maa_k" ? "time_maa_v" : name == "blocks.1.att.time_maa_v" ? "time_maa_k" : nil
            guard let other else { return v }
            return (try? ModelFile.open(v6Model).floats("blocks.1.att." + other)) ?? v
        },
    ]
}

@Suite struct VerificationTests {
    @Test(arguments: [(v7Model, v7Expected), (v6Model, v6Expected)])
    func fixturesVerifyInBothModes(_ model: String, _ expected: String) throws {
        let report = try Verifier.verify(RWKVModelLoader.load(path: model), fixture: LogitFixture(path: expected),
                                         modes: [.rnn, .sequence])
        #expect(report.passed)
        #expect(report.checks.map(\.name) == ["rnn vs reference", "sequence vs reference", "rnn vs sequence"])
        for check in report.checks {
            #expect(check.summary.maxAbsDelta <= Tolerance.fp32)
            #expect(check.summary.top1Agreement == 1 && check.summary.meanTop5Overlap == 5)
            #expect(check.positions.count == 24)
        }
        #expect(report.text.hasSuffix("result: PASS"))
    }

    /// Each mistake moves the logits far outside the tolerance (measured max |Δlogit| in
    /// parentheses in docs/verify.md; all ≥ 1e-2, a hundred times the tolerance), so verification
    /// fails loudly in both modes.
    @Test(arguments: Perturbation.all)
    func aPerturbedTensorFailsVerification(_ p: Perturbation) throws {
        let model = try perturbed(p.model, p.change)
        let report = try Verifier.verify(model, fixture: LogitFixture(path: p.expected), modes: [.rnn, .sequence])
        #expect(!report.passed)
        #expect(report.checks[0].summary.maxAbsDelta > 100 * Tolerance.fp32)
        #expect(report.checks[1].summary.maxAbsDelta > 100 * Tolerance.fp32)
        #expect(report.checks[2].passed)   // the modes still agree with each other: the mistake is in the weights
        #expect(report.text.contains("result: FAIL (rnn vs reference, sequence vs reference outside tolerance)"))
    }

    @Test func comparesTwoModelsOfDifferentVersions() throws {
        let v7 = try RWKVModelLoader.load(path: v7Model), v6 = try RWKVModelLoader.load(path: v6Model)
        let tokens = TokenList.random(count: 16, vocab: 256, seed: 3)
        let same = try Verifier.compare(v7, against: RWKVModelLoader.load(path: v7Model), tokens: tokens, modes: [.rnn, .sequence])
        #expect(same.passed && same.checks.count == 4)
        #expect(same.checks.allSatisfy { $0.summary.maxAbsDelta <= Tolerance.fp32 })
        let different = try Verifier.compare(v7, against: v6, tokens: tokens, modes: [.sequence])
        #expect(!different.passed && different.checks.count == 1)
        #expect(different.referenceModel?.version == 6)
    }

    @Test func refusesMismatchedVocabularies() throws {
        let dir = NSTemporaryDirectory() + "rwkv-verify-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/wide.logits.safetensors"
        try writeFixture(path, tokens: [1, 2], vocab: 300)
        #expect(throws: RWKVError(path, "logits have 300 entries per position but the model's vocabulary has 256")) {
            try Verifier.verify(RWKVModelLoader.load(path: v7Model), fixture: LogitFixture(path: path), modes: [.rnn])
        }
        let outside = dir + "/outside.logits.safetensors"
        try writeFixture(outside, tokens: [1, 256], vocab: 256)
        #expect(throws: RWKVError(outside, "token id 256 is outside the model's vocabulary (0..<256)")) {
            try Verifier.verify(RWKVModelLoader.load(path: v7Model), fixture: LogitFixture(path: outside), modes: [.rnn])
        }
    }

    /// A model that produces NaN fails (NaN is never "within tolerance") and the JSON report still encodes.
    @Test func nanLogitsFailAndStillReport() throws {
        let model = try perturbed(v7Model) { name, v in name == "ln_out.bias" ? v.map { _ in .nan } : v }
        let report = try Verifier.verify(model, fixture: LogitFixture(path: v7Expected), modes: [.rnn])
        #expect(!report.passed && report.checks[0].summary.maxAbsDelta.isNaN)
        #expect(try RWKVCommandLine.json(report).contains("\"maxAbsDelta\" : \"nan\""))
    }
}

@Suite struct LogitFixtureTests {
    @Test func readsTheOfficialFixture() throws {
        let f = try LogitFixture(path: v7Expected)
        #expect(f.tokens.count == 24 && f.logits.count == 24 && f.vocabSize == 256)
        #expect(f.tokens.prefix(3) == [84, 104, 101])
    }

    @Test func refusesMalformedFixtures() throws {
        let dir = NSTemporaryDirectory() + "rwkv-fixture-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        let noLogits = dir + "/a.safetensors"
        try SafetensorsWriter.write(to: noLogits, tensors: [TensorInfo(name: "tokens", dtype: .i32, shape: [2])]) { _ in [UInt8](repeating: 0, count: 8) }
        #expect(throws: RWKVError(noLogits, "not a logits fixture: needs tensors `tokens` [T] and `logits` [T, V]")) { try LogitFixture(path: noLogits) }

        let shortLogits = dir + "/b.safetensors"
        try SafetensorsWriter.write(to: shortLogits, tensors: [TensorInfo(name: "tokens", dtype: .i32, shape: [2]),
                                                              TensorInfo(name: "logits", dtype: .f32, shape: [3, 4])]) { [UInt8](repeating: 0, count: $0.byteCount) }
        #expect(throws: RWKVError(shortLogits, "`logits` must be f32 of shape [2, V], found f32 [3, 4]")) { try LogitFixture(path: shortLogits) }

        let floatTokens = dir + "/c.safetensors"
        try SafetensorsWriter.write(to: floatTokens, tensors: [TensorInfo(name: "tokens", dtype: .f32, shape: [2]),
                                                              TensorInfo(name: "logits", dtype: .f32, shape: [2, 4])]) { [UInt8](repeating: 0, count: $0.byteCount) }
        #expect(throws: RWKVError(floatTokens, "`tokens` must be int32 or int64 of shape [T], found f32 [2]")) { try LogitFixture(path: floatTokens) }

        let negative = dir + "/d.safetensors"
        try SafetensorsWriter.write(to: negative, tensors: [TensorInfo(name: "tokens", dtype: .i64, shape: [1]),
                                                           TensorInfo(name: "logits", dtype: .f32, shape: [1, 4])]) {
            $0.name == "tokens" ? [UInt8](repeating: 0xff, count: 8) : [UInt8](repeating: 0, count: 16)
        }
        #expect(throws: RWKVError(negative, "negative token id -1")) { try LogitFixture(path: negative) }
    }
}

@Suite struct TokenListTests {
    @Test func parsesCommaSeparatedIds() throws {
        #expect(try TokenList.parse("1,2, 3") == [1, 2, 3])
        #expect(throws: RWKVError.self) { try TokenList.parse("1,,2") }
        #expect(throws: RWKVError.self) { try TokenList.parse("1,-2") }
        #expect(throws: RWKVError.self) { try TokenList.parse("a") }
    }

    @Test func randomTokensAreReproducibleAndInRange() {
        let a = TokenList.random(count: 1000, vocab: 65536, seed: 7)
        #expect(a == TokenList.random(count: 1000, vocab: 65536, seed: 7))
        #expect(a != TokenList.random(count: 1000, vocab: 65536, seed: 8))
        #expect(a.allSatisfy { (0..<65536).contains($0) } && Set(a).count > 900)
    }
}

private func writeFixture(_ path: String, tokens: [Int32], vocab: Int) throws {
    let infos = [TensorInfo(name: "tokens", dtype: .i32, shape: [tokens.count]),
                 TensorInfo(name: "logits", dtype: .f32, shape: [tokens.count, vocab])]
    try SafetensorsWriter.write(to: path, tensors: infos) { info in
        info.name == "tokens" ? tokens.withUnsafeBytes { Array($0) } : [UInt8](repeating: 0, count: info.byteCount)
    }
}
