import Foundation
import Testing
@testable import RWKVConvert
import RWKVFormats
import RWKVModel

/// Failures leave nothing behind, inputs are never overwritten, wrong inputs say what they are.
@Suite struct ConverterSafetyTests {
    @Test func refusesToOverwriteTheInput() throws {
        let dir = try ConversionFiles.ScratchDirectory()
        let input = dir.path + "/m.safetensors"
        try FileManager.default.copyItem(atPath: ConversionFiles.fixture("rwkv7-tiny.safetensors"), toPath: input)
        let before = try Data(contentsOf: URL(fileURLWithPath: input))
        #expect(throws: RWKVError(input, "refusing to overwrite the input file")) {
            _ = try ConversionFiles.convert(input, to: input, type: .f16)
        }
        // The same file through another spelling of its path.
        #expect(throws: RWKVError(dir.path + "/./m.safetensors", "refusing to overwrite the input file")) {
            _ = try ConversionFiles.convert(input, to: dir.path + "/./m.safetensors", type: .f16)
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: input)) == before)
        #expect(dir.files == ["m.safetensors"])
    }

    /// A conversion that fails part way (a tensor read fails after the header and some tensors
    /// are written) leaves no output and no temporary file; one that fails before writing leaves
    /// an existing file at the output path alone.
    @Test func failedConversionLeavesNoOutput() throws {
        let dir = try ConversionFiles.ScratchDirectory()
        let out = dir.path + "/out.gguf"
        let source = FailingSource(try SafetensorsReader(path: ConversionFiles.fixture("rwkv7-tiny.safetensors")), failAfter: 20)
        let options = ConversionOptions()
        #expect(throws: RWKVError(source.path, "read error (test)")) {
            _ = try Converter.convert(source: source, format: .safetensors, output: out, options: options)
        }
        #expect(source.reads == 21)
        #expect(dir.files.isEmpty)

        try Data("keep me".utf8).write(to: URL(fileURLWithPath: out))
        let vocab = dir.path + "/vocab.txt"
        try Data("1 'a' 1\n2 'bc' 3\n".utf8).write(to: URL(fileURLWithPath: vocab))
        #expect(throws: RWKVError(vocab, "line 2: token is 2 bytes, the line says 3")) {
            _ = try ConversionFiles.convert(ConversionFiles.fixture("rwkv7-tiny.safetensors"), to: out, type: .f16, vocabulary: vocab)
        }
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "keep me")
        #expect(Set(dir.files) == ["out.gguf", "vocab.txt"])

        // An integer tensor where a float one belongs is refused before anything is written.
        let good = try SafetensorsReader(path: ConversionFiles.fixture("rwkv7-tiny.safetensors"))
        let broken = dir.path + "/int.safetensors"
        try SafetensorsWriter.write(to: broken, tensors: good.tensors.map {
            $0.name == "blocks.1.att.w0" ? TensorInfo(name: $0.name, dtype: .i16, shape: $0.shape) : $0
        }) { try good.data($0.name) }
        #expect(throws: RWKVError(broken, "tensor blocks.1.att.w0 is i16; expected a floating-point checkpoint")) {
            _ = try ConversionFiles.convert(broken, to: dir.path + "/int.gguf", type: .f16)
        }
        #expect(Set(dir.files) == ["out.gguf", "vocab.txt", "int.safetensors"])
    }

    /// A .pth whose tensor record is corrupt is found out by its CRC-32 only after the last piece
    /// of that tensor has been converted and written: the conversion still fails and leaves
    /// nothing behind.
    @Test func corruptRecordFoundAfterStreamingLeavesNoOutput() throws {
        let dir = try ConversionFiles.ScratchDirectory()
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: ConversionFiles.fixture("rwkv7-tiny-bf16.pth"))))
        // The bf16 .pth stores the same bytes as the .safetensors: find the embedding's record data.
        let emb = Array(try SafetensorsReader(path: ConversionFiles.fixture("rwkv7-tiny.safetensors")).data("emb.weight").prefix(64))
        let start = try #require((0...bytes.count - emb.count).first { bytes[$0..<$0 + emb.count].elementsEqual(emb) })
        bytes[start + 1000] ^= 1
        let input = dir.path + "/corrupt.pth"
        try Data(bytes).write(to: URL(fileURLWithPath: input))
        var options = ConversionOptions()
        options.pieceElements = 64
        do {
            _ = try Converter.convert(input: input, output: dir.path + "/out.gguf", options: options)
            Issue.record("a corrupt record was converted")
        } catch let error as RWKVError {
            #expect(error.description.hasPrefix(input + ": record ") && error.description.hasSuffix(" is corrupt: CRC-32 mismatch"), "\(error)")
        }
        #expect(dir.files == ["corrupt.pth"])
    }

    /// A large matrix with no elements (an FFN of width 0) is refused up front, with what is
    /// required (it once converted into a GGUF file llama.cpp aborts on), leaving nothing behind.
    @Test func emptyMatricesAreRefused() throws {
        let dir = try ConversionFiles.ScratchDirectory()
        let good = try SafetensorsReader(path: ConversionFiles.fixture("rwkv7-tiny.safetensors"))
        let input = dir.path + "/no-ffn.safetensors"
        let infos = good.tensors.map { t -> TensorInfo in
            if t.name.hasSuffix("ffn.key.weight") { return TensorInfo(name: t.name, dtype: t.dtype, shape: [0, t.shape[1]]) }
            if t.name.hasSuffix("ffn.value.weight") { return TensorInfo(name: t.name, dtype: t.dtype, shape: [t.shape[0], 0]) }
            return t
        }
        try SafetensorsWriter.write(to: input, tensors: infos) { t in t.elementCount == 0 ? [] : try good.data(t.name) }
        #expect(throws: RWKVError(input, "FFN width is 0; an RWKV model needs at least 1")) {
            _ = try ConversionFiles.convert(input, to: dir.path + "/out.gguf", type: .f16)
        }
        #expect(dir.files == ["no-ffn.safetensors"])
    }

    /// The writer abandoned mid-way (as when a tensor read fails) removes its temporary file.
    @Test func abandonedWriterLeavesNothing() throws {
        let dir = try ConversionFiles.ScratchDirectory()
        let out = dir.path + "/x.gguf"
        do {
            let w = try GGUFWriter(path: out, metadata: [], tensors: [TensorInfo(name: "a", dtype: .f32, shape: [4])])
            // On Linux the temporary file has no name (O_TMPFILE); elsewhere it is the one file.
            #expect(dir.files.count == (w.isUnnamed ? 0 : 1))
            _ = w
        }
        #expect(dir.files.isEmpty)
    }

    /// bf16 values beyond f16's range become infinite in an f16 file: counted and named, not silent.
    @Test func f16OverflowIsReported() throws {
        let dir = try ConversionFiles.ScratchDirectory()
        let good = try SafetensorsReader(path: ConversionFiles.fixture("rwkv7-tiny.safetensors"))
        let input = dir.path + "/big.safetensors"
        try SafetensorsWriter.write(to: input, tensors: good.tensors) { t in
            var bytes = try good.data(t.name)
            if t.name == "blocks.1.ffn.value.weight" {     // bf16 0x4780 = 65536, 0xc7c0 = -98304
                bytes[0] = 0x80; bytes[1] = 0x47; bytes[2] = 0xc0; bytes[3] = 0xc7
            }
            return bytes
        }
        let report = try ConversionFiles.convert(input, to: dir.path + "/out.gguf", type: .f16)
        #expect(report.overflowCount == 2)
        #expect(report.overflowTensors == ["blk.1.channel_mix_value.weight"])
        #expect(report.text.contains("warning:    2 finite values became infinite (out of f16's range) in blk.1.channel_mix_value.weight"))
        let values = try GGUFReader(path: dir.path + "/out.gguf").floats("blk.1.channel_mix_value.weight")
        #expect(values[0] == .infinity && values[1] == -.infinity)
        // bf16 keeps them.
        #expect(try ConversionFiles.convert(input, to: dir.path + "/bf16.gguf", type: .bf16).overflowCount == 0)
    }

    @Test func wrongInputFormatSaysWhichCommand() throws {
        let input = ConversionFiles.fixture("rwkv7-tiny.safetensors")
        var options = ConversionOptions()
        options.expectedFormat = .torchZip
        #expect(throws: RWKVError(input, "is a safetensors file, not torch zip (.pth); use safetensors-to-native (or to-gguf, which takes any input)")) {
            _ = try Converter.convert(input: input, output: "/nonexistent/out.gguf", options: options)
        }
    }

    @Test func keepF32AndFallbacks() throws {
        // keep-f32: a glob and a substring.
        let c = try RWKVConfig.detect(try ModelFile.open(ConversionFiles.fixture("rwkv7-tiny.safetensors")))
        let plan = ConversionPlan(config: c, type: .f16, keepF32: ["blk.1.*", "token_embd"])
        let types = Dictionary(uniqueKeysWithValues: plan.tensors.map { ($0.layout.name, $0.dtype) })
        #expect(types["blk.1.time_mix_key.weight"] == .f32)
        #expect(types["token_embd.weight"] == .f32)
        #expect(types["blk.0.time_mix_key.weight"] == .f16)
        #expect(plan.notes.count == 7)   // 6 large matrices of layer 1 + token_embd

        // A quantized type on rows that are not a multiple of 32 falls back to F16, with a note,
        // as llama.cpp's tensor_type_fallback does.
        var odd = c
        odd.embeddingSize = 96; odd.ffnSize = 336; odd.headSize = 48   // 336 % 32 == 16
        let q = ConversionPlan(config: odd, type: .q8_0)
        let valueTypes = q.tensors.filter { $0.layout.name.hasSuffix("channel_mix_value.weight") }.map(\.dtype)
        #expect(valueTypes == [.f16, .f16])
        #expect(q.tensors.first { $0.layout.name == "blk.0.channel_mix_key.weight" }?.dtype == .q8_0)
        #expect(q.notes.allSatisfy { $0.note == "f16: row length 336 is not a multiple of 32, which q8_0 needs (llama.cpp's fallback)" })
        #expect(q.isQuantized)

        // k-quants fall back to 32-value types on rows that are not whole 256-value blocks, and
        // to F16 when those do not fit either (llama-quant.cpp tensor_type_fallback).
        for (type, fallback) in [(OutputType.q2_k, DType.q4_0), (.q3_k, .q4_0), (.q4_k, .q5_0), (.q5_k, .q5_1), (.q6_k, .q8_0)] {
            let k = ConversionPlan(config: odd, type: type)
            let byName = Dictionary(uniqueKeysWithValues: k.tensors.map { ($0.layout.name, $0.dtype) })
            #expect(byName["blk.0.channel_mix_key.weight"] == fallback, "\(type)")          // rows of 96
            #expect(byName["blk.0.channel_mix_value.weight"] == .f16, "\(type)")            // rows of 336
            #expect(k.notes.contains { $0.name == "blk.0.channel_mix_key.weight"
                && $0.note == "\(fallback.rawValue): row length 96 is not a multiple of 256, which \(type.dtype.rawValue) needs (llama.cpp's fallback)" })
        }
        var wide = c
        wide.embeddingSize = 256; wide.ffnSize = 1024; wide.headSize = 64
        let k = ConversionPlan(config: wide, type: .q4_k)
        #expect(k.tensors.filter(\.layout.isLargeMatrix).allSatisfy { $0.dtype == ($0.layout.name == "output.weight" ? .q6_K : .q4_K) })
    }

    /// The output matrix stays at q8_0 under the 4- and 5-bit types (llama.cpp's quantizer keeps
    /// it at higher precision too), follows --type otherwise, and --output-tensor-type and
    /// --keep-f32 override both.
    @Test func outputTensorType() throws {
        let c = try RWKVConfig.detect(try ModelFile.open(ConversionFiles.fixture("rwkv7-tiny.safetensors")))
        func types(_ type: OutputType, output: OutputType? = nil, keepF32: [String] = []) -> (head: DType?, key: DType?, notes: [String]) {
            let plan = ConversionPlan(config: c, type: type, keepF32: keepF32, outputTensorType: output)
            let byName = Dictionary(uniqueKeysWithValues: plan.tensors.map { ($0.layout.name, $0.dtype) })
            return (byName["output.weight"], byName["blk.0.time_mix_key.weight"], plan.notes.map { "\($0.name): \($0.note)" })
        }
        // Rows of 128: llama.cpp's q6_K head falls back to q8_0.
        for type in [OutputType.q5_1, .q5_0, .q4_1, .q4_0, .iq4_nl] {
            let t = types(type)
            #expect(t.head == .q8_0 && t.key == type.dtype, "\(type)")
            #expect(t.notes == ["output.weight: q8_0: row length 128 is not a multiple of 256, which q6_K needs (llama.cpp's fallback)"])
        }
        for type in [OutputType.f32, .f16, .bf16, .q8_0] {
            let t = types(type)
            #expect(t.head == type.dtype && t.key == type.dtype && t.notes.isEmpty, "\(type)")
        }
        // Rows of 256: q6_K (q8_0 stays q8_0), as llama_tensor_get_type chooses.
        var wide = c
        wide.embeddingSize = 256; wide.ffnSize = 1024
        for (type, head) in [(OutputType.q4_0, DType.q6_K), (.q5_1, .q6_K), (.q4_k, .q6_K), (.q2_k, .q6_K), (.q6_k, .q6_K), (.q8_0, .q8_0)] {
            let plan = ConversionPlan(config: wide, type: type)
            #expect(plan.tensors.first { $0.layout.name == "output.weight" }?.dtype == head, "\(type)")
        }
        let chosen = types(.q4_0, output: .q4_0)
        #expect(chosen.head == .q4_0 && chosen.notes.isEmpty)
        let f16Head = types(.q4_1, output: .f16)
        #expect(f16Head.head == .f16 && f16Head.notes == ["output.weight: f16 (--output-tensor-type)"])
        #expect(types(.q4_0, keepF32: ["output"]).head == .f32)
    }
}

/// A checkpoint whose reads start failing after `failAfter` tensors.
final class FailingSource: TensorSource {
    let inner: TensorSource
    let failAfter: Int
    private(set) var reads = 0
    init(_ inner: TensorSource, failAfter: Int) { self.inner = inner; self.failAfter = failAfter }
    var path: String { inner.path }
    var formatName: String { inner.formatName }
    var tensors: [TensorInfo] { inner.tensors }
    func data(_ name: String) throws -> [UInt8] {
        reads += 1
        if reads > failAfter { throw RWKVError(path, "read error (test)") }
        return try inner.data(name)
    }
}
