import Foundation
import Testing
import RWKVFormats
import RWKVModel
@testable import RWKVConvert

/// The per-tensor types of llama-quantize's presets for rwkv6 and rwkv7 (src/llama-quant.cpp of
/// llama-cpp-python 0.3.36's llama.cpp), written out here by hand from its rules rather than
/// computed by the code under test:
///  * only the large matrices are quantized (tensor_allows_quantization); the rest stays F32;
///  * no RWKV name matches the attn_v / attn_output / ffn_down ... rules, so every matrix gets the
///    preset's default type, except output.weight: q6_K (q8_0 under Q8_0);
///  * tensor_type_fallback: RWKV-6's FFN value rows of 3.5·C (2688 at C = 768) are not whole
///    256-value blocks: q2_K/q3_K -> q4_0, q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0.
@Suite struct LlamaPresetTests {
    /// (default type, file type) of every preset, from llama_ftype_get_default_type and llama_ftype.
    static let presets: [(LlamaPreset, DType, UInt32)] = [
        (.Q4_0, .q4_0, 2), (.Q4_1, .q4_1, 3), (.Q5_0, .q5_0, 8), (.Q5_1, .q5_1, 9), (.Q8_0, .q8_0, 7),
        (.Q2_K, .q2_K, 10), (.Q3_K_S, .q3_K, 11), (.Q3_K_M, .q3_K, 12), (.Q3_K_L, .q3_K, 13),
        (.Q4_K_S, .q4_K, 14), (.Q4_K_M, .q4_K, 15), (.Q5_K_S, .q5_K, 16), (.Q5_K_M, .q5_K, 17),
        (.Q6_K, .q6_K, 18), (.IQ4_NL, .iq4_nl, 25),
    ]

    /// RWKV-7 World 0.1B and RWKV-6 World 1.6B-like shapes (C = 768, vocabulary 65536).
    static func realShaped(_ version: RWKVVersion) -> RWKVConfig {
        version == .v7
            ? RWKVConfig(version: .v7, layerCount: 12, embeddingSize: 768, headSize: 64, vocabSize: 65536, ffnSize: 3072,
                         decayRank: 64, iclrRank: 64, valueResidualRank: 32, gateRank: 128)
            : RWKVConfig(version: .v6, layerCount: 12, embeddingSize: 768, headSize: 64, vocabSize: 65536, ffnSize: 2688,
                         decayRank: 64, tokenShiftRank: 32)
    }

    static func expectedType(_ name: String, _ base: DType, version: RWKVVersion) -> DType {
        if name == "output.weight" { return base == .q8_0 ? .q8_0 : .q6_K }
        if version == .v6 && name.hasSuffix("channel_mix_value.weight") {
            return [.q2_K: .q4_0, .q3_K: .q4_0, .q4_K: .q5_0, .q5_K: .q5_1, .q6_K: .q8_0][base] ?? base
        }
        return base
    }

    @Test(arguments: [RWKVVersion.v7, .v6])
    func everyPresetChoosesLlamaQuantizesTypes(version: RWKVVersion) throws {
        let config = Self.realShaped(version)
        let quantizable = Set(GGUFLayout.tensors(for: config).filter(\.isLargeMatrix).map(\.name))
        // The matrices llama-quantize quantizes: token_embd, output, and per layer R K V (G) O and the FFN.
        let perLayer = version == .v7 ? ["time_mix_receptance", "time_mix_key", "time_mix_value", "time_mix_output",
                                         "channel_mix_key", "channel_mix_value"]
                                      : ["time_mix_receptance", "time_mix_key", "time_mix_value", "time_mix_gate", "time_mix_output",
                                         "channel_mix_key", "channel_mix_value", "channel_mix_receptance"]
        #expect(quantizable == Set(["token_embd.weight", "output.weight"] + (0..<12).flatMap { i in perLayer.map { "blk.\(i).\($0).weight" } }))
        for (preset, base, fileType) in Self.presets {
            let plan = ConversionPlan(config: config, type: .f16, preset: preset)
            #expect(plan.fileType == fileType, "\(preset)")
            for t in plan.tensors {
                let expected = quantizable.contains(t.layout.name) ? Self.expectedType(t.layout.name, base, version: version) : .f32
                #expect(t.dtype == expected, "\(preset) \(t.layout.name): \(t.dtype), llama-quantize: \(expected)")
            }
            // The S/M/L presets of one k-quant store the same types for RWKV: only the file type differs.
            let plain = ConversionPlan(config: config, type: preset.baseType)
            #expect(plan.tensors.map(\.dtype) == plain.tensors.map(\.dtype))
        }
    }

