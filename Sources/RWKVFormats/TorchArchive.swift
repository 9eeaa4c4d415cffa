/// Reader for torch zip checkpoints (`torch.save`, torch >= 1.6): a stored zip whose records sit
/// under one top folder (any name: torch uses the file's basename, or `archive`):
///
///     <top>/data.pkl       protocol-2 pickle of the state dict (read with `Pickle`)
///     <top>/data/<key>     one record per storage, raw little-endian elements
///     <top>/byteorder      "little" or "big" (absent in old files: little)
///     <top>/version, <top>/.format_version, <top>/.storage_alignment, <top>/.data/serialization_id
///
/// Opening reads the directory and data.pkl only; tensor data is read one tensor at a time by
/// `data(_:)`, so memory stays bounded by the largest tensor (twice that for a strided view).
/// Each tensor is a view of a storage: offset and strides in elements. Views are checked to lie
/// inside their storage, storages against their record's size, and every read checks the record's
/// CRC-32 (see `ZipArchive`). Strided views and shared storages are gathered into contiguous
/// row-major data; big-endian files are byte-swapped.
public final class TorchArchive: TensorSource {
    public let path: String
    public let formatName = ModelFormat.torchZip.rawValue
    public let tensors: [TensorInfo]
    /// Entries of the checkpoint that are not tensors (an epoch counter, a config string, an
    /// optimizer state ...), as "name (kind)"; they are ignored.
    public let nonTensorEntries: [String]
    /// The folder every record lives in.
    public let topFolder: String
    public let isBigEndian: Bool

    /// data.pkl larger than this is refused before it is read (real ones are well under 1 MB).
    public static let maxPickleBytes = 64 << 20
    /// Keys under which training scripts nest the state dict, unwrapped in this order.
    public static let wrapperKeys = ["state_dict", "model", "module"]

    private let zip: ZipArchive
    private let views: [ExactName: TorchTensorRef]
    private let storageRecords: [ExactName: ZipArchive.Record]
    private let positions: [ExactName: Int]
    private let lock = NSLockLite()

