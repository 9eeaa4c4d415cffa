import Foundation
import RWKVFormats
import RWKVModel

// How llama.cpp's quantizer (`llama-quantize`, src/llama-quant.cpp of the llama.cpp vendored in
// llama-cpp-python 0.3.36) chooses each tensor's type, for the rwkv6 and rwkv7 architectures.
// Every rule the converter follows for a large matrix is here; ConversionPlan only applies it.
//
// For RWKV the choice is short:
//  * `tensor_allows_quantization` never quantizes 1-D tensors, `_norm.weight`, and the small 2-D
//    RWKV tensors (time_mix_first, w0/w1/w2, a0/a1/a2, v0/v1/v2, g1/g2, decay_w1/w2, lerp_fused):
//    they keep their input type (F32 here). Our "large matrices" are exactly the rest.
//  * `llama_tensor_get_type_impl`'s name rules (attn_v, attn_qkv, attn_k, attn_q, attn_output,
//    ffn_down, ffn_gate, ffn_up) match no RWKV name (time_mix_*, channel_mix_*), so every preset
//    gives every tensor its default type except the output matrix: q6_K, or q8_0 when its rows are
//    not whole blocks of the default type or the default is q8_0. (token_embd has its own rules only
//    for the IQ1/IQ2/IQ3_XXS/TQ/Q2_0 presets, which are not offered here.) So for RWKV the S, M
//    and L presets of one k-quant store the same tensors and differ only in general.file_type.
//  * `tensor_type_fallback`: a type whose block does not divide the row length falls back
//    (`llamaFallbackType`).
//  * Overrides, in llama.cpp's order: `--token-embedding-type` for token_embd.weight,
//    `--output-tensor-type` for output.weight (both taken as given: llama.cpp applies no
//    fallback to them, we do when they do not fit, with a note, where llama.cpp would fail), then
//    the first `--tensor-type PATTERN=TYPE` whose regex (lowercased, searched in the GGUF name)
//    matches, which replaces the preset rules (the output q6_K rule too) but not the fallback.

/// llama-quantize's presets (`llama_ftype`) for RWKV: the type of the large matrices and
/// `general.file_type`. Q2_K_S (which llama.cpp only allows with an importance matrix) and the
/// IQ1-IQ3 presets are not offered.
public enum LlamaPreset: String, CaseIterable, Sendable, Codable {
    case Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, IQ4_NL

    /// `llama_ftype_get_default_type`.
    public var baseType: OutputType {
        switch self {
        case .Q4_0: return .q4_0
        case .Q4_1: return .q4_1
        case .Q5_0: return .q5_0
        case .Q5_1: return .q5_1
        case .Q8_0: return .q8_0
        case .Q2_K: return .q2_k
        case .Q3_K_S, .Q3_K_M, .Q3_K_L: return .q3_k
        case .Q4_K_S, .Q4_K_M: return .q4_k
        case .Q5_K_S, .Q5_K_M: return .q5_k
        case .Q6_K: return .q6_k
        case .IQ4_NL: return .iq4_nl
        }
    }

    /// `general.file_type` (`llama_ftype`, gguf-py `LlamaFileType`).
    public var llamaFileType: UInt32 {
        switch self {
        case .Q4_0: return 2
        case .Q4_1: return 3
        case .Q8_0: return 7
        case .Q5_0: return 8
        case .Q5_1: return 9
        case .Q2_K: return 10
        case .Q3_K_S: return 11
        case .Q3_K_M: return 12
        case .Q3_K_L: return 13
        case .Q4_K_S: return 14
        case .Q4_K_M: return 15
        case .Q5_K_S: return 16
        case .Q5_K_M: return 17
        case .Q6_K: return 18
        case .IQ4_NL: return 25
        }
    }

    /// A preset by its llama-quantize name, in any case ("Q4_K_M", "q4_k_m").
    public init?(name: String) {
        guard let p = LlamaPreset.allCases.first(where: { $0.rawValue.lowercased() == name.lowercased() }) else { return nil }
        self = p
    }
}

extension OutputType {
    /// A type by its name in any case: ours (q4_k) or ggml's (q4_K, Q4_K, IQ4_NL, F16).
    public init?(name: String) {
        self.init(rawValue: name.lowercased())
    }
}

/// One `--tensor-type PATTERN=TYPE`: tensors whose GGUF name the regex (lowercased, as
/// llama-quantize lowercases it) matches anywhere get TYPE.
public struct TensorTypeRule: Sendable, Codable, Equatable {
    public let pattern: String
    public let type: OutputType

