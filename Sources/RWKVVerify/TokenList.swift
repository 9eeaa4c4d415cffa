import RWKVFormats

/// Token sequences given on the command line.
public enum TokenList {
    /// "1,2,3" → [1, 2, 3].
    public static func parse(_ text: String) throws -> [Int] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        let values = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, values.count == parts.count, values.allSatisfy({ $0 >= 0 }) else {
            throw RWKVError(nil, "--tokens must be comma-separated non-negative integers, got \"\(text)\"")
        }
        return values
    }

    /// `count` token ids uniform in 0..<vocab, the same for the same seed on every machine
    /// (SplitMix64, not the system generator).
    public static func random(count: Int, vocab: Int, seed: UInt64) -> [Int] {
        var state = seed
        return (0..<count).map { _ in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Int(z % UInt64(max(vocab, 1)))
        }
    }
}
