import Foundation
import Testing
@testable import RWKVFormats

let torchFixtures = fixturesDirectory + "/torch"

@Suite struct TorchArchiveTests {
    /// views.pth holds transposed, sliced, shared, expanded and permuted views; views.safetensors
    /// holds the same tensors made contiguous by torch. Every byte must agree.
    @Test func viewsAreMaterialisedLikeTorch() throws {
        let pth = try ModelFile.open(torchFixtures + "/views.pth")
        let expected = try SafetensorsReader(path: torchFixtures + "/views.safetensors")
        #expect(pth.formatName == "torch zip (.pth)")
        #expect(Set(pth.tensors.map(\.name)) == Set(expected.tensors.map(\.name)))
        for info in expected.tensors {
            #expect(pth.info(info.name) == info, "\(info.name)")
            #expect(try pth.data(info.name) == expected.data(info.name), "\(info.name)")
        }
        let archive = try #require(pth as? TorchArchive)
        #expect(archive.nonTensorEntries == ["epoch (int)", "note (str)"])
        #expect(archive.topFolder == "views")
        #expect(!archive.isBigEndian)
    }

    @Test func viewGeometryIsReadFromThePickle() throws {
        let archive = try TorchArchive(path: torchFixtures + "/views.pth")
        #expect(archive.tensors.first { $0.name == "shared_b" } == TensorInfo(name: "shared_b", dtype: .bf16, shape: [4, 3]))
        #expect(archive.tensors.first { $0.name == "scalar" } == TensorInfo(name: "scalar", dtype: .f64, shape: []))
        #expect(try archive.floats("slice_offset") == (5..<15).map(Float.init))
        #expect(try archive.floats("expanded") == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
        #expect(try archive.floats("empty") == [])
        #expect(try archive.floats("scalar") == [3.25])
    }

    @Test func bigEndianStoragesAreSwapped() throws {
        let big = try TorchArchive(path: torchFixtures + "/bigendian.pth")
        let little = try TorchArchive(path: torchFixtures + "/views.pth")
        #expect(big.isBigEndian)
        #expect(big.tensors == little.tensors)
        for t in little.tensors { #expect(try big.data(t.name) == little.data(t.name), "\(t.name)") }
    }

    /// Streaming a tensor in pieces hands out `data`'s bytes in order, in pieces of the size asked
    /// (the last shorter), for every source and for piece sizes that do and do not divide the
    /// tensor (1 MiB: every tensor in one piece), with one buffer for all: contiguous records
    /// straight from the zip, views and big-endian storages through `data`, safetensors by pread.
    @Test(arguments: [1, 6, 64, 1 << 20])
    func readsInPiecesMatchData(pieceBytes: Int) throws {
        let buffer = ReusableBuffer()
        for source in try Self.bufferedReadSources() {
            for t in source.tensors where pieceBytes > 1 || t.byteCount < 4096 {   // byte-sized pieces: small tensors only
                var pieces: [[UInt8]] = []
                try source.read(t.name, inPiecesOf: pieceBytes, using: buffer) { pieces.append(Array($0)) }
                #expect(pieces.joined().elementsEqual(try source.data(t.name)), "\(source.path): \(t.name)")
                #expect(pieces.dropLast().allSatisfy { $0.count == pieceBytes } && pieces.allSatisfy { !$0.isEmpty },
                        "\(source.path): \(t.name): pieces of \(pieces.map(\.count))")
            }
        }
    }

    /// Views, a big-endian file, official .pth files (one bf16, one fp16) and a safetensors file.
    static func bufferedReadSources() throws -> [TensorSource] {
        [try TorchArchive(path: torchFixtures + "/views.pth"), try TorchArchive(path: torchFixtures + "/bigendian.pth"),
         try ModelFile.open(fixturesDirectory + "/models/rwkv7-tiny-bf16.pth"),
         try ModelFile.open(fixturesDirectory + "/models/rwkv6-tiny-fp16.pth"),
         try ModelFile.open(fixturesDirectory + "/models/rwkv7-tiny.safetensors")]
    }

