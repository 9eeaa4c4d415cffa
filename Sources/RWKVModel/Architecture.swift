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
    /// An RWKV-5 checkpoint read as the RWKV-6 that computes the same (`EagleCheckpoint`):
    /// its version; nil for an RWKV-6 or RWKV-7 checkpoint.
    public var eagle: EagleVersion?
    /// An RWKV-X checkpoint (`RWKVXCheckpoint`): its attention blocks, which sit between the
    /// RWKV-7 blocks (`blockOrder`); 0 for every other checkpoint.
    public var attentionBlocks: Int = 0

    /// RWKV-5.0 has no output gate; every other RWKV-6 view has one.
    public var hasGate: Bool { eagle != .v5_0 }

    public var headCount: Int { embeddingSize / headSize }

    public init(version: RWKVVersion, layerCount: Int, embeddingSize: Int, headSize: Int, vocabSize: Int, ffnSize: Int,
                decayRank: Int, iclrRank: Int = 0, valueResidualRank: Int = 0, gateRank: Int = 0, tokenShiftRank: Int = 0,
                eagle: EagleVersion? = nil) {
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
        self.eagle = eagle
    }

    /// Reads the architecture and hyperparameters from a checkpoint's tensor shapes (each symbol
    /// of the schema from the first tensor that carries it) and checks that every expected
    /// tensor is present with the right shape, and that no other tensor is.
    public static func detect(_ source: TensorSource) throws -> RWKVConfig {
        let shapes = Dictionary(source.tensors.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
        func shape(_ name: String) throws -> [Int] {
            guard let s = shapes[name] else { throw RWKVError(source.path, "missing tensor \(name)") }
            return s
        }

        let emb = ArchitectureSchema.rwkv7.embeddingName, blocks = TensorSpec.blockPrefix
        guard shapes[emb] != nil, shapes.keys.contains(where: { $0.hasPrefix(blocks) }) else {
            throw RWKVError(source.path, "not an RWKV checkpoint (no \(emb) and \(blocks)* tensors)")
        }
        if GoldFinchCheckpoint.holdsGoldFinch(source) {
            // Read by GoldFinchCheckpoint (rwkv-verify, inspect); no RWKV-6/7 layout or GGUF holds it.
            throw GoldFinchCheckpoint.notRWKV(source.path)
        }
        if let variant = ArchitectureSchema.unsupportedVariants.first(where: { v in shapes.keys.contains { $0.contains(v.marker) } }) {
            throw RWKVError(source.path, "\(variant.name) checkpoint: llama.cpp cannot run it yet, so neither do we")
        }
        let layers = shapes.keys.compactMap { name -> (name: String, layer: Int)? in
            guard let layer = TensorSpec.layer(of: name) else { return nil }
            return (name, layer)
        }
        // Every layer holds tensors, so a layer number beyond the tensor count is a damaged name;
        // trusted, it would overflow the layer count or list the tensors of billions of layers.
        if let bad = layers.first(where: { $0.layer < 0 || $0.layer >= source.tensors.count }) {
            throw RWKVError(source.path, "tensor \(bad.name): layer number \(bad.layer) is impossible in a file of \(source.tensors.count) tensors")
        }
        let layerCount = (layers.map(\.layer).max() ?? -1) + 1

        guard let schema = ArchitectureSchema.all.first(where: { s in s.markers.contains { shapes[s.row($0)!.checkpointName(layer: 0)] != nil } }) else {
            if EagleCheckpoint.holdsRWKV5(source) {
                // `Checkpoint.open` reads RWKV-5 as RWKV-6 (`EagleCheckpoint`); a raw one gets here.
                throw RWKVError(source.path, "RWKV-4/5 checkpoint: open it through Checkpoint.open, which reads RWKV-5 as RWKV-6")
            }
            throw RWKVError(source.path, "not an RWKV-6 or RWKV-7 checkpoint (no blocks.0.att.x_r or blocks.0.att.time_maa_x)")
        }
        var config = RWKVConfig(version: schema.version, layerCount: layerCount, embeddingSize: 0, headSize: 0,
                                vocabSize: 0, ffnSize: 0, decayRank: 0, eagle: (source as? EagleCheckpoint)?.version)
        config.attentionBlocks = (source as? RWKVXCheckpoint)?.attentionBlocks ?? 0
        var known: Set<Dim> = [.H]   // H = C / N
        for row in schema.tensors where config.holds(row) {
            for (axis, d) in row.shape.enumerated() where !known.contains(d) {
                if case .fixed = d { continue }
                if d == .fiveTokenShiftRanks { continue }
                // Block 0's stand-in tensors (RWKV-7 v1/v2) are unused there and may have any rank.
                let name = row.checkpointName(layer: row.firstLayerStandIn != nil && layerCount > 1 ? 1 : 0)
                let s = try shape(name)
                guard s.count == row.shape.count else {
                    throw RWKVError(source.path, "tensor \(name) has shape \(s), expected \(row.shape.count) dimensions")
                }
                config.set(d, s[axis])
                known.insert(d)
            }
        }
        guard config.headSize > 0, config.embeddingSize % config.headSize == 0 else {
            throw RWKVError(source.path, "n_embd \(config.embeddingSize) is not a multiple of the head size \(config.headSize)")
        }
        try config.validate(path: source.path)
        var expected = Set<String>()
        for (name, row, _) in config.checkpointTensors {
            expected.insert(name)
            // Block 0's RWKV-7 v0/v1/v2 are unused: any shape, and absent from fla-hub folders.
            if name.hasPrefix("blocks.0."), row.firstLayerStandIn != nil { continue }
            let s = try shape(name)
            guard s == config.shape(row.shape) else {
                throw RWKVError(source.path, "tensor \(name) has shape \(s), expected \(config.shape(row.shape))")
            }
        }
        let unknown = source.tensors.map(\.name).filter { !expected.contains($0) }
        if let first = unknown.first {
            throw RWKVError(source.path, "tensor \(first)\(unknown.count > 1 ? " (and \(unknown.count - 1) more)" : "") "
                                         + "is not part of an \(config.version == RWKVVersion.v7 ? "RWKV-7" : "RWKV-6") checkpoint")
        }
        return config
    }

    /// Refuses RWKV-5.0 where a gated RWKV-6 is needed: it has no output gate, and silu(g)
    /// cannot be 1 for every input, so no RWKV-6 file computes it.
    public func requireGate(path: String, for what: String) throws {
        guard hasGate else {
            throw RWKVError(path, "RWKV-5.0 has no output gate, so \(what) cannot compute it exactly (rwkv-convert inspect and rwkv-verify read it)")
        }
    }

    /// Refuses an RWKV-5 (read as RWKV-6) where the RWKV-5 file itself is meant: exports keep the
    /// checkpoint's own architecture, which they cannot write for RWKV-5.
    public func requireNotEagle(path: String, _ advice: String) throws {
        if let eagle { throw RWKVError(path, "RWKV-\(eagle.rawValue) checkpoint: \(advice)") }
    }

    /// Refuses an RWKV-X (RWKV-7 with attention blocks) where only the RWKV-7 layout can be
    /// written: dropping the attention blocks would silently make another model.
    public func requireNoAttention(path: String, for what: String) throws {
        if attentionBlocks > 0 {
            throw RWKVError(path, "RWKV-X checkpoint (\(layerCount) RWKV-7 + \(attentionBlocks) attention blocks): \(what) has no place for "
                                  + "its attention blocks (rwkv-convert inspect and rwkv-verify read it)")
        }
    }

    /// Sets the hyperparameter a schema symbol stands for.
    mutating func set(_ d: Dim, _ value: Int) {
        switch d {
        case .C: embeddingSize = value
        case .N: headSize = value
        case .F: ffnSize = value
        case .V: vocabSize = value
        case .decayRank: decayRank = value
        case .iclrRank: iclrRank = value
        case .valueResidualRank: valueResidualRank = value
        case .gateRank: gateRank = value
        case .tokenShiftRank: tokenShiftRank = value
        case .layers: layerCount = value
        case .H, .fixed, .fiveTokenShiftRanks: break   // derived, never read
        }
    }
}
