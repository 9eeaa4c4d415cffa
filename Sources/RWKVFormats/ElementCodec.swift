/// Turns stored bytes into Float values and back (arrays here, the work in `decodeChunk` and
/// `encodeChunk`); block types are delegated to `Quantizer`.
public enum ElementCodec {
    public static func decode(_ bytes: [UInt8], as dtype: DType, count: Int, context: String) throws -> [Float] {
        guard let expected = dtype.byteCount(elements: count), expected == bytes.count else {
            throw RWKVError(nil, "\(context): \(bytes.count) bytes do not hold \(count) \(dtype.rawValue) values")
        }
        var out = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { raw in out.withUnsafeMutableBufferPointer { decodeChunk(raw, as: dtype, into: $0) } }
        return out
    }

    /// Encodes Float values as `dtype`. `overflowCount` counts finite values that became
    /// infinite (narrowing to f16 or bf16, or a block whose fp16 scale overflowed), so callers
    /// can report them instead of hiding them.
    public static func encode(_ values: [Float], as dtype: DType, overflowCount: inout Int) throws -> [UInt8] {
        guard dtype.isFloatingPoint, dtype != .f64 else {
            throw RWKVError(nil, "cannot encode values as \(dtype.rawValue)")
        }
        guard let size = dtype.byteCount(elements: values.count) else {
            throw RWKVError(nil, "\(values.count) values are not a whole number of \(dtype.rawValue) blocks of \(dtype.blockSize)")
        }
        var out = [UInt8](repeating: 0, count: size)
        values.withUnsafeBufferPointer { src in out.withUnsafeMutableBytes { overflowCount += encodeChunk(src, as: dtype, into: $0) } }
        return out
    }
}
