#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a GGUF v3 file in one streaming pass: the metadata and every tensor info (with offsets
/// computed up front from the planned shapes and types) first, then the tensors' data one at a
/// time in plan order, each padded to the alignment. Only one tensor needs to be in memory at a
/// time. Output goes through `AtomicOutputFile`: nothing appears under the final name unless
/// `finish()` is reached.
public final class GGUFWriter {
    public let path: String
    public let alignment: Int
    public let tensors: [TensorInfo]
    private let out: AtomicOutputFile
    private var next = 0
    /// Bytes of tensor `next` written so far (`append` takes a tensor in parts).
    private var filled = 0
    /// Where the next `startWriteback` begins.
    private var writebackStart = 0
    /// Whether `finish()` flushes to disk before the rename (see `AtomicOutputFile`).
    private let durable: Bool
    /// Where each string metadata value's bytes sit in the file, for `patchString`.
    private let stringValueRanges: [String: Range<Int>]
    /// A second descriptor on the temporary file: `patchString` writes through it, and
    /// `startWriteback` uses it to start flushing finished tensors in the background.
    private let sideFD: Int32

    /// - Parameters:
    ///   - metadata: key-value pairs in the order to write them. `general.alignment` is added
    ///     (as uint32) when absent.
    ///   - tensors: every tensor, shapes in torch order (outermost first), in data order.
    ///   - inputs: files that must not be overwritten.
    ///   - durable: flush the file to disk before renaming it into place (see `AtomicOutputFile`).
    public init(path: String, metadata: [GGUFKeyValue], tensors: [TensorInfo],
                alignment: Int = GGUF.defaultAlignment, refusingToOverwrite inputs: [String] = [],
                durable: Bool = true) throws {
        guard alignment > 0, alignment & (alignment - 1) == 0 else {
            throw RWKVError(path, "GGUF alignment \(alignment) is not a power of two")
        }
        var kvs = metadata
        var seen = Set<String>()
        for kv in kvs {
            guard seen.insert(kv.key).inserted else { throw RWKVError(path, "duplicate GGUF metadata key \(kv.key)") }
        }
        if let a = kvs.first(where: { $0.key == GGUF.alignmentKey }) {
            guard a.value == .uint32(UInt32(alignment)) else {
                throw RWKVError(path, "\(GGUF.alignmentKey) \(a.value.summary()) does not match the writer's alignment \(alignment)")
            }
        } else {
            kvs.append(GGUFKeyValue(GGUF.alignmentKey, .uint32(UInt32(alignment))))
        }

        var header = GGUFEncoder()
        // Room for the header up front (a vocabulary's token types alone are 256 KiB): growing
        // it step by step would copy it several times.
        header.reserveCapacity(24 + alignment
            + kvs.reduce(0) { $0 + 12 + $1.key.utf8.count + GGUFEncoder.size(of: $1.value) }
            + tensors.reduce(0) { $0 + 24 + $1.name.utf8.count + 8 * $1.shape.count })
        header.bytes(GGUF.magic)
        header.u32(GGUF.version)
        header.u64(UInt64(tensors.count))
        header.u64(UInt64(kvs.count))
        var stringValueRanges: [String: Range<Int>] = [:]
        for kv in kvs {
            header.string(kv.key)
            header.u32(kv.value.type.rawValue)
            if case .string(let s) = kv.value {
                let start = header.count + 8
                stringValueRanges[kv.key] = start..<start + s.utf8.count
            }
            try header.value(kv.value, path: path, key: kv.key)
        }
        var names = Set<String>()
        var offset = 0
        for t in tensors {
            guard names.insert(t.name).inserted else { throw RWKVError(path, "duplicate tensor name \(t.name)") }
            guard t.name.utf8.count < GGUF.maxTensorNameBytes else {
                throw RWKVError(path, "tensor name \(t.name) is longer than ggml's limit of \(GGUF.maxTensorNameBytes - 1) bytes")
            }
            guard (1...GGUF.maxDimensions).contains(t.shape.count) else {
                throw RWKVError(path, "tensor \(t.name): GGUF holds 1 to \(GGUF.maxDimensions) dimensions, not \(t.shape.count)")
            }
            guard let typeID = t.dtype.ggmlType else { throw RWKVError(path, "tensor \(t.name): GGUF cannot store \(t.dtype.rawValue)") }
            guard let rowLength = t.shape.last, rowLength % t.dtype.blockSize == 0,
                  let bytes = t.dtype.byteCount(elements: t.elementCount) else {
                throw RWKVError(path, "tensor \(t.name): shape \(t.shape) does not fit \(t.dtype.rawValue) blocks of \(t.dtype.blockSize)")
            }
            header.string(t.name)
            header.u32(UInt32(t.shape.count))
            for d in t.shape.reversed() { header.u64(UInt64(d)) }
            header.u32(typeID)
            header.u64(UInt64(offset))
            offset += alignUp(bytes, alignment)
        }
        header.pad(to: alignment)

        self.path = path
        self.alignment = alignment
        self.tensors = tensors
        self.stringValueRanges = stringValueRanges
        self.durable = durable
        let out = try AtomicOutputFile(path, refusingToOverwrite: inputs, durable: durable)
        self.out = out
        sideFD = try out.duplicateDescriptor()
        try header.write(to: out)
    }

