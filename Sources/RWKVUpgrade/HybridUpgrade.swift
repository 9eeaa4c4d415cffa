import Foundation
import RWKVFormats
import RWKVModel

/// `rwkv-upgrade v7-to-x`: an RWKV-X checkpoint from a trained RWKV-7 — its tensors under `rwkv.`
/// bit for bit, and attention blocks `moba.{i}.` added where the RWKV-X package runs them
/// (`RWKVConfig.blockOrder`). docs/upgrade.md, "From RWKV-7 to RWKV-X", explains the recipes.
public enum HybridUpgrade {
    public enum Recipe: String, Codable, Sendable, CaseIterable {
        /// The new blocks add exactly nothing at first (zero attention output and FFN value
        /// projections), so the logits are the RWKV-7's; q/k/v and the FFN key come from the
        /// RWKV-7 block before, as the paper's init does, so attention starts with real features.
        case preserve
        /// What the published `init_moba_from_rwkv` does (howard-hou/RWKV-X `pretrain/src/model.py`):
        /// every projection copied, output projections included, so the model changes.
        case rwkvX = "rwkv-x"
    }

    /// The attention blocks the published configurations add for a depth: RWKV-X 0.2B is the
    /// 12-layer RWKV-7 0.1B with 1 (`training-run_prolong_0.2B.sh`), 3.6B the 32-layer 2.9B with 8
    /// (`training-run_prolong_3.6B.sh`). No other depth was published: one block, as the 0.2B.
    public static func publishedBlocks(depth: Int) -> Int { depth == 32 ? 8 : 1 }

    public struct Report: Codable, Sendable {
        public let input: String
        public let output: String
        public let recipe: Recipe
        public let target: RWKVConfig
        /// The block order of the result ("RWKV-7 0-5", "attention 0", ...).
        public let blockOrder: [String]
        /// Per attention block, the RWKV-7 block its projections were copied from.
        public let copiedFrom: [Int]
        /// Whether the FFN key was copied (an RWKV-7 FFN of width 4·C) or drawn as the trainer does.
        public let ffnKeyCopied: Bool
        public let seed: UInt64
        public let dtype: String
        public let tensors: Int
        public let bytesWritten: Int
        public let seconds: Double

        public var summary: String {
            "upgraded \(Printable.escaped(input, limit: 1024)) (RWKV-7, \(target.layerCount)×\(target.embeddingSize)) -> "
                + "\(Printable.escaped(output, limit: 1024)) (RWKV-X, \(target.attentionBlocks) attention block\(target.attentionBlocks == 1 ? "" : "s"))\n"
                + "blocks: \(blockOrder.joined(separator: ", "))\n"
                + "recipe \(recipe.rawValue): " + (recipe == .preserve
                    ? "the attention blocks add nothing until trained (zero output projections); the logits are the RWKV-7's"
                    : "the published init (all projections copied); the logits change")
                + "\nq/k/v\(ffnKeyCopied ? " and FFN key" : "") copied from RWKV-7 block\(copiedFrom.count == 1 ? "" : "s") "
                + copiedFrom.map(String.init).joined(separator: ", ")
                + "; RWKV-7 tensors kept bit for bit, new tensors \(dtype); \(tensors) tensors, \(formatBytes(bytesWritten)), "
                + String(format: "%.1f s", seconds)
        }
    }

