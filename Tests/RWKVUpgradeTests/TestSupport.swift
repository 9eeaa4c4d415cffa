import Foundation
import RWKVFormats
import RWKVModel
@testable import RWKVUpgrade

/// The repository's fixtures/ folder.
let upgradeFixtures = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("fixtures").path

/// A fresh directory, removed when released.
final class UpgradeScratch {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "rwkv-upgrade-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String) -> String { path + "/" + name }
}

/// A small random RWKV-6 checkpoint with every official tensor and shape, written as f32
/// safetensors: 2 layers, n_embd 64, head size 32 (2 heads), vocabulary 32, FFN 3.5·C = 224,
/// token-shift rank 8, decay rank 16. Values have trained-like magnitudes (LayerNorm weights
/// around 1, lerps in [0, 1], decays in RWKV-6's range), so every recipe step does real work.
enum TinyRWKV6 {
    static let config = RWKVConfig(version: .v6, layerCount: 2, embeddingSize: 64, headSize: 32, vocabSize: 32, ffnSize: 224,
                                   decayRank: 16, tokenShiftRank: 8)

    static func values(_ name: String, _ shape: [Int]) -> [Float] {
        var random = SeededRandom(seed: 99, stream: name)
        let count = shape.reduce(1, *)
        let leaf = name.split(separator: ".").last.map(String.init) ?? name
        func gaussian(_ std: Double, mean: Double = 0) -> [Float] { (0..<count).map { _ in Float(mean + std * random.gaussian()) } }
        if name.hasSuffix("ln1.weight") || name.hasSuffix("ln2.weight") || name.hasSuffix("ln0.weight")
            || name.hasSuffix("ln_out.weight") || name.hasSuffix("ln_x.weight") {
            return (0..<count).map { _ in Float(random.uniform(0.6, 1.4)) }
        }
        if name.hasSuffix(".bias") { return gaussian(0.1) }
        if leaf.hasPrefix("time_maa_") && shape.count == 3 && shape[0] == 1 { return (0..<count).map { _ in Float(random.uniform(0, 1)) } }
        if leaf == "time_decay" { return (0..<count).map { _ in Float(random.uniform(-6, -0.6)) } }
        if leaf == "time_faaaa" { return gaussian(0.3, mean: 0.5) }
        if leaf == "time_maa_w1" || leaf == "time_decay_w1" { return gaussian(0.1) }
        if leaf == "time_maa_w2" || leaf == "time_decay_w2" { return gaussian(0.15) }
        return gaussian(1 / Double(shape.last ?? 1).squareRoot())
    }

    /// Writes the checkpoint and returns its path.
    static func write(in dir: UpgradeScratch, name: String = "tiny-v6.safetensors") throws -> String {
        let path = dir.file(name)
        let infos = config.expectedShapes.map { TensorInfo(name: $0.name, dtype: .f32, shape: $0.shape) }
        try SafetensorsWriter.write(to: path, tensors: infos) { info in
            var overflow = 0
            return try ElementCodec.encode(values(info.name, info.shape), as: .f32, overflowCount: &overflow)
        }
        return path
    }
}

/// Options that keep the preserve fits quick in a debug build.
func quickOptions(_ recipe: UpgradeRecipeName, seed: UInt64 = 0) -> UpgradeOptions {
    var o = UpgradeOptions()
    o.recipe = recipe
    o.seed = seed
    o.fitTokens = 128
    return o
}

func readAll(_ path: String) throws -> [String: (shape: [Int], values: [Float])] {
    let source = try ModelFile.open(path)
    var out: [String: (shape: [Int], values: [Float])] = [:]
    for t in source.tensors { out[t.name] = (t.shape, try source.floats(t.name)) }
    return out
}

func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}
