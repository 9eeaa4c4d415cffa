#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import RWKVFormats

/// A Hugging Face model folder (fla-hub RWKV-7, HF RWKV-6) seen as the BlinkDL checkpoint it
/// holds: canonical names and shapes, bytes unchanged except where the scheme stores a tensor
/// transposed (fla's LoRA factors, read back transposed) or fused (fla's short-lived `attn.x_x`,
/// split into x_r … x_g). Weights come from `model.safetensors`, sharded
/// `model-0000N-of-0000M.safetensors` + `model.safetensors.index.json`, or `pytorch_model.bin`
/// (+ its index), each opened by the same safe readers as single files. Every name comes from
/// the architecture's schema (`TensorSpec.hf`); a tensor the scheme does not know is an error.
/// `config.json`'s hyperparameters are checked against the shapes.
public final class HuggingFaceFolder: TensorSource {
    public let path: String
    public let formatName: String
    public let tensors: [TensorInfo]
    public let config: RWKVConfig
    /// The weight files, in shard order (hashed in this order for provenance).
    public let weightFiles: [String]
    /// The folder's World vocabulary file (`rwkv_vocab_v20230424.txt`, as the rwkv7-hf converter
    /// and `rwkv-convert to-hf` write it), when it has one.
    public var worldVocabularyPath: String? {
        let file = path + "/" + Self.worldVocabularyFile
        return Self.exists(file) ? file : nil
    }
    public static let worldVocabularyFile = "rwkv_vocab_v20230424.txt"

    private struct Origin {
        let shard: TensorSource
        let hfName: String
        /// (rows, columns) of the stored 2-D tensor when it must be transposed.
        let transposed: (rows: Int, columns: Int)?
        /// Byte range of this part when the stored tensor is a fused stack.
        let part: Range<Int>?
    }
    private let origins: [String: Origin]

    /// config.json is a few hundred bytes; anything near this is not a model config.
    static let maxConfigBytes = 1 << 20
    /// Weight-file layouts, in the order they are looked for.
    static let indexFiles = ["model.safetensors.index.json", "pytorch_model.bin.index.json"]
    static let singleFiles = ["model.safetensors", "pytorch_model.bin"]