    /// - Parameter blocks: attention blocks (nil: `publishedBlocks`); 1, or a divisor of the depth.
    public static func run(input: String, output: String, recipe: Recipe = .preserve, blocks: Int? = nil, seed: UInt64 = 0,
                           dtype: DType = .bf16, sync: Bool = false, progress: ((Int, Int, String) -> Void)? = nil) throws -> Report {
        guard dtype == .bf16 || dtype == .f32 else { throw RWKVError(nil, "output dtype must be bf16 or fp32") }
        let format = try Upgrade.OutputFormat(path: output)
        let started = Date()
        let source = try Checkpoint.open(input)
        let config = try RWKVConfig.detect(source)
        guard config.version == .v7, config.attentionBlocks == 0 else {
            throw RWKVError(input, config.attentionBlocks > 0 ? "is already an RWKV-X checkpoint" : "is not an RWKV-7 checkpoint (v7-to-x reads RWKV-7)")
        }
        var target = config
        target.attentionBlocks = blocks ?? publishedBlocks(depth: config.layerCount)
        guard target.attentionBlocks >= 1 else { throw RWKVError(nil, "--blocks must be at least 1") }
        try target.validate(path: input)
        let c = config.embeddingSize, step = config.layerCount / target.attentionBlocks
        let donors = (0..<target.attentionBlocks).map { ($0 + 1) * step - 1 }
        let ffnKeyCopied = config.ffnSize == RWKVXKey.ffnMultiple * c
        if recipe == .rwkvX, !ffnKeyCopied {
            throw RWKVError(input, "the published init copies the RWKV-7's FFN, which needs FFN width \(RWKVXKey.ffnMultiple * c), not \(config.ffnSize); use --recipe preserve")
        }

        // The RWKV-7 as stored, block 0's unused v0/v1/v2 as zeros when a folder lacks them (the
        // trainer's state dict has them); then the attention blocks.
        var infos: [TensorInfo] = [], made: [String: () throws -> [UInt8]] = [:]
        for (name, row, _) in config.checkpointTensors {
            let out = RWKVXKey.rwkvPrefix + name
            if let stored = source.info(name) {
                infos.append(TensorInfo(name: out, dtype: stored.dtype, shape: stored.shape))
                made[out] = { try Upgrade.checkedCopy(source, name) }
            } else {
                let info = TensorInfo(name: out, dtype: dtype, shape: config.shape(row.shape))
                infos.append(info)
                made[out] = { try Upgrade.encode([Float](repeating: 0, count: info.elementCount), dtype) }
            }
        }
        for (i, donor) in donors.enumerated() {
            for key in RWKVXKey.allCases {
                let info = TensorInfo(name: key.name(block: i), dtype: dtype, shape: key.shape(embedding: c))
                infos.append(info)
                made[info.name] = {
                    try Upgrade.encode(try values(key, block: i, donor: donor, recipe: recipe, config: config, blocks: target.attentionBlocks,
                                          ffnKeyCopied: ffnKeyCopied, seed: seed, source: source), dtype)
                }
            }
        }
        var done = 0
        let size = try Upgrade.write(format, to: output, tensors: infos, input: input, sync: sync, data: { info in
            progress?(done, infos.count, info.name)
            done += 1
            return try made[info.name]!()
        }, note: "v7-to-x recipe=\(recipe.rawValue) blocks=\(target.attentionBlocks) seed=\(seed)")
        let order = target.blockOrder.map(\.label)
        return Report(input: input, output: output, recipe: recipe, target: target, blockOrder: order, copiedFrom: donors,
                      ffnKeyCopied: ffnKeyCopied, seed: seed, dtype: Upgrade.dtypeName(dtype), tensors: infos.count,
                      bytesWritten: size, seconds: Date().timeIntervalSince(started))
    }

    /// Attention block `i`'s tensor `key` (copied from RWKV-7 block `donor` where the recipe copies).
    static func values(_ key: RWKVXKey, block i: Int, donor: Int, recipe: Recipe, config: RWKVConfig, blocks: Int,
                       ffnKeyCopied: Bool, seed: UInt64, source: TensorSource) throws -> [Float] {
        let c = config.embeddingSize, count = key.shape(embedding: c).reduce(1, *)
        func copied(_ k: RWKV7Key) throws -> [Float] {
            let name = k.name(layer: donor)
            return try NonFiniteCount.checked(source.floats(name), path: source.path, tensor: name, advice: WeightLoader.nonFiniteAdvice)
        }
        switch key {
        case .ln1Weight, .ln2Weight: return [Float](repeating: 1, count: count)   // a fresh LayerNorm
        case .ln1Bias, .ln2Bias: return [Float](repeating: 0, count: count)
        case .receptance: return try copied(.receptance)
        case .key: return try copied(.key)
        case .value: return try copied(.value)
        case .output: return recipe == .preserve ? [Float](repeating: 0, count: count) : try copied(.output)
        case .ffnValue: return recipe == .preserve ? [Float](repeating: 0, count: count) : try copied(.ffnValue)
        case .ffnKey:
            if ffnKeyCopied { return try copied(.ffnKey) }
            // The trainer's RWKV_CMix_x070 init: uniform ±0.5/√C.
            var random = SeededRandom(seed: seed, stream: key.name(block: i))
            return random.uniformArray(count, bound: 0.5 / Double(c).squareRoot())
        case .ffnXK:
            // The trainer's init of attention block i's FFN (RWKV_CMix_x070 with layer_id i and the
            // RWKV-7's n_layer): 1 − (c/C)^((1 − i/L)⁴).
            let exponent = pow(1 - Double(i) / Double(config.layerCount), 4)
            return (0..<c).map { Float(1 - pow(Double($0) / Double(c), exponent)) }
        }
    }
}
