import RWKVFormats

/// One table per architecture says everything the code knows about a checkpoint's tensors:
/// BlinkDL name, shape in symbols (C, H, N, F, V and the LoRA ranks, read from the checkpoint's
/// shapes: docs/formats.md), role, and where llama.cpp's GGUF puts it.
/// The shape check and hyperparameter detection (`RWKVConfig.detect`), the GGUF layout
/// (`GGUFLayout.tensors(for:)`) and the weight loader's orientation (`WeightLoader`) are all
/// derived from these rows, the way gguf-py's `MODEL_TENSORS` + `TENSOR_NAMES` drive its
/// converter. Adding a layout or a tensor means editing a row here, nothing else.

/// A dimension of a tensor shape. Ranks are symbols: they are read from the checkpoint's
/// shapes, never computed from the width.
public enum Dim: Hashable, Sendable {
    /// n_embd, heads, head size, FFN width, vocabulary.
    case C, H, N, F, V
    /// RWKV-7: w, a, v, g LoRA ranks (RWKV-6: `decayRank` is time_decay_w1's).
    case decayRank, iclrRank, valueResidualRank, gateRank
    /// RWKV-6: the token-shift LoRA rank per lerp (time_maa_w1 is C × 5·Dm).
    case tokenShiftRank
    /// RWKV-6: 5·Dm, the five token-shift LoRAs side by side (time_maa_w1's width).
    case fiveTokenShiftRanks
    case fixed(Int)
    /// Not a tensor dimension: the block count, for config.json checks.
    case layers
}

/// What a tensor is to the forward pass, which decides its storage in every layout.
public enum TensorRole: Sendable, Equatable {
    /// (V, C) rows looked up by token.
    case embedding
    /// (V, C) output matrix.
    case head
    /// (out, in) torch Linear weight: a large matrix llama.cpp may quantize.
    case linear
    /// (in, out) LoRA factor used as x @ W; GGUF stores it transposed (ggml_mul_mat wants (out, in)).
    case lora
    /// RWKV-6 time_maa_w2 (5, Dm, C): five (in, out) factors, each transposed in GGUF.
    case loraStack
    /// A per-channel parameter: token-shift lerps, decay/iclr/value biases, k_k, k_a.
    case vector
    /// LayerNorm / GroupNorm weight or bias.
    case norm
    /// (H, N): RWKV-7 r_k, RWKV-6 time_faaaa.
    case perHead

    /// Stored in the requested (16-bit or quantized) type; everything else stays F32 as
    /// llama.cpp's converter and `tensor_allows_quantization` keep it.
    public var isLargeMatrix: Bool { self == .embedding || self == .head || self == .linear }
}

/// Where a tensor goes in llama.cpp's GGUF.
public struct GGUFPlacement: Sendable {
    /// GGUF name; for layer tensors without the `blk.N.` prefix.
    public let name: String
    /// Index among the tensors stacked into `name` (token-shift lerps), or nil for a tensor of its own.
    public let stackIndex: Int?
    /// The GGUF shape when it is not the one the role implies (RWKV-7 r_k is flattened to (C)).
    public let shape: [Dim]?
}

public struct TensorSpec: Sendable {
    public enum Scope: Sendable {
        /// Before the blocks (`emb.weight`), or after them (`ln_out`, `head`).
        case start, end
        /// In every block, `blocks.N.` + name.
        case layer
        /// Only in block 0 (`blocks.0.ln0`); in GGUF a model-level tensor.
        case firstLayer
    }
    /// BlinkDL name, without `blocks.N.` for block tensors.
    public let name: String
    public let scope: Scope
    public let shape: [Dim]
    public let role: TensorRole
    public let gguf: GGUFPlacement
    /// The name in the architecture's Hugging Face scheme (fla-hub RWKV-7, HF RWKV-6), without
    /// the block prefix (`ArchitectureSchema.hfLayerPrefix`) for block tensors.
    public let hf: String
    /// The shape the Hugging Face scheme stores when it is not the BlinkDL one (fla's (C)
    /// vectors); LoRA factors the scheme transposes (`hfTransposesLoRA`) are not listed here.
    public let hfShape: [Dim]?
    /// RWKV-7 v0/v1/v2: present in block 0 but unused there (any rank); llama.cpp wants them
    /// shaped like a0/a1/a2, so the GGUF holds copies of this tensor instead.
    public let firstLayerStandIn: String?
}

/// The schema of one architecture.
public struct ArchitectureSchema: Sendable {
    public let version: RWKVVersion
    /// llama.cpp's architecture name, the prefix of its metadata keys.
    public let ggufArchitecture: String
    /// Rows in the order official checkpoints hold them (RWKV-LM's parameter order).
    public let tensors: [TensorSpec]
    /// The layer rows in the order llama.cpp's converter writes their GGUF tensors (one row of
    /// a fused tensor stands for it).
    public let ggufLayerRows: [String]
    /// Layer tensors' GGUF names in the order llama.cpp's converter writes them (GGUF file order).
    public var ggufLayerOrder: [String] { ggufLayerRows.map { row($0)!.gguf.name } }
    /// A block-0 tensor only this architecture has.
    public let markers: [String]
    /// Hugging Face scheme: block prefix (`model.layers.`), whether LoRA factors are stored
    /// transposed (as nn.Linear (out, in) weights), and `config.json`'s hyperparameter keys.
    public let hfLayerPrefix: String
    public let hfTransposesLoRA: Bool
    /// A single tensor some folders store the token-shift lerps in, stacked (fla's 2025 `attn.x_x`).
    public let hfFusedLerps: String?
    public let hfConfigKeys: [(key: String, dim: Dim)]
    /// Values published converters write into config.json whatever the model (`null` is
    /// accepted for every key): the reader takes shapes from the tensors and does not hold
    /// these against them.
    public let hfConfigPlaceholders: [(key: String, value: Int)]
    /// config.json's `model_type` and `architectures` entry.
    public let hfModelType: String
    public let hfModelClass: String