    public init(path: String) throws {
        let fileSize = try InputFile(path).size
        zip = try ZipArchive(path: path)
        self.path = path
        (topFolder, isBigEndian) = try Self.checkContainer(zip, fileSize: fileSize, path: path)
        let records = Self.recordsByName(zip, top: topFolder)
        guard let pickleRecord = records["data.pkl"] else { throw RWKVError(path, "zip archive without data.pkl") }   // checked above
        guard pickleRecord.size <= Self.maxPickleBytes else {
            throw RWKVError(path, "\(pickleRecord.name) is \(pickleRecord.size) bytes, over the \(Self.maxPickleBytes >> 20) MiB limit")
        }
        let document: PickleDocument
        do {
            document = try Pickle.load(try zip.read(pickleRecord, range: 0..<pickleRecord.size))
        } catch let e as PickleError {
            throw RWKVError(path, "\(pickleRecord.name): \(e)")
        }
        let (entries, others) = try Self.stateDict(document, path: path)
        nonTensorEntries = others

        var infos: [TensorInfo] = []
        var views: [ExactName: TorchTensorRef] = [:]
        var storageRecords: [ExactName: ZipArchive.Record] = [:]
        var storageTypes: [String: DType] = [:]
        // Each view is capped at the file's size (checkView); broadcast views (a stride of 0)
        // repeat their elements, so many of them could still describe far more data than the
        // file holds (a 4 MB file read as 670 MB): their total is capped too.
        var broadcastBytes = 0
        for (name, view) in entries {
            if let seen = storageTypes.updateValue(view.storage.dtype, forKey: view.storage.key), seen != view.storage.dtype {
                throw RWKVError(path, "tensor \(name): storage \(view.storage.key) is used as both \(seen.rawValue) and \(view.storage.dtype.rawValue)")
            }
            let record = try Self.checkView(view, of: name, records: records, top: topFolder, fileSize: fileSize, path: path)
            guard views.updateValue(view, forKey: ExactName(name)) == nil else { throw RWKVError(path, "duplicate tensor name \(name)") }
            storageRecords[ExactName(name)] = record
            if Swift.zip(view.shape, view.strides).contains(where: { $0 > 1 && $1 == 0 }) {
                broadcastBytes += view.storage.dtype.byteCount(elements: view.elementCount) ?? fileSize   // each at most the file size (checkView)
                guard broadcastBytes <= fileSize else {
                    throw RWKVError(path, "stride-0 (broadcast) views hold \(broadcastBytes) bytes by tensor \(name), more than the whole file (\(fileSize) bytes)")
                }
            }
            infos.append(TensorInfo(name: name, dtype: view.storage.dtype, shape: view.shape))
        }
        tensors = infos
        self.views = views
        self.storageRecords = storageRecords
        positions = Dictionary(infos.enumerated().map { (ExactName($1.name), $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Checks the zip is a torch.save archive we may read, and returns its top folder and byte order.
    static func checkContainer(_ zip: ZipArchive, fileSize: Int, path: String) throws -> (top: String, bigEndian: Bool) {
        guard let first = zip.records.first else { throw RWKVError(path, "empty zip archive: not a torch checkpoint") }
        guard let slash = first.name.firstIndex(of: "/") else {
            throw RWKVError(path, "zip record \(first.name) is not inside a folder: not a torch checkpoint")
        }
        let top = String(first.name[..<slash])
        let names = Set(zip.records.map(\.name))
        if names.contains(top + "/constants.pkl") || names.contains(where: { $0.hasPrefix(top + "/code/") }) {
            throw RWKVError(path, "TorchScript archive (torch.jit.save: code/ and constants.pkl), not a torch.save checkpoint; "
                + "load it in Python and save model.state_dict() with torch.save")
        }
        guard names.contains(top + "/data.pkl") else { throw RWKVError(path, "zip archive without \(top)/data.pkl: not a torch checkpoint") }
        for r in zip.records {
            // libzip shows a NUL byte in a record name as a space (Debian's 1.7.3): torch's own
            // reader stops at the NUL, so "data/1\0x" would be a second "data/1" to it. Names
            // torch writes under its folder never hold a space; such a name is ambiguous.
            if let space = r.name.dropFirst(top.count + 1).firstIndex(of: " ") {
                let before = String(r.name[..<space])
                throw RWKVError(path, "records \(before) and \(before + "\\x00" + r.name[r.name.index(after: space)...]) are equal up to a NUL byte "
                                      + "(or record \(r.name) holds a space, which torch never writes): ambiguous record names")
            }
            guard r.name.hasPrefix(top + "/") else {
                throw RWKVError(path, "zip record \(r.name) is outside the archive folder \(top)/: not a torch checkpoint")
            }
            guard !r.encrypted else { throw RWKVError(path, "record \(r.name) is encrypted") }
            guard r.isStored else {
                throw RWKVError(path, "record \(r.name) is compressed (method \(r.method)); torch.save stores records uncompressed, "
                    + "so it is refused as a possible zip bomb")
            }
            // A stored record's size can be no larger than the file: this caps every allocation.
            guard r.compressedSize == r.size, r.size <= fileSize else {
                throw RWKVError(path, "record \(r.name) claims \(r.size) bytes in a \(fileSize)-byte file")
            }
        }
        guard names.count == zip.records.count else { throw RWKVError(path, "the zip archive names a record twice") }
        let byteOrder = zip.records.first { $0.name == top + "/byteorder" }
        return (top, try Self.byteOrder(zip, byteOrder, path: path))
    }

    /// Records by their name inside the top folder ("data.pkl", "data/0", ...).
    static func recordsByName(_ zip: ZipArchive, top: String) -> [String: ZipArchive.Record] {
        Dictionary(zip.records.map { (String($0.name.dropFirst(top.count + 1)), $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// The view must lie inside its storage, and the storage record must hold exactly its bytes.
    static func checkView(_ view: TorchTensorRef, of name: String, records: [String: ZipArchive.Record],
                          top: String, fileSize: Int, path: String) throws -> ZipArchive.Record {
        let s = view.storage
        guard let record = records["data/" + s.key] else {
            throw RWKVError(path, "tensor \(name): its storage record \(top)/data/\(s.key) is missing")
        }
        let storageBytes = s.dtype.byteCount(elements: s.elementCount)
        guard record.size == storageBytes else {
            throw RWKVError(path, "tensor \(name): record \(record.name) holds \(record.size) bytes but its storage is "
                + "\(s.elementCount) \(s.dtype.rawValue) values (\(storageBytes ?? -1) bytes)")
        }
        guard view.offset + view.extent <= s.elementCount else {
            throw RWKVError(path, "tensor \(name): view (offset \(view.offset), shape \(view.shape), strides \(view.strides)) "
                + "runs past its storage of \(s.elementCount) elements")
        }
        // A stride-0 (broadcast) view is valid torch but grows when gathered into contiguous data:
        // capped by the file's size, so a 2 KB file cannot make us allocate terabytes.
        let viewBytes = s.dtype.byteCount(elements: view.elementCount) ?? Int.max
        guard viewBytes <= fileSize else {
            throw RWKVError(path, "tensor \(name): view of shape \(view.shape) holds \(viewBytes) bytes, more than the whole file (\(fileSize) bytes)")
        }
        return record
    }

    static func byteOrder(_ zip: ZipArchive, _ record: ZipArchive.Record?, path: String) throws -> Bool {
        guard let record else { return false }       // torch's default for files without the record
        guard record.size <= 16 else { throw RWKVError(path, "byteorder record is \(record.size) bytes (expected \"little\" or \"big\")") }
        let text = String(decoding: try zip.read(record, range: 0..<record.size), as: UTF8.self)
        switch text {
        case "little": return false
        case "big": return true
        default: throw RWKVError(path, "byteorder record says \"\(text)\" (expected \"little\" or \"big\")")
        }
    }

    /// The dict of tensors inside the pickle: the root dict, or the dict under a wrapper key
    /// (`state_dict`, `model`, `module`) when the root holds no tensors. A `module.` prefix on
    /// every name (DataParallel) is removed. Returns the tensors in order and the other entries.
    static func stateDict(_ doc: PickleDocument, path: String) throws -> ([(String, TorchTensorRef)], [String]) {
        var current = doc.root
        var prefix = ""
        var others: [String] = []
        for _ in 0..<4 {
            guard let entries = doc.entries(current) else {
                throw RWKVError(path, "data.pkl holds a \(current.kind)\(prefix.isEmpty ? "" : " under \(prefix)"), not a dict of tensors")
            }
            if entries.contains(where: { if case .tensor = $0.value { return true } else { return false } }) { break }
            let wrapper = wrapperKeys.lazy.compactMap { key in entries.first { $0.key == .string(key) && doc.entries($0.value) != nil } }.first
            guard let wrapper, case let .string(key) = wrapper.key else { break }
            for e in entries where e.key != wrapper.key { others.append(prefix + describe(e.key) + " (\(e.value.kind))") }
            prefix += key + "."
            current = wrapper.value
        }
        var tensors: [(String, TorchTensorRef)] = []
        for e in doc.entries(current) ?? [] {
            guard case let .tensor(t) = e.value else {
                others.append(prefix + describe(e.key) + " (\(e.value.kind))")
                continue
            }
            guard case let .string(name) = e.key else {
                throw RWKVError(path, "a tensor is stored under a \(e.key.kind) key, not a name")
            }
            tensors.append((name, t))
        }
        guard !tensors.isEmpty else {
            let keys = (doc.entries(current) ?? []).prefix(8).map { describe($0.key) }.joined(separator: ", ")
            throw RWKVError(path, "data.pkl holds no tensors (keys: \(keys.isEmpty ? "none" : keys))")
        }
        if tensors.allSatisfy({ $0.0.hasPrefix("module.") }) {
            tensors = tensors.map { (String($0.0.dropFirst("module.".count)), $0.1) }
        }
        return (tensors, others)
    }

    static func describe(_ key: PickleValue) -> String {
        switch key {
        case let .string(s): return s
        case let .int(i): return String(i)
        default: return "<\(key.kind)>"
        }
    }

    // MARK: tensor data

    public func info(_ name: String) -> TensorInfo? { positions[ExactName(name)].map { tensors[$0] } }

    public func data(_ name: String) throws -> [UInt8] {
        guard let view = views[ExactName(name)], let record = storageRecords[ExactName(name)] else { throw RWKVError(path, "no tensor named \(name)") }
        let size = view.storage.dtype.blockBytes
        let first = view.offset * size
        let spanBytes = view.extent * size
        let bytes = try lock.withLock { try zip.read(record, range: first..<first + spanBytes) }
        var out = view.isContiguous ? bytes : Self.gather(bytes, view: view, elementSize: size)
        if isBigEndian { Self.swapBytes(&out, elementSize: size) }
        return out
    }

    /// Contiguous little-endian tensors (all that torch.save writes for a state dict) are streamed from their record a piece at a time (its
    /// CRC-32 is checked after the last piece); other views are gathered whole first.
    public func read(_ name: String, inPiecesOf pieceBytes: Int, using buffer: ReusableBuffer,
                     _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let view = views[ExactName(name)], let record = storageRecords[ExactName(name)] else { throw RWKVError(path, "no tensor named \(name)") }
        guard view.isContiguous, !isBigEndian else {
            return try forEachPiece(of: try data(name), pieceBytes: pieceBytes, body)
        }
        precondition(pieceBytes > 0, "TorchArchive.read: pieces must hold at least one byte")   // caller's contract
        let first = view.offset * view.storage.dtype.blockBytes
        let count = view.extent * view.storage.dtype.blockBytes
        let piece = buffer.bytes(min(pieceBytes, count))
        try lock.withLock { try zip.read(record, range: first..<first + count, inPiecesOf: piece, body) }
    }

    /// Copies a strided view (offsets relative to its first element) into row-major order.
    static func gather(_ source: [UInt8], view: TorchTensorRef, elementSize: Int) -> [UInt8] {
        let count = view.elementCount
        var out = [UInt8](repeating: 0, count: count * elementSize)
        guard count > 0 else { return out }
        let shape = view.shape, strides = view.strides, rank = shape.count
        source.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                // Odometer over all but the last dimension; the last one is a strided inner loop.
                let inner = shape.last ?? 1, innerStride = strides.last ?? 1
                var index = [Int](repeating: 0, count: max(rank - 1, 0))
                var base = 0, o = 0
                func copyRow<T>(_: T.Type) {
                    let s = src.baseAddress!, d = dst.baseAddress!
                    for j in 0..<inner {
                        d.storeBytes(of: s.loadUnaligned(fromByteOffset: (base + j * innerStride) * elementSize, as: T.self),
                                     toByteOffset: (o + j) * elementSize, as: T.self)
                    }
                }
                for _ in 0..<(count / inner) {
                    switch elementSize {
                    case 1: copyRow(UInt8.self)
                    case 2: copyRow(UInt16.self)
                    case 4: copyRow(UInt32.self)
                    default: copyRow(UInt64.self)
                    }
                    o += inner
                    var d = rank - 2
                    while d >= 0 {
                        index[d] += 1
                        base += strides[d]
                        if index[d] < shape[d] { break }
                        base -= strides[d] * shape[d]
                        index[d] = 0
                        d -= 1
                    }
                }
            }
        }
        return out
    }

    static func swapBytes(_ bytes: inout [UInt8], elementSize: Int) {
        guard elementSize > 1 else { return }
        bytes.withUnsafeMutableBytes { b in
            var i = 0
            while i + elementSize <= b.count {
                var lo = i, hi = i + elementSize - 1
                while lo < hi { b.swapAt(lo, hi); lo += 1; hi -= 1 }
                i += elementSize
            }
        }
    }
}
