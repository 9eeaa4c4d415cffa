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

    @Test func nestedTrainingCheckpointsAreUnwrapped() throws {
        let archive = try TorchArchive(path: torchFixtures + "/nested.pth")
        #expect(archive.tensors.map(\.name) == ["a", "b"])
        #expect(archive.nonTensorEntries == ["epoch (int)"])
        #expect(try archive.floats("b") == [1, 1, 1])
    }

    /// Every fixture model's .pth against manifest.json (SHA-256 of each tensor's float32 values,
    /// computed by torch) and against the .safetensors copy (bf16): same names and shapes, and
    /// the bf16 .pth holds exactly the safetensors bytes.
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
                if precision == "bf16" {
                    #expect(try pth.data(t.name) == safetensors.data(t.name), "\(file): \(t.name)")
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