    /// The embedding's and the output matrix's rows: every architecture has one of each, found by role.
    public var embeddingRow: TensorSpec { tensors.first { $0.role == .embedding }! }
    public var headRow: TensorSpec { tensors.first { $0.role == .head }! }
    public var embeddingName: String { embeddingRow.name }
    public var headName: String { headRow.name }

    /// The RWKV-5 row of RWKV-6 tensor `key` (nil: an RWKV-5 stores it as it is).
    public static func rwkv5Row(_ key: RWKV6Key) -> EagleRow? { rwkv5.first { $0.rwkv6 == key } }

    /// The row of a block-relative or model-level BlinkDL name.
    public func row(_ name: String) -> TensorSpec? { tensors.first { $0.name == name } }

    public static func of(_ version: RWKVVersion) -> ArchitectureSchema {
        version == .v7 ? rwkv7 : rwkv6
    }

    public static let all = [rwkv7, rwkv6]

    /// Checkpoints of newer architectures llama.cpp cannot run, recognised by a tensor name
    /// part only they have (RWKV-LM `RWKV-v7`: DeepEmbed's `ffn.s_emb`, DEA's `qkv`, RWKV-8's
    /// `ffn.enn`), so they are refused by name rather
    /// than converted without their extra tensors.
    public static let unsupportedVariants: [(marker: String, name: String)] = [
        (".ffn.s_emb", "RWKV-7a (DeepEmbed)"),
        (".qkv.", "RWKV-7b (DeepEmbed Attention)"),
        (".ffn.enn.", "RWKV-8"),
    ]
}

// MARK: - Keys

/// A tensor of one architecture's checkpoints, named once: the raw value is the BlinkDL name
/// (block-relative for block tensors), and the schema's row says the rest. Code loads, maps and
/// names tensors by key; `Tests/RWKVModelTests/TensorKeyTests.swift` keeps tensor-name string
/// literals out of every other source file.
public protocol TensorKey: RawRepresentable, CaseIterable, Hashable, Sendable where RawValue == String {
    static var schema: ArchitectureSchema { get }
}

extension TensorKey {
    /// The key's schema row.
    public var spec: TensorSpec { Self.schema.row(rawValue)! }   // every key has a row (TensorKeyTests)
    /// The checkpoint name in block `layer` (ignored outside blocks).
    public func name(layer: Int) -> String { spec.checkpointName(layer: layer) }
    /// The checkpoint name of a tensor outside the blocks.
    public var name: String { spec.checkpointName(layer: 0) }
    /// The key of a block-relative or model-level checkpoint name (nil: not this architecture's).
    public init?(row name: String) { self.init(rawValue: name) }
}

/// RWKV-7 (x070) tensors.
public enum RWKV7Key: String, TensorKey {
    case emb = "emb.weight"
    case ln0Weight = "ln0.weight", ln0Bias = "ln0.bias", ln1Weight = "ln1.weight", ln1Bias = "ln1.bias"
    case ln2Weight = "ln2.weight", ln2Bias = "ln2.bias"
    case xR = "att.x_r", xW = "att.x_w", xK = "att.x_k", xV = "att.x_v", xA = "att.x_a", xG = "att.x_g"
    case w0 = "att.w0", a0 = "att.a0", v0 = "att.v0", kK = "att.k_k", kA = "att.k_a"
    case w1 = "att.w1", w2 = "att.w2", a1 = "att.a1", a2 = "att.a2", v1 = "att.v1", v2 = "att.v2", g1 = "att.g1", g2 = "att.g2"
    case rK = "att.r_k"
    case receptance = "att.receptance.weight", key = "att.key.weight", value = "att.value.weight", output = "att.output.weight"
    case lnXWeight = "att.ln_x.weight", lnXBias = "att.ln_x.bias"
    case ffnXK = "ffn.x_k", ffnKey = "ffn.key.weight", ffnValue = "ffn.value.weight"
    case lnOutWeight = "ln_out.weight", lnOutBias = "ln_out.bias"
    case head = "head.weight"
    public static var schema: ArchitectureSchema { .rwkv7 }
    /// The six token-shift lerps, in the order of llama.cpp's fused tensor.
    public static let lerps: [RWKV7Key] = [.xR, .xW, .xK, .xV, .xA, .xG]
}

