import CKernels
import Foundation
import Testing
@testable import RWKVFormats

@Suite struct HalfFloatTests {
    /// Little-endian u16 values from a byte tensor.
    func halves(_ bytes: [UInt8]) -> [UInt16] {
        stride(from: 0, to: bytes.count, by: 2).map { UInt16(bytes[$0]) | UInt16(bytes[$0 + 1]) << 8 }
    }

    func isHalfNaN(_ h: UInt16) -> Bool { h & 0x7c00 == 0x7c00 && h & 0x03ff != 0 }

    @Test func f32ToF16MatchesNumpy() throws {
        let v = try QuantVectors()
        let input = try v.floats("half.input")
        let expected = halves(try v.bytes("half.f16"))
        var overflow = 0
        let ours = halves(try ElementCodec.encode(input, as: .f16, overflowCount: &overflow))
        var expectedOverflow = 0, nans = 0
        for i in input.indices {
            if input[i].isNaN {
                // numpy keeps a signalling NaN signalling; we (like F16C and ggml) make it quiet.
                nans += 1
                #expect(isHalfNaN(ours[i]) && ours[i] & 0x8000 == expected[i] & 0x8000, "NaN \(input[i].bitPattern)")
            } else {
                #expect(ours[i] == expected[i], "f16(\(input[i])) bits \(input[i].bitPattern)")
                if input[i].isFinite && expected[i] & 0x7fff == 0x7c00 { expectedOverflow += 1 }
            }
        }
        #expect(nans > 0 && expectedOverflow > 0)
        #expect(overflow == expectedOverflow)
    }

    @Test func f32ToBF16MatchesGGMLAndTorch() throws {
        let v = try QuantVectors()
        let input = try v.floats("half.input")
        let expected = halves(try v.bytes("half.bf16"))
        var overflow = 0
        let ours = halves(try ElementCodec.encode(input, as: .bf16, overflowCount: &overflow))
        var expectedOverflow = 0
        for i in input.indices {
            // NaN included: ggml's rule (quiet, sign and top payload kept) is ours.
            #expect(ours[i] == expected[i], "bf16(\(input[i])) bits \(input[i].bitPattern)")
            if input[i].isFinite && expected[i] & 0x7fff == 0x7f80 { expectedOverflow += 1 }
        }
        #expect(expectedOverflow > 0)
        #expect(overflow == expectedOverflow)
    }

    @Test func f16ToF32MatchesNumpy() throws {
        let v = try QuantVectors()
        let bits = halves(try v.bytes("f16.bits"))
        let expected = try v.floats("f16.values")
        let ours = try ElementCodec.decode(try v.bytes("f16.bits"), as: .f16, count: bits.count, context: "vectors")
        for i in bits.indices {
            // A NaN comes out quiet (vcvtph2ps does this; numpy keeps a signalling one).
            let want = isHalfNaN(bits[i]) ? expected[i].bitPattern | 0x0040_0000 : expected[i].bitPattern
            #expect(ours[i].bitPattern == want, "f16 bits \(bits[i])")
        }
    }

    @Test(.enabled(if: chalf_has_f16c() != 0, "this CPU has no F16C: only the scalar path runs"))
    func f16cAndScalarAgreeOnEveryHalf() {
        let all = (0...UInt16.max).map { $0 }
        var a = [Float](repeating: 0, count: all.count), b = a
        chalf_f16_to_f32(all, &a, all.count)
        chalf_f16_to_f32_scalar(all, &b, all.count)
        #expect(a.map(\.bitPattern) == b.map(\.bitPattern))
        // and back: every half survives the round trip through f32 on both paths
        var h1 = [UInt16](repeating: 0, count: all.count), h2 = h1
        _ = chalf_f32_to_f16(a, &h1, a.count)
        _ = chalf_f32_to_f16_scalar(a, &h2, a.count)
        #expect(h1 == h2)
        #expect(zip(h1, all).allSatisfy { $0 == $1 || (isHalfNaN($0) && isHalfNaN($1)) })
    }

