import CKernels

// ggml's legacy block formats (ggml-common.h), quantized exactly as ggml's `quantize_row_*_ref`
// (ggml-quants.c) and dequantized as `dequantize_row_*`. Layouts, little-endian, fp16 = IEEE half:
//
//   q8_0  34 bytes: d fp16, qs[32] int8                    x = qs * d
//   q4_0  18 bytes: d, qs[16]                              x = (nibble - 8) * d
//   q4_1  20 bytes: d, m fp16, qs[16]                      x = nibble * d + m
//   q5_0  22 bytes: d, qh u32, qs[16]                      x = (nibble | qh bit << 4 - 16) * d
//   q5_1  24 bytes: d, m, qh u32, qs[16]                   x = (nibble | qh bit << 4) * d + m
//
// Nibbles: byte j holds element j in its low half and element j+16 in its high half; bit j of
// qh is bit 4 of element j.
//
// Exactness: ggml's reference rounds every float32 operation on its own (a compiler that fuses
// x*id + 8.5 into an FMA changes rare q4_0/q5_0 codes; gguf does not fuse, nor does Swift, and no
// code here uses FMA). Each format has two paths that give the same bits:
// `reference`, a line-by-line transcription of ggml's C loop, and a fast path for blocks whose
// values are all finite and whose inverse scale is finite (every block of a real model), which
// replaces roundf/truncf (library calls on baseline x86-64) by exact float tricks and
// vectorises. Degenerate blocks (NaN, inf, scales so tiny that 1/d overflows) take the
// reference path, which also reproduces how C converts NaN and out-of-range floats on x86-64.

/// One block format: `valuesPerBlock` floats <-> `bytesPerBlock` bytes. K-quants (256-value
/// super-blocks) fit the same shape.
protocol BlockFormat {
    static var valuesPerBlock: Int { get }
    static var bytesPerBlock: Int { get }
    /// Quantizes one block. Returns true when the block's values were finite but its fp16 scale
    /// (or minimum) is infinite, so it dequantizes to inf/NaN.
    static func quantize(_ x: UnsafePointer<Float>, into y: UnsafeMutableRawPointer) -> Bool
    static func dequantize(_ y: UnsafeRawPointer, into x: UnsafeMutablePointer<Float>)
}

// MARK: q8_0

enum Q8_0: BlockFormat {
    static let valuesPerBlock = 32
    static let bytesPerBlock = 34

    @inline(__always)
    static func quantize(_ x: UnsafePointer<Float>, into y: UnsafeMutableRawPointer) -> Bool {
        let amaxBits = maxMagnitudeBits(x, 32)
        guard amaxBits < infinityBits else { return reference(x, into: y) }
        let amax = Float(bitPattern: amaxBits)
        let d = amax / 127
        let id: Float = d != 0 ? 1 / d : 0
        guard id.isFinite else { return reference(x, into: y) }
        storeHalf(d, y)
        let qs = y.advanced(by: 2).assumingMemoryBound(to: UInt8.self)
        for j in 0..<32 {
            qs[j] = lowByte(ofIntegral: roundAwayFromZero(x[j] * id))
        }
        return scaleOverflowed(y)
    }

    /// quantize_row_q8_0_ref.
    static func reference(_ x: UnsafePointer<Float>, into y: UnsafeMutableRawPointer) -> Bool {
        var amax: Float = 0
        for j in 0..<32 {
            amax = cMax(amax, x[j].magnitude)
        }
        let d = amax / 127
        let id: Float = d != 0 ? 1 / d : 0
        storeHalf(d, y)
        for j in 0..<32 {
            y.storeBytes(of: UInt8(truncatingIfNeeded: cRound(x[j] * id)), toByteOffset: 2 + j, as: UInt8.self)
        }
        return allFinite(x) && scaleOverflowed(y)
    }

