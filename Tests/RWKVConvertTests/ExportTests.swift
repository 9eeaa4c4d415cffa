import Foundation
import Testing
@testable import RWKVConvert
import RWKVFormats
import RWKVModel

/// `to-hf` and `to-pth` move a model between the trainer's and the Hugging Face layouts.
@Suite struct ExportTests {
    static let fixtures = ConversionFiles.root + "/fixtures/"

    /// Our fla-hub folder holds exactly the tensors the rwkv7-hf converter wrote for the same
    /// .pth (fixtures/hf/rwkv7-tiny, made by fixtures/make_hf.py): names, dtypes, shapes, bytes.
    @Test func rwkv7FolderEqualsThePublishedConverters() throws {
        let scratch = try ConversionFiles.ScratchDirectory()
        _ = try Export.toHuggingFace(input: ConversionFiles.fixture("rwkv7-tiny-bf16.pth"), output: scratch.path + "/hf")
        let ours = try SafetensorsReader(path: scratch.path + "/hf/model.safetensors")
        let theirs = try SafetensorsReader(path: Self.fixtures + "hf/rwkv7-tiny/model.safetensors")
        #expect(Set(ours.tensors.map(\.name)) == Set(theirs.tensors.map(\.name)))
        for t in theirs.tensors {
            #expect(ours.info(t.name) == t, "\(t.name)")
            #expect(try ours.data(t.name) == (try theirs.data(t.name)), "\(t.name)")
        }
        // And it reads back (config.json included) as the checkpoint it came from.
        #expect(try RWKVConfig.detect(try Checkpoint.open(scratch.path + "/hf"))
                == (try RWKVConfig.detect(try ModelFile.open(ConversionFiles.fixture("rwkv7-tiny-bf16.pth")))))
    }

    /// RWKV-6: the folder holds the published mapping's names (fixtures/hf/rwkv6-tiny-bin) and
    /// bytes; to-pth of it gives back the original tensors.
    @Test func rwkv6RoundTrip() throws {
        let scratch = try ConversionFiles.ScratchDirectory()
        let pth = ConversionFiles.fixture("rwkv6-tiny-bf16.pth")
        _ = try Export.toHuggingFace(input: pth, output: scratch.path + "/hf")
        let ours = try SafetensorsReader(path: scratch.path + "/hf/model.safetensors")
        let theirs = try ModelFile.open(Self.fixtures + "hf/rwkv6-tiny-bin/pytorch_model.bin")
        #expect(Set(ours.tensors.map(\.name)) == Set(theirs.tensors.map(\.name)))
        for t in theirs.tensors { #expect(try ours.data(t.name) == (try theirs.data(t.name)), "\(t.name)") }
        _ = try Export.toPth(input: scratch.path + "/hf", output: scratch.path + "/back.pth")
        let back = try ModelFile.open(scratch.path + "/back.pth"), original = try ModelFile.open(pth)
        #expect(Set(back.tensors.map(\.name)) == Set(original.tensors.map(\.name)))
        for t in original.tensors {
            #expect(back.info(t.name) == t, "\(t.name)")
            #expect(try back.data(t.name) == (try original.data(t.name)), "\(t.name)")
        }
    }

    /// to-pth of an fla-hub folder: every official key; block 0's unused v0/v1/v2, which fla
    /// drops, come back as zeros of the official shapes; everything else as in the .pth.
    @Test func rwkv7PthFromAFolderHasEveryOfficialKey() throws {
        let scratch = try ConversionFiles.ScratchDirectory()
        _ = try Export.toPth(input: Self.fixtures + "hf/rwkv7-tiny-xx-sharded", output: scratch.path + "/v7.pth")
        let back = try ModelFile.open(scratch.path + "/v7.pth"), original = try ModelFile.open(ConversionFiles.fixture("rwkv7-tiny-bf16.pth"))
        #expect(Set(back.tensors.map(\.name)) == Set(original.tensors.map(\.name)))
        for t in original.tensors {
            #expect(back.info(t.name) == t, "\(t.name)")
            let unused = ["blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2"].contains(t.name)
            let bytes = try back.data(t.name)
            #expect(unused ? bytes.allSatisfy { $0 == 0 } : bytes == (try original.data(t.name)), "\(t.name)")
        }
    }

    @Test func anExistingFolderIsNeverOverwritten() throws {
        let scratch = try ConversionFiles.ScratchDirectory()
        #expect(throws: RWKVError(scratch.path, "already exists: give a new folder name")) {
            _ = try Export.toHuggingFace(input: ConversionFiles.fixture("rwkv7-tiny-bf16.pth"), output: scratch.path)
        }
    }
}
