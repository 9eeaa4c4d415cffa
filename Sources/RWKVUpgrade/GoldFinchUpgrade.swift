import Foundation
import RWKVFormats
import RWKVModel

/// `rwkv-upgrade v6-to-goldfinch`: a GoldFinch checkpoint from a trained Finch (RWKV-6), as the
/// GoldFinch repository's upgrade configuration (`configs/goldfinch_upgrade.yaml`: tmix x060,
/// tmix2 gold, inv_other_layer_ratio 6, load_partial) builds it: the Finch's blocks stay plain
/// Finch, bit for bit, and GOLD blocks and the key cache projections are added on top.
/// docs/upgrade.md, "From Finch to GoldFinch", explains the recipes.
public enum GoldFinchUpgrade {
    public enum Recipe: String, Codable, Sendable, CaseIterable {
        /// The GOLD blocks add nothing at first (zero attention output and FFN value projections), so
        /// the logits are the Finch's; everything else as `goldfinch`.
        case preserve
        /// What `load_partial` gives: the repository's constructor init for every new tensor, torch's
        /// default (nn.Linear's U(±1/√fan-in)) for the matrices a literal run leaves uninitialised.
        case goldfinch
    }

    /// The repository's fixed sizes (`tmix/tmix_gold.py`, `src/model.py`, `configs.py`): token-shift
    /// LoRA rank 32 per target, key cache compression C/16.
    public static let shiftRank = 32
    public static let compression = 16.0
    /// The GOLD key and value LoRAs' rank (`tmix_gold.py`: max(C // 16, 64)).
    public static func keyValueRank(embedding c: Int) -> Int { max(c / 16, 64) }
    /// `goldfinch_upgrade.yaml`'s inv_other_layer_ratio.
    public static let upgradeRatio = 6.0
    /// The init range of the repository's LoRA second factors (U(±0.01)).
    public static let secondFactorBound = 0.01

    /// The repository's split (`get_second_submodel_layer_id`): int(L·(r − 1)/r), in floats as Python computes it.
    public static func split(layers: Int, ratio: Double) -> Int { Int(Double(layers) * (ratio - 1) / ratio) }

    /// The smallest depth whose split puts exactly `finchLayers` Finch blocks below the GOLD ones.
    public static func depth(finchLayers: Int, ratio: Double) -> Int? {
        (finchLayers + 1 ... max(finchLayers + 1, 64 * (finchLayers + 1))).first { split(layers: $0, ratio: ratio) == finchLayers }
    }

    public struct Report: Codable, Sendable {
        public let input: String
        public let output: String
        public let recipe: Recipe
        public let ratio: Double
        public let target: GoldFinchConfig
        public let seed: UInt64
        public let dtype: String
        public let tensors: Int
        public let bytesWritten: Int
        public let seconds: Double

        public var summary: String {
            let gold = target.layers.count - target.split
            return "upgraded \(Printable.escaped(input, limit: 1024)) (Finch, \(target.split)×\(target.embeddingSize)) -> "
                + "\(Printable.escaped(output, limit: 1024)) (GoldFinch, \(target.layers.count) layers: \(target.split) Finch + \(gold) GOLD, ratio \(ratio))\n"
                + "recipe \(recipe.rawValue): " + (recipe == .preserve
                    ? "the GOLD blocks add nothing until trained (zero output projections); the logits are the Finch's"
                    : "the repository's init (torch's default for the matrices load_partial leaves uninitialised); the logits change")
                + "\nFinch tensors kept bit for bit, new tensors \(dtype), seed \(seed); \(tensors) tensors, \(formatBytes(bytesWritten)), "
                + String(format: "%.1f s", seconds)
        }
    }

