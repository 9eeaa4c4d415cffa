import CKernels
import Foundation
import Testing
@testable import RWKVFormats

/// The AVX2 q8_0 kernel (Sources/CKernels/q8_0.c) against `Q8_0.reference`, the transcription of
/// ggml's quantize_row_q8_0_ref, on blocks chosen to break a sloppy vector rounding.
@Suite struct Q8_0KernelTests {
    /// The kernel must run wherever the CPU has AVX2 and F16C, or the tests below prove nothing
    /// on a machine where they should (this project's runs on an AVX2 CPU).
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/proc/cpuinfo"), "CPU flags are read from Linux's /proc/cpuinfo"))
    func dispatchFollowsCPUFlags() throws {
        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        let flagsLine = cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") } ?? ""
        let flags = Set(flagsLine.split(separator: " ").map(String.init))
        #expect(Quantizer.usesAVX2ForQ8_0 == (flags.contains("avx2") && flags.contains("f16c")))
    }

    @Test(.enabled(if: Quantizer.usesAVX2ForQ8_0, "this CPU has no AVX2: only the Swift path runs"))
    func kernelEqualsReference() {
        let (blocks, stats) = AdversarialBlocks.make(seed: 21)
        #expect(stats.exactTiesAtArbitraryScales > 1000, "values with x*id exactly k + 0.5 where d is no power of two")
        let n = blocks.count / 32
        // Expected: the reference, one block at a time; and the Swift fast path must agree too.
        var expected = [UInt8](repeating: 0, count: n * 34), swift = expected
        var expectedOverflow = 0, degenerate = 0
        blocks.withUnsafeBufferPointer { x in
            for b in 0..<n {
                let block = x.baseAddress! + b * 32
                if expected.withUnsafeMutableBytes({ Q8_0.reference(block, into: $0.baseAddress! + b * 34) }) { expectedOverflow += 32 }
                _ = swift.withUnsafeMutableBytes { Q8_0.quantize(block, into: $0.baseAddress! + b * 34) }
                if !x[b * 32 ..< b * 32 + 32].allSatisfy(\.isFinite) { degenerate += 1 }
            }
        }
        #expect(swift == expected)
        #expect(expectedOverflow > 0 && degenerate > 0, "the kernel must stop and resume, and count overflows")

        // All blocks in one call (the kernel stops at each degenerate one and resumes after it),
        // then in uneven runs starting anywhere.
        var ours = [UInt8](repeating: 0xa5, count: n * 34)
        let overflow = blocks.withUnsafeBufferPointer { x in
            ours.withUnsafeMutableBytes { Q8_0.quantizeWithAVX2(x.baseAddress!, into: $0.baseAddress!, blocks: n) }
        }
        #expect(overflow == expectedOverflow)
        reportMismatches(ours, expected, blocks, "f32, one call")

        ours = [UInt8](repeating: 0x5a, count: n * 34)
        var start = 0, runs = 0
        blocks.withUnsafeBufferPointer { x in
            ours.withUnsafeMutableBytes { y in
                while start < n {
                    let length = min(n - start, [1, 2, 3, 7, 31, 100][runs % 6])
                    _ = Q8_0.quantizeWithAVX2(x.baseAddress! + start * 32, into: y.baseAddress! + start * 34, blocks: length)
                    start += length
                    runs += 1
                }
            }
        }
        reportMismatches(ours, expected, blocks, "f32, uneven runs")
    }

