import Foundation
import Testing
import RWKVFormats
@testable import RWKVModel

/// Deterministic mutation fuzzing of every reader: valid seed files (torch zip .pth, safetensors,
/// a q8_0 GGUF written here) are corrupted by a seeded PRNG, mostly in their headers, and each
/// mutant is opened with `ModelFile.open`, every tensor read (`data`, `floats`), the architecture
/// detected, and for GGUF the canonical view built and read. The promise checked: a mutant either
/// reads or fails with an `RWKVError` (the only error `runReportingErrors` turns into one line),
/// never a trap. A trap kills the test process, so a crash shows up as a failed run; a hang as a
/// run that does not finish. It lives here, not in RWKVFormatsTests, because detection and the
/// GGUF canonical view are RWKVModel.
@Suite struct ReaderFuzzTests {
    /// Mutants per seed file. Large fixture models cost ~1 MB of reading per surviving mutant,
    /// so they get fewer; the small seeds exercise the same header parsers much faster.
    static let seeds: [(file: String, mutants: Int)] = [
        ("edge/tiny-ok.pth", 600),
        ("edge/views-shared-noncontiguous.pth", 300),
        ("edge/zip64-records.pth", 300),
        ("edge/tiny-ok.safetensors", 400),
        ("edge/handmade-ok.safetensors", 200),
        ("models/rwkv7-tiny-fp32.pth", 120),
        ("models/rwkv6-tiny-bf16.pth", 120),
        ("models/rwkv7-tiny.safetensors", 120),
    ]
    static let ggufMutants = 1200
    /// RWKV_FUZZ_SCALE=n runs n times as many mutants (the same first ones, then more) for a
    /// deeper search by hand; `make test` uses 1 (about 3,400 mutants, ~4 s in a debug build).
    static let scale = Int(ProcessInfo.processInfo.environment["RWKV_FUZZ_SCALE"] ?? "") ?? 1