    deinit { close(sideFD) }

    /// Whether the output has no name until it is finished (`AtomicOutputFile`, O_TMPFILE).
    public var isUnnamed: Bool { out.temporaryPath == nil }

    /// Asks the kernel to start writing the bytes written so far to disk without waiting, so the
    /// flush before the rename (AtomicOutputFile.commit, when durable) finds little left to do: the disk
    /// writes overlap the conversion of the next tensors. On Linux, POSIX_FADV_DONTNEED starts
    /// asynchronous writeback of dirty pages (and drops clean ones, which we never read again).
    /// Best effort: an error changes nothing but speed.
    /// Only the bytes written since the last call, once there are 8 MiB of them: each call costs
    /// in proportion to the range it covers.
    private func startWriteback() {
        #if os(Linux)
        guard out.bytesWritten - writebackStart >= 8 << 20 else { return }
        _ = posix_fadvise(sideFD, off_t(writebackStart), off_t(out.bytesWritten - writebackStart), POSIX_FADV_DONTNEED)
        writebackStart = out.bytesWritten
        #endif
    }

    /// The next tensor still to be written, or nil when all are.
    public var nextTensor: TensorInfo? { next < tensors.count ? tensors[next] : nil }

    /// Appends the data of the next tensor in plan order (exactly its planned size).
    public func writeTensor(_ bytes: UnsafeRawBufferPointer) throws {
        guard let t = nextTensor else { throw RWKVError(path, "more tensor data than planned tensors") }
        guard filled == 0 else { throw RWKVError(path, "tensor \(t.name): \(filled) of its bytes were already appended") }
        guard bytes.count == t.byteCount else {
            throw RWKVError(path, "tensor \(t.name): got \(bytes.count) bytes, planned \(t.byteCount)")
        }
        try append(bytes)
    }

    /// Appends the next part of the tensor data, in plan order: a tensor is complete (and padded
    /// to the alignment) once its planned size has been appended, and the next part starts the
    /// next tensor. This lets a large tensor be written piece by piece as it is converted.
    public func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard let t = nextTensor else { throw RWKVError(path, "more tensor data than planned tensors") }
        guard bytes.count <= t.byteCount - filled else {
            throw RWKVError(path, "tensor \(t.name): \(filled + bytes.count) bytes, more than the planned \(t.byteCount)")
        }
        try out.write(bytes)
        filled += bytes.count
        if filled == t.byteCount {
            try out.pad(alignUp(filled, alignment) - filled)
            next += 1
            filled = 0
        }
        if durable { startWriteback() }
    }

    public func writeTensor(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try writeTensor($0) }
    }

    /// Overwrites a string metadata value already written with another of the same byte length.
    /// This lets a value known only at the end (the source file's SHA-256, computed while the
    /// tensors are converted) be reserved up front and filled in before `finish()`.
    public func patchString(_ key: String, _ value: String) throws {
        guard let range = stringValueRanges[key] else { throw RWKVError(path, "no string metadata \(key) to patch") }
        let bytes = Array(value.utf8)
        guard bytes.count == range.count else {
            throw RWKVError(path, "metadata \(key): patch is \(bytes.count) bytes, the reserved value \(range.count)")
        }
        guard !bytes.isEmpty else { return }
        let n = bytes.withUnsafeBytes { pwrite(sideFD, $0.baseAddress!, $0.count, off_t(range.lowerBound)) }
        guard n == bytes.count else { throw RWKVError(path, "cannot patch \(key): \(String(cString: strerror(errno)))") }
    }

    /// Checks every planned tensor was written and moves the file into place.
    public func finish() throws {
        guard next == tensors.count else {
            throw RWKVError(path, "only \(next) of \(tensors.count) tensors were written" + (filled > 0 ? " (and \(filled) bytes of the next)" : ""))
        }
        try out.commit()
    }

    /// Removes the partial output (also done automatically when the writer is released unfinished).
    public func abandon() { out.abandon() }

    public var bytesWritten: Int { out.bytesWritten }
}