    @Test func nestedTrainingCheckpointsAreUnwrapped() throws {
        let archive = try TorchArchive(path: torchFixtures + "/nested.pth")
        #expect(archive.tensors.map(\.name) == ["a", "b"])
        #expect(archive.nonTensorEntries == ["epoch (int)"])
        #expect(try archive.floats("b") == [1, 1, 1])
    }

    /// Every fixture model's .pth against manifest.json (SHA-256 of each tensor's float32 values,
    /// computed by torch) and against the .safetensors copy (bf16): same names and shapes, the
    /// bf16 .pth holds exactly the safetensors bytes, the fp32 one rounds to them.
    @Test(arguments: ["rwkv7-tiny", "rwkv6-tiny"])
    func fixtureModelsMatchTheManifest(model: String) throws {
        let manifest = try FixtureManifest.load()
        let safetensors = try SafetensorsReader(path: fixturesDirectory + "/models/\(model).safetensors")
        for precision in ["fp32", "bf16", "fp16"] {
            let file = "models/\(model)-\(precision).pth"
            let pth = try ModelFile.open(fixturesDirectory + "/" + file)
            let hashes = try #require(manifest.tensorHashes[file], "manifest has no entry for \(file)")
            #expect(pth.tensors.map(\.name).sorted() == hashes.keys.sorted(), "\(file)")
            #expect(pth.tensors.map(\.name).sorted() == safetensors.tensors.map(\.name).sorted(), "\(file)")
            let actual = try TestSHA256.hex(floats: pth.tensors.map { try pth.floats($0.name) })
            for (t, hash) in zip(pth.tensors, actual) {
                #expect(hash == hashes[t.name], "\(file): \(t.name)")
                #expect(t.shape == safetensors.info(t.name)?.shape, "\(file): \(t.name)")
                let bf16 = try safetensors.floats(t.name)
                switch precision {
                case "bf16":
                    #expect(try pth.data(t.name) == safetensors.data(t.name), "\(file): \(t.name)")
                case "fp32":
                    // The bf16 copy is the fp32 one rounded to nearest-even, element for element.
                    var overflow = 0
                    let rounded = try ElementCodec.encode(try pth.floats(t.name), as: .bf16, overflowCount: &overflow)
                    #expect(rounded == (try safetensors.data(t.name)), "\(file): \(t.name)")
                default:
                    // fp16 and bf16 round the same fp32 value x: they differ by at most half a bf16
                    // step plus half an fp16 step, (2^-8 + 2^-11)|x| < 0.0045|x|, or 2^-25 where
                    // fp16 is subnormal.
                    let outside = zip(try pth.floats(t.name), bf16).filter { a, b in abs(a - b) > 0.0045 * max(abs(a), abs(b)) + 0x1p-25 }
                    #expect(outside.isEmpty, "\(file): \(t.name): \(outside.prefix(3))")
                }
            }
        }
    }
}

/// fixtures/manifest.json: per model file, the SHA-256 of each tensor's float32 values.
struct FixtureManifest {
    /// file (relative to fixtures/) -> tensor name -> sha256 hex
    let tensorHashes: [String: [String: String]]

    static func load() throws -> FixtureManifest {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixturesDirectory + "/manifest.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let models = try #require(json["models"] as? [[String: Any]])
        var out: [String: [String: String]] = [:]
        for m in models {
            guard let file = m["file"] as? String, let tensors = m["tensors"] else { continue }
            var hashes: [String: String] = [:]
            if let list = tensors as? [[String: Any]] {
                for t in list { if let n = t["name"] as? String, let h = t["sha256_f32"] as? String { hashes[n] = h } }
            } else if let dict = tensors as? [String: [String: Any]] {
                for (n, t) in dict { if let h = t["sha256_f32"] as? String { hashes[n] = h } }
            }
            out[file] = hashes
        }
        return FixtureManifest(tensorHashes: out)
    }
}

