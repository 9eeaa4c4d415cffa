import COpenBLAS
import Foundation
import RWKVFormats
import RWKVModel

/// The inputs of one layer's time mix (or channel mix) for a batch of tokens: the LayerNorm
/// output `x` of each token and the one of the token before it. Every data-dependent choice of
/// the `preserve` recipe is a fit over such a batch.
public struct MixInputs: Sendable {
    /// N×C.
    public let current: Matrix
    /// N×C, the previous token's LayerNorm output (the token shift).
    public let previous: Matrix

    public init(current: Matrix, previous: Matrix) {
        precondition(current.rows == previous.rows && current.cols == previous.cols)
        self.current = current
        self.previous = previous
    }

    public var count: Int { current.rows }

    /// x + (x_prev - x)·mix, with one mix value per channel (RWKV-7, and RWKV-6's static part).
    public func lerp(_ mix: [Float]) -> Matrix {
        var out = current
        for n in 0..<current.rows {
            for c in 0..<current.cols {
                let i = n * current.cols + c
                out.values[i] += (previous.values[i] - current.values[i]) * mix[c]
            }
        }
        return out
    }

    /// x + (x_prev - x)·(mix + dynamic[n]): RWKV-6's data-dependent lerp, one row of `dynamic` per token.
    public func lerp(_ mix: [Float], plus dynamic: Matrix) -> Matrix {
        var out = current
        for n in 0..<current.rows {
            for c in 0..<current.cols {
                let i = n * current.cols + c
                out.values[i] += (previous.values[i] - current.values[i]) * (mix[c] + dynamic.values[i])
            }
        }
        return out
    }

    /// A stand-in for real activations when none are given: a sequence of LayerNorm outputs
    /// x = γ⊙x̂ + β with x̂ independent standard normal per channel and per token, each token's
    /// previous one being the token before it (zero before the first, as in the initial state).
    /// It knows each channel's scale and offset from the norm's weight and bias, nothing about
    /// correlations between channels or tokens.
    public static func gaussianProxy(lnWeight: [Float], lnBias: [Float], count: Int, random: inout SeededRandom) -> MixInputs {
        let c = lnWeight.count
        var current = Matrix(zeros: count, c)
        for n in 0..<count {
            for j in 0..<c { current.values[n * c + j] = Float(random.gaussian()) * lnWeight[j] + lnBias[j] }
        }
        return MixInputs(sequence: current)
    }

    /// A token sequence's LayerNorm outputs, each token's previous one being the row before
    /// (zero before the first).
    public init(sequence: Matrix) {
        var previous = Matrix(zeros: sequence.rows, sequence.cols)
        if sequence.rows > 1 {
            previous.values.replaceSubrange(sequence.cols..<(sequence.rows * sequence.cols),
                                            with: sequence.values[0..<((sequence.rows - 1) * sequence.cols)])
        }
        self.init(current: sequence, previous: previous)
    }
}

/// Our own recipe: an RWKV-7 that computes, before any training, as nearly as it can what the
/// RWKV-6 computed. docs/upgrade.md explains each step and each remaining mismatch.
public enum PreserveRecipe {
    /// The largest sigmoid value the decay mapping aims for: RWKV-7's decay
    /// exp(-e^-0.5·sigmoid(z)) cannot go below e^(-e^-0.5) ≈ 0.545 per token; RWKV-6 channels
    /// faster than exp(-e^-0.5·pMax) ≈ 0.549 are clamped there.
    public static let decaySigmoidLimit = 0.99

    /// RWKV-6's token-shift LoRA outputs for a batch: m_w, m_k, m_v, m_r, m_g (each N×C), from
    /// tanh((x + d·time_maa_x)·time_maa_w1) split in five and multiplied by time_maa_w2[i].
    public static func tokenShiftLoRA(_ inputs: MixInputs, timeMaaX: [Float], w1: Matrix, w2: [Matrix]) -> [Matrix] {
        let hidden = inputs.lerp(timeMaaX).multiplied(by: w1)
        let tanhHidden = Matrix(rows: hidden.rows, cols: hidden.cols, values: hidden.values.map { tanh($0) })
        let d = w2.first?.rows ?? 0
        return w2.enumerated().map { i, w2i in
            var part = Matrix(zeros: hidden.rows, d)
            for n in 0..<hidden.rows { for j in 0..<d { part[n, j] = tanhHidden[n, i * d + j] } }
            return part.multiplied(by: w2i)
        }
    }

