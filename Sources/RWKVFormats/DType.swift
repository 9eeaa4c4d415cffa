/// Element types of every format we read or write. Block types (q8_0 ...) store `blockSize`
/// values in `blockBytes` bytes; plain types have a block of one element.
public enum DType: String, CaseIterable, Sendable, Codable {
    case f64, f32, f16, bf16, i64, i32, i16, i8, u8, bool
    case q8_0, q4_0, q4_1, q5_0, q5_1
    /// ggml's k-quants (256-value super-blocks) and iq4_nl (KQuants.swift).
    case q2_K, q3_K, q4_K, q5_K, q6_K, iq4_nl

    public var blockSize: Int {
        switch self {
        case .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .iq4_nl: return 32
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K: return 256
        default: return 1
        }
    }

    public var blockBytes: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8, .u8, .bool: return 1
        case .q8_0: return 34
        case .q4_0: return 18
        case .q4_1: return 20
        case .q5_0: return 22
        case .q5_1: return 24
        case .q2_K: return 84
        case .q3_K: return 110
        case .q4_K: return 144
        case .q5_K: return 176
        case .q6_K: return 210
        case .iq4_nl: return 18
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .i64, .i32, .i16, .i8, .u8, .bool: return false
        default: return true
        }
    }

    public var isQuantized: Bool { blockSize > 1 }

    /// Bytes taken by `count` elements, or nil when `count` is not a whole number of blocks
    /// or the product overflows.
    public func byteCount(elements count: Int) -> Int? {
        guard count >= 0, count % blockSize == 0 else { return nil }
        let (bytes, overflow) = (count / blockSize).multipliedReportingOverflow(by: blockBytes)
        return overflow ? nil : bytes
    }

    // MARK: names in the file formats

    /// safetensors header spelling.
    public var safetensorsName: String? {
        switch self {
        case .f64: return "F64"
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .i64: return "I64"
        case .i32: return "I32"
        case .i16: return "I16"
        case .i8: return "I8"
        case .u8: return "U8"
        case .bool: return "BOOL"
        default: return nil
        }
    }

    public init?(safetensorsName name: String) {
        guard let t = DType.allCases.first(where: { $0.safetensorsName == name }) else { return nil }
        self = t
    }

    /// torch storage class name as it appears in a pickle (`torch.BFloat16Storage`).
    public var torchStorageName: String? {
        switch self {
        case .f64: return "DoubleStorage"
        case .f32: return "FloatStorage"
        case .f16: return "HalfStorage"
        case .bf16: return "BFloat16Storage"
        case .i64: return "LongStorage"
        case .i32: return "IntStorage"
        case .i16: return "ShortStorage"
        case .i8: return "CharStorage"
        case .u8: return "ByteStorage"
        case .bool: return "BoolStorage"
        default: return nil
        }
    }

    public init?(torchStorageName name: String) {
        guard let t = DType.allCases.first(where: { $0.torchStorageName == name }) else { return nil }
        self = t
    }

    /// ggml type id (ggml.h `enum ggml_type`).
    public var ggmlType: UInt32? {
        switch self {
        case .f32: return 0
        case .f16: return 1
        case .q4_0: return 2
        case .q4_1: return 3
        case .q5_0: return 6
        case .q5_1: return 7
        case .q8_0: return 8
        case .q2_K: return 10
        case .q3_K: return 11
        case .q4_K: return 12
        case .q5_K: return 13
        case .q6_K: return 14
        case .iq4_nl: return 20
        case .i8: return 24
        case .i16: return 25
        case .i32: return 26
        case .i64: return 27
        case .f64: return 28
        case .bf16: return 30
        default: return nil
        }
    }

    public init?(ggmlType id: UInt32) {
        guard let t = DType.allCases.first(where: { $0.ggmlType == id }) else { return nil }
        self = t
    }
}
