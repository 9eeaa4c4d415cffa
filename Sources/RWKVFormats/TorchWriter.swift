/// Writes a `.pth` laid out exactly as `torch.save(OrderedDict_of_tensors, path)` (torch 2.x)
/// lays it out, so the official trainer, `torch.load(weights_only=True)` and `torch.load(mmap=True)`
/// read it like any checkpoint:
///
///     <top>/data.pkl, <top>/.format_version ("1"), <top>/.storage_alignment ("64"),
///     <top>/byteorder ("little"), <top>/data/0 ... data/N-1, <top>/version ("3\n"),
///     <top>/.data/serialization_id
///
/// `<top>` is the file's basename without its extension, as torch names it. One storage per
/// tensor, contiguous, keys in tensor order. Streaming: each tensor's bytes are asked for in turn
/// and written straight out, so memory stays bounded by one tensor.
public enum TorchWriter {
    /// `durable`: flush to disk before the rename (see `AtomicOutputFile`).
    public static func write(to path: String, tensors: [TensorInfo], archiveName: String? = nil,
                             inputs: [String] = [], durable: Bool = true, data: (TensorInfo) throws -> [UInt8]) throws {
        let top = archiveName ?? defaultArchiveName(path)
        guard !top.isEmpty, !top.contains("/") else { throw RWKVError(path, "invalid archive folder name \"\(top)\"") }
        for t in tensors where t.dtype.torchStorageName == nil {
            throw RWKVError(path, "tensor \(t.name): torch checkpoints cannot store \(t.dtype.rawValue)")
        }
        guard Set(tensors.map(\.name)).count == tensors.count else { throw RWKVError(path, "duplicate tensor names") }

        let out = try AtomicOutputFile(path, refusingToOverwrite: inputs, durable: durable)
        var zip = StoredZipWriter(out: out)
        try zip.add(top + "/data.pkl", Array(TorchPickler.stateDict(tensors)))
        try zip.add(top + "/.format_version", Array("1".utf8))
        try zip.add(top + "/.storage_alignment", Array("64".utf8))
        try zip.add(top + "/byteorder", Array("little".utf8))
        for (i, t) in tensors.enumerated() {
            let bytes = try data(t)
            guard bytes.count == t.byteCount else {
                throw RWKVError(path, "tensor \(t.name): got \(bytes.count) bytes, expected \(t.byteCount)")
            }
            try zip.add(top + "/data/\(i)", bytes)
        }
        try zip.add(top + "/version", Array("3\n".utf8))
        try zip.add(top + "/.data/serialization_id", Array(zip.serializationID.utf8))
        try zip.finish()
        try out.commit()
    }

    /// torch's name for the archive folder: the basename up to its last dot ("archive" if empty).
    static func defaultArchiveName(_ path: String) -> String {
        let base = path.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? path
        let stem = base.lastIndex(of: ".").map { String(base[..<$0]) } ?? base
        return stem.isEmpty ? "archive" : stem
    }
}

/// Builds data.pkl with the opcodes and memo numbering CPython's pickler (protocol 2) produces
/// for torch.save of an OrderedDict of tensors: every object memoized once (BINPUT), repeats
/// fetched (BINGET), dict items in batches of 1000 (SETITEMS), one item alone with SETITEM.
struct TorchPickler {
    private var out: [UInt8] = []
    private var nextMemo = 0
    /// Memo slots of objects torch shares between tensors: globals, the 'storage' and 'cpu'
    /// strings, and one-character strings (CPython caches those, so they are one object).
    private var shared: [String: Int] = [:]

    static func stateDict(_ tensors: [TensorInfo]) -> [UInt8] {
        var p = TorchPickler()
        p.out = [Opcode.proto, 2]
        p.global("collections", "OrderedDict")
        let orderedDict = p.nextMemo - 1
        p.out.append(Opcode.emptyTuple)
        p.out.append(Opcode.reduce)
        p.memoize()
        var start = 0
        while start < tensors.count {
            let batch = tensors[start..<min(start + 1000, tensors.count)]
            if batch.count > 1 { p.out.append(Opcode.mark) }
            for (i, t) in zip(batch.indices, batch) {
                p.string(t.name)
                p.tensor(t, key: String(i), orderedDict: orderedDict)
            }
            p.out.append(batch.count > 1 ? Opcode.setItems : Opcode.setItem)
            start += batch.count
        }
        p.out.append(Opcode.stop)
        return p.out
    }