/// RWKV-6 (x060) tensors.
public enum RWKV6Key: String, TensorKey {
    case emb = "emb.weight"
    case ln0Weight = "ln0.weight", ln0Bias = "ln0.bias", ln1Weight = "ln1.weight", ln1Bias = "ln1.bias"
    case ln2Weight = "ln2.weight", ln2Bias = "ln2.bias"
    case maaX = "att.time_maa_x", maaW = "att.time_maa_w", maaK = "att.time_maa_k", maaV = "att.time_maa_v"
    case maaR = "att.time_maa_r", maaG = "att.time_maa_g"
    case decay = "att.time_decay", maaW1 = "att.time_maa_w1", maaW2 = "att.time_maa_w2"
    case decayW1 = "att.time_decay_w1", decayW2 = "att.time_decay_w2", faaaa = "att.time_faaaa"
    case receptance = "att.receptance.weight", key = "att.key.weight", value = "att.value.weight"
    case output = "att.output.weight", gate = "att.gate.weight"
    case lnXWeight = "att.ln_x.weight", lnXBias = "att.ln_x.bias"
    case ffnMaaK = "ffn.time_maa_k", ffnMaaR = "ffn.time_maa_r"
    case ffnKey = "ffn.key.weight", ffnReceptance = "ffn.receptance.weight", ffnValue = "ffn.value.weight"
    case lnOutWeight = "ln_out.weight", lnOutBias = "ln_out.bias"
    case head = "head.weight"
    public static var schema: ArchitectureSchema { .rwkv6 }
    /// The five lerps the token-shift LoRA's outputs add to, in its order (w, k, v, r, g).
    public static let lerps: [RWKV6Key] = [.maaW, .maaK, .maaV, .maaR, .maaG]
}

// MARK: - The tables

/// A row; `hf` defaults to the BlinkDL name (the RWKV-6 scheme renames by rule, `rwkv6HFName`).
private func spec(_ key: some TensorKey, _ shape: [Dim], _ role: TensorRole, gguf: String, hf: String? = nil, hfShape: [Dim]? = nil,
                  scope: TensorSpec.Scope = .layer, stack: Int? = nil, ggufShape: [Dim]? = nil, firstLayerStandIn: String? = nil) -> TensorSpec {
    let name = key.rawValue
    return TensorSpec(name: name, scope: scope, shape: shape, role: role,
               gguf: GGUFPlacement(name: gguf, stackIndex: stack, shape: ggufShape), hf: hf ?? name, hfShape: hfShape,
               firstLayerStandIn: firstLayerStandIn)
}

private func norms<K: TensorKey>(_ weight: K, _ bias: K, gguf: String, hf: String? = nil, scope: TensorSpec.Scope = .layer) -> [TensorSpec] {
    [spec(weight, [.C], .norm, gguf: gguf + ".weight", hf: hf.map { $0 + ".weight" }, scope: scope),
     spec(bias, [.C], .norm, gguf: gguf + ".bias", hf: hf.map { $0 + ".bias" }, scope: scope)]
}

/// The RWKV-6 Hugging Face scheme (BBuf/RWKV-World-HF-Tokenizer `convert_rwkv6_checkpoint_to_hf.py`,
/// transformers PR #34918): BlinkDL names with `att` -> `attention`, `ffn` -> `feed_forward`,
/// `emb` -> `embeddings`, block 0's `ln0` -> `pre_ln`, all under `rwkv.` except the head; shapes kept.
private func rwkv6HFName(_ row: TensorSpec) -> TensorSpec {
    var hf = row.name
    if hf.hasPrefix("att.") { hf = "attention." + hf.dropFirst(4) }
    if hf.hasPrefix("ffn.") { hf = "feed_forward." + hf.dropFirst(4) }
    if hf.hasPrefix("ln0.") { hf = "pre_ln." + hf.dropFirst(4) }
    if hf.hasPrefix("emb.") { hf = "embeddings." + hf.dropFirst(4) }
    if row.scope != .layer && row.scope != .firstLayer && row.name != "head.weight" { hf = "rwkv." + hf }
    return TensorSpec(name: row.name, scope: row.scope, shape: row.shape, role: row.role, gguf: row.gguf, hf: hf,
                      hfShape: nil, firstLayerStandIn: row.firstLayerStandIn)
}

private let channel: [Dim] = [.fixed(1), .fixed(1), .C]

/// The rows of `keys`, in order (the key of one row of a fused tensor stands for it).
private func ggufNames<K: TensorKey>(_ keys: [K]) -> [String] { keys.map(\.rawValue) }

