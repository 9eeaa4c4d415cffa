import Foundation
import RWKVFormats
import RWKVModel

/// What `rwkv-convert inspect` reports: the format, the architecture when it is an RWKV
/// checkpoint, and every tensor. Reading it touches headers only, never tensor data.
public struct InspectReport: Codable, Sendable {
    public struct Tensor: Codable, Sendable {
        public let name: String
        public let dtype: String
        public let shape: [Int]
        public let bytes: Int
    }

    public let file: String
    public let format: String
    public let config: RWKVConfig?
    /// Why no architecture was detected (not an RWKV model, or a tensor missing or mis-shaped).
    public let architectureError: String?
    public let tensors: [Tensor]
    public let totalBytes: Int
    /// Tensor bits per value over the whole file, as llama.cpp's loader prints it (BPW: the
    /// tensors' bytes × 8 / their element count); nil without tensors.
    public let bitsPerWeight: Double?
    /// GGUF only: the metadata key-value pairs, values rendered short (long arrays summarised).
    public let metadata: [Metadata]?

    public struct Metadata: Codable, Sendable {
        public let key: String
        public let type: String
        public let value: String
    }
    /// Checkpoint entries that are not tensors (a .pth's epoch counter, config ...): ignored.
    public let ignoredEntries: [String]
    /// RWKV-X: the order its blocks run in ("RWKV-7 0-1", "attention 0", ...); nil for other models.
    public let blockOrder: [String]?
    /// GoldFinch: its configuration (layer kinds bottom up, ranks, the key cache's width); nil for other files.
    public let goldFinch: GoldFinchConfig?

    static func blockOrder(_ config: RWKVConfig?) -> [String]? {
        guard let c = config, c.attentionBlocks > 0 else { return nil }
        return c.blockOrder.map(\.label)
    }

    public init(source: TensorSource) {
        file = source.path
        format = source.formatName
        func message(_ error: Error) -> String { (error as? RWKVError)?.message ?? "\(error)" }
        var problem: String?
        do {
            if let gguf = source as? GGUFReader {
                // Hyperparameters from the metadata; the canonical view checks every tensor's shape.
                config = try GGUFCanonicalSource(gguf).config
            } else {
                config = try RWKVConfig.detect(source)
            }
        } catch {
            config = nil
            problem = message(error)
        }
        // A GoldFinch is no RWKV-6/7 (detect says so); its own reader says whether it is usable, and why not.
        if GoldFinchCheckpoint.holdsGoldFinch(source) {
            do {
                goldFinch = try GoldFinchCheckpoint(source).config
                problem = nil
            } catch {
                goldFinch = nil
                problem = message(error)
            }
        } else {
            goldFinch = nil
        }
        architectureError = problem
        blockOrder = Self.blockOrder(config)
        // The file's own tensors, also when it is read through a view (RWKV-5 as RWKV-6).
        let stored = Checkpoint.underlying(source)
        tensors = stored.tensors.map { Tensor(name: $0.name, dtype: $0.dtype.rawValue, shape: $0.shape, bytes: $0.byteCount) }
        totalBytes = tensors.reduce(0) { $0 + $1.bytes }
        let elements = tensors.reduce(0) { $0 + $1.shape.reduce(1, *) }
        bitsPerWeight = elements > 0 ? Double(totalBytes) * 8 / Double(elements) : nil
        ignoredEntries = (stored as? TorchArchive)?.nonTensorEntries ?? []
        metadata = (source as? GGUFReader)?.metadata.map {
            Metadata(key: $0.key, type: Self.typeName($0.value), value: $0.value.summary())
        }
    }

    static func typeName(_ v: GGUFValue) -> String {
        if let t = v.elementType, let n = v.count { return "array[\(t)] (\(n))" }
        return "\(v.type)"
    }

    /// The error `inspect` exits with when the file opened but is not a usable RWKV-6/7 model
    /// (nil when it is): bad input for every command, so scripts can tell from the exit status.
    public var unusableModelError: RWKVError? {
        guard config == nil, goldFinch == nil, let e = architectureError else { return nil }
        return RWKVError(file, "not a usable RWKV-6/7 model: \(e)")
    }