    /// A static RWKV-7 lerp for RWKV-6's dynamic one. RWKV-6 mixes channel c as
    /// x + d·(time_maa + m) with d = x_prev - x and m the LoRA output; the static mix μ that
    /// minimises Σ (d·(μ - time_maa - m))² over the batch is time_maa + Σ d²·m / Σ d², the LoRA's
    /// mean weighted by where the token shift matters.
    public static func meanLerp(timeMaa: [Float], lora: Matrix, inputs: MixInputs) -> [Float] {
        (0..<timeMaa.count).map { c in
            var num = 0.0, den = 0.0, plain = 0.0
            for n in 0..<lora.rows {
                let d = Double(inputs.previous[n, c] - inputs.current[n, c])
                num += d * d * Double(lora[n, c])
                den += d * d
                plain += Double(lora[n, c])
            }
            let shift = den > 0 ? num / den : plain / Double(max(lora.rows, 1))
            return timeMaa[c] + Float(shift)
        }
    }

    /// RWKV-6 decay pre-activation z (decay exp(-exp(z))) → the RWKV-7 one z' with the same
    /// decay, exp(-e^-0.5·sigmoid(z')): sigmoid(z') = e^(z+0.5), z' = logit(e^(z+0.5)), clamped at
    /// `decaySigmoidLimit` for channels RWKV-7 cannot follow. For z ≪ 0, z' ≈ z + 0.5.
    public static func rwkv7DecayPreactivation(_ z: Double) -> Double {
        let p = min(exp(z + 0.5), decaySigmoidLimit)
        return log(p) - log1p(-p)
    }

    /// d z'/d z: 1/(1 - p) below the clamp, 0 on it.
    public static func rwkv7DecaySlope(_ z: Double) -> Double {
        let p = exp(z + 0.5)
        return p >= decaySigmoidLimit ? 0 : 1 / (1 - p)
    }

    public struct DecayFit: Sendable {
        /// w0 (C).
        public let w0: [Float]
        /// Per-channel factor applied to w2's columns (C).
        public let slope: [Float]
        /// Channels whose RWKV-6 decay at the batch's mean input is faster than RWKV-7 can go.
        public let clampedChannels: Int
        /// RWKV-7's decay per channel, averaged over the batch (used for the token-shift compensation).
        public let meanDecay: [Float]
    }