extension ArchitectureSchema {
    /// RWKV-7 (x070): RWKV-LM `RWKV-v7/train_temp` parameter order; llama.cpp `src/models/rwkv7.cpp`.
    public static let rwkv7 = ArchitectureSchema(
        version: .v7, ggufArchitecture: "rwkv7",
        tensors: {
            typealias K = RWKV7Key
            var rows = [spec(K.emb, [.V, .C], .embedding, gguf: "token_embd.weight", hf: "model.embeddings.weight", scope: .start)]
            rows += norms(K.ln0Weight, K.ln0Bias, gguf: "token_embd_norm", hf: "pre_norm", scope: .firstLayer)
            rows += norms(K.ln1Weight, K.ln1Bias, gguf: "attn_norm", hf: "attn_norm")
            rows += norms(K.ln2Weight, K.ln2Bias, gguf: "attn_norm_2", hf: "ffn_norm")
            rows += K.lerps.enumerated().map {
                spec($1, channel, .vector, gguf: "time_mix_lerp_fused.weight", hf: "attn." + $1.rawValue.dropFirst(4), stack: $0)
            }
            rows += [
                spec(K.w0, channel, .vector, gguf: "time_mix_w0.weight", hf: "attn.w_lora.lora.2.bias", hfShape: [.C]),
                spec(K.a0, channel, .vector, gguf: "time_mix_a0.weight", hf: "attn.a_lora.lora.2.bias", hfShape: [.C]),
                spec(K.v0, channel, .vector, gguf: "time_mix_v0.weight", hf: "attn.v_lora.lora.2.bias", hfShape: [.C], firstLayerStandIn: K.a0.rawValue),
                spec(K.kK, channel, .vector, gguf: "time_mix_k_k.weight", hf: "attn.k_k", hfShape: [.C]),
                spec(K.kA, channel, .vector, gguf: "time_mix_k_a.weight", hf: "attn.k_a", hfShape: [.C]),
                spec(K.w1, [.C, .decayRank], .lora, gguf: "time_mix_w1.weight", hf: "attn.w_lora.lora.0.weight"),
                spec(K.w2, [.decayRank, .C], .lora, gguf: "time_mix_w2.weight", hf: "attn.w_lora.lora.2.weight"),
                spec(K.a1, [.C, .iclrRank], .lora, gguf: "time_mix_a1.weight", hf: "attn.a_lora.lora.0.weight"),
                spec(K.a2, [.iclrRank, .C], .lora, gguf: "time_mix_a2.weight", hf: "attn.a_lora.lora.2.weight"),
                spec(K.v1, [.C, .valueResidualRank], .lora, gguf: "time_mix_v1.weight", hf: "attn.v_lora.lora.0.weight", firstLayerStandIn: K.a1.rawValue),
                spec(K.v2, [.valueResidualRank, .C], .lora, gguf: "time_mix_v2.weight", hf: "attn.v_lora.lora.2.weight", firstLayerStandIn: K.a2.rawValue),
                spec(K.g1, [.C, .gateRank], .lora, gguf: "time_mix_g1.weight", hf: "attn.g_lora.lora.0.weight"),
                spec(K.g2, [.gateRank, .C], .lora, gguf: "time_mix_g2.weight", hf: "attn.g_lora.lora.2.weight"),
                spec(K.rK, [.H, .N], .perHead, gguf: "time_mix_r_k.weight", hf: "attn.r_k", ggufShape: [.C]),
                spec(K.receptance, [.C, .C], .linear, gguf: "time_mix_receptance.weight", hf: "attn.r_proj.weight"),
                spec(K.key, [.C, .C], .linear, gguf: "time_mix_key.weight", hf: "attn.k_proj.weight"),
                spec(K.value, [.C, .C], .linear, gguf: "time_mix_value.weight", hf: "attn.v_proj.weight"),
                spec(K.output, [.C, .C], .linear, gguf: "time_mix_output.weight", hf: "attn.o_proj.weight"),
            ]
            rows += norms(K.lnXWeight, K.lnXBias, gguf: "time_mix_ln", hf: "attn.g_norm")
            rows += [
                spec(K.ffnXK, channel, .vector, gguf: "channel_mix_lerp_k.weight", hf: "ffn.x_k", hfShape: [.C]),
                spec(K.ffnKey, [.F, .C], .linear, gguf: "channel_mix_key.weight", hf: "ffn.key.weight"),
                spec(K.ffnValue, [.C, .F], .linear, gguf: "channel_mix_value.weight", hf: "ffn.value.weight"),
            ]
            rows += norms(K.lnOutWeight, K.lnOutBias, gguf: "output_norm", hf: "model.norm", scope: .end)
            rows += [spec(K.head, [.V, .C], .head, gguf: "output.weight", hf: "lm_head.weight", scope: .end)]
            return rows
        }(),
        // llama.cpp's converter order; a fused tensor stands for all its rows (x_r: the six lerps).
        ggufLayerRows: ggufNames([RWKV7Key.ln1Weight, .ln1Bias, .ln2Weight, .ln2Bias, .w0, .w1, .w2, .a0, .a1, .a2,
                                   .v0, .v1, .v2, .g1, .g2, .xR, .kK, .kA, .rK, .key, .value, .receptance,
                                   .lnXWeight, .lnXBias, .output, .ffnXK, .ffnKey, .ffnValue]),
        markers: [RWKV7Key.xR.rawValue, RWKV7Key.rK.rawValue],
        // fla-hub (fla-org/flash-linear-attention `utils/convert_from_rwkv7.py`, the rwkv7-hf package).
        hfLayerPrefix: "model.layers.", hfTransposesLoRA: true, hfFusedLerps: "attn.x_x",
        hfConfigKeys: [("hidden_size", .C), ("num_hidden_layers", .layers), ("head_dim", .N), ("intermediate_size", .F),
                       ("vocab_size", .V), ("decay_low_rank_dim", .decayRank), ("a_low_rank_dim", .iclrRank),
                       ("v_low_rank_dim", .valueResidualRank), ("gate_low_rank_dim", .gateRank)],
        hfConfigPlaceholders: [],
        hfModelType: "rwkv7", hfModelClass: "RWKV7ForCausalLM")

