import Foundation
import Testing
@testable import RWKVConvert
import RWKVFormats
import RWKVModel

/// A Hugging Face folder converts to the GGUF its BlinkDL .pth converts to: every tensor's
/// type, shape and bytes, and every metadata value except the provenance (the source's name and
/// SHA-256 differ by design).
@Suite struct HuggingFaceConversionTests {
    static let cases: [(folder: String, pth: String)] = [
        ("hf/rwkv7-tiny", "models/rwkv7-tiny-bf16.pth"),
        ("hf/rwkv7-tiny-xx-sharded", "models/rwkv7-tiny-bf16.pth"),
        ("hf/rwkv6-tiny-bin", "models/rwkv6-tiny-bf16.pth"),
    ]

    @Test(arguments: cases.map(\.folder), [OutputType.f32, .q8_0])
    func folderConvertsLikeItsPth(_ folder: String, _ type: OutputType) throws {
        let pth = Self.cases.first { $0.folder == folder }!.pth
        let scratch = try ConversionFiles.ScratchDirectory()
        let dir = scratch.path
        var options = ConversionOptions()
        options.type = type
        options.name = "same"
        _ = try Converter.convert(input: ConversionFiles.root + "/fixtures/" + folder, output: dir + "/hf.gguf", options: options)
        _ = try Converter.convert(input: ConversionFiles.root + "/fixtures/" + pth, output: dir + "/pth.gguf", options: options)
        let a = try GGUFReader(path: dir + "/hf.gguf"), b = try GGUFReader(path: dir + "/pth.gguf")
        #expect(a.tensorInfos.map(\.name) == b.tensorInfos.map(\.name))
        for t in b.tensors {
            #expect(a.info(t.name) == t, "\(t.name)")
            #expect(try a.data(t.name) == (try b.data(t.name)), "\(t.name)")
        }
        let provenance: Set = [Provenance.sourceFileKey, Provenance.sourceSHA256Key]
        #expect(a.metadata.filter { !provenance.contains($0.key) } == b.metadata.filter { !provenance.contains($0.key) })
    }
}
