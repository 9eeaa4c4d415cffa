import Foundation
import Testing
@testable import RWKVFormats

@Suite struct TorchWriterTests {
    /// ordered.pth and many.pth were written by torch.save (fixtures/torch/make_views.py).
    /// Writing the same tensors must give the same file byte for byte, except the
    /// .data/serialization_id record (torch derives it from C++ std::hash) and its CRC-32.
    @Test(arguments: ["ordered", "many"])
    func reproducesTorchSaveByteForByte(name: String) throws {
        let source = try TorchArchive(path: torchFixtures + "/\(name).pth")
        let dir = try TemporaryDirectory()
        let path = dir.path + "/\(name).pth"
        try TorchWriter.write(to: path, tensors: source.tensors) { try source.data($0.name) }
        var ours = try InputFile(path).prefix(Int.max)
        var theirs = try InputFile(torchFixtures + "/\(name).pth").prefix(Int.max)
        #expect(ours.count == theirs.count)
        try maskSerializationID(&ours, top: name)
        try maskSerializationID(&theirs, top: name)
        if ours != theirs {
            let firstDifference = zip(ours, theirs).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            Issue.record("files differ, first at byte \(firstDifference ?? min(ours.count, theirs.count))")
        }
    }

    @Test func roundTripsThroughTheReader() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/model.v2.pth"
        let tensors = [
            TensorInfo(name: "emb.weight", dtype: .bf16, shape: [3, 2]),
            TensorInfo(name: "blocks.0.att.r_k", dtype: .f32, shape: [2, 1, 2]),
            TensorInfo(name: "empty", dtype: .f16, shape: [0, 5]),
            TensorInfo(name: "n", dtype: .i64, shape: []),
        ]
        var payload: [String: [UInt8]] = [:]
        for (i, t) in tensors.enumerated() { payload[t.name] = (0..<t.byteCount).map { UInt8(truncatingIfNeeded: $0 * 7 + i) } }
        try TorchWriter.write(to: path, tensors: tensors) { payload[$0.name]! }
        let back = try TorchArchive(path: path)
        #expect(back.topFolder == "model.v2")           // torch drops only the last extension
        #expect(back.tensors == tensors)
        for t in tensors { #expect(try back.data(t.name) == payload[t.name], "\(t.name)") }
        // Every record's data starts on a multiple of 64 (what torch.load(mmap=True) relies on).
        let bytes = try InputFile(path).prefix(Int.max)
        for start in localHeaderOffsets(bytes) {
            let nameLength = Int(bytes[start + 26]) | Int(bytes[start + 27]) << 8
            let extraLength = Int(bytes[start + 28]) | Int(bytes[start + 29]) << 8
            #expect((start + 30 + nameLength + extraLength) % 64 == 0)
        }
    }

    @Test func refusesWhatTorchCannotStore() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/q.pth"
        #expect(throws: RWKVError(path, "tensor w: torch checkpoints cannot store q8_0")) {
            try TorchWriter.write(to: path, tensors: [TensorInfo(name: "w", dtype: .q8_0, shape: [32])]) { _ in [] }
        }
        #expect(throws: RWKVError(path, "tensor w: got 3 bytes, expected 4")) {
            try TorchWriter.write(to: path, tensors: [TensorInfo(name: "w", dtype: .f32, shape: [1])]) { _ in [1, 2, 3] }
        }
        #expect(!FileManager.default.fileExists(atPath: path))   // nothing left behind
    }

    @Test func crc32MatchesZlib() {
        // zlib.crc32 values.
        #expect(CRC32.checksum([]) == 0)
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        var c = CRC32()
        c.update(Array("12345".utf8))
        c.update(Array("6789".utf8))
        #expect(c.value == 0xCBF4_3926)
        #expect(CRC32.checksum((0..<1000).map { UInt8($0 % 251) }) == 0x7217_46A6)
    }
}

/// (name, local header offset, central header offset) of every record, read from the central
/// directory that the end record (the last 22 bytes: no comment, offsets below 4 GB) points to.
func zipEntries(_ bytes: [UInt8]) -> [(name: String, local: Int, central: Int)] {
    func u16(_ i: Int) -> Int { Int(bytes[i]) | Int(bytes[i + 1]) << 8 }
    func u32(_ i: Int) -> Int { u16(i) | u16(i + 2) << 16 }
    let end = bytes.count - 22
    var i = u32(end + 16)
    var out: [(String, Int, Int)] = []
    for _ in 0..<u16(end + 10) {
        let nameLength = u16(i + 28)
        out.append((String(decoding: bytes[i + 46..<i + 46 + nameLength], as: UTF8.self), u32(i + 42), i))
        i += 46 + nameLength + u16(i + 30) + u16(i + 32)
    }
    return out
}

func localHeaderOffsets(_ bytes: [UInt8]) -> [Int] { zipEntries(bytes).map(\.local) }

/// Zeroes the .data/serialization_id record's contents and its CRC-32 (data descriptor and
/// central directory), the only bytes torch.save makes differently from TorchWriter.
func maskSerializationID(_ bytes: inout [UInt8], top: String) throws {
    let entry = try #require(zipEntries(bytes).first { $0.name == "\(top)/.data/serialization_id" })
    let nameLength = Int(bytes[entry.local + 26]) | Int(bytes[entry.local + 27]) << 8
    let extraLength = Int(bytes[entry.local + 28]) | Int(bytes[entry.local + 29]) << 8
    let data = entry.local + 30 + nameLength + extraLength
    for k in data..<data + 40 { bytes[k] = 0 }                      // the 40-digit id
    for k in data + 44..<data + 48 { bytes[k] = 0 }                 // descriptor CRC-32
    for k in entry.central + 16..<entry.central + 20 { bytes[k] = 0 }   // central directory CRC-32
}
