import Foundation
import Testing
@testable import RWKVFormats

/// Builds GGUF bytes by hand, straight from the format description (independent of GGUFWriter),
/// so reader tests do not depend on the writer and malformed files are easy to make.
struct GGUFBytes {
    var bytes: [UInt8] = []
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func str(_ s: String) { u64(UInt64(s.utf8.count)); bytes += s.utf8 }
    mutating func header(version: UInt32 = 3, tensors: UInt64, kvs: UInt64) {
        bytes += Array("GGUF".utf8); u32(version); u64(tensors); u64(kvs)
    }
    mutating func kvU32(_ key: String, _ v: UInt32) { str(key); u32(4); u32(v) }
    mutating func tensor(_ name: String, ne: [UInt64], type: UInt32, offset: UInt64) {
        str(name); u32(UInt32(ne.count)); for d in ne { u64(d) }; u32(type); u64(offset)
    }
    mutating func pad(_ alignment: Int = 32) { while bytes.count % alignment != 0 { bytes.append(0) } }
    mutating func floats(_ values: [Float]) { for v in values { u32(v.bitPattern) } }
}

@Suite struct GGUFTests {
    /// A valid hand-made file: one KV, two f32 tensors; ggml dims are reported reversed (torch order).
    @Test func readsAHandMadeFile() throws {
        let dir = try TemporaryDirectory()
        var g = GGUFBytes()
        g.header(tensors: 2, kvs: 1)
        g.str("general.architecture"); g.u32(8); g.str("rwkv7")
        g.tensor("a", ne: [3, 2], type: 0, offset: 0)       // torch shape [2, 3]
        g.tensor("b", ne: [4], type: 0, offset: 32)          // 24 bytes of "a", padded to 32
        g.pad()
        g.floats([1, 2, 3, 4, 5, 6]); g.pad()
        g.floats([7, 8, 9, 10])
        let path = try dir.write("x.gguf", bytes: g.bytes)

        let r = try GGUFReader(path: path)
        #expect(r.version == 3)
        #expect(r.alignment == 32)
        #expect(r.value("general.architecture") == .string("rwkv7"))
        #expect(r.tensors == [TensorInfo(name: "a", dtype: .f32, shape: [2, 3]), TensorInfo(name: "b", dtype: .f32, shape: [4])])
        #expect(try r.floats("a") == [1, 2, 3, 4, 5, 6])
        #expect(try r.floats("b") == [7, 8, 9, 10])
        #expect(try ModelFile.open(path).formatName == "GGUF")
    }

    /// Writer then reader: every metadata type, several tensor types and shapes, data and alignment.
    @Test func writerReaderRoundTrip() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/rt.gguf"
        let metadata: [GGUFKeyValue] = [
            .init("general.architecture", .string("rwkv7")),
            .init("u8", .uint8(200)), .init("i8", .int8(-5)), .init("u16", .uint16(65000)), .init("i16", .int16(-30000)),
            .init("u32", .uint32(4_000_000_000)), .init("i32", .int32(-2_000_000_000)), .init("f32", .float32(1e-5)),
            .init("bool", .bool(true)), .init("str", .string("héllo\n")), .init("u64", .uint64(1 << 60)),
            .init("i64", .int64(-(1 << 60))), .init("f64", .float64(0.1)),
            .init("tokens", .array(.string, [.string("a"), .string("\\xff"), .string("")])),
            .init("types", .array(.int32, [.int32(1), .int32(3)])),
            .init("nested", .array(.array, [.array(.uint8, [.uint8(1)]), .array(.uint8, [])])),
            .init("packed.tokens", .strings(GGUFStringList(["<s>", "é", ""]))),
            .init("packed.types", .int32s([3, 1, -5])),
        ]
        let tensors = [
            TensorInfo(name: "t.f32", dtype: .f32, shape: [3, 5]),
            TensorInfo(name: "t.f16", dtype: .f16, shape: [7]),
            TensorInfo(name: "t.bf16", dtype: .bf16, shape: [2, 1, 1, 3]),
        ]
        let data: [[UInt8]] = tensors.map { t in (0..<t.byteCount).map { UInt8(truncatingIfNeeded: $0 * 31 + t.name.count) } }
        let w = try GGUFWriter(path: path, metadata: metadata, tensors: tensors)
        #expect(w.nextTensor == tensors[0])
        for d in data { try w.writeTensor(d) }
        try w.finish()