    @Test(arguments: seeds.map(\.file))
    func mutatedFilesFailCleanly(seed: String) throws {
        let mutants = Self.seeds.first { $0.file == seed }!.mutants * Self.scale
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: fixture(seed))))
        let layout = try SeedLayout(bytes, path: fixture(seed))
        let stats = try Self.fuzz(bytes, layout: layout, count: mutants, seed: UInt64(truncatingIfNeeded: seed.hashValueStable))
        #expect(stats.total == mutants)
        #expect(stats.refused > 0, "no mutant of \(seed) was refused: the mutations miss the headers")
    }

    @Test func mutatedGGUFFailsCleanly() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/seed.gguf"
        try Self.writeQ8GGUF(to: path)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        // The unmutated seed must read in full, or the fuzzing proves nothing.
        #expect(try Self.readEverything(path) == true)
        let stats = try Self.fuzz(bytes, layout: try SeedLayout(bytes, path: path), count: Self.ggufMutants * Self.scale, seed: 0x6767_7566)
        #expect(stats.refused > 0)
        #expect(stats.accepted > 0)
    }

    // MARK: regressions: lying numbers the mutations are unlikely to hit

    /// A layer number near Int.max in one tensor name overflowed the layer count (a trap), and a
    /// merely large one (1e9) made detection build the expected-tensor list of a billion layers.
    @Test(arguments: ["9223372036854775807", "1000000000"])
    func hugeLayerNumberIsRefused(layer: String) throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/m.safetensors"
        let tensors = [TensorInfo(name: "emb.weight", dtype: .f32, shape: [2, 2]),
                       TensorInfo(name: "blocks.\(layer).att.x_r", dtype: .f32, shape: [1])]
        try SafetensorsWriter.write(to: path, tensors: tensors) { [UInt8](repeating: 0, count: $0.byteCount) }
        let error = try #require(throws: RWKVError.self) { try Self.readEverything(path) }
        #expect(error.message.contains("blocks.\(layer).att.x_r"), "\(error.message)")
    }

    /// A GGUF block_count within the small-integer cap (2^24) but far beyond the tensors present
    /// made the canonical view list the tensors of 16 million layers before finding one missing.
    @Test func hugeGGUFBlockCountIsRefused() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/m.gguf"
        try Self.writeQ8GGUF(to: path)
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let key = Array("rwkv7.block_count".utf8)
        let at = try #require((0...(bytes.count - key.count)).first { bytes[$0..<$0 + key.count].elementsEqual(key) })
        let value = at + key.count + 4          // after the u32 value type
        #expect(bytes[value..<value + 4].elementsEqual([2, 0, 0, 0]))
        bytes.replaceSubrange(value..<value + 4, with: [0, 0, 0, 1])   // 1 << 24
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let error = try #require(throws: RWKVError.self) { try Self.readEverything(path) }
        #expect(error.message.contains("block_count 16777216"), "\(error.message)")
    }

    // MARK: the loop

    struct Stats { var total = 0, accepted = 0, refused = 0 }

    static func fuzz(_ seed: [UInt8], layout: SeedLayout, count: Int, seed rngSeed: UInt64) throws -> Stats {
        let dir = try TemporaryDirectory()
        var rng = SplitMix64(rngSeed)
        var stats = Stats()
        for i in 0..<count {
            let mutant = Mutator.mutate(seed, layout: layout, rng: &rng)
            let path = dir.path + "/mutant" + layout.suffix      // overwritten by each mutant
            try Data(mutant).write(to: URL(fileURLWithPath: path))
            do {
                _ = try readEverything(path)
                stats.accepted += 1
            } catch let error as RWKVError {
                // One line, naming the file (message text is free: the mutation decides it).
                #expect(!error.description.contains("\n") && error.description.contains(path), "mutant \(i): \(error)")
                stats.refused += 1
            } catch {
                Issue.record("mutant \(i) of \(layout.suffix) threw \(type(of: error)), not RWKVError: \(error)")
            }
            stats.total += 1
        }
        return stats
    }

    /// Everything a command does with a file's contents: open, read each tensor, detect the
    /// architecture, and for GGUF build the canonical view and read its tensors.
    /// Returns true when the file read as a whole RWKV model.
    @discardableResult
    static func readEverything(_ path: String) throws -> Bool {
        let source = try ModelFile.open(path)
        for t in source.tensors {
            let bytes = try source.data(t.name)
            guard bytes.count == t.byteCount else { throw FuzzFailure("\(t.name): \(bytes.count) bytes, expected \(t.byteCount)") }
            _ = try source.floats(t.name)
        }
        if let gguf = source as? GGUFReader {
            let view = try GGUFCanonicalSource(gguf)
            for t in view.tensors { _ = try view.floats(t.name) }
            _ = try RWKVConfig.detect(view)
            return true
        }
        _ = try RWKVConfig.detect(source)
        return true
    }

    /// A reader that returns wrong-sized data without throwing is a bug too, reported by type.
    struct FuzzFailure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    // MARK: the GGUF seed

    /// A small RWKV-7 checkpoint written as GGUF with the project's writer, large matrices q8_0
    /// (the block-quantized path) and the rest f32, exactly as a conversion lays it out.
    static func writeQ8GGUF(to path: String) throws {
        let config = RWKVConfig(version: .v7, layerCount: 2, embeddingSize: 32, headSize: 16, vocabSize: 32, ffnSize: 64,
                                decayRank: 4, iclrRank: 4, valueResidualRank: 4, gateRank: 4)
        let source = SyntheticCheckpoint(config)
        let layouts = GGUFLayout.tensors(for: config)
        let metadata = [GGUFKeyValue("general.architecture", .string(GGUFLayout.architecture(config.version)))]
            + GGUFLayout.hyperparameters(for: config)
        let writer = try GGUFWriter(path: path, metadata: metadata, tensors: layouts.map {
            TensorInfo(name: $0.name, dtype: $0.isLargeMatrix ? .q8_0 : .f32, shape: $0.shape)
        })
        for l in layouts {
            let values = GGUFLayout.apply(l, to: try l.sources.map { try source.floats($0) })
            if l.isLargeMatrix {
                var blocks = [UInt8](repeating: 0, count: DType.q8_0.byteCount(elements: values.count)!)
                values.withUnsafeBufferPointer { src in
                    blocks.withUnsafeMutableBytes { _ = Quantizer.quantize(src, type: .q8_0, into: $0) }
                }
                try writer.writeTensor(blocks)
            } else {
                try values.withUnsafeBytes { try writer.writeTensor($0) }
            }
        }
        try writer.finish()
    }
}

// MARK: - Mutations

/// Where a seed file's headers are, so that most mutations land where parsers look.
struct SeedLayout {
    let suffix: String
    /// Byte ranges holding structure (headers, directories, pickle), not tensor data.
    var hot: [Range<Int>] = []
    /// Torch zip only: data.pkl's bytes and where its CRC-32 is recorded (local header and
    /// central directory), so a pickle can be mutated with a matching CRC and reach the unpickler.
    var pickle: Range<Int>?
    var pickleCRCFields: [Int] = []

