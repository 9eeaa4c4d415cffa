import Foundation
import Testing
@testable import RWKVFormats

/// Reader -> writer -> reader over torch-made files. scripts/interop-torch.sh runs this suite with
/// RWKV_INTEROP_DIR set to keep the written files, then loads them with torch
/// (`torch.load(weights_only=True)` and `torch.load(mmap=True)`) and compares with the originals.
@Suite struct TorchInteropTests {
    static let keepDirectory = environment("RWKV_INTEROP_DIR")
    static let bigCheckpoint = environment("RWKV_INTEROP_BIG")

    static func environment(_ name: String) -> String? {
        ProcessInfo.processInfo.environment[name].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Every .pth fixture that holds tensors, re-written by TorchWriter (views come out contiguous).
    static var sources: [String] {
        let models = (try? FileManager.default.contentsOfDirectory(atPath: fixturesDirectory + "/models")) ?? []
        return ["torch/views.pth", "torch/ordered.pth", "torch/bigendian.pth"]
            + models.filter { $0.hasSuffix(".pth") }.sorted().map { "models/" + $0 }
    }

    @Test func rewrittenFilesReadBackIdentically() throws {
        let temporary = try TemporaryDirectory()
        let outDir = Self.keepDirectory ?? temporary.path
        for source in Self.sources {
            let input = try ModelFile.open(fixturesDirectory + "/" + source)
            let output = outDir + "/" + source.replacingOccurrences(of: "/", with: "-")
            try TorchWriter.write(to: output, tensors: input.tensors, inputs: [input.path]) { try input.data($0.name) }
            let back = try TorchArchive(path: output)
            #expect(back.tensors == input.tensors, "\(source)")
            for t in input.tensors { #expect(try back.data(t.name) == input.data(t.name), "\(source): \(t.name)") }
        }
    }

    /// A torch.save'd checkpoint over 4 GB (zip64 sizes and offsets), given by the interop script.
    @Test(.enabled(if: bigCheckpoint != nil && keepDirectory != nil))
    func rewritesABigCheckpoint() throws {
        let input = try TorchArchive(path: Self.bigCheckpoint!)
        // Same file name in a subfolder: same archive folder name, so the bytes can be compared.
        let folder = Self.keepDirectory! + "/big"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let output = folder + "/" + (Self.bigCheckpoint! as NSString).lastPathComponent
        try TorchWriter.write(to: output, tensors: input.tensors, inputs: [input.path]) { try input.data($0.name) }
        let back = try TorchArchive(path: output)
        #expect(back.tensors == input.tensors)
    }
}
