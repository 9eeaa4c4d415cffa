import Foundation
import Testing
@testable import RWKVFormats

@Suite struct SafetensorsTests {
    @Test func writerOutputReadsBack() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/t.safetensors"
        let a = TensorInfo(name: "a", dtype: .f32, shape: [2, 3])
        let b = TensorInfo(name: "b.weight", dtype: .bf16, shape: [4])
        let values: [String: [UInt8]] = [
            "a": [Float](arrayLiteral: 1, -2, 3.5, 0, 1e-3, 7).withUnsafeBytes { Array($0) },
            "b.weight": [0x80, 0x3f, 0x00, 0x40, 0x40, 0x40, 0x80, 0xbf],
        ]
        try SafetensorsWriter.write(to: path, tensors: [a, b], metadata: ["format": "pt"]) { values[$0.name]! }
        let r = try SafetensorsReader(path: path)
        #expect(r.tensors == [a, b])
        #expect(r.metadata == ["format": "pt"])
        #expect(try r.floats("a") == [1, -2, 3.5, 0, 1e-3, 7])
        #expect(try r.floats("b.weight") == [1, 2, 3, -1])
        // The data section starts 8-byte aligned, as the reference writer does.
        let header = try InputFile(path).read(at: 0, count: 8)
        #expect(header.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } % 8 == 0)
    }

    @Test func duplicateKeysAreRefused() throws {
        let dir = try TemporaryDirectory()
        let header = #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#
        let path = try dir.write("dup.safetensors", safetensorsHeader: header, data: [1, 2])
        #expect(throws: RWKVError(path, "safetensors header is not valid JSON: duplicate key \"a\"")) {
            try SafetensorsReader(path: path)
        }
    }

    @Test func offsetsMustTileTheData() throws {
        let dir = try TemporaryDirectory()
        let gap = try dir.write("gap.safetensors", safetensorsHeader:
            #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}"#, data: [1, 2, 3])
        #expect(throws: RWKVError(gap, "gap in the data before tensor b (offset 2, expected 1)")) { try SafetensorsReader(path: gap) }
        let trailing = try dir.write("trail.safetensors", safetensorsHeader:
            #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, data: [1, 2])
        #expect(throws: RWKVError(trailing, "1 trailing bytes after the last tensor")) { try SafetensorsReader(path: trailing) }
        let overflow = try dir.write("overflow.safetensors", safetensorsHeader:
            #"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#, data: [1, 2, 3, 4])
        #expect(throws: RWKVError.self) { try SafetensorsReader(path: overflow) }
    }
}

@Suite struct StrictJSONTests {
    @Test func parsesNestedValues() throws {
        let v = try JSONValue.parse(Array(#" {"a": [1, -2.5, "x\u00e9\n", true, null], "b": {}} "#.utf8))
        #expect(v["a"] == .array([.integer(1), .number(-2.5), .string("xé\n"), .bool(true), .null]))
        #expect(v["b"] == .object([]))
    }

    @Test func refusesMalformedInput() {
        for bad in [#"{"a":1,}"#, #"{"a":1} x"#, #"{"a":"\ud800"}"#, "[1, 2", #"{"a":99999999999999999999}"#] {
            #expect(throws: JSONError.self, "\(bad)") { try JSONValue.parse(Array(bad.utf8)) }
        }
        #expect(throws: JSONError.self) { try JSONValue.parse([0x22, 0xff, 0x22]) }
    }
}
