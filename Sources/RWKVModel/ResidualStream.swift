import RWKVFormats

/// A whole token sequence's residual stream between blocks: what lets a model run one block at a
/// time (load block i, run it over every token, drop it, load block i + 1). `rwkv-upgrade` runs
/// its calibration this way, so its memory is one block's, not the model's.
///
/// Each block runs over the sequence in the forward pass's own sequence mode (blocks of 128
/// tokens, from the zero state), so a stream run through every block equals the model's
/// `forward(tokens, mode: .sequence)` up to the head.
public struct ResidualStream: Sendable {
    public let width: Int
    /// N×C, row-major: each token's residual after the blocks run so far.
    public internal(set) var residual: [Float]
    /// RWKV-7 only: block 0's values (N×C), which every later block mixes in; nil before block 0 ran.
    public internal(set) var valueFirst: [Float]?
    /// The next block to run.
    public internal(set) var nextBlock = 0

    public var count: Int { residual.count / width }

    /// The embedding rows of `tokens` with `blocks.0.ln0` applied, as the model's own forward pass
    /// computes them (RWKV-6: rounded to the stored half type, see `RWKV6Weights`).
    public init(tokens: [Int], loader: WeightLoader) throws {
        let c = loader.config, C = c.embeddingSize
        if let bad = tokens.first(where: { $0 < 0 || $0 >= c.vocabSize }) {
            throw RWKVError(loader.path, "token id \(bad) is outside the vocabulary (0..<\(c.vocabSize))")
        }
        let emb = try loader.embedding()
        let ln0 = try loader.ln0()
        var rows = [Float](repeating: 0, count: tokens.count * C)
        rows.withUnsafeMutableBufferPointer { out in
            for (i, token) in tokens.enumerated() { (out.baseAddress! + i * C).update(from: emb.base + token * C, count: C) }
            Kernels.normalize(out.baseAddress!, rows: tokens.count, width: C, ln0, eps: Kernels.layerNormEpsilon, into: out.baseAddress!)
        }
        if c.version == .v6, let half = RWKV6Weights.embeddingRounding(loader) {
            var overflow = 0
            rows = try ElementCodec.decode(try ElementCodec.encode(rows, as: half, overflowCount: &overflow),
                                           as: half, count: rows.count, context: loader.path)
        }
        width = C
        residual = rows
    }

    /// LayerNorm of every token's residual with `weight` and `bias` (C each): a block's input.
    public func layerNorm(weight: [Float], bias: [Float]) -> [Float] {
        precondition(weight.count == width && bias.count == width)
        let norm = NormWeights(weight: FloatBuffer(weight), bias: FloatBuffer(bias))
        var out = [Float](repeating: 0, count: residual.count)
        residual.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { y in
                Kernels.normalize(x.baseAddress!, rows: count, width: width, norm, eps: Kernels.layerNormEpsilon, into: y.baseAddress!)
            }
        }
        return out
    }

    /// Adds `delta` (N×C) to every token's residual: a block part computed outside a model.
    public mutating func add(_ delta: [Float]) {
        precondition(delta.count == residual.count)
        for i in 0..<residual.count { residual[i] += delta[i] }
    }
}

extension RWKVConfig {
    /// The configuration of block `i` run alone (`RWKV6Model(block:of:)`): its state holds one block.
    func oneBlock(_ i: Int, of version: RWKVVersion, path: String) throws -> RWKVConfig {
        guard self.version == version else { throw RWKVError(path, "not an RWKV-\(version.rawValue) model") }
        guard i >= 0, i < layerCount else { throw RWKVError(path, "no block \(i) in a \(layerCount)-block model") }
        var c = self
        c.layerCount = 1
        return c
    }
}

/// What a one-block model has in place of the embedding, the output norm and the head: nothing.
func noEnds() -> (FloatBuffer, NormWeights, Linear) {
    let empty = FloatBuffer(count: 0)
    return (empty, NormWeights(weight: empty, bias: empty), Linear(inputs: 0, outputs: 0, layout: .outputsByInputs, weights: empty))
}

extension LayerStack {
    /// Runs this one-block model over the whole stream, in sequence mode from the zero state.
    func runBlock(_ stream: inout ResidualStream) throws {
        let C = config.embeddingSize, N = stream.count
        guard let index = blockIndex, stream.width == C, config.layerCount == 1 else {
            throw RWKVError(path, "internal error: a one-block model of width \(C) cannot run a stream of width \(stream.width)")
        }
        guard index == stream.nextBlock else {
            throw RWKVError(path, "internal error: block \(index) run on a stream that is at block \(stream.nextBlock)")
        }
        let usesValueFirst = config.version == .v7
        if usesValueFirst, index > 0, stream.valueFirst == nil {
            throw RWKVError(path, "internal error: RWKV-7 block \(index) run before block 0")
        }
        var state = makeState()
        let block = Self.sequenceBlockSize
        let work = workspace(rows: min(block, max(N, 1)))
        var valueFirst = stream.valueFirst ?? (usesValueFirst ? [Float](repeating: 0, count: N * C) : [])
        state.withPointers { ptrs in
            stream.residual.withUnsafeMutableBufferPointer { x in
                valueFirst.withUnsafeMutableBufferPointer { vf in
                    var start = 0
                    while start < N {
                        let rows = min(block, N - start)
                        work.x.base.update(from: x.baseAddress! + start * C, count: rows * C)
                        if usesValueFirst { work.vFirst.base.update(from: vf.baseAddress! + start * C, count: rows * C) }
                        runLayers(rows: rows, work: work, state: ptrs)
                        (x.baseAddress! + start * C).update(from: work.x.base, count: rows * C)
                        if usesValueFirst { (vf.baseAddress! + start * C).update(from: work.vFirst.base, count: rows * C) }
                        start += rows
                    }
                }
            }
        }
        if usesValueFirst { stream.valueFirst = valueFirst }
        stream.nextBlock += 1
    }
}

/// A model that runs one block over a residual stream (`RWKV6Model(block:of:)`, `RWKV7Model(block:of:)`).
public protocol BlockRunner: AnyObject {
    func run(_ stream: inout ResidualStream) throws
}

extension RWKV6Model: BlockRunner {}
extension RWKV7Model: BlockRunner {}

extension RWKV6Model {
    public var blockIndex: Int? { config.layerCount == 1 ? weights.layers.first?.index : nil }

    /// A model of block `i` of the checkpoint alone.
    public convenience init(block i: Int, of loader: WeightLoader) throws { self.init(weights: try RWKV6Weights(block: i, of: loader)) }

    /// Runs this one-block model over the stream; the `layerInputObserver` sees its inputs as in
    /// a whole forward pass.
    public func run(_ stream: inout ResidualStream) throws { try runBlock(&stream) }
}

extension RWKV7Model {
    public var blockIndex: Int? { config.layerCount == 1 ? weights.layers.first?.index : nil }

    /// A model of block `i` of the checkpoint alone.
    public convenience init(block i: Int, of loader: WeightLoader) throws { self.init(weights: try RWKV7Weights(block: i, of: loader)) }

    public func run(_ stream: inout ResidualStream) throws { try runBlock(&stream) }
}
