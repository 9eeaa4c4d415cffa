#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RWKVFormats
import RWKVText
import RWKVModel

/// Moves a model between the official trainer's world and the Hugging Face one, both ways,
/// through the architecture's schema: `toHuggingFace` writes the fla-hub RWKV-7 / HF RWKV-6
/// folder (`model.safetensors`, `config.json`, the World vocabulary for 65536-row models),
/// `toPth` a BlinkDL `.pth` the official trainer and package load. Values are copied in their
/// stored type; only the scheme's transposes and reshapes change the bytes' order or shape.
public enum Export {
    public struct Report: Codable, Sendable {
        public let input: String
        public let output: String
        public let format: String
        public let tensors: Int
        public let bytes: Int
        public let seconds: Double

        public var text: String {
            "\(input) -> \(output)\nwritten:    \(format), \(tensors) tensors, \(formatBytes(bytes)) in \(String(format: "%.2f", seconds)) s"
        }
    }

    /// The files of an exported Hugging Face folder.
    public static let weightsFile = "model.safetensors"
    public static let configFile = "config.json"
    public static let vocabularyFile = HuggingFaceFolder.worldVocabularyFile

    // MARK: - Hugging Face folder

    /// Writes `output` (a new directory; refused when it exists) from any checkpoint.
    public static func toHuggingFace(input: String, output: String, adapters: AdapterList = AdapterList(),
                                     progress: ((Int, Int, String) -> Void)? = nil) throws -> Report {
        let started = Date()
        let source = try adapters.merged(into: try Checkpoint.open(input))
        let config = try RWKVConfig.detect(source)
        try config.requireNotEagle(path: input, "exports write RWKV-6/7 layouts; use rwkv-upgrade v5-to-v6 for a trainable RWKV-6 .pth, or to-gguf")
        try config.requireNoAttention(path: input, for: "an RWKV-6/7 export")
        let schema = config.schema
        var tensors: [(info: TensorInfo, from: String, transposed: Bool)] = []
        for (name, row, layer) in config.checkpointTensors {
            if name.hasPrefix("blocks.0."), row.firstLayerStandIn != nil { continue }   // fla drops block 0's unused v0/v1/v2
            guard let stored = source.info(name) else { throw RWKVError(input, "missing tensor \(name)") }
            let transposed = schema.hfTransposesLoRA && row.role == .lora
            let shape = transposed ? stored.shape.reversed() : row.hfShape.map(config.shape) ?? stored.shape
            tensors.append((TensorInfo(name: row.hfName(layer: layer, in: schema), dtype: stored.dtype, shape: shape), name, transposed))
        }

        var st = stat()
        guard stat(output, &st) != 0 else { throw RWKVError(output, "already exists: give a new folder name") }
        guard mkdir(output, 0o755) == 0 else { throw RWKVError(output, "cannot create the folder: \(String(cString: strerror(errno)))") }
        var finished = false
        defer {
            if !finished {
                for f in [weightsFile, configFile, vocabularyFile] { unlink(output + "/" + f) }
                rmdir(output)
            }
        }
        let byName = Dictionary(uniqueKeysWithValues: tensors.map { ($0.info.name, $0) })
        var index = 0
        try SafetensorsWriter.write(to: output + "/" + weightsFile, tensors: tensors.map(\.info), metadata: ["format": "pt"],
                                    inputs: [input], durable: false) { info in
            let t = byName[info.name]!
            progress?(index, tensors.count, t.from)
            index += 1
            let bytes = try checkedData(source, t.from)
            guard t.transposed else { return bytes }
            let stored = source.info(t.from)!
            return HuggingFaceFolder.transposed(bytes, rows: stored.shape[0], columns: stored.shape[1], elementBytes: stored.dtype.blockBytes)
        }
        try writeFile(output + "/" + configFile, Array(configJSON(config).utf8))
        if config.vocabSize == Vocabulary.worldRows, let bundled = Vocabulary.bundledWorldPath {
            let file = try InputFile(bundled)
            try writeFile(output + "/" + vocabularyFile, try file.read(at: 0, count: file.size))
        }
        finished = true
        let bytes = tensors.reduce(0) { $0 + $1.info.byteCount }
        return Report(input: input, output: output, format: "Hugging Face folder (\(schema.version == .v7 ? "fla-hub RWKV-7" : "HF RWKV-6"))",
                      tensors: tensors.count, bytes: bytes, seconds: Date().timeIntervalSince(started))
    }

