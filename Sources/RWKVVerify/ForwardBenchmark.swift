import Foundation
import RWKVModel

/// Prompt-processing speed of both forward modes: the prompt goes through the model from the zero
/// state and only the last position's logits are computed (what a generator needs before
/// sampling its first token). Used by bench/bench-forward.sh through `rwkv-verify bench`.
public struct ForwardBenchmark: Codable, Sendable {
    public let model: ModelSummary
    public let tokens: Int
    public let repeats: Int
    public let loadSeconds: Double
    /// Best (shortest) wall time of `repeats` runs, after one warm-up run; nil for a mode not run.
    public let rnnSeconds: Double?
    public let sequenceSeconds: Double?
    public let rnnTokensPerSecond: Double?
    public let sequenceTokensPerSecond: Double?

    init(model: ModelSummary, tokens: Int, repeats: Int, loadSeconds: Double, rnnSeconds: Double?, sequenceSeconds: Double?) {
        self.model = model
        self.tokens = tokens
        self.repeats = repeats
        self.loadSeconds = loadSeconds
        self.rnnSeconds = rnnSeconds
        self.sequenceSeconds = sequenceSeconds
        rnnTokensPerSecond = rnnSeconds.map { Double(tokens) / $0 }
        sequenceTokensPerSecond = sequenceSeconds.map { Double(tokens) / $0 }
    }

    public static func run(_ model: RWKVLanguageModel, tokens: [Int], modes: [ForwardMode] = ForwardMode.allCases,
                           repeats: Int, loadSeconds: Double) throws -> ForwardBenchmark {
        func best(_ mode: ForwardMode) throws -> Double {
            var state = model.makeState()
            _ = try model.forward(tokens, state: &state, mode: mode, positions: .last)   // warm-up: scratch space, page-in
            var fastest = Double.infinity
            for _ in 0..<max(repeats, 1) {
                state = model.makeState()
                let start = ContinuousClock.now
                _ = try model.forward(tokens, state: &state, mode: mode, positions: .last)
                fastest = min(fastest, (ContinuousClock.now - start).seconds)
            }
            return fastest
        }
        return ForwardBenchmark(model: ModelSummary(model), tokens: tokens.count, repeats: max(repeats, 1), loadSeconds: loadSeconds,
                                rnnSeconds: modes.contains(.rnn) ? try best(.rnn) : nil,
                                sequenceSeconds: modes.contains(.sequence) ? try best(.sequence) : nil)
    }

    public var text: String {
        var lines = ["model     \(model.text)",
                     "prompt    \(tokens) tokens, best of \(repeats) after a warm-up (load \(String(format: "%.2f", loadSeconds)) s)"]
        if let s = rnnSeconds { lines.append("rnn       " + String(format: "%8.3f s  %8.1f tokens/s", s, Double(tokens) / s)) }
        if let s = sequenceSeconds { lines.append("sequence  " + String(format: "%8.3f s  %8.1f tokens/s", s, Double(tokens) / s)) }
        return lines.joined(separator: "\n")
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