    /// Maps the decay. RWKV-6: z = time_decay + δ6 with δ6 = tanh(xw6·dw1)·dw2 (xw6: the
    /// dynamically mixed input). RWKV-7: z' = w0 + tanh(xw7·w1)·w2 with w1 = dw1 (resized) and
    /// w2 = dw2·diag(slope). Per channel, w0 and slope are the least-squares line from
    /// δ7 = tanh(xw7·w1)·dw2 to the exact target z'(time_decay + δ6) over the batch: the
    /// linearisation of the map, taken where the inputs actually are rather than at one point.
    /// Without variation in δ7 (an untrained LoRA), the slope is the map's derivative at the mean.
    public static func decayFit(timeDecay: [Float], v6Input: Matrix, v6W1: Matrix, v6W2: Matrix,
                                v7Input: Matrix, w1: Matrix, w2: Matrix) -> DecayFit {
        let c = timeDecay.count, n = v6Input.rows
        let delta6 = tanhProduct(v6Input, v6W1, v6W2)
        let delta7 = tanhProduct(v7Input, w1, w2)
        var w0 = [Float](repeating: 0, count: c), slope = [Float](repeating: 0, count: c)
        var meanDecay = [Float](repeating: 0, count: c)
        var clamped = 0
        for ch in 0..<c {
            var mean6 = 0.0, mean7 = 0.0, meanTarget = 0.0
            for i in 0..<n {
                let d6 = Double(delta6[i, ch])
                mean6 += d6
                mean7 += Double(delta7[i, ch])
                meanTarget += rwkv7DecayPreactivation(Double(timeDecay[ch]) + d6)
            }
            mean6 /= Double(n); mean7 /= Double(n); meanTarget /= Double(n)
            var cov = 0.0, variance = 0.0
            for i in 0..<n {
                let x = Double(delta7[i, ch]) - mean7
                cov += x * (rwkv7DecayPreactivation(Double(timeDecay[ch]) + Double(delta6[i, ch])) - meanTarget)
                variance += x * x
            }
            let operatingPoint = Double(timeDecay[ch]) + mean6
            if exp(operatingPoint + 0.5) >= decaySigmoidLimit { clamped += 1 }
            let s = variance > 1e-12 * Double(n) ? cov / variance : rwkv7DecaySlope(operatingPoint)
            slope[ch] = Float(s)
            w0[ch] = Float(meanTarget - s * mean7)
            var decaySum = 0.0
            for i in 0..<n {
                let z = Double(w0[ch]) + s * Double(delta7[i, ch])
                decaySum += exp(-exp(-0.5) / (1 + exp(-z)))
            }
            meanDecay[ch] = Float(decaySum / Double(n))
        }
        return DecayFit(w0: w0, slope: slope, clampedChannels: clamped, meanDecay: meanDecay)
    }

    /// tanh(x·a)·b.
    static func tanhProduct(_ x: Matrix, _ a: Matrix, _ b: Matrix) -> Matrix {
        let h = x.multiplied(by: a)
        return Matrix(rows: h.rows, cols: h.cols, values: h.values.map { tanh($0) }).multiplied(by: b)
    }

    /// The bonus and the token shift of the decay.
    ///
    /// RWKV-6 reads the state before the current token's decay and adds the current token with
    /// weight u = time_faaaa, all inside GroupNorm; RWKV-7 decays first (one more factor w_t on
    /// every past token), adds the current token with weight 1 inside GroupNorm and
    /// Σ r·k·r_k outside it, unnormalised.
    /// - `compensateShift`: receptance row j is divided by channel j's mean RWKV-7 decay w̄_j,
    ///   undoing the extra factor on average; the current token then weighs 1/w̄_j inside.
    /// - What is missing inside (u - 1, or u - 1/w̄ with the compensation) goes to r_k, scaled per
    ///   head by `outsideScale[h]`: outside GroupNorm it is not divided by the head's spread σ nor
    ///   multiplied by ln_x's weight γ, so it must carry ≈ γ/σ itself (`bonusOutsideScale`).
    public static func bonus(timeFirst u: Matrix, meanDecay: [Float], compensateShift: Bool,
                             outsideScale: [Float]) -> (rk: Matrix, receptanceRowScale: [Float]) {
        let scale: [Float] = compensateShift ? meanDecay.map { 1 / $0 } : [Float](repeating: 1, count: meanDecay.count)
        let missing = bonusMissingInside(timeFirst: u, meanDecay: meanDecay, compensateShift: compensateShift)
        var rk = missing
        for h in 0..<u.rows { for j in 0..<u.cols { rk[h, j] *= outsideScale[h] } }
        return (rk, scale)
    }

    /// u - 1, or u·w̄ - 1 with the shift compensation (in units of the scaled receptance).
    static func bonusMissingInside(timeFirst u: Matrix, meanDecay: [Float], compensateShift: Bool) -> Matrix {
        Matrix(rows: u.rows, cols: u.cols, values: u.values.enumerated().map { j, value in
            compensateShift ? value * meanDecay[j] - 1 : value - 1
        })
    }