    /// RWKV-6 (x060): RWKV-LM `RWKV-v6` parameter order; llama.cpp `src/models/rwkv6.cpp`.
    public static let rwkv6 = ArchitectureSchema(
        version: .v6, ggufArchitecture: "rwkv6",
        tensors: {
            typealias K = RWKV6Key
            var rows: [TensorSpec] = []
            rows += [spec(K.emb, [.V, .C], .embedding, gguf: "token_embd.weight", scope: .start)]
            rows += norms(K.ln0Weight, K.ln0Bias, gguf: "token_embd_norm", scope: .firstLayer)
            rows += norms(K.ln1Weight, K.ln1Bias, gguf: "attn_norm")
            rows += norms(K.ln2Weight, K.ln2Bias, gguf: "attn_norm_2")
            rows += [spec(K.maaX, channel, .vector, gguf: "time_mix_lerp_x.weight")]
            rows += K.lerps.enumerated().map { spec($1, channel, .vector, gguf: "time_mix_lerp_fused.weight", stack: $0) }
            rows += [
                spec(K.decay, channel, .vector, gguf: "time_mix_decay.weight"),
                spec(K.maaW1, [.C, .fiveTokenShiftRanks], .lora, gguf: "time_mix_w1.weight"),
                spec(K.maaW2, [.fixed(5), .tokenShiftRank, .C], .loraStack, gguf: "time_mix_w2.weight"),
                spec(K.decayW1, [.C, .decayRank], .lora, gguf: "time_mix_decay_w1.weight"),
                spec(K.decayW2, [.decayRank, .C], .lora, gguf: "time_mix_decay_w2.weight"),
                spec(K.faaaa, [.H, .N], .perHead, gguf: "time_mix_first.weight"),
                spec(K.receptance, [.C, .C], .linear, gguf: "time_mix_receptance.weight"),
                spec(K.key, [.C, .C], .linear, gguf: "time_mix_key.weight"),
                spec(K.value, [.C, .C], .linear, gguf: "time_mix_value.weight"),
                spec(K.output, [.C, .C], .linear, gguf: "time_mix_output.weight"),
                spec(K.gate, [.C, .C], .linear, gguf: "time_mix_gate.weight"),
            ]
            rows += norms(K.lnXWeight, K.lnXBias, gguf: "time_mix_ln")
            rows += [
                spec(K.ffnMaaK, channel, .vector, gguf: "channel_mix_lerp_k.weight"),
                spec(K.ffnMaaR, channel, .vector, gguf: "channel_mix_lerp_r.weight"),
                spec(K.ffnKey, [.F, .C], .linear, gguf: "channel_mix_key.weight"),
                spec(K.ffnReceptance, [.C, .C], .linear, gguf: "channel_mix_receptance.weight"),
                spec(K.ffnValue, [.C, .F], .linear, gguf: "channel_mix_value.weight"),
            ]
            rows += norms(K.lnOutWeight, K.lnOutBias, gguf: "output_norm", scope: .end)
            rows += [spec(K.head, [.V, .C], .head, gguf: "output.weight", scope: .end)]
            return rows.map(rwkv6HFName)
        }(),
        ggufLayerRows: ggufNames([RWKV6Key.ln1Weight, .ln1Bias, .ln2Weight, .ln2Bias, .maaW1, .maaW2, .maaX, .maaW,
                                   .faaaa, .decay, .decayW1, .decayW2, .key, .value, .receptance, .gate,
                                   .lnXWeight, .lnXBias, .output, .ffnMaaK, .ffnMaaR, .ffnKey, .ffnReceptance, .ffnValue]),
        markers: [RWKV6Key.maaX.rawValue],
        hfLayerPrefix: "rwkv.blocks.", hfTransposesLoRA: false, hfFusedLerps: nil,
        // transformers `Rwkv6Config` / BBuf's configuration_rwkv6.py. BBuf/RWKV-World-HF-Tokenizer's
        // RWKV-5 and RWKV-6 converters write `intermediate_size` null and `vocab_size` 65536
        // whenever the World tokenizer is used (and `num_attention_heads` 64, not read).
        hfConfigKeys: [("hidden_size", .C), ("num_hidden_layers", .layers), ("head_size", .N),
                       ("intermediate_size", .F), ("vocab_size", .V)],
        hfConfigPlaceholders: [("vocab_size", 65536)],
        hfModelType: "rwkv6", hfModelClass: "Rwkv6ForCausalLM")
}

// MARK: - RWKV-5 ("Eagle"), read as the RWKV-6 that computes the same

/// RWKV-5 versions as the official `rwkv` package (0.8.32, `rwkv/model.py`) tells them apart:
/// `att.ln_x` means 5 (without it the file is RWKV-4), `att.gate.weight` 5.1, and a 2-D
/// `att.time_decay` whose second dimension is above 1 means 5.2.
public enum EagleVersion: String, Codable, Sendable, CaseIterable {
    case v5_0 = "5.0", v5_1 = "5.1", v5_2 = "5.2"
}

/// How an RWKV-6 tensor is made from an RWKV-5 checkpoint. An RWKV-5 block is an RWKV-6 block
/// whose token-shift and decay LoRAs add nothing (docs/formats.md, "RWKV-5").
public enum EagleRule: Sendable, Hashable {
    /// `time_maa` = 1 − `time_mix`: RWKV-5 mixes x·μ + x₋₁·(1 − μ), RWKV-6 x + (x₋₁ − x)·maa.
    case oneMinus
    /// A value per head (5.0, 5.1: [H]) or per channel (5.2: [H, N]), given to every channel.
    case perChannel
    /// The bonus u: `time_faaaa` as stored, `time_first` (older files) as exp(time_first); per
    /// head or per channel as `perChannel`.
    case bonus
    /// A LoRA's first factor (x @ W1): zero, so tanh(x @ W1) = 0 and the LoRA adds nothing.
    case zero
    /// A LoRA's second factor: zero in the view; `rwkv-upgrade v5-to-v6` draws it as RWKV-LM's
    /// init does (uniform ±0.01), so the LoRA learns once W1 moves (W1's gradient goes through it).
    case secondFactor
    /// A lerp only the zero LoRAs read (`time_maa_x`, `time_maa_w`): RWKV-LM's RWKV-6 init,
    /// 1 − (c/C)^(1 − l/L).
    case trainerLerp
}

