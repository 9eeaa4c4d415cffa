import Foundation
import Testing
import RWKVFormats
@testable import RWKVModel

/// The forward pass runs on GGUF through GGUFCanonicalSource: an f32 GGUF laid out by GGUFLayout
/// gives bit-identical logits to the checkpoint it came from (the weights are the same floats).
@Suite struct GGUFLoadingTests {
    static let models = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/models").path

    /// Writes `source` as an f32 GGUF in llama.cpp's layout; `rescaleEvery` > 0 stores
    /// att.output / ffn.value divided by 2^(layer / n), as llama.cpp's converter does for RWKV-6.
    static func writeGGUF(_ source: TensorSource, to path: String, rescaleEvery: Int = 0) throws {
        let config = try RWKVConfig.detect(source)
        let layouts = GGUFLayout.tensors(for: config)
        var metadata = [GGUFKeyValue("general.architecture", .string(GGUFLayout.architecture(config.version)))]
        metadata += GGUFLayout.hyperparameters(for: config).map {
            $0.key.hasSuffix("rescale_every_n_layers") ? GGUFKeyValue($0.key, .uint32(UInt32(rescaleEvery))) : $0
        }
        let writer = try GGUFWriter(path: path, metadata: metadata,
                                    tensors: layouts.map { TensorInfo(name: $0.name, dtype: .f32, shape: $0.shape) })
        for l in layouts {
            var values = GGUFLayout.apply(l, to: try l.sources.map { try source.floats($0) })
            if rescaleEvery > 0, let layer = Int(l.name.split(separator: ".")[1]), layer / rescaleEvery > 0,
               l.name.hasSuffix("time_mix_output.weight") || l.name.hasSuffix("channel_mix_value.weight") {
                values = values.map { $0 / Float(1 << (layer / rescaleEvery)) }
            }
            try values.withUnsafeBytes { try writer.writeTensor($0) }
        }
        try writer.finish()
    }

    @Test(arguments: ["rwkv7-tiny-fp32.pth", "rwkv6-tiny-fp32.pth"])
    func ggufLogitsEqualTheCheckpoints(model: String) throws {
        let dir = NSTemporaryDirectory() + "rwkv-gguf-load-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let input = Self.models + "/" + model
        let source = try ModelFile.open(input)
        try Self.writeGGUF(source, to: dir + "/m.gguf")

        let tokens = [84, 104, 101, 32, 99, 97, 102, 195, 169, 10]
        let expected = try RWKVModelLoader.load(path: input).logits(tokens, mode: .rnn).values
        #expect(try RWKVModelLoader.load(path: dir + "/m.gguf").logits(tokens, mode: .rnn).values == expected)
        // RWKV-6 files made by llama.cpp's converter carry rescaled weights (the graph halves
        // the residual every n layers); the view multiplies back, exactly (powers of two).
        if model.hasPrefix("rwkv6") {
            try Self.writeGGUF(source, to: dir + "/rescaled.gguf", rescaleEvery: 1)
            #expect(try RWKVModelLoader.load(path: dir + "/rescaled.gguf").logits(tokens, mode: .rnn).values == expected)
            #expect(try GGUFReader(path: dir + "/rescaled.gguf").floats("blk.1.time_mix_output.weight")
                    != (try GGUFReader(path: dir + "/m.gguf").floats("blk.1.time_mix_output.weight")))
        }
    }

    @Test func refusesGGUFOfOtherArchitectures() throws {
        let dir = NSTemporaryDirectory() + "rwkv-gguf-load-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/llama.gguf"
        let w = try GGUFWriter(path: path, metadata: [GGUFKeyValue("general.architecture", .string("llama"))],
                               tensors: [TensorInfo(name: "token_embd.weight", dtype: .f32, shape: [2, 2])])
        try w.writeTensor([UInt8](repeating: 0, count: 16))
        try w.finish()
        #expect(throws: RWKVError(path, "GGUF architecture \"llama\" is not rwkv6 or rwkv7")) {
            _ = try RWKVModelLoader.load(path: path)
        }
    }
}
