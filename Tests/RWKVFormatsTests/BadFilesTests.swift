import Foundation
import Testing
@testable import RWKVFormats

/// Every file in fixtures/bad/ (made by fixtures/make_bad.py, described in fixtures/bad/README.md)
/// opened with ModelFile.open and, if that works, every tensor read: each must fail with its own
/// one-line error. Files that are valid containers of the wrong model are refused by architecture
/// detection instead (Tests/RWKVModelTests/BadModelFilesTests.swift); here they must read cleanly.
@Suite struct BadFilesTests {
    static let directory = fixturesDirectory + "/bad"

    /// file -> a fragment of the expected error message.
    static let expected: [String: String] = [
        "a-directory": "is a directory, not a model file",
        "empty.pth": "file is empty",
        "empty.safetensors": "file is empty",
        "git-lfs-pointer.pth": "unrecognised file format",
        "random-bytes.bin": "unrecognised file format",
        "random-bytes.pth": "unrecognised file format",
        "text-file.safetensors": "unrecognised file format",
        // torch zip container
        "zip-truncated-half.pth": "damaged or truncated zip archive (libzip: Not a zip archive)",
        "zip-truncated-tail.pth": "damaged or truncated zip archive (libzip: Not a zip archive)",
        "zip-record-size-lies.pth": "record tiny-ok/data/0 claims 2147483632 bytes in a 1829-byte file",
        "zip-crc-mismatch.pth": "record tiny-ok/data/0 is corrupt: CRC-32 mismatch",
        "zip-deflated-record.pth": "record zip-deflated-record/data/0 is compressed (method 8); torch.save stores records uncompressed, so it is refused as a possible zip bomb",
        "zip-bomb.pth": "record zip-bomb/data/0 is compressed (method 8)",
        "zip-not-torch.pth": "zip archive without model/data.pkl: not a torch checkpoint",
        "zip-missing-data-record.pth": "tensor b: its storage record zip-missing-data-record/data/1 is missing",
        "zip-two-top-folders.pth": "zip record two/data/0 is outside the archive folder one/",
        "torch-legacy-format.pth": "legacy (pre-zip) torch file",
        "torchscript.pt": "TorchScript archive (torch.jit.save: code/ and constants.pkl), not a torch.save checkpoint",
        "torch-top-level-list.pth": "data.pkl holds a list, not a dict of tensors",
        // tensor geometry
        "tensor-out-of-bounds.pth": "tensor a: view (offset 4, shape [2, 3], strides [3, 1]) runs past its storage of 6 elements",
        "tensor-stride-overflow.pth": "tensor a: view (offset 0, shape [2, 3], strides [4611686018427387904, 1]) runs past its storage of 6 elements",
        "tensor-negative-stride.pth": "data.pkl: tensor stride holds -3, not a non-negative integer",
        "tensor-negative-size.pth": "data.pkl: tensor size holds -2, not a non-negative integer",
        "tensor-numel-mismatch.pth": "tensor a: record tensor-numel-mismatch/data/0 holds 16 bytes but its storage is 6 f32 values (24 bytes)",
        "tensor-broadcast-huge.pth": "tensor a: view of shape [1048576, 1048576] holds 4398046511104 bytes, more than the whole file (2326 bytes)",
        "tensor-huge-numel.pth": "persistent id for torch.FloatStorage claims 2305843009213693952 elements, more bytes than can be addressed",
        // pickle
        "pickle-unknown-storage.pth": "unsupported tensor storage type torch.FancyFloatStorage",
        "pickle-complex-storage.pth": "unsupported tensor storage type torch.ComplexFloatStorage",
        "pickle-os-system.pth": "refusing posix.system: not on the allow-list",
        "pickle-os-system-in-dict.pth": "refusing os.system: not on the allow-list",
        "pickle-builtins-eval.pth": "refusing builtins.eval: not on the allow-list",
        "pickle-stack-global.pth": "refusing builtins.exec: not on the allow-list",
        "pickled-module.pth": "refusing torch.nn.modules.linear.Linear: not on the allow-list",
        "pickle-opcode-inst.pth": "unsupported pickle opcode INST (0x69)",
        "pickle-opcode-obj.pth": "refusing builtins.dict: not on the allow-list",
        "pickle-protocol5-buffer.pth": "unsupported pickle opcode NEXT_BUFFER (0x97)",
        "pickle-truncated.pth": "pickle ends without a STOP opcode",
        "pickle-empty.pth": "empty pickle",
        "pickle-memo-get-unset.pth": "memo index 7 was never stored",
        "pickle-self-reference.pth": "data.pkl holds a list, not a dict of tensors",
        "pickle-deep-nesting.pth": "data.pkl holds a list, not a dict of tensors",
        "pickle-mark-flood.pth": "MARKs nested deeper than 256",
        "pickle-huge-string.pth": "BINUNICODE length 4294967280 runs past the end of the pickle (4 bytes left)",
        // safetensors
        "st-too-short.safetensors": "unrecognised file format",
        "st-header-past-eof.safetensors": "safetensors header length 1000 runs past the end of the file",
        "st-header-huge.safetensors": "safetensors header length 1099511627776 exceeds the 100 MB limit",
        "st-header-not-json.safetensors": "unrecognised file format",
        "st-header-json-array.safetensors": "unrecognised file format",
        "st-header-non-utf8.safetensors": "safetensors header is not valid UTF-8",
        "st-duplicate-key.safetensors": "duplicate key \"a\"",
        "st-overlapping-offsets.safetensors": "tensor b overlaps the previous tensor",
        "st-gap-between-offsets.safetensors": "gap in the data before tensor b",
        "st-trailing-bytes.safetensors": "16 trailing bytes after the last tensor",
        "st-offsets-past-eof.safetensors": "tensor b: data_offsets span 4072 bytes but shape [4] of bf16 needs 8",
        "st-offsets-reversed.safetensors": "data_offsets must be [begin, end] with 0 <= begin <= end",
        "st-size-mismatch.safetensors": "tensor a: data_offsets span 20 bytes but shape [2, 3] of f32 needs 24",
        "st-shape-overflow.safetensors": "tensor a: shape",
        "st-negative-shape.safetensors": "tensor a: shape must hold non-negative integers",
        "st-bad-dtype.safetensors": "tensor a: unsupported dtype \"float32\"",
        "st-missing-field.safetensors": "tensor a: header entry needs dtype, shape and data_offsets",
        // issue 9: hostile files
        "st-name-control-chars.safetensors": #"tensor a\x0aerror: forged second line\x1b]0;pwned\x07\x1b[2J: unsupported dtype "F32\x1b[31m""#,
        "zip-nul-names.pth": "records zip-nul-names/data/1 and zip-nul-names/data/1\\x00x are equal up to a NUL byte",
        "tensor-broadcast-many.pth": "stride-0 (broadcast) views hold",
        "pickle-codecs-encode.pth": "_codecs.encode results hold more bytes than the pickle",
    ]

