import Foundation
import RWKVFormats

/// An RWKV-5 ("Eagle") checkpoint seen as the RWKV-6 checkpoint that computes exactly the same
/// function (`ArchitectureSchema.rwkv5`): the forward pass, GGUF conversion and the upgrades all
/// run it as RWKV-6. Tensors RWKV-6 shares with RWKV-5 pass through untouched (the large
/// matrices stream from the file); the few made from RWKV-5 tensors (lerps, decay, bonus) and
/// the zero LoRAs are small per-channel tensors, built in f32 when read.
///
/// Shapes are checked here, once, before anything is read: a file that is neither a complete
/// RWKV-5 of one version nor anything else is refused with the tensor that does not fit.
public final class EagleCheckpoint: TensorSource {
    public let base: TensorSource
    public let version: EagleVersion
    /// The RWKV-6 configuration it is read as (`eagle` set, LoRA ranks RWKV-LM's for the width).
    public let config: RWKVConfig
    public var path: String { base.path }
    public var formatName: String { base.formatName + ", RWKV-\(version.rawValue) read as RWKV-6" }
    public let tensors: [TensorInfo]

    private enum Origin {
        case stored
        case made(EagleRule, source: String?, layer: Int)
    }
    private let origins: [String: Origin]
    private let infos: [String: TensorInfo]

    /// Whether `source` holds an RWKV-4/5 checkpoint (token-shift `time_mix_k`, no RWKV-6 `time_maa_x`).
    public static func holdsRWKV5(_ source: TensorSource) -> Bool {
        source.info(rwkv5Name(.maaK, layer: 0)) != nil && source.info(RWKV6Key.maaX.name(layer: 0)) == nil
    }

    /// The RWKV-5 name of the tensor RWKV-6's `key` is made from, in block `layer`.
    static func rwkv5Name(_ key: RWKV6Key, layer: Int) -> String {
        TensorSpec.blockPrefix + "\(layer)." + ArchitectureSchema.rwkv5Row(key)!.rwkv5[0]
    }

    /// `source` itself, or the RWKV-6 view of it when it is an RWKV-5 checkpoint.
    public static func wrappingIfRWKV5(_ source: TensorSource) throws -> TensorSource {
        holdsRWKV5(source) ? try EagleCheckpoint(source) : source
    }

