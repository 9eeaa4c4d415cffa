import Foundation
import Testing
import RWKVFormats
@testable import RWKVModel

/// The Hugging Face folders of fixtures/hf (made by the rwkv7-hf converter and the published
/// RWKV-6 mapping, fixtures/make_hf.py) read back as the BlinkDL checkpoint they came from.
@Suite struct HuggingFaceFolderTests {
    static let folders: [(folder: String, pth: String)] = [
        ("hf/rwkv7-tiny", "models/rwkv7-tiny-bf16.pth"),
        ("hf/rwkv7-tiny-xx-sharded", "models/rwkv7-tiny-bf16.pth"),
        ("hf/rwkv6-tiny-bin", "models/rwkv6-tiny-bf16.pth"),
        // BBuf/RWKV-World-HF-Tokenizer's own scripts, sharded pytorch_model-*.bin, their config.json
        ("hf/rwkv6-tiny-script-config", "models/rwkv6-tiny-bf16.pth"),
        ("hf/rwkv5.2-tiny-bin", "models/rwkv5.2-tiny-bf16.pth"),
        ("hf/rwkv5.2-tiny-sharded", "models/rwkv5.2-tiny-bf16.pth"),
    ]

    /// Same names, dtypes, shapes and bytes as the .pth, except RWKV-7 block 0's unused
    /// v0/v1/v2, which fla-hub folders drop.
    @Test(arguments: folders.map(\.folder))
    func readsTheSameTensorsAsThePth(_ folder: String) throws {
        let pthPath = Self.folders.first { $0.folder == folder }!.pth
        let hf = try Checkpoint.open(fixture(folder))
        let pth = try Checkpoint.open(fixture(pthPath))   // RWKV-5 on both sides read as RWKV-6
        let dropped: Set = ["blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2"]
        let expected = pth.tensors.filter { !(hf.tensors.count < pth.tensors.count && dropped.contains($0.name)) }
        #expect(Set(hf.tensors.map(\.name)) == Set(expected.map(\.name)))
        for t in expected {
            #expect(hf.info(t.name) == t, "\(t.name)")
            #expect(try hf.data(t.name) == (try pth.data(t.name)), "\(t.name)")
        }
        #expect(try RWKVConfig.detect(hf) == (try RWKVConfig.detect(pth)))
    }

    @Test func folderFormatIsNamed() throws {
        let hf = try #require(try Checkpoint.open(fixture("hf/rwkv7-tiny-xx-sharded")) as? HuggingFaceFolder)
        #expect(hf.formatName == "Hugging Face folder (fla-hub RWKV-7, 5 weight files)")
        #expect(hf.weightFiles.map { ($0 as NSString).lastPathComponent }
                == (1...5).map { "model-0000\($0)-of-00005.safetensors" })
    }

    /// A copy of a fixture folder with one file changed.
    func mutated(_ folder: String, _ change: (String) throws -> Void) throws -> String {
        let dir = NSTemporaryDirectory() + "hf-\(UUID().uuidString)"
        try FileManager.default.copyItem(atPath: fixture(folder), toPath: dir)
        try change(dir)
        return dir
    }

    @Test func configJSONMustAgreeWithTheShapes() throws {
        let dir = try mutated("hf/rwkv7-tiny") { dir in
            let path = dir + "/config.json"
            let text = try String(contentsOfFile: path, encoding: .utf8).replacingOccurrences(of: "\"hidden_size\": 128", with: "\"hidden_size\": 2048")
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: RWKVError(dir + "/config.json", "hidden_size is 2048, but the tensors say 128")) { try Checkpoint.open(dir) }
    }

    /// The published RWKV-5/6 converters write `intermediate_size: null`, `vocab_size` 65536 and
    /// `num_attention_heads` 64 whatever the model (fixtures/hf/*-script-config, rwkv5.2-tiny-*):
    /// accepted. A value that is neither null nor such a placeholder must still agree.
    @Test func publishedConfigPlaceholdersAreAccepted() throws {
        for folder in ["hf/rwkv6-tiny-script-config", "hf/rwkv5.2-tiny-bin"] {
            let text = try String(contentsOfFile: fixture(folder) + "/config.json", encoding: .utf8)
            #expect(text.contains("\"intermediate_size\": null") && text.contains("\"vocab_size\": 65536"))
            #expect(throws: Never.self) { try Checkpoint.open(fixture(folder)) }
        }
        let dir = try mutated("hf/rwkv6-tiny-script-config") { dir in
            let path = dir + "/config.json"
            let text = try String(contentsOfFile: path, encoding: .utf8).replacingOccurrences(of: "\"vocab_size\": 65536", with: "\"vocab_size\": 1000")
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: RWKVError(dir + "/config.json", "vocab_size is 1000, but the tensors say 256")) { try Checkpoint.open(dir) }
    }

    @Test func aFolderWithoutWeightsIsRefused() throws {
        let dir = try mutated("hf/rwkv7-tiny") { try FileManager.default.removeItem(atPath: $0 + "/model.safetensors") }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: RWKVError(dir, "no model.safetensors, pytorch_model.bin or index of shards in the folder")) { try Checkpoint.open(dir) }
    }

    @Test func shardNamesMustStayInTheFolder() throws {
        let dir = try mutated("hf/rwkv7-tiny-xx-sharded") { dir in
            let path = dir + "/model.safetensors.index.json"
            let text = try String(contentsOfFile: path, encoding: .utf8)
                .replacingOccurrences(of: "\"model-00001-of-00005.safetensors\"", with: "\"../model-00001-of-00005.safetensors\"")
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: RWKVError.self) { try Checkpoint.open(dir) }
        do { _ = try Checkpoint.open(dir) } catch let e as RWKVError { #expect(e.message.contains("is not a file name in the folder")) }
    }
}
