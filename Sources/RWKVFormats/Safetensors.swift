/// Reader for `.safetensors`: u64 little-endian header length, a JSON header, then the data.
/// Validation follows the reference implementation: capped header, UTF-8 JSON object,
/// no duplicate keys, known dtypes, overflow-checked shapes, and offsets that are contiguous,
/// non-overlapping and fill the data section exactly.
public final class SafetensorsReader: TensorSource {
    public let path: String
    public let formatName = "safetensors"
    public let tensors: [TensorInfo]
    public let metadata: [String: String]
    private let file: InputFile
    private let dataStart: Int
    /// Position in `tensors` and data range of each tensor, by exact name.
    private let index: [ExactName: (position: Int, range: Range<Int>)]

    /// The reference implementation's cap on the header (100 MB).
    public static let maxHeaderBytes = 100_000_000

    public init(path: String) throws {
        let file = try InputFile(path)
        self.file = file
        self.path = path
        guard file.size >= 8 else {
            throw RWKVError(path, "too small (\(file.size) bytes) to be a safetensors file")
        }
        let lengthBytes = try file.read(at: 0, count: 8, what: "header length")
        let headerLength = lengthBytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard headerLength <= UInt64(Self.maxHeaderBytes) else {
            throw RWKVError(path, "safetensors header length \(headerLength) exceeds the 100 MB limit")
        }
        guard headerLength <= UInt64(file.size - 8) else {
            throw RWKVError(path, "safetensors header length \(headerLength) runs past the end of the file (\(file.size) bytes)")
        }
        let headerBytes = try file.read(at: 8, count: Int(headerLength), what: "header")
        guard String(validating: headerBytes, as: UTF8.self) != nil else {
            throw RWKVError(path, "safetensors header is not valid UTF-8")
        }
        guard headerBytes.first == UInt8(ascii: "{") else {
            throw RWKVError(path, "safetensors header is not a JSON object")
        }
        dataStart = 8 + Int(headerLength)
        let dataSize = file.size - dataStart

        // Entries are turned into tensor infos as they are parsed: memory holds the infos, not
        // a JSON tree of the whole header.
        var meta: [String: String] = [:]
        var entries: [(info: TensorInfo, range: Range<Int>)] = []
        do {
            try JSONValue.parseMembers(headerBytes) { name, value in
                if name == "__metadata__" {
                    guard case let .object(kv) = value else { throw RWKVError(path, "__metadata__ is not an object of strings") }
                    for (k, v) in kv {
                        guard case let .string(s) = v else { throw RWKVError(path, "__metadata__ value for \"\(k)\" is not a string") }
                        meta[k] = s
                    }
                    return
                }
                entries.append(try Self.entry(name, value, path: path))
            }
        } catch let error as JSONError {
            throw RWKVError(path, "safetensors header is not valid JSON: \(error.description)")
        }
        // Offsets must tile [0, dataSize) exactly, in any header order.
        var cursor = 0
        for e in entries.sorted(by: { ($0.range.lowerBound, $0.range.upperBound) < ($1.range.lowerBound, $1.range.upperBound) }) {
            if e.range.lowerBound < cursor {
                throw RWKVError(path, "tensor \(e.info.name) overlaps the previous tensor (offset \(e.range.lowerBound) < \(cursor))")
            }
            if e.range.lowerBound > cursor {
                throw RWKVError(path, "gap in the data before tensor \(e.info.name) (offset \(e.range.lowerBound), expected \(cursor))")
            }
            cursor = e.range.upperBound
        }
        if cursor > dataSize {
            throw RWKVError(path, "tensor data ends at \(cursor) but the file holds only \(dataSize) data bytes (truncated)")
        }
        if cursor < dataSize {
            throw RWKVError(path, "\(dataSize - cursor) trailing bytes after the last tensor")
        }
        tensors = entries.map(\.info)
        index = Dictionary(entries.enumerated().map { (ExactName($1.info.name), ($0, $1.range)) }, uniquingKeysWith: { a, _ in a })
        metadata = meta
    }

