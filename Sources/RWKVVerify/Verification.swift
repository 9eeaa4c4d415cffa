import Foundation
import RWKVFormats
import RWKVModel

/// Default tolerances, justified in docs/verify.md.
public enum Tolerance {
    /// Max |Δlogit| against fp32 logits of the official package on the same weights. Both sides
    /// compute in f32 and differ only in summation order (OpenBLAS vs MKL, Double-accumulated
    /// norms). Measured on the fixtures (2 layers × 128, logits up to ~8): ≤ 1.3e-5 in every mode;
    /// on the 12 × 768 benchmark model (logits up to ~13): 6.3e-5. A real mistake (a swapped
    /// lerp, a transposed LoRA) moves logits by 0.2 or more. Deeper and wider models accumulate
    /// more rounding noise: give real checkpoints a looser --tolerance (docs/verify.md).
    public static let fp32: Float = 1e-4
    /// Max |Δlogit| between our RNN and sequence modes: the same arithmetic, GEMV vs GEMM order.
    /// Measured ≤ 4.3e-6 on the fixtures, 3.0e-5 on the benchmark model.
    public static let modes: Float = 1e-4
}

/// A short description of a model for reports.
public struct ModelSummary: Codable, Sendable, Equatable {
    public let path: String
    public let version: Int
    public let layers: Int
    public let embeddingSize: Int
    public let vocabSize: Int
    /// "5.0", "5.1" or "5.2" for an RWKV-5 (run as the RWKV-6 it equals, so `version` is 6).
    public let eagle: String?
    /// An RWKV-X (`version` 7, `layers` its RWKV-7 blocks): its attention blocks and the memory
    /// setting this run used (`tokens=N` or `ratio=R`); nil for other models.
    public let attentionBlocks: Int?
    public let memory: String?
    /// A GoldFinch (`version` 6): each layer's kind, "x060", "c2" or "gold"; nil for other models.
    public let goldFinchLayers: [String]?

    public init(_ model: RWKVLanguageModel) {
        path = model.path
        version = model.config.version.rawValue
        layers = model.config.layerCount
        embeddingSize = model.config.embeddingSize
        vocabSize = model.config.vocabSize
        eagle = model.config.eagle?.rawValue
        let hybrid = model as? RWKVXModel
        attentionBlocks = hybrid?.config.attentionBlocks
        memory = hybrid?.memory.description
        goldFinchLayers = (model as? GoldFinchModel)?.goldFinch.layers.map(\.rawValue)
    }

    var text: String {
        var architecture = "RWKV-\(version), \(layers) layers × \(embeddingSize)"
        if let eagle { architecture = "RWKV-\(eagle) run as RWKV-6, \(layers) layers × \(embeddingSize)" }
        if let attentionBlocks, let memory {
            architecture = "RWKV-X, \(layers) RWKV-7 + \(attentionBlocks) attention block\(attentionBlocks == 1 ? "" : "s") × \(embeddingSize), memory \(memory)"
        }
        if let goldFinchLayers { architecture = "GoldFinch, \(GoldFinchConfig.describe(goldFinchLayers)) × \(embeddingSize)" }
        return "\(Printable.escaped(path, limit: 1024)) (\(architecture), vocab \(vocabSize))"
    }
}

/// The outcome of `rwkv-verify`: one check per comparison, each with per-position figures.
public struct VerificationReport: Codable, Sendable {
    public struct Check: Codable, Sendable {
        /// e.g. "rnn vs reference", "sequence vs reference", "rnn vs sequence".
        public let name: String
        public let tolerance: Float
        public let passed: Bool
        public let summary: LogitComparison.Summary
        public let positions: [LogitComparison.Position]

        init(name: String, reference: [[Float]], model: [[Float]], tolerance: Float) {
            let comparison = LogitComparison(reference: reference, model: model)
            self.name = name
            self.tolerance = tolerance
            passed = comparison.isWithin(tolerance)
            summary = comparison.summary
            positions = comparison.positions
        }
    }

    public let model: ModelSummary
    /// The fixture file, when verifying against one.
    public let fixture: String?
    public let fixtureMetadata: [String: String]?
    /// The other model, when comparing two models.
    public let referenceModel: ModelSummary?
    public let tokens: [Int]
    public let checks: [Check]
    /// Every check within its tolerance.
    public let passed: Bool

    init(model: ModelSummary, fixture: String?, fixtureMetadata: [String: String]?, referenceModel: ModelSummary?,
         tokens: [Int], checks: [Check]) {
        self.model = model
        self.fixture = fixture
        self.fixtureMetadata = fixtureMetadata
        self.referenceModel = referenceModel
        self.tokens = tokens
        self.checks = checks
        passed = checks.allSatisfy(\.passed)
    }

