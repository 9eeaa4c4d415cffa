/// GGUF, the file format llama.cpp loads (ggml `gguf.h`, gguf-py `constants.py`):
///
///     magic "GGUF" | u32 version | u64 tensor count | u64 KV count
///     KV pairs:     string key | u32 value type | value
///     tensor infos: string name | u32 n_dims | u64 ne[n_dims] (contiguous dimension first)
///                   | u32 ggml type | u64 offset (relative to the data section)
///     padding to `general.alignment` (default 32) | tensor data, each tensor aligned
///
/// Strings are a u64 byte length and UTF-8 bytes (no terminator); arrays are a u32 element
/// type, a u64 count and the elements. Everything is little-endian.
public enum GGUF {
    public static let magic: [UInt8] = Array("GGUF".utf8)
    public static let version: UInt32 = 3
    public static let defaultAlignment = 32
    public static let alignmentKey = GGUFKey.alignment
    /// ggml's GGML_MAX_DIMS.
    public static let maxDimensions = 4
    /// ggml's GGML_MAX_NAME: tensor names must be shorter than this.
    public static let maxTensorNameBytes = 64
}

/// GGUF metadata value types (gguf-py `GGUFValueType`).
public enum GGUFValueType: UInt32, Sendable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// Encoded size of one value, or nil for strings and arrays (variable length).
    var fixedSize: Int? {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64: return 8
        case .string, .array: return nil
        }
    }

    /// The smallest encoding of one value: used to cap array counts before allocating.
    var minimumSize: Int {
        switch self {
        case .string: return 8          // its u64 length
        case .array: return 12          // u32 type + u64 count
        default: return fixedSize!
        }
    }
}

