#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import COpenBLAS

/// Softmax attention as the hybrids use it (RWKV-X's attention blocks, GoldFinch's GOLD layers):
/// per head, scale 1/√head size, no positional encoding, heads side by side in rows `width` wide.
enum Attention {
    /// Query rows per block of scores: memory stays rows × keys, not queries × keys.
    static let queryBlock = 128

    /// `rows` queries over `keyCount` key/value rows into `y`. `firstPosition`: query row t is
    /// position firstPosition + t of the keys and sees keys 0 … firstPosition + t (causal, aligned
    /// to the end of the context); nil: every query sees every key. No keys: zero output, as
    /// torch's scaled_dot_product_attention gives over an empty memory.
    static func attend(_ q: UnsafePointer<Float>, rows T: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>,
                       keyCount S: Int, heads: Int, headSize hs: Int, width C: Int, firstPosition P: Int?,
                       into y: UnsafeMutablePointer<Float>) {
        guard S > 0 else { y.update(repeating: 0, count: T * C); return }
        let scale = 1 / Float(hs).squareRoot()
        let block = min(T, queryBlock)
        let scores = FloatBuffer(count: block * S)
        for h in 0..<heads {
            var t0 = 0
            while t0 < T {
                let rows = min(block, T - t0)
                let width = P.map { min(S, $0 + t0 + rows) } ?? S   // keys any row of this block may see
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(width), Int32(hs), scale,
                            q + t0 * C + h * hs, Int32(C), k + h * hs, Int32(C), 0, scores.base, Int32(width))
                for r in 0..<rows {
                    let p = scores.base + r * width
                    let seen = P.map { $0 + t0 + r + 1 } ?? width
                    var top = -Float.infinity
                    for s in 0..<seen { top = max(top, p[s]) }
                    var sum: Float = 0
                    for s in 0..<seen { p[s] = expf(p[s] - top); sum += p[s] }
                    let inv = 1 / sum
                    for s in 0..<seen { p[s] *= inv }
                    for s in seen..<width { p[s] = 0 }
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(hs), Int32(width), 1,
                            scores.base, Int32(width), v + h * hs, Int32(C), 0, y + t0 * C + h * hs, Int32(C))
                t0 += rows
            }
        }
    }
}
