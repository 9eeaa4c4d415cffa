import Foundation
import Testing
import RWKVText
import RWKVFormats
import RWKVModel
@testable import RWKVVerify

private let root = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// What verification does with RWKV-X, whose logits depend on how tokens are split into calls.
struct HybridVerificationTests {
    static let model = root + "/fixtures/models/rwkvx-tiny-2x1.pth"
    static let fixture = root + "/fixtures/expected/rwkvx-tiny-2x1.logits.safetensors"

    /// A fixture's `calls` are checked before they are added: counts that would overflow, or that
    /// do not add up to the tokens, are refused with the reason (no crash).
    @Test(arguments: ["9223372036854775807,9223372036854775807", "0,24", "12,11", "x", "24,"])
    func fixtureCallsAreChecked(calls: String) throws {
        let source = try SafetensorsReader(path: Self.fixture)
        let path = NSTemporaryDirectory() + "calls-\(UUID().uuidString).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        var metadata = source.metadata
        metadata["calls"] = calls
        try SafetensorsWriter.write(to: path, tensors: ["tokens", "logits"].map { source.info($0)! }, metadata: metadata) { try source.data($0.name) }
        #expect(throws: RWKVError(path, "metadata calls \(calls) is not a list of positive token counts adding up to 24")) {
            _ = try LogitFixture(path: path)
        }
    }

    /// `--text` runs an RWKV-X chunk as one prefill, so its figures do not depend on how the
    /// evaluation would split the chunk: the NLL of every scored token equals the one computed from
    /// a single forward call over the chunk.
    @Test func textEvaluationRunsAnRWKVXChunkAsOnePrefill() throws {
        let model = try RWKVModelLoader.load(path: Self.model, memory: .tokens(3))
        #expect(model.logitsDependOnCalls)
        let chunks = try TextChunks(textFile: root + "/fixtures/text/english.txt", vocabularySize: 256, size: 300, maxChunks: 1)
        let report = try TextEvaluation.perplexity(model, chunks: chunks)
        let tokens = Array(chunks.tokens.prefix(300))
        let rows = try model.logits(Array(tokens.dropLast()), mode: .sequence).rows
        var total = 0.0, count = 0
        for t in (150 ..< 299) {   // the scored second half, as TextEvaluation scores it
            let row = rows[t], top = Double(row.max()!)
            let z = row.reduce(0.0) { $0 + exp(Double($1) - top) }
            total += top + log(z) - Double(row[tokens[t + 1]])
            count += 1
        }
        #expect(abs(report.meanNLL - total / Double(count)) <= 1e-6, "\(report.meanNLL) vs \(total / Double(count))")
    }
}
