import Foundation
import Testing
@testable import RWKVConvert
import RWKVText
import RWKVFormats
import RWKVModel

/// `rwkv-convert imatrix` against activations captured from the official `rwkv` package's own
/// forward pass (fixtures/text_fixtures.py wraps its matrix products: Σx² per input column of
/// every weight llama-imatrix collects, float64, over fixtures/text/english.txt in chunks of 256).
///
/// Tolerance: relative 1e-5 per column. Our activations and the package's are both f32 and
/// differ by summation order only (~1e-6 relative); a sum of 2816 positive squares keeps that
/// relative error (measured: at most 7.5e-7). A wrong input (the lerp before the LoRA, the
/// activation before tanh, another layer's tensor) changes sums by far more than 1e-5.
struct ImportanceMatrixTests {
    static let root = ConversionFiles.root
    static let text = root + "/fixtures/text/english.txt"

    static func official(_ name: String) throws -> [String: (sums: [Float], count: Float)] {
        let source = try ModelFile.open(root + "/fixtures/expected/text/\(name).text.safetensors")
        var out: [String: (sums: [Float], count: Float)] = [:]
        for t in source.tensors where t.name.hasPrefix("imatrix.") && t.name.hasSuffix(".in_sum2") {
            let weight = String(t.name.dropFirst("imatrix.".count).dropLast(".in_sum2".count))
            out[weight] = (try source.floats(t.name), try source.floats("imatrix.\(weight).counts")[0])
        }
        return out
    }

    static func collect(_ name: String, processOutput: Bool = true) throws -> ImportanceMatrix {
        let model = try RWKVModelLoader.load(path: root + "/fixtures/models/\(name).pth")
        let chunks = try TextChunks(textFile: text, vocabularySize: model.config.vocabSize, size: 256)
        return try ImportanceMatrixRun.collect(model, chunks: chunks, processOutput: processOutput).0
    }

    static func worstRelative(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).map { abs($0 - $1) / max(abs($1), 1e-6) }.max() ?? .infinity
    }

    @Test(arguments: ["rwkv7-tiny-fp32", "rwkv6-tiny-fp32"])
    func sumsMatchActivationsCapturedFromTheOfficialPackage(_ name: String) throws {
        let ours = try Self.collect(name)
        let official = try Self.official(name)
        #expect(official.count >= 20)
        #expect(Set(ours.entries.keys) == Set(official.keys))
        for (weight, expected) in official {
            let e = try #require(ours.entries[weight])
            #expect(e.counts == [expected.count], "\(weight)")
            #expect(e.sums.count == expected.sums.count, "\(weight)")
            #expect(Self.worstRelative(e.sums, expected.sums) < 1e-5, "\(weight)")
        }
        #expect(ours.chunkCount == 11 && ours.chunkSize == 256)
    }

    @Test func theHeadOnlyWithProcessOutput() throws {
        let ours = try Self.collect("rwkv7-tiny-fp32", processOutput: false)
        #expect(ours.entries["output.weight"] == nil)
        #expect(ours.entries["blk.1.time_mix_key.weight"] != nil)
        #expect(ours.entries["blk.0.time_mix_v1.weight"] == nil)   // layer 0 never multiplies by v1
    }

    @Test func ggufRoundTripAndLlamaCppLayout() throws {
        let scratch = try ConversionFiles.ScratchDirectory()
        let path = scratch.path + "/m.imatrix.gguf"
        let ours = try Self.collect("rwkv6-tiny-fp32")
        try ours.write(to: path)
        let back = try ImportanceMatrix.read(path)
        #expect(back.entries == ours.entries)
        #expect(back.datasets == [Self.text] && back.chunkCount == 11 && back.chunkSize == 256)
        let gguf = try GGUFReader(path: path)
        #expect(gguf.value("general.type") == .string("imatrix"))
        // llama-imatrix's order: weights sorted by name, each with its in_sum2 then its counts.
        let names = gguf.tensorInfos.map(\.name)
        #expect(names == ours.entries.keys.sorted().flatMap { [$0 + ".in_sum2", $0 + ".counts"] })
        #expect(gguf.ggufInfo("blk.0.channel_mix_value.weight.in_sum2")?.dimensions == [448, 1])   // ne = {width, matrices}
        #expect(gguf.ggufInfo("blk.0.channel_mix_value.weight.counts")?.dimensions == [1, 1])
        #expect(scratch.files == ["m.imatrix.gguf"])
    }

    @Test func legacyDatFileGivesTheSameImportance() throws {
        // Written by fixtures/text_fixtures.py in save_imatrix_legacy's layout from the official sums.
        let legacy = try ImportanceMatrix.read(Self.root + "/fixtures/expected/text/rwkv7-tiny-fp32.imatrix.dat")
        let official = try Self.official("rwkv7-tiny-fp32")
        #expect(Set(legacy.entries.keys) == Set(official.keys))
        #expect(legacy.chunkCount == 11 && legacy.chunkSize == nil && legacy.datasets == ["fixtures/text/english.txt"])
        for (weight, expected) in official {
            let importance = try #require(legacy.importance(weight))
            #expect(Self.worstRelative(importance, expected.sums.map { $0 / expected.count }) < 1e-6, "\(weight)")
        }
    }

    @Test func malformedFilesAreRefused() throws {
        let scratch = try ConversionFiles.ScratchDirectory()
        func write(_ bytes: [UInt8]) -> String {
            let p = scratch.path + "/bad-\(UUID().uuidString)"
            _ = FileManager.default.createFile(atPath: p, contents: Data(bytes))
            return p
        }
        func int32(_ v: Int32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
        #expect(throws: RWKVError.self) { try ImportanceMatrix.read(write([])) }
        #expect(throws: RWKVError.self) { try ImportanceMatrix.read(write(int32(1_000_000))) }
        // One entry whose value count runs past the end of the file.
        #expect(throws: RWKVError.self) { try ImportanceMatrix.read(write(int32(1) + int32(1) + [0x61] + int32(1) + int32(1000) + int32(0))) }
        // A negative value.
        #expect(throws: RWKVError.self) {
            try ImportanceMatrix.read(write(int32(1) + int32(1) + [0x61] + int32(1) + int32(1) + withUnsafeBytes(of: Float(-1).bitPattern.littleEndian, Array.init)))
        }
        // GGUF with sums but no counts.
        let gguf = scratch.path + "/nocounts.gguf"
        let w = try GGUFWriter(path: gguf, metadata: [GGUFKeyValue("general.type", .string("imatrix"))],
                               tensors: [TensorInfo(name: "blk.0.x.weight.in_sum2", dtype: .f32, shape: [1, 4])], durable: false)
        try w.writeTensor([UInt8](repeating: 0, count: 16))
        try w.finish()
        #expect(throws: RWKVError(gguf, "mismatched sums and counts for blk.0.x.weight")) { try ImportanceMatrix.read(gguf) }
    }
}
