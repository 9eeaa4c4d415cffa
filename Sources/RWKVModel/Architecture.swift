import RWKVFormats

public enum RWKVVersion: Int, Sendable, Codable {
    case v6 = 6
    case v7 = 7
}

/// Hyperparameters of an RWKV-6 or RWKV-7 checkpoint, all read from tensor shapes.
public struct RWKVConfig: Equatable, Sendable, Codable {
    public var version: RWKVVersion
    public var layerCount: Int
    public var embeddingSize: Int          // C
    public var headSize: Int               // N
    public var vocabSize: Int              // V
    public var ffnSize: Int                // F
    /// RWKV-7: w1/w2 rank (Dw). RWKV-6: time_decay_w1/w2 rank (Dd).
    public var decayRank: Int
    /// RWKV-7 only: a1/a2 (Da), v1/v2 (Dv), g1/g2 (Dg).
    public var iclrRank: Int
    public var valueResidualRank: Int
    public var gateRank: Int
    /// RWKV-6 only: time_maa_w1/w2 rank per lerp (Dm).
    public var tokenShiftRank: Int

    public var headCount: Int { embeddingSize / headSize }

    public init(version: RWKVVersion, layerCount: Int, embeddingSize: Int, headSize: Int, vocabSize: Int, ffnSize: Int,
                decayRank: Int, iclrRank: Int = 0, valueResidualRank: Int = 0, gateRank: Int = 0, tokenShiftRank: Int = 0) {
        self.version = version
        self.layerCount = layerCount
        self.embeddingSize = embeddingSize
        self.headSize = headSize
        self.vocabSize = vocabSize
        self.ffnSize = ffnSize
        self.decayRank = decayRank
        self.iclrRank = iclrRank
        self.valueResidualRank = valueResidualRank
        self.gateRank = gateRank
        self.tokenShiftRank = tokenShiftRank
    }

    /// Every tensor an official checkpoint of this configuration holds, with its shape.
    public var expectedShapes: [(name: String, shape: [Int])] {
        let C = embeddingSize, V = vocabSize, F = ffnSize, H = headCount, N = headSize
        var out: [(String, [Int])] = [("emb.weight", [V, C])]
        for i in 0..<layerCount {
            let b = "blocks.\(i)."
            if i == 0 { out += [(b + "ln0.weight", [C]), (b + "ln0.bias", [C])] }
            out += [(b + "ln1.weight", [C]), (b + "ln1.bias", [C]), (b + "ln2.weight", [C]), (b + "ln2.bias", [C])]
            switch version {
            case .v7:
                for n in ["x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "w0", "a0", "v0", "k_k", "k_a"] {
                    out.append((b + "att." + n, [1, 1, C]))
                }
                out += [
                    (b + "att.w1", [C, decayRank]), (b + "att.w2", [decayRank, C]),
                    (b + "att.a1", [C, iclrRank]), (b + "att.a2", [iclrRank, C]),
                    (b + "att.v1", [C, valueResidualRank]), (b + "att.v2", [valueResidualRank, C]),
                    (b + "att.g1", [C, gateRank]), (b + "att.g2", [gateRank, C]),
                    (b + "att.r_k", [H, N]),
                    (b + "att.receptance.weight", [C, C]), (b + "att.key.weight", [C, C]),
                    (b + "att.value.weight", [C, C]), (b + "att.output.weight", [C, C]),
                    (b + "att.ln_x.weight", [C]), (b + "att.ln_x.bias", [C]),
                    (b + "ffn.x_k", [1, 1, C]), (b + "ffn.key.weight", [F, C]), (b + "ffn.value.weight", [C, F]),
                ]
            case .v6:
                for n in ["time_maa_x", "time_maa_w", "time_maa_k", "time_maa_v", "time_maa_r", "time_maa_g", "time_decay"] {
                    out.append((b + "att." + n, [1, 1, C]))
                }
                out += [
                    (b + "att.time_maa_w1", [C, 5 * tokenShiftRank]), (b + "att.time_maa_w2", [5, tokenShiftRank, C]),
                    (b + "att.time_decay_w1", [C, decayRank]), (b + "att.time_decay_w2", [decayRank, C]),
                    (b + "att.time_faaaa", [H, N]),
                    (b + "att.receptance.weight", [C, C]), (b + "att.key.weight", [C, C]),
                    (b + "att.value.weight", [C, C]), (b + "att.output.weight", [C, C]), (b + "att.gate.weight", [C, C]),
                    (b + "att.ln_x.weight", [C]), (b + "att.ln_x.bias", [C]),
                    (b + "ffn.time_maa_k", [1, 1, C]), (b + "ffn.time_maa_r", [1, 1, C]),
                    (b + "ffn.key.weight", [F, C]), (b + "ffn.receptance.weight", [C, C]), (b + "ffn.value.weight", [C, F]),
                ]
            }
        }
        out += [("ln_out.weight", [C]), ("ln_out.bias", [C]), ("head.weight", [V, C])]
        return out
    }