    /// The per-head factor for r_k. `readout6` is RWKV-6's time mix run over the batch as a
    /// sequence (RWKVModel's `timeMixReadout`): per token, the WKV readout GroupNorm normalises,
    /// each head by its spread σ (per token; ε as the model's GroupNorm). The factor is the
    /// least-squares c_h = Σ γ_i·B_i²/σ / Σ B_i², B = (Σ_j r_j·k_j·e_j)·v_i the outside term
    /// RWKV-7 computes for unit scale (e = `missing`; r, k, v as RWKV-7 will compute them).
    public static func bonusOutsideScale(missing e: Matrix, lnXWeight gamma: [Float], readout6: Matrix,
                                         r7: Matrix, k7: Matrix, v7: Matrix) -> [Float] {
        let heads = e.rows, n = e.cols, epsilon = Double(RWKV6Model.groupNormEpsilon)
        var num = [Double](repeating: 0, count: heads), den = [Double](repeating: 0, count: heads)
        for t in 0..<readout6.rows {
            for h in 0..<heads {
                var mean = 0.0, sq = 0.0
                for i in 0..<n { mean += Double(readout6[t, h * n + i]) }
                mean /= Double(n)
                for i in 0..<n { sq += (Double(readout6[t, h * n + i]) - mean) * (Double(readout6[t, h * n + i]) - mean) }
                let sigma = (sq / Double(n) + epsilon).squareRoot()
                var weight = 0.0
                for j in 0..<n { weight += Double(r7[t, h * n + j]) * Double(k7[t, h * n + j]) * Double(e[h, j]) }
                for i in 0..<n {
                    let b = weight * Double(v7[t, h * n + i])
                    num[h] += Double(gamma[h * n + i]) * b * b / sigma
                    den[h] += b * b
                }
            }
        }
        return (0..<heads).map { h in Float(den[h] > 0 ? num[h] / den[h] : 0) }
    }

    public struct GateFit: Sendable {
        public let g1: Matrix
        public let g2: Matrix
        /// ‖σ(X·g1)·g2 - silu(X6·Gᵀ)‖ / ‖silu(X6·Gᵀ)‖ over the fitting batch.
        public let relativeError: Double
        /// The solve that gave g2.
        public let ridge: RidgeSolution
    }

    /// The gate: RWKV-6 silu(xg6·Gᵀ) (G stored (out, in)) by RWKV-7 sigmoid(xg7·g1)·g2.
    /// g1: the D-1 leading left singular vectors of Gᵀ, each scaled so its unit's input has a
    /// given spread (standard deviation) over the batch, plus one zero column, a unit stuck at
    /// sigmoid(0) = ½ that provides a constant (silu's outputs have a non-zero mean; RWKV-7's g1
    /// has no bias). g2: the least-squares solution of sigmoid(xg7·g1)·g2 ≈ silu(xg6·Gᵀ) over the
    /// batch (ridge `defaultGateRidge` of the mean feature energy). Each spread in
    /// `spreads` is tried and the best fit kept: a small spread keeps sigmoid linear (right for a
    /// gate whose pre-activations are small, where silu is nearly linear too), a larger one lets
    /// sigmoid's curvature stand in for silu's.
    ///
    /// The spread search and the refinement see the target through its `targetRank` leading
    /// principal directions (default 2·D; all C when that is not fewer): T·V_K. g2's solve is
    /// linear in T, so on those directions the fit is the full one's exactly, and each step costs
    /// N·D·K instead of N·D·C for the target's products; the error left in the other directions
    /// is what the choice of g1 does not see (their share of T's energy is in the report). g2 is
    /// solved on the full target at the end.
    public static func gateFit(gate: Matrix, v6Input: Matrix, v7Input: Matrix, rank: Int,
                               spreads: [Float] = [0.5, 1, 2, 4, 8], refineSteps: Int = 0,
                               ridge: Double = defaultGateRidge, targetRank: Int? = nil) throws -> GateFit {
        let c = gate.cols
        let linearUnits = max(0, min(rank - 1, min(gate.rows, gate.cols)))
        let svd = try TruncatedSVD(gate.transposed(), rank: linearUnits)
        let h = v7Input.multiplied(by: svd.u)
        let unitSpread: [Float] = (0..<linearUnits).map { j in
            var mean = 0.0, sq = 0.0
            for n in 0..<h.rows { mean += Double(h[n, j]); sq += Double(h[n, j]) * Double(h[n, j]) }
            mean /= Double(max(h.rows, 1))
            return Float(max(sq / Double(max(h.rows, 1)) - mean * mean, 0).squareRoot())
        }
        let z = v6Input.multiplied(by: gate.transposed())
        let fullTarget = Matrix(rows: z.rows, cols: z.cols, values: z.values.map { $0 / (1 + exp(-$0)) })
        let k = targetRank ?? 2 * rank
        let directions = k < c ? try TruncatedSVD(fullTarget, rank: k).v : nil      // C×K
        let target = directions.map { fullTarget.multiplied(by: $0) } ?? fullTarget
        let targetNorm = target.frobeniusNorm
        var best: (fit: GateFit, features: Matrix, residual: Matrix)?
        for spread in spreads {
            var g1 = Matrix(zeros: c, rank)
            for j in 0..<linearUnits {
                let alpha = unitSpread[j] > 1e-12 ? spread / unitSpread[j] : 1
                for i in 0..<c { g1[i, j] = svd.u[i, j] * alpha }
            }
            let trial = try gateError(g1, v7Input: v7Input, target: target, targetNorm: targetNorm, ridge: ridge)
            if best == nil || trial.fit.relativeError < best!.fit.relativeError * (1 - decisionMargin) { best = trial }
        }
        guard let best else { throw RWKVError(nil, "internal error: no gate spread to try") }
        let refined = try refineGate(best, v7Input: v7Input, target: target, targetNorm: targetNorm, ridge: ridge,
                                     steps: refineSteps, constantUnit: linearUnits < rank ? rank - 1 : nil)
        guard directions != nil else { return refined }
        return try gateError(refined.g1, v7Input: v7Input, target: fullTarget, targetNorm: fullTarget.frobeniusNorm, ridge: ridge).fit
    }

