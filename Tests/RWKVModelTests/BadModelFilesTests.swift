import Foundation
import Testing
import RWKVFormats
@testable import RWKVModel

/// Files in fixtures/bad/ that are valid containers of something that is no usable RWKV-6/7 model:
/// they open and read (Tests/RWKVFormatsTests/BadFilesTests.swift), and architecture detection
/// refuses each with its own message.
@Suite struct BadModelFilesTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures").path

    static let expected: [String: String] = [
        "not-rwkv.pth": "not an RWKV checkpoint (no emb.weight and blocks.* tensors)",
        "not-rwkv.safetensors": "not an RWKV checkpoint (no emb.weight and blocks.* tensors)",
        "rwkv4-like.pth": "RWKV-4 checkpoint (token-shift time_mix_k without att.ln_x): only RWKV-5, 6 and 7 are supported",
        "rwkv5-like.pth": "RWKV-5.2 checkpoint (2-D time_decay) without att.gate.weight",
        "rwkv7-inconsistent-ffn.pth": "tensor blocks.0.ffn.value.weight has shape [64, 256], expected [64, 250]",
        "rwkv7-layer-gap.pth": "missing tensor blocks.1.att.",
        "rwkv7-misshaped-a1.pth": "tensor blocks.1.att.a1 has shape [8, 64], expected [64, 8]",
        "rwkv7-missing-k_k.pth": "missing tensor blocks.1.att.k_k",
        "torch-nested-state-dict.pth": "not an RWKV checkpoint",
        "torch-byteorder-big.pth": "not an RWKV checkpoint",
        // issue 9
        "gguf-arch-control-chars.gguf": "not an RWKV checkpoint",
        "st-long-name.safetensors": "not an RWKV checkpoint",
        "st-30k-tensors.safetensors": "not an RWKV checkpoint",
        "gguf-1000-layers.gguf": "not an RWKV checkpoint",   // as a GGUF: GGUFLoadingTests-style view below
        "rwkv7-n-embd-0.pth": "n_embd is 0; an RWKV model needs at least 1",
        "rwkv7-vocab-0.pth": "vocabulary size is 0; an RWKV model needs at least 1",
        "rwkv7-lora-rank-0.pth": "decay LoRA rank is 0; an RWKV model needs at least 1",
        "rwkv7-ffn-0.pth": "FFN width is 0; an RWKV model needs at least 1",
        "rwkv7-vocab-2g-zero-width.safetensors": "n_embd is 0; an RWKV model needs at least 1",
        "rwkv6-decay-rank-0.safetensors": "decay LoRA rank is 0; an RWKV model needs at least 1",
    ]

    @Test(arguments: expected.keys.sorted())
    func isRefusedByArchitectureDetection(file: String) throws {
        let path = Self.fixtures + "/bad/" + file
        do {
            _ = try RWKVConfig.detect(try Checkpoint.open(path))   // RWKV-4/5 are told apart on opening
            Issue.record("\(file) was accepted as an RWKV model")
        } catch let error as RWKVError {
            #expect(error.file == path)
            #expect(error.message.contains(Self.expected[file]!), "\(error.message)")
        }
    }

    /// The template the rwkv7-* bad files were cut from: every tensor views one shared storage.
    @Test func sharedStorageTemplateIsAccepted() throws {
        let config = try RWKVConfig.detect(try ModelFile.open(Self.fixtures + "/edge/rwkv7-shared-storage.pth"))
        #expect(config == RWKVConfig(version: .v7, layerCount: 2, embeddingSize: 64, headSize: 64, vocabSize: 16, ffnSize: 256,
                                     decayRank: 16, iclrRank: 8, valueResidualRank: 8, gateRank: 16))
    }
}