    /// bf16 in, without widening to memory: the bytes of widening then quantizing.
    @Test(.enabled(if: Quantizer.usesAVX2ForQ8_0, "this CPU has no AVX2: only the Swift path runs"))
    func bf16KernelEqualsReference() {
        let (floats, _) = AdversarialBlocks.make(seed: 22)
        let bf16 = floats.map(\.bf16Bits)   // ties at power-of-two scales survive the truncation
        let widened = bf16.map { Float(bf16Bits: $0) }
        let n = bf16.count / 32
        var expected = [UInt8](repeating: 0, count: n * 34), ours = expected
        var expectedOverflow = 0
        widened.withUnsafeBufferPointer { x in
            for b in 0..<n where expected.withUnsafeMutableBytes({ Q8_0.reference(x.baseAddress! + b * 32, into: $0.baseAddress! + b * 34) }) {
                expectedOverflow += 32
            }
        }
        let overflow = bf16.withUnsafeBufferPointer { x in
            ours.withUnsafeMutableBytes { Q8_0.quantizeWithAVX2(bf16: x.baseAddress!, into: $0.baseAddress!, blocks: n) }
        }
        #expect(overflow == expectedOverflow && overflow > 0)
        reportMismatches(ours, expected, widened, "bf16")
    }

    /// The codec's direct bf16 -> q8_0 path (the AVX2 kernel fed bf16) gives the bytes and
    /// overflow count of decoding then encoding.
    @Test func bf16TranscodeEqualsDecodeThenEncode() throws {
        let (floats, _) = AdversarialBlocks.make(seed: 23, count: 2000)
        let src = floats.flatMap { [UInt8($0.bf16Bits & 0xff), UInt8($0.bf16Bits >> 8)] }
        var expectedOverflow = 0
        let widened = try ElementCodec.decode(src, as: .bf16, count: floats.count, context: "test")
        let expected = try ElementCodec.encode(widened, as: .q8_0, overflowCount: &expectedOverflow)
        // The direct path exists with the kernel (this machine: dispatchFollowsCPUFlags); without
        // it the converter decodes then encodes, which is `expected` itself.
        #expect(ElementCodec.canTranscode(from: .bf16, to: .q8_0) == Quantizer.usesAVX2ForQ8_0)
        guard Quantizer.usesAVX2ForQ8_0 else { return }
        var direct = [UInt8](repeating: 0, count: expected.count)
        let overflow = src.withUnsafeBytes { s in
            direct.withUnsafeMutableBytes { ElementCodec.transcodeChunk(s, from: .bf16, into: $0, as: .q8_0) }
        }
        #expect(direct == expected)
        #expect(overflow == expectedOverflow && expectedOverflow > 0)
    }

    /// Records the first few differing blocks with their inputs.
    private func reportMismatches(_ ours: [UInt8], _ expected: [UInt8], _ input: [Float], _ what: String) {
        var reported = 0
        for b in 0..<expected.count / 34 where reported < 5 {
            let range = b * 34 ..< (b + 1) * 34
            if ours[range] != expected[range] {
                Issue.record("\(what) block \(b): ours \(hex(ours[range])), reference \(hex(expected[range])), input \(Array(input[b * 32 ..< b * 32 + 32]))")
                reported += 1
            }
        }
    }
}

/// Blocks of 32 floats meant to trip a vectorised q8_0: x*id exactly on k + 0.5 (power-of-two
/// and arbitrary scales), a few ulps either side, values at and just below 127·d, subnormal and
/// underflowing scales around where 1/d overflows, zeros of both signs, scales that overflow f16,
/// huge outliers, and NaN/inf blocks in between (which the kernel hands back).
enum AdversarialBlocks {
    struct Stats { var exactTiesAtArbitraryScales = 0 }