/// One metadata value. Arrays hold values of a single type (`elementType`), possibly arrays.
public enum GGUFValue: Equatable, Sendable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case float32(Float), bool(Bool), string(String), uint64(UInt64), int64(Int64), float64(Double)
    case array(GGUFValueType, [GGUFValue])
    /// Packed arrays, for token lists: the same GGUF values as `.array(.string, ...)` and
    /// `.array(.int32, ...)` of the same items (and equal to them), without one `GGUFValue` per
    /// item. The writer takes either form; GGUFReader returns `.array`.
    case strings(GGUFStringList)
    case int32s([Int32])
    /// An array of fixed-size items (numbers, bools) as the file stores them, little-endian
    /// bytes: what GGUFReader returns for such arrays, so an item costs in memory what it costs
    /// in the file (a `GGUFValue` is ~30 bytes). Equal to the `.array` of
    /// the same items.
    case numbers(GGUFValueType, [UInt8])

    public var type: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .float32: return .float32
        case .bool: return .bool
        case .string: return .string
        case .uint64: return .uint64
        case .int64: return .int64
        case .float64: return .float64
        case .array, .strings, .int32s, .numbers: return .array
        }
    }

    /// Synthesised equality, except that every form of an array (`.array` and the packed ones)
    /// equals every other form with the same element type and items.
    public static func == (a: GGUFValue, b: GGUFValue) -> Bool {
        switch (a, b) {
        case (.uint8(let x), .uint8(let y)): return x == y
        case (.int8(let x), .int8(let y)): return x == y
        case (.uint16(let x), .uint16(let y)): return x == y
        case (.int16(let x), .int16(let y)): return x == y
        case (.uint32(let x), .uint32(let y)): return x == y
        case (.int32(let x), .int32(let y)): return x == y
        case (.float32(let x), .float32(let y)): return x == y
        case (.bool(let x), .bool(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.uint64(let x), .uint64(let y)): return x == y
        case (.int64(let x), .int64(let y)): return x == y
        case (.float64(let x), .float64(let y)): return x == y
        case (.strings(let x), .strings(let y)): return x == y
        case (.int32s(let x), .int32s(let y)): return x == y
        case (.numbers(let s, let x), .numbers(let t, let y)): return s == t && x == y
        default:
            guard let s = a.elementType, let t = b.elementType, let n = a.count, s == t, n == b.count else { return false }
            return (0..<n).allSatisfy { a.item($0) == b.item($0) }
        }
    }

    /// An array's element type, in any of its forms (nil for a single value).
    public var elementType: GGUFValueType? {
        switch self {
        case .array(let t, _), .numbers(let t, _): return t
        case .strings: return .string
        case .int32s: return .int32
        default: return nil
        }
    }

    /// An array's item count (nil for a single value).
    public var count: Int? {
        switch self {
        case .array(_, let items): return items.count
        case .strings(let list): return list.count
        case .int32s(let list): return list.count
        case .numbers(let t, let bytes): return bytes.count / (t.fixedSize ?? 1)
        default: return nil
        }
    }

    /// Item `i` of an array, as a value of its own (`i` < `count`).
    public func item(_ i: Int) -> GGUFValue {
        switch self {
        case .array(_, let items): return items[i]
        case .strings(let list): return .string(list[i])
        case .int32s(let list): return .int32(list[i])
        case .numbers(let t, let bytes):
            let size = t.fixedSize!
            var bits: UInt64 = 0
            for b in 0..<size { bits |= UInt64(bytes[i * size + b]) << (8 * UInt64(b)) }
            switch t {
            case .uint8: return .uint8(UInt8(bits))
            case .int8: return .int8(Int8(bitPattern: UInt8(bits)))
            case .uint16: return .uint16(UInt16(bits))
            case .int16: return .int16(Int16(bitPattern: UInt16(bits)))
            case .uint32: return .uint32(UInt32(bits))
            case .int32: return .int32(Int32(bitPattern: UInt32(bits)))
            case .uint64: return .uint64(bits)
            case .int64: return .int64(Int64(bitPattern: bits))
            case .float32: return .float32(Float(bitPattern: UInt32(bits)))
            case .float64: return .float64(Double(bitPattern: bits))
            case .bool: return .bool(bits != 0)
            case .string, .array: preconditionFailure("numbers arrays hold fixed-size items")   // reader's invariant
            }
        default: preconditionFailure("item(_:) of a single value")   // caller's contract
        }
    }

    /// Every item of an array (nil for a single value); for small arrays.
    public var items: [GGUFValue]? { count.map { (0..<$0).map(item) } }

    /// The value as an integer when it is one of the integer types (and fits).
    public var integer: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return Int(exactly: v)
        case .int64(let v): return Int(v)
        default: return nil
        }
    }

    public var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var float: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return nil
        }
    }

    /// A short human-readable rendering; long arrays are summarised.
    public func summary(maxArrayItems: Int = 8) -> String {
        switch self {
        case .uint8(let v): return "\(v)"
        case .int8(let v): return "\(v)"
        case .uint16(let v): return "\(v)"
        case .int16(let v): return "\(v)"
        case .uint32(let v): return "\(v)"
        case .int32(let v): return "\(v)"
        case .uint64(let v): return "\(v)"
        case .int64(let v): return "\(v)"
        case .float32(let v): return "\(v)"
        case .float64(let v): return "\(v)"
        case .bool(let v): return "\(v)"
        case .string(let s):
            return "\"" + Printable.escaped(s, limit: 120) + "\""
        case .array, .strings, .int32s, .numbers:
            let n = count ?? 0
            return Self.arraySummary(elementType!, count: n, head: (0..<min(n, maxArrayItems)).map(item),
                                     maxArrayItems: maxArrayItems)
        }
    }

    private static func arraySummary(_ t: GGUFValueType, count: Int, head: some Sequence<GGUFValue>, maxArrayItems: Int) -> String {
        let shown = head.map { $0.summary(maxArrayItems: 3) }.joined(separator: ", ")
        let more = count > maxArrayItems ? ", ... (\(count) \(t) values)" : ""
        return "[" + shown + more + "]"
    }
}

