import Foundation
import Testing
@testable import RWKVFormats

/// fixtures/quant/vectors.safetensors, made by fixtures/quant/make_vectors.py with the official
/// gguf package (see its docstring for the tensors).
struct QuantVectors {
    let file: SafetensorsReader
    let labels: [String]

    init() throws {
        file = try SafetensorsReader(path: fixturesDirectory + "/quant/vectors.safetensors")
        labels = try JSONDecoder().decode([String].self, from: Data((file.metadata["block_labels"] ?? "").utf8))
    }

    func floats(_ name: String) throws -> [Float] { try file.floats(name) }
    func bytes(_ name: String) throws -> [UInt8] { try file.data(name) }
}

/// Equal bit patterns, or both NaN (NaN payloads from inf*0 are the hardware's, not ggml's).
func sameBits(_ a: Float, _ b: Float) -> Bool {
    a.bitPattern == b.bitPattern || (a.isNaN && b.isNaN)
}

let blockTypes: [DType] = [.q8_0, .q4_0, .q4_1, .q5_0, .q5_1]

func hex(_ bytes: ArraySlice<UInt8>) -> String {
    bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
}

/// True for the block types with a stored minimum (d, m, ...).
func hasMinimum(_ type: DType) -> Bool { type == .q4_1 || type == .q5_1 }

@Suite struct QuantizerTests {
    @Test(arguments: blockTypes)
    func quantizesLikeGGUF(type: DType) throws {
        let v = try QuantVectors()
        let input = try v.floats("blocks.input")
        let expected = try v.bytes("\(type.rawValue).bytes")
        #expect(input.count == v.labels.count * 32)
        var overflow = 0
        let ours = try ElementCodec.encode(input, as: type, overflowCount: &overflow)
        #expect(ours.count == expected.count)

        var expectedOverflow = 0
        for (b, label) in v.labels.enumerated() {
            let range = b * type.blockBytes ..< (b + 1) * type.blockBytes
            if !ours[range].elementsEqual(expected[range]) {
                Issue.record("\(type.rawValue) block \(b) (\(label)): ours \(hex(ours[range])), gguf \(hex(expected[range]))")
            }
            // gguf's blocks whose fp16 d (or m) is infinite although the values were finite
            let scaleFields = hasMinimum(type) ? [0, 2] : [0]
            let infinite = scaleFields.contains { (UInt16(expected[range.lowerBound + $0]) | UInt16(expected[range.lowerBound + $0 + 1]) << 8) & 0x7fff == 0x7c00 }
            if infinite && input[b * 32 ..< (b + 1) * 32].allSatisfy(\.isFinite) { expectedOverflow += 32 }
        }
        #expect(overflow == expectedOverflow)
        #expect(expectedOverflow > 0, "the vectors include blocks whose scale overflows fp16")
    }

    @Test(arguments: blockTypes)
    func dequantizesLikeGGUF(type: DType) throws {
        let v = try QuantVectors()
        let bytes = try v.bytes("\(type.rawValue).bytes")
        let expected = try v.floats("\(type.rawValue).values")
        let ours = try ElementCodec.decode(bytes, as: type, count: expected.count, context: "vectors")
        for i in expected.indices where !sameBits(ours[i], expected[i]) {
            Issue.record("\(type.rawValue) value \(i) (\(v.labels[i / 32])): \(ours[i]) != \(expected[i])")
        }
    }