    public init(_ base: TensorSource) throws {
        self.base = base
        let path = base.path
        func shape(_ name: String) throws -> [Int] { try base.requiredInfo(name).shape }
        typealias K = RWKV6Key
        guard base.info(K.lnXWeight.name(layer: 0)) != nil else {
            throw RWKVError(path, "RWKV-4 checkpoint (token-shift time_mix_k without att.ln_x): only RWKV-5, 6 and 7 are supported")
        }
        let emb = try shape(K.emb.name)
        guard emb.count == 2 else { throw RWKVError(path, "tensor \(K.emb.name) has shape \(emb), expected 2 dimensions") }
        let c = emb[1]
        let layerCount = try TensorSpec.blockCount(of: base)
        let decay = try shape(K.decay.name(layer: 0))
        let gated = base.info(K.gate.name(layer: 0)) != nil
        guard (1...2).contains(decay.count), decay[0] >= 1, c >= 1, c % decay[0] == 0 else {
            throw RWKVError(path, "tensor \(K.decay.name(layer: 0)) has shape \(decay); expected (heads) or (heads, head size) dividing n_embd \(c)")
        }
        let heads = decay[0], headSize = c / heads
        if decay.count == 2, decay[1] > 1 {
            guard gated else { throw RWKVError(path, "RWKV-5.2 checkpoint (2-D time_decay) without \(K.gate.rawValue)") }
            guard decay[1] == headSize else {
                throw RWKVError(path, "tensor \(K.decay.name(layer: 0)) has shape \(decay), expected (\(heads), \(headSize))")
            }
            version = .v5_2
        } else {
            version = gated ? .v5_1 : .v5_0
        }
        let ffn = try shape(K.ffnKey.name(layer: 0))
        guard ffn.count == 2 else { throw RWKVError(path, "tensor \(K.ffnKey.name(layer: 0)) has shape \(ffn), expected 2 dimensions") }
        let ranks = ArchitectureSchema.rwkv6TrainerRanks(embedding: c)
        let config = RWKVConfig(version: .v6, layerCount: layerCount, embeddingSize: c, headSize: headSize, vocabSize: emb[0],
                                ffnSize: ffn[0], decayRank: ranks.decay, tokenShiftRank: ranks.tokenShift, eagle: version)
        try config.validate(path: path)
        self.config = config

        // What each RWKV-6 tensor is made of, and the RWKV-5 shape every used tensor must have.
        let rules = Dictionary(uniqueKeysWithValues: ArchitectureSchema.rwkv5.map { ($0.rwkv6.rawValue, $0) })
        let perHead: [[Int]] = version == .v5_2 ? [[heads, headSize]] : [[heads], [heads, 1]]
        var used = Set<String>(), list: [TensorInfo] = [], origins: [String: Origin] = [:]
        for (name, row, layer) in config.checkpointTensors {
            let target = config.shape(row.shape)
            guard let rule = rules[row.name] else {
                let s = try shape(name)
                guard s == target else { throw RWKVError(path, "tensor \(name) has shape \(s), expected \(target)") }
                used.insert(name)
                list.append(TensorInfo(name: name, dtype: base.info(name)!.dtype, shape: s))
                origins[name] = .stored
                continue
            }
            let block = TensorSpec.blockPrefix + "\(layer)."
            let source = rule.rwkv5.map { block + $0 }.first { base.info($0) != nil }
            if !rule.rwkv5.isEmpty, source == nil {
                // 5.0 has no gate, so no time_mix_g: its time_maa_g is never read.
                guard version == .v5_0, row.name == K.maaG.rawValue else { throw RWKVError(path, "missing tensor \(block + rule.rwkv5[0])") }
            }
            if let name = source {
                let s = try shape(name)
                let allowed = rule.rule == .oneMinus ? [[1, 1, c], [c]] : perHead
                guard allowed.contains(s) else { throw RWKVError(path, "tensor \(name) has shape \(s), expected \(allowed[0])") }
                used.insert(name)
            }
            list.append(TensorInfo(name: name, dtype: .f32, shape: target))
            origins[name] = .made(source == nil && rule.rule == .oneMinus ? .zero : rule.rule, source: source, layer: layer)
        }
        let unknown = base.tensors.map(\.name).filter { !used.contains($0) }
        if let first = unknown.first {
            throw RWKVError(path, "tensor \(Printable.escaped(first, limit: 80))\(unknown.count > 1 ? " (and \(unknown.count - 1) more)" : "") "
                                  + "is not part of an RWKV-\(version.rawValue) checkpoint")
        }
        tensors = list
        self.origins = origins
        infos = Dictionary(list.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    public func info(_ name: String) -> TensorInfo? { infos[name] }

    /// Whether the RWKV-6 tensor `name` is computed from RWKV-5 values (1 − μ, exp(time_first))
    /// rather than copied or made from nothing: such values need f32 to stay exact.
    public func isComputed(_ name: String) -> Bool {
        guard case .made(let rule, let source, _)? = origins[name] else { return false }
        return rule == .oneMinus || (rule == .bonus && Self.storesTimeFirst(source))
    }

    /// Whether the bonus comes from `time_first` (older files: u = exp(time_first)) rather than
    /// `time_faaaa` (u as stored): the second of the bonus row's RWKV-5 names.
    private static func storesTimeFirst(_ source: String?) -> Bool {
        source.flatMap(TensorSpec.row(of:)) == ArchitectureSchema.rwkv5Row(.faaaa)!.rwkv5[1]
    }

    public func data(_ name: String) throws -> [UInt8] {
        guard let origin = origins[name], let info = infos[name] else { throw RWKVError(path, "no tensor named \(name)") }
        switch origin {
        case .stored:
            return try base.data(name)
        case .made(let rule, let source, let layer):
            var overflow = 0
            return try ElementCodec.encode(try made(rule, source: source, layer: layer, count: info.elementCount), as: .f32,
                                           overflowCount: &overflow)
        }
    }

    public func read(_ name: String, inPiecesOf pieceBytes: Int, using buffer: ReusableBuffer,
                     _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        if case .stored? = origins[name] { return try base.read(name, inPiecesOf: pieceBytes, using: buffer, body) }
        try forEachPiece(of: try data(name), pieceBytes: pieceBytes, body)
    }

    /// The values of a made tensor (`count` of them, the RWKV-6 shape's elements).
    private func made(_ rule: EagleRule, source: String?, layer: Int, count: Int) throws -> [Float] {
        let c = config.embeddingSize, n = config.headSize
        switch rule {
        case .zero, .secondFactor:
            return [Float](repeating: 0, count: count)
        case .trainerLerp:
            let exponent = 1 - Double(layer) / Double(config.layerCount)
            return (0..<c).map { Float(1 - pow(Double($0) / Double(c), exponent)) }
        case .oneMinus:
            return try base.floats(source!).map { 1 - $0 }
        case .perChannel, .bonus:
            var values = try base.floats(source!)
            if values.count != c { values = values.flatMap { [Float](repeating: $0, count: n) } }   // per head
            if rule == .bonus, Self.storesTimeFirst(source) { values = values.map { expf($0) } }
            return values
        }
    }
}
