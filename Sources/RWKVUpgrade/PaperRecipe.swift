/// The published RWKV-6 → RWKV-7 recipe (RWKV-7 paper, arXiv 2503.14456, section 6), one
/// function per step. Each takes RWKV-6 values and returns RWKV-7 values; the plan
/// (`UpgradePlan`) decides which tensor goes through which step.
///
/// What the paper leaves open, and the choice made here:
/// - "the gate replaced by a rank-Dg SVD factorisation, halved": the product g1·g2 is halved
///   (g2 carries the ½), not each factor.
/// - "w0 from time_decay": copied unchanged, as written (the `preserve` recipe maps it instead).
/// - a decay LoRA wider than the requested rank (tiny models: RWKV-6 uses 64, RWKV-7's formula
///   gives 32 at C = 128) keeps its strongest hidden units, see `resizedDecayLoRA`.
public enum PaperRecipe {
    /// Embedding, time-mix receptance and output matrices, and LayerNorm/GroupNorm biases.
    public static func halved(_ m: Matrix) -> Matrix { m.scaled(0.5) }

    /// LayerNorm/GroupNorm weights: sqrt(max(w, 0)).
    public static func normWeight(_ w: Matrix) -> Matrix {
        Matrix(rows: w.rows, cols: w.cols, values: w.values.map { max($0, 0).squareRoot() })
    }

    /// The five lerps of RWKV-7 (x_r, x_w, x_k, x_v, x_g) are RWKV-6's static lerps
    /// (time_maa_r/w/k/v/g) once the data-dependent token-shift LoRA (time_maa_x, time_maa_w1,
    /// time_maa_w2) is removed: RWKV-6 mixes with time_maa_* + LoRA(x), RWKV-7 with x_* alone.
    public static func lerpWithoutTokenShiftLoRA(_ timeMaa: Matrix) -> Matrix { timeMaa }

    /// `m` grown to `rows` rows; the new rows are U(±bound). Used for the FFN key (3.5C → 4C rows).
    public static func widenedRows(_ m: Matrix, to rows: Int, bound: Double, random: inout SeededRandom) -> Matrix {
        precondition(rows >= m.rows)
        return Matrix(rows: rows, cols: m.cols, values: m.values + random.uniformArray((rows - m.rows) * m.cols, bound: bound))
    }

    /// `m` grown to `cols` columns; the new columns are U(±bound), drawn row by row.
    /// Used for the FFN value (3.5C → 4C columns).
    public static func widenedColumns(_ m: Matrix, to cols: Int, bound: Double, random: inout SeededRandom) -> Matrix {
        precondition(cols >= m.cols)
        var out = Matrix(zeros: m.rows, cols)
        for r in 0..<m.rows {
            for c in 0..<cols {
                out[r, c] = c < m.cols ? m[r, c] : Float(random.uniform(-bound, bound))
            }
        }
        return out
    }

    /// The decay LoRA time_decay_w1 (C×D6), time_decay_w2 (D6×C) at RWKV-7's rank D7.
    /// Wider: new columns of w1 and rows of w2 are U(±bound) (the paper's 1e-4), so
    /// tanh(x·w1)·w2 is unchanged to about bound². Narrower: the D7 hidden units with the largest
    /// ‖w1[:,j]‖·‖w2[j,:]‖ are kept, in their original order; each unit passes through its own
    /// tanh, so units can be dropped but not merged. Returns the kept units' indices too.
    public static func resizedDecayLoRA(w1: Matrix, w2: Matrix, rank: Int, bound: Double,
                                        random1: inout SeededRandom, random2: inout SeededRandom) -> (w1: Matrix, w2: Matrix, kept: [Int]) {
        precondition(w1.cols == w2.rows)
        let d6 = w1.cols
        if rank >= d6 {
            return (widenedColumns(w1, to: rank, bound: bound, random: &random1),
                    widenedRows(w2, to: rank, bound: bound, random: &random2), Array(0..<d6))
        }
        let strength = (0..<d6).map { j -> Double in
            let a = (0..<w1.rows).reduce(0.0) { $0 + Double(w1[$1, j]) * Double(w1[$1, j]) }
            let b = (0..<w2.cols).reduce(0.0) { $0 + Double(w2[j, $1]) * Double(w2[j, $1]) }
            return (a * b).squareRoot()
        }
        // Strongest first; ties broken by index so the choice is deterministic.
        let kept = (0..<d6).sorted { strength[$0] != strength[$1] ? strength[$0] > strength[$1] : $0 < $1 }
            .prefix(rank).sorted()
        var n1 = Matrix(zeros: w1.rows, rank), n2 = Matrix(zeros: rank, w2.cols)
        for (newIndex, j) in kept.enumerated() {
            for r in 0..<w1.rows { n1[r, newIndex] = w1[r, j] }
            for c in 0..<w2.cols { n2[newIndex, c] = w2[j, c] }
        }
        return (n1, n2, Array(kept))
    }

