import Foundation
import Testing
import RWKVFormats
@testable import RWKVConvert

@Suite struct InspectionTests {
    @Test func reportsTensorsAndArchitectureErrors() throws {
        let dir = NSTemporaryDirectory() + "rwkv-inspect-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/x.safetensors"
        let t = TensorInfo(name: "emb.weight", dtype: .f16, shape: [4, 8])
        try SafetensorsWriter.write(to: path, tensors: [t]) { _ in [UInt8](repeating: 0, count: 64) }
        let report = InspectReport(source: try ModelFile.open(path))
        #expect(report.format == "safetensors")
        #expect(report.config == nil)
        #expect(report.architectureError == "not an RWKV checkpoint (no emb.weight and blocks.* tensors)")
        // `inspect` prints the report, then exits 2 with this line: the file is no usable model.
        #expect(report.unusableModelError == RWKVError(path, "not a usable RWKV-6/7 model: not an RWKV checkpoint (no emb.weight and blocks.* tensors)"))
        #expect(report.tensors.map(\.bytes) == [64])
        #expect(report.text.contains("emb.weight  f16     [4, 8]"))
        #expect(report.bitsPerWeight == 16 && report.text.contains("16.00 bits per weight"))
    }

    @Test func listsTheEntriesOfATorchCheckpointThatAreNotTensors() throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fixtures").path
        let report = InspectReport(source: try ModelFile.open(fixtures + "/torch/nested.pth"))
        #expect(report.format == "torch zip (.pth)")
        #expect(report.ignoredEntries == ["epoch (int)"])
        #expect(report.text.contains("ignored: 1 entries that are not tensors: epoch (int)"))
        let model = InspectReport(source: try ModelFile.open(fixtures + "/models/rwkv7-tiny-bf16.pth"))
        #expect(model.config?.version == .v7)
        #expect(model.unusableModelError == nil)
    }

    @Test func formatsSizesForPeople() {
        #expect(formatBytes(999) == "999 bytes")
        #expect(formatBytes(1_500_000) == "1.5 MB")
    }
}
