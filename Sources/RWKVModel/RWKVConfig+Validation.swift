import RWKVFormats

/// Every dimension a file gives (tensor shapes, GGUF metadata) is checked here, once, before any
/// code sizes a buffer, builds a layout or multiplies by it: zero widths trap in integer
/// conversions and matrix code further on, and llama.cpp aborts on the GGUF they would make;
/// absurd sizes overflow products. `detect` and `fromGGUF` end with it.
extension RWKVConfig {
    /// Upper bounds far beyond any released model (the largest: 61 layers, n_embd 4096,
    /// vocabulary 65536, FFN 16384, LoRA ranks under 1024), small enough that every product of
    /// two dimensions, and the whole model's element count, fits in 64 bits.
    public static let limits = (layers: 1 << 12, embedding: 1 << 16, vocabulary: 1 << 24, ffn: 1 << 20, rank: 1 << 16)

    /// Throws, naming `path`, when a dimension is zero where the architecture needs at least 1,
    /// beyond `limits`, or inconsistent (n_embd not a multiple of the head size).
    public func validate(path: String) throws {
        let L = Self.limits
        var dims: [(String, Int, Int)] = [
            ("layer count", layerCount, L.layers), ("n_embd", embeddingSize, L.embedding),
            ("head size", headSize, L.embedding), ("vocabulary size", vocabSize, L.vocabulary),
            ("FFN width", ffnSize, L.ffn), ("decay LoRA rank", decayRank, L.rank),
        ]
        switch version {
        case .v7:
            dims += [("in-context learning rate LoRA rank", iclrRank, L.rank), ("gate LoRA rank", gateRank, L.rank)]
            // Layer 0 has no value residual: a one-layer model needs no v1/v2 rank.
            if layerCount > 1 { dims.append(("value residual LoRA rank", valueResidualRank, L.rank)) }
        case .v6:
            dims.append(("token-shift LoRA rank", tokenShiftRank, L.rank))
        }
        for (what, value, limit) in dims {
            guard value >= 1 else { throw RWKVError(path, "\(what) is \(value); an RWKV model needs at least 1") }
            guard value <= limit else { throw RWKVError(path, "\(what) is \(value); this tool reads at most \(limit)") }
        }
        guard embeddingSize % headSize == 0 else {
            throw RWKVError(path, "n_embd \(embeddingSize) is not a multiple of the head size \(headSize)")
        }
        if attentionBlocks > 0 { try validateRWKVX(path: path) }
        // The whole model's element count (with the limits above it cannot overflow; checked
        // anyway, so a future larger limit cannot make it trap).
        guard elementCount != nil else { throw RWKVError(path, "the model's dimensions overflow 64-bit sizes") }
    }

    /// Elements of all tensors together, or nil on overflow.
    var elementCount: Int? {
        var total = 0
        for (_, shape) in expectedShapes {
            var n = 1
            for d in shape {
                let (p, o) = n.multipliedReportingOverflow(by: d)
                guard !o else { return nil }
                n = p
            }
            let (s, o) = total.addingReportingOverflow(n)
            guard !o else { return nil }
            total = s
        }
        return total
    }
}
