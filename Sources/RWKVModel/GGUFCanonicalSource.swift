import RWKVFormats

extension GGUFLayout {
    /// The hyperparameter metadata llama.cpp's `load_arch_hparams` reads for this model
    /// (key names from gguf-py `constants.py`, value types as `GGUFWriter.add_*` writes them).
    public static func hyperparameters(for c: RWKVConfig) -> [GGUFKeyValue] {
        let a = architecture(c.version)
        func u32(_ key: String, _ v: Int) -> GGUFKeyValue { GGUFKeyValue("\(a).\(key)", .uint32(UInt32(v))) }
        var kv: [GGUFKeyValue] = [
            u32("context_length", 1_048_576),     // RWKV has no context limit; llama.cpp's converter writes 2^20
            u32("embedding_length", c.embeddingSize),
            u32("block_count", c.layerCount),
            u32("feed_forward_length", c.ffnSize),
            u32("attention.head_count", 0),       // "required by llama.cpp, unused" (convert_hf_to_gguf.py)
            GGUFKeyValue("\(a).attention.layer_norm_epsilon", .float32(1e-5)),
            u32("wkv.head_size", c.headSize),
        ]
        switch c.version {
        case .v7:
            kv += [u32("attention.decay_lora_rank", c.decayRank), u32("attention.iclr_lora_rank", c.iclrRank),
                   u32("attention.value_residual_mix_lora_rank", c.valueResidualRank),
                   u32("attention.gate_lora_rank", c.gateRank)]
        case .v6:
            // 0: weights are stored unscaled (llama.cpp computes in f32 and needs no fp16 rescaling).
            kv += [u32("time_mix_extra_dim", c.tokenShiftRank), u32("time_decay_extra_dim", c.decayRank),
                   u32("rescale_every_n_layers", 0)]
        }
        return kv
    }
}

extension RWKVConfig {
    /// Reads the hyperparameters of an `rwkv6` / `rwkv7` GGUF file from its metadata and the
    /// embedding's shape.
    public static func fromGGUF(_ r: GGUFReader) throws -> RWKVConfig {
        guard let arch = r.value("general.architecture")?.string else {
            throw RWKVError(r.path, "GGUF file has no general.architecture")
        }
        let version: RWKVVersion
        switch arch {
        case "rwkv7": version = .v7
        case "rwkv6": version = .v6
        default: throw RWKVError(r.path, "GGUF architecture \"\(arch)\" is not rwkv6 or rwkv7")
        }
        func int(_ key: String) throws -> Int {
            guard let v = r.value("\(arch).\(key)") else { throw RWKVError(r.path, "GGUF metadata \(arch).\(key) is missing") }
            guard let n = v.integer, n >= 0, n <= 1 << 24 else {
                throw RWKVError(r.path, "GGUF metadata \(arch).\(key) is \(v.summary()), expected a small non-negative integer")
            }
            return n
        }
        guard let emb = r.info("token_embd.weight"), emb.shape.count == 2 else {
            throw RWKVError(r.path, "GGUF file has no 2-D token_embd.weight")
        }
        var c = RWKVConfig(version: version, layerCount: try int("block_count"), embeddingSize: try int("embedding_length"),
                           headSize: try int("wkv.head_size"), vocabSize: emb.shape[0], ffnSize: try int("feed_forward_length"),
                           decayRank: 0)
        switch version {
        case .v7:
            c.decayRank = try int("attention.decay_lora_rank")
            c.iclrRank = try int("attention.iclr_lora_rank")
            c.valueResidualRank = try int("attention.value_residual_mix_lora_rank")
            c.gateRank = try int("attention.gate_lora_rank")
        case .v6:
            c.tokenShiftRank = try int("time_mix_extra_dim")
            c.decayRank = try int("time_decay_extra_dim")
        }
        guard c.layerCount > 0, c.headSize > 0, c.embeddingSize % c.headSize == 0 else {
            throw RWKVError(r.path, "GGUF hyperparameters are inconsistent (\(c.layerCount) layers, n_embd \(c.embeddingSize), head size \(c.headSize))")
        }
        // Every block has tensors of its own: a larger block_count would have the layout list
        // the tensors of millions of layers before finding the first one missing.
        guard c.layerCount <= r.tensors.count else {
            throw RWKVError(r.path, "GGUF metadata \(arch).block_count \(c.layerCount) is more than the file's \(r.tensors.count) tensors can hold")
        }
        try c.validate(path: r.path)
        return c
    }
}

