import Dispatch

/// ggml block quantization, byte-identical to ggml: q8_0, q4_0, q4_1, q5_0, q5_1 as the reference
/// quantizers `quantize_row_*_ref` (BlockFormats.swift); the k-quants q2_K...q6_K as
/// `quantize_row_q*_K_ref`, or with importance weights as `quantize_q*_K(..., quant_weights)`,
/// and iq4_nl as `quantize_iq4_nl` (KQuants.swift). docs/quantization.md says what is exact and
/// how it is tested.
public enum Quantizer {
    /// Importance weights for the weighted quantizers: `row` holds one weight per column of the
    /// tensor (an importance-matrix row), and the values being quantized start at column
    /// `firstColumn` (a multiple of the block size) of some row; they may run on into later rows.
    public struct Importance: @unchecked Sendable {
        public let row: UnsafeBufferPointer<Float>
        public let firstColumn: Int

        public init(row: UnsafeBufferPointer<Float>, firstColumn: Int = 0) {
            self.row = row
            self.firstColumn = firstColumn
        }
    }

    /// Whether ggml quantizes `type` differently when given importance weights, as we do: the
    /// k-quants, iq4_nl, and q4_0, q4_1, q5_0, q5_1. q8_0 (and the float types) ignore them, in
    /// ggml as here.
    public static func usesImportance(_ type: DType) -> Bool {
        [.q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_nl, .q4_0, .q4_1, .q5_0, .q5_1].contains(type)
    }

    /// Whether the weighted quantizer of `type` needs whole rows (`Importance.firstColumn` 0 and
    /// a whole number of rows): ggml's weighted q4_0, q4_1, q5_0, q5_1 scale their weights by the
    /// mean square of the entire row.
    public static func needsWholeRows(_ type: DType) -> Bool {
        [.q4_0, .q4_1, .q5_0, .q5_1].contains(type)
    }

    /// Quantizes `src`, a whole number of blocks, into `dst`, exactly their bytes. Returns how
    /// many values lie in blocks whose fp16 scale (or minimum) overflowed to infinity although
    /// the values were finite (|x| beyond about 8.3e6 for q8_0 and 5.2e5 for q4_0; for q4_1 and
    /// q5_1 already a minimum below -65504): such blocks dequantize to inf/NaN, and callers
    /// should say so.
    /// Sizes are the caller's contract (`ElementCodec` checks them); a mismatch is a bug.
    /// `importance`: per-column weights for the weighted quantizers (see `Importance`); nil is
    /// ggml's reference quantizer. Weights whose row is not a whole number of blocks, or that
    /// do not cover whole rows for the types that need them (`needsWholeRows`), are a caller's bug.
    @discardableResult
    public static func quantize(_ src: UnsafeBufferPointer<Float>, type: DType, into dst: UnsafeMutableRawBufferPointer,
                                importance: Importance? = nil) -> Int {
        let blocks = checkedBlockCount(values: src.count, bytes: dst.count, type: type)
        checkImportance(importance, type: type, values: src.count)
        guard blocks > 0, let x = src.baseAddress, let y = dst.baseAddress else { return 0 }
        return quantizeBlocks(type, x, y, 0..<blocks, importance)
    }

    private static func checkImportance(_ importance: Importance?, type: DType, values: Int) {
        guard let importance else { return }
        let n = type.blockSize, columns = importance.row.count
        precondition(columns > 0 && columns % n == 0 && importance.firstColumn % n == 0
                     && (0..<columns).contains(importance.firstColumn),
                     "importance row of \(columns) columns, first column \(importance.firstColumn): not whole \(type.rawValue) blocks")
        precondition(!needsWholeRows(type) || importance.firstColumn == 0 && values % columns == 0,
                     "ggml's weighted \(type.rawValue) quantizer needs whole rows")
    }

    /// Whether q8_0 blocks are quantized with AVX2 on this CPU (else portable Swift; same bytes).
    public static var usesAVX2ForQ8_0: Bool { Q8_0.usesAVX2 }