    /// In all-zero blocks gguf and ggml may store zeros of different signs as d or m (see
    /// make_vectors.py); we follow ggml. Everything else must equal gguf's bytes.
    @Test(arguments: blockTypes)
    func signedZeroBlocksFollowGGML(type: DType) throws {
        let v = try QuantVectors()
        let input = try v.floats("zeros.input")
        let expected = try v.bytes("zeros.\(type.rawValue).bytes")
        var overflow = 0
        let ours = try ElementCodec.encode(input, as: type, overflowCount: &overflow)
        let n = type.blockBytes
        for b in 0..<input.count / 32 {
            var gguf = Array(expected[b * n ..< (b + 1) * n]), mine = Array(ours[b * n ..< (b + 1) * n])
            // ggml's scale: q8_0 d = 0/127 = +0; q4_0/q5_0 d = +0.0/-8 = -0 (max starts at +0.0
            // and no zero beats it); q4_1/q5_1 d = x0 - x0 = +0 and m = the first zero, x0.
            let d: UInt8 = (type == .q4_0 || type == .q5_0) ? 0x80 : 0x00
            #expect(mine[0] == 0 && mine[1] == d, "\(type.rawValue) zero block \(b): d")
            if hasMinimum(type) {
                #expect(mine[2] == 0 && mine[3] == (input[b * 32].sign == .minus ? 0x80 : 0), "\(type.rawValue) zero block \(b): m")
                gguf[3] &= 0x7f; mine[3] &= 0x7f
            }
            gguf[1] &= 0x7f; mine[1] &= 0x7f
            #expect(mine == gguf, "\(type.rawValue) zero block \(b)")
        }
    }

    /// The fast path and the line-by-line transcription of ggml must agree on ordinary data.
    @Test func fastPathEqualsReference() {
        var rng = SplitMix64(seed: 7)
        var block = [Float](repeating: 0, count: 32)
        var fast = [UInt8](repeating: 0, count: 34), slow = [UInt8](repeating: 0, count: 34)
        for trial in 0..<3000 {
            let scale = [1e-30, 1e-6, 0.02, 1, 3000][trial % 5]
            for j in 0..<32 { block[j] = Float(rng.normal() * scale) }
            if trial % 3 == 0 { block[Int(rng.next() % 32)] *= 50 }  // an outlier
            if trial % 7 == 0 { for j in 0..<32 { block[j] = Float(bf16Bits: block[j].bf16Bits) } }
            block.withUnsafeBufferPointer { x in
                let x = x.baseAddress!
                func check<F: BlockFormat>(_: F.Type, _ reference: (UnsafePointer<Float>, UnsafeMutableRawPointer) -> Bool) {
                    let a = fast.withUnsafeMutableBytes { F.quantize(x, into: $0.baseAddress!) }
                    let b = slow.withUnsafeMutableBytes { reference(x, $0.baseAddress!) }
                    #expect(a == b && fast[..<F.bytesPerBlock] == slow[..<F.bytesPerBlock], "\(F.self) trial \(trial)")
                }
                check(Q8_0.self, Q8_0.reference)
                check(Q4_0.self, Q4_0.reference)
                check(Q4_1.self, Q4_1.reference)
                check(Q5_0.self, Q5_0.reference)
                check(Q5_1.self, Q5_1.reference)
            }
        }
    }

    @Test(arguments: blockTypes)
    func parallelRowsEqualSerial(type: DType) throws {
        var rng = SplitMix64(seed: 11)
        let rowLength = 1024, rows = 160  // 5120 blocks: up to 5 workers
        let values = (0..<rowLength * rows).map { _ in Float(rng.normal() * 0.05) }
        var serialOverflow = 0
        let serial = try ElementCodec.encode(values, as: type, overflowCount: &serialOverflow)
        for threads in [1, 2, 5, 64] {
            var overflow = 0
            let parallel = try Quantizer.quantizeRows(values, rowLength: rowLength, type: type, threads: threads, overflowCount: &overflow)
            #expect(parallel == serial, "\(type.rawValue) with \(threads) threads")
            #expect(overflow == 0)
        }
    }

    @Test func quantizeRowsCountsOverflowedBlocks() throws {
        var values = [Float](repeating: 0.5, count: 64 * 1024)
        values[40] = 1e7      // block 1: q8_0 d = 1e7/127 > 65504
        values[5000] = -2e7   // block 156
        var overflow = 0
        _ = try Quantizer.quantizeRows(values, rowLength: 2048, type: .q8_0, threads: 2, overflowCount: &overflow)
        #expect(overflow == 64)
    }