    /// g2's ridge relative to the mean feature energy: large enough that g2's coefficients stay
    /// of the size of the outputs (at 1e-6 they reached ±30 and cancelled, which bf16 rounding
    /// of the written g2 then spoils), small enough not to bias the fit (docs/upgrade.md).
    public static let defaultGateRidge = 1e-3

    /// The gate's choices (a spread, a step) take a candidate only when it lowers the error by
    /// this fraction: far above the 1e-7 by which OpenBLAS's kernel sets round the same sums
    /// differently, so a near-tie does not decide differently on another CPU.
    static let decisionMargin = 1e-4

    /// The gate's error over the batch for the units g1, with g2 the least-squares solution
    /// (ridge `ridge` of the mean feature energy): the fit, its relative error ‖σ(X·g1)·g2 - T‖ / ‖T‖,
    /// the features σ(X·g1) and the residual σ(X·g1)·g2 - T.
    private static func gateError(_ g1: Matrix, v7Input x: Matrix, target: Matrix, targetNorm: Double,
                                  ridge: Double) throws -> (fit: GateFit, features: Matrix, residual: Matrix) {
        let preact = x.multiplied(by: g1)
        let features = Matrix(rows: preact.rows, cols: preact.cols, values: preact.values.map { 1 / (1 + exp(-$0)) })
        let solve = try ridgeLeastSquares(features: features, targets: target, relativeRidge: ridge)
        let g2 = solve.coefficients
        var residual = features.multiplied(by: g2)
        var err = 0.0
        for i in 0..<target.values.count {
            residual.values[i] -= target.values[i]
            err += Double(residual.values[i]) * Double(residual.values[i])
        }
        return (GateFit(g1: g1, g2: g2, relativeError: targetNorm > 0 ? err.squareRoot() / targetNorm : 0,
                        ridge: solve), features, residual)
    }

