import Foundation
import Testing
@testable import RWKVVerify

@Suite struct LogitComparisonTests {
    @Test func identicalLogitsHaveNoDrift() {
        let x: [[Float]] = [[1, 2, 3, 4, 5, 6], [0, -1, 2, 0.5, 9, 3]]
        let c = LogitComparison(reference: x, model: x)
        #expect(c.maxAbsDelta == 0 && c.rmsDelta == 0 && c.meanKL == 0)
        #expect(c.top1Agreement == 1 && c.meanTop5Overlap == 5)
    }

    @Test func measuresAShift() {
        // Swapping the top two logits: top-1 disagrees, KL = (p1 - p2)(log p1 - log p2) > 0.
        let ref: [[Float]] = [[0, 0, 0, 0, 1, 3]]
        let out: [[Float]] = [[0, 0, 0, 0, 3, 1]]
        let c = LogitComparison(reference: ref, model: out)
        #expect(c.maxAbsDelta == 2)
        #expect(!c.positions[0].top1Agrees && c.positions[0].top5Overlap == 5)
        let z = 4 + exp(1.0) + exp(3.0)
        let expected = (exp(3.0) - exp(1.0)) / z * 2
        #expect(abs(c.meanKL - expected) < 1e-12)
    }
}
