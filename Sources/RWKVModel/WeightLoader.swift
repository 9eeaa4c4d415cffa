import RWKVFormats

/// Where the forward pass gets its weights: canonical BlinkDL tensor names ("blocks.3.att.w1")
/// mapped to values in the BlinkDL shape and row-major order, widened to Float.
///
/// A checkpoint that already uses those names (.pth, .safetensors) is served by
/// `init(source:)`. A file that renames, fuses or transposes tensors (GGUF: `blk.3.time_mix_w1`,
/// `time_mix_lerp_fused`, ...) plugs in through `init(path:config:storedType:fetch:)` with a
/// `fetch` that undoes its layout and returns the canonical tensor; nothing else changes.
public struct WeightLoader {
    /// The model file, for error messages.
    public let path: String
    public let config: RWKVConfig
    private let fetch: (String) throws -> [Float]
    private let storedType: (String) -> DType?
    /// Every canonical tensor's shape and role, from the architecture's schema.
    private let expected: [String: (shape: [Int], role: TensorRole)]

    /// - Parameters:
    ///   - fetch: the canonical tensor's values (BlinkDL shape, row-major).
    ///   - storedType: the element type the file stores the canonical tensor in, when it has one
    ///     (nil for quantized or re-laid-out tensors). Only used to reproduce the official
    ///     package's rounding of the RWKV-6 embedding (see `RWKV6Weights`).
    public init(path: String, config: RWKVConfig, storedType: @escaping (String) -> DType? = { _ in nil },
                fetch: @escaping (String) throws -> [Float]) throws {
        // Every dimension the forward pass uses must be at least 1 (OpenBLAS rejects empty
        // matrices) and fit OpenBLAS's 32-bit `blasint`.
        var used = [config.layerCount, config.embeddingSize, config.headSize, config.vocabSize, config.ffnSize, config.decayRank]
        switch config.version {
        case .v7: used += [config.iclrRank, config.gateRank] + (config.layerCount > 1 ? [config.valueResidualRank] : [])
        case .v6: used += [5 * config.tokenShiftRank]
        }
        guard used.allSatisfy({ $0 >= 1 && $0 < Int(Int32.max) }), config.embeddingSize % config.headSize == 0 else {
            throw RWKVError(path, "model dimensions out of range (layers \(config.layerCount), n_embd \(config.embeddingSize), "
                                  + "head \(config.headSize), vocab \(config.vocabSize), ffn \(config.ffnSize), LoRA ranks \(used.dropFirst(5)))")
        }
        self.path = path
        self.config = config
        self.fetch = fetch
        self.storedType = storedType
        expected = Dictionary(config.checkpointTensors.map { ($0.name, (config.shape($0.spec.shape), $0.spec.role)) },
                              uniquingKeysWith: { a, _ in a })
    }

    /// A checkpoint with BlinkDL tensor names; the architecture is detected from its shapes.
    /// `nonFiniteAdvice` ends the message for a NaN or infinite weight.
    public init(source: TensorSource, nonFiniteAdvice: String = WeightLoader.nonFiniteAdvice) throws {
        try self.init(path: source.path, config: try RWKVConfig.detect(source),
                      storedType: { source.info($0)?.dtype },
                      fetch: { try NonFiniteCount.checked(source.floats($0), path: source.path, tensor: $0, advice: nonFiniteAdvice) })
    }

    /// What a file's NaN or infinite weight gets told (it is bad input, not a verification failure).
    public static let nonFiniteAdvice = "a model with NaN or infinite weights cannot be run"

    /// The element type `name` is stored in, when the file keeps it as a plain tensor.
    public func storedDType(_ name: String) -> DType? { storedType(name) }

    /// The tensor's values, checked against the element count its canonical shape requires.
    func tensor(_ name: String) throws -> FloatBuffer {
        guard let shape = expected[name]?.shape else { throw RWKVError(path, "no tensor named \(name) in an \(config.version) model") }
        let values = try fetch(name)
        let expected = shape.reduce(1, *)
        guard values.count == expected else {
            throw RWKVError(path, "tensor \(name) has \(values.count) values, expected \(expected) (shape \(shape))")
        }
        return FloatBuffer(values)
    }

    func norm(_ prefix: String) throws -> NormWeights {
        NormWeights(weight: try tensor(prefix + ".weight"), bias: try tensor(prefix + ".bias"))
    }

    /// Tensor `key` of block `layer` (ignored outside blocks).
    func tensor<K: TensorKey>(_ key: K, layer: Int = 0) throws -> FloatBuffer { try tensor(key.name(layer: layer)) }

    func matrix<K: TensorKey>(_ key: K, layer: Int = 0) throws -> Linear { try matrix(key.name(layer: layer)) }

    func norm<K: TensorKey>(_ weight: K, _ bias: K, layer: Int = 0) throws -> NormWeights {
        NormWeights(weight: try tensor(weight, layer: layer), bias: try tensor(bias, layer: layer))
    }

    /// The tensors every architecture has, by the checkpoint's own keys.
    func embedding() throws -> FloatBuffer {
        config.version == .v7 ? try tensor(RWKV7Key.emb) : try tensor(RWKV6Key.emb)
    }
    func ln0() throws -> NormWeights {
        config.version == .v7 ? try norm(RWKV7Key.ln0Weight, .ln0Bias) : try norm(RWKV6Key.ln0Weight, .ln0Bias)
    }

    /// A matrix oriented as its role says: a torch Linear weight is `(out, in)`, a LoRA factor `(in, out)`.
    func matrix(_ name: String) throws -> Linear {
        guard let (shape, role) = expected[name], shape.count == 2 else { throw RWKVError(path, "no matrix named \(name)") }
        let byInputs = role == .lora
        return Linear(inputs: byInputs ? shape[0] : shape[1], outputs: byInputs ? shape[1] : shape[0],
                      layout: byInputs ? .inputsByOutputs : .outputsByInputs, weights: try tensor(name))
    }
}