    /// Longest name shown whole in the text report (RWKV names are under 40 characters).
    static let nameLimit = 80

    /// A human-readable summary and table.
    public var text: String {
        // Names, keys and paths come from the file: escaped, and long ones shortened, so a name
        // cannot forge lines or widen every row of the table (a 200 KB name on 3,000 rows).
        var lines = ["file:    \(Printable.escaped(file, limit: 1024))", "format:  \(format)"]
        if let c = config {
            let name = c.eagle.map { "RWKV-\($0.rawValue) (Eagle), read as RWKV-6" }
                ?? (c.attentionBlocks > 0 ? "RWKV-X (RWKV-7 with \(c.attentionBlocks) attention blocks)" : "RWKV-\(c.version.rawValue)")
            var arch = "\(name): \(c.layerCount) layers, n_embd \(c.embeddingSize), head size \(c.headSize) (\(c.headCount) heads), vocab \(c.vocabSize), FFN \(c.ffnSize)"
            switch c.version {
            case .v7: arch += ", LoRA ranks decay \(c.decayRank) iclr \(c.iclrRank) value-residual \(c.valueResidualRank) gate \(c.gateRank)"
            case .v6 where c.eagle != nil: arch += c.hasGate ? "" : ", no output gate"
            case .v6: arch += ", LoRA ranks token-shift \(c.tokenShiftRank) decay \(c.decayRank)"
            }
            lines.append("model:   \(arch)")
            if let order = blockOrder {
                let heads = c.attentionHeads
                lines.append("blocks:  \(order.joined(separator: ", ")) (attention: \(heads.count) heads of \(heads.size), FFN \(RWKVXKey.ffnMultiple * c.embeddingSize))")
            }
        } else if let g = goldFinch {
            let cache = g.cachePerToken
            lines.append("model:   GoldFinch: \(GoldFinchConfig.describe(g.layers.map(\.rawValue))) (GOLD from block \(g.split)), n_embd \(g.embeddingSize), "
                         + "head size \(g.headSize) (\(g.headCount) heads), vocab \(g.vocabSize), FFN \(g.ffnSize)")
            if g.compressedSize > 0 {
                lines.append("cache:   \(cache.ours) floats + the token id per token of context (the repository keeps \(cache.repository) + the id; "
                             + "a transformer of this depth and width \(cache.transformer))")
            }
        } else if let e = architectureError {
            lines.append("model:   not a usable RWKV-6/7 checkpoint: \(e)")
        }
        if let metadata {
            lines.append("metadata: \(metadata.count) keys")
            let keys = metadata.map { Printable.escaped($0.key, limit: Self.nameLimit) }
            let keyWidth = keys.map(\.count).max() ?? 0
            for (key, m) in zip(keys, metadata) {
                lines.append("  " + key.padding(toLength: keyWidth, withPad: " ", startingAt: 0) + "  " + m.value)
            }
        }
        lines.append("tensors: \(tensors.count), \(formatBytes(totalBytes))" + (bitsPerWeight.map { String(format: ", %.2f bits per weight", $0) } ?? ""))
        if !ignoredEntries.isEmpty {
            let shown = ignoredEntries.prefix(20).map { Printable.escaped($0, limit: Self.nameLimit) }
            lines.append("ignored: \(ignoredEntries.count) entries that are not tensors: \(shown.joined(separator: ", "))"
                         + (ignoredEntries.count > shown.count ? ", ..." : ""))
        }
        let names = tensors.map { Printable.escaped($0.name, limit: Self.nameLimit) }
        let nameWidth = max(4, names.map(\.count).max() ?? 0)
        lines.append("")
        lines.append("name".padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  dtype   shape                 bytes")
        for (name, t) in zip(names, tensors) {
            let shape = "[" + t.shape.map(String.init).joined(separator: ", ") + "]"
            lines.append(name.padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  "
                         + t.dtype.padding(toLength: 6, withPad: " ", startingAt: 0) + "  "
                         + shape.padding(toLength: max(20, shape.count), withPad: " ", startingAt: 0) + "  \(t.bytes)")
        }
        return lines.joined(separator: "\n")
    }
}
