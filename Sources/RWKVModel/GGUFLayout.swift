import RWKVFormats

/// How the tensors of a BlinkDL checkpoint become the tensors llama.cpp's `rwkv6` / `rwkv7`
/// architectures load, and back. Shapes are torch order (outermost first); ggml's `ne` is the
/// reverse. Every GGUF shape below is the one `load_arch_tensors` in llama.cpp's
/// `src/models/rwkv6.cpp` / `rwkv7.cpp` creates (its `{ne0, ne1, ...}` read backwards), and every
/// transform is the one `convert_hf_to_gguf.py` (Rwkv6Model, Rwkv7Model) applies:
/// - (1,1,C) vectors are squeezed to (C); the loader's `{C, 1, 1}` accepts (C) since ggml pads
///   trailing dimensions with 1.
/// - LoRA matrices are transposed: ggml_mul_mat(w1, x) needs w1 stored (rank, C).
/// - token-shift lerps are stacked into one `time_mix_lerp_fused` (RWKV-7: r w k v a g,
///   RWKV-6: w k v r g, the order the graph slices them in).
/// - RWKV-7 `r_k` (H,N) is flattened to (C); RWKV-6 `time_faaaa` stays (H,N) (`{head_size, n_head}`).
/// - RWKV-7 layer 0: the loader wants `time_mix_v0/v1/v2` shaped like `a0/a1/a2` (the iclr rank),
///   while official checkpoints carry unused v0/v1/v2 of the value-residual rank there; like
///   llama.cpp's converter we write copies of a0/a1/a2 (the graph never reads them on layer 0).
/// Nothing is exponentiated or rescaled: decays go in raw, as the graph applies the formulas.
public enum LayoutTransform: String, Equatable, Sendable, Codable {
    /// Same elements in the same order (identity, squeeze, flatten).
    case reshape
    /// Swap the last two dimensions of the (only) source; leading dimensions are a batch.
    case transpose
    /// Concatenate the sources, each reshaped, in order.
    case stack
}

public struct GGUFTensorLayout: Equatable, Sendable {
    /// GGUF tensor name, e.g. `blk.3.time_mix_key.weight`.
    public let name: String
    /// GGUF shape in torch order.
    public let shape: [Int]
    /// Checkpoint tensors read to make it.
    public let sources: [String]
    /// Their shapes in the checkpoint.
    public let sourceShapes: [[Int]]
    public let transform: LayoutTransform
    /// The canonical names this tensor gives back when inverted (equal to `sources`, except
    /// for RWKV-7 layer 0, whose v0/v1/v2 are written from a0/a1/a2).
    public let canonicalNames: [String]
    /// A big weight matrix that may be stored in a 16-bit or quantized type. Everything else
    /// (vectors, norms, lerps, LoRA pieces, time_mix_first) stays F32, matching what
    /// llama.cpp's converter and `llama-quantize` (`tensor_allows_quantization`) do.
    public let isLargeMatrix: Bool

    public var elementCount: Int { shape.reduce(1, *) }
}

public enum GGUFLayout {
    /// llama.cpp's architecture name for a version.
    public static func architecture(_ version: RWKVVersion) -> String {
        version == .v7 ? "rwkv7" : "rwkv6"
    }

