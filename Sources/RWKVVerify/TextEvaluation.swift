import Foundation
import RWKVText
import RWKVFormats
import RWKVModel

/// Quality on text, as llama-perplexity measures it (tools/perplexity/perplexity.cpp): the text
/// in chunks (`TextChunks`), each run from the zero state in sequence mode, and the second half
/// of each chunk scored — the negative log-likelihood of every next token given at least half
/// a chunk of context. `compare` runs two models chunk by chunk on the same tokens and adds what
/// `llama-perplexity --kl-divergence` reports, without storing the reference's logits.
public enum TextEvaluation {
    /// Scored positions are run this many at a time: logits of one piece are held, never a chunk's.
    static let piece = 128

    /// Perplexity and mean NLL of `model` over `chunks`.
    public static func perplexity(_ model: RWKVLanguageModel, chunks: TextChunks, progress: ((Int, Int, String) -> Void)? = nil) throws -> PerplexityReport {
        var nll = Moments()
        var running: [Double] = []
        var perToken: [Float] = []
        perToken.reserveCapacity(chunks.scoredTokenCount)
        let clock = Stopwatch()
        for c in 0..<chunks.count {
            try score(chunks.chunk(c), scored: chunks.scoredPositions, models: [model]) { rows, target in
                let v = negativeLogLikelihood(rows[0], target: target)
                nll.add(v)
                perToken.append(Float(v))
            }
            running.append(exp(nll.mean))
            progress?((c + 1) * chunks.size, chunks.count * chunks.size, "chunk \(c + 1)/\(chunks.count), PPL \(String(format: "%.4f", exp(nll.mean))), \(rate(c + 1, chunks, clock)) tok/s")
        }
        let seconds = clock.seconds
        return PerplexityReport(model: ModelSummary(model), text: TextSummary(chunks), nll: nll, runningPerplexity: running,
                                perTokenNLL: perToken, seconds: seconds,
                                tokensPerSecond: Double(chunks.count * (chunks.size - 1)) / max(seconds, 1e-9))
    }

    /// `model` against `reference` on the same chunks: KL divergence of the model's next-token
    /// distribution from the reference's, top-1 agreement, and both perplexities.
    public static func compare(_ model: RWKVLanguageModel, against reference: RWKVLanguageModel, chunks: TextChunks,
                               progress: ((Int, Int, String) -> Void)? = nil) throws -> TextComparisonReport {
        guard model.config.vocabSize == reference.config.vocabSize else {
            throw RWKVError(reference.path, "vocabulary of \(reference.config.vocabSize) rows, the model has \(model.config.vocabSize)")
        }
        var nll = Moments(), nllReference = Moments(), kl = Moments(), pDiff2 = Moments()
        var cross = 0.0, sameTop = 0
        var klValues: [Float] = []
        klValues.reserveCapacity(chunks.scoredTokenCount)
        let clock = Stopwatch()
        for c in 0..<chunks.count {
            try score(chunks.chunk(c), scored: chunks.scoredPositions, models: [model, reference]) { rows, target in
                let q = LogSoftmax(rows[0]), p = LogSoftmax(rows[1])
                let a = q.lse - Double(rows[0][target]), b = p.lse - Double(rows[1][target])
                nll.add(a)
                nllReference.add(b)
                cross += a * b
                // KL(reference ‖ model) = Σ p_ref (log p_ref − log p_model), as llama.cpp's
                // (which reads the reference's log-probabilities back from 16 bits and drops
                // terms below e^-16; we have the exact logits of both).
                var sum = 0.0
                for i in 0..<rows[0].count {
                    let lp = Double(rows[1][i]) - p.lse
                    sum += exp(lp) * (lp - (Double(rows[0][i]) - q.lse))
                }
                kl.add(sum)
                klValues.append(Float(sum))
                if q.argmax == p.argmax { sameTop += 1 }
                let dp = exp(-a) - exp(-b)
                pDiff2.add(dp * dp)
            }
            progress?((c + 1) * chunks.size, chunks.count * chunks.size, "chunk \(c + 1)/\(chunks.count), KLD \(String(format: "%.6f", kl.mean)), \(rate(c + 1, chunks, clock)) tok/s")
        }
        let seconds = clock.seconds
        return TextComparisonReport(model: ModelSummary(model), reference: ModelSummary(reference), text: TextSummary(chunks),
                                    nll: nll, nllReference: nllReference, crossSum: cross, kl: kl, klValues: klValues,
                                    sameTop: sameTop, pDiff2: pDiff2, seconds: seconds,
                                    tokensPerSecond: Double(chunks.count * (chunks.size - 1)) / max(seconds, 1e-9))
    }

