import CKernels
import Foundation
import Testing
@testable import RWKVFormats

/// The PCLMULQDQ CRC-32 against the table one (itself checked against zlib's values in
/// TorchWriterTests.crc32MatchesZlib): every length around the 16- and 64-byte folding steps, at
/// unaligned starts, chained in uneven parts, and a long buffer.
@Suite struct CRC32Tests {
    /// Deterministic bytes (a 64-bit LCG's high bytes).
    static let bytes: [UInt8] = {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        return (0..<(1 << 20) + 7).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
    }()

    @Test func carrylessPathIsUsedWhereTheCPUHasIt() throws {
        let flags = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
            .split(separator: "\n").first { $0.hasPrefix("flags") }.map { Set($0.split(separator: " ")) } ?? []
        #expect(CRC32.usesCarrylessMultiply == (flags.contains("pclmulqdq") && flags.contains("sse4_1")))
    }

    @Test func carrylessEqualsTables() {
        Self.bytes.withUnsafeBufferPointer { b in
            let base = b.baseAddress!
            for start in 0..<4 {
                for count in 0...600 {
                    #expect(ccrc32_update(0, base + start, count) == ccrc32_update_portable(0, base + start, count),
                            "start \(start), \(count) bytes")
                }
            }
            // Chained through parts of every size, from a non-zero CRC, and one long run.
            var fast: UInt32 = 0x1234_5678, slow: UInt32 = 0x1234_5678, offset = 0
            for part in [1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 1000, 4096, 65_537] {
                fast = ccrc32_update(fast, base + offset, part)
                slow = ccrc32_update_portable(slow, base + offset, part)
                offset += part
            }
            #expect(fast == slow)
            #expect(ccrc32_update(0, base + 3, b.count - 3) == ccrc32_update_portable(0, base + 3, b.count - 3))
        }
    }
}