    /// Every GGUF tensor of a model, in file order, with where it comes from.
    public static func tensors(for c: RWKVConfig) -> [GGUFTensorLayout] {
        let C = c.embeddingSize, V = c.vocabSize, F = c.ffnSize, H = c.headCount, N = c.headSize
        var out: [GGUFTensorLayout] = []
        func add(_ name: String, _ shape: [Int], _ sources: [(String, [Int])], _ t: LayoutTransform = .reshape,
                 large: Bool = false, canonical: [String]? = nil) {
            out.append(GGUFTensorLayout(name: name, shape: shape, sources: sources.map(\.0), sourceShapes: sources.map(\.1),
                                        transform: t, canonicalNames: canonical ?? sources.map(\.0), isLargeMatrix: large))
        }
        func vector(_ name: String, _ source: String, _ sourceShape: [Int] = [1, 1, C]) {
            add(name, [C], [(source, sourceShape)])
        }
        func norm(_ name: String, _ source: String) {
            vector(name + ".weight", source + ".weight", [C])
            vector(name + ".bias", source + ".bias", [C])
        }
        func matrix(_ name: String, _ source: String, _ shape: [Int]) {
            add(name, shape, [(source, shape)], large: true)
        }
        func lora(_ name: String, _ source: String, _ sourceShape: [Int], canonical: String? = nil) {
            add(name, Array(sourceShape.dropLast(2)) + [sourceShape[sourceShape.count - 1], sourceShape[sourceShape.count - 2]],
                [(source, sourceShape)], .transpose, canonical: canonical.map { [$0] })
        }

        matrix("token_embd.weight", "emb.weight", [V, C])
        norm("token_embd_norm", "blocks.0.ln0")
        for i in 0..<c.layerCount {
            let b = "blk.\(i).", s = "blocks.\(i)."
            norm(b + "attn_norm", s + "ln1")
            norm(b + "attn_norm_2", s + "ln2")
            switch c.version {
            case .v7:
                let Dw = c.decayRank, Da = c.iclrRank, Dv = c.valueResidualRank, Dg = c.gateRank
                vector(b + "time_mix_w0.weight", s + "att.w0")
                lora(b + "time_mix_w1.weight", s + "att.w1", [C, Dw])
                lora(b + "time_mix_w2.weight", s + "att.w2", [Dw, C])
                vector(b + "time_mix_a0.weight", s + "att.a0")
                lora(b + "time_mix_a1.weight", s + "att.a1", [C, Da])
                lora(b + "time_mix_a2.weight", s + "att.a2", [Da, C])
                if i == 0 {
                    add(b + "time_mix_v0.weight", [C], [(s + "att.a0", [1, 1, C])], canonical: [s + "att.v0"])
                    lora(b + "time_mix_v1.weight", s + "att.a1", [C, Da], canonical: s + "att.v1")
                    lora(b + "time_mix_v2.weight", s + "att.a2", [Da, C], canonical: s + "att.v2")
                } else {
                    vector(b + "time_mix_v0.weight", s + "att.v0")
                    lora(b + "time_mix_v1.weight", s + "att.v1", [C, Dv])
                    lora(b + "time_mix_v2.weight", s + "att.v2", [Dv, C])
                }
                lora(b + "time_mix_g1.weight", s + "att.g1", [C, Dg])
                lora(b + "time_mix_g2.weight", s + "att.g2", [Dg, C])
                add(b + "time_mix_lerp_fused.weight", [6, 1, 1, C],
                    ["x_r", "x_w", "x_k", "x_v", "x_a", "x_g"].map { (s + "att." + $0, [1, 1, C]) }, .stack)
                vector(b + "time_mix_k_k.weight", s + "att.k_k")
                vector(b + "time_mix_k_a.weight", s + "att.k_a")
                vector(b + "time_mix_r_k.weight", s + "att.r_k", [H, N])
                matrix(b + "time_mix_key.weight", s + "att.key.weight", [C, C])
                matrix(b + "time_mix_value.weight", s + "att.value.weight", [C, C])
                matrix(b + "time_mix_receptance.weight", s + "att.receptance.weight", [C, C])
                norm(b + "time_mix_ln", s + "att.ln_x")
                matrix(b + "time_mix_output.weight", s + "att.output.weight", [C, C])
                vector(b + "channel_mix_lerp_k.weight", s + "ffn.x_k")
                matrix(b + "channel_mix_key.weight", s + "ffn.key.weight", [F, C])
                matrix(b + "channel_mix_value.weight", s + "ffn.value.weight", [C, F])
            case .v6:
                let Dm = c.tokenShiftRank, Dd = c.decayRank
                lora(b + "time_mix_w1.weight", s + "att.time_maa_w1", [C, 5 * Dm])
                lora(b + "time_mix_w2.weight", s + "att.time_maa_w2", [5, Dm, C])
                vector(b + "time_mix_lerp_x.weight", s + "att.time_maa_x")
                add(b + "time_mix_lerp_fused.weight", [5, 1, 1, C],
                    ["w", "k", "v", "r", "g"].map { (s + "att.time_maa_" + $0, [1, 1, C]) }, .stack)
                add(b + "time_mix_first.weight", [H, N], [(s + "att.time_faaaa", [H, N])])
                vector(b + "time_mix_decay.weight", s + "att.time_decay")
                lora(b + "time_mix_decay_w1.weight", s + "att.time_decay_w1", [C, Dd])
                lora(b + "time_mix_decay_w2.weight", s + "att.time_decay_w2", [Dd, C])
                matrix(b + "time_mix_key.weight", s + "att.key.weight", [C, C])
                matrix(b + "time_mix_value.weight", s + "att.value.weight", [C, C])
                matrix(b + "time_mix_receptance.weight", s + "att.receptance.weight", [C, C])
                matrix(b + "time_mix_gate.weight", s + "att.gate.weight", [C, C])
                norm(b + "time_mix_ln", s + "att.ln_x")
                matrix(b + "time_mix_output.weight", s + "att.output.weight", [C, C])
                vector(b + "channel_mix_lerp_k.weight", s + "ffn.time_maa_k")
                vector(b + "channel_mix_lerp_r.weight", s + "ffn.time_maa_r")
                matrix(b + "channel_mix_key.weight", s + "ffn.key.weight", [F, C])
                matrix(b + "channel_mix_receptance.weight", s + "ffn.receptance.weight", [C, C])
                matrix(b + "channel_mix_value.weight", s + "ffn.value.weight", [C, F])
            }
        }
        norm("output_norm", "ln_out")
        matrix("output.weight", "head.weight", [V, C])
        return out
    }

    /// Builds a GGUF tensor's values from its sources' values (each in its checkpoint layout).
    public static func apply(_ t: GGUFTensorLayout, to sources: [[Float]]) -> [Float] {
        switch t.transform {
        case .reshape, .stack:
            return Array(sources.joined())
        case .transpose:
            return transposeLastTwo(sources[0], shape: t.sourceShapes[0])
        }
    }

    /// Splits a GGUF tensor's values back into its canonical tensors (the exact inverse of `apply`).
    public static func invert(_ t: GGUFTensorLayout, _ values: [Float]) -> [[Float]] {
        switch t.transform {
        case .reshape:
            return [values]
        case .stack:
            let n = values.count / t.sources.count
            return (0..<t.sources.count).map { Array(values[$0 * n..<($0 + 1) * n]) }
        case .transpose:
            return [transposeLastTwo(values, shape: t.shape)]
        }
    }

    /// Transposes the last two dimensions of a row-major tensor of `shape`.
    static func transposeLastTwo(_ x: [Float], shape: [Int]) -> [Float] {
        let rows = shape[shape.count - 2], cols = shape[shape.count - 1]
        let batch = shape.dropLast(2).reduce(1, *)
        var out = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for b in 0..<batch {
                    let base = b * rows * cols
                    for r in 0..<rows {
                        for c in 0..<cols { dst[base + c * rows + r] = src[base + r * cols + c] }
                    }
                }
            }
        }
        return out
    }
}
