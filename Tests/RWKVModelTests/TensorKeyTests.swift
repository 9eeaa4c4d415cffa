import Foundation
import Testing
import RWKVFormats
@testable import RWKVModel

/// Every tensor name is written once, in Sources/RWKVModel/TensorSchema.swift: the keys of each
/// architecture are its schema's rows, and no other source file spells a tensor name.
@Suite struct TensorKeyTests {
    @Test func keysAreTheSchemaRows() {
        #expect(RWKV7Key.allCases.map(\.rawValue) == ArchitectureSchema.rwkv7.tensors.map(\.name))
        #expect(RWKV6Key.allCases.map(\.rawValue) == ArchitectureSchema.rwkv6.tensors.map(\.name))
        #expect(RWKV7Key.w1.name(layer: 3) == "blocks.3.att.w1" && RWKV7Key.head.name == "head.weight")
        #expect(RWKV6Key.ln0Weight.name(layer: 0) == "blocks.0.ln0.weight")
        #expect(TensorSpec.layer(of: "blocks.12.att.key.weight") == 12 && TensorSpec.layer(of: "head.weight") == nil)
    }

    /// Every name the schema knows: BlinkDL (block-relative and model-level), Hugging Face, GGUF,
    /// and RWKV-5's own; none may appear in a string literal of another source file.
    static var names: Set<String> {
        var names: Set<String> = [TensorSpec.blockPrefix]
        for schema in ArchitectureSchema.all {
            for row in schema.tensors {
                names.formUnion([row.name, row.hf, row.gguf.name])
            }
            names.formUnion(schema.ggufLayerOrder)
        }
        for row in ArchitectureSchema.rwkv5 { names.formUnion(row.rwkv5 + [row.hf].compactMap { $0 }) }
        return names
    }

    @Test func noTensorNameOutsideTheSchema() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources")
        let names = Self.names
        let literal = try Regex(#""(?:[^"\\\n]|\\.)*""#)
        var found: [String] = []
        var files = 0
        for case let url as URL in FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil)!
        where url.pathExtension == "swift" && url.lastPathComponent != "TensorSchema.swift" {
            files += 1
            let text = try String(contentsOf: url, encoding: .utf8)
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                if line.trimmingCharacters(in: .whitespaces).hasPrefix("//") { continue }   // comments may name tensors
                for match in line.matches(of: literal) {
                    let s = String(line[match.range].dropFirst().dropLast())
                    if let name = names.first(where: { Self.contains(s, $0) }) {
                        found.append("\(url.lastPathComponent):\(n + 1): \(name) in \"\(s)\"")
                    }
                }
            }
        }
        #expect(files > 50)
        #expect(found == [], "\(found.joined(separator: "\n"))")
    }

    /// `name` in `s` as a whole name: not part of a longer identifier or dotted name.
    static func contains(_ s: String, _ name: String) -> Bool {
        var search = s.startIndex..<s.endIndex
        while let r = s.range(of: name, range: search) {
            let before = r.lowerBound == s.startIndex ? nil : s[s.index(before: r.lowerBound)]
            let after = r.upperBound == s.endIndex ? nil : s[r.upperBound]
            func part(_ c: Character?) -> Bool { c.map { $0.isLetter || $0.isNumber || $0 == "_" } ?? false }
            if !part(before) && before != "." && !part(after) && (after != "." || name.hasSuffix(".")) { return true }
            search = r.upperBound..<s.endIndex
        }
        return false
    }
}