public struct EagleRow: Sendable {
    /// The RWKV-6 tensor.
    public let rwkv6: RWKV6Key
    /// The RWKV-5 tensor it is made from (BlinkDL names, the first one the block holds), if any.
    public let rwkv5: [String]
    /// That tensor's name in the HF RWKV-5 scheme (BBuf/RWKV-World-HF-Tokenizer
    /// `convert_rwkv5_checkpoint_to_hf.py`), block-relative.
    public let hf: String?
    public let rule: EagleRule
}

extension ArchitectureSchema {
    /// The RWKV-6 tensors an RWKV-5 lacks or holds under another name or shape. Every other
    /// RWKV-6 tensor is in an RWKV-5 checkpoint under the same name and shape (and HF name).
    public static let rwkv5: [EagleRow] = [
        EagleRow(rwkv6: .maaX, rwkv5: [], hf: nil, rule: .trainerLerp),
        EagleRow(rwkv6: .maaW, rwkv5: [], hf: nil, rule: .trainerLerp),
        EagleRow(rwkv6: .maaK, rwkv5: ["att.time_mix_k"], hf: "attention.time_mix_key", rule: .oneMinus),
        EagleRow(rwkv6: .maaV, rwkv5: ["att.time_mix_v"], hf: "attention.time_mix_value", rule: .oneMinus),
        EagleRow(rwkv6: .maaR, rwkv5: ["att.time_mix_r"], hf: "attention.time_mix_receptance", rule: .oneMinus),
        // 5.0 has no gate: its time_maa_g is never read (zero).
        EagleRow(rwkv6: .maaG, rwkv5: ["att.time_mix_g"], hf: "attention.time_mix_gate", rule: .oneMinus),
        EagleRow(rwkv6: .decay, rwkv5: ["att.time_decay"], hf: "attention.time_decay", rule: .perChannel),
        EagleRow(rwkv6: .maaW1, rwkv5: [], hf: nil, rule: .zero),
        EagleRow(rwkv6: .maaW2, rwkv5: [], hf: nil, rule: .secondFactor),
        EagleRow(rwkv6: .decayW1, rwkv5: [], hf: nil, rule: .zero),
        EagleRow(rwkv6: .decayW2, rwkv5: [], hf: nil, rule: .secondFactor),
        EagleRow(rwkv6: .faaaa, rwkv5: ["att.time_faaaa", "att.time_first"], hf: "attention.time_faaaa", rule: .bonus),
        EagleRow(rwkv6: .ffnMaaK, rwkv5: ["ffn.time_mix_k"], hf: "feed_forward.time_mix_key", rule: .oneMinus),
        EagleRow(rwkv6: .ffnMaaR, rwkv5: ["ffn.time_mix_r"], hf: "feed_forward.time_mix_receptance", rule: .oneMinus),
    ]

    /// RWKV-LM's RWKV-6 LoRA ranks for a width (`RWKV-v6/src/model.py`: D_MIX_LORA 32 and
    /// D_DECAY_LORA 64, doubled at n_embd 4096), the ranks an RWKV-5 is read with.
    public static func rwkv6TrainerRanks(embedding c: Int) -> (tokenShift: Int, decay: Int) {
        c == 4096 ? (64, 128) : (32, 64)
    }
}

// MARK: - Names and sizes

extension TensorSpec {
    /// What every block tensor's BlinkDL name starts with, before its block number.
    public static let blockPrefix = "blocks."

    /// The BlinkDL name in block `layer` (ignored outside blocks).
    public func checkpointName(layer: Int) -> String {
        switch scope {
        case .start, .end: return name
        case .layer, .firstLayer: return Self.blockPrefix + "\(layer)." + name
        }
    }

    /// The block number of a BlinkDL block tensor's name (nil for any other name).
    public static func layer(of name: String) -> Int? {
        guard name.hasPrefix(blockPrefix) else { return nil }
        return Int(name.dropFirst(blockPrefix.count).prefix { $0 != "." })
    }

    /// One more than the highest block number in `source`'s names (0 without blocks). Every block
    /// holds tensors, so a number beyond the tensor count is a damaged name, refused here before it
    /// could size anything (as `RWKVConfig.detect` does).
    public static func blockCount(of source: TensorSource) throws -> Int {
        var count = 0
        for t in source.tensors where t.name.hasPrefix(blockPrefix) {
            guard let n = layer(of: t.name), n >= 0, n < source.tensors.count else {
                throw RWKVError(source.path, "tensor \(Printable.escaped(t.name, limit: 80)): not a block number the file's \(source.tensors.count) tensors can hold")
            }
            count = max(count, n + 1)
        }
        return count
    }

    /// A block tensor's name without its `blocks.N.` prefix (the schema row's name).
    public static func row(of name: String) -> String? {
        guard layer(of: name) != nil else { return nil }
        return String(name.dropFirst(blockPrefix.count).drop { $0 != "." }.dropFirst())
    }

    /// The name in the architecture's Hugging Face scheme in block `layer` (ignored outside blocks).
    public func hfName(layer: Int, in schema: ArchitectureSchema) -> String {
        switch scope {
        case .start, .end: return hf
        case .layer, .firstLayer: return schema.hfLayerPrefix + "\(layer)." + hf
        }
    }

