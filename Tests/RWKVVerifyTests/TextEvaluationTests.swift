import Foundation
import Testing
import RWKVText
import RWKVFormats
import RWKVModel
@testable import RWKVVerify

private let root = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
private let text = root + "/fixtures/text/english.txt"

/// `--text` against the official `rwkv` package: fixtures/expected/text/<model>.text.safetensors
/// holds, for fixtures/text/english.txt in chunks of 256 byte tokens, the per-token NLL the
/// package computed (sequence mode, fresh state per chunk, cpu fp32; fixtures/text_fixtures.py).
///
/// Tolerance 1e-4 per token: NLL = logsumexp(logits) − logit[next], so |ΔNLL| ≤ 2·max|Δlogit|,
/// and our logits match the package's within 1.3e-5 on these models (docs/verify.md); 256-token
/// chunks run longer than the logit fixtures (24–48 tokens), so the state has more steps to
/// drift in: measured max |ΔNLL| is given in docs/verify.md. A real mistake (a wrong token, a
/// state not reset between chunks) moves NLLs by 0.01 or more.
struct TextEvaluationTests {
    static let chunk = 256

    static func expected(_ model: String) throws -> (tokens: [Int], nll: [Float], chunks: Int) {
        let source = try ModelFile.open(root + "/fixtures/expected/text/\(model).text.safetensors")
        let raw = try source.data("tokens")
        let tokens = stride(from: 0, to: raw.count, by: 4).map {
            Int(Int32(bitPattern: UInt32(raw[$0]) | UInt32(raw[$0 + 1]) << 8 | UInt32(raw[$0 + 2]) << 16 | UInt32(raw[$0 + 3]) << 24))
        }
        let nll = try source.floats("nll")
        return (tokens, nll, nll.count / (chunk - 1))
    }

    @Test(arguments: ["rwkv7-tiny-fp32", "rwkv6-tiny-fp32"])
    func perTokenNLLMatchesTheOfficialPackage(_ name: String) throws {
        let model = try RWKVModelLoader.load(path: root + "/fixtures/models/\(name).pth")
        let chunks = try TextChunks(textFile: text, vocabularySize: model.config.vocabSize, size: Self.chunk)
        let expected = try Self.expected(name)
        #expect(Array(chunks.tokens.prefix(expected.tokens.count)) == expected.tokens)
        #expect(chunks.count == expected.chunks)

        // Every position of every chunk (not only the scored half), each against the next token.
        var worst: Float = 0
        for c in 0..<chunks.count {
            var p = 0
            try TextEvaluation.score(chunks.chunk(c), scored: 0..<(Self.chunk - 1), models: [model]) { rows, target in
                let ours = Float(TextEvaluation.negativeLogLikelihood(rows[0], target: target))
                worst = max(worst, abs(ours - expected.nll[c * (Self.chunk - 1) + p]))
                p += 1
            }
            #expect(p == Self.chunk - 1)
        }
        #expect(worst < 1e-4, "max |ΔNLL| \(worst)")

        // The report: llama-perplexity's scored half only.
        let report = try TextEvaluation.perplexity(model, chunks: chunks)
        var sum = 0.0
        for c in 0..<chunks.count { for p in chunks.scoredPositions { sum += Double(expected.nll[c * (Self.chunk - 1) + p]) } }
        let officialMean = sum / Double(chunks.scoredTokenCount)
        #expect(report.text.scoredTokens == chunks.count * 127)
        #expect(abs(report.meanNLL - officialMean) < 1e-5, "mean NLL \(report.meanNLL) vs official \(officialMean)")
        #expect(abs(report.perplexity - exp(officialMean)) / exp(officialMean) < 1e-5)
        #expect(report.perTokenNLL.count == chunks.scoredTokenCount)
    }

    @Test func comparisonOfAModelWithItselfIsExact() throws {
        let path = root + "/fixtures/models/rwkv7-tiny-fp32.pth"
        let a = try RWKVModelLoader.load(path: path), b = try RWKVModelLoader.load(path: path)
        let chunks = try TextChunks(textFile: text, vocabularySize: 256, size: 64, maxChunks: 4)
        let report = try TextEvaluation.compare(a, against: b, chunks: chunks)
        #expect(report.sameTop == 1)
        #expect(report.meanKLD == 0 && report.kld.maximum == 0)
        #expect(report.perplexityRatio == 1)
        #expect(report.perplexity == report.referencePerplexity)
    }

    @Test func comparisonSeesAQuantizedModel() throws {
        // bf16 weights against fp32: small but non-zero divergence, perplexity close.
        let q = try RWKVModelLoader.load(path: root + "/fixtures/models/rwkv7-tiny-bf16.pth")
        let base = try RWKVModelLoader.load(path: root + "/fixtures/models/rwkv7-tiny-fp32.pth")
        let chunks = try TextChunks(textFile: text, vocabularySize: 256, size: 128)
        let report = try TextEvaluation.compare(q, against: base, chunks: chunks)
        let alone = try TextEvaluation.perplexity(base, chunks: chunks)
        #expect(report.meanKLD > 1e-6 && report.meanKLD < 1e-2)
        #expect(report.kld.minimum <= report.kld.median && report.kld.median <= report.kld.p99 && report.kld.p99 <= report.kld.maximum)
        #expect(report.sameTop > 0.9 && report.sameTop < 1)
        #expect(abs(report.referencePerplexity - alone.perplexity) < 1e-9 * alone.perplexity)
        #expect(abs(report.perplexityRatio - report.perplexity / report.referencePerplexity) < 1e-9)
    }
}