    /// The gate. RWKV-6 computes silu(x·Gᵀ) with G stored (out, in); RWKV-7 computes
    /// sigmoid(x·g1)·g2 with g1 (in, D) and g2 (D, out). So Gᵀ (in, out) is factorised:
    /// Gᵀ ≈ U·S·Vᵀ (rank D), g1 = U·√S, g2 = ½·√S·Vᵀ (the paper's halving, on the product).
    /// Also returns the truncation's relative error ‖Gᵀ - U·S·Vᵀ‖/‖G‖ (before the halving).
    public static func gateFactors(gate: Matrix, rank: Int) throws -> (g1: Matrix, g2: Matrix, relativeError: Double) {
        let svd = try TruncatedSVD(gate.transposed(), rank: rank)
        let total = gate.frobeniusNorm * gate.frobeniusNorm
        let kept = svd.s.reduce(0.0) { $0 + Double($1) * Double($1) }
        let relativeError = total > 0 ? (max(0, total - kept) / total).squareRoot() : 0
        let roots = svd.s.map { $0.squareRoot() }
        var g1 = svd.u.scalingColumns(roots)
        var g2 = svd.v.transposed().scalingRows(roots.map { $0 * 0.5 })
        // A rank above min(in, out) cannot come from the SVD: pad with zero units.
        if g1.cols < rank {
            g1 = widenedZeros(columns: g1, to: rank)
            g2 = widenedZeros(rows: g2, to: rank)
        }
        return (g1, g2, relativeError)
    }

    static func widenedZeros(columns m: Matrix, to cols: Int) -> Matrix {
        var out = Matrix(zeros: m.rows, cols)
        for r in 0..<m.rows { for c in 0..<m.cols { out[r, c] = m[r, c] } }
        return out
    }

    static func widenedZeros(rows m: Matrix, to rows: Int) -> Matrix {
        Matrix(rows: rows, cols: m.cols, values: m.values + [Float](repeating: 0, count: (rows - m.rows) * m.cols))
    }
}

/// RWKV-7's training initialisation for the parameters RWKV-6 has no counterpart for, as in
/// RWKV-LM's RWKV-7 trainer at the time of the paper (RWKV-v7/train_temp/src/model.py,
/// commit f8214aa, April 2025; later versions changed a0/v0/k_k/k_a/r_k).
public enum RWKV7Init {
    /// x_a[i] = 1 - (i/C)^(0.9·(1 - layer/L)).
    public static func iclrLerp(layer: Int, layerCount: Int, embeddingSize c: Int) -> Matrix {
        let exponent = 0.9 * (1 - Double(layer) / Double(layerCount))
        return Matrix(row: (0..<c).map { Float(1 - pow(Double($0) / Double(c), exponent)) })
    }

    /// A (1,1,C) vector filled with one value: a0 = 0, v0 = 1, k_k = 0.85, k_a = 1 in the paper's init.
    public static func constant(_ value: Float, count: Int) -> Matrix {
        Matrix(row: [Float](repeating: value, count: count))
    }

    /// a1 and v1 start at zero (C×D).
    public static func zeroLoRA(rows: Int, cols: Int) -> Matrix { Matrix(zeros: rows, cols) }

    /// a2 and v2 (D×C): orthogonal times 0.1. The trainer's ortho_init uses gain
    /// sqrt(rows/cols) when rows > cols and 1 otherwise, times the scale.
    public static func orthogonalLoRA(rows: Int, cols: Int, scale: Float = 0.1, random: inout SeededRandom) -> Matrix {
        let gain: Float = rows > cols ? Float((Double(rows) / Double(cols)).squareRoot()) : 1
        return Matrix.orthogonal(rows: rows, cols: cols, gain: gain * scale, random: &random)
    }

    /// r_k (H×N) starts at zero.
    public static func bonus(heads: Int, headSize: Int) -> Matrix { Matrix(zeros: heads, headSize) }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
