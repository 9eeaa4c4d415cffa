import Dispatch

/// ggml block quantization (q8_0, q4_0, q4_1, q5_0, q5_1), byte-identical to ggml's reference
/// quantizers `quantize_row_*_ref`. The formats themselves are in BlockFormats.swift;
/// docs/quantization.md says what is exact and how it is tested.
public enum Quantizer {
    /// Quantizes `src`, a whole number of blocks, into `dst`, exactly their bytes. Returns how
    /// many values lie in blocks whose fp16 scale (or minimum) overflowed to infinity although
    /// the values were finite (|x| beyond about 8.3e6 for q8_0 and 5.2e5 for q4_0; for q4_1 and
    /// q5_1 already a minimum below -65504): such blocks dequantize to inf/NaN, and callers
    /// should say so.
    /// Sizes are the caller's contract (`ElementCodec` checks them); a mismatch is a bug.
    @discardableResult
    public static func quantize(_ src: UnsafeBufferPointer<Float>, type: DType, into dst: UnsafeMutableRawBufferPointer) -> Int {
        let blocks = checkedBlockCount(values: src.count, bytes: dst.count, type: type)
        guard blocks > 0, let x = src.baseAddress, let y = dst.baseAddress else { return 0 }
        return quantizeBlocks(type, x, y, 0..<blocks)
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
        default: preconditionFailure("\(type.rawValue) is not a block type")
        }
    }

    /// Quantizes a tensor of rows (`rowLength` values each, the contiguous dimension) on up to
    /// `threads` threads; the bytes are the same for any thread count. Adds the values whose
    /// block scale overflowed (see `quantize`) to `overflowCount`.
    public static func quantizeRows(_ values: [Float], rowLength: Int, type: DType, threads: Int,
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
        var overflowed = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { out, initialized in
            values.withUnsafeBufferPointer { src in
                overflowed = quantize(src, type: type, into: UnsafeMutableRawBufferPointer(out), threads: threads)
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
                                threads: Int) -> Int {
        let blocks = checkedBlockCount(values: src.count, bytes: dst.count, type: type)
        // Slices of at least 1024 blocks (32K values) keep thread start-up costs negligible.
        let workers = max(1, min(threads, blocks / 1024))
        guard workers > 1, let x = src.baseAddress, let y = dst.baseAddress else {
            return quantize(src, type: type, into: dst)
        }
        return withUnsafeTemporaryAllocation(of: Int.self, capacity: workers) { counts in
            let job = SharedBuffers(x: x, y: y, counts: counts)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                let slice = blocks * w / workers ..< blocks * (w + 1) / workers
                job.counts[w] = quantizeBlocks(type, job.x, job.y, slice)
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
                                       _ range: Range<Int>) -> Int {
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

    private static func dequantizeBlocks<F: BlockFormat>(_: F.Type, _ y: UnsafeRawPointer, _ x: UnsafeMutablePointer<Float>,
                                                         _ count: Int) {
        for b in 0..<count {
            F.dequantize(y + b * F.bytesPerBlock, into: x + b * F.valuesPerBlock)
        }
    }
}