/// Little-endian GGUF serialisation into a byte array.
struct GGUFEncoder {
    private var data: [UInt8] = []

    /// Bytes encoded so far.
    var count: Int { data.count }

    mutating func reserveCapacity(_ bytes: Int) { data.reserveCapacity(bytes) }

    func write(to out: AtomicOutputFile) throws { try out.write(data) }

    mutating func bytes(_ b: [UInt8]) { data += b }
    mutating func u8(_ v: UInt8) { data.append(v) }
    mutating func u16(_ v: UInt16) { append(v) }
    mutating func u32(_ v: UInt32) { append(v) }
    mutating func u64(_ v: UInt64) { append(v) }

    private mutating func append(_ v: some FixedWidthInteger) {
        // As a typed buffer: Array appends that with one copy, a raw buffer byte by byte.
        withUnsafeBytes(of: v.littleEndian) { $0.withMemoryRebound(to: UInt8.self) { data += $0 } }
    }
    mutating func string(_ s: String) {
        u64(UInt64(s.utf8.count))
        data += s.utf8
    }
    mutating func pad(to alignment: Int) {
        data += [UInt8](repeating: 0, count: alignUp(count, alignment) - count)
    }

    /// The bytes `value(v)` appends to `data` (for arrays of fixed-size values, assuming every
    /// item has the array's type, which `value` checks).
    static func size(of v: GGUFValue) -> Int {
        switch v {
        case .string(let s): return 8 + s.utf8.count
        case .strings(let list): return 12 + list.encoded.count
        case .int32s(let list): return 12 + 4 * list.count
        case .numbers(_, let bytes): return 12 + bytes.count
        case .array(let t, let items):
            if let itemSize = t.fixedSize { return 12 + items.count * itemSize }
            return items.reduce(12) { $0 + size(of: $1) }
        default: return v.type.fixedSize ?? 0
        }
    }

    mutating func value(_ v: GGUFValue, path: String, key: String) throws {
        switch v {
        case .uint8(let x): u8(x)
        case .int8(let x): u8(UInt8(bitPattern: x))
        case .uint16(let x): u16(x)
        case .int16(let x): u16(UInt16(bitPattern: x))
        case .uint32(let x): u32(x)
        case .int32(let x): u32(UInt32(bitPattern: x))
        case .uint64(let x): u64(x)
        case .int64(let x): u64(UInt64(bitPattern: x))
        case .float32(let x): u32(x.bitPattern)
        case .float64(let x): u64(x.bitPattern)
        case .bool(let x): u8(x ? 1 : 0)
        case .string(let s): string(s)
        case .strings(let list):
            u32(GGUFValueType.string.rawValue)
            u64(UInt64(list.count))
            data += list.encoded   // already in GGUF's encoding
        case .int32s(let list):
            u32(GGUFValueType.int32.rawValue)
            u64(UInt64(list.count))
            if 1.littleEndian == 1 {   // the items' memory is already the file's bytes
                list.withUnsafeBytes { $0.withMemoryRebound(to: UInt8.self) { data += $0 } }
            } else {
                for x in list { u32(UInt32(bitPattern: x)) }
            }
        case .numbers(let t, let bytes):
            guard let size = t.fixedSize, bytes.count % size == 0 else {
                throw RWKVError(path, "metadata \(key): \(bytes.count) bytes are not whole \(t) values")
            }
            u32(t.rawValue)
            u64(UInt64(bytes.count / size))
            data += bytes
        case .array(let t, let items):
            u32(t.rawValue)
            u64(UInt64(items.count))
            for item in items {
                guard item.type == t else {
                    throw RWKVError(path, "metadata \(key): array of \(t) holds a \(item.type) value")
                }
                try value(item, path: path, key: key)
            }
        }
    }
}
