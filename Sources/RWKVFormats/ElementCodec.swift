import CKernels

/// Turns stored bytes into Float values and back. Plain types are here; block types are
/// delegated to `Quantizer`.
public enum ElementCodec {
    public static func decode(_ bytes: [UInt8], as dtype: DType, count: Int, context: String) throws -> [Float] {
        guard let expected = dtype.byteCount(elements: count), expected == bytes.count else {
            throw RWKVError(nil, "\(context): \(bytes.count) bytes do not hold \(count) \(dtype.rawValue) values")
        }
        var out = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer { dst in
                switch dtype {
                case .f32:
                    for i in 0..<count { dst[i] = raw.loadUnaligned(fromByteOffset: i * 4, as: Float.self) }
                case .f16:
                    chalf_f16_to_f32(raw.baseAddress!.assumingMemoryBound(to: UInt16.self), dst.baseAddress!, count)
                case .bf16:
                    chalf_bf16_to_f32(raw.baseAddress!.assumingMemoryBound(to: UInt16.self), dst.baseAddress!, count)
                case .f64:
                    for i in 0..<count { dst[i] = Float(raw.loadUnaligned(fromByteOffset: i * 8, as: Double.self)) }
                case .i64:
                    for i in 0..<count { dst[i] = Float(raw.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)) }
                case .i32:
                    for i in 0..<count { dst[i] = Float(raw.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)) }
                case .i16:
                    for i in 0..<count { dst[i] = Float(raw.loadUnaligned(fromByteOffset: i * 2, as: Int16.self)) }
                case .i8:
                    for i in 0..<count { dst[i] = Float(Int8(bitPattern: raw[i])) }
                case .u8, .bool:
                    for i in 0..<count { dst[i] = Float(raw[i]) }
                case .q8_0, .q4_0, .q4_1, .q5_0, .q5_1:
                    Quantizer.dequantize(raw, type: dtype, into: dst)
                }
            }
        }
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
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBytes { raw in
                switch dtype {
                case .f32:
                    raw.copyMemory(from: UnsafeRawBufferPointer(src))
                case .f16:
                    overflowCount += chalf_f32_to_f16(src.baseAddress!, raw.baseAddress!.assumingMemoryBound(to: UInt16.self), src.count)
                case .bf16:
                    overflowCount += chalf_f32_to_bf16(src.baseAddress!, raw.baseAddress!.assumingMemoryBound(to: UInt16.self), src.count)
                case .q8_0, .q4_0, .q4_1, .q5_0, .q5_1:
                    overflowCount += Quantizer.quantize(src, type: dtype, into: raw)
                default:
                    break // excluded by the guard above
                }
            }
        }
        return out
    }
}