    /// The human-readable report: per-position figures for each check, then a verdict.
    public var text: String {
        var lines = ["model      \(model.text)"]
        if let fixture {
            lines.append("reference  \(Printable.escaped(fixture, limit: 1024)) (\(tokens.count) tokens)")
            for (key, value) in (fixtureMetadata ?? [:]).sorted(by: { $0.key < $1.key }) {
                lines.append("           \(Printable.escaped(key)): \(Printable.escaped(value))")   // from the fixture file
            }
        }
        if let referenceModel { lines.append("reference  \(referenceModel.text), \(tokens.count) tokens") }
        for check in checks {
            lines.append("")
            lines.append("\(check.name)   (tolerance: max |Δlogit| ≤ \(sci(check.tolerance)))")
            lines.append("   pos  token   max|Δ|     rms Δ      top-1  top-5  KL(ref‖model)")
            for (t, p) in check.positions.enumerated() {
                lines.append(pad(String(t), 6) + pad(String(tokens[t]), 7) + "   " + sci(p.maxAbsDelta) + "   " + sci(p.rmsDelta)
                             + "   " + (p.top1Agrees ? "yes  " : "NO   ") + "  \(p.top5Overlap)/5   " + sci(p.kl))
            }
            let s = check.summary
            lines.append("   all          " + sci(s.maxAbsDelta) + "   " + sci(s.rmsDelta) + "   "
                         + String(format: "%5.1f%%  %.2f   mean %@ max %@", s.top1Agreement * 100, s.meanTop5Overlap, sci(s.meanKL), sci(s.maxKL))
                         + "   " + (check.passed ? "PASS" : "FAIL"))
        }
        lines.append("")
        let worst = checks.filter { !$0.passed }.map(\.name)
        lines.append(passed ? "result: PASS" : "result: FAIL (\(worst.joined(separator: ", ")) outside tolerance)")
        return lines.joined(separator: "\n")
    }

    private func sci(_ x: Float) -> String { sci(Double(x)) }
    private func sci(_ x: Double) -> String { x.isNaN ? "      nan" : String(format: "%9.2e", x) }
    private func pad(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
}

public enum Verifier {
    /// 2^28 floats (1 GiB) of logits per model and mode at most, for comparisons on generated tokens.
    public static let maxLogitValues = 1 << 28

    /// Runs the fixture's tokens through `model` in each mode and compares with its logits;
    /// with both modes, also checks the modes against each other.
    public static func verify(_ model: RWKVLanguageModel, fixture: LogitFixture, modes: [ForwardMode],
                              tolerance: Float = Tolerance.fp32, modeTolerance: Float = Tolerance.modes) throws -> VerificationReport {
        let V = model.config.vocabSize
        guard fixture.vocabSize == V else {
            throw RWKVError(fixture.path, "logits have \(fixture.vocabSize) entries per position but the model's vocabulary has \(V)")
        }
        if let bad = fixture.tokens.first(where: { $0 >= V }) {
            throw RWKVError(fixture.path, "token id \(bad) is outside the model's vocabulary (0..<\(V))")
        }
        let outputs = try modes.map { (mode: $0, logits: try calls(fixture.calls, of: fixture.tokens, through: model, mode: $0)) }
        var checks = outputs.map {
            VerificationReport.Check(name: "\($0.mode.rawValue) vs reference", reference: fixture.logits, model: $0.logits, tolerance: tolerance)
        }
        if outputs.count == 2 {
            checks.append(.init(name: "rnn vs sequence", reference: outputs[0].logits, model: outputs[1].logits, tolerance: modeTolerance))
        }
        return VerificationReport(model: ModelSummary(model), fixture: fixture.path, fixtureMetadata: fixture.metadata,
                                  referenceModel: nil, tokens: fixture.tokens, checks: checks)
    }

    /// The logits of every token, run through `model` from the zero state in calls of `counts` tokens.
    static func calls(_ counts: [Int], of tokens: [Int], through model: RWKVLanguageModel, mode: ForwardMode) throws -> [[Float]] {
        var state = model.makeState(), rows: [[Float]] = [], start = 0
        for n in counts {
            rows += try model.forward(Array(tokens[start ..< start + n]), state: &state, mode: mode, positions: .all).rows
            start += n
        }
        return rows
    }

    /// Runs the same tokens through two models (any versions with the same vocabulary) and
    /// compares `model` against `reference` in each mode; with both modes, each model's modes
    /// are also checked against each other.
    public static func compare(_ model: RWKVLanguageModel, against reference: RWKVLanguageModel, tokens: [Int],
                               modes: [ForwardMode], tolerance: Float = Tolerance.fp32,
                               modeTolerance: Float = Tolerance.modes) throws -> VerificationReport {
        guard model.config.vocabSize == reference.config.vocabSize else {
            throw RWKVError(reference.path, "vocabulary size \(reference.config.vocabSize) differs from \(model.path)'s \(model.config.vocabSize)")
        }
        guard !tokens.isEmpty else { throw RWKVError(nil, "no tokens to compare on") }
        // Both models' logits for every position are held at once, per mode: keep that bounded.
        guard tokens.count <= maxLogitValues / max(model.config.vocabSize, 1) else {
            throw RWKVError(nil, "\(tokens.count) tokens × vocabulary \(model.config.vocabSize) is too many logits to compare; use fewer tokens")
        }
        let ours = try modes.map { try model.logits(tokens, mode: $0).rows }
        let theirs = try modes.map { try reference.logits(tokens, mode: $0).rows }
        var checks = modes.indices.map {
            VerificationReport.Check(name: "\(modes[$0].rawValue): model vs reference", reference: theirs[$0], model: ours[$0], tolerance: tolerance)
        }
        if modes.count == 2 {
            checks.append(.init(name: "model rnn vs sequence", reference: ours[0], model: ours[1], tolerance: modeTolerance))
            checks.append(.init(name: "reference rnn vs sequence", reference: theirs[0], model: theirs[1], tolerance: modeTolerance))
        }
        return VerificationReport(model: ModelSummary(model), fixture: nil, fixtureMetadata: nil,
                                  referenceModel: ModelSummary(reference), tokens: tokens, checks: checks)
    }
}