    @Test func presetNamesParseInAnyCase() {
        #expect(LlamaPreset(name: "q4_k_m") == .Q4_K_M && LlamaPreset(name: "Q5_K_S") == .Q5_K_S && LlamaPreset(name: "Q7") == nil)
        #expect(OutputType(name: "Q4_K") == .q4_k && OutputType(name: "IQ4_NL") == .iq4_nl && OutputType(name: "F16") == .f16)
    }

    @Test func overrides() throws {
        let config = Self.realShaped(.v7)
        func types(_ type: OutputType, output: OutputType? = nil, embedding: OutputType? = nil, rules: [String] = []) throws -> [String: DType] {
            let plan = ConversionPlan(config: config, type: type, outputTensorType: output, tokenEmbeddingType: embedding,
                                      tensorTypes: try rules.map { try TensorTypeRule(argument: $0) })
            return Dictionary(uniqueKeysWithValues: plan.tensors.map { ($0.layout.name, $0.dtype) })
        }
        let embedding = try types(.q4_k, embedding: .q8_0)
        #expect(embedding["token_embd.weight"] == .q8_0 && embedding["output.weight"] == .q6_K && embedding["blk.0.time_mix_key.weight"] == .q4_K)
        // The first matching rule wins; a regex searched anywhere in the name; patterns are lowercased.
        let ruled = try types(.q4_k, rules: ["BLK\\.(0|11)\\.channel_mix=q6_K", "channel_mix_value=Q8_0", "time_mix_(key|value)=q5_k"])
        #expect(ruled["blk.0.channel_mix_key.weight"] == .q6_K && ruled["blk.11.channel_mix_value.weight"] == .q6_K)
        #expect(ruled["blk.5.channel_mix_value.weight"] == .q8_0 && ruled["blk.5.channel_mix_key.weight"] == .q4_K)
        #expect(ruled["blk.3.time_mix_key.weight"] == .q5_K && ruled["blk.3.time_mix_receptance.weight"] == .q4_K)
        // A rule that names output.weight replaces the q6_K rule; --output-tensor-type wins over rules.
        #expect(try types(.q4_k, rules: ["output=q4_k"])["output.weight"] == .q4_K)
        #expect(try types(.q4_k, output: .q8_0, rules: ["output=q4_k"])["output.weight"] == .q8_0)
        // Rules still fall back where the type does not fit (RWKV-6 FFN value rows of 2688).
        let v6 = ConversionPlan(config: Self.realShaped(.v6), type: .q8_0, tensorTypes: [try TensorTypeRule(argument: "channel_mix_value=q4_k")])
        #expect(v6.tensors.first { $0.layout.name == "blk.0.channel_mix_value.weight" }?.dtype == .q5_0)
        // Float types: llama-quantize applies no rules, only the two named overrides.
        #expect(try types(.f16, rules: ["channel_mix=q4_k"])["blk.0.channel_mix_key.weight"] == .f16)
        #expect(try types(.f16, output: .q8_0)["output.weight"] == .q8_0)

        #expect(throws: RWKVError.self) { try TensorTypeRule(argument: "channel_mix") }
        #expect(throws: RWKVError.self) { try TensorTypeRule(argument: "=q4_k") }
        #expect(throws: RWKVError.self) { try TensorTypeRule(argument: "channel_mix=q7_k") }
        #expect(throws: RWKVError.self) { try TensorTypeRule(argument: "blk.(=q4_k") }
    }

    /// A preset conversion of a fixture writes the preset's file type and the same tensors as
    /// the plain type.
    @Test func presetConversionWritesItsFileType() throws {
        let dir = try ConversionFiles.ScratchDirectory()
        var options = ConversionOptions()
        options.type = .f16
        options.preset = .Q4_K_M
        let out = dir.path + "/q4_k_m.gguf"
        _ = try Converter.convert(input: ConversionFiles.fixture("rwkv7-tiny.safetensors"), output: out, options: options)
        let preset = try GGUFReader(path: out)
        let plain = try GGUFReader(path: try ConversionFiles.converted("rwkv7-tiny.safetensors", .q4_k))
        #expect(preset.metadata.first { $0.key == "general.file_type" }?.value == .uint32(15))
        #expect(plain.metadata.first { $0.key == "general.file_type" }?.value == .uint32(14))
        #expect(preset.tensorInfos.map(\.dtype) == plain.tensorInfos.map(\.dtype))
        for t in preset.tensorInfos { #expect(try preset.data(t.name) == plain.data(t.name), "\(t.name)") }
    }
}
