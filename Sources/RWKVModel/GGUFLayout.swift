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
        ArchitectureSchema.of(version).ggufArchitecture
    }

    /// Every GGUF tensor of a model, in file order, with where it comes from: derived from the
    /// architecture's schema (model-level tensors first, then each block in llama.cpp's
    /// converter's order, then the head).
    public static func tensors(for c: RWKVConfig) -> [GGUFTensorLayout] {
        let rows = c.schema.tensors
        func group(_ rows: [TensorSpec], layer: Int, prefix: String) -> [String: GGUFTensorLayout] {
            var byName: [String: [TensorSpec]] = [:]
            for row in rows { byName[row.gguf.name, default: []].append(row) }
            return byName.reduce(into: [:]) { out, entry in
                out[entry.key] = layout(prefix + entry.key, entry.value, layer: layer, config: c)
            }
        }
        let start = rows.filter { $0.scope == .start } + rows.filter { $0.scope == .firstLayer }
        let end = rows.filter { $0.scope == .end }
        let first = group(start, layer: 0, prefix: ""), last = group(end, layer: 0, prefix: "")
        var out = start.map(\.gguf.name).uniqued().compactMap { first[$0] }
        let layerRows = rows.filter { $0.scope == .layer }
        for i in 0..<c.layerCount {
            let layouts = group(layerRows, layer: i, prefix: "blk.\(i).")
            out += c.schema.ggufLayerOrder.compactMap { layouts[$0] }
        }
        out += end.map(\.gguf.name).uniqued().compactMap { last[$0] }
        return out
    }

    /// One GGUF tensor made of `rows` (several when stacked) of block `layer`.
    private static func layout(_ name: String, _ rows: [TensorSpec], layer: Int, config c: RWKVConfig) -> GGUFTensorLayout {
        if rows.count > 1 || rows[0].gguf.stackIndex != nil {
            let ordered = rows.sorted { ($0.gguf.stackIndex ?? 0) < ($1.gguf.stackIndex ?? 0) }
            let names = ordered.map { $0.checkpointName(layer: layer) }
            return GGUFTensorLayout(name: name, shape: [ordered.count, 1, 1, c.embeddingSize], sources: names,
                                    sourceShapes: ordered.map { c.shape($0.shape) }, transform: .stack,
                                    canonicalNames: names, isLargeMatrix: false)
        }
        let row = rows[0]
        // RWKV-7 block 0: llama.cpp wants v0/v1/v2 shaped like a0/a1/a2; write copies of those.
        let source = layer == 0 ? row.firstLayerStandIn.flatMap { s in c.schema.tensors.first { $0.name == s } } ?? row : row
        let sourceShape = c.shape(source.shape)
        let transform: LayoutTransform = source.role == .lora || source.role == .loraStack ? .transpose : .reshape
        let shape: [Int]
        if let explicit = row.gguf.shape {
            shape = c.shape(explicit)
        } else if transform == .transpose {
            shape = sourceShape.dropLast(2) + [sourceShape[sourceShape.count - 1], sourceShape[sourceShape.count - 2]]
        } else if row.role == .vector || row.role == .norm {
            shape = [c.embeddingSize]
        } else {
            shape = sourceShape
        }
        return GGUFTensorLayout(name: name, shape: shape, sources: [source.checkpointName(layer: layer)],
                                sourceShapes: [sourceShape], transform: transform,
                                canonicalNames: [row.checkpointName(layer: layer)], isLargeMatrix: row.role.isLargeMatrix)
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

extension Array where Element: Hashable {
    /// The elements in order, each once.
    func uniqued() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