/// Malformed and hostile torch archives, built in the test: each gives its own one-line error.
@Suite struct TorchArchiveErrorTests {
    let dir: TemporaryDirectory
    init() throws { dir = try TemporaryDirectory() }

    /// A zip laid out like torch's, with the given records, at dir/<name>.
    func zip(_ name: String, _ records: [(String, [UInt8])]) throws -> String {
        let path = dir.path + "/" + name
        let out = try AtomicOutputFile(path)
        var writer = StoredZipWriter(out: out)
        for (n, bytes) in records { try writer.add(n, bytes) }
        try writer.finish()
        try out.commit()
        return path
    }

    /// A valid checkpoint {"w": f32 [2, 3]} named m.pth, as records to edit.
    var records: [(String, [UInt8])] {
        let t = TensorInfo(name: "w", dtype: .f32, shape: [2, 3])
        return [("m/data.pkl", TorchPickler.stateDict([t])), ("m/byteorder", Array("little".utf8)),
                ("m/data/0", [UInt8](repeating: 0x3f, count: 24)), ("m/version", Array("3\n".utf8))]
    }

    func expectError(_ path: String, _ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(throws: RWKVError(path, ErrorMessage(message)), sourceLocation: sourceLocation) { _ = try ModelFile.open(path) }
    }

    /// Overwrites bytes of a written file.
    func patch(_ path: String, _ edit: (inout [UInt8]) throws -> Void) throws {
        var bytes = try InputFile(path).prefix(Int.max)
        try edit(&bytes)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    @Test func theValidBaseOpens() throws {
        let source = try ModelFile.open(try zip("m.pth", records))
        #expect(try source.floats("w") == [Float](repeating: Float(bitPattern: 0x3f3f_3f3f), count: 6))
    }

    @Test func refusesCompressedAndEncryptedRecords() throws {
        let deflated = try zip("deflated.pth", records)
        try patch(deflated) { b in
            let e = try #require(zipEntries(b).first { $0.name == "m/data/0" })
            b[e.local + 8] = 8; b[e.central + 10] = 8                   // method: deflate
        }
        expectError(deflated, "record m/data/0 is compressed (method 8); torch.save stores records uncompressed, so it is refused as a possible zip bomb")
        let encrypted = try zip("encrypted.pth", records)
        try patch(encrypted) { b in
            let e = try #require(zipEntries(b).first { $0.name == "m/data.pkl" })
            b[e.local + 6] |= 1; b[e.central + 8] |= 1                   // general purpose flag bit 0
        }
        expectError(encrypted, "record m/data.pkl is encrypted")
    }

    @Test func refusesArchivesThatAreNotCheckpoints() throws {
        let script = try zip("script.pt", [("s/data.pkl", [0x80, 2, 0x4e, 0x2e]), ("s/code/__torch__/m.py", Array("def f(): pass".utf8)),
                                           ("s/constants.pkl", [0x80, 2, 0x29, 0x2e])])
        expectError(script, "TorchScript archive (torch.jit.save: code/ and constants.pkl), not a torch.save checkpoint; load it in Python and save model.state_dict() with torch.save")
        expectError(try zip("other.zip", [("docs/readme.txt", Array("hi".utf8))]), "zip archive without docs/data.pkl: not a torch checkpoint")
        expectError(try zip("flat.zip", [("data.pkl", [0x80, 2, 0x4e, 0x2e])]), "zip record data.pkl is not inside a folder: not a torch checkpoint")
        expectError(try zip("two.zip", records + [("n/data/1", [1])]), "zip record n/data/1 is outside the archive folder m/: not a torch checkpoint")
        let notZip = try dir.write("junk.pth", bytes: [0x50, 0x4b, 0x03, 0x04] + [UInt8](repeating: 7, count: 100))
        expectError(notZip, "damaged or truncated zip archive (libzip: Not a zip archive)")
        let legacy = try dir.write("legacy.pth", bytes: [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e])
        expectError(legacy, "legacy (pre-zip) torch file: re-save it with torch >= 1.6 (torch.save with the default zip format)")
    }

    @Test func checksCRC32OnEveryRead() throws {
        let data = try zip("crc-data.pth", records)
        try patch(data) { b in
            let e = try #require(zipEntries(b).first { $0.name == "m/data/0" })
            let start = e.local + 30 + Int(b[e.local + 26]) + Int(b[e.local + 28])   // name and extra lengths (< 256)
            b[start + 5] ^= 1
        }
        let source = try ModelFile.open(data)                       // the pickle is intact: opening works
        #expect(throws: RWKVError(data, "record m/data/0 is corrupt: CRC-32 mismatch")) { _ = try source.data("w") }
        // Streamed: every piece is handed out, then the check at the end of the record throws.
        var seen = 0
        #expect(throws: RWKVError(data, "record m/data/0 is corrupt: CRC-32 mismatch")) {
            try source.read("w", inPiecesOf: 8, using: ReusableBuffer()) { seen += $0.count }
        }
        #expect(seen == 24)
        let pickle = try zip("crc-pickle.pth", records)
        try patch(pickle) { b in b[64 + 3] ^= 0x20 }                 // 'c' of GLOBAL 'collections' -> 'C'
        expectError(pickle, "record m/data.pkl is corrupt: CRC-32 mismatch")
    }