    /// Runs one chunk through each model from the zero state and calls `body` with the models'
    /// logits at every scored position (one row per model) and the token that follows. The
    /// unscored first half goes through in one call; the scored part in pieces; the chunk's last
    /// token is never run (nothing follows it).
    static func score(_ chunk: ArraySlice<Int>, scored: Range<Int>, models: [RWKVLanguageModel],
                      _ body: ([UnsafeBufferPointer<Float>], Int) -> Void) throws {
        let tokens = Array(chunk)
        if models.contains(where: \.logitsDependOnCalls) {
            // RWKV-X: the chunk as one prefill (every position attends to all before it), so the
            // figures do not depend on how this code would split the chunk.
            var logits: [Logits] = []
            for model in models {
                var state = model.makeState()
                logits.append(try model.forward(Array(tokens[..<scored.upperBound]), state: &state, mode: .sequence, positions: .all))
            }
            let V = logits[0].vocabSize
            withRows(logits.map(\.values)) { all in
                for t in scored { body(all.map { UnsafeBufferPointer(rebasing: $0[(t * V)..<((t + 1) * V)]) }, tokens[t + 1]) }
            }
            return
        }
        var states = models.map { $0.makeState() }
        if scored.lowerBound > 0 {
            for m in models.indices {
                _ = try models[m].forward(Array(tokens[..<scored.lowerBound]), state: &states[m], mode: .sequence, positions: .last)
            }
        }
        var start = scored.lowerBound
        while start < scored.upperBound {
            let end = min(start + piece, scored.upperBound)
            var logits: [Logits] = []
            for m in models.indices {
                logits.append(try models[m].forward(Array(tokens[start..<end]), state: &states[m], mode: .sequence, positions: .all))
            }
            let V = logits[0].vocabSize
            withRows(logits.map(\.values)) { all in
                for r in 0..<(end - start) {
                    body(all.map { UnsafeBufferPointer(rebasing: $0[(r * V)..<((r + 1) * V)]) }, tokens[start + r + 1])
                }
            }
            start = end
        }
    }

    /// `body` with a buffer pointer to each array.
    private static func withRows(_ arrays: [[Float]], _ body: ([UnsafeBufferPointer<Float>]) -> Void) {
        func go(_ i: Int, _ acc: [UnsafeBufferPointer<Float>]) {
            if i == arrays.count { return body(acc) }
            arrays[i].withUnsafeBufferPointer { go(i + 1, acc + [$0]) }
        }
        go(0, [])
    }

    static func negativeLogLikelihood(_ row: UnsafeBufferPointer<Float>, target: Int) -> Double {
        LogSoftmax(row).lse - Double(row[target])
    }

    private static func rate(_ done: Int, _ chunks: TextChunks, _ clock: Stopwatch) -> String {
        String(format: "%.0f", Double(done * (chunks.size - 1)) / max(clock.seconds, 1e-9))
    }
}

/// log Σ exp of a row (max-shifted, float exponentials summed in double, as llama.cpp), and its
/// first maximum.
struct LogSoftmax {
    let lse: Double
    let argmax: Int

    init(_ row: UnsafeBufferPointer<Float>) {
        var maxValue = -Float.infinity, maxIndex = 0
        for i in row.indices where row[i] > maxValue { maxValue = row[i]; maxIndex = i }
        var sum = 0.0
        for v in row { sum += Double(expf(v - maxValue)) }
        lse = Double(maxValue) + log(sum)
        argmax = maxIndex
    }
}

/// Running sums for a mean and its uncertainty, as llama-perplexity's `mean_and_uncertainty`:
/// the standard error sqrt((E[x²] − E[x]²)/(n − 1)), given only for more than 10 values.
public struct Moments: Codable, Sendable {
    public private(set) var count = 0
    public private(set) var sum = 0.0
    public private(set) var sum2 = 0.0