    /// Valid containers holding something that is no usable RWKV-6/7 model (RWKVModelTests).
    static let validContainers: Set<String> = [
        "not-rwkv.pth", "not-rwkv.safetensors", "rwkv4-like.pth", "rwkv5-like.pth", "rwkv7-inconsistent-ffn.pth",
        "rwkv7-layer-gap.pth", "rwkv7-misshaped-a1.pth", "rwkv7-missing-k_k.pth",
        "torch-nested-state-dict.pth",     // unwrapped from state_dict: {'a', 'b'}
        "torch-byteorder-big.pth",         // byte-swapped: {'a', 'b'}
        // issue 9: valid containers of hostile models
        "gguf-arch-control-chars.gguf", "st-long-name.safetensors", "st-30k-tensors.safetensors",
        "nonfinite-nan-matrix.pth", "nonfinite-f64-overflow.pth", "nonfinite-inf-small.safetensors",
        "rwkv7-n-embd-0.pth", "rwkv7-vocab-0.pth", "rwkv7-lora-rank-0.pth", "rwkv7-ffn-0.pth",
        "rwkv7-vocab-2g-zero-width.safetensors", "gguf-rwkv7-n-embd-0.gguf", "gguf-1000-layers.gguf", "rwkv6-decay-rank-0.safetensors",
    ]