    @inline(__always)
    static func dequantize(_ y: UnsafeRawPointer, into x: UnsafeMutablePointer<Float>) {
        let d = loadHalf(y, 0)
        for j in 0..<32 {
            x[j] = Float(Int8(bitPattern: y.load(fromByteOffset: 2 + j, as: UInt8.self))) * d
        }
    }
}

// q8_0 is the common output type and its fast path above is scalar (~1.5 ns a value): with AVX2
// a C kernel (Sources/CKernels/q8_0.c, ~0.2 ns) does whole runs of blocks, 8 values an instruction,
// with the same arithmetic, and hands back each block that needs `reference`.
extension Q8_0 {
    /// Whether this CPU runs the AVX2 kernel (checked once); else blocks go through `quantize`.
    static let usesAVX2 = chalf_has_avx2() != 0

    /// Quantizes `blocks` blocks from x into y with the AVX2 kernel (only when `usesAVX2`).
    /// Returns the values in blocks whose scale overflowed, as `Quantizer.quantize`.
    static func quantizeWithAVX2(_ x: UnsafePointer<Float>, into y: UnsafeMutableRawPointer, blocks: Int) -> Int {
        quantizeWithKernel(blocks: blocks, into: y) { b, overflowed in
            chalf_quantize_q8_0(x + b * 32, (y + b * 34).assumingMemoryBound(to: UInt8.self), blocks - b, &overflowed)
        } reference: { b in
            reference(x + b * 32, into: y + b * 34)
        }
    }

    /// The same from bf16 values, without widening them into memory first (only when `usesAVX2`).
    static func quantizeWithAVX2(bf16 x: UnsafePointer<UInt16>, into y: UnsafeMutableRawPointer, blocks: Int) -> Int {
        quantizeWithKernel(blocks: blocks, into: y) { b, overflowed in
            chalf_quantize_q8_0_bf16(x + b * 32, (y + b * 34).assumingMemoryBound(to: UInt8.self), blocks - b, &overflowed)
        } reference: { b in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 32) { block in
                chalf_bf16_to_f32(x + b * 32, block.baseAddress!, 32)
                return reference(block.baseAddress!, into: y + b * 34)
            }
        }
    }

    /// Runs `kernel(from, &overflowedBlocks)` (returns how many blocks it did from block `from`
    /// on) and `reference(b)` on each block where it stops, until all blocks are done.
    @inline(__always)
    private static func quantizeWithKernel(blocks: Int, into y: UnsafeMutableRawPointer,
                                           kernel: (Int, inout Int) -> Int, reference: (Int) -> Bool) -> Int {
        precondition(usesAVX2, "the q8_0 AVX2 kernel needs AVX2")
        var b = 0, overflowedBlocks = 0
        while b < blocks {
            var overflowed = 0
            b += kernel(b, &overflowed)
            overflowedBlocks += overflowed
            if b < blocks {
                if reference(b) { overflowedBlocks += 1 }
                b += 1
            }
        }
        return overflowedBlocks * 32
    }
}

// MARK: q4_0, q5_0 (scale only: d = max / -2^(bits-1), max = the signed value of largest magnitude)

enum Q4_0: BlockFormat {
    static let valuesPerBlock = 32
    static let bytesPerBlock = 18

    @inline(__always)
    static func quantize(_ x: UnsafePointer<Float>, into y: UnsafeMutableRawPointer) -> Bool {
        var q = CodeBlock()
        guard let d = q.withCodes({ symmetricCodes(x, levels: 16, into: $0) }) else { return reference(x, into: y) }
        storeHalf(d, y)
        q.packNibbles(into: y + 2)
        return scaleOverflowed(y)
    }

    /// quantize_row_q4_0_ref.
    static func reference(_ x: UnsafePointer<Float>, into y: UnsafeMutableRawPointer) -> Bool {
        let (max, finite) = referenceSignedMax(x)
        let d = max / -8
        let id: Float = d != 0 ? 1 / d : 0
        storeHalf(d, y)
        var q = CodeBlock()
        q.withCodes { q in
            for j in 0..<32 {
                q[j] = UInt8(truncatingIfNeeded: min(15, Int8(truncatingIfNeeded: cTruncate(x[j] * id + 8.5))))
            }
        }
        q.packNibbles(into: y + 2)
        return finite && scaleOverflowed(y)
    }

