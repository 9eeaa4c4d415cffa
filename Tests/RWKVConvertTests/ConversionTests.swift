import Foundation
import Testing
@testable import RWKVConvert
import RWKVFormats
import RWKVModel

/// What llama.cpp's loader creates for each architecture, transcribed from `load_arch_tensors`
/// in llama.cpp `src/models/rwkv7.cpp` and `src/models/rwkv6.cpp` (the `create_tensor(tn(...),
/// {ne0, ne1, ...})` calls, ggml order, contiguous dimension first). The loader accepts a file
/// tensor when its ne equals these with missing trailing dimensions read as 1
/// (`llama_model_loader::check_tensor_dims`), and refuses files with tensors it did not create.
enum LlamaLoaderTable {
    static func rwkv7(L: Int, C: Int, V: Int, F: Int, Dw: Int, Da: Int, Dv: Int, Dg: Int) -> [String: [Int]] {
        var t: [String: [Int]] = [
            "token_embd.weight": [C, V], "token_embd_norm.weight": [C], "token_embd_norm.bias": [C],
            "output_norm.weight": [C], "output_norm.bias": [C], "output.weight": [C, V],
        ]
        for i in 0..<L {
            let b = "blk.\(i)."
            t[b + "attn_norm.weight"] = [C]; t[b + "attn_norm.bias"] = [C]
            t[b + "attn_norm_2.weight"] = [C]; t[b + "attn_norm_2.bias"] = [C]
            t[b + "time_mix_w0.weight"] = [C]; t[b + "time_mix_w1.weight"] = [C, Dw]; t[b + "time_mix_w2.weight"] = [Dw, C]
            t[b + "time_mix_a0.weight"] = [C]; t[b + "time_mix_a1.weight"] = [C, Da]; t[b + "time_mix_a2.weight"] = [Da, C]
            let rv = i == 0 ? Da : Dv   // "actually not used": layer 0 takes the iclr rank
            t[b + "time_mix_v0.weight"] = [C]; t[b + "time_mix_v1.weight"] = [C, rv]; t[b + "time_mix_v2.weight"] = [rv, C]
            t[b + "time_mix_g1.weight"] = [C, Dg]; t[b + "time_mix_g2.weight"] = [Dg, C]
            t[b + "time_mix_lerp_fused.weight"] = [C, 1, 1, 6]
            t[b + "time_mix_k_k.weight"] = [C]; t[b + "time_mix_k_a.weight"] = [C]; t[b + "time_mix_r_k.weight"] = [C]
            t[b + "time_mix_key.weight"] = [C, C]; t[b + "time_mix_value.weight"] = [C, C]
            t[b + "time_mix_receptance.weight"] = [C, C]
            t[b + "time_mix_ln.weight"] = [C]; t[b + "time_mix_ln.bias"] = [C]; t[b + "time_mix_output.weight"] = [C, C]
            t[b + "channel_mix_lerp_k.weight"] = [C, 1, 1]
            t[b + "channel_mix_key.weight"] = [C, F]; t[b + "channel_mix_value.weight"] = [F, C]
        }
        return t
    }

