import Foundation
import Testing
@testable import RWKVFormats

/// fixtures/quant/kquant_vectors.safetensors, made by fixtures/quant/make_kquant_vectors.py with
/// ggml's own C code (ggml_quantize_chunk and dequantize_row_* of the llama.cpp vendored in
/// llama-cpp-python 0.3.36), never by ours: see its docstring for the tensors.
struct KQuantVectors {
    let file: SafetensorsReader
    let labels: [String]
    let rowLength: Int

    private struct About: Decodable {
        let labels: [String]
        let row_length: Int
    }

    init() throws {
        file = try SafetensorsReader(path: fixturesDirectory + "/quant/kquant_vectors.safetensors")
        let about = try JSONDecoder().decode(About.self, from: Data((file.metadata["about"] ?? "").utf8))
        labels = about.labels
        rowLength = about.row_length
    }

    func floats(_ name: String) throws -> [Float] { try file.floats(name) }
    func bytes(_ name: String) throws -> [UInt8] { try file.data(name) }
}

let kQuantTypes: [DType] = [.q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_nl]

@Suite struct KQuantTests {
    /// Our bytes, row by row, against ggml's, without and with the row's importance weights.
    @Test(arguments: kQuantTypes, [false, true])
    func quantizesLikeGGML(type: DType, weighted: Bool) throws {
        let v = try KQuantVectors()
        let n = v.rowLength
        let rows = try v.floats("rows"), importance = try v.floats("importance")
        let expected = try v.bytes("\(type.rawValue).\(weighted ? "wbytes" : "bytes")")
        let rowBytes = try #require(type.byteCount(elements: n))
        #expect(rows.count == v.labels.count * n && expected.count == v.labels.count * rowBytes)
        // Where ggml's fp16 scales (d, dmin) sit in a block: an infinite one from finite inputs is
        // what Quantizer counts as overflow.
        let scaleOffsets: [Int] = [.q2_K: [80, 82], .q3_K: [108], .q4_K: [0, 2], .q5_K: [0, 2], .q6_K: [208], .iq4_nl: [0]][type]!
        var mismatches = 0, expectedOverflow = 0, countedOverflow = 0
        for (r, label) in v.labels.enumerated() {
            var overflow = 0
            let ours = try Quantizer.quantizeRows(Array(rows[r * n ..< (r + 1) * n]), rowLength: n, type: type,
                                                  importance: weighted ? Array(importance[r * n ..< (r + 1) * n]) : nil,
                                                  threads: 1, overflowCount: &overflow)
            let theirs = expected[r * rowBytes ..< (r + 1) * rowBytes]
            if !ours.elementsEqual(theirs) {
                mismatches += 1
                let first = zip(ours, theirs).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? 0
                Issue.record("\(type.rawValue)\(weighted ? " weighted" : "") row \(r) (\(label)): first difference at byte \(first) of \(rowBytes): ours \(hex(ours[first ..< min(rowBytes, first + 8)])), ggml \(hex(theirs.dropFirst(first).prefix(8)))")
            }
            for b in 0 ..< n / type.blockSize {
                let block = r * rowBytes + b * type.blockBytes
                let infinite = scaleOffsets.contains { (UInt16(expected[block + $0]) | UInt16(expected[block + $0 + 1]) << 8) & 0x7fff == 0x7c00 }
                if infinite && rows[r * n + b * type.blockSize ..< r * n + (b + 1) * type.blockSize].allSatisfy(\.isFinite) {
                    expectedOverflow += type.blockSize
                }
            }
            countedOverflow += overflow
        }
        #expect(mismatches == 0)
        #expect(countedOverflow == expectedOverflow, "the values in blocks whose scale overflowed fp16 are counted")
        #expect(expectedOverflow > 0, "the vectors include scales that overflow fp16")
    }

    /// ggml's weighted q4_0, q4_1, q5_0, q5_1 (quantize_row_q4_0_impl ...: σ² over the whole row).
    @Test(arguments: [DType.q4_0, .q4_1, .q5_0, .q5_1])
    func weightedLegacyTypesQuantizeLikeGGML(type: DType) throws {
        let v = try KQuantVectors()
        let n = v.rowLength
        let rows = try v.floats("rows"), importance = try v.floats("importance")
        let expected = try v.bytes("\(type.rawValue).wbytes")
        let rowBytes = try #require(type.byteCount(elements: n))
        var mismatches = 0, overflow = 0
        for (r, label) in v.labels.enumerated() {
            let ours = try Quantizer.quantizeRows(Array(rows[r * n ..< (r + 1) * n]), rowLength: n, type: type,
                                                  importance: Array(importance[r * n ..< (r + 1) * n]), threads: 1, overflowCount: &overflow)
            if !ours.elementsEqual(expected[r * rowBytes ..< (r + 1) * rowBytes]) {
                mismatches += 1
                Issue.record("\(type.rawValue) weighted row \(r) (\(label)) differs from ggml")
            }
        }
        #expect(mismatches == 0)
        // 157 rows at once on 2 threads, whose slices (1256 blocks each) split row 78: each row
        // keeps its own σ².
        let count = 157
        let picked = (0..<count).flatMap { rows[$0 % v.labels.count * n ..< ($0 % v.labels.count + 1) * n] }
        let weights = Array(importance[0 ..< n])
        let whole = try Quantizer.quantizeRows(picked, rowLength: n, type: type, importance: weights, threads: 2, overflowCount: &overflow)
        var rowByRow = [UInt8]()
        for r in 0..<count {
            rowByRow += try Quantizer.quantizeRows(Array(picked[r * n ..< (r + 1) * n]), rowLength: n, type: type,
                                                   importance: weights, threads: 1, overflowCount: &overflow)
        }
        #expect(whole == rowByRow)
    }

