import Foundation
import Testing
import RWKVConvert
import RWKVFormats
import RWKVModel
import RWKVText
import RWKVUpgrade
import RWKVVerify
@testable import RWKVCommandLine

/// Every `--json` output's keys are the ones docs/json.md documents, no more and no fewer (keys
/// marked optional there may be absent): the document is the schema, so renaming a Swift property
/// or adding a field fails here until the document says so. Each report is made on the fixtures by
/// the code the programs call, and encoded by `RWKVCommandLine.json`, as the programs print it.
@Suite struct JSONSchemaTests {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static func fixture(_ path: String) -> String { root + "/fixtures/" + path }

    /// docs/json.md: per `## heading` naming the report, a table whose first column is the key
    /// path (`a.b`, `a[].b` inside arrays, `a{}` a map with data for keys, `?` optional) and whose
    /// second is its type; a key of type `configuration` stands for that section's keys under it.
    static func documented() throws -> [String: [(path: String, optional: Bool)]] {
        let text = try String(contentsOfFile: root + "/docs/json.md", encoding: .utf8)
        var rows: [String: [(path: String, optional: Bool, type: String)]] = [:], current: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("## ") {
                current = line.split(separator: "`").dropFirst().first.map(String.init)
            } else if let report = current, line.hasPrefix("| `") {
                let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
                let key = cells[0].dropFirst().prefix { $0 != "`" }
                rows[report, default: []].append((key.hasSuffix("?") ? String(key.dropLast()) : String(key), key.hasSuffix("?"), cells[1]))
            }
        }
        let configuration = rows["configuration"] ?? []
        return rows.mapValues { list in
            list.flatMap { row in
                [(row.path, row.optional)] + (row.type == "configuration"
                    ? configuration.map { (row.path + "." + $0.path, row.optional || $0.optional) } : [])
            }
        }
    }

    /// The key paths of a JSON document (maps documented as `{}` are not entered).
    static func paths(_ json: String, maps: Set<String>) throws -> Set<String> {
        var found = Set<String>()
        func walk(_ value: Any, _ prefix: String) {
            if let object = value as? [String: Any] {
                for (k, v) in object {
                    let path = prefix.isEmpty ? k : prefix + "." + k
                    if maps.contains(path + "{}") { found.insert(path + "{}"); continue }
                    found.insert(path)
                    walk(v, path)
                }
            } else if let array = value as? [Any] {
                for item in array { walk(item, prefix + "[]") }
            }
        }
        walk(try JSONSerialization.jsonObject(with: Data(json.utf8)), "")
        return found
    }

    static func check(_ report: String, _ value: some Encodable) throws {
        let all = try documented()
        let rows = try #require(all[report], "docs/json.md has no section for `\(report)`")
        let observed = try paths(try RWKVCommandLine.json(value), maps: Set(rows.map(\.path).filter { $0.hasSuffix("{}") }))
        let documented = Set(rows.map(\.path))
        // Required: not optional, and inside no optional key that is absent (GGUF's metadata items).
        let absentOptional = rows.filter { $0.optional && !observed.contains($0.path) }.map(\.path)
        let required = Set(rows.filter { row in
            !row.optional && !absentOptional.contains { row.path.hasPrefix($0 + ".") || row.path.hasPrefix($0 + "[]") }
        }.map(\.path))
        #expect(observed.subtracting(documented).sorted() == [], "\(report): keys not in docs/json.md")
        #expect(required.subtracting(observed).sorted() == [], "\(report): documented keys missing")
    }

    final class Scratch {
        let path = NSTemporaryDirectory() + "json-schema-" + UUID().uuidString
        init() throws { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
        deinit { try? FileManager.default.removeItem(atPath: path) }
    }

    @Test func rwkvConvert() throws {
        let dir = try Scratch()
        let model = Self.fixture("models/rwkv7-tiny-bf16.pth")
        try Self.check("rwkv-convert inspect", InspectReport(source: try Checkpoint.open(model)))
        try Self.check("rwkv-convert inspect", InspectReport(source: try ModelFile.open(try Self.converted(model, dir))))
        var options = ConversionOptions()
        options.type = .q8_0
        try Self.check("rwkv-convert to-gguf", try Converter.convert(input: model, output: dir.path + "/b.gguf", options: options))
        try Self.check("rwkv-convert to-pth", try Export.toPth(input: Self.fixture("hf/rwkv7-tiny"), output: dir.path + "/c.pth"))
        try Self.check("rwkv-convert imatrix", try ImportanceMatrixRun.run(
            model: model, text: Self.fixture("text/english.txt"), output: dir.path + "/d.imatrix.gguf", chunkSize: 64, maxChunks: 2,
            processOutput: false, vocabularyPath: nil))
    }

    static func converted(_ model: String, _ dir: Scratch) throws -> String {
        _ = try Converter.convert(input: model, output: dir.path + "/a.gguf")
        return dir.path + "/a.gguf"
    }

    @Test func rwkvUpgrade() throws {
        let dir = try Scratch()
        var options = UpgradeOptions()
        options.fitTokens = 128
        try Self.check("rwkv-upgrade v6-to-v7", try Upgrade.run(input: Self.fixture("models/rwkv6-tiny-bf16.pth"),
                                                                 output: dir.path + "/a.pth", options: options))
        try Self.check("rwkv-upgrade v5-to-v6", try EagleUpgrade.run(input: Self.fixture("models/rwkv5.2-tiny-bf16.pth"),
                                                                      output: dir.path + "/b.pth"))
        try Self.check("rwkv-upgrade v7-to-x", try HybridUpgrade.run(input: Self.fixture("models/rwkv7-tiny-bf16.pth"),
                                                                     output: dir.path + "/c.pth"))
        try Self.check("rwkv-upgrade v6-to-goldfinch", try GoldFinchUpgrade.run(input: Self.fixture("models/rwkv6-tiny-bf16.pth"),
                                                                                output: dir.path + "/d.pth"))
    }

    @Test func rwkvVerify() throws {
        let model = try RWKVModelLoader.load(path: Self.fixture("models/rwkv6-tiny-bf16.pth"))
        let fixture = try LogitFixture(path: Self.fixture("expected/rwkv6-tiny-bf16.logits.safetensors"))
        try Self.check("rwkv-verify", try Verifier.verify(model, fixture: fixture, modes: ForwardMode.allCases))
        let chunks = try TextChunks(textFile: Self.fixture("text/english.txt"), vocabularySize: 256, size: 64, maxChunks: 2)
        try Self.check("rwkv-verify --text", try TextEvaluation.perplexity(model, chunks: chunks))
        let other = try RWKVModelLoader.load(path: Self.fixture("models/rwkv6-tiny-fp32.pth"))
        try Self.check("rwkv-verify --text --against", try TextEvaluation.compare(model, against: other, chunks: chunks))
        try Self.check("rwkv-verify bench", try ForwardBenchmark.run(model, tokens: [1, 2, 3, 4], repeats: 1, loadSeconds: 0))
        let eagle = try RWKVModelLoader.load(path: Self.fixture("models/rwkv5.1-tiny-fp32.pth"))
        try Self.check("rwkv-verify", try Verifier.compare(eagle, against: eagle, tokens: [1, 2, 3], modes: [.rnn]))
        let hybrid = try RWKVModelLoader.load(path: Self.fixture("models/rwkvx-tiny-2x1.pth"), memory: .tokens(2))
        try Self.check("rwkv-verify", try Verifier.compare(hybrid, against: eagle, tokens: [1, 2, 3], modes: [.rnn]))
        try Self.check("rwkv-convert inspect", InspectReport(source: try Checkpoint.open(Self.fixture("models/rwkvx-tiny-2x1.pth"))))
        let goldFinch = try RWKVModelLoader.load(path: Self.fixture("models/goldfinch-r2-tiny.pth"))
        try Self.check("rwkv-verify", try Verifier.compare(goldFinch, against: eagle, tokens: [1, 2, 3], modes: [.rnn]))
        try Self.check("rwkv-convert inspect", InspectReport(source: try Checkpoint.open(Self.fixture("models/goldfinch-r2-tiny.pth"))))
    }
}
