import Foundation
import RWKVFormats
import RWKVModel

/// The element type asked for with `--type`: what the large matrices become.
public enum OutputType: String, CaseIterable, Sendable, Codable {
    case f32, f16, bf16, q8_0, q5_1, q5_0, q4_1, q4_0

    public var dtype: DType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .q8_0: return .q8_0
        case .q5_1: return .q5_1
        case .q5_0: return .q5_0
        case .q4_1: return .q4_1
        case .q4_0: return .q4_0
        }
    }

    /// `general.file_type` (gguf-py `LlamaFileType`).
    public var llamaFileType: UInt32 {
        switch self {
        case .f32: return 0
        case .f16: return 1
        case .q4_0: return 2
        case .q4_1: return 3
        case .q8_0: return 7
        case .q5_0: return 8
        case .q5_1: return 9
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

    /// The GGUF name of the output matrix (the head), which 4- and 5-bit types leave at q8_0.
    public static let outputTensorName = "output.weight"

    /// - Parameters:
    ///   - keepF32: patterns on GGUF names (a glob when it holds * ? or [, else a substring)
    ///     whose tensors stay F32.
    ///   - outputTensorType: the output matrix's type (`--output-tensor-type`). By default it
    ///     is q8_0 when `type` has 4 or 5 bits: the head turns the last hidden state into every
    ///     logit, so its errors reach the output directly, and llama.cpp's quantizer keeps it at
    ///     higher precision too (q6_K there, or q8_0 when rows are not whole 256-value blocks; we
    ///     have no k-quants yet). Other types apply to it as to every large matrix.
    public init(config: RWKVConfig, type: OutputType, keepF32: [String] = [], outputTensorType: OutputType? = nil) {
        self.config = config
        self.outputType = type
        self.tensors = GGUFLayout.tensors(for: config).map { layout in
            guard layout.isLargeMatrix else { return PlannedTensor(layout: layout, dtype: .f32, note: nil) }
            var wanted = type
            var note: String?
            if layout.name == Self.outputTensorName {
                if let outputTensorType {
                    wanted = outputTensorType
                    if wanted != type { note = "\(wanted.rawValue) (--output-tensor-type)" }
                } else if [.q5_1, .q5_0, .q4_1, .q4_0].contains(type) {
                    wanted = .q8_0
                    note = "q8_0: the output matrix stays at 8 bits, as llama.cpp's quantizer keeps it (--output-tensor-type to choose)"
                }
            }
            if let p = keepF32.first(where: { Self.matches(layout.name, pattern: $0) }), wanted != .f32 {
                return PlannedTensor(layout: layout, dtype: .f32, note: "kept F32 (--keep-f32 \(p))")
            }
            let rowLength = layout.shape.last ?? 0
            if wanted.dtype.isQuantized, rowLength % wanted.dtype.blockSize != 0 {
                // llama.cpp's tensor_type_fallback: a 32-block type that does not fit becomes F16.
                return PlannedTensor(layout: layout, dtype: .f16,
                                     note: "F16: row length \(rowLength) is not a multiple of \(wanted.dtype.blockSize), which \(wanted.rawValue) needs")
            }
            return PlannedTensor(layout: layout, dtype: wanted.dtype, note: note)
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
        kv.append(GGUFKeyValue(GGUFKey.fileType, .uint32(outputType.llamaFileType)))
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
