import ArgumentParser
import Foundation
import RWKVCommandLine
import RWKVFormats
import RWKVModel
import RWKVUpgrade

struct RWKVUpgradeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rwkv-upgrade",
        abstract: "Build newer-architecture checkpoints from older trained ones, ready for continued training.",
        subcommands: [ToV7<FromRWKV6>.self, V5ToV6.self, ToV7<FromRWKV5>.self, V7ToX.self, V6ToGoldFinch.self])
}

enum RecipeArgument: String, ExpressibleByArgument, CaseIterable {
    case paper, preserve
}

enum DTypeArgument: String, ExpressibleByArgument, CaseIterable {
    case bf16, fp32
}

/// What every upgrade takes: the files, the seed of its random parts, the stored type, and how
/// the result is reported and written.
struct UpgradeFiles: ParsableArguments {
    @Argument(help: "The checkpoint to upgrade (.pth, .safetensors or a Hugging Face folder).")
    var input: String

    @Argument(help: "The checkpoint to write: .pth (what the official trainer loads) or .safetensors.")
    var output: String

    @Option(help: "Seed of the new random parameters.")
    var seed: UInt64 = 0

    @Option(help: "Element type of the written tensors.")
    var dtype: DTypeArgument = .bf16

    @Flag(help: "Print a JSON report of what was done on stdout.")
    var json = false

    @Flag(help: "Flush the output to disk before moving it into place, so a power cut cannot leave it short (slower).")
    var sync = false

    var outputType: DType { dtype == .bf16 ? .bf16 : .f32 }

    /// Runs an upgrade under a progress bar and prints its report (JSON with --json).
    func run<Report: Encodable>(_ upgrade: (_ progress: @escaping (Int, Int, String) -> Void) throws -> Report,
                                summary: (Report) -> String) throws {
        let bar = ProgressBar(total: 1, label: "upgrading")
        defer { bar.finish() }
        let report = try upgrade(bar.callback)
        bar.finish()
        print(json ? try RWKVCommandLine.json(report) : summary(report))
    }
}

/// What v6-to-v7 and v5-to-v7 share: everything but the input's architecture.
struct ToV7Arguments: ParsableArguments {
    @OptionGroup var files: UpgradeFiles

    @Option(help: "preserve: keep the RWKV-6 behaviour as closely as possible, calibrated on text (the best start for continued training, docs/upgrade.md). paper: the published recipe (RWKV-7 paper, section 6).")
    var recipe: RecipeArgument = .preserve

    @Option(name: .customLong("ffn-mult"), help: "RWKV-7 FFN width as a multiple of n_embd.")
    var ffnMult: Double = 4

    @Option(name: .customLong("gate-rank"), help: "Gate LoRA rank (default: the official RWKV-7 model of this width).")
    var gateRank: Int?

    @Option(name: .customLong("decay-rank"), help: "Decay LoRA rank.")
    var decayRank: Int?

    @Option(name: .customLong("iclr-rank"), help: "In-context learning rate LoRA rank.")
    var iclrRank: Int?

    @Option(name: .customLong("value-rank"), help: "Value residual LoRA rank.")
    var valueRank: Int?

    @Option(help: "preserve: the text to run the RWKV-6 model over, whose real activations the fits use (default: a built-in English text; bytes for byte-level vocabularies, the World tokenizer for 65536 tokens). Text like the model's training data is best.")
    var calibrate: String?

    @Flag(name: .customLong("no-calibrate"), help: "preserve: fit on a Gaussian stand-in for the activations instead of text.")
    var noCalibrate = false

    @Option(name: .customLong("fit-tokens"), help: "preserve: tokens the fits run over (the Gaussian stand-in's batch, or the first tokens of the calibration text; default 4096).")
    var fitTokens: Int?

    @Option(help: "Threads for the matrix work (OpenBLAS; default: its own choice, one per core). On a busy machine 1 is often faster.")
    var threads: Int?

    @OptionGroup var adapters: AdapterArguments

    func run(fromEagle: Bool) throws {
        do {
            var options = UpgradeOptions()
            options.adapters = adapters.list
            options.recipe = recipe == .paper ? .paper : .preserve
            options.ffnMultiplier = ffnMult
            options.gateRank = gateRank
            options.decayRank = decayRank
            options.iclrRank = iclrRank
            options.valueResidualRank = valueRank
            options.seed = files.seed
            if let fitTokens { options.fitTokens = fitTokens }
            if noCalibrate && calibrate != nil { throw RWKVError(nil, "give --calibrate FILE or --no-calibrate, not both") }
            options.calibration = noCalibrate ? .standIn : calibrate.map(CalibrationSource.file)
            if let threads {
                guard (1...1024).contains(threads) else { throw RWKVError(nil, "--threads must be between 1 and 1024") }
                OpenBLAS.setThreads(threads)
            }
            let bar = ProgressBar(total: 1, label: "upgrading", showsTimeLeft: true)
            defer { bar.finish() }
            let report = try Upgrade.run(input: files.input, output: files.output, options: options,
                                             dtype: files.outputType, sync: files.sync, fromEagle: fromEagle,
                                             progress: bar.callback)
            bar.finish()
            print(files.json ? try RWKVCommandLine.json(report) : report.summary)
        }
    }
}

