import Foundation
import RWKVText
import RWKVFormats
import RWKVModel

/// `rwkv-upgrade v6-to-v7`: reads an RWKV-6 checkpoint, builds the plan, computes the RWKV-7
/// tensors one at a time and writes them, then reports what was done.
public enum Upgrade {
    /// Output container, chosen by the output file's extension.
    public enum OutputFormat: String, Codable, Sendable {
        case pth = "torch zip (.pth)"
        case safetensors

        public init(path: String) throws {
            let lower = path.lowercased()
            if lower.hasSuffix(".safetensors") { self = .safetensors }
            else if lower.hasSuffix(".pth") || lower.hasSuffix(".pt") { self = .pth }
            else { throw RWKVError(path, "output must end in .pth (what the official trainer loads) or .safetensors") }
        }
    }

    /// - Parameters:
    ///   - dtype: .bf16 (official checkpoints) or .f32.
    ///   - sync: flush the output to disk before renaming it into place (`--sync`; see
    ///     `AtomicOutputFile`). Off by default, as for rwkv-convert.
    ///   - progress: called before each tensor with (blocks done, blocks, what is being made):
    ///     the blocks dominate the time and cost about the same each.
    ///   - fromEagle: the input must be an RWKV-5 (`v5-to-v7`, read as the RWKV-6 it equals), else an RWKV-6.
    public static func run(input: String, output: String, options: UpgradeOptions, dtype: DType = .bf16,
                           sync: Bool = false, fromEagle: Bool = false,
                           progress: ((Int, Int, String) -> Void)? = nil) throws -> UpgradeReport {
        guard dtype == .bf16 || dtype == .f32 else { throw RWKVError(nil, "output dtype must be bf16 or fp32") }
        let format = try OutputFormat(path: output)
        let started = Date()
        let source = try options.adapters.merged(into: try Checkpoint.open(input))
        let config = try RWKVConfig.detect(source)
        try requireSource(config, eagle: fromEagle, path: input)
        try config.requireGate(path: input, for: "an RWKV-7 (whose gate LoRA is fitted to it)")
        let plan = try UpgradePlan(source: config, options: options, path: input)
        let context = try UpgradeContext(source: source, plan: plan)
        let infos = plan.tensors.map { TensorInfo(name: $0.name, dtype: dtype, shape: $0.shape) }
        let byName = Dictionary(uniqueKeysWithValues: plan.tensors.map { ($0.name, $0) })
        var index = 0
        let produce: (TensorInfo) throws -> [UInt8] = { info in
            guard let tensor = byName[info.name] else { throw RWKVError(nil, "internal error: no plan for \(info.name)") }
            let layer = byName[info.name]?.layer
            progress?(layer ?? (index == 0 ? 0 : config.layerCount), config.layerCount,
                      layer.map { "block \($0 + 1)/\(config.layerCount): \(info.name)" } ?? info.name)
            index += 1
            var overflow = 0
            return try ElementCodec.encode(context.compute(tensor).values, as: dtype, overflowCount: &overflow)
        }
        let size = try write(format, to: output, tensors: infos, input: input, sync: sync, data: produce,
                             note: "\(config.eagle == nil ? "v6" : "v5")-to-v7 recipe=\(options.recipe.rawValue) seed=\(options.seed)")
        return UpgradeReport(input: input, output: output, format: format, plan: plan, dtype: dtype,
                             calibrationTokens: plan.calibrationTokens?.count,
                             layers: context.layerReports.values.sorted { $0.layer < $1.layer }, headFitNote: context.headNote,
                             stageSeconds: context.stageSeconds,
                             bytesWritten: size, seconds: Date().timeIntervalSince(started))
    }

    /// `values` in the output's element type.
    static func encode(_ values: [Float], _ dtype: DType) throws -> [UInt8] {
        var overflow = 0
        return try ElementCodec.encode(values, as: dtype, overflowCount: &overflow)
    }

    /// A tensor copied as stored, refused if it holds a NaN or infinite value (a copy must not pass
    /// on what every other path refuses).
    static func checkedCopy(_ source: TensorSource, _ name: String) throws -> [UInt8] {
        let bytes = try source.data(name)
        let found = bytes.withUnsafeBytes { NonFiniteCount.scan($0, as: source.info(name)?.dtype ?? .f32) }
        if found.count > 0 { throw found.error(path: source.path, tensor: name, advice: WeightLoader.nonFiniteAdvice) }
        return bytes
    }

    /// The output type as the command line names it (`--dtype bf16|fp32`).
    static func dtypeName(_ dtype: DType) -> String { dtype == .f32 ? "fp32" : dtype.rawValue }