    private static func entry(_ name: String, _ value: JSONValue, path: String) throws -> (info: TensorInfo, range: Range<Int>) {
        guard case .object = value, case let .string(dtypeName)? = value["dtype"],
              case let .array(shapeValues)? = value["shape"], case let .array(offsetValues)? = value["data_offsets"] else {
            throw RWKVError(path, "tensor \(name): header entry needs dtype, shape and data_offsets")
        }
        guard let dtype = DType(safetensorsName: dtypeName) else {
            throw RWKVError(path, "tensor \(name): unsupported dtype \"\(dtypeName)\"")
        }
        var shape: [Int] = []
        var count = 1
        for v in shapeValues {
            guard case let .integer(d) = v, d >= 0 else { throw RWKVError(path, "tensor \(name): shape must hold non-negative integers") }
            let (c, overflow) = count.multipliedReportingOverflow(by: Int(d))
            guard !overflow else { throw RWKVError(path, "tensor \(name): shape \(shapeValues.map { "\($0)" }) overflows") }
            count = c
            shape.append(Int(d))
        }
        guard offsetValues.count == 2, case let .integer(begin) = offsetValues[0], case let .integer(end) = offsetValues[1],
              begin >= 0, end >= begin else {
            throw RWKVError(path, "tensor \(name): data_offsets must be [begin, end] with 0 <= begin <= end")
        }
        guard let bytes = dtype.byteCount(elements: count) else {
            throw RWKVError(path, "tensor \(name): shape \(shape) overflows")
        }
        guard Int(end - begin) == bytes else {
            throw RWKVError(path, "tensor \(name): data_offsets span \(end - begin) bytes but shape \(shape) of \(dtype.rawValue) needs \(bytes)")
        }
        return (TensorInfo(name: name, dtype: dtype, shape: shape), Int(begin)..<Int(end))
    }

    public func info(_ name: String) -> TensorInfo? { index[ExactName(name)].map { tensors[$0.position] } }

    public func data(_ name: String) throws -> [UInt8] {
        guard let r = index[ExactName(name)]?.range else { throw RWKVError(path, "no tensor named \(name)") }
        return try file.read(at: dataStart + r.lowerBound, count: r.count, what: "tensor \(name)")
    }

    /// One pread per piece, into the same `pieceBytes` of `buffer`.
    public func read(_ name: String, inPiecesOf pieceBytes: Int, using buffer: ReusableBuffer,
                     _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let r = index[ExactName(name)]?.range else { throw RWKVError(path, "no tensor named \(name)") }
        precondition(pieceBytes > 0, "SafetensorsReader.read: pieces must hold at least one byte")   // caller's contract
        let piece = buffer.bytes(min(pieceBytes, r.count))
        var start = 0
        while start < r.count {
            let chunk = UnsafeMutableRawBufferPointer(rebasing: piece[0..<min(piece.count, r.count - start)])
            try file.read(at: dataStart + r.lowerBound + start, into: chunk, what: "tensor \(name)")
            try body(UnsafeRawBufferPointer(chunk))
            start += chunk.count
        }
    }
}

/// Writes `.safetensors` in one pass: the header is computed from the tensor list, then each
/// tensor's bytes are produced and appended in order.
public enum SafetensorsWriter {
    /// `durable`: flush to disk before the rename (see `AtomicOutputFile`).
    public static func write(to path: String, tensors: [TensorInfo], metadata: [String: String] = [:],
                             inputs: [String] = [], durable: Bool = true, data: (TensorInfo) throws -> [UInt8]) throws {
        var offset = 0
        var parts: [String] = []
        if !metadata.isEmpty {
            let kv = metadata.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }
            parts.append("\"__metadata__\":{\(kv.joined(separator: ","))}")
        }
        for t in tensors {
            guard let name = t.dtype.safetensorsName else { throw RWKVError(path, "safetensors cannot store \(t.dtype.rawValue)") }
            let end = offset + t.byteCount
            parts.append("\(jsonString(t.name)):{\"dtype\":\"\(name)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        var header = Array("{\(parts.joined(separator: ","))}".utf8)
        while header.count % 8 != 0 { header.append(0x20) }   // pad with spaces: data starts 8-aligned

        let out = try AtomicOutputFile(path, refusingToOverwrite: inputs, durable: durable)
        var length = UInt64(header.count).littleEndian
        try withUnsafeBytes(of: &length) { try out.write($0) }
        try out.write(header)
        for t in tensors {
            let bytes = try data(t)
            guard bytes.count == t.byteCount else {
                throw RWKVError(path, "tensor \(t.name): got \(bytes.count) bytes, expected \(t.byteCount)")
            }
            try out.write(bytes)
        }
        try out.commit()
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
