import RWKVFormats

/// Everything an RWKV model remembers between tokens, in f32. A value: copy it after a prompt
/// and continue from the copy as often as you like; the continuation equals running the prompt
/// and the continuation in one go.
///
/// Per layer: the previous token's LN1 output (time-mix token shift), the previous LN2 output
/// (channel-mix token shift), and one N×N matrix per head. The matrix layout follows the
/// official package: RWKV-7 `S[value i][key j]` (y = S·r), RWKV-6 `S[key i][value j]` (y = r·S).
public struct RWKVState: Equatable, Sendable {
    public let layerCount: Int
    public let embeddingSize: Int
    public let headCount: Int
    public let headSize: Int
    /// [layer][C]
    public var timeMixShift: [Float]
    /// [layer][C]
    public var channelMixShift: [Float]
    /// [layer][head][N][N]
    public var wkv: [Float]
    /// RWKV-X: each attention block's kept memory and token shift (empty for other models).
    public var attention: [AttentionState]
    /// GoldFinch: the compressed key cache, one row per token of context ([tokens][C/16]), and the
    /// context's token ids (GOLD's values come from their embeddings); empty for other models.
    public var compressedKeys: [Float] = []
    public var cachedTokens: [Int] = []
    /// Tokens processed since the zero state.
    public var tokenCount: Int

    /// The zero state every sequence starts from.
    public init(config: RWKVConfig) {
        layerCount = config.layerCount
        embeddingSize = config.embeddingSize
        headCount = config.headCount
        headSize = config.headSize
        timeMixShift = [Float](repeating: 0, count: layerCount * embeddingSize)
        channelMixShift = timeMixShift
        wkv = [Float](repeating: 0, count: layerCount * headCount * headSize * headSize)
        attention = (0..<config.attentionBlocks).map { _ in AttentionState(width: config.embeddingSize) }
        tokenCount = 0
    }

    public var wkvCountPerLayer: Int { headCount * headSize * headSize }

    func matches(_ config: RWKVConfig) -> Bool {
        layerCount == config.layerCount && embeddingSize == config.embeddingSize
            && headCount == config.headCount && headSize == config.headSize && attention.count == config.attentionBlocks
    }

    /// Raw pointers to the three arrays for the duration of `body`.
    mutating func withPointers<R>(_ body: (StatePointers) throws -> R) rethrows -> R {
        let C = embeddingSize, perLayer = wkvCountPerLayer
        return try timeMixShift.withUnsafeMutableBufferPointer { tm in
            try channelMixShift.withUnsafeMutableBufferPointer { cm in
                try wkv.withUnsafeMutableBufferPointer { s in
                    try body(StatePointers(timeMixShift: tm.baseAddress!, channelMixShift: cm.baseAddress!, wkv: s.baseAddress!,
                                           embeddingSize: C, wkvPerLayer: perLayer))
                }
            }
        }
    }
}

/// The state's storage, addressed per layer by the kernels.
struct StatePointers {
    let timeMixShift: UnsafeMutablePointer<Float>
    let channelMixShift: UnsafeMutablePointer<Float>
    let wkv: UnsafeMutablePointer<Float>
    let embeddingSize: Int
    let wkvPerLayer: Int

    func timeMix(_ layer: Int) -> UnsafeMutablePointer<Float> { timeMixShift + layer * embeddingSize }
    func channelMix(_ layer: Int) -> UnsafeMutablePointer<Float> { channelMixShift + layer * embeddingSize }
    func matrices(_ layer: Int) -> UnsafeMutablePointer<Float> { wkv + layer * wkvPerLayer }
}
