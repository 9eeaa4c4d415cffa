/// Reads a GGUF file (version 3, and version 2, whose layout is the same): the metadata, the
/// tensor infos and, lazily, one tensor's data at a time. Every length and count is checked
/// against what the file can hold before anything is allocated, and every tensor must lie
/// aligned inside the data section without overlapping another, so a hostile header yields a
/// one-line error, never a crash or a huge allocation.
public final class GGUFReader: TensorSource {
    public let path: String
    public let formatName = "GGUF"
    public let version: UInt32
    public let alignment: Int
    public let metadata: [GGUFKeyValue]
    public let tensorInfos: [GGUFTensorInfo]
    /// File offset of the data section (tensor offsets are relative to it).
    public let dataStart: Int
    public let tensors: [TensorInfo]
    private let file: InputFile
    private let index: [ExactName: Int]
    private let keyIndex: [String: Int]

    /// Caps on single header items, far above anything a real model needs.
    public static let maxStringBytes = 16 << 20
    public static let maxArrayCount = 16 << 20
    public static let maxArrayDepth = 4
    /// Cap on array items over the whole header; real vocabularies hold under a million items
    /// (tokens, types, merges). Arrays of numbers and strings are kept packed (an item costs its
    /// bytes in the file, + 8 for a string); only arrays of arrays hold a `GGUFValue` per item.
    public static let maxMetadataArrayItems = 4 << 20
    /// Caps on the header's tensor and key counts, far above any RWKV model (the largest, 61
    /// layers, holds about 2,100 tensors and 30 keys). Each costs a few hundred bytes once read
    /// and listed (`inspect --json` about 850), so these keep any header within 64 MB of memory
    /// (docs/formats-reading.md, "Hostile files").
    public static let maxTensors = 32_768
    public static let maxMetadataKeys = 65_536

