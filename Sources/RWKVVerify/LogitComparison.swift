import Foundation

/// How far one model's logits drift from reference logits, position by position.
public struct LogitComparison: Codable, Sendable {
    public struct Position: Codable, Sendable {
        public let maxAbsDelta: Float
        public let rmsDelta: Float
        public let top1Agrees: Bool
        /// |top-5(reference) ∩ top-5(model)|, 0...5.
        public let top5Overlap: Int
        /// KL(reference ‖ model) of the softmax distributions, in nats.
        public let kl: Double
    }

    public let positions: [Position]

    public var maxAbsDelta: Float { positions.map(\.maxAbsDelta).max() ?? 0 }
    public var rmsDelta: Float {
        guard !positions.isEmpty else { return 0 }
        return (positions.map { $0.rmsDelta * $0.rmsDelta }.reduce(0, +) / Float(positions.count)).squareRoot()
    }
    public var top1Agreement: Double {
        positions.isEmpty ? 1 : Double(positions.filter(\.top1Agrees).count) / Double(positions.count)
    }
    public var meanTop5Overlap: Double {
        positions.isEmpty ? 5 : Double(positions.map(\.top5Overlap).reduce(0, +)) / Double(positions.count)
    }
    public var meanKL: Double { positions.isEmpty ? 0 : positions.map(\.kl).reduce(0, +) / Double(positions.count) }
    public var maxKL: Double { positions.map(\.kl).max() ?? 0 }

    /// - Parameters: `reference` and `model` are [T][V] logits.
    public init(reference: [[Float]], model: [[Float]]) {
        precondition(reference.count == model.count, "position counts differ")
        positions = zip(reference, model).map { Self.compare($0, $1) }
    }

    static func compare(_ ref: [Float], _ out: [Float]) -> Position {
        precondition(ref.count == out.count, "vocabulary sizes differ")
        var maxAbs: Float = 0, sumSq: Double = 0
        for (a, b) in zip(ref, out) {
            let d = abs(a - b)
            maxAbs = d.isNaN ? .nan : max(maxAbs, d)
            sumSq += Double(d) * Double(d)
        }
        let top5Ref = topK(ref, 5), top5Out = topK(out, 5)
        return Position(maxAbsDelta: maxAbs, rmsDelta: Float((sumSq / Double(max(ref.count, 1))).squareRoot()),
                        top1Agrees: top5Ref.first == top5Out.first,
                        top5Overlap: Set(top5Ref).intersection(top5Out).count,
                        kl: kl(ref, out))
    }

    static func topK(_ x: [Float], _ k: Int) -> [Int] {
        Array(x.indices.sorted { x[$0] != x[$1] ? x[$0] > x[$1] : $0 < $1 }.prefix(k))
    }

    static func logSoftmax(_ x: [Float]) -> [Double] {
        let m = Double(x.max() ?? 0)
        let lse = m + log(x.reduce(0.0) { $0 + exp(Double($1) - m) })
        return x.map { Double($0) - lse }
    }

    static func kl(_ ref: [Float], _ out: [Float]) -> Double {
        let p = logSoftmax(ref), q = logSoftmax(out)
        var s = 0.0
        for i in p.indices { s += exp(p[i]) * (p[i] - q[i]) }
        return max(s, 0)
    }
}

extension LogitComparison {
    /// The figures over all positions, as reports print them.
    public struct Summary: Codable, Sendable, Equatable {
        public let positions: Int
        /// Largest |Δlogit| anywhere (NaN if any logit is NaN).
        public let maxAbsDelta: Float
        /// Root mean square of Δlogit over every position and vocabulary entry.
        public let rmsDelta: Float
        /// Fraction of positions whose arg-max token agrees.
        public let top1Agreement: Double
        /// Mean |top-5 ∩ top-5|, 0...5.
        public let meanTop5Overlap: Double
        /// KL(reference ‖ model) in nats, mean and worst over positions.
        public let meanKL: Double
        public let maxKL: Double
    }

    public var summary: Summary {
        Summary(positions: positions.count,
                maxAbsDelta: positions.contains { $0.maxAbsDelta.isNaN } ? .nan : maxAbsDelta,
                rmsDelta: rmsDelta, top1Agreement: top1Agreement, meanTop5Overlap: meanTop5Overlap,
                meanKL: meanKL, maxKL: maxKL)
    }

    /// Every logit within `tolerance` of the reference; NaN anywhere fails.
    public func isWithin(_ tolerance: Float) -> Bool {
        positions.allSatisfy { $0.maxAbsDelta <= tolerance }
    }
}