    /// Dequantizes `src`, whole blocks of `type`, into `dst`, exactly their values.
    public static func dequantize(_ src: UnsafeRawBufferPointer, type: DType, into dst: UnsafeMutableBufferPointer<Float>) {
        let blocks = checkedBlockCount(values: dst.count, bytes: src.count, type: type)
        guard blocks > 0, let y = src.baseAddress, let x = dst.baseAddress else { return }
        switch type {
        case .q8_0: dequantizeBlocks(Q8_0.self, y, x, blocks)
        case .q4_0: dequantizeBlocks(Q4_0.self, y, x, blocks)
        case .q4_1: dequantizeBlocks(Q4_1.self, y, x, blocks)
        case .q5_0: dequantizeBlocks(Q5_0.self, y, x, blocks)
        case .q5_1: dequantizeBlocks(Q5_1.self, y, x, blocks)
        case .q2_K: dequantizeBlocks(Q2_K.self, y, x, blocks)
        case .q3_K: dequantizeBlocks(Q3_K.self, y, x, blocks)
        case .q4_K: dequantizeBlocks(Q4_K.self, y, x, blocks)
        case .q5_K: dequantizeBlocks(Q5_K.self, y, x, blocks)
        case .q6_K: dequantizeBlocks(Q6_K.self, y, x, blocks)
        case .iq4_nl: dequantizeBlocks(IQ4_NL.self, y, x, blocks)
        default: preconditionFailure("\(type.rawValue) is not a block type")
        }
    }