    public init(path: String) throws {
        let file = try InputFile(path)
        self.file = file
        self.path = path
        var r = GGUFCursor(file: file)

        guard file.size >= 24 else { throw RWKVError(path, "too small (\(file.size) bytes) to be a GGUF file") }
        guard try r.bytes(4, "magic") == GGUF.magic else { throw RWKVError(path, "not a GGUF file (bad magic)") }
        let version = try r.u32("version")
        if version & 0xFFFF == 0 {
            throw RWKVError(path, "GGUF version \(version) looks byte-swapped: big-endian GGUF files are not supported")
        }
        guard version == 2 || version == 3 else {
            throw RWKVError(path, "unsupported GGUF version \(version) (this tool reads versions 2 and 3)")
        }
        self.version = version
        let tensorCount = try r.count("tensor count", minimumItemBytes: 24)
        let kvCount = try r.count("metadata count", minimumItemBytes: 13)
        guard tensorCount <= Self.maxTensors else {
            throw RWKVError(path, "GGUF header lists \(tensorCount) tensors; this tool reads at most \(Self.maxTensors)")
        }
        guard kvCount <= Self.maxMetadataKeys else {
            throw RWKVError(path, "GGUF header lists \(kvCount) metadata keys; this tool reads at most \(Self.maxMetadataKeys)")
        }

        var kvs: [GGUFKeyValue] = []
        var keyIndex: [String: Int] = [:]
        for i in 0..<kvCount {
            let key = try r.string("metadata key \(i)")
            guard keyIndex[key] == nil else { throw RWKVError(path, "duplicate metadata key \"\(key)\"") }
            let type = try r.valueType("metadata \"\(key)\"")
            let value = try r.value(type, "metadata \"\(key)\"", depth: 0)
            keyIndex[key] = kvs.count
            kvs.append(GGUFKeyValue(key, value))
        }

        var alignment = GGUF.defaultAlignment
        if let i = keyIndex[GGUF.alignmentKey] {
            guard case .uint32(let a) = kvs[i].value else {
                throw RWKVError(path, "\(GGUF.alignmentKey) must be a uint32, found \(kvs[i].value.type)")
            }
            guard a > 0, a & (a - 1) == 0 else { throw RWKVError(path, "\(GGUF.alignmentKey) \(a) is not a power of two") }
            alignment = Int(a)
        }

        var infos: [GGUFTensorInfo] = []
        var index: [ExactName: Int] = [:]
        for i in 0..<tensorCount {
            let name = try r.string("tensor name \(i)")
            guard name.utf8.count < GGUF.maxTensorNameBytes else {
                throw RWKVError(path, "tensor name \"\(name.prefix(80))\" is \(name.utf8.count) bytes (ggml allows at most \(GGUF.maxTensorNameBytes - 1))")
            }
            guard index[ExactName(name)] == nil else { throw RWKVError(path, "duplicate tensor name \(name)") }
            let nDims = try r.u32("tensor \(name) n_dims")
            guard nDims <= GGUF.maxDimensions else {
                throw RWKVError(path, "tensor \(name) has \(nDims) dimensions (ggml allows at most \(GGUF.maxDimensions))")
            }
            var dims: [Int] = []
            var count = 1
            for _ in 0..<nDims {
                let d = try r.u64("tensor \(name) dimensions")
                guard d <= UInt64(Int64.max), case let (c, false) = count.multipliedReportingOverflow(by: Int(d)) else {
                    throw RWKVError(path, "tensor \(name): dimensions overflow")
                }
                dims.append(Int(d))
                count = c
            }
            let typeID = try r.u32("tensor \(name) type")
            guard let dtype = DType(ggmlType: typeID) else {
                throw RWKVError(path, "tensor \(name) has ggml type \(typeID)\(ggmlTypeName(typeID).map { " (\($0))" } ?? ""), which this tool does not read")
            }
            let rowLength = dims.first ?? 1
            guard rowLength % dtype.blockSize == 0 else {
                throw RWKVError(path, "tensor \(name): row length \(rowLength) is not a multiple of the \(dtype.rawValue) block size \(dtype.blockSize)")
            }
            guard dtype.byteCount(elements: count) != nil else { throw RWKVError(path, "tensor \(name): size in bytes overflows") }
            let offset = try r.u64("tensor \(name) offset")
            guard offset <= UInt64(Int64.max) else { throw RWKVError(path, "tensor \(name): offset \(offset) is out of range") }
            guard Int(offset) % alignment == 0 else {
                throw RWKVError(path, "tensor \(name): offset \(offset) is not a multiple of the alignment \(alignment)")
            }
            index[ExactName(name)] = infos.count
            infos.append(GGUFTensorInfo(name: name, dimensions: dims, dtype: dtype, offset: Int(offset)))
        }

        let dataStart = alignUp(r.position, alignment)
        guard tensorCount == 0 || dataStart <= file.size else {
            throw RWKVError(path, "file ends before the data section (at \(dataStart), file is \(file.size) bytes)")
        }
        let dataSize = max(0, file.size - dataStart)
        var cursor = 0
        var previous = ""
        for t in infos.sorted(by: { ($0.offset, $0.byteCount) < ($1.offset, $1.byteCount) }) {
            if t.offset < cursor {
                throw RWKVError(path, "tensor \(t.name) (offset \(t.offset)) overlaps tensor \(previous)")
            }
            guard t.byteCount <= dataSize, t.offset <= dataSize - t.byteCount else {
                throw RWKVError(path, "tensor \(t.name) (offset \(t.offset), \(t.byteCount) bytes) runs past the end of the file: truncated?")
            }
            cursor = t.offset + t.byteCount
            previous = t.name
        }

        self.alignment = alignment
        self.metadata = kvs
        self.keyIndex = keyIndex
        self.tensorInfos = infos
        self.index = index
        self.dataStart = dataStart
        self.tensors = infos.map { TensorInfo(name: $0.name, dtype: $0.dtype, shape: $0.shape) }
    }

    /// The metadata value under `key`, if present.
    public func value(_ key: String) -> GGUFValue? {
        keyIndex[key].map { metadata[$0].value }
    }

    public func ggufInfo(_ name: String) -> GGUFTensorInfo? {
        index[ExactName(name)].map { tensorInfos[$0] }
    }

    public func info(_ name: String) -> TensorInfo? { index[ExactName(name)].map { tensors[$0] } }

    public func data(_ name: String) throws -> [UInt8] {
        guard let i = index[ExactName(name)] else { throw RWKVError(path, "no tensor named \(name)") }
        let t = tensorInfos[i]
        return try file.read(at: dataStart + t.offset, count: t.byteCount, what: "tensor \(name)")
    }
}

/// ggml type names for the types this tool recognises but does not read (for error messages).
func ggmlTypeName(_ id: UInt32) -> String? {
    let names: [UInt32: String] = [15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S",
                                   21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 29: "IQ1_M", 34: "TQ1_0", 35: "TQ2_0"]
    return names[id]
}

/// Sequential little-endian reads from the header, buffered in windows so that the header of a
/// large file is not read in one piece. Every read is checked against the file size first.
struct GGUFCursor {
    let file: InputFile
    private(set) var position = 0
    private var window: [UInt8] = []
    private var windowStart = 0
    private static let windowBytes = 1 << 20

    init(file: InputFile) { self.file = file }

    var remaining: Int { file.size - position }
    /// Array items read so far, against `GGUFReader.maxMetadataArrayItems`.
    var arrayItems = 0