    private mutating func tensor(_ t: TensorInfo, key: String, orderedDict: Int) {
        global("torch._utils", "_rebuild_tensor_v2")
        out.append(Opcode.mark)
        out.append(Opcode.mark)                 // persistent id ('storage', type, key, 'cpu', numel)
        string("storage")
        global("torch", t.dtype.torchStorageName!)
        string(key)
        string("cpu")
        int(t.elementCount)
        out.append(Opcode.tuple)
        memoize()
        out.append(Opcode.binPersId)
        int(0)                                  // storage offset
        tuple(t.shape)
        tuple(Self.contiguousStrides(t.shape))
        out.append(Opcode.newFalse)             // requires_grad
        get(orderedDict)                        // backward hooks: OrderedDict()
        out.append(Opcode.emptyTuple)
        out.append(Opcode.reduce)
        memoize()
        out.append(Opcode.tuple)
        memoize()
        out.append(Opcode.reduce)
        memoize()
    }

    /// torch's strides for a contiguous tensor: a size-0 dimension counts as 1.
    static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        for i in stride(from: shape.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * max(shape[i + 1], 1) }
        return strides
    }

    private mutating func memoize() {
        let i = nextMemo
        nextMemo += 1
        if i < 256 { out += [Opcode.binPut, UInt8(i)] } else { out.append(Opcode.longBinPut); le32(UInt32(i)) }
    }

    private mutating func get(_ i: Int) {
        if i < 256 { out += [Opcode.binGet, UInt8(i)] } else { out.append(Opcode.longBinGet); le32(UInt32(i)) }
    }

    private mutating func sharedObject(_ id: String, write: (inout TorchPickler) -> Void) {
        if let i = shared[id] { get(i); return }
        write(&self)
        shared[id] = nextMemo
        memoize()
    }

    private mutating func global(_ module: String, _ name: String) {
        sharedObject("global " + module + "." + name) { $0.out += [Opcode.global] + Array("\(module)\n\(name)\n".utf8) }
    }

    private mutating func string(_ s: String) {
        let write: (inout TorchPickler) -> Void = { p in
            let utf8 = Array(s.utf8)
            p.out.append(Opcode.binUnicode)
            p.le32(UInt32(utf8.count))
            p.out += utf8
        }
        let scalars = s.unicodeScalars
        if s == "storage" || s == "cpu" || (scalars.count == 1 && scalars.first!.value < 256) {
            sharedObject("str " + s, write: write)
        } else {
            write(&self)
            memoize()
        }
    }

    private mutating func int(_ v: Int) {
        switch v {
        case 0...0xff: out += [Opcode.binInt1, UInt8(v)]
        case 0x100...0xffff: out += [Opcode.binInt2, UInt8(v & 0xff), UInt8(v >> 8)]
        case Int(Int32.min)...Int(Int32.max): out.append(Opcode.binInt); le32(UInt32(bitPattern: Int32(v)))
        default:
            // LONG1: minimal little-endian two's complement, as pickle's encode_long (v > 0 here).
            let n = (Int.bitWidth - v.leadingZeroBitCount) / 8 + 1
            out += [Opcode.long1, UInt8(n)]
            for k in 0..<n { out.append(k < 8 ? UInt8(truncatingIfNeeded: v >> (8 * k)) : 0) }
        }
    }

    private mutating func tuple(_ values: [Int]) {
        switch values.count {
        case 0: out.append(Opcode.emptyTuple); return      // the empty tuple is never memoized
        case 1...3:
            values.forEach { int($0) }
            out.append(Opcode.tuple1 + UInt8(values.count - 1))
        default:
            out.append(Opcode.mark)
            values.forEach { int($0) }
            out.append(Opcode.tuple)
        }
        memoize()
    }

    private mutating func le32(_ v: UInt32) {
        out += [UInt8(v & 0xff), UInt8((v >> 8) & 0xff), UInt8((v >> 16) & 0xff), UInt8(v >> 24)]
    }
}

/// The zip layout torch's writer (miniz, driven by caffe2/serialize/inline_container.cc) produces.
/// libzip cannot place a member's data at a chosen alignment, and torch needs every record's data
/// 64-byte aligned (that is what lets `torch.load(mmap=True)` map storages in place): torch pads
/// the local header's extra field with an "FB" field of 'Z' bytes. So this small writer does it,
/// byte for byte as miniz: stored records, zero times, general-purpose flags 0x0808 (UTF-8 names,
/// sizes and CRC-32 in a data descriptor after the data), a zip64 extra field in the local and
/// central headers only when a size or offset reaches 0xFFFFFFFF, and always a zip64 end record.
struct StoredZipWriter {
    static let alignment = 64
    private let out: AtomicOutputFile
    private var centralDirectory: [UInt8] = []
    private var count = 0
    private var nameHash: UInt64 = 0xcbf2_9ce4_8422_2325     // FNV-1a over record names
    private var combinedCRC: UInt64 = 0

