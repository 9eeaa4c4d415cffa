import RWKVFormats

/// One hyperparameter as llama.cpp's `load_arch_hparams` reads it: from a configuration field
/// (written, and read back), or a constant llama.cpp's converter writes.
enum HyperparameterSource {
    case field(WritableKeyPath<RWKVConfig, Int>)
    case constant(GGUFValue)
}

extension GGUFLayout {
    /// The hyperparameter keys of each architecture, in the order llama.cpp's converter writes
    /// them (key names from gguf-py `constants.py`, value types as `GGUFWriter.add_*` writes them).
    static func hyperparameterTable(_ version: RWKVVersion) -> [(key: GGUFKey.Model, source: HyperparameterSource)] {
        var table: [(GGUFKey.Model, HyperparameterSource)] = [
            (.contextLength, .constant(.uint32(1_048_576))),   // RWKV has no context limit; llama.cpp's converter writes 2^20
            (.embeddingLength, .field(\.embeddingSize)),
            (.blockCount, .field(\.layerCount)),
            (.feedForwardLength, .field(\.ffnSize)),
            (.headCount, .constant(.uint32(0))),                // "required by llama.cpp, unused" (convert_hf_to_gguf.py)
            (.layerNormEpsilon, .constant(.float32(1e-5))),
            (.wkvHeadSize, .field(\.headSize)),
        ]
        switch version {
        case .v7:
            table += [(.decayLoraRank, .field(\.decayRank)), (.iclrLoraRank, .field(\.iclrRank)),
                      (.valueResidualMixLoraRank, .field(\.valueResidualRank)), (.gateLoraRank, .field(\.gateRank))]
        case .v6:
            // rescale 0: weights are stored unscaled (llama.cpp computes in f32 and needs no fp16 rescaling).
            table += [(.timeMixExtraDim, .field(\.tokenShiftRank)), (.timeDecayExtraDim, .field(\.decayRank)),
                      (.rescaleEveryNLayers, .constant(.uint32(0)))]
        }
        return table
    }

    /// The hyperparameter metadata llama.cpp's `load_arch_hparams` reads for this model.
    public static func hyperparameters(for c: RWKVConfig) -> [GGUFKeyValue] {
        let a = architecture(c.version)
        return hyperparameterTable(c.version).map { key, source in
            switch source {
            case .field(let path): return GGUFKeyValue(key.key(a), .uint32(UInt32(c[keyPath: path])))
            case .constant(let value): return GGUFKeyValue(key.key(a), value)
            }
        }
    }
}

extension RWKVConfig {
    /// Reads the hyperparameters of an `rwkv6` / `rwkv7` GGUF file from its metadata and the
    /// embedding's shape.
    public static func fromGGUF(_ r: GGUFReader) throws -> RWKVConfig {
        guard let arch = r.value(GGUFKey.architecture)?.string else {
            throw RWKVError(r.path, "GGUF file has no \(GGUFKey.architecture)")
        }
        guard let schema = ArchitectureSchema.all.first(where: { $0.ggufArchitecture == arch }) else {
            throw RWKVError(r.path, "GGUF architecture \"\(arch)\" is not rwkv6 or rwkv7")
        }
        let embName = schema.embeddingRow.gguf.name
        guard let emb = r.info(embName), emb.shape.count == 2 else {
            throw RWKVError(r.path, "GGUF file has no 2-D \(embName)")
        }
        var c = RWKVConfig(version: schema.version, layerCount: 0, embeddingSize: 0, headSize: 0, vocabSize: emb.shape[0],
                           ffnSize: 0, decayRank: 0)
        for (key, source) in GGUFLayout.hyperparameterTable(schema.version) {
            guard case .field(let field) = source else { continue }
            let name = key.key(arch)
            guard let v = r.value(name) else { throw RWKVError(r.path, "GGUF metadata \(name) is missing") }
            guard let n = v.integer, n >= 0, n <= 1 << 24 else {
                throw RWKVError(r.path, "GGUF metadata \(name) is \(v.summary()), expected a small non-negative integer")
            }
            c[keyPath: field] = n
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
        let rescale = config.version == .v6 ? reader.value(GGUFKey.Model.rescaleEveryNLayers.key(ArchitectureSchema.rwkv6.ggufArchitecture))?.integer ?? 0 : 0
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
        if rescaleEvery > 0, let layer = TensorSpec.layer(of: name), layer / rescaleEvery > 0,
           [RWKV6Key.output.rawValue, RWKV6Key.ffnValue.rawValue].contains(TensorSpec.row(of: name)) {
            let scale = Float(sign: .plus, exponent: layer / rescaleEvery, significand: 1)
            for i in values.indices { values[i] *= scale }
        }
        return values
    }

    public func floats(_ name: String) throws -> [Float] { try canonicalFloats(name) }

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