/// The architecture an upgrade to RWKV-7 reads: one command type for both subcommands.
protocol UpgradeSource {
    static var commandName: String { get }
    static var abstract: String { get }
    /// RWKV-5, read as the RWKV-6 it equals.
    static var eagle: Bool { get }
}

enum FromRWKV6: UpgradeSource {
    static let commandName = "v6-to-v7", abstract = "Upgrade an RWKV-6 checkpoint to RWKV-7 (see docs/upgrade.md).", eagle = false
}

enum FromRWKV5: UpgradeSource {
    static let commandName = "v5-to-v7", eagle = true
    static let abstract = "Upgrade an RWKV-5.1/5.2 checkpoint to RWKV-7, through the RWKV-6 it equals (see docs/upgrade.md)."
}

struct ToV7<Source: UpgradeSource>: ParsableCommand {
    static var configuration: CommandConfiguration { CommandConfiguration(commandName: Source.commandName, abstract: Source.abstract) }

    @OptionGroup var arguments: ToV7Arguments

    func run() throws { try arguments.run(fromEagle: Source.eagle) }
}

struct V5ToV6: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "v5-to-v6",
        abstract: "Write the RWKV-6 an RWKV-5.1/5.2 checkpoint equals, with LoRAs that can learn (exact; see docs/upgrade.md).",
        discussion: "--seed draws the LoRAs' second factors (uniform ±0.01, as RWKV-LM initialises them).")

    @OptionGroup var files: UpgradeFiles

    func run() throws {
        try files.run({ try EagleUpgrade.run(input: files.input, output: files.output, seed: files.seed, dtype: files.outputType,
                                             sync: files.sync, progress: $0) }, summary: \.summary)
    }
}

extension HybridUpgrade.Recipe: ExpressibleByArgument {}

struct V7ToX: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "v7-to-x",
        abstract: "Write an RWKV-X (RWKV-7 with attention blocks) from an RWKV-7, for the RWKV-X trainer and package (docs/upgrade.md).",
        discussion: "The RWKV-7 tensors are kept bit for bit under rwkv.; attention blocks moba.N. are added where the rwkv-x package runs them.")

    @OptionGroup var files: UpgradeFiles

    @Option(help: "preserve: the attention blocks add nothing until trained (zero output projections), so the logits are the RWKV-7's. rwkv-x: the published init (init_moba_from_rwkv), which changes them.")
    var recipe: HybridUpgrade.Recipe = .preserve

    @Option(help: "Attention blocks: 1 (after all RWKV-7 blocks) or a divisor of the depth (one after each group). Default: the published configuration (8 for 32 layers, else 1).")
    var blocks: Int?

    func run() throws {
        try files.run({ try HybridUpgrade.run(input: files.input, output: files.output, recipe: recipe, blocks: blocks, seed: files.seed,
                                              dtype: files.outputType, sync: files.sync, progress: $0) }, summary: \.summary)
    }
}

extension GoldFinchUpgrade.Recipe: ExpressibleByArgument {}

struct V6ToGoldFinch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "v6-to-goldfinch",
        abstract: "Write a GoldFinch (Finch with GOLD attention layers on top) from an RWKV-6, for the GoldFinch repository's upgrade configuration (docs/upgrade.md).",
        discussion: "The Finch's blocks are kept bit for bit; GOLD blocks are added until the repository's split rule puts exactly them below the split.")

    @OptionGroup var files: UpgradeFiles

    @Option(help: "preserve: the GOLD blocks add nothing until trained (zero output projections), so the logits are the Finch's. goldfinch: what the repository's goldfinch_upgrade.yaml with load_partial gives.")
    var recipe: GoldFinchUpgrade.Recipe = .preserve

    @Option(help: "The repository's inv_other_layer_ratio: the GOLD blocks are the top 1/ratio of the depth (goldfinch_upgrade.yaml: 6).")
    var ratio: Double = GoldFinchUpgrade.upgradeRatio

    func run() throws {
        try files.run({ try GoldFinchUpgrade.run(input: files.input, output: files.output, recipe: recipe, ratio: ratio, seed: files.seed,
                                                 dtype: files.outputType, sync: files.sync, progress: $0) }, summary: \.summary)
    }
}

RWKVCommandLine.main(RWKVUpgradeCommand.self)