    public init(pattern: String, type: OutputType) throws {
        let lowered = pattern.lowercased()
        guard !lowered.isEmpty, (try? NSRegularExpression(pattern: lowered)) != nil else {
            throw RWKVError(nil, "--tensor-type: \(String(reflecting: pattern)) is not a regular expression")
        }
        self.pattern = lowered
        self.type = type
    }

    /// Parses "PATTERN=TYPE" (the last '=' separates them).
    public init(argument: String) throws {
        guard let eq = argument.lastIndex(of: "="), eq != argument.startIndex else {
            throw RWKVError(nil, "--tensor-type \(String(reflecting: argument)): expected PATTERN=TYPE")
        }
        let typeName = String(argument[argument.index(after: eq)...])
        guard let type = OutputType(name: typeName) else {
            throw RWKVError(nil, "--tensor-type \(String(reflecting: argument)): unknown type \(String(reflecting: typeName))")
        }
        try self.init(pattern: String(argument[..<eq]), type: type)
    }

    func matches(_ name: String) -> Bool {
        guard let regex = try? NSRegularExpression(pattern: pattern) else { return false }
        return regex.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) != nil
    }
}

/// The per-tensor overrides of llama-quantize.
public struct TensorTypeOverrides: Sendable {
    public var outputTensorType: OutputType?
    public var tokenEmbeddingType: OutputType?
    public var tensorTypes: [TensorTypeRule] = []

    public init(outputTensorType: OutputType? = nil, tokenEmbeddingType: OutputType? = nil, tensorTypes: [TensorTypeRule] = []) {
        self.outputTensorType = outputTensorType
        self.tokenEmbeddingType = tokenEmbeddingType
        self.tensorTypes = tensorTypes
    }
}

public enum LlamaTensorTypes {
    public static let outputName = ArchitectureSchema.rwkv7.headRow.gguf.name
    public static let tokenEmbeddingName = ArchitectureSchema.rwkv7.embeddingRow.gguf.name

    /// The type llama-quantize gives a large matrix (`llama_tensor_get_type`), with a note when it
    /// is not `type` itself. For float types (no quantization) only the overrides apply, as in
    /// our converter's plain --type (llama-quantize makes float files with no per-tensor rules).
    public static func choose(name: String, rowLength: Int, type: OutputType,
                              overrides: TensorTypeOverrides = TensorTypeOverrides()) -> (DType, String?) {
        var wanted = type.dtype
        var note: String?
        if name == tokenEmbeddingName, let t = overrides.tokenEmbeddingType {
            wanted = t.dtype
            if wanted != type.dtype { note = "\(t.rawValue) (--token-embedding-type)" }
        } else if name == outputName, let t = overrides.outputTensorType {
            wanted = t.dtype
            if wanted != type.dtype { note = "\(t.rawValue) (--output-tensor-type)" }
        } else if type.dtype.isQuantized, let rule = overrides.tensorTypes.first(where: { $0.matches(name) }) {
            wanted = rule.type.dtype
            if wanted != type.dtype { note = "\(rule.type.rawValue) (--tensor-type \(rule.pattern)=\(rule.type.rawValue))" }
        } else if name == outputName, type.dtype.isQuantized {
            wanted = rowLength % type.dtype.blockSize != 0 || type == .q8_0 ? .q8_0 : .q6_K
            if wanted != type.dtype {
                note = "\(wanted.rawValue): the output matrix is kept at higher precision, as llama.cpp's quantizer does (--output-tensor-type to choose)"
            }
        }
        let stored = llamaFallbackType(wanted, rowLength: rowLength)
        if stored != wanted {
            return (stored, "\(stored.rawValue): row length \(rowLength) is not a multiple of \(wanted.blockSize), which \(wanted.rawValue) needs (llama.cpp's fallback)")
        }
        return (wanted, note)
    }
}

/// What llama.cpp's quantizer stores a matrix in when the chosen type does not fit its rows
/// (`tensor_type_fallback`): the k-quants need rows of whole 256-value blocks and fall back to a
/// 32-value type (q2_K, q3_K -> q4_0, q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0), and a 32-value
/// type that does not fit either becomes F16.
public func llamaFallbackType(_ type: DType, rowLength: Int) -> DType {
    guard type.isQuantized, rowLength % type.blockSize != 0 else { return type }
    let fallback: DType
    switch type {
    case .q2_K, .q3_K: fallback = .q4_0
    case .q4_K: fallback = .q5_0
    case .q5_K: fallback = .q5_1
    case .q6_K: fallback = .q8_0
    default: fallback = type
    }
    return rowLength % fallback.blockSize == 0 ? fallback : .f16
}
