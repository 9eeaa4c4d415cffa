import CKernels

/// Pointer-based decoding and encoding of a slice of a tensor, so a converter can split one
/// tensor into pieces (whole blocks) and work on them in parallel without copying arrays.
extension ElementCodec {
    /// Decodes `dst.count` values of `dtype` from `src` (exactly their byte size).
    public static func decodeChunk(_ src: UnsafeRawBufferPointer, as dtype: DType, into dst: UnsafeMutableBufferPointer<Float>) {
        let n = dst.count
        guard n > 0 else { return }
        let base = src.baseAddress!
        switch dtype {
        case .f32:
            UnsafeMutableRawBufferPointer(dst).copyMemory(from: UnsafeRawBufferPointer(start: base, count: n * 4))
        case .f16:
            chalf_f16_to_f32(base.assumingMemoryBound(to: UInt16.self), dst.baseAddress!, n)
        case .bf16:
            chalf_bf16_to_f32(base.assumingMemoryBound(to: UInt16.self), dst.baseAddress!, n)
        case .f64:
            for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: i * 8, as: Double.self)) }
        case .i64:
            for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)) }
        case .i32:
            for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)) }
        case .i16:
            for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: i * 2, as: Int16.self)) }
        case .i8:
            for i in 0..<n { dst[i] = Float(Int8(bitPattern: src[i])) }
        case .u8, .bool:
            for i in 0..<n { dst[i] = Float(src[i]) }
        case .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_nl:
            Quantizer.dequantize(src, type: dtype, into: dst)
        }
    }

    /// Encodes `src` as `dtype` into `dst` (exactly their byte size; for block types `src.count`
    /// is a whole number of blocks). Returns how many finite values overflowed to infinity (for
    /// block types: values in blocks whose scale overflowed). `importance` selects ggml's weighted
    /// quantizer for the types that have one (`Quantizer.usesImportance`; others ignore it); for
    /// q4_0, q4_1, q5_0, q5_1 `src` must then be whole rows (`Quantizer.needsWholeRows`).
    public static func encodeChunk(_ src: UnsafeBufferPointer<Float>, as dtype: DType, into dst: UnsafeMutableRawBufferPointer,
                                   importance: Quantizer.Importance? = nil) -> Int {
        guard src.count > 0 else { return 0 }
        switch dtype {
        case .f32:
            dst.copyMemory(from: UnsafeRawBufferPointer(src))
            return 0
        case .f16:
            return chalf_f32_to_f16(src.baseAddress!, dst.baseAddress!.assumingMemoryBound(to: UInt16.self), src.count)
        case .bf16:
            return chalf_f32_to_bf16(src.baseAddress!, dst.baseAddress!.assumingMemoryBound(to: UInt16.self), src.count)
        case .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_nl:
            // Counts values in blocks whose fp16 scale overflowed (they would load as inf/NaN).
            return Quantizer.quantize(src, type: dtype, into: dst, importance: Quantizer.usesImportance(dtype) ? importance : nil)
        case .f64, .i64, .i32, .i16, .i8, .u8, .bool:
            preconditionFailure("encodeChunk: \(dtype) is not an output type")   // callers choose the type
        }
    }

    /// Whether `transcodeChunk` has a direct path from `source` to `target` (no f32 in between).
    /// bf16 -> q8_0 has one only with the AVX2 kernel; without it, decoding then encoding is
    /// the same work.
    public static func canTranscode(from source: DType, to target: DType) -> Bool {
        let floats: [DType] = [.f32, .f16, .bf16]
        return (source == target || target == .f32) && floats.contains(source)
            || source == .bf16 && (target == .f16 || target == .q8_0 && Q8_0.usesAVX2)
    }

    /// Converts `src` (values of `source`) straight into `dst` as `target`, the same bytes as
    /// `decodeChunk` then `encodeChunk` but without the f32 pass through memory; only for pairs
    /// `canTranscode` accepts (for q8_0, whole blocks). Returns the overflow count as `encodeChunk`.
    public static func transcodeChunk(_ src: UnsafeRawBufferPointer, from source: DType,
                                      into dst: UnsafeMutableRawBufferPointer, as target: DType) -> Int {
        let count = src.count / source.blockBytes
        precondition(canTranscode(from: source, to: target) && target.byteCount(elements: count) == dst.count,
                     "transcodeChunk: \(source) -> \(target) is not a direct path for these sizes")   // callers check first
        if source == target {
            // The same type: the bytes as they are (a pass through f32 could only change NaN payloads).
            dst.copyMemory(from: src)
            return 0
        }
        if target == .f32 {   // widening is exact: decoded straight into the output
            decodeChunk(src, as: source, into: dst.bindMemory(to: Float.self))
            return 0
        }
        guard let s = src.baseAddress?.assumingMemoryBound(to: UInt16.self), let d = dst.baseAddress else { return 0 }
        if target == .f16 {
            return chalf_bf16_to_f16(s, d.assumingMemoryBound(to: UInt16.self), count)
        }
        return Q8_0.quantizeWithAVX2(bf16: s, into: d, blocks: count / 32)
    }
}