    mutating func add(_ x: Double) { count += 1; sum += x; sum2 += x * x }
    public var mean: Double { count > 0 ? sum / Double(count) : 0 }
    public var uncertainty: Double {
        guard count > 10 else { return 0 }
        let v = sum2 / Double(count) - mean * mean
        return v > 0 ? (v / Double(count - 1)).squareRoot() : 0
    }
}

/// Which text was scored, and how.
public struct TextSummary: Codable, Sendable {
    public let path: String
    public let tokenizer: String
    public let textTokens: Int
    public let chunkSize: Int
    public let chunks: Int
    public let scoredTokens: Int

    init(_ c: TextChunks) {
        path = c.path
        tokenizer = c.tokenizer
        textTokens = c.tokens.count
        chunkSize = c.size
        chunks = c.count
        scoredTokens = c.scoredTokenCount
    }

    var text: String {
        "\(path): \(textTokens) tokens (\(tokenizer)), \(chunks) chunks of \(chunkSize), \(scoredTokens) tokens scored (second half of each chunk)"
    }
}

public struct PerplexityReport: Codable, Sendable {
    public let model: ModelSummary
    public let text: TextSummary
    public let meanNLL: Double
    public let meanNLLUncertainty: Double
    public let perplexity: Double
    public let perplexityUncertainty: Double
    /// Perplexity over the chunks so far, after each chunk (llama-perplexity's `[i]ppl` line).
    public let runningPerplexity: [Double]
    /// Every scored token's NLL, chunk after chunk (JSON only).
    public let perTokenNLL: [Float]
    public let seconds: Double
    /// Tokens run per second (each chunk runs all but its last token).
    public let tokensPerSecond: Double

    init(model: ModelSummary, text: TextSummary, nll: Moments, runningPerplexity: [Double], perTokenNLL: [Float],
         seconds: Double, tokensPerSecond: Double) {
        self.model = model
        self.text = text
        meanNLL = nll.mean
        meanNLLUncertainty = nll.uncertainty
        perplexity = exp(nll.mean)
        perplexityUncertainty = perplexity * nll.uncertainty
        self.runningPerplexity = runningPerplexity
        self.perTokenNLL = perTokenNLL
        self.seconds = seconds
        self.tokensPerSecond = tokensPerSecond
    }

    public var report: String {
        var lines = ["model: \(model.text)", "text:  \(text.text)"]
        lines.append(runningPerplexity.enumerated().map { "[\($0.offset + 1)]" + String(format: "%.4f", $0.element) }.joined(separator: ","))
        lines.append(String(format: "mean NLL: %.6f ± %.6f", meanNLL, meanNLLUncertainty))
        lines.append(String(format: "perplexity: %.4f ± %.4f", perplexity, perplexityUncertainty))
        lines.append(String(format: "%.2f s, %.0f tokens/s", seconds, tokensPerSecond))
        return lines.joined(separator: "\n")
    }
}

public struct TextComparisonReport: Codable, Sendable {
    public struct Percentiles: Codable, Sendable {
        public let minimum, p01, p05, p10, median, p90, p95, p99, p999, maximum: Double
    }

    public let model: ModelSummary
    public let reference: ModelSummary
    public let text: TextSummary
    public let perplexity: Double
    public let perplexityUncertainty: Double
    public let referencePerplexity: Double
    public let referencePerplexityUncertainty: Double
    /// Mean ln(PPL(model)/PPL(reference)) = mean NLL difference, with its uncertainty.
    public let logPerplexityRatio: Double
    public let logPerplexityRatioUncertainty: Double
    public let perplexityRatio: Double
    public let meanKLD: Double
    public let meanKLDUncertainty: Double
    public let kld: Percentiles
    /// Fraction of scored positions where both models' most likely token is the same.
    public let sameTop: Double
    public let sameTopUncertainty: Double
    /// RMS of the difference in the probability of the actual next token.
    public let rmsDeltaP: Double
    public let seconds: Double
    /// Tokens per second through both models together.
    public let tokensPerSecond: Double