    @inline(__always)
    static func dequantize(_ y: UnsafeRawPointer, into x: UnsafeMutablePointer<Float>) {
        let d = loadHalf(y, 0)
        for j in 0..<16 {
            let b = y.load(fromByteOffset: 2 + j, as: UInt8.self)
            x[j] = Float(Int32(b & 0x0f) - 8) * d
            x[j + 16] = Float(Int32(b >> 4) - 8) * d
        }
    }
}

enum Q5_0: BlockFormat {
    static let valuesPerBlock = 32
    static let bytesPerBlock = 22

    @inline(__always)
    static func quantize(_ x: UnsafePointer<Float>, into y: UnsafeMutableRawPointer) -> Bool {
        var q = CodeBlock()
        guard let d = q.withCodes({ symmetricCodes(x, levels: 32, into: $0) }) else { return reference(x, into: y) }
        storeHalf(d, y)
        q.packFiveBits(into: y + 2)
        return scaleOverflowed(y)
    }

    /// quantize_row_q5_0_ref.
    static func reference(_ x: UnsafePointer<Float>, into y: UnsafeMutableRawPointer) -> Bool {
        let (max, finite) = referenceSignedMax(x)
        let d = max / -16
        let id: Float = d != 0 ? 1 / d : 0
        storeHalf(d, y)
        var q = CodeBlock()
        q.withCodes { q in
            for j in 0..<32 {
                q[j] = UInt8(truncatingIfNeeded: min(31, Int8(truncatingIfNeeded: cTruncate(x[j] * id + 16.5))))
            }
        }
        q.packFiveBits(into: y + 2)
        return finite && scaleOverflowed(y)
    }

    @inline(__always)
    static func dequantize(_ y: UnsafeRawPointer, into x: UnsafeMutablePointer<Float>) {
        let d = loadHalf(y, 0)
        let qh = y.loadUnaligned(fromByteOffset: 2, as: UInt32.self).littleEndian
        for j in 0..<16 {
            let b = UInt32(y.load(fromByteOffset: 6 + j, as: UInt8.self))
            let lo = (b & 0x0f) | ((qh >> UInt32(j)) & 1) << 4
            let hi = (b >> 4) | ((qh >> UInt32(j + 16)) & 1) << 4
            x[j] = Float(Int32(lo) - 16) * d
            x[j + 16] = Float(Int32(hi) - 16) * d
        }
    }
}

// MARK: q4_1, q5_1 (scale and minimum: d = (max - min) / (2^bits - 1), m = min)

enum Q4_1: BlockFormat {
    static let valuesPerBlock = 32
    static let bytesPerBlock = 20

    @inline(__always)
    static func quantize(_ x: UnsafePointer<Float>, into y: UnsafeMutableRawPointer) -> Bool {
        var q = CodeBlock()
        guard let (d, m) = q.withCodes({ affineCodes(x, levels: 16, into: $0) }) else { return reference(x, into: y) }
        storeHalf(d, y)
        storeHalf(m, y + 2)
        q.packNibbles(into: y + 4)
        return scaleOverflowed(y) || scaleOverflowed(y + 2)
    }

    /// quantize_row_q4_1_ref.
    static func reference(_ x: UnsafePointer<Float>, into y: UnsafeMutableRawPointer) -> Bool {
        let (min, max) = referenceMinMax(x)
        let d = (max - min) / 15
        let id: Float = d != 0 ? 1 / d : 0
        storeHalf(d, y)
        storeHalf(min, y + 2)
        var q = CodeBlock()
        q.withCodes { q in
            for j in 0..<32 {
                q[j] = UInt8(truncatingIfNeeded: Swift.min(15, Int8(truncatingIfNeeded: cTruncate((x[j] - min) * id + 0.5))))
            }
        }
        q.packNibbles(into: y + 4)
        return allFinite(x) && (scaleOverflowed(y) || scaleOverflowed(y + 2))
    }

