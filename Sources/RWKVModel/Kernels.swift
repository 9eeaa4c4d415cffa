#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// LayerNorm / GroupNorm affine parameters (`*.weight`, `*.bias`).
struct NormWeights: @unchecked Sendable {
    let weight: FloatBuffer
    let bias: FloatBuffer
}

/// The element-wise pieces of the forward pass, on row-major blocks of `rows` × `width` floats.
/// Plain loops over unsafe pointers: the compiler vectorises them, and nothing here allocates.
enum Kernels {
    /// torch `F.layer_norm` default eps.
    static let layerNormEpsilon: Float = 1e-5
    /// The official package's GroupNorm eps for ln_x (v6 and v7 alike: `eps = 64e-5`).
    static let groupNormEpsilon: Float = 64e-5

    /// `y = (x - mean) / sqrt(var + eps) * weight + bias` over each run of `width` values;
    /// `groups` runs per row (1 = LayerNorm, H = GroupNorm over heads). Mean and (biased)
    /// variance are accumulated in Double so the result does not depend on summation order.
    static func normalize(_ x: UnsafePointer<Float>, rows: Int, width: Int, groups: Int = 1,
                          _ norm: NormWeights, eps: Float, into y: UnsafeMutablePointer<Float>) {
        let n = width / groups
        let w = norm.weight.base, b = norm.bias.base
        for r in 0..<rows {
            for g in 0..<groups {
                let start = r * width + g * n
                let src = x + start, dst = y + start
                var sum = 0.0
                for i in 0..<n { sum += Double(src[i]) }
                let mean = sum / Double(n)
                var sq = 0.0
                for i in 0..<n { let d = Double(src[i]) - mean; sq += d * d }
                let rstd = Float(1 / (sq / Double(n) + Double(eps)).squareRoot())
                let m = Float(mean)
                for i in 0..<n {
                    let c = g * n + i
                    dst[i] = (src[i] - m) * rstd * w[c] + b[c]
                }
            }
        }
    }

    /// Token shift: `d[t] = previous(t) - x[t]`, where previous(0) is the state's saved row and
    /// previous(t) = x[t-1]; the state row then becomes the block's last row.
    static func tokenShift(_ x: UnsafePointer<Float>, rows: Int, width: Int,
                           previous: UnsafeMutablePointer<Float>, into d: UnsafeMutablePointer<Float>) {
        for c in 0..<width { d[c] = previous[c] - x[c] }
        for t in 1..<max(rows, 1) {
            let cur = x + t * width, prev = x + (t - 1) * width, out = d + t * width
            for c in 0..<width { out[c] = prev[c] - cur[c] }
        }
        previous.update(from: x + (rows - 1) * width, count: width)
    }

    /// `out = x + d * mix` (mix broadcast over rows).
    static func lerp(_ x: UnsafePointer<Float>, _ d: UnsafePointer<Float>, mix: UnsafePointer<Float>,
                     rows: Int, width: Int, into out: UnsafeMutablePointer<Float>) {
        for t in 0..<rows {
            let o = t * width
            for c in 0..<width { out[o + c] = x[o + c] + d[o + c] * mix[c] }
        }
    }

    static func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }

    static func applyTanh(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] = tanhf(x[i]) }
    }

    static func applySigmoid(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] = sigmoid(x[i]) }
    }

    /// `relu(x)²`, the channel-mix activation.
    static func applySquaredReLU(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { let v = max(x[i], 0); x[i] = v * v }
    }

    /// `x += y`.
    static func add(_ y: UnsafePointer<Float>, to x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] += y[i] }
    }

    /// `x *= y`.
    static func multiply(_ x: UnsafeMutablePointer<Float>, by y: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { x[i] *= y[i] }
    }

    // MARK: state recurrence (the only sequential part)
    //
    // Swift does not reassociate float sums, so a plain `for j { s += a[j] * b[j] }` stays a
    // serial chain. Eight independent partial sums let LLVM's SLP vectoriser use one 8-wide
    // (or two 4-wide) register in release builds, and stay plain scalar code in debug builds
    // (SIMD8 would be an order of magnitude slower there, which the test suite would feel).

    /// Σ a[j] b[j].
    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count n: Int) -> Float {
        var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0, s4: Float = 0, s5: Float = 0, s6: Float = 0, s7: Float = 0
        var j = 0
        while j + 8 <= n {
            s0 += a[j] * b[j]; s1 += a[j + 1] * b[j + 1]; s2 += a[j + 2] * b[j + 2]; s3 += a[j + 3] * b[j + 3]
            s4 += a[j + 4] * b[j + 4]; s5 += a[j + 5] * b[j + 5]; s6 += a[j + 6] * b[j + 6]; s7 += a[j + 7] * b[j + 7]
            j += 8
        }
        var s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
        while j < n { s += a[j] * b[j]; j += 1 }
        return s
    }

    /// RWKV-7 state row update and read-out, fused:
    /// row[j] ← row[j]·w[j] + sa·b[j] + v·k[j];  returns Σ row[j]·r[j] (new row).
    @inline(__always)
    static func updateRow(_ row: UnsafeMutablePointer<Float>, decay w: UnsafePointer<Float>, _ sa: Float, _ b: UnsafePointer<Float>,
                          _ v: Float, _ k: UnsafePointer<Float>, readOut r: UnsafePointer<Float>, count n: Int) -> Float {
        var j = 0
        while j < n {
            row[j] = row[j] * w[j] + sa * b[j] + v * k[j]
            j += 1
        }
        return dot(row, r, count: n)
    }

    /// RWKV-6 state row i (key i) read-out and update, fused:
    /// y[j] += r·row[j] + bonus·v[j];  row[j] ← k·v[j] + w·row[j].
    @inline(__always)
    static func updateRowV6(_ row: UnsafeMutablePointer<Float>, readOut y: UnsafeMutablePointer<Float>, r: Float, bonus: Float,
                            k: Float, decay w: Float, values v: UnsafePointer<Float>, count n: Int) {
        var j = 0
        while j < n {
            let s = row[j]
            y[j] += r * s + bonus * v[j]
            row[j] = k * v[j] + w * s
            j += 1
        }
    }
}