    @Test(.enabled(if: chalf_has_f16c() != 0, "this CPU has no F16C: only the scalar path runs"))
    func f16cAndScalarAgreeOnF32Sweep() {
        // Every 509th float32 bit pattern (8.4 million, all exponents, NaNs included), then the
        // rounding edges of every half: its value plus 0x0fff, 0x1000 (the tie) and 0x1001 in the
        // f32 bits below the half's last mantissa bit.
        let chunk = 1 << 20
        var input = [UInt32](repeating: 0, count: chunk)
        var f16c = [UInt16](repeating: 0, count: chunk), scalar = f16c
        var mismatches = 0
        func compare(_ n: Int) {
            input.withUnsafeBufferPointer { raw in
                raw.withMemoryRebound(to: Float.self) { x in
                    let o1 = chalf_f32_to_f16(x.baseAddress!, &f16c, n)
                    let o2 = chalf_f32_to_f16_scalar(x.baseAddress!, &scalar, n)
                    if o1 != o2 || memcmp(f16c, scalar, n * 2) != 0 { mismatches += 1 }
                }
            }
        }
        var next: UInt64 = 0
        while next < 1 << 32 {
            var n = 0
            while n < chunk && next < 1 << 32 { input[n] = UInt32(next); n += 1; next += 509 }
            compare(n)
        }
        var n = 0
        for h in 0...UInt16.max {
            var f: Float = 0
            var hh = h
            chalf_f16_to_f32_scalar(&hh, &f, 1)
            for offset: UInt32 in [0x0fff, 0x1000, 0x1001] { input[n] = f.bitPattern &+ offset; n += 1 }
        }
        compare(n)
        #expect(mismatches == 0)
    }

    @Test func f16EncodingCountsOverflows() throws {
        let values: [Float] = [65504, 65519, 65520, 1e5, -1e6, .infinity, -.infinity, .nan, .greatestFiniteMagnitude, 1, -65520]
        var overflow = 0
        let bytes = try ElementCodec.encode(values, as: .f16, overflowCount: &overflow)
        #expect(overflow == 5)  // 65520, 1e5, -1e6, max, -65520; inf was already infinite
        let back = try ElementCodec.decode(bytes, as: .f16, count: values.count, context: "test")
        #expect(back[0] == 65504 && back[1] == 65504 && back[2] == .infinity && back[10] == -.infinity && back[7].isNaN)
    }

