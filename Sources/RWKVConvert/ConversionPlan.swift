import Foundation
import RWKVFormats
import RWKVText
import RWKVModel

/// The element type asked for with `--type`: what the large matrices become.
public enum OutputType: String, CaseIterable, Sendable, Codable {
    case f32, f16, bf16, q8_0, q6_k, q5_k, q5_1, q5_0, q4_k, q4_1, q4_0, iq4_nl, q3_k, q2_k

    public var dtype: DType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .q8_0: return .q8_0
        case .q6_k: return .q6_K
        case .q5_k: return .q5_K
        case .q5_1: return .q5_1
        case .q5_0: return .q5_0
        case .q4_k: return .q4_K
        case .q4_1: return .q4_1
        case .q4_0: return .q4_0
        case .iq4_nl: return .iq4_nl
        case .q3_k: return .q3_K
        case .q2_k: return .q2_K
        }
    }

    /// The --type that stores `dtype`, if any.
    public init?(_ dtype: DType) {
        guard let t = OutputType.allCases.first(where: { $0.dtype == dtype }) else { return nil }
        self = t
    }

    /// `general.file_type` (gguf-py `LlamaFileType`). A single k-quant type is llama.cpp's "S"
    /// mixture of it (MOSTLY_Q4_K_S ...), the one that upgrades the fewest tensors.
    public var llamaFileType: UInt32 {
        switch self {
        case .f32: return 0
        case .f16: return 1
        case .q4_0: return 2
        case .q4_1: return 3
        case .q8_0: return 7
        case .q5_0: return 8
        case .q5_1: return 9
        case .q2_k: return 10
        case .q3_k: return 11
        case .q4_k: return 14
        case .q5_k: return 16
        case .q6_k: return 18
        case .iq4_nl: return 25
        case .bf16: return 32
        }
    }
}

/// One GGUF output tensor: where it comes from (the layout) and the type it is stored in.
public struct PlannedTensor: Sendable {
    public let layout: GGUFTensorLayout
    public let dtype: DType
    /// Why the type differs from the requested one for a large matrix (fallback or --keep-f32).
    public let note: String?

    public var info: TensorInfo { TensorInfo(name: layout.name, dtype: dtype, shape: layout.shape) }
}

/// What a conversion will do, decided before any tensor data is read: every GGUF tensor with
/// its sources, transform and type, and the metadata.
public struct ConversionPlan: Sendable {
    public let config: RWKVConfig
    public let outputType: OutputType
    public let tensors: [PlannedTensor]

    /// The GGUF name of the output matrix (the head), which quantized types keep at q6_K or q8_0.
    public static let outputTensorName = LlamaTensorTypes.outputName

    /// `general.file_type`: the preset's, or the type's.
    public let fileType: UInt32

    /// - Parameters:
    ///   - type: the large matrices' type (with `preset`, the preset's base type).
    ///   - preset: a llama-quantize preset (LlamaPresets.swift): its file type; the tensors are
    ///     chosen by the same rules as a plain `type`.
    ///   - keepF32: patterns on GGUF names (a glob when it holds * ? or [, else a substring)
    ///     whose tensors stay F32; they win over everything else.
    ///   - outputTensorType, tokenEmbeddingType, tensorTypes: llama-quantize's overrides. Without
    ///     them every large matrix is chosen as llama-quantize does (`LlamaTensorTypes.choose`):
    ///     for a quantized type the output matrix is q6_K (q8_0 for q8_0 or rows that are not
    ///     whole blocks), and types that do not fit a row fall back.
    public init(config: RWKVConfig, type: OutputType, preset: LlamaPreset? = nil, keepF32: [String] = [],
                outputTensorType: OutputType? = nil, tokenEmbeddingType: OutputType? = nil, tensorTypes: [TensorTypeRule] = []) {
        let type = preset?.baseType ?? type
        self.config = config
        self.outputType = type
        self.fileType = preset?.llamaFileType ?? type.llamaFileType
        let overrides = TensorTypeOverrides(outputTensorType: outputTensorType, tokenEmbeddingType: tokenEmbeddingType, tensorTypes: tensorTypes)
        self.tensors = GGUFLayout.tensors(for: config).map { layout in
            guard layout.isLargeMatrix else { return PlannedTensor(layout: layout, dtype: .f32, note: nil) }
            if let p = keepF32.first(where: { Self.matches(layout.name, pattern: $0) }) {
                return PlannedTensor(layout: layout, dtype: .f32, note: type == .f32 ? nil : "kept F32 (--keep-f32 \(p))")
            }
            let (dtype, note) = LlamaTensorTypes.choose(name: layout.name, rowLength: layout.shape.last ?? 0, type: type, overrides: overrides)
            return PlannedTensor(layout: layout, dtype: dtype, note: note)
        }
    }