        let r = try GGUFReader(path: path)
        #expect(r.metadata == metadata + [GGUFKeyValue("general.alignment", .uint32(32))])
        // The packed arrays read back as the plain arrays they stand for.
        #expect(r.value("packed.tokens") == .array(.string, [.string("<s>"), .string("é"), .string("")]))
        #expect(r.value("packed.types") == .array(.int32, [.int32(3), .int32(1), .int32(-5)]))
        #expect(r.tensors == tensors)
        for (t, d) in zip(tensors, data) { #expect(try r.data(t.name) == d) }
        #expect(r.dataStart % 32 == 0)
        #expect(r.tensorInfos.map(\.offset) == [0, 64, 96])   // 60 bytes -> 64, 14 -> 32
        #expect(r.tensorInfos[2].dimensions == [3, 1, 1, 2])
    }

    /// The reader keeps arrays of numbers and strings packed (an item costs its bytes in the
    /// file, not a `GGUFValue`), equal to the plain arrays, item for item.
    @Test func readerKeepsArraysPacked() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/packed.gguf"
        let floats: [Float] = [1.5, -0, .infinity, 3e-9]
        let w = try GGUFWriter(path: path, metadata: [
            .init("general.architecture", .string("rwkv7")),
            .init("f", .array(.float32, floats.map(GGUFValue.float32))),
            .init("b", .array(.bool, [.bool(true), .bool(false)])),
            .init("i", .array(.int64, [.int64(-1), .int64(1 << 62)])),
            .init("s", .array(.string, [.string("a"), .string("")])),
        ], tensors: [TensorInfo(name: "t", dtype: .f32, shape: [1])])
        try w.writeTensor([0, 0, 128, 63])
        try w.finish()
        let r = try GGUFReader(path: path)
        guard case .numbers(.float32, let bytes)? = r.value("f") else { Issue.record("f is not packed"); return }
        #expect(bytes.count == 16)
        #expect(r.value("f") == .array(.float32, floats.map(GGUFValue.float32)))
        #expect(r.value("f")?.item(2) == .float32(.infinity) && r.value("f")?.count == 4)
        #expect(r.value("b") == .array(.bool, [.bool(true), .bool(false)]))
        #expect(r.value("i")?.items == [.int64(-1), .int64(1 << 62)])
        guard case .strings? = r.value("s") else { Issue.record("s is not packed"); return }
        #expect(r.value("s") == .array(.string, [.string("a"), .string("")]))
        #expect(r.value("f") != .array(.float64, floats.map { .float64(Double($0)) }))
    }

    /// More tensors than any RWKV model holds are refused from the count, before any is read.
    @Test func tensorCountIsCapped() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/many.gguf"
        var header: [UInt8] = Array("GGUF".utf8)
        for v in [UInt32(3)] { withUnsafeBytes(of: v.littleEndian) { header += $0 } }
        for v in [UInt64(GGUFReader.maxTensors + 1), 0] { withUnsafeBytes(of: v.littleEndian) { header += $0 } }
        header += [UInt8](repeating: 0, count: 40 * (GGUFReader.maxTensors + 1))
        try Data(header).write(to: URL(fileURLWithPath: path))
        #expect(throws: RWKVError(path, "GGUF header lists 32769 tensors; this tool reads at most 32768")) { try GGUFReader(path: path) }
    }

    /// A packed array is written byte for byte as the array of `GGUFValue`s it stands for.
    @Test func packedArraysEncodeAsPlainArrays() throws {
        let dir = try TemporaryDirectory()
        let strings = ["<s>", #"\n\n"#, "日本", "", String(repeating: "x", count: 300)]
        let types: [Int32] = [3, 1, 1, 5, Int32.min]
        func file(_ name: String, _ tokens: GGUFValue, _ tokenTypes: GGUFValue) throws -> [UInt8] {
            let path = dir.path + "/" + name
            let w = try GGUFWriter(path: path, metadata: [.init("general.architecture", .string("rwkv7")),
                                                          .init("tokens", tokens), .init("types", tokenTypes)],
                                   tensors: [TensorInfo(name: "t", dtype: .f32, shape: [1])])
            try w.writeTensor([0, 0, 128, 63])
            try w.finish()
            return try InputFile(path).read(at: 0, count: InputFile(path).size)
        }
        let plain = try file("plain.gguf", .array(.string, strings.map(GGUFValue.string)), .array(.int32, types.map(GGUFValue.int32)))
        let packed = try file("packed.gguf", .strings(GGUFStringList(strings)), .int32s(types))
        #expect(packed == plain)
    }

    @Test func stringListBasics() {
        var list = GGUFStringList(["ab", "", "é"])
        #expect(list.count == 3 && Array(list) == ["ab", "", "é"] && list[2] == "é")
        var expected = GGUFBytes()
        for s in ["ab", "", "é"] { expected.str(s) }
        #expect(list.encoded == expected.bytes)
        // Written in place, shorter than the room given.
        list.append(maxCount: 10) { out in out[0] = 0x78; out[1] = 0x79; return 2 }
        #expect(list.last == "xy")
        // Bytes that are not UTF-8 are repaired as String(decoding:as:) repairs them.
        [0x61, 0xff, 0xc3].withUnsafeBufferPointer { list.append(utf8: $0) }
        #expect(list.last == "a\u{FFFD}\u{FFFD}" && list.last == String(decoding: [0x61, 0xff, 0xc3], as: UTF8.self))
        #expect(list.count == 5)

        // Packed and plain arrays of the same items are equal, and summarised alike.
        let plain = GGUFValue.array(.string, list.map(GGUFValue.string))
        #expect(GGUFValue.strings(list) == plain && plain == .strings(list))
        #expect(GGUFValue.strings(list) != .array(.string, [.string("ab")]))
        #expect(GGUFValue.strings(list).summary(maxArrayItems: 2) == plain.summary(maxArrayItems: 2))
        #expect(GGUFValue.strings(list).type == .array)
        #expect(GGUFValue.int32s([1, 3]) == .array(.int32, [.int32(1), .int32(3)]))
        #expect(GGUFValue.int32s([1, 3]) != .array(.uint32, [.uint32(1), .uint32(3)]))
        #expect(GGUFValue.int32s([1, 3]) != .strings(GGUFStringList(["1", "3"])))
        #expect(GGUFValue.int32s(Array(0..<20)).summary() == GGUFValue.array(.int32, (0..<20).map(GGUFValue.int32)).summary())
    }

    /// A string value reserved in the header and filled in after the tensors were written.
    @Test func patchedStringValue() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/p.gguf"
        let w = try GGUFWriter(path: path, metadata: [.init("a", .string("0000")), .init("b", .uint8(1))],
                               tensors: [TensorInfo(name: "t", dtype: .f32, shape: [1])])
        try w.writeTensor([0, 0, 128, 63])
        #expect(throws: RWKVError(path, "metadata a: patch is 3 bytes, the reserved value 4")) { try w.patchString("a", "abc") }
        #expect(throws: RWKVError(path, "no string metadata b to patch")) { try w.patchString("b", "x") }
        try w.patchString("a", "d1ce")
        try w.finish()
        let r = try GGUFReader(path: path)
        #expect(r.value("a") == .string("d1ce") && r.value("b") == .uint8(1))
        #expect(try r.floats("t") == [1])
    }

    /// A tensor appended in parts (as the converter streams large ones) gives the same file as
    /// whole tensors, padding included; a part that overruns its tensor is refused.
    @Test func tensorsAppendedInPartsMatchWholeTensors() throws {
        let dir = try TemporaryDirectory()
        let infos = [TensorInfo(name: "a", dtype: .f32, shape: [3]), TensorInfo(name: "b", dtype: .f16, shape: [2, 5])]
        let a = (0..<12).map { UInt8($0) }, b = (0..<20).map { UInt8(100 + $0) }
        let whole = try GGUFWriter(path: dir.path + "/whole.gguf", metadata: [], tensors: infos)
        try whole.writeTensor(a)
        try whole.writeTensor(b)
        try whole.finish()
        let parts = try GGUFWriter(path: dir.path + "/parts.gguf", metadata: [], tensors: infos, durable: false)
        for part in [a[0..<5], a[5...], b[0..<7], b[7..<14], b[14...]] {
            try Array(part).withUnsafeBytes { try parts.append($0) }
        }
        try parts.finish()
        #expect(FileManager.default.contents(atPath: dir.path + "/parts.gguf") == FileManager.default.contents(atPath: dir.path + "/whole.gguf"))

        let over = try GGUFWriter(path: dir.path + "/over.gguf", metadata: [], tensors: infos)
        try Array(a[0..<8]).withUnsafeBytes { try over.append($0) }
        #expect(throws: RWKVError(dir.path + "/over.gguf", "tensor a: 16 bytes, more than the planned 12")) {
            try Array(a[0..<8]).withUnsafeBytes { try over.append($0) }
        }
        #expect(throws: RWKVError(dir.path + "/over.gguf", "tensor a: 8 of its bytes were already appended")) { try over.writeTensor(a) }
        #expect(throws: RWKVError(dir.path + "/over.gguf", "only 0 of 2 tensors were written (and 8 bytes of the next)")) { try over.finish() }
    }

    @Test func writerChecksWhatItIsGiven() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/w.gguf"
        let t = TensorInfo(name: "q", dtype: .q8_0, shape: [2, 48])
        #expect(throws: RWKVError(path, "tensor q: shape [2, 48] does not fit q8_0 blocks of 32")) {
            _ = try GGUFWriter(path: path, metadata: [], tensors: [t])
        }
        let long = TensorInfo(name: String(repeating: "n", count: 64), dtype: .f32, shape: [1])
        #expect(throws: RWKVError(path, "tensor name \(long.name) is longer than ggml's limit of 63 bytes")) {
            _ = try GGUFWriter(path: path, metadata: [], tensors: [long])
        }
        // Wrong size, unfinished: nothing under the final name, no temporary left behind.
        let w = try GGUFWriter(path: path, metadata: [], tensors: [TensorInfo(name: "a", dtype: .f32, shape: [2])])
        #expect(throws: RWKVError(path, "tensor a: got 4 bytes, planned 8")) { try w.writeTensor([0, 0, 0, 0]) }
        #expect(throws: RWKVError(path, "only 0 of 1 tensors were written")) { try w.finish() }
        w.abandon()
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    // MARK: malformed files: each a one-line error naming the file

    private func expectError(_ build: (inout GGUFBytes) -> Void, _ message: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let dir = try TemporaryDirectory()
        var g = GGUFBytes()
        build(&g)
        let path = try dir.write("bad.gguf", bytes: g.bytes)
        #expect(throws: RWKVError(path, ErrorMessage(message)), sourceLocation: sourceLocation) { _ = try GGUFReader(path: path) }
    }

    @Test func rejectsMalformedHeaders() throws {
        try expectError({ $0.bytes = Array("GGUF".utf8) + [UInt8](repeating: 0, count: 4) }, "too small (8 bytes) to be a GGUF file")
        try expectError({ $0.header(version: 1, tensors: 0, kvs: 0) }, "unsupported GGUF version 1 (this tool reads versions 2 and 3)")
        try expectError({ $0.header(version: 0x0300_0000, tensors: 0, kvs: 0) },
                        "GGUF version 50331648 looks byte-swapped: big-endian GGUF files are not supported")
        try expectError({ $0.header(tensors: 1 << 40, kvs: 0) }, "tensor count 1099511627776 is more than the file (24 bytes) can hold")
        try expectError({ $0.header(tensors: 0, kvs: UInt64.max) }, "metadata count 18446744073709551615 is more than the file (24 bytes) can hold")
        try expectError({ g in
            g.header(tensors: 0, kvs: 1); g.u64(1 << 62); g.bytes += [UInt8](repeating: 0, count: 16)
        }, "metadata key 0: string length 4611686018427387904 exceeds the 16 MiB limit")
        try expectError({ g in
            g.header(tensors: 0, kvs: 1); g.u64(100); g.bytes += [UInt8](repeating: 0x61, count: 20)
        }, "metadata key 0 at offset 32 (100 bytes) runs past the end of the file (52 bytes)")
        try expectError({ g in g.header(tensors: 0, kvs: 2); g.kvU32("k", 1); g.kvU32("k", 2) }, "duplicate metadata key \"k\"")
        try expectError({ g in g.header(tensors: 0, kvs: 1); g.str("k"); g.u32(13); g.u32(0) }, "metadata \"k\" has unknown value type 13")
        try expectError({ g in g.header(tensors: 0, kvs: 1); g.str("k"); g.u32(7); g.bytes.append(2) }, "metadata \"k\": bool value 2 is neither 0 nor 1")
        try expectError({ g in
            g.header(tensors: 0, kvs: 1); g.str("k"); g.u32(9); g.u32(4); g.u64(1 << 50); g.u32(0)
        }, "metadata \"k\" array count 1125899906842624 is more than the file (53 bytes) can hold")
        try expectError({ g in
            g.header(tensors: 0, kvs: 1); g.str("k"); g.u32(8); g.u64(2); g.bytes += [0xff, 0xfe]
        }, "metadata \"k\" is not valid UTF-8")
        // Each array alone is allowed, together they pass the whole-header cap that bounds the
        // parsed metadata's memory (a u8 item on disk is ~30x that as a parsed value).
        let half = UInt64(GGUFReader.maxMetadataArrayItems / 2 + 1)
        try expectError({ g in
            g.header(tensors: 0, kvs: 2)
            for key in ["a", "b"] { g.str(key); g.u32(9); g.u32(0); g.u64(half); g.bytes += [UInt8](repeating: 1, count: Int(half)) }
        }, "metadata \"b\": metadata arrays hold more than \(GGUFReader.maxMetadataArrayItems) values in all")
        try expectError({ g in g.header(tensors: 0, kvs: 1); g.kvU32("general.alignment", 48) }, "general.alignment 48 is not a power of two")
        try expectError({ g in g.header(tensors: 0, kvs: 1); g.str("general.alignment"); g.u32(10); g.u64(32) },
                        "general.alignment must be a uint32, found uint64")
    }

    @Test func rejectsMalformedTensorInfos() throws {
        func one(_ ne: [UInt64], type: UInt32 = 0, offset: UInt64 = 0, dataBytes: Int = 64) -> (inout GGUFBytes) -> Void {
            { g in
                g.header(tensors: 1, kvs: 0); g.tensor("t", ne: ne, type: type, offset: offset); g.pad()
                g.bytes += [UInt8](repeating: 0, count: dataBytes)
            }
        }
        try expectError(one([1, 1, 1, 1, 1]), "tensor t has 5 dimensions (ggml allows at most 4)")
        try expectError(one([1 << 62, 1 << 62]), "tensor t: dimensions overflow")
        try expectError(one([UInt64.max]), "tensor t: dimensions overflow")
        try expectError(one([32], type: 16), "tensor t has ggml type 16 (IQ2_XXS), which this tool does not read")
        try expectError(one([32], type: 12), "tensor t: row length 32 is not a multiple of the q4_K block size 256")
        try expectError(one([32], type: 99), "tensor t has ggml type 99, which this tool does not read")
        try expectError(one([48, 2], type: 8), "tensor t: row length 48 is not a multiple of the q8_0 block size 32")
        try expectError(one([4], offset: 8), "tensor t: offset 8 is not a multiple of the alignment 32")
        try expectError(one([17]), "tensor t (offset 0, 68 bytes) runs past the end of the file: truncated?")
        try expectError(one([4], offset: 1 << 62), "tensor t (offset 4611686018427387904, 16 bytes) runs past the end of the file: truncated?")
        try expectError({ g in
            g.header(tensors: 2, kvs: 0)
            g.tensor("a", ne: [16], type: 0, offset: 0); g.tensor("b", ne: [4], type: 0, offset: 32); g.pad()
            g.bytes += [UInt8](repeating: 0, count: 96)
        }, "tensor b (offset 32) overlaps tensor a")
        try expectError({ g in
            g.header(tensors: 2, kvs: 0)
            g.tensor("a", ne: [4], type: 0, offset: 0); g.tensor("a", ne: [4], type: 0, offset: 32); g.pad()
        }, "duplicate tensor name a")
        try expectError({ g in
            g.header(tensors: 1, kvs: 0); g.tensor(String(repeating: "x", count: 64), ne: [1], type: 0, offset: 0); g.pad()
        }, "tensor name \"\(String(repeating: "x", count: 64))\" is 64 bytes (ggml allows at most 63)")
    }

    /// Version 2 files have the same layout as version 3 and are read the same way.
    @Test func readsVersion2() throws {
        let dir = try TemporaryDirectory()
        var g = GGUFBytes()
        g.header(version: 2, tensors: 1, kvs: 0)
        g.tensor("x", ne: [2], type: 0, offset: 0); g.pad(); g.floats([1.5, -2])
        let r = try GGUFReader(path: try dir.write("v2.gguf", bytes: g.bytes))
        #expect(r.version == 2)
        #expect(try r.floats("x") == [1.5, -2])
    }
}