    init(_ b: [UInt8], path: String) throws {
        suffix = "." + (path.split(separator: ".").last.map(String.init) ?? "bin")
        func u16(_ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        func u64(_ o: Int) -> Int { u32(o) | u32(o + 4) << 32 }
        if b.starts(with: Array("GGUF".utf8)) {
            hot = [0..<(try GGUFReader(path: path).dataStart)]
        } else if b.starts(with: [0x50, 0x4b, 0x03, 0x04]) {
            // End of central directory (no archive comment in torch files), zip64 when marked.
            let eocd = b.count - 22
            var cdStart = u32(eocd + 16)
            if cdStart == 0xFFFF_FFFF, let z = Self.lastIndex(of: [0x50, 0x4b, 0x06, 0x06], in: b) { cdStart = u64(z + 48) }
            hot = [0..<min(64, b.count), cdStart..<b.count]
            var p = cdStart
            while p + 46 <= b.count, b[p..<p + 4].elementsEqual([0x50, 0x4b, 0x01, 0x02]) {
                let n = u16(p + 28), e = u16(p + 30), c = u16(p + 32)
                let name = String(decoding: b[p + 46 ..< p + 46 + n], as: UTF8.self)
                let local = u32(p + 42)
                if name.hasSuffix("/data.pkl"), local != 0xFFFF_FFFF {
                    let start = local + 30 + u16(local + 26) + u16(local + 28)
                    let size = u32(p + 24)
                    pickle = start..<start + size
                    pickleCRCFields = [local + 14, p + 16]
                    hot.append(local..<start + size)
                } else {
                    hot.append(local..<min(local + 30 + n + 64, b.count))   // local header (+ torch's padding extra)
                }
                p += 46 + n + e + c
            }
        } else {
            hot = [0..<(8 + u64(0))]   // safetensors: length + JSON header
        }
    }

    static func lastIndex(of pattern: [UInt8], in b: [UInt8]) -> Int? {
        var i = b.count - pattern.count
        while i >= 0 {
            if b[i..<i + pattern.count].elementsEqual(pattern) { return i }
            i -= 1
        }
        return nil
    }
}

enum Mutator {
    static func mutate(_ seed: [UInt8], layout: SeedLayout, rng: inout SplitMix64) -> [UInt8] {
        var b = seed
        // A third of torch mutants change only the pickle and fix its CRC, so the unpickler
        // (not the CRC check) sees the damage.
        if let pickle = layout.pickle, rng.below(3) == 0 {
            for _ in 0...rng.below(3) { b[pickle.lowerBound + rng.below(pickle.count)] = pickleByte(&rng) }
            if rng.below(4) == 0 {
                let at = pickle.lowerBound + rng.below(max(1, pickle.count - 4))
                writeField(&b, at: at, width: 4, &rng)
            }
            let crc = CRC32.checksum(Array(b[pickle]))
            for field in layout.pickleCRCFields { for k in 0..<4 { b[field + k] = UInt8(truncatingIfNeeded: crc >> (8 * k)) } }
            return b
        }
        for _ in 0...rng.below(3) {
            func position() -> Int {
                // 85% in a structural range, else anywhere.
                if rng.below(100) < 85, let r = layout.hot.randomElement(using: &rng), !r.isEmpty {
                    return min(r.lowerBound + rng.below(r.count), b.count - 1)
                }
                return rng.below(b.count)
            }
            guard !b.isEmpty else { break }
            switch rng.below(10) {
            case 0, 1, 2: b[position()] ^= UInt8(1) << UInt8(rng.below(8))
            case 3: b[position()] = UInt8(truncatingIfNeeded: rng.next())
            case 4, 5: writeField(&b, at: position(), width: rng.below(2) == 0 ? 4 : 8, &rng)
            case 6: b.removeSubrange(position()...)                                      // truncate
            case 7:                                                                      // zero a range
                let start = position(), end = min(b.count, start + 1 + rng.below(32))
                for i in start..<end { b[i] = 0 }
            case 8:                                                                      // duplicate a range over another
                let from = position(), to = position(), n = min(1 + rng.below(48), b.count - from, b.count - to)
                let chunk = Array(b[from..<from + n])
                b.replaceSubrange(to..<to + n, with: chunk)
            default:                                                                     // insert a copied range
                let from = position(), n = min(1 + rng.below(48), b.count - from)
                b.insert(contentsOf: Array(b[from..<from + n]), at: position())
            }
        }
        return b
    }

    /// Overwrites a little-endian field with a boundary value: 0, all ones, the signed maximum,
    /// the sign bit, or a small number.
    static func writeField(_ b: inout [UInt8], at start: Int, width: Int, _ rng: inout SplitMix64) {
        let values: [UInt64] = [0, ~0, UInt64(Int64.max), 1 << 63, 0x7FFF_FFFF, 0xFFFF_FFFF, 0x8000_0000, 1, 2, 64, 1 << 24, 1 << 32]
        let v = values[rng.below(values.count)]
        for k in 0..<width where start + k < b.count { b[start + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
    }

    /// A byte that means something to the unpickler: an opcode torch uses, a boundary value,
    /// or anything.
    static func pickleByte(_ rng: inout SplitMix64) -> UInt8 {
        let interesting: [UInt8] = [0x28, 0x2e, 0x4a, 0x4b, 0x4d, 0x51, 0x52, 0x58, 0x5d, 0x61, 0x62, 0x63, 0x65, 0x68,
                                    0x71, 0x72, 0x73, 0x74, 0x75, 0x7d, 0x29, 0x80, 0x85, 0x86, 0x87, 0x8a, 0x8c, 0x93,
                                    0x94, 0x95, 0x00, 0xff, 0x7f]
        return rng.below(2) == 0 ? interesting[rng.below(interesting.count)] : UInt8(truncatingIfNeeded: rng.next())
    }
}

/// SplitMix64: a tiny PRNG, so the mutants are the same on every run and platform.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }
}

/// A directory removed when the value is released.
final class TemporaryDirectory {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "rwkv-fuzz-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

extension String {
    /// FNV-1a of the UTF-8 bytes: a per-seed PRNG seed that, unlike `hashValue`, is the same
    /// in every process.
    var hashValueStable: UInt64 {
        utf8.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }
}
