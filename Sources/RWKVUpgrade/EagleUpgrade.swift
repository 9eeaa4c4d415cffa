import Foundation
import RWKVText
import RWKVFormats
import RWKVModel

/// `rwkv-upgrade v5-to-v6`: the RWKV-6 an RWKV-5 equals (`EagleCheckpoint`), written as a
/// checkpoint RWKV-LM's RWKV-6 trainer continues from. Exact: each token-shift and decay LoRA's
/// first factor is zero, so it adds nothing. Trainable: the second factor is drawn as RWKV-LM
/// draws it at init (uniform ±0.01, `EagleRule.secondFactor`); with both factors zero neither
/// would ever get a gradient.
public enum EagleUpgrade {
    /// RWKV-LM's init range of the LoRAs' second factors (`RWKV-v6/src/model.py`).
    public static let secondFactorBound = 0.01

    public struct Report: Codable, Sendable {
        public let input: String
        public let output: String
        /// "5.0", "5.1" or "5.2".
        public let sourceVersion: String
        public let target: RWKVConfig
        public let seed: UInt64
        public let dtype: String
        public let tensors: Int
        public let bytesWritten: Int
        public let seconds: Double

        public var summary: String {
            "upgraded \(Printable.escaped(input, limit: 1024)) (RWKV-\(sourceVersion), \(target.layerCount)×\(target.embeddingSize)) -> "
                + "\(Printable.escaped(output, limit: 1024)) (RWKV-6, LoRA ranks token-shift \(target.tokenShiftRank) decay \(target.decayRank))\n"
                + "exact: the LoRAs' first factors are zero; seed \(seed), \(dtype), \(tensors) tensors, \(formatBytes(bytesWritten)), "
                + String(format: "%.1f s", seconds)
        }
    }

    public static func run(input: String, output: String, seed: UInt64 = 0, dtype: DType = .bf16, sync: Bool = false,
                           progress: ((Int, Int, String) -> Void)? = nil) throws -> Report {
        guard dtype == .bf16 || dtype == .f32 else { throw RWKVError(nil, "output dtype must be bf16 or fp32") }
        let format = try Upgrade.OutputFormat(path: output)
        let started = Date()
        guard let source = try Checkpoint.open(input) as? EagleCheckpoint else {
            throw RWKVError(input, "is not an RWKV-5 checkpoint (v5-to-v6 reads RWKV-5.1 and 5.2; for RWKV-6 use v6-to-v7)")
        }
        let config = source.config
        try config.requireGate(path: input, for: "an RWKV-6")
        let rules = Dictionary(uniqueKeysWithValues: ArchitectureSchema.rwkv5.map { ($0.rwkv6.rawValue, $0.rule) })
        let tensors = config.checkpointTensors
        let layerOf = Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, ($0.spec, $0.layer)) })
        // 1 − μ and exp(time_first) are computed: bf16 cannot hold them exactly (1 − 0.3 needs more
        // than its 8 bits), so they stay fp32 whatever `dtype` (KL 5e-6 instead of 1e-13 in bf16).
        let infos = tensors.map { t in
            TensorInfo(name: t.name, dtype: source.isComputed(t.name) ? .f32 : dtype, shape: config.shape(t.spec.shape))
        }
        var done = 0
        let size = try Upgrade.write(format, to: output, tensors: infos, input: input, sync: sync, data: { info in
            let (row, layer) = layerOf[info.name]!
            progress?(done, infos.count, "block \(layer + 1)/\(config.layerCount): \(info.name)")
            done += 1
            var values: [Float]
            if rules[row.name] == .secondFactor {
                var random = SeededRandom(seed: seed, stream: info.name)
                values = random.uniformArray(info.elementCount, bound: secondFactorBound)
            } else {
                values = try NonFiniteCount.checked(source.floats(info.name), path: input, tensor: info.name,
                                                     advice: WeightLoader.nonFiniteAdvice)
            }
            return try Upgrade.encode(values, info.dtype)
        }, note: "v5-to-v6 seed=\(seed)")
        return Report(input: input, output: output, sourceVersion: source.version.rawValue, target: config, seed: seed,
                      dtype: Upgrade.dtypeName(dtype), tensors: infos.count, bytesWritten: size,
                      seconds: Date().timeIntervalSince(started))
    }
}