/// One metadata key-value pair, in file order.
public struct GGUFKeyValue: Equatable, Sendable {
    public let key: String
    public let value: GGUFValue

    public init(_ key: String, _ value: GGUFValue) {
        self.key = key
        self.value = value
    }
}

/// Strings kept the way a GGUF string array stores its items: each a u64 little-endian byte
/// length then the UTF-8 bytes. A 65,536-token vocabulary is then two buffers rather than 65,536
/// `String`s and `GGUFValue`s, and the writer copies its items in one go.
public struct GGUFStringList: RandomAccessCollection, Equatable, Sendable {
    /// The items, encoded as a GGUF file holds them.
    public private(set) var encoded: [UInt8] = []
    /// Where each item (its length field) starts in `encoded`.
    private var starts: [Int] = []

    public init() {}

    public init(_ strings: some Sequence<String>) {
        for s in strings { append(s) }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { starts.count }

    public subscript(i: Int) -> String {
        let end = i + 1 < starts.count ? starts[i + 1] : encoded.count
        return String(decoding: encoded[(starts[i] + 8)..<end], as: UTF8.self)
    }

    public mutating func reserveCapacity(items: Int, bytes: Int) {
        starts.reserveCapacity(items)
        encoded.reserveCapacity(bytes)
    }

    public mutating func append(_ s: String) {
        var s = s
        s.withUTF8 { append(utf8: $0) }
    }

    /// Appends `bytes` as one string, read as `String(decoding:as: UTF8.self)` reads them (invalid
    /// UTF-8 becomes U+FFFD).
    public mutating func append(utf8 bytes: UnsafeBufferPointer<UInt8>) {
        append(maxCount: bytes.count) { out in
            _ = out.initialize(from: bytes)
            return bytes.count
        }
    }

    /// Appends one string that `write` puts in place: it gets room for `maxCount` bytes and returns
    /// how many it wrote, read as `append(utf8:)` reads them. For strings made byte by byte
    /// (escaped tokens), this saves a copy and an array append per string.
    public mutating func append(maxCount: Int, writingUTF8 write: (UnsafeMutableBufferPointer<UInt8>) -> Int) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 8 + maxCount) { item in
            let count = write(UnsafeMutableBufferPointer(rebasing: item[8...]))
            precondition((0...maxCount).contains(count), "GGUFStringList: wrote \(count) bytes into room for \(maxCount)")
            let text = UnsafeBufferPointer(rebasing: item[8..<(8 + count)])
            // ASCII, the usual case, needs no further check.
            if text.reduce(0, |) >= 0x80, String(validating: text, as: UTF8.self) == nil {
                return append(String(decoding: text, as: UTF8.self))
            }
            UnsafeMutableRawPointer(item.baseAddress!).storeBytes(of: UInt64(count).littleEndian, as: UInt64.self)
            starts.append(encoded.count)
            encoded.append(contentsOf: UnsafeBufferPointer(rebasing: item[..<(8 + count)]))
        }
    }
}

/// A tensor as GGUF describes it: ggml dimensions (`ne`, contiguous dimension first) and the
/// offset of its data relative to the data section.
public struct GGUFTensorInfo: Equatable, Sendable {
    public let name: String
    public let dimensions: [Int]
    public let dtype: DType
    public let offset: Int

    /// Shape in torch order (outermost first), as every TensorSource reports it.
    public var shape: [Int] { dimensions.reversed() }
    public var elementCount: Int { dimensions.reduce(1, *) }
    public var byteCount: Int { dtype.byteCount(elements: elementCount) ?? 0 }
}

/// Rounds `n` up to a multiple of `alignment` (a power of two).
@inline(__always)
func alignUp(_ n: Int, _ alignment: Int) -> Int {
    (n + alignment - 1) & ~(alignment - 1)
}