    /// Quantizes a tensor of rows (`rowLength` values each, the contiguous dimension) on up to
    /// `threads` threads; the bytes are the same for any thread count. Adds the values whose
    /// block scale overflowed (see `quantize`) to `overflowCount`. `importance`, one weight per
    /// column (`rowLength` values, e.g. an importance-matrix row), selects ggml's weighted
    /// quantizer (`ggml_quantize_chunk` with `imatrix`).
    public static func quantizeRows(_ values: [Float], rowLength: Int, type: DType, importance: [Float]? = nil, threads: Int,
                                    overflowCount: inout Int) throws -> [UInt8] {
        guard type.isQuantized else {
            throw RWKVError(nil, "\(type.rawValue) is not a block quantization type")
        }
        guard rowLength > 0, rowLength % type.blockSize == 0 else {
            throw RWKVError(nil, "rows of \(rowLength) values cannot be split into \(type.rawValue) blocks of \(type.blockSize)")
        }
        guard values.count % rowLength == 0, let size = type.byteCount(elements: values.count) else {
            throw RWKVError(nil, "\(values.count) values are not a whole number of rows of \(rowLength)")
        }
        if let importance {
            guard importance.count == rowLength else {
                throw RWKVError(nil, "\(importance.count) importance weights for rows of \(rowLength) values")
            }
            guard importance.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
                throw RWKVError(nil, "importance weights must be finite and non-negative")
            }
        }
        var overflowed = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { out, initialized in
            values.withUnsafeBufferPointer { src in
                if let importance {
                    importance.withUnsafeBufferPointer { row in
                        overflowed = quantize(src, type: type, into: UnsafeMutableRawBufferPointer(out),
                                              importance: Importance(row: row), threads: threads)
                    }
                } else {
                    overflowed = quantize(src, type: type, into: UnsafeMutableRawBufferPointer(out), threads: threads)
                }
            }
            initialized = size
        }
        overflowCount += overflowed
        return bytes
    }

    /// `quantize` on up to `threads` threads, into a buffer the caller may reuse between tensors
    /// (a fresh output array costs page faults comparable to the quantization itself).
    @discardableResult
    public static func quantize(_ src: UnsafeBufferPointer<Float>, type: DType, into dst: UnsafeMutableRawBufferPointer,
                                importance: Importance? = nil, threads: Int) -> Int {
        let blocks = checkedBlockCount(values: src.count, bytes: dst.count, type: type)
        // Slices of at least 32K values keep thread start-up costs negligible (the k-quants cost
        // ~20x more a value, so they split sooner).
        let minimumBlocks = type.blockSize == 256 ? 8 : 1024
        let workers = max(1, min(threads, blocks / minimumBlocks))
        guard workers > 1, let x = src.baseAddress, let y = dst.baseAddress else {
            return quantize(src, type: type, into: dst, importance: importance)
        }
        checkImportance(importance, type: type, values: src.count)
        return withUnsafeTemporaryAllocation(of: Int.self, capacity: workers) { counts in
            let job = SharedBuffers(x: x, y: y, counts: counts, importance: importance)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                let slice = blocks * w / workers ..< blocks * (w + 1) / workers
                job.counts[w] = quantizeBlocks(type, job.x, job.y, slice, job.importance)
            }
            return counts.reduce(0, +)
        }
    }

    /// The buffers the workers of the threaded `quantize` share. Each worker reads its own slice of x,
    /// writes the same blocks of y and its own slot of counts: no two touch the same memory.
    private struct SharedBuffers: @unchecked Sendable {
        let x: UnsafePointer<Float>
        let y: UnsafeMutableRawPointer
        let counts: UnsafeMutableBufferPointer<Int>
        let importance: Importance?
    }

    // MARK: block loops, specialised per format

    private static func checkedBlockCount(values: Int, bytes: Int, type: DType) -> Int {
        precondition(type.isQuantized, "\(type.rawValue) is not a block type")
        precondition(values % type.blockSize == 0 && values / type.blockSize * type.blockBytes == bytes,
                     "\(values) values and \(bytes) bytes do not match as \(type.rawValue) blocks")
        return values / type.blockSize
    }

    /// Quantizes blocks `range` of x into the same blocks of y; returns the overflowed values.
    private static func quantizeBlocks(_ type: DType, _ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer,
                                       _ range: Range<Int>, _ importance: Importance?) -> Int {
        switch type {
        case .q2_K: return quantizeBlocks(Q2_K.self, x, y, range, importance)
        case .q3_K: return quantizeBlocks(Q3_K.self, x, y, range, importance)
        case .q4_K: return quantizeBlocks(Q4_K.self, x, y, range, importance)
        case .q5_K: return quantizeBlocks(Q5_K.self, x, y, range, importance)
        case .q6_K: return quantizeBlocks(Q6_K.self, x, y, range, importance)
        case .iq4_nl: return quantizeBlocks(IQ4_NL.self, x, y, range, importance)
        case .q4_0, .q4_1, .q5_0, .q5_1:
            if let importance { return quantizeLegacyWeighted(type, x, y, range, importance) }
        default: break
        }
        // q8_0 ignores importance weights, as ggml's quantize_q8_0 does.
        switch type {
        case .q8_0 where Q8_0.usesAVX2:
            return Q8_0.quantizeWithAVX2(x + range.lowerBound * 32, into: y + range.lowerBound * 34, blocks: range.count)
        case .q8_0: return quantizeBlocks(Q8_0.self, x, y, range)
        case .q4_0: return quantizeBlocks(Q4_0.self, x, y, range)
        case .q4_1: return quantizeBlocks(Q4_1.self, x, y, range)
        case .q5_0: return quantizeBlocks(Q5_0.self, x, y, range)
        case .q5_1: return quantizeBlocks(Q5_1.self, x, y, range)
        default: preconditionFailure("\(type.rawValue) is not a block type")
        }
    }

    private static func quantizeBlocks<F: BlockFormat>(_: F.Type, _ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer,
                                                       _ range: Range<Int>) -> Int {
        var overflowed = 0
        for b in range where F.quantize(x + b * F.valuesPerBlock, into: y + b * F.bytesPerBlock) {
            overflowed += F.valuesPerBlock
        }
        return overflowed
    }

    /// Block b's weights are those of its columns: the row's block (firstColumn/n + b) mod blocksPerRow.
    private static func quantizeBlocks<F: WeightedBlockFormat>(_: F.Type, _ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer,
                                                               _ range: Range<Int>, _ importance: Importance?) -> Int {
        let n = F.valuesPerBlock
        var overflowed = 0
        guard let importance, let w = importance.row.baseAddress else {
            for b in range where F.quantize(x + b * n, weights: nil, into: y + b * F.bytesPerBlock) {
                overflowed += n
            }
            return overflowed
        }
        let blocksPerRow = importance.row.count / n, first = importance.firstColumn / n
        for b in range where F.quantize(x + b * n, weights: w + (first + b) % blocksPerRow * n, into: y + b * F.bytesPerBlock) {
            overflowed += n
        }
        return overflowed
    }

    /// Blocks `range` of whole rows (checkImportance made sure), each row's σ² computed once.
    private static func quantizeLegacyWeighted(_ type: DType, _ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer,
                                               _ range: Range<Int>, _ importance: Importance) -> Int {
        guard let w = importance.row.baseAddress else { return 0 }
        let rowLength = importance.row.count, blocksPerRow = rowLength / 32
        var overflowed = 0, row = -1, sigma2: Float = 0
        for b in range {
            if b / blocksPerRow != row {
                row = b / blocksPerRow
                sigma2 = LegacyWeighted.rowSigma2(x + row * rowLength, rowLength)
            }
            if LegacyWeighted.quantize(type, x + b * 32, weights: w + b % blocksPerRow * 32, sigma2: sigma2,
                                       into: y + b * type.blockBytes) {
                overflowed += 32
            }
        }
        return overflowed
    }

    private static func dequantizeBlocks<F: BlockFormat>(_: F.Type, _ y: UnsafeRawPointer, _ x: UnsafeMutablePointer<Float>,
                                                         _ count: Int) {
        for b in 0..<count {
            F.dequantize(y + b * F.bytesPerBlock, into: x + b * F.valuesPerBlock)
        }
    }
}