    public init(path: String) throws {
        self.path = path
        let configJSON = try Self.readJSON(path, "config.json")
        weightFiles = try Self.weightFiles(in: path)
        var stored: [String: (shard: TensorSource, info: TensorInfo)] = [:]
        var storedOrder: [String] = []
        for file in weightFiles {
            let shard = try ModelFile.open(file)
            guard shard is SafetensorsReader || shard is TorchArchive else {
                throw RWKVError(file, "is a \(shard.formatName) file; a Hugging Face folder holds safetensors or pytorch_model.bin weights")
            }
            for t in shard.tensors {
                guard stored[t.name] == nil else { throw RWKVError(file, "tensor \(t.name) is also in another weight file of the folder") }
                stored[t.name] = (shard, t)
                storedOrder.append(t.name)
            }
        }

        guard let schema = ArchitectureSchema.all.first(where: { s in storedOrder.contains { $0.hasPrefix(s.hfLayerPrefix) } }) else {
            throw RWKVError(path, "not an RWKV-6/RWKV-7 Hugging Face folder (no model.layers.* or rwkv.blocks.* tensors)")
        }
        let blockRows = Dictionary(schema.tensors.filter { $0.scope == .layer || $0.scope == .firstLayer }.map { ($0.hf, $0) },
                                   uniquingKeysWith: { a, _ in a })
        let modelRows = Dictionary(schema.tensors.filter { $0.scope == .start || $0.scope == .end }.map { ($0.hf, $0) },
                                   uniquingKeysWith: { a, _ in a })
        // The HF RWKV-5 scheme is the RWKV-6 one with RWKV-5's own tensors (`EagleRow.hf`).
        let eagleLeaves = schema.version == .v6
            ? Dictionary(uniqueKeysWithValues: ArchitectureSchema.rwkv5.compactMap { r in r.hf.map { ($0, r.rwkv5[0]) } }) : [:]
        let eagleOnly = eagleLeaves.keys.filter { blockRows[$0] == nil }   // time_mix_*: not in an RWKV-6
        let isEagle = storedOrder.contains { name in eagleOnly.contains { name.hasSuffix("." + $0) } }
        formatName = "Hugging Face folder (\(schema.version == .v7 ? "fla-hub RWKV-7" : isEagle ? "HF RWKV-5" : "HF RWKV-6"), "
            + "\(weightFiles.count) weight file\(weightFiles.count == 1 ? "" : "s"))"
        let lerps = schema.tensors.compactMap { row in row.gguf.stackIndex.map { (index: $0, row: row) } }
            .sorted { $0.index < $1.index }.map(\.row)

        var infos: [TensorInfo] = []
        var origins: [String: Origin] = [:]
        for hfName in storedOrder {
            let (shard, info) = stored[hfName]!
            func add(_ name: String, _ shape: [Int], transposed: (Int, Int)? = nil, part: Range<Int>? = nil) {
                infos.append(TensorInfo(name: name, dtype: info.dtype, shape: shape))
                origins[name] = Origin(shard: shard, hfName: hfName, transposed: transposed, part: part)
            }
            var row: TensorSpec?, layer = 0
            if hfName.hasPrefix(schema.hfLayerPrefix) {
                let rest = hfName.dropFirst(schema.hfLayerPrefix.count)
                guard let n = Int(rest.prefix { $0 != "." }), n >= 0, n < stored.count else {
                    throw RWKVError(path, "tensor \(hfName): not a block number the folder's \(stored.count) tensors can hold")
                }
                layer = n
                let leaf = String(rest.drop { $0 != "." }.dropFirst())
                if let fused = schema.hfFusedLerps, leaf == fused, !lerps.isEmpty {
                    // (6, C) or (6, 1, 1, C): one row per lerp, in stack order.
                    let count = info.elementCount
                    guard info.shape.first == lerps.count, count % lerps.count == 0 else {
                        throw RWKVError(path, "tensor \(hfName) has shape \(info.shape), expected (\(lerps.count), n_embd)")
                    }
                    let bytes = info.byteCount / lerps.count
                    for (i, l) in lerps.enumerated() {
                        add(l.checkpointName(layer: layer), [1, 1, count / lerps.count], part: i * bytes..<(i + 1) * bytes)
                    }
                    continue
                }
                if isEagle, let name = eagleLeaves[leaf] {
                    add(TensorSpec.blockPrefix + "\(layer)." + name, info.shape)
                    continue
                }
                row = blockRows[leaf]
                if let r = row, r.scope == .firstLayer, layer != 0 { row = nil }
            } else {
                row = modelRows[hfName]
            }
            guard let row else {
                throw RWKVError(path, "tensor \(hfName) is not part of the \(formatName.prefix { $0 != "," })) layout")
            }
            let name = row.checkpointName(layer: layer)
            if schema.hfTransposesLoRA && row.role == .lora {
                guard info.shape.count == 2 else { throw RWKVError(path, "tensor \(hfName) has shape \(info.shape), expected 2 dimensions") }
                add(name, [info.shape[1], info.shape[0]], transposed: (info.shape[0], info.shape[1]))
            } else if row.role == .vector {
                add(name, [1, 1, info.elementCount])   // fla stores (C) where BlinkDL has (1, 1, C)
            } else {
                add(name, info.shape)
            }
        }
        tensors = infos
        self.origins = origins
        config = try RWKVConfig.detect(try EagleCheckpoint.wrappingIfRWKV5(ShapeList(path: path, tensors: infos)))
        for (key, dim) in schema.hfConfigKeys {
            guard let value = configJSON[key], value != .null else { continue }
            if case .integer(let n) = value, schema.hfConfigPlaceholders.contains(where: { $0.key == key && Int64($0.value) == n }) { continue }
            guard case .integer(let n) = value, n == config.size(dim) else {
                throw RWKVError(path + "/config.json", "\(key) is \(Self.summary(value)), but the tensors say \(config.size(dim))")
            }
        }
    }

    public func data(_ name: String) throws -> [UInt8] {
        guard let o = origins[name], let info = info(name) else { throw RWKVError(path, "no tensor named \(name)") }
        var bytes = try o.shard.data(o.hfName)
        if let part = o.part { bytes = Array(bytes[part]) }
        guard let (rows, columns) = o.transposed else { return bytes }
        return Self.transposed(bytes, rows: rows, columns: columns, elementBytes: info.dtype.blockBytes)
    }