    /// Moves g1 off the singular vectors: `steps` steps of gradient descent on the batch error,
    /// g2 re-solved by least squares at every point (variable projection: with g2 optimal, the
    /// error's gradient in g1 is Xᵀ·((R·g2ᵀ)⊙σ'(X·g1)), R the residual). Each step moves g1 by a
    /// fraction of its norm, grown after a step that lowers the error and halved (the step
    /// retried) after one that does not, so the error never rises. The constant unit stays zero.
    /// `start`: the fit with its features σ(X·g1) and residual. The gradient is computed once per
    /// point: a rejected step retries from the same point with a smaller rate.
    static func refineGate(_ start: (fit: GateFit, features: Matrix, residual: Matrix), v7Input x: Matrix, target: Matrix,
                           targetNorm: Double, ridge: Double, steps: Int, constantUnit: Int?) throws -> GateFit {
        guard steps > 0 else { return start.fit }
        var best = start
        var rate = 0.02
        var tries = 0
        var stored: Matrix?
        while tries < 3 * steps && rate > 1e-6 {
            tries += 1
            if stored == nil {
                var back = best.residual.multiplied(by: best.fit.g2.transposed())       // N×D
                for i in 0..<back.values.count { back.values[i] *= best.features.values[i] * (1 - best.features.values[i]) }
                var g = x.transposedTimes(back)                                         // C×D
                if let unit = constantUnit { for i in 0..<g.rows { g[i, unit] = 0 } }
                stored = g
            }
            guard let gradient = stored, case let gradientNorm = gradient.frobeniusNorm, gradientNorm > 0 else { break }
            let scale = Float(rate * best.fit.g1.frobeniusNorm / gradientNorm)
            var g1 = best.fit.g1
            for i in 0..<g1.values.count { g1.values[i] -= scale * gradient.values[i] }
            let trial = try gateError(g1, v7Input: x, target: target, targetNorm: targetNorm, ridge: ridge)
            if trial.fit.relativeError < best.fit.relativeError * (1 - decisionMargin) {
                best = trial
                stored = nil
                rate *= 1.5
            } else {
                rate *= 0.5
            }
        }
        return best.fit
    }

    /// RWKV-6's receptance, key and value see inputs mixed with the token-shift LoRA, RWKV-7's
    /// only the static lerp. With recorded activations the matrix is refitted so that
    /// W'·x7 ≈ W·x6 over the batch: argmin ‖X7·W'ᵀ - X6·Wᵀ‖² + λ‖W' - W‖², the ridge pulling
    /// towards the original where the batch says little. λ is worth `priorTokens` tokens of
    /// average feature energy (default 2·C, best or near-best at every batch size measured,
    /// docs/upgrade.md).
    /// W: out×in, X6 and X7: N×in.
    public static func refitProjection(_ w: Matrix, v6Input: Matrix, v7Input: Matrix, priorTokens: Double? = nil) throws -> RidgeSolution {
        let wt = w.transposed()
        let tokens = Double(max(v7Input.rows, 1))
        let relativeRidge = (priorTokens ?? 2 * Double(w.cols)) / tokens       // λ = P·(trace/k)/N
        return try ridgeLeastSquares(features: v7Input, targets: v6Input.multiplied(by: wt), relativeRidge: relativeRidge,
                                     prior: wt).transposed()
    }

    /// The smallest ridge any solve uses, relative to the mean feature energy: far above the
    /// rounding of a Gram matrix accumulated in Double (about n·1e-16 of its trace), so the
    /// regularised system is positive definite whatever the batch.
    static let minimumRelativeRidge = 1e-9