    private mutating func ensure(_ n: Int, _ what: String) throws {
        guard n <= remaining else {
            throw RWKVError(file.path, "\(what) at offset \(position) (\(n) bytes) runs past the end of the file (\(file.size) bytes)")
        }
        if position >= windowStart, position + n <= windowStart + window.count { return }
        windowStart = position
        window = try file.read(at: position, count: min(max(n, Self.windowBytes), remaining), what: what)
    }

    mutating func bytes(_ n: Int, _ what: String) throws -> [UInt8] {
        try ensure(n, what)
        let start = position - windowStart
        position += n
        return Array(window[start..<start + n])
    }

    private mutating func load<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws -> T {
        let size = MemoryLayout<T>.size
        try ensure(size, what)
        let start = position - windowStart
        position += size
        return window.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: start, as: T.self)) }
    }

    mutating func u8(_ what: String) throws -> UInt8 { try load(UInt8.self, what) }
    mutating func u16(_ what: String) throws -> UInt16 { try load(UInt16.self, what) }
    mutating func u32(_ what: String) throws -> UInt32 { try load(UInt32.self, what) }
    mutating func u64(_ what: String) throws -> UInt64 { try load(UInt64.self, what) }

    /// A u64 item count, refused when the rest of the file cannot hold that many items.
    mutating func count(_ what: String, minimumItemBytes: Int) throws -> Int {
        let n = try u64(what)
        guard n <= UInt64(remaining / minimumItemBytes) else {
            throw RWKVError(file.path, "\(what) \(n) is more than the file (\(file.size) bytes) can hold")
        }
        return Int(n)
    }

    mutating func string(_ what: String) throws -> String {
        let n = try u64("\(what) length")
        guard n <= UInt64(GGUFReader.maxStringBytes) else {
            throw RWKVError(file.path, "\(what): string length \(n) exceeds the \(GGUFReader.maxStringBytes >> 20) MiB limit")
        }
        let raw = try bytes(Int(n), what)
        guard let s = String(validating: raw, as: UTF8.self) else {
            throw RWKVError(file.path, "\(what) is not valid UTF-8")
        }
        return s
    }

    mutating func valueType(_ what: String) throws -> GGUFValueType {
        let id = try u32("\(what) type")
        guard let t = GGUFValueType(rawValue: id) else { throw RWKVError(file.path, "\(what) has unknown value type \(id)") }
        return t
    }

    mutating func value(_ type: GGUFValueType, _ what: String, depth: Int) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try u8(what))
        case .int8: return .int8(Int8(bitPattern: try u8(what)))
        case .uint16: return .uint16(try u16(what))
        case .int16: return .int16(Int16(bitPattern: try u16(what)))
        case .uint32: return .uint32(try u32(what))
        case .int32: return .int32(Int32(bitPattern: try u32(what)))
        case .uint64: return .uint64(try u64(what))
        case .int64: return .int64(Int64(bitPattern: try u64(what)))
        case .float32: return .float32(Float(bitPattern: try u32(what)))
        case .float64: return .float64(Double(bitPattern: try u64(what)))
        case .bool:
            let b = try u8(what)
            guard b <= 1 else { throw RWKVError(file.path, "\(what): bool value \(b) is neither 0 nor 1") }
            return .bool(b == 1)
        case .string: return .string(try string(what))
        case .array:
            guard depth < GGUFReader.maxArrayDepth else {
                throw RWKVError(file.path, "\(what): arrays nested deeper than \(GGUFReader.maxArrayDepth)")
            }
            let elementType = try valueType("\(what) element")
            let n = try count("\(what) array count", minimumItemBytes: elementType.minimumSize)
            guard n <= GGUFReader.maxArrayCount else {
                throw RWKVError(file.path, "\(what): array of \(n) values exceeds the limit of \(GGUFReader.maxArrayCount)")
            }
            arrayItems += n
            guard arrayItems <= GGUFReader.maxMetadataArrayItems else {
                throw RWKVError(file.path, "\(what): metadata arrays hold more than \(GGUFReader.maxMetadataArrayItems) values in all")
            }
            // Packed, so no item takes more memory than its bytes in the file (+ 8 for a string's
            // offset), where a GGUFValue per item costs ~30 bytes.
            switch elementType {
            case .string:
                var list = GGUFStringList()
                for _ in 0..<n { list.append(try string(what)) }
                return .strings(list)
            case .array:
                var items: [GGUFValue] = []
                for _ in 0..<n { items.append(try value(elementType, what, depth: depth + 1)) }
                return .array(elementType, items)
            default:
                let raw = try bytes(n * elementType.fixedSize!, what)
                if elementType == .bool, let bad = raw.first(where: { $0 > 1 }) {
                    throw RWKVError(file.path, "\(what): bool value \(bad) is neither 0 nor 1")
                }
                return .numbers(elementType, Array(raw))
            }
        }
    }
}