    /// Writes the tensors `data` makes in `format`, never over `input`; returns the bytes written.
    static func write(_ format: OutputFormat, to output: String, tensors: [TensorInfo], input: String, sync: Bool,
                      data: (TensorInfo) throws -> [UInt8], note: String) throws -> Int {
        switch format {
        case .safetensors:
            try SafetensorsWriter.write(to: output, tensors: tensors, metadata: ["format": "pt", "rwkv-upgrade": note],
                                        inputs: [input], durable: sync, data: data)
        case .pth:
            try TorchWriter.write(to: output, tensors: tensors, inputs: [input], durable: sync, data: data)
        }
        return (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
    }

    /// The subcommand names the input's architecture: an RWKV-5 given to v6-to-v7 (or the other
    /// way round) is refused rather than upgraded under the wrong name.
    static func requireSource(_ config: RWKVConfig, eagle: Bool, path: String) throws {
        guard config.version == .v6 else { throw RWKVError(path, "is an RWKV-\(config.version.rawValue) checkpoint; v\(eagle ? 5 : 6)-to-v7 needs an RWKV-\(eagle ? 5 : 6) one") }
        if eagle, config.eagle == nil { throw RWKVError(path, "is an RWKV-6 checkpoint, not RWKV-5: use v6-to-v7") }
        if !eagle, let v = config.eagle { throw RWKVError(path, "is an RWKV-\(v.rawValue) checkpoint, not RWKV-6: use v5-to-v7 (or v5-to-v6)") }
    }
}

/// The `--json` report: what went in, what came out, and how each tensor was made.
public struct UpgradeReport: Codable, Sendable {
    public struct Tensor: Codable, Sendable {
        public let name: String
        public let shape: [Int]
        public let step: String
        public let sources: [String]
    }

    public let input: String
    public let output: String
    public let format: String
    public let recipe: UpgradeRecipeName
    public let seed: UInt64
    /// preserve: what the fits ran over ("built-in English text", the file's path, or "Gaussian
    /// stand-in"), and how many tokens of the text; nil for paper.
    public let calibration: String?
    public let calibrationTokens: Int?
    /// preserve: mappings put back to their plain counterparts (`--ablate`).
    public let ablations: [String]
    public let dtype: String
    public let source: RWKVConfig
    public let target: RWKVConfig
    /// "official" (the table of released RWKV-7 models), "trainer formula", or "given" per rank.
    public let rankOrigin: [String: String]
    public let tensors: [Tensor]
    public let unusedSourceTensors: [String]
    public let layers: [UpgradeLayerReport]
    /// preserve: what the head's refit did other than asked (nil: it ran as asked, or did not run).
    public let headFitNote: String?
    public let bytesWritten: Int
    public let seconds: Double
    /// Seconds per stage of the fits (`UpgradeStage` names); the rest of `seconds` is reading,
    /// copying and writing.
    public let stageSeconds: [String: Double]

    init(input: String, output: String, format: Upgrade.OutputFormat, plan: UpgradePlan, dtype: DType, calibrationTokens: Int?,
         layers: [UpgradeLayerReport], headFitNote: String?, stageSeconds: [UpgradeStage: Double], bytesWritten: Int, seconds: Double) {
        self.input = input
        self.output = output
        self.format = format.rawValue
        recipe = plan.options.recipe
        seed = plan.options.seed
        switch (plan.options.recipe, plan.calibration) {
        case (.paper, _): calibration = nil
        case (_, .standIn): calibration = "Gaussian stand-in" + (plan.calibrationFallback.map { " (\($0))" } ?? "")
        case (_, .builtIn): calibration = BuiltInCalibrationText.name
        case (_, .file(let path)): calibration = path
        }
        self.calibrationTokens = calibrationTokens
        ablations = PreserveMapping.allCases.filter(plan.options.ablations.contains).map(\.rawValue)
        self.dtype = Upgrade.dtypeName(dtype)
        source = plan.source
        target = plan.target
        let official = RWKV7Ranks.official[plan.source.embeddingSize] != nil ? "official" : "trainer formula"
        func origin(_ given: Int?) -> String { given == nil ? official : "given" }
        rankOrigin = ["decay": origin(plan.options.decayRank), "iclr": origin(plan.options.iclrRank),
                      "valueResidual": origin(plan.options.valueResidualRank), "gate": origin(plan.options.gateRank)]
        tensors = plan.tensors.map { Tensor(name: $0.name, shape: $0.shape, step: $0.step, sources: $0.sources) }
        unusedSourceTensors = plan.unusedSourceTensors
        self.layers = layers
        self.headFitNote = headFitNote
        self.bytesWritten = bytesWritten
        self.seconds = seconds
        self.stageSeconds = Dictionary(uniqueKeysWithValues: stageSeconds.map { ($0.key.rawValue, $0.value) })
    }

    /// A few lines for people.
    public var summary: String {
        var lines = ["upgraded \(Printable.escaped(input, limit: 1024)) (RWKV-\(source.eagle?.rawValue ?? "6"), \(source.layerCount)×\(source.embeddingSize)) -> \(Printable.escaped(output, limit: 1024))",
                     "recipe \(recipe.rawValue), seed \(seed), \(dtype), \(tensors.count) tensors, \(formatBytes(bytesWritten)), \(String(format: "%.1f", seconds)) s",
                     calibration.map { "calibration: " + Printable.escaped($0, limit: 1024) + (calibrationTokens.map { ", \($0) tokens" } ?? "") }
                         ?? "calibration: none (paper)",
                     "ranks: decay \(target.decayRank), iclr \(target.iclrRank), value \(target.valueResidualRank), gate \(target.gateRank) (\(rankOrigin["gate"] ?? "")); FFN \(source.ffnSize) -> \(target.ffnSize)"]
        let clamped = layers.compactMap(\.decayClampedChannels).reduce(0, +)
        if layers.contains(where: { $0.decayClampedChannels != nil }) {
            lines.append("decay channels faster than RWKV-7 allows (clamped): \(clamped) of \(source.layerCount * source.embeddingSize)")
        }
        let gateErrors = layers.compactMap(\.gateRelativeError)
        if !gateErrors.isEmpty {
            lines.append("gate relative error per layer: " + gateErrors.map { String(format: "%.3f", $0) }.joined(separator: " "))
        }
        return lines.joined(separator: "\n")
    }
}
