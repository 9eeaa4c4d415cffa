import ArgumentParser
import Foundation
import RWKVText
import RWKVCommandLine
import RWKVFormats
import RWKVModel
import RWKVVerify

struct RWKVVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rwkv-verify",
        abstract: "Run the Swift reference forward pass and compare its logits with the official implementation's or another model's.",
        discussion: "Exit status: 0 within tolerance, 1 outside, 2 bad input.",
        subcommands: [Verify.self, Bench.self],
        defaultSubcommand: Verify.self)
}

/// `rnn`, `seq` or `both`.
enum ModeChoice: String, ExpressibleByArgument {
    case rnn, seq, both
    var modes: [ForwardMode] {
        switch self {
        case .rnn: return [.rnn]
        case .seq: return [.sequence]
        case .both: return [.rnn, .sequence]
        }
    }
}

struct TokenOptions: ParsableArguments {
    @Option(help: "Comma-separated token ids.")
    var tokens: String?

    @Option(help: "Use N random token ids instead of --tokens.")
    var random: Int?

    @Option(help: "Seed of --random (the same ids on every machine).")
    var seed: UInt64 = 1

    func resolve(vocab: Int, defaultCount: Int) throws -> [Int] {
        if tokens != nil && random != nil { throw RWKVError(nil, "give either --tokens or --random, not both") }
        if let tokens { return try TokenList.parse(tokens) }
        let count = random ?? defaultCount
        guard count > 0, count <= 1_000_000 else { throw RWKVError(nil, "--random needs a count between 1 and 1000000") }
        return TokenList.random(count: count, vocab: vocab, seed: seed)
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare a model's logits with a fixture (--fixture) or with another model (--against).",
        usage: """
            rwkv-verify MODEL --fixture EXPECTED.safetensors [--tolerance X] [--mode rnn|seq|both] [--json]
            rwkv-verify MODEL --against OTHER [--tokens 1,2,3 | --random N] [--seed S] [--tolerance X] [--json]
            rwkv-verify MODEL --text FILE [--against REFERENCE] [--chunk N] [--chunks M] [--vocab FILE] [--json]
            """)

    @Argument(help: "The model to check: .pth, .safetensors or .gguf.")
    var model: String

    @Option(help: "Expected logits: safetensors with `tokens` [T] and `logits` [T, V] from the official package.")
    var fixture: String?

    @Option(help: "Another model (any RWKV version, same vocabulary) to compare with on the same tokens.")
    var against: String?

    @OptionGroup var tokenOptions: TokenOptions

    @Option(help: "A text file: perplexity and mean NLL over it in chunks, as llama-perplexity (with --against: KL divergence, top-1 agreement and the perplexity ratio, as llama-perplexity --kl-divergence).")
    var text: String?

    @Option(help: "Tokens per chunk of --text (llama-perplexity's -c; default \(TextChunks.defaultSize)).")
    var chunk: Int?

    @Option(help: "Score at most this many chunks of --text.")
    var chunks: Int?

    @Option(help: "A World-format vocabulary file for --text (default: bytes for ≤ 256-row models, the bundled World vocabulary for 65536 rows).")
    var vocab: String?

    @Option(help: "RWKV-X attention memory kept after a prefill: tokens=N or ratio=R (default: the fixture's recorded setting, else the rwkv-x package's tokens=128).")
    var memory: String?

    @Option(help: "Maximum |Δlogit| accepted against the reference (default 1e-4, fp32 arithmetic noise).")
    var tolerance: Float?

    @Option(help: "Maximum |Δlogit| accepted between RNN and sequence mode (default \(Tolerance.modes)).")
    var modeTolerance: Float?

    @Option(name: .customLong("mode"), help: "rnn (token by token), seq (blocks of tokens, GEMMs) or both (also checks they agree; the default).")
    var modeChoice: ModeChoice?
    var mode: ModeChoice { modeChoice ?? .both }
    var modeGiven: Bool { modeChoice != nil }

    @Flag(help: "Print the report as JSON.")
    var json = false