    @inline(__always)
    static func dequantize(_ y: UnsafeRawPointer, into x: UnsafeMutablePointer<Float>) {
        let d = loadHalf(y, 0), m = loadHalf(y, 2)
        for j in 0..<16 {
            let b = y.load(fromByteOffset: 4 + j, as: UInt8.self)
            x[j] = Float(b & 0x0f) * d + m
            x[j + 16] = Float(b >> 4) * d + m
        }
    }
}

enum Q5_1: BlockFormat {
    static let valuesPerBlock = 32
    static let bytesPerBlock = 24

    @inline(__always)
    static func quantize(_ x: UnsafePointer<Float>, into y: UnsafeMutableRawPointer) -> Bool {
        var q = CodeBlock()
        guard let (d, m) = q.withCodes({ affineCodes(x, levels: 32, into: $0) }) else { return reference(x, into: y) }
        storeHalf(d, y)
        storeHalf(m, y + 2)
        q.packFiveBits(into: y + 4)
        return scaleOverflowed(y) || scaleOverflowed(y + 2)
    }

    /// quantize_row_q5_1_ref. Unlike the others it casts to uint8_t and has no MIN.
    static func reference(_ x: UnsafePointer<Float>, into y: UnsafeMutableRawPointer) -> Bool {
        let (min, max) = referenceMinMax(x)
        let d = (max - min) / 31
        let id: Float = d != 0 ? 1 / d : 0
        storeHalf(d, y)
        storeHalf(min, y + 2)
        var q = CodeBlock()
        q.withCodes { q in
            for j in 0..<32 {
                q[j] = UInt8(truncatingIfNeeded: cTruncate((x[j] - min) * id + 0.5))
            }
        }
        q.packFiveBits(into: y + 4)
        return allFinite(x) && (scaleOverflowed(y) || scaleOverflowed(y + 2))
    }

    @inline(__always)
    static func dequantize(_ y: UnsafeRawPointer, into x: UnsafeMutablePointer<Float>) {
        let d = loadHalf(y, 0), m = loadHalf(y, 2)
        let qh = y.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian
        for j in 0..<16 {
            let b = UInt32(y.load(fromByteOffset: 8 + j, as: UInt8.self))
            let lo = (b & 0x0f) | ((qh >> UInt32(j)) & 1) << 4
            let hi = (b >> 4) | ((qh >> UInt32(j + 16)) & 1) << 4
            x[j] = Float(lo) * d + m
            x[j + 16] = Float(hi) * d + m
        }
    }
}

// MARK: fast paths shared by the 4- and 5-bit formats