    static func rwkv6(L: Int, C: Int, V: Int, F: Int, N: Int, Dm: Int, Dd: Int) -> [String: [Int]] {
        var t: [String: [Int]] = [
            "token_embd.weight": [C, V], "token_embd_norm.weight": [C], "token_embd_norm.bias": [C],
            "output_norm.weight": [C], "output_norm.bias": [C], "output.weight": [C, V],
        ]
        for i in 0..<L {
            let b = "blk.\(i)."
            t[b + "attn_norm.weight"] = [C]; t[b + "attn_norm.bias"] = [C]
            t[b + "attn_norm_2.weight"] = [C]; t[b + "attn_norm_2.bias"] = [C]
            t[b + "time_mix_w1.weight"] = [C, Dm * 5]; t[b + "time_mix_w2.weight"] = [Dm, C, 5]
            t[b + "time_mix_lerp_x.weight"] = [C, 1, 1]; t[b + "time_mix_lerp_fused.weight"] = [C, 1, 1, 5]
            t[b + "time_mix_first.weight"] = [N, C / N]; t[b + "time_mix_decay.weight"] = [C]
            t[b + "time_mix_decay_w1.weight"] = [C, Dd]; t[b + "time_mix_decay_w2.weight"] = [Dd, C]
            t[b + "time_mix_key.weight"] = [C, C]; t[b + "time_mix_value.weight"] = [C, C]
            t[b + "time_mix_receptance.weight"] = [C, C]; t[b + "time_mix_gate.weight"] = [C, C]
            t[b + "time_mix_ln.weight"] = [C]; t[b + "time_mix_ln.bias"] = [C]; t[b + "time_mix_output.weight"] = [C, C]
            t[b + "channel_mix_lerp_k.weight"] = [C, 1, 1]; t[b + "channel_mix_lerp_r.weight"] = [C, 1, 1]
            t[b + "channel_mix_key.weight"] = [C, F]; t[b + "channel_mix_value.weight"] = [F, C]
            t[b + "channel_mix_receptance.weight"] = [C, C]
        }
        return t
    }

    /// The big matrices, the only tensors stored in the requested type (llama-quant.cpp
    /// `tensor_allows_quantization` refuses 1-D tensors, norms, lerps, time_mix_first and every
    /// LoRA piece; the converter keeps those in F32).
    static func isLargeMatrix(_ name: String) -> Bool {
        name == "token_embd.weight" || name == "output.weight"
            || ["time_mix_key.", "time_mix_value.", "time_mix_receptance.", "time_mix_gate.", "time_mix_output.",
                "channel_mix_key.", "channel_mix_value.", "channel_mix_receptance."].contains { name.contains($0) }
    }

    /// The loader's comparison: equal after padding both with trailing 1s to four dimensions.
    static func loaderAccepts(file ne: [Int], expected: [Int]) -> Bool {
        func pad(_ x: [Int]) -> [Int] { x + [Int](repeating: 1, count: max(0, 4 - x.count)) }
        return pad(ne) == pad(expected)
    }
}

// The fixtures (fixtures/README.md): RWKV-7 L=2 C=128 N=64 V=256 F=512, Dw 32, Da 24, Dv 16, Dg 48;
// RWKV-6 L=2 C=128 N=64 V=256 F=448, Dm 32, Dd 64.
let rwkv7Table = LlamaLoaderTable.rwkv7(L: 2, C: 128, V: 256, F: 512, Dw: 32, Da: 24, Dv: 16, Dg: 48)
let rwkv6Table = LlamaLoaderTable.rwkv6(L: 2, C: 128, V: 256, F: 448, N: 64, Dm: 32, Dd: 64)