    /// The direct bf16 -> f16 path must give exactly the bytes and overflow count of widening to
    /// f32 and narrowing, for every bf16 bit pattern (NaNs, infinities, subnormals, out-of-range
    /// values) and a tail shorter than one SIMD group (3 values past a multiple of 8).
    @Test func bf16ToF16DirectMatchesThroughF32() throws {
        var patterns = (0...UInt16.max).map { $0 }
        patterns += [0x4780, 0x7f7f, 0xc780]   // 65536, max finite, -65536: overflows in the tail
        let src = patterns.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }
        var expectedOverflow = 0
        let widened = try ElementCodec.decode(src, as: .bf16, count: patterns.count, context: "test")
        let expected = try ElementCodec.encode(widened, as: .f16, overflowCount: &expectedOverflow)
        var direct = [UInt8](repeating: 0, count: src.count)
        #expect(ElementCodec.canTranscode(from: .bf16, to: .f16))
        let overflow = src.withUnsafeBytes { s in
            direct.withUnsafeMutableBytes { ElementCodec.transcodeChunk(s, from: .bf16, into: $0, as: .f16) }
        }
        #expect(direct == expected)
        #expect(overflow == expectedOverflow && expectedOverflow > 3)
    }

    /// A tensor kept in its own type is copied as it is: every bf16 and f16 bit pattern (NaN
    /// payloads included), and f32 values, come out unchanged with no overflow; for everything but
    /// NaNs that is also what widening and narrowing again gives.
    @Test(arguments: [DType.bf16, .f16, .f32])
    func sameTypeIsCopied(type: DType) throws {
        let floats: [Float] = [1.5, -0.0, .infinity, 3e38, Float(bitPattern: 0x0001_16c2), .pi]   // the fifth is subnormal
        let halves: [UInt8] = (0...UInt16.max).flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }
        let src: [UInt8] = type == .f32 ? floats.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) } : halves
        #expect(ElementCodec.canTranscode(from: type, to: type))
        var out = [UInt8](repeating: 0, count: src.count)
        let overflow = src.withUnsafeBytes { s in out.withUnsafeMutableBytes { ElementCodec.transcodeChunk(s, from: type, into: $0, as: type) } }
        #expect(out == src && overflow == 0)
        let count = src.count / type.blockBytes
        var ignored = 0
        let through = try ElementCodec.encode(try ElementCodec.decode(src, as: type, count: count, context: "test"), as: type, overflowCount: &ignored)
        let values = try ElementCodec.decode(src, as: type, count: count, context: "test")
        for i in 0..<count where !values[i].isNaN {
            #expect(through[i * type.blockBytes..<(i + 1) * type.blockBytes] == out[i * type.blockBytes..<(i + 1) * type.blockBytes], "value \(i)")
        }
    }

    /// Widening to f32 straight into the output gives `decode`'s floats, bit for bit, for every
    /// bf16 and f16 pattern.
    @Test(arguments: [DType.bf16, .f16])
    func wideningIsDecoding(type: DType) throws {
        let src = (0...UInt16.max).flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }
        #expect(ElementCodec.canTranscode(from: type, to: .f32))
        var out = [UInt8](repeating: 0, count: src.count * 2)
        let overflow = src.withUnsafeBytes { s in out.withUnsafeMutableBytes { ElementCodec.transcodeChunk(s, from: type, into: $0, as: .f32) } }
        let decoded = try ElementCodec.decode(src, as: type, count: 65536, context: "test")
        #expect(out == decoded.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) } && overflow == 0)
    }

    @Test func bf16ToF16NarrowingCountsOverflows() throws {
        // bf16 keeps f32's range: 1e5 and 3e38 fit in bf16 but not in f16.
        let wide: [Float] = [1e5, 70016, 1, -65280, 3e38, .infinity, -1e-8, 0]
        var overflow = 0
        let bf16 = try ElementCodec.encode(wide, as: .bf16, overflowCount: &overflow)
        #expect(overflow == 0)
        let decoded = try ElementCodec.decode(bf16, as: .bf16, count: wide.count, context: "test")
        _ = try ElementCodec.encode(decoded, as: .f16, overflowCount: &overflow)
        #expect(overflow == 3)
    }

    @Test func bf16EncodingCountsOverflows() throws {
        let values = [Float(bitPattern: 0x7f7f_8000), Float(bitPattern: 0x7f7f_7fff), .greatestFiniteMagnitude,
                      -.greatestFiniteMagnitude, .infinity, .nan]
        var overflow = 0
        let bytes = try ElementCodec.encode(values, as: .bf16, overflowCount: &overflow)
        #expect(overflow == 3)  // the tie 0x7f7f8000 rounds to even = inf; 0x7f7f7fff stays finite
        #expect(halves(bytes) == [0x7f80, 0x7f7f, 0x7f80, 0xff80, 0x7f80, 0x7fc0])
    }

    @Test func blockTypesReportOverflowedScales() throws {
        var values = [Float](repeating: 1, count: 96)
        values[33] = -1e7  // q8_0: d = 1e7/127 is beyond fp16
        var overflow = 0
        _ = try ElementCodec.encode(values, as: .q8_0, overflowCount: &overflow)
        #expect(overflow == 32)
        overflow = 0
        values[33] = -7e4  // q4_1: m = -7e4 is beyond fp16, q4_0: d = 7e4/8 is not
        _ = try ElementCodec.encode(values, as: .q4_1, overflowCount: &overflow)
        #expect(overflow == 32)
        overflow = 0
        _ = try ElementCodec.encode(values, as: .q4_0, overflowCount: &overflow)
        #expect(overflow == 0)
    }
}