    /// Whether block `layer` holds this tensor.
    public func isPresent(inLayer layer: Int) -> Bool { scope == .layer || layer == 0 }

    /// The time mix's output gate (RWKV-6 `att.gate.weight`), which RWKV-5.0 lacks.
    var isTimeMixGate: Bool { name == RWKV6Key.gate.rawValue }
}

extension RWKVConfig {
    public var schema: ArchitectureSchema { .of(version) }

    /// The size a symbol stands for in this configuration.
    public func size(_ d: Dim) -> Int {
        switch d {
        case .C: return embeddingSize
        case .H: return headCount
        case .N: return headSize
        case .F: return ffnSize
        case .V: return vocabSize
        case .decayRank: return decayRank
        case .iclrRank: return iclrRank
        case .valueResidualRank: return valueResidualRank
        case .gateRank: return gateRank
        case .tokenShiftRank: return tokenShiftRank
        case .layers: return layerCount
        case .fixed(let n): return n
        case .fiveTokenShiftRanks: return 5 * tokenShiftRank
        }
    }

    public func shape(_ dims: [Dim]) -> [Int] { dims.map(size) }

    /// Whether checkpoints of this configuration have the row's tensor (all but RWKV-5.0's gate).
    func holds(_ row: TensorSpec) -> Bool { hasGate || !row.isTimeMixGate }

    /// Every tensor of this configuration with its BlinkDL name, schema row and block (0 outside
    /// blocks), in checkpoint order.
    public var checkpointTensors: [(name: String, spec: TensorSpec, layer: Int)] {
        let rows = schema.tensors
        var out = rows.filter { $0.scope == .start }.map { ($0.name, $0, 0) }
        for layer in 0..<layerCount {
            for row in rows where (row.scope == .layer || row.scope == .firstLayer) && row.isPresent(inLayer: layer) && holds(row) {
                out.append((row.checkpointName(layer: layer), row, layer))
            }
        }
        out += rows.filter { $0.scope == .end }.map { ($0.name, $0, 0) }
        return out
    }

    /// Every tensor an official checkpoint of this configuration holds, with its shape.
    public var expectedShapes: [(name: String, shape: [Int])] {
        checkpointTensors.map { ($0.name, shape($0.spec.shape)) }
    }
}

// MARK: - RWKV-X: RWKV-7 blocks with attention blocks between them

/// An RWKV-X checkpoint (Hou et al. 2025; howard-hou/RWKV-X, PyPI `rwkv-x`) holds an RWKV-7 under
/// `rwkv.` (the RWKV-7 rows above, names unchanged) and attention blocks under `moba.{i}.`: these
/// rows, in the trainer's registration order (`pretrain/src/model.py` MOBABlock; the package's
/// MemoryAttentionBlock reads the same names). No layout but BlinkDL's `.pth` exists for it.
public enum RWKVXKey: String, CaseIterable, Sendable {
    case ln1Weight = "ln1.weight", ln1Bias = "ln1.bias", ln2Weight = "ln2.weight", ln2Bias = "ln2.bias"
    case receptance = "att.receptance.weight", key = "att.key.weight", value = "att.value.weight", output = "att.output.weight"
    case ffnXK = "ffn.x_k", ffnKey = "ffn.key.weight", ffnValue = "ffn.value.weight"

    /// What the RWKV-7 tensors' names start with.
    public static let rwkvPrefix = "rwkv."
    /// What the attention blocks' names start with, before their number.
    public static let blockPrefix = "moba."
    /// The attention block's FFN is 4·C wide whatever the RWKV-7's is (the package's RWKV_CMix_x070).
    public static let ffnMultiple = 4
    /// The attention's head size: the package uses C / 64 heads (`n_head = n_embd // 64`).
    public static let headSize = 64

    /// The checkpoint name in attention block `block`.
    public func name(block: Int) -> String { Self.blockPrefix + "\(block)." + rawValue }

    /// The attention block number of a `moba.N.` name (nil for any other name).
    public static func block(of name: String) -> Int? {
        guard name.hasPrefix(blockPrefix) else { return nil }
        return Int(name.dropFirst(blockPrefix.count).prefix { $0 != "." })
    }

    public var role: TensorRole {
        switch self {
        case .ln1Weight, .ln1Bias, .ln2Weight, .ln2Bias: return .norm
        case .receptance, .key, .value, .output, .ffnKey, .ffnValue: return .linear
        case .ffnXK: return .vector
        }
    }

    /// The tensor's shape in a model of width `c`.
    public func shape(embedding c: Int) -> [Int] {
        switch self {
        case .ln1Weight, .ln1Bias, .ln2Weight, .ln2Bias: return [c]
        case .receptance, .key, .value, .output: return [c, c]
        case .ffnXK: return [1, 1, c]
        case .ffnKey: return [Self.ffnMultiple * c, c]
        case .ffnValue: return [c, Self.ffnMultiple * c]
        }
    }
}

// MARK: - GoldFinch: Finch (RWKV-6) layers with GOLD attention layers on top