    /// argmin_B ‖F·B - T‖² + λ‖B - P‖², λ = relativeRidge · trace(FᵀF)/k, P = 0 unless given.
    /// F: N×k, T: N×m, P: k×m → B: k×m.
    ///
    /// Never fails on finite input. The Gram matrix is accumulated in Double (dsyrk), so it is
    /// positive semi-definite up to rounding and the ridge makes it definite: a rank-deficient
    /// batch (a repeated token, dead channels, fewer tokens than unknowns) still solves. Should
    /// Cholesky (dposv) still fail, the ridge is raised a hundredfold at a time and the result
    /// says by how much. Features with no energy at all leave B = P. With more unknowns than
    /// samples (k > N) the same minimiser is solved in its N×N dual form, B = P + Fᵀ(FFᵀ + λI)⁻¹(T - FP).
    public static func ridgeLeastSquares(features f: Matrix, targets t: Matrix, relativeRidge: Double,
                                         prior: Matrix? = nil) throws -> RidgeSolution {
        let k = f.cols, m = t.cols, n = f.rows
        precondition(t.rows == n && prior.map { $0.rows == k && $0.cols == m } ?? true)
        guard f.values.allSatisfy(\.isFinite), t.values.allSatisfy(\.isFinite) else {
            throw RWKVError(nil, "least-squares fit of \(k) unknowns on \(n) samples has non-finite values")
        }
        // Only the Gram matrix needs Double (its rounding decides definiteness); the products with
        // the targets are float GEMMs, as the forward pass's.
        let fd = f.values.map(Double.init)
        // The residual the ridge-regularised correction Δ = B - P must explain: R = T - F·P (N×m).
        var residual = t
        if let prior, n > 0, k > 0, m > 0 {
            let fp = f.multiplied(by: prior)
            for i in 0..<residual.values.count { residual.values[i] -= fp.values[i] }
        }
        let dual = k > n
        let size = dual ? n : k
        // Gram (upper triangle, row-major = LAPACK's lower, column-major): FᵀF, or FFᵀ in the dual form.
        var gram = [Double](repeating: 0, count: size * size)
        if size > 0 {
            cblas_dsyrk(CblasRowMajor, CblasUpper, dual ? CblasNoTrans : CblasTrans, Int32(size), Int32(dual ? k : n), 1,
                        fd, Int32(k), 0, &gram, Int32(size))
        }
        let trace = (0..<size).reduce(0.0) { $0 + gram[$1 * size + $1] }
        let keep = prior ?? Matrix(zeros: k, m)
        guard trace > 0, trace.isFinite, m > 0 else {
            return RidgeSolution(coefficients: keep, relativeRidge: relativeRidge, requestedRidge: relativeRidge, hasSignal: false)
        }
        // Right-hand sides, column-major: Fᵀ·R (k×m), or R itself (N×m) in the dual form; the
        // transpose of a row-major m×size matrix is its column-major layout.
        let rhs = (dual ? residual : f.transposedTimes(residual)).transposed().values.map(Double.init)
        var used = max(relativeRidge, minimumRelativeRidge)
        var solution: [Double]?
        for _ in 0..<12 {
            var a = gram, b = rhs
            let lambda = used * trace / Double(k)
            for i in 0..<size { a[i * size + i] += lambda }
            var uplo = Int8(UInt8(ascii: "L"))
            var order = Int32(size), columns = Int32(m), lda = Int32(size), ldb = Int32(size), info: Int32 = 0
            dposv_(&uplo, &order, &columns, &a, &lda, &b, &ldb, &info, 1)
            if info == 0 { solution = b; break }
            used *= 100
        }
        guard let solution else {
            throw RWKVError(nil, "least-squares fit of \(k) unknowns on \(n) samples stays singular at ridge \(used) (LAPACK dposv)")
        }
        // Δ: the solution itself (k×m, column-major), or Fᵀ·A in the dual form.
        var out = keep
        let solved = Matrix(rows: m, cols: size, values: solution.map { Float($0) }).transposed()     // size×m
        let delta = dual ? f.transposedTimes(solved) : solved
        for i in 0..<out.values.count { out.values[i] += delta.values[i] }
        return RidgeSolution(coefficients: out, relativeRidge: used, requestedRidge: relativeRidge, hasSignal: true)
    }