    static var files: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { !$0.hasSuffix(".md") && !$0.hasSuffix(".json") }.sorted()
    }

    @Test func everyFileIsListed() {
        #expect(Self.files.count >= 70)
        let listed = Set(Self.expected.keys).union(Self.validContainers)
        #expect(Set(Self.files).subtracting(listed).isEmpty, "bad files without an expected error")
        #expect(listed.subtracting(Self.files).isEmpty, "expected errors for files that do not exist")
    }

    @Test(arguments: files.filter { expected[$0] != nil })
    func isRefusedWithItsOwnError(file: String) throws {
        let path = Self.directory + "/" + file
        do {
            let source = try ModelFile.open(path)
            for t in source.tensors { _ = try source.data(t.name) }
            Issue.record("\(file) was accepted")
        } catch let error as RWKVError {
            #expect(error.file == path)
            #expect(error.message.contains(Self.expected[file]!), "\(error.message)")
            #expect(!error.description.contains("\n"))
        }
    }

    @Test(arguments: validContainers.sorted())
    func validContainersReadCleanly(file: String) throws {
        let source = try ModelFile.open(Self.directory + "/" + file)
        #expect(!source.tensors.isEmpty)
        for t in source.tensors { #expect(try source.data(t.name).count == t.byteCount) }
    }

    /// torch-byteorder-big.pth holds tiny-ok.pth's little-endian bytes under a "big" byteorder
    /// record: read as torch reads it, every element byte-swapped (never as little-endian).
    /// (fixtures/torch/bigendian.pth is a correctly swapped file: TorchArchiveTests.)
    @Test func bigEndianRecordIsHonoured() throws {
        let big = try ModelFile.open(Self.directory + "/torch-byteorder-big.pth")
        let little = try ModelFile.open(fixturesDirectory + "/edge/tiny-ok.pth")
        #expect(big.tensors == little.tensors)
        for t in little.tensors {
            var swapped = try little.data(t.name)
            TorchArchive.swapBytes(&swapped, elementSize: t.dtype.blockBytes)
            #expect(try big.data(t.name) == swapped, "\(t.name)")
        }
    }

    /// Caps that keep a hostile file from making us allocate more than its own size.
    @Test func lengthsAreCappedBeforeAllocating() {
        #expect(TorchArchive.maxPickleBytes == 64 << 20)        // data.pkl
        #expect(SafetensorsReader.maxHeaderBytes == 100_000_000)
        #expect(Pickle.Limits().maxValues == 700_000)         // values, memo entries, container items
        // Each of these files claims a length far beyond its size; the error comes before allocation.
        for file in ["zip-record-size-lies.pth", "pickle-huge-string.pth", "tensor-huge-numel.pth", "st-header-huge.safetensors"] {
            let size = (try? InputFile(Self.directory + "/" + file).size) ?? -1
            #expect(size > 0 && size < 4096, "\(file)")
            #expect(throws: RWKVError.self, "\(file)") { _ = try ModelFile.open(Self.directory + "/" + file) }
        }
    }
}

/// fixtures/edge: unusual but valid files, with their values in edge/expected.json.
@Suite struct EdgeFilesTests {
    struct Expected: Decodable {
        struct File: Decodable { let file: String; let tensors: [Tensor] }
        struct Tensor: Decodable { let name: String; let dtype: String; let shape: [Int]; let values: [Double]? }
        let files: [File]
    }

    @Test func everyEdgeFileReadsWithItsValues() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixturesDirectory + "/edge/expected.json"))
        let expected = try JSONDecoder().decode(Expected.self, from: data)
        #expect(expected.files.count >= 9)
        for f in expected.files {
            let source = try ModelFile.open(fixturesDirectory + "/edge/" + f.file)
            #expect(source.tensors.map(\.name) == f.tensors.map(\.name), "\(f.file)")
            for t in f.tensors {
                let info = try #require(source.info(t.name), "\(f.file): \(t.name)")
                #expect(info.shape == t.shape && info.dtype.safetensorsName == t.dtype, "\(f.file): \(t.name)")
                let values = try source.floats(t.name)
                if let want = t.values {
                    // Exact: every expected value is representable in the stored dtype.
                    #expect(values.map(Double.init) == want, "\(f.file): \(t.name)")
                    #expect(values.map { $0.sign } == want.map { Float($0).sign }, "\(f.file): \(t.name) signs (-0.0)")
                }
            }
        }
    }
}
