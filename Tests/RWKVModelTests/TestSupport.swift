import Foundation
import Testing
import RWKVFormats
@testable import RWKVModel

/// The repository's fixtures/ folder.
let fixturesDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("fixtures").path

func fixture(_ relative: String) -> String { fixturesDirectory + "/" + relative }

/// A fixture model and the logits the official `rwkv` package (cpu fp32) computed on the same
/// weights, RNN mode from the zero state.
struct OfficialCase: CustomTestStringConvertible, Sendable {
    let model: String
    let expected: String
    var testDescription: String { "\(model) vs \(expected)" }

    /// tokens [T] and logits [T][V] of the expected file.
    func reference() throws -> (tokens: [Int], logits: [[Float]]) {
        let file = try SafetensorsReader(path: fixture(expected))
        let tokens = try file.floats("tokens").map { Int($0) }
        let flat = try file.floats("logits")
        let V = flat.count / tokens.count
        return (tokens, (0..<tokens.count).map { Array(flat[$0 * V ..< ($0 + 1) * V]) })
    }

    func load() throws -> RWKVLanguageModel { try RWKVModelLoader.load(path: fixture(model)) }

    /// The bf16 .safetensors copies hold exactly the -bf16.pth values, so they share its logits.
    static let safetensors = [
        OfficialCase(model: "models/rwkv7-tiny.safetensors", expected: "expected/rwkv7-tiny-bf16.logits.safetensors"),
        OfficialCase(model: "models/rwkv6-tiny.safetensors", expected: "expected/rwkv6-tiny-bf16.logits.safetensors"),
    ]
    /// Hugging Face folders (fixtures/make_hf.py) of the -bf16.pth values, so they share its logits.
    static let huggingFace = [
        OfficialCase(model: "hf/rwkv7-tiny", expected: "expected/rwkv7-tiny-bf16.logits.safetensors"),
        OfficialCase(model: "hf/rwkv7-tiny-xx-sharded", expected: "expected/rwkv7-tiny-bf16.logits.safetensors"),
        OfficialCase(model: "hf/rwkv6-tiny-bin", expected: "expected/rwkv6-tiny-bf16.logits.safetensors"),
        OfficialCase(model: "hf/rwkv6-tiny-script-config", expected: "expected/rwkv6-tiny-bf16.logits.safetensors"),
        OfficialCase(model: "hf/rwkv5.2-tiny-bin", expected: "expected/rwkv5.2-tiny-bf16.logits.safetensors"),
        OfficialCase(model: "hf/rwkv5.2-tiny-sharded", expected: "expected/rwkv5.2-tiny-bf16.logits.safetensors"),
    ]
    /// The models trained on real text (scripts/train, docs/training.md), on 128 held-out bytes.
    static let trained = ["rwkv7", "rwkv6"].map {
        OfficialCase(model: "models/\($0)-trained-bf16.pth", expected: "expected/\($0)-trained-bf16.heldout.logits.safetensors")
    }
    static let pth = ["rwkv7", "rwkv6"].flatMap { arch in
        ["fp32", "bf16", "fp16"].map { OfficialCase(model: "models/\(arch)-tiny-\($0).pth", expected: "expected/\(arch)-tiny-\($0).logits.safetensors") }
            + [OfficialCase(model: "models/\(arch)-tiny-fp32.pth", expected: "expected/\(arch)-tiny-fp32.heldout.logits.safetensors")]
    }
}

/// True once `ModelFile.open` reads torch zip checkpoints (the .pth reader is merged); until then
/// the .pth fixture tests are skipped. Any other failure to open counts as readable, so a broken
/// reader makes those tests fail rather than vanish.
let pthReaderAvailable: Bool = {
    do { _ = try ModelFile.open(fixture("models/rwkv7-tiny-fp32.pth")); return true } catch let e as RWKVError {
        return !e.message.contains("not available yet")
    } catch { return true }
}()

func maxAbsDifference(_ a: [[Float]], _ b: [[Float]]) -> Float {
    precondition(a.count == b.count)
    var worst: Float = 0
    for (x, y) in zip(a, b) {
        precondition(x.count == y.count)
        for (p, q) in zip(x, y) {
            let d = abs(p - q)
            if d.isNaN { return .nan }
            worst = max(worst, d)
        }
    }
    return worst
}

/// A checkpoint with every tensor an official one of `config` holds, filled with deterministic
/// pseudo-random values of trained-like magnitudes, in memory (f32).
final class SyntheticCheckpoint: TensorSource {
    let path = "synthetic"
    let formatName = "in-memory"
    let tensors: [TensorInfo]
    private var values: [String: [Float]] = [:]

    init(_ config: RWKVConfig, seed: UInt64 = 42) {
        var rng = seed
        func uniform() -> Float {   // SplitMix64 → [0, 1)
            rng &+= 0x9E37_79B9_7F4A_7C15
            var z = rng
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Float((z ^ (z >> 31)) >> 40) / Float(1 << 24)
        }
        func around(_ centre: Float, _ spread: Float) -> Float { centre + spread * (2 * uniform() - 1) }
        tensors = config.expectedShapes.map { TensorInfo(name: $0.name, dtype: .f32, shape: $0.shape) }
        for t in tensors {
            let n = t.elementCount, name = t.name
            let fanIn = Float(t.shape.count == 2 ? t.shape[1] : config.embeddingSize)
            let v: [Float]
            switch true {
            case name.hasSuffix("ln0.weight") || name.hasSuffix("ln1.weight") || name.hasSuffix("ln2.weight")
                || name.hasSuffix("ln_x.weight") || name == "ln_out.weight":
                v = (0..<n).map { _ in around(1, 0.4) }
            case name.hasSuffix(".bias"):
                v = (0..<n).map { _ in around(0, 0.1) }
            case name.contains(".x_") || name.contains("time_maa_") && t.shape == [1, 1, config.embeddingSize]:
                v = (0..<n).map { _ in uniform() }
            case name.hasSuffix("att.w0") || name.hasSuffix("time_decay"):
                v = (0..<n).map { _ in around(-3, 2.5) }
            case name.hasSuffix("att.a0") || name.hasSuffix("att.v0"):
                v = (0..<n).map { _ in around(0, 0.5) }
            case name.hasSuffix("k_k"):
                v = (0..<n).map { _ in around(0.7, 0.2) }
            case name.hasSuffix("k_a"):
                v = (0..<n).map { _ in around(1, 0.2) }
            case name.hasSuffix("r_k") || name.hasSuffix("time_faaaa"):
                v = (0..<n).map { _ in around(0, 0.5) }
            case name == "emb.weight":
                v = (0..<n).map { _ in around(0, 1) }
            default:   // matrices and LoRA factors: ~ 1/sqrt(fan-in)
                let s = (3 / fanIn).squareRoot()
                v = (0..<n).map { _ in around(0, s) }
            }
            values[name] = v
        }
    }

    func data(_ name: String) throws -> [UInt8] {
        guard let v = values[name] else { throw RWKVError(path, "no tensor named \(name)") }
        return v.withUnsafeBytes { Array($0) }
    }
}

enum SyntheticConfigs {
    static let v7 = RWKVConfig(version: .v7, layerCount: 3, embeddingSize: 64, headSize: 16, vocabSize: 97, ffnSize: 256,
                               decayRank: 8, iclrRank: 8, valueResidualRank: 4, gateRank: 12)
    static let v6 = RWKVConfig(version: .v6, layerCount: 3, embeddingSize: 64, headSize: 16, vocabSize: 97, ffnSize: 224,
                               decayRank: 16, tokenShiftRank: 8)
}