    /// RWKV-7's channel mix has no receptance gate: RWKV-6's sigmoid(xr·Rfᵀ) (per output channel)
    /// is folded into the value matrix as the per-channel factor that best reproduces the gated
    /// output over the batch: s_i = Σ σ(ρ_i)·f_i² / Σ f_i², with f = relu(xk·Kfᵀ)²·Vfᵀ.
    /// (The gate's mean weighted by where the output is large; the plain mean when f is zero.)
    public static func channelMixReceptanceScale(receptance: Matrix, key: Matrix, value: Matrix,
                                                 keyInput: Matrix, receptanceInput: Matrix) -> [Float] {
        let rho = receptanceInput.multiplied(by: receptance.transposed())
        let k = keyInput.multiplied(by: key.transposed())
        let hidden = Matrix(rows: k.rows, cols: k.cols, values: k.values.map { let r = max($0, 0); return r * r })
        let f = hidden.multiplied(by: value.transposed())
        let c = receptance.rows
        return (0..<c).map { i in
            var num = 0.0, den = 0.0, plain = 0.0
            for n in 0..<rho.rows {
                let gate = 1 / (1 + exp(-Double(rho[n, i])))
                let energy = Double(f[n, i]) * Double(f[n, i])
                num += gate * energy
                den += energy
                plain += gate
            }
            return Float(den > 0 ? num / den : plain / Double(max(rho.rows, 1)))
        }
    }

    /// With recorded activations, the FFN receptance gate is folded by refitting the value
    /// matrix instead of by one factor per channel: V' = argmin Σ ‖V'·h - σ(ρ)⊙(V·h)‖² + λ‖V' -
    /// diag(s)·V‖² over the batch (h = relu(xk·Kfᵀ)², s = `channelMixReceptanceScale`), so that
    /// gate values correlated with the hidden units are kept. The ridge pulls towards the
    /// per-channel fold, worth `priorTokens` tokens (default 2·F, F the FFN width, as the time
    /// mix's refits). value, the result: C×F.
    /// `rwkv7KeyInput`: the key input RWKV-7 will see (the features), when it differs from RWKV-6's.
    public static func channelMixRefit(receptance: Matrix, key: Matrix, value: Matrix, keyInput: Matrix, receptanceInput: Matrix,
                                       rwkv7KeyInput: Matrix? = nil, scale: [Float], priorTokens: Double? = nil) throws -> RidgeSolution {
        func squaredReLU(_ m: Matrix) -> Matrix { Matrix(rows: m.rows, cols: m.cols, values: m.values.map { let r = max($0, 0); return r * r }) }
        let rho = receptanceInput.multiplied(by: receptance.transposed())
        let hidden = squaredReLU(keyInput.multiplied(by: key.transposed()))
        var target = hidden.multiplied(by: value.transposed())            // N×C
        for i in 0..<target.values.count { target.values[i] *= 1 / (1 + exp(-rho.values[i])) }
        let features = rwkv7KeyInput.map { squaredReLU($0.multiplied(by: key.transposed())) } ?? hidden
        let tokens = Double(max(hidden.rows, 1))
        let relativeRidge = (priorTokens ?? 2 * Double(value.cols)) / tokens
        return try ridgeLeastSquares(features: features, targets: target, relativeRidge: relativeRidge,
                                     prior: value.scalingRows(scale).transposed()).transposed()
    }
}

/// A ridge least-squares solution and how well-posed its batch was.
public struct RidgeSolution: Sendable {
    /// B (k×m), or its transpose after `transposed()`.
    public let coefficients: Matrix
    /// The ridge the solve used, relative to the mean feature energy.
    public let relativeRidge: Double
    /// The ridge asked for. `relativeRidge` is larger when Cholesky needed more to succeed.
    public let requestedRidge: Double
    /// False when every feature was zero over the batch: B is the prior (or zero).
    public let hasSignal: Bool

    /// What was done other than asked, for the report (nil: the fit ran as asked).
    public var note: String? {
        if !hasSignal { return "no signal in the batch, kept the starting value" }
        if relativeRidge > max(requestedRidge, PreserveRecipe.minimumRelativeRidge) {
            return String(format: "ridge raised from %.1e to %.1e (rank-deficient batch)", requestedRidge, relativeRidge)
        }
        return nil
    }

    /// The same solution with Bᵀ as coefficients (fits stated for W with W (out, in)).
    public func transposed() -> RidgeSolution {
        RidgeSolution(coefficients: coefficients.transposed(), relativeRidge: relativeRidge, requestedRidge: requestedRidge,
                      hasSignal: hasSignal)
    }
}