    /// A record is read whole (and its CRC-32 checked) the first time any part of it is wanted;
    /// after that only the part asked for is read. A record that failed its check is read whole
    /// (and fails) again. Records of 0, 1 and 2 bytes, whose windows are edge cases, read too.
    @Test func checkedRecordsAreReadOnce() throws {
        let data = (0..<100).map { UInt8($0) }
        let path = try zip("once.pth", [("m/data/0", data), ("m/data/1", []), ("m/data/2", [7]), ("m/data/3", [8, 9])])
        let archive = try ZipArchive(path: path)
        let record = try #require(archive.records.first { $0.name == "m/data/0" })
        #expect(try archive.read(record, range: 10..<20) == Array(data[10..<20]))
        #expect(archive.bytesRead == 100)
        #expect(try archive.read(record, range: 90..<100) == Array(data[90..<100]))
        #expect(try archive.read(record, range: 0..<5) == Array(data[0..<5]))
        #expect(archive.bytesRead == 115)
        for (name, bytes) in [("m/data/1", [UInt8]()), ("m/data/2", [7]), ("m/data/3", [8, 9])] {
            let r = try #require(archive.records.first { $0.name == name })
            #expect(try archive.read(r, range: 0..<bytes.count) == bytes, "\(name)")
            #expect(try archive.read(r, range: bytes.count / 2..<bytes.count) == Array(bytes[(bytes.count / 2)...]), "\(name)")
        }

        let corrupt = try zip("corrupt-once.pth", [("m/data/0", data)])
        try patch(corrupt) { b in
            let e = try #require(zipEntries(b).first { $0.name == "m/data/0" })
            b[e.local + 30 + 8 + 99] ^= 1   // the record's last byte (name "m/data/0", no extra field)
        }
        let bad = try ZipArchive(path: corrupt)
        let r = try #require(bad.records.first)
        for _ in 0..<2 {
            #expect(throws: RWKVError(corrupt, "record m/data/0 is corrupt: CRC-32 mismatch")) { _ = try bad.read(r, range: 0..<4) }
        }
        #expect(bad.bytesRead == 200)
    }

