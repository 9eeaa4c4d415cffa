import Foundation
import Testing
import RWKVFormats
import RWKVModel
@testable import RWKVUpgrade

/// `--ablate`: each mapping put back to its plain counterpart changes exactly the tensors that
/// mapping makes, into what the plain counterpart is (docs/upgrade.md measures what each costs).
@Suite struct AblationTests {
    /// The tensors (block 1) each ablation changes; every other tensor keeps its bytes.
    static let changes: [PreserveMapping: Set<String>] = [
        .decay: ["att.w0", "att.w2"],
        .bonus: ["att.r_k"],
        .gate: ["att.g1", "att.g2"],
        .ffnFold: ["ffn.value.weight"],
        .switchedOff: ["att.a0", "att.v0", "att.k_a"],
        .tokenShift: ["att.x_r", "att.x_w", "att.x_k", "att.x_v", "att.x_g", "att.w0", "att.w2", "att.r_k", "att.g1", "att.g2",
                      "att.receptance.weight", "att.key.weight", "att.value.weight"],
        // The bonus scale sees RWKV-7's r, k, v.
        .refit: ["att.receptance.weight", "att.key.weight", "att.value.weight", "att.r_k", "att.g1", "att.g2", "ffn.value.weight"],
    ]

    @Test(arguments: PreserveMapping.allCases)
    func anAblationChangesItsTensorsIntoThePlainOnes(mapping: PreserveMapping) throws {
        let dir = try UpgradeScratch()
        let input = upgradeFixtures + "/models/rwkv6-tiny-fp32.pth"
        var options = quickOptions(.preserve)
        options.calibration = .file(upgradeFixtures + "/text/english.txt")
        // Fits on the RWKV-6's inputs: otherwise block 0's ablated tensors change what block 1's
        // fits see, and every fitted tensor of block 1 moves.
        options.fitsOnUpgradedInputs = false
        _ = try Upgrade.run(input: input, output: dir.file("full.safetensors"), options: options, dtype: .f32)
        options.ablations = [mapping]
        let report = try Upgrade.run(input: input, output: dir.file("ablated.safetensors"), options: options, dtype: .f32)
        #expect(report.ablations == [mapping.rawValue])
        let full = try readAll(dir.file("full.safetensors")), ablated = try readAll(dir.file("ablated.safetensors"))
        let v6 = try readAll(input)
        let expected = try #require(Self.changes[mapping])
        for (name, t) in ablated where name.hasPrefix("blocks.1.") {
            let row = String(name.dropFirst("blocks.1.".count))
            #expect((t.values != full[name]?.values) == expected.contains(row), "\(mapping) \(name)")
        }
        func tensor(_ name: String) throws -> [Float] { try #require(ablated["blocks.1." + name]?.values) }
        func source(_ name: String) throws -> [Float] { try #require(v6["blocks.1." + name]?.values) }
        switch mapping {
        case .decay: #expect(try tensor("att.w0") == source("att.time_decay"))
        case .bonus: #expect(try tensor("att.r_k").allSatisfy { $0 == 0 })
        case .gate:
            // g1·g2 is the rank-64 truncation of Gᵀ (C = 128), not halved: exactly the leading
            // singular triplets, so it is at least as close to Gᵀ as their halved product.
            let g1 = try Matrix(rows: 128, cols: 64, values: tensor("att.g1")), g2 = try Matrix(rows: 64, cols: 128, values: tensor("att.g2"))
            let gateT = try Matrix(rows: 128, cols: 128, values: source("att.gate.weight")).transposed()
            let svd = try TruncatedSVD(gateT, rank: 64)
            let product = g1.multiplied(by: g2), truncated = svd.u.scalingColumns(svd.s).multiplied(by: svd.v.transposed())
            // Tolerance: float SVD of a 128×128 matrix with entries ~0.1, recomputed the same way.
            #expect(maxAbsDifference(product.values, truncated.values) < 1e-5)
        case .ffnFold:
            let value = try tensor("ffn.value.weight"), original = try source("ffn.value.weight")
            let rows = 128, oldCols = original.count / rows, newCols = value.count / rows
            #expect((0..<rows).allSatisfy { r in Array(value[(r * newCols)..<(r * newCols + oldCols)]) == Array(original[(r * oldCols)..<((r + 1) * oldCols)]) })
        case .switchedOff:
            #expect(try tensor("att.a0").allSatisfy { $0 == 0 } && tensor("att.v0").allSatisfy { $0 == 1 } && tensor("att.k_a").allSatisfy { $0 == 1 })
        case .tokenShift: #expect(try tensor("att.x_r") == source("att.time_maa_r"))
        case .refit: #expect(try tensor("att.key.weight") == source("att.key.weight"))
        }
    }

    @Test func ablationsAreForPreserveOnly() throws {
        let dir = try UpgradeScratch()
        var options = quickOptions(.paper)
        options.ablations = [.bonus]
        #expect(throws: RWKVError(nil, "--ablate only applies to --recipe preserve")) {
            try Upgrade.run(input: upgradeFixtures + "/models/rwkv6-tiny-fp32.pth", output: dir.file("x.pth"), options: options)
        }
    }
}