@Suite struct ConversionTests {
    @Test(arguments: [("rwkv7-tiny.safetensors", "rwkv7"), ("rwkv6-tiny.safetensors", "rwkv6")], OutputType.allCases)
    func tensorsMatchTheLlamaLoader(model: (file: String, arch: String), type: OutputType) throws {
        let (out, report) = try ConversionFiles.conversion(model.file, type)
        let gguf = try GGUFReader(path: out)
        let table = model.arch == "rwkv7" ? rwkv7Table : rwkv6Table

        #expect(Set(gguf.tensorInfos.map(\.name)) == Set(table.keys))
        for t in gguf.tensorInfos {
            guard let expected = table[t.name] else { continue }
            #expect(LlamaLoaderTable.loaderAccepts(file: t.dimensions, expected: expected),
                    "\(t.name): ne \(t.dimensions), loader expects \(expected)")
            #expect(t.dtype == (LlamaLoaderTable.isLargeMatrix(t.name) ? Self.storedType(t.name, type, rowLength: t.dimensions[0]) : .f32),
                    "\(t.name) is \(t.dtype)")
            #expect(t.offset % 32 == 0)
        }
        #expect(report.tensors.map(\.name) == gguf.tensorInfos.map(\.name))
        #expect(report.tensors.map(\.bytes) == gguf.tensorInfos.map(\.byteCount))
        #expect(report.overflowCount == 0)
        let changed = gguf.tensorInfos.filter { LlamaLoaderTable.isLargeMatrix($0.name) && $0.dtype != type.dtype }
        #expect(report.notes.count == changed.count)
        #expect(report.fileBytes == Int(try FileManager.default.attributesOfItem(atPath: out)[.size] as! UInt64))
    }

    @Test func metadataIsWhatLlamaCppReads() throws {
        let input = ConversionFiles.fixture("rwkv7-tiny.safetensors")
        let out7 = try ConversionFiles.converted("rwkv7-tiny.safetensors", .f16)
        let out6 = try ConversionFiles.converted("rwkv6-tiny.safetensors", .bf16)

        let g7 = try GGUFReader(path: out7)
        let inputDigest = SHA256.hex(try SHA256.hash(file: try InputFile(input)))
        let expected7: [String: GGUFValue] = [
            "general.architecture": .string("rwkv7"), "general.name": .string("rwkv7-tiny"),
            "general.file_type": .uint32(1), "general.alignment": .uint32(32),
            "rwkv7.context_length": .uint32(1_048_576), "rwkv7.embedding_length": .uint32(128),
            "rwkv7.block_count": .uint32(2), "rwkv7.feed_forward_length": .uint32(512),
            "rwkv7.attention.layer_norm_epsilon": .float32(1e-5), "rwkv7.wkv.head_size": .uint32(64),
            "rwkv7.attention.decay_lora_rank": .uint32(32), "rwkv7.attention.iclr_lora_rank": .uint32(24),
            "rwkv7.attention.value_residual_mix_lora_rank": .uint32(16), "rwkv7.attention.gate_lora_rank": .uint32(48),
            "rwkv7.attention.head_count": .uint32(0),
            "tokenizer.ggml.model": .string("rwkv"),
            "rwkv_tools.source.file": .string("rwkv7-tiny.safetensors"),
            "rwkv_tools.source.sha256": .string(inputDigest),
        ]
        for (k, v) in expected7 { #expect(g7.value(k) == v, "\(k)") }
        #expect(g7.value("general.quantization_version") == nil)   // nothing quantized
        // 256 rows, no vocabulary file: the 256 byte tokens, escaped as Python's repr does.
        guard g7.value("tokenizer.ggml.tokens")?.elementType == .string, let tokens = g7.value("tokenizer.ggml.tokens")?.items,
              g7.value("tokenizer.ggml.token_type")?.elementType == .int32, let types = g7.value("tokenizer.ggml.token_type")?.items else {
            Issue.record("token list missing"); return
        }
        #expect(tokens.count == 256 && types.count == 256)
        #expect(tokens[10] == .string("\\n") && tokens[65] == .string("A") && tokens[92] == .string("\\\\") && tokens[255] == .string("\\xff"))

        let g6 = try GGUFReader(path: out6)
        let expected6: [String: GGUFValue] = [
            "general.architecture": .string("rwkv6"), "general.file_type": .uint32(32),
            "rwkv6.embedding_length": .uint32(128), "rwkv6.block_count": .uint32(2), "rwkv6.feed_forward_length": .uint32(448),
            "rwkv6.wkv.head_size": .uint32(64), "rwkv6.time_mix_extra_dim": .uint32(32),
            "rwkv6.time_decay_extra_dim": .uint32(64), "rwkv6.rescale_every_n_layers": .uint32(0),
            "rwkv6.attention.layer_norm_epsilon": .float32(1e-5),
        ]
        for (k, v) in expected6 { #expect(g6.value(k) == v, "\(k)") }
    }

    /// `rwkv-convert inspect` on a converted file: the architecture (from the metadata, every
    /// tensor shape checked) and the metadata list.
    @Test func inspectShowsGGUFMetadata() throws {
        let path = try ConversionFiles.converted("rwkv6-tiny.safetensors", .q4_0)
        let report = InspectReport(source: try ModelFile.open(path))
        #expect(report.format == "GGUF")
        #expect(report.config == (try RWKVConfig.detect(try ModelFile.open(ConversionFiles.fixture("rwkv6-tiny.safetensors")))))
        #expect(report.metadata?.first { $0.key == "general.file_type" }?.value == "2")
        #expect(report.metadata?.first { $0.key == "tokenizer.ggml.tokens" }?.type == "array[string] (256)")
        #expect(report.text.contains("  rwkv6.time_mix_extra_dim"))
        #expect(report.tensors.first { $0.name == "blk.0.time_mix_key.weight" }?.dtype == "q4_0")
        // Bits per weight as llama.cpp's loader prints it: an all-F32 file has exactly 32; the q4_0
        // file's large matrices take 4.5 (q4_0) and 8.5 (its q8_0 head), its small tensors 32.
        let f32 = InspectReport(source: try ModelFile.open(try ConversionFiles.converted("rwkv6-tiny.safetensors", .f32)))
        #expect(f32.bitsPerWeight == 32)
        let bpw = try #require(report.bitsPerWeight)
        #expect(bpw > 4.5 && bpw < 32 && report.text.contains(String(format: "%.2f bits per weight", bpw)))
    }

    /// The canonical view of an f32 conversion gives back every source tensor bit for bit (layer
    /// 0's unused RWKV-7 v0/v1/v2 come back as the a0/a1/a2 copies the file holds).
    @Test(arguments: ["rwkv7-tiny.safetensors", "rwkv6-tiny.safetensors"])
    func f32ConversionInvertsExactly(model: String) throws {
        let input = ConversionFiles.fixture(model)
        let out = try ConversionFiles.converted(model, .f32)
        let source = try ModelFile.open(input)
        let view = try GGUFCanonicalSource(path: out)
        #expect(view.config == (try RWKVConfig.detect(source)))
        #expect(Set(view.tensors.map(\.name)) == Set(source.tensors.map(\.name)))
        for t in view.tensors {
            let original = layer0ValueResidual(t.name).map { "blocks.0.att.a\($0)" } ?? t.name
            #expect(try view.floats(t.name) == source.floats(original), "\(t.name)")
            if layer0ValueResidual(t.name) == nil { #expect(t.shape == source.info(t.name)?.shape, "\(t.name)") }
        }
    }

    /// Large tensors stream through in pieces; the tiny fixtures fit in one piece by default, so
    /// here pieces of 96 elements (three blocks, not dividing most tensors) must give the same
    /// file byte for byte, from a .pth (records streamed out of the zip) and a .safetensors, for
    /// a direct (f16), a decode-then-quantize (q8_0, q4_1) and a widening (f32) path, and with
    /// --sync.
    @Test(arguments: ["rwkv7-tiny-bf16.pth", "rwkv6-tiny.safetensors"], [OutputType.f16, .q8_0, .q4_1, .f32])
    func piecesGiveTheSameFile(model: String, type: OutputType) throws {
        let dir = try ConversionFiles.ScratchDirectory()
        var options = ConversionOptions()
        options.type = type
        let whole = try Converter.convert(input: ConversionFiles.fixture(model), output: dir.path + "/whole.gguf", options: options)
        options.pieceElements = 96
        options.threads = 3
        options.sync = true   // flushed before the rename (the default is not): the same bytes
        let pieces = try Converter.convert(input: ConversionFiles.fixture(model), output: dir.path + "/pieces.gguf", options: options)
        #expect(FileManager.default.contents(atPath: dir.path + "/pieces.gguf") == FileManager.default.contents(atPath: dir.path + "/whole.gguf"))
        #expect(pieces.tensors.map(\.overflowCount) == whole.tensors.map(\.overflowCount))
    }

    /// The official .pth layout: an fp32 checkpoint converted to f32 reads back exactly, and the
    /// bf16 .pth (same values as the .safetensors) gives the same tensor bytes as the .safetensors.
    @Test(arguments: ["rwkv7-tiny", "rwkv6-tiny"])
    func pthCheckpoints(model: String) throws {
        let dir = try ConversionFiles.ScratchDirectory()
        let fp32 = ConversionFiles.fixture(model + "-fp32.pth")
        var options = ConversionOptions()
        options.type = .f32
        options.expectedFormat = .torchZip
        _ = try Converter.convert(input: fp32, output: dir.path + "/fp32.gguf", options: options)
        let source = try ModelFile.open(fp32)
        let view = try GGUFCanonicalSource(path: dir.path + "/fp32.gguf")
        for t in view.tensors {
            let original = layer0ValueResidual(t.name).map { "blocks.0.att.a\($0)" } ?? t.name
            #expect(try view.floats(t.name) == source.floats(original), "\(t.name)")
        }

        options.type = .q4_1
        _ = try Converter.convert(input: ConversionFiles.fixture(model + "-bf16.pth"), output: dir.path + "/pth.gguf", options: options)
        let fromPth = try GGUFReader(path: dir.path + "/pth.gguf")
        let fromSafetensors = try GGUFReader(path: try ConversionFiles.converted(model + ".safetensors", .q4_1))
        #expect(fromPth.tensors == fromSafetensors.tensors)
        for t in fromPth.tensors { #expect(try fromPth.data(t.name) == fromSafetensors.data(t.name), "\(t.name)") }
    }

    /// bf16 checkpoints: storing bf16 is lossless; f16 loses only what bf16 values below f16's
    /// normal range (6.1e-5) cannot keep: a subnormal f16 has a spacing of 2^-24 (6e-8), so each
    /// value is off by at most half of that.
    @Test(arguments: ["rwkv7-tiny.safetensors", "rwkv6-tiny.safetensors"])
    func sixteenBitConversions(model: String) throws {
        let source = try ModelFile.open(ConversionFiles.fixture(model))
        for type in [OutputType.bf16, .f16] {
            let view = try GGUFCanonicalSource(path: try ConversionFiles.converted(model, type))
            for t in view.tensors where layer0ValueResidual(t.name) == nil {
                let a = try view.floats(t.name), b = try source.floats(t.name)
                let maxError = zip(a, b).map { abs($0 - $1) }.max() ?? 0
                #expect(maxError <= (type == .bf16 ? 0 : 0x1p-25), "\(type) \(t.name): max error \(maxError)")
            }
        }
    }

    /// Quantized conversions read back within the error bound of each ggml block format,
    /// computed per 32-value block from the source values (ggml-quants.c `quantize_row_*_ref`):
    /// q8_0 rounds x/d with d = amax/127, so |error| <= d/2; q4_0 / q5_0 use d = max/-8 (/-16)
    /// and clamp the top code, so the value at -max is off by a whole d = amax/8 (amax/16);
    /// q4_1 / q5_1 round (x-min)/d with d = (max-min)/15 (/31), so |error| <= d/2. The scales are
    /// stored as f16 (relative error 2^-11, times at most 16 or 127 steps): the slack covers that.
    /// What a large matrix named `name` (GGUF) of the fixture models (C = 128) is stored as under
    /// `--type type`, by llama.cpp's rules (llama-quant.cpp): the output matrix of a quantized
    /// type becomes q6_K, which falls back to q8_0 on rows of 128; a k-quant on rows that are not
    /// whole 256-value blocks falls back to q4_0 (q2_K, q3_K), q5_0 (q4_K), q5_1 (q5_K), q8_0 (q6_K).
    static func storedType(_ name: String, _ type: OutputType, rowLength: Int) -> DType {
        if name == "output.weight" && type.dtype.isQuantized { return .q8_0 }
        if rowLength % 256 == 0 { return type.dtype }
        switch type {
        case .q2_k, .q3_k: return .q4_0
        case .q4_k: return .q5_0
        case .q5_k: return .q5_1
        case .q6_k: return .q8_0
        default: return type.dtype
        }
    }

    @Test(arguments: ["rwkv7-tiny.safetensors", "rwkv6-tiny.safetensors"], [OutputType.q8_0, .q5_1, .q5_0, .q4_1, .q4_0])
    func quantizedConversionsStayWithinBlockBounds(model: String, type: OutputType) throws {
        let source = try ModelFile.open(ConversionFiles.fixture(model))
        let view = try GGUFCanonicalSource(path: try ConversionFiles.converted(model, type))
        var largest = 0.0 as Float
        for t in view.tensors where layer0ValueResidual(t.name) == nil {
            let a = try view.floats(t.name), b = try source.floats(t.name)
            guard GGUFLayout.tensors(for: view.config).contains(where: { $0.isLargeMatrix && $0.sources == [t.name] }) else {
                #expect(a == b, "\(t.name) is F32 and must be exact")
                continue
            }
            // Plain loops over buffers: this runs on ~10^6 values per case in a debug build.
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    for start in stride(from: 0, to: b.count, by: 32) {
                        var lo = b[start], hi = b[start], error: Float = 0
                        for i in start..<start + 32 {
                            lo = min(lo, b[i]); hi = max(hi, b[i]); error = max(error, abs(a[i] - b[i]))
                        }
                        let amax = max(-lo, hi)
                        let bound: Float
                        switch Self.storedType(t.name == "head.weight" ? "output.weight" : t.name, type, rowLength: 128) {
                        case .q8_0: bound = amax / 127 / 2 + amax * 0x1p-10
                        case .q4_0: bound = amax / 8 + amax * 0x1p-7
                        case .q5_0: bound = amax / 16 + amax * 0x1p-7
                        case .q4_1: bound = (hi - lo) / 15 / 2 + (hi - lo) * 0x1p-8 + abs(lo) * 0x1p-10
                        case .q5_1: bound = (hi - lo) / 31 / 2 + (hi - lo) * 0x1p-8 + abs(lo) * 0x1p-10
                        default: bound = 0
                        }
                        largest = max(largest, error / max(bound, .leastNormalMagnitude))
                        if error > bound { Issue.record("\(type) \(t.name) block \(start / 32): error \(error) > bound \(bound)") }
                    }
                }
            }
        }
        #expect(largest > 0.3, "the bound is not vacuous: the worst block uses \(largest) of it")
    }

    /// A k-quant matrix in a converted file holds exactly Quantizer's bytes for the source values
    /// (Quantizer itself is checked against ggml's vectors in RWKVFormatsTests): the converter's
    /// chunked, threaded encoding changes nothing. RWKV-7's FFN value rows (512) are whole
    /// super-blocks at C = 128; the other matrices fall back (tensorsMatchTheLlamaLoader).
    @Test(arguments: [OutputType.q2_k, .q3_k, .q4_k, .q5_k, .q6_k, .iq4_nl])
    func kQuantMatricesHoldQuantizerBytes(type: OutputType) throws {
        let source = try ModelFile.open(ConversionFiles.fixture("rwkv7-tiny.safetensors"))
        let gguf = try GGUFReader(path: try ConversionFiles.converted("rwkv7-tiny.safetensors", type))
        for layer in 0..<2 {
            let name = "blk.\(layer).channel_mix_value.weight"
            #expect(gguf.ggufInfo(name)?.dtype == type.dtype)
            var overflow = 0
            let expected = try Quantizer.quantizeRows(try source.floats("blocks.\(layer).ffn.value.weight"), rowLength: 512,
                                                      type: type.dtype, threads: 1, overflowCount: &overflow)
            #expect(try gguf.data(name) == expected, "\(name)")
        }
    }

    private func layer0ValueResidual(_ name: String) -> Int? {
        ["blocks.0.att.v0": 0, "blocks.0.att.v1": 1, "blocks.0.att.v2": 2][name]
    }
}