/// The 32 codes (0..<levels) of a block before packing, on the stack. (A SIMD32<UInt8> written
/// one lane at a time goes through memory on every store and was 5x slower.)
struct CodeBlock {
    private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    @inline(__always)
    mutating func withCodes<R>(_ body: (UnsafeMutablePointer<UInt8>) -> R) -> R {
        withUnsafeMutableBytes(of: &words) { body($0.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
    }

    /// Element j in the low nibble of byte j, element j+16 in the high nibble.
    @inline(__always)
    func packNibbles(into qs: UnsafeMutableRawPointer) {
        let (lo, hi) = halves
        qs.storeBytes(of: lo | (hi &<< 4), as: SIMD16<UInt8>.self)
    }

    /// qh (bit j = bit 4 of element j), then the low nibbles as in `packNibbles`.
    @inline(__always)
    func packFiveBits(into p: UnsafeMutableRawPointer) {
        // Gather bit 4 of 8 codes into one byte: isolate it as 0 or 1 per byte, then one
        // multiply moves byte i's bit to bit 56 + i without carries. (Byte i of a word is code
        // i of that word on little-endian machines, all Swift targets we build for.)
        func fifthBits(_ w: UInt64) -> UInt32 {
            UInt32(truncatingIfNeeded: (((w >> 4) & 0x0101_0101_0101_0101) &* 0x0102_0408_1020_4080) >> 56)
        }
        let w = words
        let qh = fifthBits(w.0) | fifthBits(w.1) << 8 | fifthBits(w.2) << 16 | fifthBits(w.3) << 24
        p.storeBytes(of: qh.littleEndian, as: UInt32.self)
        let (lo, hi) = halves
        p.advanced(by: 4).storeBytes(of: (lo & 0x0f) | (hi &<< 4), as: SIMD16<UInt8>.self)
    }

    private var halves: (SIMD16<UInt8>, SIMD16<UInt8>) {
        withUnsafeBytes(of: words) { ($0.loadUnaligned(as: SIMD16<UInt8>.self), $0.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self)) }
    }
}

/// q4_0 / q5_0 codes: `min(levels-1, trunc(x*id + levels/2 + 0.5))` with d = max / -(levels/2).
/// Returns d, or nil when the block needs the reference path.
@inline(__always)
private func symmetricCodes(_ x: UnsafePointer<Float>, levels: Int, into q: UnsafeMutablePointer<UInt8>) -> Float? {
    let amaxBits = maxMagnitudeBits(x, 32)
    guard amaxBits < infinityBits else { return nil }
    // ggml keeps the first value of largest magnitude, starting from max = +0.0: an all-zero
    // block keeps +0.0 whatever the signs of its zeros.
    var max: Float = 0
    if amaxBits != 0 {
        for j in 0..<32 where x[j].bitPattern & 0x7fff_ffff == amaxBits {
            max = x[j]
            break
        }
    }
    let half = Float(levels / 2)
    let d = max / -half
    let id: Float = d != 0 ? 1 / d : 0
    guard id.isFinite else { return nil }
    // x*id lies in [-half, half] up to a few ulps, so v is positive and below 2^22.
    let offset = half + 0.5
    let top = Float(levels - 1)
    for j in 0..<32 {
        let v = x[j] * id + offset
        q[j] = lowByte(ofIntegral: min(top, floorOfSmall(v)))
    }
    return d
}

/// q4_1 / q5_1 codes: `trunc((x - min)*id + 0.5)` with d = (max - min) / (levels - 1). ggml
/// clamps q4_1 to 15 and not q5_1, whose codes never exceed 31 anyway, so both clamp here.
/// Returns (d, min), or nil when the block needs the reference path.
@inline(__always)
private func affineCodes(_ x: UnsafePointer<Float>, levels: Int, into q: UnsafeMutablePointer<UInt8>) -> (Float, Float)? {
    guard maxMagnitudeBits(x, 32) < infinityBits else { return nil }
    // Sequential as in ggml, so ties between +0.0 and -0.0 resolve to the same zero.
    let (min, max) = referenceMinMax(x)
    let d = (max - min) / Float(levels - 1)
    let id: Float = d != 0 ? 1 / d : 0
    guard d.isFinite, id.isFinite else { return nil }
    let top = Float(levels - 1)
    for j in 0..<32 {
        let v = (x[j] - min) * id + 0.5  // in [0.5, levels - 1 + 0.5]
        q[j] = lowByte(ofIntegral: Swift.min(top, floorOfSmall(v)))
    }
    return (d, min)
}

// MARK: exact rounding without library calls (valid for |v| < 2^22)

/// 1.5 * 2^23: adding it to |v| < 2^22 lands on a float whose unit is 1, so the addition
/// rounds v to an integer (nearest even), and the integer sits in the low mantissa bits.
private let roundingMagic: Float = 12_582_912

@inline(__always)
private func floorOfSmall(_ v: Float) -> Float {
    let r = (v + roundingMagic) - roundingMagic
    return r > v ? r - 1 : r
}

/// roundf: halves away from zero.
@inline(__always)
private func roundAwayFromZero(_ v: Float) -> Float {
    let a = v.magnitude
    let f = floorOfSmall(a)
    let r = a - f >= 0.5 ? f + 1 : f  // a - f is exact
    return v < 0 ? -r : r
}

/// Two's-complement low byte of an integer-valued float with |v| < 2^22, like C's
/// (int8_t)/(uint8_t) casts of it.
@inline(__always)
private func lowByte(ofIntegral v: Float) -> UInt8 {
    UInt8(truncatingIfNeeded: (v + roundingMagic).bitPattern)
}

// MARK: C semantics for the reference paths

/// `(int)v` as C compiles it on x86-64 (cvttss2si): truncation toward zero, and INT32_MIN for
/// NaN and out-of-range values. Only degenerate blocks reach those; gguf's numpy agrees.
@inline(__always)
func cTruncate(_ v: Float) -> Int32 {
    v > -2_147_483_904 && v < 2_147_483_648 ? Int32(v) : .min
}

/// `(int)roundf(v)` on x86-64.
@inline(__always)
func cRound(_ v: Float) -> Int32 {
    v.isFinite ? cTruncate(v.rounded(.toNearestOrAwayFromZero)) : .min
}

/// ggml's MAX(a, b) macro, whose NaN behaviour depends on the argument order.
@inline(__always)
private func cMax(_ a: Float, _ b: Float) -> Float { a > b ? a : b }

/// The first value of largest magnitude, as ggml's q4_0/q5_0 loops find it (NaN never wins).
private func referenceSignedMax(_ x: UnsafePointer<Float>) -> (max: Float, finite: Bool) {
    var amax: Float = 0, max: Float = 0
    for j in 0..<32 where amax < x[j].magnitude {
        amax = x[j].magnitude
        max = x[j]
    }
    return (max, allFinite(x))
}

/// ggml's q4_1/q5_1 min/max loop: strict comparisons from ±FLT_MAX, so the first of equal
/// values wins and NaN is skipped.
@inline(__always)
private func referenceMinMax(_ x: UnsafePointer<Float>) -> (min: Float, max: Float) {
    var min = Float.greatestFiniteMagnitude, max = -Float.greatestFiniteMagnitude
    for j in 0..<32 {
        let v = x[j]
        if v < min { min = v }
        if v > max { max = v }
    }
    return (min, max)
}

// MARK: small helpers

private let infinityBits: UInt32 = 0x7f80_0000

/// Largest |x| as bits with the sign cleared. For finite floats this orders like |x|; any inf or
/// NaN gives a value >= `infinityBits`. Integer max vectorises, a float max with NaN rules does not.
@inline(__always)
private func maxMagnitudeBits(_ x: UnsafePointer<Float>, _ n: Int) -> UInt32 {
    UnsafeRawPointer(x).withMemoryRebound(to: UInt32.self, capacity: n) { bits in
        var m: UInt32 = 0
        for j in 0..<n {
            m = Swift.max(m, bits[j] & 0x7fff_ffff)
        }
        return m
    }
}

private func allFinite(_ x: UnsafePointer<Float>) -> Bool {
    maxMagnitudeBits(x, 32) < infinityBits
}

@inline(__always)
private func storeHalf(_ v: Float, _ p: UnsafeMutableRawPointer) {
    p.storeBytes(of: chalf_half_from_float(v).littleEndian, as: UInt16.self)
}

@inline(__always)
private func loadHalf(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
    chalf_float_from_half(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
}

/// True when the fp16 at `p` is infinite.
@inline(__always)
private func scaleOverflowed(_ p: UnsafeMutableRawPointer) -> Bool {
    p.loadUnaligned(as: UInt16.self) & 0x7fff == 0x7c00
}