    /// Our dequantization of ggml's bytes equals ggml's, bit for bit.
    @Test(arguments: kQuantTypes)
    func dequantizesLikeGGML(type: DType) throws {
        let v = try KQuantVectors()
        let bytes = try v.bytes("\(type.rawValue).bytes")
        let expected = try v.floats("\(type.rawValue).values")
        let ours = try ElementCodec.decode(bytes, as: type, count: expected.count, context: "vectors")
        let differing = zip(ours, expected).enumerated().filter { !sameBits($0.element.0, $0.element.1) }
        for (i, (a, b)) in differing.prefix(5) {
            Issue.record("\(type.rawValue) value \(i) (row \(v.labels[i / v.rowLength])): ours \(a), ggml \(b)")
        }
        #expect(differing.isEmpty)
    }

    /// The same bytes for any thread count and for a tensor quantized in one call (rows sharing
    /// one importance row), as the converter calls it.
    @Test(arguments: kQuantTypes)
    func threadsAndWholeTensorGiveTheSameBytes(type: DType) throws {
        let v = try KQuantVectors()
        let n = v.rowLength
        let rows = try v.floats("rows")
        // Rows of ordinary data only, so that every row is representable (no overflowing scales).
        let picked = v.labels.indices.filter { v.labels[$0].hasPrefix("normal") || v.labels[$0].hasPrefix("bf16") }
        var tensor = [Float]()
        for r in picked { tensor += rows[r * n ..< (r + 1) * n] }
        let importance = Array(try v.floats("importance")[0 ..< n])
        var overflow = 0
        let one = try Quantizer.quantizeRows(tensor, rowLength: n, type: type, importance: importance, threads: 1, overflowCount: &overflow)
        let four = try Quantizer.quantizeRows(tensor, rowLength: n, type: type, importance: importance, threads: 4, overflowCount: &overflow)
        #expect(one == four)
        var rowByRow = [UInt8]()
        for i in picked.indices {
            rowByRow += try Quantizer.quantizeRows(Array(tensor[i * n ..< (i + 1) * n]), rowLength: n, type: type,
                                                   importance: importance, threads: 1, overflowCount: &overflow)
        }
        #expect(one == rowByRow)
        #expect(overflow == 0)
        // A piece starting in the middle of a row (at a block boundary), as the converter's chunks do.
        let start = n / 2, count = n * 2
        let bytesPerBlock = type.blockBytes, blocksBefore = start / type.blockSize
        var piece = [UInt8](repeating: 0, count: count / type.blockSize * bytesPerBlock)
        tensor[start ..< start + count].withUnsafeBufferPointer { src in
            importance.withUnsafeBufferPointer { row in
                piece.withUnsafeMutableBytes { dst in
                    _ = Quantizer.quantize(src, type: type, into: dst, importance: .init(row: row, firstColumn: start % n))
                }
            }
        }
        #expect(piece[...] == one[blocksBefore * bytesPerBlock ..< blocksBefore * bytesPerBlock + piece.count])
    }

    @Test func layoutsAndGGMLTypeIDs() {
        let expected: [(DType, UInt32, Int, Int)] = [(.q2_K, 10, 256, 84), (.q3_K, 11, 256, 110), (.q4_K, 12, 256, 144),
                                                     (.q5_K, 13, 256, 176), (.q6_K, 14, 256, 210), (.iq4_nl, 20, 32, 18)]
        for (type, id, values, bytes) in expected {
            #expect(type.ggmlType == id && DType(ggmlType: id) == type)
            #expect(type.blockSize == values && type.blockBytes == bytes)
        }
    }

    @Test func refusesBadImportance() {
        var overflow = 0
        let row = [Float](repeating: 1, count: 256)
        #expect(throws: RWKVError.self) {
            try Quantizer.quantizeRows(row, rowLength: 256, type: .q4_K, importance: [Float](repeating: 1, count: 128), threads: 1, overflowCount: &overflow)
        }
        #expect(throws: RWKVError.self) {
            try Quantizer.quantizeRows(row, rowLength: 256, type: .q4_K, importance: [Float](repeating: .nan, count: 256), threads: 1, overflowCount: &overflow)
        }
        #expect(throws: RWKVError.self) {
            try Quantizer.quantizeRows(Array(row[0..<128]), rowLength: 128, type: .q6_K, threads: 1, overflowCount: &overflow)
        }
    }
}
