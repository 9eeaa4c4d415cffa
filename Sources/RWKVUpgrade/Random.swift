import Foundation

/// Deterministic random numbers for `rwkv-upgrade`: xoshiro256** (Blackman & Vigna) seeded
/// through splitmix64, uniform values from the top 53 bits, Gaussians by Box-Muller.
///
/// Every output tensor draws from its own stream, keyed by the user's seed and the tensor's name,
/// so a tensor's random part depends on nothing else: not on the order tensors are produced in,
/// not on the recipe's other choices. Same seed and input give the same bytes; another seed
/// changes the random parts only.
public struct SeededRandom: Sendable {
    private var s0, s1, s2, s3: UInt64
    private var spare: Double?

    public init(seed: UInt64, stream: String) {
        // FNV-1a of the stream name, mixed with the seed by splitmix64 so nearby seeds and
        // similar names still give unrelated states.
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in stream.utf8 { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        var x = seed
        let mixedSeed = Self.splitmix(&x)
        x = mixedSeed ^ h
        s0 = Self.splitmix(&x); s1 = Self.splitmix(&x); s2 = Self.splitmix(&x); s3 = Self.splitmix(&x)
    }

    /// A generator at a given raw state (tests compare with the reference implementation's outputs).
    init(state: (UInt64, UInt64, UInt64, UInt64)) {
        (s0, s1, s2, s3) = state
    }

    static func splitmix(_ x: inout UInt64) -> UInt64 {
        x &+= 0x9e37_79b9_7f4a_7c15
        var z = x
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    private static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    public mutating func next() -> UInt64 {
        let result = Self.rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = Self.rotl(s3, 45)
        return result
    }

    /// Uniform in [0, 1), 53 random bits.
    public mutating func unit() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// Uniform in [lo, hi).
    public mutating func uniform(_ lo: Double, _ hi: Double) -> Double {
        lo + (hi - lo) * unit()
    }

    /// Standard normal (Box-Muller; the second value of each pair is kept for the next call).
    public mutating func gaussian() -> Double {
        if let g = spare { spare = nil; return g }
        let u1 = 1 - unit()                     // (0, 1]: log stays finite
        let u2 = unit()
        let radius = (-2 * log(u1)).squareRoot()
        let angle = 2 * Double.pi * u2
        spare = radius * sin(angle)
        return radius * cos(angle)
    }

    /// `count` values uniform in [-bound, bound).
    public mutating func uniformArray(_ count: Int, bound: Double) -> [Float] {
        (0..<count).map { _ in Float(uniform(-bound, bound)) }
    }
}