    /// Reads the architecture and hyperparameters from a checkpoint's tensor shapes and checks
    /// that every expected tensor is present with the right shape.
    public static func detect(_ source: TensorSource) throws -> RWKVConfig {
        let shapes = Dictionary(source.tensors.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
        func shape(_ name: String) throws -> [Int] {
            guard let s = shapes[name] else { throw RWKVError(source.path, "missing tensor \(name)") }
            return s
        }
        func dim(_ name: String, _ axis: Int, rank: Int) throws -> Int {
            let s = try shape(name)
            guard s.count == rank, axis < s.count else {
                throw RWKVError(source.path, "tensor \(name) has shape \(s), expected \(rank) dimensions")
            }
            return s[axis]
        }

        guard shapes["emb.weight"] != nil, shapes.keys.contains(where: { $0.hasPrefix("blocks.") }) else {
            throw RWKVError(source.path, "not an RWKV checkpoint (no emb.weight and blocks.* tensors)")
        }
        let layers = shapes.keys.compactMap { name -> (name: String, layer: Int)? in
            guard name.hasPrefix("blocks."), let layer = Int(name.dropFirst(7).prefix { $0 != "." }) else { return nil }
            return (name, layer)
        }
        // Every layer holds tensors, so a layer number beyond the tensor count is a damaged name;
        // trusted, it would overflow the layer count or list the tensors of billions of layers.
        if let bad = layers.first(where: { $0.layer < 0 || $0.layer >= source.tensors.count }) {
            throw RWKVError(source.path, "tensor \(bad.name): layer number \(bad.layer) is impossible in a file of \(source.tensors.count) tensors")
        }
        let layerCount = (layers.map(\.layer).max() ?? -1) + 1
        let vocab = try dim("emb.weight", 0, rank: 2)
        let C = try dim("emb.weight", 1, rank: 2)

        var config: RWKVConfig
        if shapes["blocks.0.att.x_r"] != nil || shapes["blocks.0.att.r_k"] != nil {
            let last = layerCount > 1 ? 1 : 0   // layer 0's v1/v2 are unused; take the rank from layer 1
            config = RWKVConfig(version: .v7, layerCount: layerCount, embeddingSize: C,
                                headSize: try dim("blocks.0.att.r_k", 1, rank: 2), vocabSize: vocab,
                                ffnSize: try dim("blocks.0.ffn.key.weight", 0, rank: 2),
                                decayRank: try dim("blocks.0.att.w1", 1, rank: 2),
                                iclrRank: try dim("blocks.0.att.a1", 1, rank: 2),
                                valueResidualRank: try dim("blocks.\(last).att.v1", 1, rank: 2),
                                gateRank: try dim("blocks.0.att.g1", 1, rank: 2))
        } else if shapes["blocks.0.att.time_maa_x"] != nil {
            let w1 = try dim("blocks.0.att.time_maa_w1", 1, rank: 2)
            guard w1 % 5 == 0 else {
                throw RWKVError(source.path, "tensor blocks.0.att.time_maa_w1 has width \(w1), expected a multiple of 5")
            }
            config = RWKVConfig(version: .v6, layerCount: layerCount, embeddingSize: C,
                                headSize: try dim("blocks.0.att.time_faaaa", 1, rank: 2), vocabSize: vocab,
                                ffnSize: try dim("blocks.0.ffn.key.weight", 0, rank: 2),
                                decayRank: try dim("blocks.0.att.time_decay_w1", 1, rank: 2),
                                tokenShiftRank: w1 / 5)
        } else if shapes["blocks.0.att.time_first"] != nil || shapes["blocks.0.att.time_faaaa"] != nil
                    || shapes["blocks.0.att.time_mix_k"] != nil {
            throw RWKVError(source.path, "RWKV-4/5 checkpoint: only RWKV-6 and RWKV-7 are supported")
        } else {
            throw RWKVError(source.path, "not an RWKV-6 or RWKV-7 checkpoint (no blocks.0.att.x_r or blocks.0.att.time_maa_x)")
        }
        guard config.headSize > 0, C % config.headSize == 0 else {
            throw RWKVError(source.path, "n_embd \(C) is not a multiple of the head size \(config.headSize)")
        }
        try config.validate(path: source.path)
        for (name, expected) in config.expectedShapes {
            // Layer 0's v0/v1/v2 are unused and may carry another rank; only their presence matters.
            let s = try shape(name)
            if name.hasPrefix("blocks.0.att.v") && config.version == .v7 { continue }
            guard s == expected else {
                throw RWKVError(source.path, "tensor \(name) has shape \(s), expected \(expected)")
            }
        }
        return config
    }
}
