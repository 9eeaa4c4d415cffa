import Testing
@testable import RWKVFormats

/// The exponent-bit test of every float type against Swift's own `isFinite` (issue 9, class 3).
struct NonFiniteTests {
    @Test func halfAndBFloatPatterns() {
        // Every 16-bit pattern: the scan's count equals the number of patterns whose widened
        // value is NaN or infinite (f16: 2 × 1024 of 65536; bf16: 2 × 128).
        let all = (0...0xffff).map { UInt16($0) }
        for (dtype, widen) in [(DType.f16, { (b: UInt16) in Float(Float16(bitPattern: b)) }),
                               (DType.bf16, { (b: UInt16) in Float(bitPattern: UInt32(b) << 16) })] {
            let expected = all.filter { !widen($0).isFinite }
            let found = all.withUnsafeBytes { NonFiniteCount.scan($0, as: dtype) }
            #expect(found.count == expected.count, "\(dtype)")
            #expect(found.first == Int(expected[0]), "\(dtype)")   // patterns are their own index
        }
        let clean = [UInt16](repeating: 0x7f7f, count: 1000)   // bf16's largest finite value
        #expect(clean.withUnsafeBytes { NonFiniteCount.scan($0, as: .bf16) } == NonFiniteCount())
    }

    @Test func f32AndF64() {
        let f32: [Float] = [1, .greatestFiniteMagnitude, -.infinity, .nan, 0]
        #expect(NonFiniteCount.scan(f32) == NonFiniteCount(count: 2, first: 2))
        // f64: beyond f32's range counts (it becomes infinite), just inside does not.
        let inside = Double(Float.greatestFiniteMagnitude)
        let f64: [Double] = [inside, -inside, 1e300, .nan, -.infinity, 0x1.ffffffp127]
        #expect(f64.withUnsafeBytes { NonFiniteCount.scan($0, as: .f64) } == NonFiniteCount(count: 4, first: 2))
        #expect(f64.map { Float($0).isFinite } == [true, true, false, false, false, false])
    }

    @Test func countsAddAcrossPieces() {
        var total = NonFiniteCount()
        total.add(NonFiniteCount(), at: 0)
        total.add(NonFiniteCount(count: 2, first: 5), at: 4096)
        total.add(NonFiniteCount(count: 1, first: 0), at: 8192)
        #expect(total == NonFiniteCount(count: 3, first: 4101))
    }
}