    func run() throws {
        do {
            // An option that does not apply to the mode is an error, not ignored.
            if let text {
                let given = [("--tolerance", tolerance != nil), ("--mode-tolerance", modeTolerance != nil), ("--mode", modeGiven)]
                if let (option, _) = given.first(where: \.1) {
                    throw RWKVError(nil, "\(option) applies to --fixture and --against, not to --text (which measures, and passes unless the input is bad)")
                }
                try evaluateText(text)
                return
            }
            let textOnly = [("--chunk", chunk != nil), ("--chunks", chunks != nil), ("--vocab", vocab != nil)]
            if let (option, _) = textOnly.first(where: \.1) { throw RWKVError(nil, "\(option) applies to --text only") }
            guard (fixture == nil) != (against == nil) else { throw RWKVError(nil, "give exactly one of --fixture or --against") }
            let tolerance = self.tolerance ?? Tolerance.fp32, modeTolerance = self.modeTolerance ?? Tolerance.modes
            guard tolerance >= 0, modeTolerance >= 0 else { throw RWKVError(nil, "tolerances must be non-negative") }
            let expected = try fixture.map(LogitFixture.init(path:))
            let subject = try load(model, fixtureMemory: expected?.memory)
            let report: VerificationReport
            if let expected {
                if tokenOptions.tokens != nil || tokenOptions.random != nil {
                    throw RWKVError(nil, "--tokens and --random go with --against; a fixture brings its own tokens")
                }
                try requireMemoryUsed(subject)
                report = try Verifier.verify(subject, fixture: expected, modes: mode.modes,
                                             tolerance: tolerance, modeTolerance: modeTolerance)
            } else {
                let reference = try load(against!, fixtureMemory: nil)
                try requireMemoryUsed(subject, reference)
                let tokens = try tokenOptions.resolve(vocab: min(subject.config.vocabSize, reference.config.vocabSize), defaultCount: 32)
                report = try Verifier.compare(subject, against: reference, tokens: tokens, modes: mode.modes,
                                              tolerance: tolerance, modeTolerance: modeTolerance)
            }
            print(json ? try RWKVCommandLine.json(report) : report.text)
            if !report.passed { throw CommandOutcome(status: ExitStatus.outsideTolerance) }
        }
    }

    /// A model with the RWKV-X memory setting of --memory, else the fixture's.
    private func load(_ path: String, fixtureMemory: AttentionMemory?) throws -> RWKVLanguageModel {
        try RWKVModelLoader.load(path: path, memory: try memory.map(AttentionMemory.init(parsing:)) ?? fixtureMemory)
    }

    /// Refuses --memory when no model of the run is an RWKV-X (it would be ignored).
    private func requireMemoryUsed(_ models: RWKVLanguageModel...) throws {
        if memory != nil, !models.contains(where: { $0.config.attentionBlocks > 0 }) {
            throw RWKVError(models[0].path, "--memory applies to RWKV-X models (with attention blocks) only")
        }
    }

    /// `--text`: a measurement, not a check, so it passes unless the input is bad.
    private func evaluateText(_ path: String) throws {
        guard fixture == nil, tokenOptions.tokens == nil, tokenOptions.random == nil else {
            throw RWKVError(nil, "--text brings its own tokens: it goes without --fixture, --tokens and --random")
        }
        let subject = try load(model, fixtureMemory: nil)
        let reference = try against.map { try load($0, fixtureMemory: nil) }
        if let reference { try requireMemoryUsed(subject, reference) } else { try requireMemoryUsed(subject) }
        let chunks = try TextChunks(textFile: path, vocabularySize: subject.config.vocabSize, vocabularyPath: vocab,
                                    size: chunk ?? TextChunks.defaultSize, maxChunks: self.chunks)
        if let reference {
            let progress = ProgressBar(total: chunks.count * chunks.size, label: "KL divergence")
            defer { progress.finish() }
            let report = try TextEvaluation.compare(subject, against: reference, chunks: chunks, progress: progress.callback)
            progress.finish()
            print(json ? try RWKVCommandLine.json(report) : report.report)
        } else {
            let progress = ProgressBar(total: chunks.count * chunks.size, label: "perplexity")
            defer { progress.finish() }
            let report = try TextEvaluation.perplexity(subject, chunks: chunks, progress: progress.callback)
            progress.finish()
            print(json ? try RWKVCommandLine.json(report) : report.report)
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time prompt processing in RNN and sequence mode (used by bench/bench-forward.sh).",
        shouldDisplay: false)

    @Argument(help: "The model.")
    var model: String

    @OptionGroup var tokenOptions: TokenOptions

    @Option(help: "rnn, seq or both.")
    var mode: ModeChoice = .both

    @Option(help: "Timed runs per mode after a warm-up; the fastest counts.")
    var repeats: Int = 3

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        do {
            let start = ContinuousClock.now
            let subject = try RWKVModelLoader.load(path: model)
            let loaded = ContinuousClock.now - start
            let tokens = try tokenOptions.resolve(vocab: subject.config.vocabSize, defaultCount: 64)
            let load = Double(loaded.components.seconds) + Double(loaded.components.attoseconds) * 1e-18
            let result = try ForwardBenchmark.run(subject, tokens: tokens, modes: mode.modes, repeats: repeats, loadSeconds: load)
            print(json ? try RWKVCommandLine.json(result) : result.text)
        }
    }
}

RWKVCommandLine.main(RWKVVerifyCommand.self)
