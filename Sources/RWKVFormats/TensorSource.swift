/// Name, element type and shape of one stored tensor. Shapes are row-major, outermost
/// dimension first (torch order) in every format, GGUF included.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]

    public init(name: String, dtype: DType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { dtype.byteCount(elements: elementCount) ?? 0 }
}

/// A reader of a checkpoint file: it lists tensors up front and reads the data of one tensor
/// at a time, so memory stays bounded by the largest tensor whatever the file size.
public protocol TensorSource: AnyObject {
    /// The path as the user gave it, used in error messages.
    var path: String { get }
    /// Human-readable format name, e.g. "torch zip (.pth)".
    var formatName: String { get }
    /// Every tensor, in file order.
    var tensors: [TensorInfo] { get }
    /// The tensor named `name` (bytes compared), found in constant time by the readers: callers
    /// look every tensor up, and a linear search made a 36,000-tensor file take minutes.
    func info(_ name: String) -> TensorInfo?
    /// The tensor's elements, contiguous row-major little-endian bytes in `info.dtype`.
    func data(_ name: String) throws -> [UInt8]
    /// The same bytes, handed to `body` in order `pieceBytes` at a time (the last piece
    /// may be shorter), each valid only during the call. Readers that can read part of a tensor
    /// read each piece into `buffer`, so a tensor of any size passes through `pieceBytes` of
    /// memory that stays in cache. A failed check (a zip record's CRC-32) may throw after the
    /// last piece: callers must not keep what they made of the pieces then.
    func read(_ name: String, inPiecesOf pieceBytes: Int, using buffer: ReusableBuffer,
              _ body: (UnsafeRawBufferPointer) throws -> Void) throws
}

extension TensorSource {
    /// Reads the whole tensor (`data`), then hands it out in pieces: sources that can read a
    /// part of a tensor override this.
    public func read(_ name: String, inPiecesOf pieceBytes: Int, using buffer: ReusableBuffer,
                     _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        try forEachPiece(of: try data(name), pieceBytes: pieceBytes, body)
    }

    /// A linear search, for small test sources; the readers index their tensors.
    public func info(_ name: String) -> TensorInfo? {
        tensors.first { $0.name.utf8.elementsEqual(name.utf8) }
    }

    /// The tensor's header, or the error every reader gives for a tensor the layout requires.
    public func requiredInfo(_ name: String) throws -> TensorInfo {
        guard let info = info(name) else { throw RWKVError(path, "missing tensor \(name)") }
        return info
    }

    /// The tensor's values as Float (widened, or dequantized for block types).
    public func floats(_ name: String) throws -> [Float] {
        guard let info = info(name) else { throw RWKVError(path, "no tensor named \(name)") }
        let bytes = try data(name)
        return try ElementCodec.decode(bytes, as: info.dtype, count: info.elementCount, context: "\(path): \(name)")
    }
}

/// Hands `bytes` to `body` in consecutive pieces of at most `pieceBytes`.
public func forEachPiece(of bytes: [UInt8], pieceBytes: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
    precondition(pieceBytes > 0, "forEachPiece: pieces must hold at least one byte")   // caller's contract
    try bytes.withUnsafeBytes { bytes in
        var start = 0
        while start < bytes.count {
            let end = min(bytes.count, start + pieceBytes)
            try body(UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
            start = end
        }
    }
}

/// A name compared and hashed by its UTF-8 bytes. Swift's `String` equality is canonical
/// equivalence, so "caf\u{e9}" (NFC) and "cafe\u{301}" (NFD) are equal as Strings; as keys of a
/// file they are two different tensors (the safetensors reference, Python dicts and ggml all
/// compare bytes), and must be neither merged nor refused as duplicates.
public struct ExactName: Hashable, Sendable {
    public let string: String
    public init(_ string: String) { self.string = string }

    public static func == (a: ExactName, b: ExactName) -> Bool { a.string.utf8.elementsEqual(b.string.utf8) }

    public func hash(into hasher: inout Hasher) {
        var s = string
        s.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}
