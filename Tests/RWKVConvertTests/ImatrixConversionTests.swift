import Foundation
import Testing
@testable import RWKVConvert
import RWKVFormats
import RWKVModel

/// `--imatrix` on conversion: each covered tensor is quantized with its importance row, streamed
/// in whole-row pieces, giving the bytes `Quantizer.quantizeRows` gives the whole tensor (whose
/// equality with ggml's `ggml_quantize_chunk` is KQuantVectorTests' job). The matrix is the one
/// fixtures/text_fixtures.py made from the official package's activations (legacy .dat).
@Suite struct ImatrixConversionTests {
    static let imatrix = ConversionFiles.root + "/fixtures/expected/text/rwkv7-tiny-fp32.imatrix.dat"

    @Test(arguments: [OutputType.q4_0, .q5_1, .q4_k])
    func weightedQuantizationMatchesTheWholeTensorQuantizer(_ type: OutputType) throws {
        let scratch = try ConversionFiles.ScratchDirectory()
        let input = ConversionFiles.fixture("rwkv7-tiny-fp32.pth")
        var options = ConversionOptions()
        options.type = type
        options.imatrixPath = Self.imatrix
        options.pieceElements = 256   // several pieces per matrix (whole k-quant blocks); with weights, whole rows of 128 (C) or 512 (ffn.value)
        _ = try Converter.convert(input: input, output: scratch.path + "/w.gguf", options: options)
        options.imatrixPath = nil
        _ = try Converter.convert(input: input, output: scratch.path + "/plain.gguf", options: options)

        let weighted = try GGUFReader(path: scratch.path + "/w.gguf"), plain = try GGUFReader(path: scratch.path + "/plain.gguf")
        let source = try ModelFile.open(input)
        let matrix = try ImportanceMatrix.read(Self.imatrix)
        var covered = 0
        for info in weighted.tensors where Quantizer.usesImportance(info.dtype) {
            guard let row = matrix.importance(info.name) else { continue }
            covered += 1
            let layout = try #require(GGUFLayout.tensors(for: try RWKVConfig.detect(source)).first { $0.name == info.name })
            var overflow = 0
            let expected = try Quantizer.quantizeRows(try source.floats(layout.sources[0]), rowLength: info.shape.last!, type: info.dtype,
                                                      importance: row, threads: 1, overflowCount: &overflow)
            #expect(try weighted.data(info.name) == expected, "\(info.name)")
            #expect(try weighted.data(info.name) != (try plain.data(info.name)), "\(info.name): the weights changed nothing")
        }
        #expect(covered >= 4)
    }

    @Test func anImatrixOfAnotherModelIsRefused() throws {
        let scratch = try ConversionFiles.ScratchDirectory()
        var options = ConversionOptions()
        options.type = .q4_0
        options.imatrixPath = Self.imatrix
        #expect(throws: RWKVError.self) {
            _ = try Converter.convert(input: ConversionFiles.fixture("rwkv6-tiny-fp32.pth"), output: scratch.path + "/x.gguf", options: options)
        }
        #expect(scratch.files.isEmpty)
    }
}