    static func make(seed: UInt64, count: Int = 40_000) -> ([Float], Stats) {
        var rng = SplitMix64(seed: seed)
        var stats = Stats()
        var out: [Float] = []
        out.reserveCapacity(count * 32)
        func random(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        func signed(_ v: Float) -> Float { rng.next() & 1 == 0 ? v : -v }
        // A block with amax at a random position and the others from `value`.
        func block(amax: Float, _ value: () -> Float) -> [Float] {
            var b = (0..<32).map { _ in value() }
            b[random(32)] = signed(amax)
            return b
        }
        // Values near (k + 0.5)/id, k random: ties after the multiply, or a few ulps off.
        func nearTies(amax: Float) -> [Float] {
            let d = amax / 127
            let id: Float = d != 0 ? 1 / d : 0
            return block(amax: amax) {
                guard id != 0 else { return 0 }
                var x = (Float(random(127)) + 0.5) / id
                for _ in 0..<random(5) { x = x.nextUp }
                for _ in 0..<random(5) { x = x.nextDown }
                if x > amax { x = amax }
                if (x * id).rounded(.towardZero) + 0.5 == x * id { stats.exactTiesAtArbitraryScales += 1 }
                return signed(x)
            }
        }
        for i in 0..<count {
            let b: [Float]
            switch i % 12 {
            case 0:  // ordinary data at many scales, sometimes with an outlier
                let scale = [1e-38, 1e-30, 1e-6, 0.02, 1, 3000, 1e6][random(7)]
                var v = (0..<32).map { _ in Float(rng.normal() * scale) }
                if random(3) == 0 { v[random(32)] *= [50, 1e4][random(2)] }
                b = v
            case 1:  // d = 2^e: amax = 127·2^e, x·id = k + 0.5 exactly, or one ulp either side
                let p = Float(sign: .plus, exponent: random(60) - 30, significand: 1)
                b = block(amax: 127 * p) {
                    let t = Float(random(127)) + 0.5
                    return signed([t, t, t.nextDown, t.nextUp][random(4)] * p)
                }
            case 2, 3:  // ties (and near-ties) at arbitrary scales
                b = nearTies(amax: Float(rng.normal() * [1e-3, 0.05, 1, 100][random(4)]).magnitude)
            case 4:  // values at and just below amax (codes ±127, and 126.99...)
                let amax = Float(rng.normal()).magnitude + 1e-3
                b = block(amax: amax) { signed([amax, amax.nextDown, amax.nextDown.nextDown, amax * 0.996][random(4)]) }
            case 5:  // subnormal blocks: d == 0, d subnormal
                let amax = Float(bitPattern: UInt32(1 + random(0x007f_ffff)) >> UInt32(random(20)))
                b = block(amax: amax) { signed(Float(bitPattern: amax.bitPattern &- UInt32(random(Int(amax.bitPattern) + 1)))) }
            case 6:  // around the amax where 1/d overflows (~3.7e-37): both paths, ties included
                let amax = Float(bitPattern: Float(3.73e-37).bitPattern &+ UInt32(random(40_000)) &- 20_000)
                b = random(2) == 0 ? nearTies(amax: amax) : block(amax: amax) { signed(amax * Float(random(128)) / 127) }
            case 7:  // zeros of both signs, all -0.0, and zeros around one tiny value
                switch random(3) {
                case 0: b = (0..<32).map { _ in signed(0) }
                case 1: b = [Float](repeating: -0.0, count: 32)
                default: b = block(amax: .leastNonzeroMagnitude * Float(1 + random(200))) { signed(0) }
                }
            case 8:  // d at the f16 overflow edge (amax ≈ 65504·127) and beyond
                let amax = [8_318_000 + Float(random(6000)), 1e7, 3e38, .greatestFiniteMagnitude][random(4)]
                b = block(amax: amax) { Float(rng.normal()) * [1, 1e6][random(2)] }
            case 9:  // huge outlier over small values: most codes 0, ties among the rest
                b = block(amax: Float(rng.normal()).magnitude * 1e4 + 1) { Float(rng.normal() * 10) }
            case 10:  // NaN or inf somewhere (the reference path), now and then
                var v = (0..<32).map { _ in Float(rng.normal()) }
                if random(4) == 0 { v[random(32)] = [.nan, .infinity, -.infinity][random(3)] }
                b = v
            default:  // bf16-like weights
                b = (0..<32).map { _ in Float(bf16Bits: Float(rng.normal() * 0.03).bf16Bits) }
            }
            out += b
        }
        return (out, stats)
    }
}