    public static func run(input: String, output: String, recipe: Recipe = .preserve, ratio: Double = upgradeRatio, seed: UInt64 = 0,
                           dtype: DType = .bf16, sync: Bool = false, progress: ((Int, Int, String) -> Void)? = nil) throws -> Report {
        guard dtype == .bf16 || dtype == .f32 else { throw RWKVError(nil, "output dtype must be bf16 or fp32") }
        guard ratio > 1, ratio <= 1000 else { throw RWKVError(nil, "--ratio must be above 1 (the repository's inv_other_layer_ratio)") }
        let format = try Upgrade.OutputFormat(path: output)
        let started = Date()
        let source = try Checkpoint.open(input)
        let finch = try RWKVConfig.detect(source)
        guard finch.version == .v6, finch.attentionBlocks == 0 else { throw RWKVError(input, "is not an RWKV-6 (Finch) checkpoint (v6-to-goldfinch reads RWKV-6)") }
        // An RWKV-5 read as RWKV-6 has LoRAs that cannot learn (both factors zero); v5-to-v6 draws them.
        try finch.requireNotEagle(path: input, "run rwkv-upgrade v5-to-v6 first (its RWKV-6 has LoRAs that can learn), then v6-to-goldfinch")
        guard let depth = depth(finchLayers: finch.layerCount, ratio: ratio) else {
            throw RWKVError(input, "no depth puts exactly \(finch.layerCount) Finch blocks below the GOLD ones at ratio \(ratio)")
        }
        let c = finch.embeddingSize
        let compressed = Int(Double(c) / compression)
        guard compressed >= 1 else { throw RWKVError(input, "n_embd \(c) is too narrow for a key cache of n_embd / \(Int(compression))") }
        let target = GoldFinchConfig(
            layers: Array(repeating: .finch, count: finch.layerCount) + Array(repeating: .gold, count: depth - finch.layerCount),
            embeddingSize: c, headSize: finch.headSize, vocabSize: finch.vocabSize, ffnSize: finch.ffnSize,
            tokenShiftRank: finch.tokenShiftRank, decayRank: finch.decayRank, value2Rank: 0, queryRank: shiftRank,
            keyValueShiftRank: shiftRank, keyValueRank: keyValueRank(embedding: c), compressedSize: compressed)
        try target.validate(path: input)

        var infos: [TensorInfo] = []
        for (name, shape) in target.expectedShapes {
            let layer = TensorSpec.layer(of: name)
            if let stored = source.info(name), layer.map({ $0 < finch.layerCount }) ?? true {
                infos.append(TensorInfo(name: name, dtype: stored.dtype, shape: stored.shape))   // the Finch's, as stored
            } else {
                infos.append(TensorInfo(name: name, dtype: dtype, shape: shape))
            }
        }
        var done = 0
        let size = try Upgrade.write(format, to: output, tensors: infos, input: input, sync: sync, data: { info in
            progress?(done, infos.count, info.name)
            done += 1
            if let layer = TensorSpec.layer(of: info.name), layer >= finch.layerCount {
                return try Upgrade.encode(newBlockTensor(TensorSpec.row(of: info.name)!, layer: layer, shape: info.shape, target: target,
                                                 recipe: recipe, seed: seed, name: info.name), dtype)
            }
            if let key = GoldFinchKey(rawValue: info.name) {   // the key cache projections
                return try Upgrade.encode(linearDefault(info.shape, seed: seed, name: key.rawValue), dtype)
            }
            return try Upgrade.checkedCopy(source, info.name)
        }, note: "v6-to-goldfinch recipe=\(recipe.rawValue) ratio=\(ratio) seed=\(seed)")
        return Report(input: input, output: output, recipe: recipe, ratio: ratio, target: target, seed: seed,
                      dtype: Upgrade.dtypeName(dtype), tensors: infos.count, bytesWritten: size, seconds: Date().timeIntervalSince(started))
    }

    /// torch's nn.Linear default (kaiming_uniform with a = √5): U(±1/√fan-in), fan-in the second dimension.
    static func linearDefault(_ shape: [Int], seed: UInt64, name: String) -> [Float] {
        var random = SeededRandom(seed: seed, stream: name)
        return random.uniformArray(shape.reduce(1, *), bound: 1 / Double(shape[1]).squareRoot())
    }

    /// A GOLD block's tensor `row` (block-relative name) in block `i` of the new model, by the
    /// repository's constructors (`tmix/tmix_gold.py`, `cmix/cmix_x060.py`), with r01 = i/(L − 1),
    /// r10 = 1 − i/L and ddd = c/C.
    static func newBlockTensor(_ row: String, layer i: Int, shape: [Int], target: GoldFinchConfig, recipe: Recipe,
                               seed: UInt64, name: String) throws -> [Float] {
        let C = target.embeddingSize, L = Double(target.layers.count), count = shape.reduce(1, *)
        let r01 = Double(i) / (L - 1), r10 = 1 - Double(i) / L
        func ramp(_ exponent: Double, plus: Double = 0) -> [Float] { (0..<C).map { Float(1 - (pow(Double($0) / Double(C), exponent) + plus)) } }
        func constant(_ v: Float) -> [Float] { [Float](repeating: v, count: count) }
        func secondFactor() -> [Float] {
            var random = SeededRandom(seed: seed, stream: name)
            return random.uniformArray(count, bound: secondFactorBound)
        }
        typealias K = RWKV6Key
        typealias G = GoldFinchKey
        if let key = K(rawValue: row) {
            switch key {
            case .ln1Weight, .ln2Weight, .lnXWeight: return constant(1)
            case .ln1Bias, .ln2Bias, .lnXBias: return constant(0)
            case .maaX, .maaK, .ffnMaaK, .ffnMaaR: return ramp(r10)
            case .maaV: return ramp(r10, plus: 0.3 * r01)
            case .output, .ffnValue: return recipe == .preserve ? constant(0) : linearDefault(shape, seed: seed, name: name)
            case .ffnKey, .ffnReceptance: return linearDefault(shape, seed: seed, name: name)
            default: break
            }
        } else if let key = G(rawValue: row) {
            switch key {
            case .maaQ: return ramp(0.5 * r10)
            case .maaVCache: return ramp(r10)
            case .maaQW1, .maaKVW1, .keyW1, .valueW1: return constant(0)
            case .maaQW2, .maaKVW2, .keyW2, .valueW2: return secondFactor()
            case .query: return linearDefault(shape, seed: seed, name: name)
            case .lnQWeight, .lnKWeight, .lnVWeight: return constant(1)
            case .lnQBias, .lnKBias, .lnVBias: return constant(0)
            default: break
            }
        }
        throw RWKVError(nil, "internal error: no GOLD init for \(name)")
    }
}