    /// The bytes of a row-major (rows, columns) matrix of `elementBytes`-byte elements, transposed.
    public static func transposed(_ bytes: [UInt8], rows: Int, columns: Int, elementBytes size: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: bytes.count)
        for r in 0..<rows {
            for c in 0..<columns {
                let from = (r * columns + c) * size, to = (c * rows + r) * size
                for b in 0..<size { out[to + b] = bytes[from + b] }
            }
        }
        return out
    }

    public func read(_ name: String, inPiecesOf pieceBytes: Int, using buffer: ReusableBuffer,
                     _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let o = origins[name] else { throw RWKVError(path, "no tensor named \(name)") }
        if o.transposed == nil && o.part == nil {
            try o.shard.read(o.hfName, inPiecesOf: pieceBytes, using: buffer, body)   // stored as is: stream it
        } else {
            try forEachPiece(of: try data(name), pieceBytes: pieceBytes, body)
        }
    }

    /// A JSON value as an error message shows it (strings escaped, containers by kind).
    static func summary(_ value: JSONValue) -> String {
        switch value {
        case .integer(let n): return String(n)
        case .number(let x): return String(x)
        case .string(let s): return String(reflecting: String(s.prefix(64)))
        case .bool(let b): return String(b)
        case .null: return "null"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    // MARK: - Files

    static func readJSON(_ folder: String, _ name: String) throws -> JSONValue {
        let file = try InputFile(folder + "/" + name)
        guard file.size <= maxConfigBytes else { throw RWKVError(file.path, "is \(file.size) bytes; expected a small JSON file") }
        do { return try JSONValue.parse(try file.read(at: 0, count: file.size, what: "JSON")) }
        catch let e as JSONError { throw RWKVError(file.path, "invalid JSON: \(e.description)") }
    }

    /// The folder's weight files: an index's shards (sorted, each named plainly inside the
    /// folder), or the single file.
    static func weightFiles(in folder: String) throws -> [String] {
        for index in indexFiles where exists(folder + "/" + index) {
            guard case .object(let map)? = try readJSON(folder, index)["weight_map"] else {
                throw RWKVError(folder + "/" + index, "has no weight_map object")
            }
            var shards = Set<String>()
            for (tensor, file) in map {
                guard case .string(let name) = file, !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
                    throw RWKVError(folder + "/" + index, "tensor \(String(reflecting: tensor)): weight file \(summary(file)) is not a file name in the folder")
                }
                shards.insert(name)
            }
            guard !shards.isEmpty else { throw RWKVError(folder + "/" + index, "weight_map is empty") }
            return shards.sorted().map { folder + "/" + $0 }
        }
        for single in singleFiles where exists(folder + "/" + single) { return [folder + "/" + single] }
        throw RWKVError(folder, "no model.safetensors, pytorch_model.bin or index of shards in the folder")
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }
}

/// Tensor names and shapes only, for detecting the architecture before any data is read.
final class ShapeList: TensorSource {
    let path: String
    let formatName = "shapes"
    let tensors: [TensorInfo]
    init(path: String, tensors: [TensorInfo]) {
        self.path = path
        self.tensors = tensors
    }
    func data(_ name: String) throws -> [UInt8] { throw RWKVError(path, "no data") }
}

/// Opens any checkpoint the programs accept: a file (`ModelFile`) or a Hugging Face folder.
public enum Checkpoint {
    /// An RWKV-5 comes back as the RWKV-6 it equals (`EagleCheckpoint`), an RWKV-X as its RWKV-7
    /// with the attention blocks beside it (`RWKVXCheckpoint`).
    public static func open(_ path: String) throws -> TensorSource {
        let source = try ModelFormat.detect(path: path) == .huggingFaceFolder ? try HuggingFaceFolder(path: path) : try ModelFile.open(path)
        return try RWKVXCheckpoint.wrappingIfRWKVX(try EagleCheckpoint.wrappingIfRWKV5(source))
    }

    /// The file or folder under any views (RWKV-5 as RWKV-6, merged adapters' base is not unwrapped).
    public static func underlying(_ source: TensorSource) -> TensorSource {
        (source as? EagleCheckpoint)?.base ?? (source as? RWKVXCheckpoint)?.base ?? source
    }
}