/// A GoldFinch checkpoint's tensors that RWKV-6 lacks (Goldstein et al. 2024; recursal/GoldFinch-paper,
/// `tmix/tmix_x060c2.py`, `tmix/tmix_gold.py`, `src/model.py`), block-relative like the RWKV-6 rows.
/// Its Finch-C2 and GOLD layers otherwise hold RWKV-6 rows under RWKV-6 names (`RWKV6Key`: lerps,
/// LoRAs, decay, projections, `ln_x`, every FFN tensor); `GoldFinchLayer.keys` lists each kind's.
public enum GoldFinchKey: String, CaseIterable, Sendable {
    /// Finch-C2: the second value path's lerp and LoRA.
    case maaV2 = "att.time_maa_v2", value2W1 = "att.time_value2_w1", value2W2 = "att.time_value2_w2"
    /// GOLD: the query's lerp and LoRA, the value stream's lerp, the key/value streams' lerp LoRA.
    case maaQ = "att.time_maa_q", maaVCache = "att.time_maa_v_cache", maaQW1 = "att.time_maa_q_w1", maaQW2 = "att.time_maa_q_w2"
    case maaKVW1 = "att.time_maa_kv_w1", maaKVW2 = "att.time_maa_kv_w2"
    /// GOLD: the key and value LoRAs, the query projection and the query/key/value LayerNorms.
    case keyW1 = "att.time_key_w1", keyW2 = "att.time_key_w2", valueW1 = "att.time_value_w1", valueW2 = "att.time_value_w2"
    case query = "att.query.weight"
    case lnQWeight = "att.ln_q.weight", lnQBias = "att.ln_q.bias", lnKWeight = "att.ln_k.weight", lnKBias = "att.ln_k.bias"
    case lnVWeight = "att.ln_v.weight", lnVBias = "att.ln_v.bias"
    /// Model-level: the key cache's compression (C → C/16) and decompression ([emb; compressed] → C).
    case kvCacheA = "w_kv_cache_a.weight", kvCacheB = "w_kv_cache_b.weight"

    /// The checkpoint name in block `layer` (model-level keys ignore it).
    public func name(layer: Int) -> String {
        self == .kvCacheA || self == .kvCacheB ? rawValue : TensorSpec.blockPrefix + "\(layer)." + rawValue
    }
}

/// The three kinds of GoldFinch layer, told apart by their keys (the checkpoint stores no configuration).
public enum GoldFinchLayer: String, Codable, Sendable, CaseIterable {
    /// Plain Finch (x060): what `goldfinch_upgrade.yaml` keeps of a trained RWKV-6.
    case finch = "x060"
    /// Finch-C2 (x060c2): no gate, LayerNorm ln_x, no bonus, keys scaled by 1 − decay, a second value path.
    case finchC2 = "c2"
    /// GOLD attention: queries from the layer, keys from the shared compressed cache, values from the embedding.
    case gold

    /// How reports name the kind.
    public var displayName: String {
        switch self {
        case .finch: return "Finch"
        case .finchC2: return "Finch-C2"
        case .gold: return "GOLD"
        }
    }

    /// The key only this kind has, which decides it.
    public var marker: String {
        switch self {
        case .finch: return RWKV6Key.gate.rawValue
        case .finchC2: return GoldFinchKey.maaV2.rawValue
        case .gold: return GoldFinchKey.query.rawValue
        }
    }

    /// The time-mix tensors of this kind, in the repository's registration order (name, role).
    public var timeMixKeys: [String] {
        typealias K = RWKV6Key
        typealias G = GoldFinchKey
        switch self {
        case .finch:
            return [K.maaX, .maaW, .maaK, .maaV, .maaR, .maaG, .maaW1, .maaW2, .decay, .decayW1, .decayW2, .faaaa,
                    .receptance, .key, .value, .gate, .output, .lnXWeight, .lnXBias].map(\.rawValue)
        case .finchC2:
            return [K.maaX.rawValue, K.maaR.rawValue, K.maaK.rawValue, K.maaV.rawValue, K.maaW.rawValue, G.maaV2.rawValue,
                    K.maaW2.rawValue, K.maaW1.rawValue, K.decay.rawValue, K.decayW1.rawValue, K.decayW2.rawValue,
                    G.value2W1.rawValue, G.value2W2.rawValue, K.faaaa.rawValue, K.receptance.rawValue, K.key.rawValue,
                    K.value.rawValue, K.output.rawValue, K.lnXWeight.rawValue, K.lnXBias.rawValue]
        case .gold:
            return [K.maaX.rawValue, G.maaQ.rawValue, G.maaVCache.rawValue, K.maaK.rawValue, K.maaV.rawValue,
                    G.maaQW1.rawValue, G.maaQW2.rawValue, G.maaKVW1.rawValue, G.maaKVW2.rawValue, G.keyW1.rawValue,
                    G.keyW2.rawValue, G.valueW1.rawValue, G.valueW2.rawValue, G.query.rawValue, K.output.rawValue,
                    G.lnQWeight.rawValue, G.lnQBias.rawValue, G.lnKWeight.rawValue, G.lnKBias.rawValue,
                    G.lnVWeight.rawValue, G.lnVBias.rawValue, K.lnXWeight.rawValue, K.lnXBias.rawValue]
        }
    }

    /// Every tensor of a block of this kind (block 0 also has ln0), in the repository's order:
    /// ln1, ln2, the time mix, the RWKV-6 FFN.
    public func keys(layer: Int) -> [String] {
        typealias K = RWKV6Key
        let norms = [K.ln1Weight, .ln1Bias, .ln2Weight, .ln2Bias] + (layer == 0 ? [K.ln0Weight, .ln0Bias] : [])
        return norms.map(\.rawValue) + timeMixKeys + [K.ffnMaaK, .ffnMaaR, .ffnKey, .ffnReceptance, .ffnValue].map(\.rawValue)
    }
}