    @Test func checksStoragesAgainstTheirRecords() throws {
        var r = records
        r[2].1.removeLast(4)
        expectError(try zip("short.pth", r), "tensor w: record m/data/0 holds 20 bytes but its storage is 6 f32 values (24 bytes)")
        expectError(try zip("missing.pth", records.filter { $0.0 != "m/data/0" }), "tensor w: its storage record m/data/0 is missing")
        let huge = try zip("huge.pth", records)
        try patch(huge) { b in
            let e = try #require(zipEntries(b).first { $0.name == "m/data/0" })
            for k in 20..<28 { b[e.central + k] = 0x7f }           // compressed and uncompressed size: 2 GB
        }
        // The cap that keeps every allocation below the file's size.
        expectError(huge, "record m/data/0 claims 2139062143 bytes in a \(try InputFile(huge).size)-byte file")
    }

    /// {"w": view of storage "0" (numel 6): offset, size, stride} plus, if given, {"v": f16 view of "0"}.
    func viewPickle(offset: UInt8, size: [UInt8], stride: [UInt8], secondDType: String? = nil) -> [UInt8] {
        func tensor(_ name: String, _ storage: String) -> [UInt8] {
            var b = P.string(name) + P.global("torch._utils", "_rebuild_tensor_v2") + P.mark
            b += P.mark + P.string("storage") + P.global("torch", storage) + P.string("0") + P.string("cpu") + P.int(6) + P.tuple + [0x51]
            b += P.int(offset) + P.mark + size.flatMap(P.int) + P.tuple + P.mark + stride.flatMap(P.int) + P.tuple
            b += [0x89] + P.global("collections", "OrderedDict") + P.emptyTuple + P.reduce + P.tuple + P.reduce
            return b
        }
        var b = P.proto2 + P.emptyDict + P.mark + tensor("w", "FloatStorage")
        if let secondDType { b += tensor("v", secondDType) }
        return b + P.setItems + P.stop
    }

    @Test func checksViewsAgainstTheirStorage() throws {
        var r = records
        r[0].1 = viewPickle(offset: 1, size: [2, 3], stride: [3, 1])
        expectError(try zip("past.pth", r), "tensor w: view (offset 1, shape [2, 3], strides [3, 1]) runs past its storage of 6 elements")
        r[0].1 = viewPickle(offset: 0, size: [3, 2], stride: [1, 3])
        let transposed = try ModelFile.open(try zip("t.pth", r))
        #expect(transposed.tensors == [TensorInfo(name: "w", dtype: .f32, shape: [3, 2])])
        r[0].1 = viewPickle(offset: 0, size: [2], stride: [1], secondDType: "HalfStorage")
        expectError(try zip("mixed.pth", r), "tensor v: storage 0 is used as both f32 and f16")
    }

    @Test func checksTheRestOfTheArchive() throws {
        var r = records
        r[1].1 = Array("middle".utf8)
        expectError(try zip("order.pth", r), "byteorder record says \"middle\" (expected \"little\" or \"big\")")
        r = records
        r[0].1 = P.proto2 + P.emptyList + P.stop
        expectError(try zip("list.pth", r), "data.pkl holds a list, not a dict of tensors")
        r[0].1 = P.proto2 + P.emptyDict + P.string("epoch") + P.int(3) + [0x73] + P.stop
        expectError(try zip("none.pth", r), "data.pkl holds no tensors (keys: epoch)")
        r[0].1 = P.proto2 + P.global("os", "system") + P.stop
        expectError(try zip("evil.pth", r), "m/data.pkl: refusing os.system: not on the allow-list of tensor-building globals (a pickle global can run code) (pickle byte 2)")
        r[0].1 = TorchPickler.stateDict([TensorInfo(name: "w", dtype: .f32, shape: [2, 3]), TensorInfo(name: "w", dtype: .f32, shape: [2, 3])])
        r.insert(("m/data/1", [UInt8](repeating: 0, count: 24)), at: 3)
        expectError(try zip("dup.pth", r), "duplicate tensor name w")
        #expect(TorchArchive.maxPickleBytes == 64 << 20)
    }
}