    init(model: ModelSummary, reference: ModelSummary, text: TextSummary, nll: Moments, nllReference: Moments,
         crossSum: Double, kl: Moments, klValues: [Float], sameTop: Int, pDiff2: Moments, seconds: Double, tokensPerSecond: Double) {
        self.model = model
        self.reference = reference
        self.text = text
        let n = nll.count
        perplexity = exp(nll.mean)
        perplexityUncertainty = perplexity * nll.uncertainty
        referencePerplexity = exp(nllReference.mean)
        referencePerplexityUncertainty = referencePerplexity * nllReference.uncertainty
        // llama-perplexity's covariance of the two NLLs' means, for the ratio's uncertainty.
        let covariance = n < 10 ? 0 : (crossSum / Double(n) - nll.mean * nllReference.mean) / Double(n - 1)
        logPerplexityRatio = nll.mean - nllReference.mean
        let variance = nll.uncertainty * nll.uncertainty + nllReference.uncertainty * nllReference.uncertainty - 2 * covariance
        logPerplexityRatioUncertainty = max(variance, 0).squareRoot()
        perplexityRatio = exp(logPerplexityRatio)
        meanKLD = kl.mean
        meanKLDUncertainty = kl.uncertainty
        let sorted = klValues.sorted()
        // llama-perplexity's percentile: linear interpolation between sorted neighbours.
        func percentile(_ f: Double) -> Double {
            guard let first = sorted.first, let last = sorted.last else { return 0 }
            if f <= 0 { return Double(first) }
            if f >= 1 { return Double(last) }
            let p = f * Double(sorted.count - 1)
            let i = Int(p), frac = p - Double(i)
            return (1 - frac) * Double(sorted[i]) + frac * Double(sorted[min(i + 1, sorted.count - 1)])
        }
        let median = sorted.isEmpty ? 0 : sorted.count % 2 == 0
            ? 0.5 * (Double(sorted[sorted.count / 2]) + Double(sorted[sorted.count / 2 - 1])) : Double(sorted[sorted.count / 2])
        kld = Percentiles(minimum: percentile(0), p01: percentile(0.01), p05: percentile(0.05), p10: percentile(0.1), median: median,
                          p90: percentile(0.9), p95: percentile(0.95), p99: percentile(0.99), p999: percentile(0.999), maximum: percentile(1))
        let top = n > 0 ? Double(sameTop) / Double(n) : 0
        self.sameTop = top
        sameTopUncertainty = n > 1 ? (top * (1 - top) / Double(n - 1)).squareRoot() : 0
        rmsDeltaP = pDiff2.mean.squareRoot()
        self.seconds = seconds
        self.tokensPerSecond = tokensPerSecond
    }

    public var report: String {
        func f(_ v: Double, _ u: Double, _ digits: Int = 6) -> String { String(format: "%.\(digits)f ± %.\(digits)f", v, u) }
        return [
            "model:     \(model.text)",
            "reference: \(reference.text)",
            "text:      \(text.text)",
            "",
            "Mean PPL(Q)                   : " + f(perplexity, perplexityUncertainty),
            "Mean PPL(base)                : " + f(referencePerplexity, referencePerplexityUncertainty),
            "Mean ln(PPL(Q)/PPL(base))     : " + f(logPerplexityRatio, logPerplexityRatioUncertainty),
            "Mean PPL(Q)/PPL(base)         : " + f(perplexityRatio, perplexityRatio * logPerplexityRatioUncertainty),
            "",
            "Mean    KLD: " + f(meanKLD, meanKLDUncertainty),
            String(format: "Maximum KLD: %.6f", kld.maximum),
            String(format: "99.9%%   KLD: %.6f", kld.p999),
            String(format: "99.0%%   KLD: %.6f", kld.p99),
            String(format: "95.0%%   KLD: %.6f", kld.p95),
            String(format: "90.0%%   KLD: %.6f", kld.p90),
            String(format: "Median  KLD: %.6f", kld.median),
            String(format: "Minimum KLD: %.6f", kld.minimum),
            "",
            String(format: "RMS Δp    : %.3f %%", 100 * rmsDeltaP),
            "Same top p: " + f(100 * sameTop, 100 * sameTopUncertainty, 3) + " %",
            String(format: "%.2f s, %.0f tokens/s (both models)", seconds, tokensPerSecond),
        ].joined(separator: "\n")
    }
}