    public static func matches(_ name: String, pattern: String) -> Bool {
        if pattern.contains(where: { "*?[".contains($0) }) {
            return fnmatch(pattern, name, 0) == 0
        }
        return name.contains(pattern)
    }

    /// Tensors stored in another type than the requested one, with the reason.
    public var notes: [(name: String, note: String)] {
        tensors.compactMap { t in t.note.map { (t.layout.name, $0) } }
    }

    public var isQuantized: Bool { tensors.contains { $0.dtype.isQuantized } }

    /// Every source tensor the plan reads, with the shape it must have.
    public var sourceShapes: [String: [Int]] {
        var out: [String: [Int]] = [:]
        for t in tensors { for (n, s) in zip(t.layout.sources, t.layout.sourceShapes) { out[n] = s } }
        return out
    }

    /// The file's metadata, in the order llama.cpp's converter writes it: general, hyperparameters,
    /// file type, tokenizer, quantization version, then where the file came from.
    public func metadata(name: String, vocabulary: Vocabulary, provenance: Provenance) -> [GGUFKeyValue] {
        var kv: [GGUFKeyValue] = [
            GGUFKeyValue(GGUFKey.architecture, .string(GGUFLayout.architecture(config.version))),
            GGUFKeyValue(GGUFKey.type, .string("model")),
            GGUFKeyValue(GGUFKey.name, .string(name)),
        ]
        kv += GGUFLayout.hyperparameters(for: config)
        kv.append(GGUFKeyValue(GGUFKey.fileType, .uint32(fileType)))
        kv += vocabulary.metadata
        if isQuantized { kv.append(GGUFKeyValue(GGUFKey.quantizationVersion, .uint32(2))) }
        kv += provenance.metadata
        return kv
    }
}

/// Where a converted file came from, recorded in its metadata.
public struct Provenance: Sendable {
    public let sourceFile: String
    /// Lowercase hex SHA-256 of the source file.
    public let sourceSHA256: String
    public let tool: String
    /// Adapters merged into the source, as "file (lora alpha A)" / "file (pissa)", in order.
    public let adapters: [String]

    public static let toolName = "rwkv-tools"
    public static let toolVersion = "0.1.0"

    public init(sourceFile: String, sourceSHA256: String, tool: String = "\(Provenance.toolName) \(Provenance.toolVersion)",
                adapters: [String] = []) {
        self.adapters = adapters
        self.sourceFile = sourceFile
        self.sourceSHA256 = sourceSHA256
        self.tool = tool
    }

    public static let sourceFileKey = "rwkv_tools.source.file"
    public static let sourceSHA256Key = "rwkv_tools.source.sha256"
    public static let toolKey = "rwkv_tools.converter"
    public static let adaptersKey = "rwkv_tools.source.adapters"

    public var metadata: [GGUFKeyValue] {
        [GGUFKeyValue(Self.sourceFileKey, .string(sourceFile)),
         GGUFKeyValue(Self.sourceSHA256Key, .string(sourceSHA256)),
         GGUFKeyValue(Self.toolKey, .string(tool))]
            + (adapters.isEmpty ? [] : [GGUFKeyValue(Self.adaptersKey, .string(adapters.joined(separator: ", ")))])
    }
}