    @Test func quantizeRowsRefusesBadShapes() {
        var overflow = 0
        let values = [Float](repeating: 1, count: 96)
        #expect(throws: RWKVError(nil, "rows of 48 values cannot be split into q8_0 blocks of 32")) {
            try Quantizer.quantizeRows(values, rowLength: 48, type: .q8_0, threads: 1, overflowCount: &overflow)
        }
        #expect(throws: RWKVError(nil, "rows of 0 values cannot be split into q4_0 blocks of 32")) {
            try Quantizer.quantizeRows(values, rowLength: 0, type: .q4_0, threads: 1, overflowCount: &overflow)
        }
        #expect(throws: RWKVError(nil, "96 values are not a whole number of rows of 64")) {
            try Quantizer.quantizeRows(values, rowLength: 64, type: .q4_1, threads: 1, overflowCount: &overflow)
        }
        #expect(throws: RWKVError(nil, "f16 is not a block quantization type")) {
            try Quantizer.quantizeRows(values, rowLength: 32, type: .f16, threads: 1, overflowCount: &overflow)
        }
    }

    /// NaN is outside gguf's agreement with ggml (numpy's max/argmax pick NaN, ggml's comparisons
    /// skip it), so these expectations are worked out from ggml's C loops (a gcc build of them
    /// gives the same bytes): NaN never becomes the q4_0 max, and C's float->int conversion on
    /// x86-64 turns NaN into code 0.
    @Test func nanFollowsGGMLsLoops() throws {
        var block = [Float](repeating: 0, count: 32)
        block[0] = .nan
        block[1] = 1
        var overflow = 0
        // q4_0: max = 1 -> d = -0.125 (fp16 0xb000), id = -8; NaN -> 0, 1 -> trunc(0.5) = 0, 0 -> 8.
        let q4 = try ElementCodec.encode(block, as: .q4_0, overflowCount: &overflow)
        #expect(q4 == [0x00, 0xb0, 0x80, 0x80] + [UInt8](repeating: 0x88, count: 14))
        // q8_0: MAX(amax, NaN) keeps NaN only until the next element, so amax = 1, d = 1/127.
        let q8 = try ElementCodec.encode(block, as: .q8_0, overflowCount: &overflow)
        #expect(Array(q8[0..<4]) == [0x08, 0x20, 0x00, 0x7f])  // fp16(1/127) = 0x2008
        // q4_1/q5_1: `v < min`, `v > max` skip NaN, so min = 0, max = 1; NaN -> 0, 1 -> top code.
        let q41 = try ElementCodec.encode(block, as: .q4_1, overflowCount: &overflow)
        #expect(q41 == [0x44, 0x2c, 0, 0, 0x00, 0x0f] + [UInt8](repeating: 0, count: 14))  // d = fp16(1/15)
        let q51 = try ElementCodec.encode(block, as: .q5_1, overflowCount: &overflow)
        #expect(q51 == [0x21, 0x28, 0, 0, 0x02, 0, 0, 0, 0x00, 0x0f] + [UInt8](repeating: 0, count: 14))  // code 31: qh bit 1
        // A NaN in the last slot survives the MAX chain: d is NaN and every code 0.
        block[31] = .nan
        let q8last = try ElementCodec.encode(block, as: .q8_0, overflowCount: &overflow)
        #expect(Array(q8last[0..<2]) == [0x00, 0x7e] && q8last[2...].allSatisfy { $0 == 0 })
        // No type traps on NaN anywhere, nor on all-NaN or all-inf blocks.
        for type in blockTypes {
            for fill in [Float.nan, .infinity, -.infinity] {
                _ = try ElementCodec.encode([Float](repeating: fill, count: 64), as: type, overflowCount: &overflow)
            }
        }
        #expect(overflow == 0)
    }
}

/// A small deterministic generator for test data (SplitMix64, Box-Muller normals).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
    mutating func normal() -> Double {
        let u = Double(next() >> 11 | 1) / 9_007_199_254_740_992, v = Double(next() >> 11) / 9_007_199_254_740_992
        return (-2 * Foundation.log(u)).squareRoot() * Foundation.cos(2 * Double.pi * v)
    }
}

extension Float {
    /// bf16 by truncation: only used to make bf16-representable test inputs.
    var bf16Bits: UInt16 { UInt16(truncatingIfNeeded: bitPattern >> 16) }
    init(bf16Bits: UInt16) { self.init(bitPattern: UInt32(bf16Bits) << 16) }
}