/// A GGUF file seen as the BlinkDL checkpoint it was converted from: canonical names and
/// shapes, every tensor as f32 (16-bit and quantized types decoded). It undoes the layout
/// transforms exactly, so an f32 conversion reads back bit for bit; the forward pass loads its
/// weights by canonical name and so runs on GGUF unchanged.
/// Two things cannot come back: RWKV-7 layer 0's unused v0/v1/v2 (the file holds copies of
/// a0/a1/a2, shaped like them), and values lost to a narrower type.
public final class GGUFCanonicalSource: TensorSource {
    public let path: String
    public let formatName = "GGUF (canonical view)"
    public let tensors: [TensorInfo]
    public let config: RWKVConfig
    public let gguf: GGUFReader
    private let origin: [String: (layout: GGUFTensorLayout, part: Int)]
    private let positions: [String: Int]
    private let rescaleEvery: Int

    public convenience init(path: String) throws {
        try self.init(try GGUFReader(path: path))
    }

    public init(_ reader: GGUFReader) throws {
        gguf = reader
        path = reader.path
        config = try RWKVConfig.fromGGUF(reader)
        let layouts = GGUFLayout.tensors(for: config)
        var origin: [String: (GGUFTensorLayout, Int)] = [:]
        var infos: [TensorInfo] = []
        for l in layouts {
            guard let t = reader.info(l.name) else { throw RWKVError(path, "GGUF file has no tensor \(l.name)") }
            // ggml pads shapes with trailing 1s: (C) and (1,1,C) are the same tensor to llama.cpp.
            guard t.shape.drop(while: { $0 == 1 }) == l.shape.drop(while: { $0 == 1 }) else {
                throw RWKVError(path, "tensor \(l.name) has shape \(t.shape), expected \(l.shape)")
            }
            for (i, name) in l.canonicalNames.enumerated() {
                origin[name] = (l, i)
                infos.append(TensorInfo(name: name, dtype: .f32, shape: l.sourceShapes[i]))
            }
        }
        self.origin = origin
        let order = Dictionary(uniqueKeysWithValues: config.expectedShapes.enumerated().map { ($1.name, $0) })
        tensors = infos.sorted { (order[$0.name] ?? .max) < (order[$1.name] ?? .max) }
        positions = Dictionary(tensors.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        // Only llama.cpp's RWKV-6 graph rescales (rwkv6.cpp); RWKV-7 files never carry the key.
        let rescale = config.version == .v6 ? reader.value("rwkv6.rescale_every_n_layers")?.integer ?? 0 : 0
        rescaleEvery = max(0, rescale)
    }

    public func info(_ name: String) -> TensorInfo? { positions[name].map { tensors[$0] } }

    public func data(_ name: String) throws -> [UInt8] {
        var values = try canonicalFloats(name)
        return values.withUnsafeMutableBytes { Array($0) }
    }

    /// The canonical tensor's values (what `floats(_:)` returns, without the byte round trip).
    public func canonicalFloats(_ name: String) throws -> [Float] {
        guard let (layout, part) = origin[name] else { throw RWKVError(path, "no tensor named \(name)") }
        var values = GGUFLayout.invert(layout, try gguf.floats(layout.name))[part]
        // RWKV-6 files from llama.cpp's converter may store att.output / ffn.value divided by
        // 2^(layer / rescale_every_n_layers) (the graph halves the residual to match);
        // multiplying back by a power of two is exact.
        if rescaleEvery > 0, let layer = Self.layerIndex(name), layer / rescaleEvery > 0,
           name.hasSuffix("att.output.weight") || name.hasSuffix("ffn.value.weight") {
            let scale = Float(sign: .plus, exponent: layer / rescaleEvery, significand: 1)
            for i in values.indices { values[i] *= scale }
        }
        return values
    }

    public func floats(_ name: String) throws -> [Float] { try canonicalFloats(name) }

    static func layerIndex(_ name: String) -> Int? {
        guard name.hasPrefix("blocks.") else { return nil }
        return Int(name.dropFirst(7).prefix { $0 != "." })
    }
}

extension WeightLoader {
    /// A GGUF file (ours, or llama.cpp's converter's) read back under canonical names, so the
    /// forward pass runs on it unchanged; quantized tensors come back dequantized.
    public init(gguf: GGUFReader) throws {
        let view = try GGUFCanonicalSource(gguf)
        try self.init(path: gguf.path, config: view.config, fetch: {
            try NonFiniteCount.checked(view.canonicalFloats($0), path: gguf.path, tensor: $0, advice: Self.nonFiniteAdvice)
        })
    }
}