    /// config.json: the shape keys the reader checks (`hfConfigKeys`), and what the scheme's
    /// model class needs besides (transformers' `Rwkv6Config`, rwkv7-hf's `RWKV7Config`).
    static func configJSON(_ c: RWKVConfig) -> String {
        let schema = c.schema
        var fields: [(String, String)] = [("architectures", "[\"\(schema.hfModelClass)\"]"), ("model_type", "\"\(schema.hfModelType)\"")]
        fields += schema.hfConfigKeys.map { ($0.key, String(c.size($0.dim))) }
        fields.append(("attention_hidden_size", String(c.embeddingSize)))
        switch c.version {
        case .v7:
            fields += [("num_heads", String(c.headCount)), ("hidden_ratio", String(Double(c.ffnSize) / Double(c.embeddingSize))),
                       ("value_dim", "[" + Array(repeating: String(c.embeddingSize), count: c.layerCount).joined(separator: ", ") + "]"),
                       ("norm_eps", "1e-05"), ("norm_bias", "true")]
        case .v6:
            fields += [("layer_norm_epsilon", "1e-05"), ("rescale_every", "0")]
        }
        fields.append(("tie_word_embeddings", "false"))
        return "{\n" + fields.map { "  \"\($0.0)\": \($0.1)" }.joined(separator: ",\n") + "\n}\n"
    }

    // MARK: - BlinkDL .pth

    /// Writes a BlinkDL `.pth` (torch.save layout, every official key with its shape) from any
    /// checkpoint. RWKV-7 block 0's unused v0/v1/v2, absent from fla-hub folders, are written as
    /// zeros of their official shapes (the trainer creates them; nothing reads them).
    public static func toPth(input: String, output: String, adapters: AdapterList = AdapterList(),
                             progress: ((Int, Int, String) -> Void)? = nil) throws -> Report {
        let started = Date()
        let source = try adapters.merged(into: try Checkpoint.open(input))
        let config = try RWKVConfig.detect(source)
        try config.requireNotEagle(path: input, "exports write RWKV-6/7 layouts; use rwkv-upgrade v5-to-v6 for a trainable RWKV-6 .pth, or to-gguf")
        try config.requireNoAttention(path: input, for: "an RWKV-6/7 export")
        let dtype = source.info(config.schema.embeddingName)?.dtype ?? .f32
        let infos = config.expectedShapes.map { name, shape in
            TensorInfo(name: name, dtype: source.info(name)?.dtype ?? dtype, shape: source.info(name)?.shape ?? shape)
        }
        var index = 0
        try TorchWriter.write(to: output, tensors: infos, inputs: [input], durable: false) { info in
            progress?(index, infos.count, info.name)
            index += 1
            guard source.info(info.name) != nil else { return [UInt8](repeating: 0, count: info.byteCount) }
            return try checkedData(source, info.name)
        }
        return Report(input: input, output: output, format: "BlinkDL .pth", tensors: infos.count,
                      bytes: infos.reduce(0) { $0 + $1.byteCount }, seconds: Date().timeIntervalSince(started))
    }

    // MARK: - Helpers

    /// A tensor's bytes, refused when it holds NaN or infinite values (one rule for every program).
    static func checkedData(_ source: TensorSource, _ name: String) throws -> [UInt8] {
        let bytes = try source.data(name)
        let found = bytes.withUnsafeBytes { NonFiniteCount.scan($0, as: source.info(name)?.dtype ?? .u8) }
        if found.count > 0 { throw found.error(path: source.path, tensor: name, advice: "an exported model must be finite") }
        return bytes
    }

    static func writeFile(_ path: String, _ bytes: [UInt8]) throws {
        let file = try AtomicOutputFile(path, durable: false)
        do {
            try file.write(bytes)
            try file.commit()
        } catch {
            file.abandon()
            throw error
        }
    }
}