    init(out: AtomicOutputFile) { self.out = out }

    /// torch's serialization id has the same shape (20 digits from the record names, 20 from the
    /// CRCs) but uses C++ std::hash, which we do not reproduce; torch only logs it.
    var serializationID: String {
        func digits(_ v: UInt64) -> String { let s = String(v); return String(repeating: "0", count: 20 - s.count) + s }
        return digits(nameHash) + digits(combinedCRC)
    }

    mutating func add(_ name: String, _ data: [UInt8]) throws {
        let offset = out.bytesWritten
        let size = data.count
        let nameBytes = Array(name.utf8)
        let max32 = 0xFFFF_FFFF
        let needsZip64 = size >= max32 || offset >= max32
        // zip64 extra field (id 1): sizes when the size needs it, offset when the offset does.
        // miniz writes the local copy before the data, when the compressed size is still 0.
        func zip64(compressedSize: Int) -> [UInt8] {
            guard needsZip64 else { return [] }
            var fields: [UInt8] = []
            if size >= max32 { fields += le64(size) + le64(compressedSize) }
            if offset >= max32 { fields += le64(offset) }
            return le16(1) + le16(fields.count) + fields
        }
        let localZip64 = zip64(compressedSize: 0), centralZip64 = zip64(compressedSize: size)
        // Padding so the data starts on a multiple of 64: an "FB" extra field of 'Z' bytes.
        let dataStart = offset + 30 + nameBytes.count + localZip64.count + 4
        let pad = (Self.alignment - dataStart % Self.alignment) % Self.alignment
        let padding = Array("FB".utf8) + le16(pad) + [UInt8](repeating: UInt8(ascii: "Z"), count: pad)
        let flags = size > 0 ? 0x0808 : 0x0800

        var header = le32(0x0403_4b50) + le16(0) + le16(flags) + le16(0) + le16(0) + le16(0)
        header += le32(0) + le32(0) + le32(0) + le16(nameBytes.count) + le16(localZip64.count + padding.count)
        try out.write(header + nameBytes + localZip64 + padding)
        try out.write(data)
        var crc = CRC32()
        crc.update(data)
        if size > 0 {
            let sizes = needsZip64 ? le64(size) + le64(size) : le32(UInt32(size)) + le32(UInt32(size))
            try out.write(le32(0x0807_4b50) + le32(crc.value) + sizes)
            combinedCRC = Self.hashCombine(combinedCRC, UInt64(crc.value))
        }

        var entry = le32(0x0201_4b50) + le16(0) + le16(0) + le16(flags) + le16(0) + le16(0) + le16(0)
        entry += le32(crc.value) + le32(UInt32(min(size, max32))) + le32(UInt32(min(size, max32)))
        entry += le16(nameBytes.count) + le16(centralZip64.count) + le16(0) + le16(0) + le16(0) + le32(0)
        entry += le32(UInt32(min(offset, max32)))
        centralDirectory += entry + nameBytes + centralZip64
        count += 1
        for b in nameBytes { nameHash = (nameHash ^ UInt64(b)) &* 0x100_0000_01b3 }
    }

    /// Central directory, zip64 end record and locator, end record.
    mutating func finish() throws {
        let directoryOffset = out.bytesWritten
        try out.write(centralDirectory)
        let zip64EndOffset = out.bytesWritten
        var end64 = le32(0x0606_4b50) + le64(44) + le16(0x031E) + le16(0x002D) + le32(0) + le32(0)
        end64 += le64(count) + le64(count) + le64(centralDirectory.count) + le64(directoryOffset)
        try out.write(end64)
        try out.write(le32(0x0706_4b50) + le32(0) + le64(zip64EndOffset) + le32(1))
        var end = le32(0x0605_4b50) + le16(0) + le16(0) + le16(min(count, 0xFFFF)) + le16(min(count, 0xFFFF))
        end += le32(UInt32(min(centralDirectory.count, 0xFFFF_FFFF))) + le32(UInt32(min(directoryOffset, 0xFFFF_FFFF))) + le16(0)
        try out.write(end)
    }

    static func hashCombine(_ seed: UInt64, _ value: UInt64) -> UInt64 {
        seed ^ (value &+ 0x9e37_79b9 &+ (seed << 6) &+ (seed >> 2))
    }

    private func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8((v >> 8) & 0xff)] }
    private func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    private func le64(_ v: Int) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
}
