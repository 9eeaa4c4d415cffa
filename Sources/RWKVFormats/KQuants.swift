import CKernels

// ggml's k-quants (256-value super-blocks) and iq4_nl (32-value blocks), transcribed from
// ggml-quants.c of the llama.cpp vendored in llama-cpp-python 0.3.36 (ggml 0.25.3): without
// importance weights as `quantize_row_q{2..6}_K_ref`, with them as `quantize_row_q{2..6}_K_impl`
// (what `quantize_q{2..6}_K` / `ggml_quantize_chunk` run when given `quant_weights`), and iq4_nl as
// `quantize_iq4_nl` (ggml_quantize_chunk's path, 7 scale trials, with or without weights).
// Layouts (ggml-common.h), little-endian, fp16 = IEEE half:
//
//   q2_K   84 bytes: scales[16] (4-bit scale | 4-bit min << 4), qs[64], d, dmin
//   q3_K  110 bytes: hmask[32], qs[64], scales[12] (16 six-bit scales), d
//   q4_K  144 bytes: d, dmin, scales[12] (8 six-bit scales and mins), qs[128]
//   q5_K  176 bytes: d, dmin, scales[12], qh[32], qs[128]
//   q6_K  210 bytes: ql[128], qh[64], scales[16] int8, d
//   iq4_nl 18 bytes: d, qs[16] (indices into a 16-value table)
//
// Exactness: every float operation is written in ggml's order, one rounding each (Swift never
// fuses a multiply and an add), and C's conversions are spelled out: int -> float, truncation
// of an int into uint8_t/int8_t fields, `nearest_int` as its bit trick (also for the values
// outside its asserted range, which degenerate blocks reach), comparisons that NaN fails.
// Only the fp16 of a NaN differs from chalf: ggml writes 0x7e00 with the sign, no payload.

/// A block format whose quantizer can take importance weights for its values (one per value,
/// from the row's per-column importance matrix). `nil` is the reference quantizer.
protocol WeightedBlockFormat: BlockFormat {
    static func quantize(_ x: UnsafePointer<Float>, weights: UnsafePointer<Float>?, into y: UnsafeMutableRawPointer) -> Bool
}

extension WeightedBlockFormat {
    static func quantize(_ x: UnsafePointer<Float>, into y: UnsafeMutableRawPointer) -> Bool {
        quantize(x, weights: nil, into: y)
    }
}

private let groupMaxEps: Float = 1e-15

/// ggml's nearest_int: round to nearest even through 1.5·2^23, exact for |v| <= 4194303; outside
/// that (inf, NaN, huge) the same bits C gets.
@inline(__always)
private func nearestInt(_ v: Float) -> Int {
    let bits = (v + 12_582_912).bitPattern
    return Int(Int32(bitPattern: bits & 0x007f_ffff) - 0x0040_0000)
}

@inline(__always)
private func clamp(_ l: Int, _ lo: Int, _ hi: Int) -> Int { max(lo, min(hi, l)) }

/// GGML_FP32_TO_FP16 (ggml_compute_fp32_to_fp16): round to nearest even like chalf; NaN -> sign | 0x7e00.
@inline(__always)
private func storeHalfGGML(_ v: Float, _ p: UnsafeMutableRawPointer) {
    let h: UInt16 = v.isNaN ? UInt16(truncatingIfNeeded: v.bitPattern >> 16) & 0x8000 | 0x7e00 : chalf_half_from_float(v)
    p.storeBytes(of: h.littleEndian, as: UInt16.self)
}

@inline(__always)
private func loadHalf(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
    chalf_float_from_half(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
}

/// True when the fp16 at `p + offset` is infinite.
@inline(__always)
private func halfIsInfinite(_ p: UnsafeRawPointer, _ offset: Int) -> Bool {
    p.loadUnaligned(fromByteOffset: offset, as: UInt16.self) & 0x7fff == 0x7c00
}

private func allFinite(_ x: UnsafePointer<Float>, _ n: Int) -> Bool {
    for i in 0..<n where !x[i].isFinite { return false }
    return true
}

// MARK: ggml's scale searches

/// make_qx_quants with rmse_type 1 (the only one the k-quants use): codes L = l + nmax,
/// l in [-nmax, nmax-1]; weights `qw`, or x² when nil.
private func makeQxQuants(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<Int8>,
                          _ qw: UnsafePointer<Float>?) -> Float {
    var max: Float = 0, amax: Float = 0
    for i in 0..<n {
        let ax = x[i].magnitude
        if ax > amax { amax = ax; max = x[i] }
    }
    if amax < groupMaxEps {
        for i in 0..<n { L[i] = 0 }
        return 0
    }
    let fnmax = Float(nmax)
    let iscale = Float(-nmax) / max
    var sumlx: Float = 0, suml2: Float = 0
    for i in 0..<n {
        let l = clamp(nearestInt(iscale * x[i]), -nmax, nmax - 1)
        L[i] = Int8(truncatingIfNeeded: l + nmax)
        let w = qw?[i] ?? x[i] * x[i]
        let fl = Float(l)
        sumlx += w * x[i] * fl
        suml2 += w * fl * fl
    }
    var scale: Float = suml2 != 0 ? sumlx / suml2 : 0
    var best = scale * sumlx
    // The 18 trial scales (is = -9...9 but 0) do not depend on each other: their sums are
    // computed 8 at a time, one trial per SIMD lane, each lane adding in ggml's order; the
    // choice then goes through them in ggml's order.
    for first in stride(from: 0, to: 18, by: 8) {
        var steps = SIMD8<Float>(repeating: 0)
        for lane in 0..<8 {
            let k = Swift.min(17, first + lane)
            steps[lane] = Float(k < 9 ? k - 9 : k - 8)   // -9...-1, 1...9
        }
        let iscales = -(SIMD8(repeating: fnmax) + SIMD8(repeating: 0.1) * steps) / SIMD8(repeating: max)
        var sumlxV = SIMD8<Float>(repeating: 0), suml2V = SIMD8<Float>(repeating: 0)
        for i in 0..<n {
            let l = nearestInts(iscales * SIMD8(repeating: x[i])).clamped(lowerBound: SIMD8(repeating: Int32(-nmax)),
                                                                          upperBound: SIMD8(repeating: Int32(nmax - 1)))
            let fl = SIMD8<Float>(l)
            let w = qw?[i] ?? x[i] * x[i]
            sumlxV += SIMD8(repeating: w * x[i]) * fl
            suml2V += SIMD8(repeating: w) * fl * fl
        }
        for lane in 0..<Swift.min(8, 18 - first) {
            let sumlx = sumlxV[lane], suml2 = suml2V[lane]
            if suml2 > 0 && sumlx * sumlx > best * suml2 {
                let iscale = iscales[lane]
                for i in 0..<n {
                    L[i] = Int8(truncatingIfNeeded: nmax + clamp(nearestInt(iscale * x[i]), -nmax, nmax - 1))
                }
                scale = sumlx / suml2
                best = scale * sumlx
            }
        }
    }
    return scale
}

/// nearest_int on 8 lanes.
@inline(__always)
private func nearestInts(_ v: SIMD8<Float>) -> SIMD8<Int32> {
    let bits = unsafeBitCast(v + SIMD8(repeating: 12_582_912), to: SIMD8<Int32>.self)
    return (bits & 0x007f_ffff) &- 0x0040_0000
}

/// make_q3_quants with do_rmse (weights x²): codes L = l + nmax.
private func makeQ3Quants(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<Int8>) -> Float {
    var max: Float = 0, amax: Float = 0
    for i in 0..<n {
        let ax = x[i].magnitude
        if ax > amax { amax = ax; max = x[i] }
    }
    if amax < groupMaxEps {
        for i in 0..<n { L[i] = 0 }
        return 0
    }
    let iscale = Float(-nmax) / max
    var sumlx: Float = 0, suml2: Float = 0
    for i in 0..<n {
        let l = clamp(nearestInt(iscale * x[i]), -nmax, nmax - 1)
        L[i] = Int8(truncatingIfNeeded: l)
        let w = x[i] * x[i]
        sumlx += w * x[i] * Float(l)
        suml2 += w * Float(l) * Float(l)
    }
    for _ in 0..<5 {
        var changed = 0
        for i in 0..<n {
            let w = x[i] * x[i]
            let li = Float(L[i])
            var slx = sumlx - w * x[i] * li
            if slx > 0 {
                var sl2 = suml2 - w * li * li
                let newL = clamp(nearestInt(x[i] * sl2 / slx), -nmax, nmax - 1)
                if newL != Int(L[i]) {
                    slx += w * x[i] * Float(newL)
                    sl2 += w * Float(newL) * Float(newL)
                    if sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        L[i] = Int8(truncatingIfNeeded: newL); sumlx = slx; suml2 = sl2
                        changed += 1
                    }
                }
            }
        }
        if changed == 0 { break }
    }
    for i in 0..<n { L[i] = L[i] &+ Int8(truncatingIfNeeded: nmax) }
    return suml2 > 0 ? sumlx / suml2 : 0
}

/// make_qkx2_quants (weights given) and make_qkx3_quants (`x3`: the same search but `max <= min`
/// for the flat test); codes 0...nmax with a minimum. Returns the scale, `theMin` = -min.
private func makeQkxQuants(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
                           _ L: UnsafeMutablePointer<UInt8>, _ theMin: inout Float,
                           _ rmin: Float, _ rdelta: Float, _ nstep: Int, useMad: Bool, x3: Bool) -> Float {
    var min = x[0], max = x[0]
    var sumW = weights[0]
    var sumX = sumW * x[0]
    for i in 1..<n {
        if x[i] < min { min = x[i] }
        if x[i] > max { max = x[i] }
        let w = weights[i]
        sumW += w
        sumX += w * x[i]
    }
    if min > 0 { min = 0 }
    if x3 ? max <= min : max == min {
        for i in 0..<n { L[i] = 0 }
        theMin = -min
        return 0
    }
    let fnmax = Float(nmax)
    let iscale = fnmax / (max - min)
    var scale = 1 / iscale
    var bestError: Float = 0
    for i in 0..<n {
        L[i] = UInt8(truncatingIfNeeded: clamp(nearestInt(iscale * (x[i] - min)), 0, nmax))
        var diff = scale * Float(L[i]) + min - x[i]
        diff = useMad ? diff.magnitude : diff * diff
        bestError += weights[i] * diff
    }
    if nstep < 1 {
        theMin = -min
        return scale
    }
    // Each step's sums depend on `min`, which a better step replaces, but not on the other
    // steps: 8 steps are computed at once (one per SIMD lane, each adding in ggml's order) with
    // the current min, then taken in ggml's order; after a step that changes min, the rest of
    // the batch is recomputed with the new one.
    return withUnsafeTemporaryAllocation(of: SIMD8<Float>.self, capacity: n) { laux in
        let laux = laux.baseAddress!
        var step = 0
        while step <= nstep {
            var steps = SIMD8<Float>(repeating: 0)
            for lane in 0..<8 { steps[lane] = Float(step + lane) }
            let iscales = (SIMD8(repeating: rmin) + SIMD8(repeating: rdelta) * steps + SIMD8(repeating: fnmax)) / SIMD8(repeating: max - min)
            var sumL = SIMD8<Float>(repeating: 0), sumL2 = SIMD8<Float>(repeating: 0), sumXL = SIMD8<Float>(repeating: 0)
            for i in 0..<n {
                let l = nearestInts(iscales * SIMD8(repeating: x[i] - min)).clamped(lowerBound: SIMD8(repeating: 0),
                                                                                   upperBound: SIMD8(repeating: Int32(nmax)))
                let fl = SIMD8<Float>(l)
                laux[i] = fl
                let w = SIMD8(repeating: weights[i])
                sumL += w * fl
                sumL2 += w * fl * fl
                sumXL += w * fl * SIMD8(repeating: x[i])
            }
            let D = SIMD8(repeating: sumW) * sumL2 - sumL * sumL
            var thisScale = (SIMD8(repeating: sumW) * sumXL - SIMD8(repeating: sumX) * sumL) / D
            var thisMin = (sumL2 * SIMD8(repeating: sumX) - sumL * sumXL) / D
            let positive = thisMin .> 0
            thisScale.replace(with: sumXL / sumL2, where: positive)
            thisMin.replace(with: 0, where: positive)
            var curError = SIMD8<Float>(repeating: 0)
            for i in 0..<n {
                var diff = thisScale * laux[i] + thisMin - SIMD8(repeating: x[i])
                diff = useMad ? unsafeBitCast(unsafeBitCast(diff, to: SIMD8<UInt32>.self) & 0x7fff_ffff, to: SIMD8<Float>.self) : diff * diff
                curError += SIMD8(repeating: weights[i]) * diff
            }
            var next = step + 8
            for lane in 0..<Swift.min(8, nstep - step + 1) where D[lane] > 0 && curError[lane] < bestError {
                for i in 0..<n { L[i] = UInt8(laux[i][lane]) }
                bestError = curError[lane]
                scale = thisScale[lane]
                let changed = thisMin[lane].bitPattern != min.bitPattern
                min = thisMin[lane]
                if changed {
                    next = step + lane + 1
                    break
                }
            }
            step = next
        }
        theMin = -min
        return scale
    }
}

/// make_qp_quants: codes 0...nmax for non-negative values (the sub-block scales and mins of the
/// weighted quantizers), weighted by `qw`.
private func makeQpQuants(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<UInt8>,
                          _ qw: UnsafePointer<Float>) -> Float {
    var max: Float = 0
    for i in 0..<n { max = max > x[i] ? max : x[i] }
    if max < groupMaxEps {
        for i in 0..<n { L[i] = 0 }
        return 0
    }
    let fnmax = Float(nmax)
    var iscale = fnmax / max
    for i in 0..<n { L[i] = UInt8(truncatingIfNeeded: nearestInt(iscale * x[i])) }
    let scale = 1 / iscale
    var bestMSE: Float = 0
    for i in 0..<n {
        let diff = x[i] - scale * Float(L[i])
        bestMSE += qw[i] * diff * diff
    }
    for step in -4...4 where step != 0 {
        let iscaleStep = (0.1 * Float(step) + fnmax) / max
        let scaleStep = 1 / iscaleStep
        var mse: Float = 0
        for i in 0..<n {
            let l = Swift.min(nmax, nearestInt(iscaleStep * x[i]))
            let diff = x[i] - scaleStep * Float(l)
            mse += qw[i] * diff * diff
        }
        if mse < bestMSE {
            bestMSE = mse
            iscale = iscaleStep
        }
    }
    var sumlx: Float = 0, suml2: Float = 0
    for i in 0..<n {
        let l = Swift.min(nmax, nearestInt(iscale * x[i]))
        L[i] = UInt8(truncatingIfNeeded: l)
        let w = qw[i]
        sumlx += w * x[i] * Float(l)
        suml2 += w * Float(l) * Float(l)
    }
    for _ in 0..<5 {
        var changed = 0
        for i in 0..<n {
            let w = qw[i]
            let li = Float(L[i])
            var slx = sumlx - w * x[i] * li
            var sl2 = suml2 - w * li * li
            if slx > 0 && sl2 > 0 {
                let newL = Swift.min(nmax, nearestInt(x[i] * sl2 / slx))
                if newL != Int(L[i]) {
                    slx += w * x[i] * Float(newL)
                    sl2 += w * Float(newL) * Float(newL)
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        L[i] = UInt8(truncatingIfNeeded: newL); sumlx = slx; suml2 = sl2
                        changed += 1
                    }
                }
            }
        }
        if changed == 0 { break }
    }
    return suml2 > 0 ? sumlx / suml2 : 0
}

/// Scratch for one super-block, on the stack of the quantizing thread: 256 codes L, then 32
/// bytes (Laux), 16 + 16 bytes (Ls, Lm), and 96 floats.
@inline(__always)
private func withScratch<R>(_ body: (UnsafeMutablePointer<UInt8>, UnsafeMutablePointer<UInt8>, UnsafeMutablePointer<Float>) -> R) -> R {
    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 320) { bytes in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 96) { floats in
            body(bytes.baseAddress!, bytes.baseAddress! + 256, floats.baseAddress!)
        }
    }
}

// MARK: 6-bit scales and mins of q4_K / q5_K

/// get_scale_min_k4.
@inline(__always)
private func scaleMinK4(_ j: Int, _ q: UnsafeRawPointer) -> (UInt8, UInt8) {
    func b(_ i: Int) -> UInt8 { q.load(fromByteOffset: i, as: UInt8.self) }
    if j < 4 { return (b(j) & 63, b(j + 4) & 63) }
    return ((b(j + 4) & 0xf) | ((b(j - 4) >> 6) << 4), (b(j + 4) >> 4) | ((b(j) >> 6) << 4))
}

/// Packs 8 six-bit scales and mins into the 12 bytes at `q`, as the q4_K/q5_K quantizers do.
private func packScalesMinsK4(_ ls: (Int) -> UInt8, _ lm: (Int) -> UInt8, _ q: UnsafeMutableRawPointer) {
    let s = q.assumingMemoryBound(to: UInt8.self)
    for j in 0..<8 {
        let l = ls(j), m = lm(j)
        if j < 4 {
            s[j] = l
            s[j + 4] = m
        } else {
            s[j + 4] = (l & 0xf) | ((m & 0xf) << 4)
            s[j - 4] |= (l >> 4) << 6
            s[j] |= (m >> 4) << 6
        }
    }
}

/// The final requantization of q4_K/q5_K (and their packing input): codes 0...nmax from the
/// stored scales. `scales` points at the 12 scale bytes, d and dmin at offsets 0 and 2 of y.
private func requantizeK4(_ x: UnsafePointer<Float>, _ y: UnsafeRawPointer, _ L: UnsafeMutablePointer<UInt8>, nmax: Int) {
    let d0 = loadHalf(y, 0), dmin0 = loadHalf(y, 2)
    for j in 0..<8 {
        let (sc, m) = scaleMinK4(j, y + 4)
        let d = d0 * Float(sc)
        if d == 0 { continue }
        let dm = dmin0 * Float(m)
        for ii in 0..<32 {
            L[32 * j + ii] = UInt8(truncatingIfNeeded: clamp(nearestInt((x[32 * j + ii] + dm) / d), 0, nmax))
        }
    }
}

/// sigma2 = 2·Σx²/256 of a super-block (the weighted q3_K/q4_K/q5_K quantizers).
@inline(__always)
private func twiceMeanSquare(_ x: UnsafePointer<Float>) -> Float {
    var sum: Float = 0
    for l in 0..<256 { sum += x[l] * x[l] }
    return 2 * sum / 256
}

// MARK: q2_K

enum Q2_K: WeightedBlockFormat {
    static let valuesPerBlock = 256
    static let bytesPerBlock = 84

    static func quantize(_ x: UnsafePointer<Float>, weights qw: UnsafePointer<Float>?, into y: UnsafeMutableRawPointer) -> Bool {
        withScratch { L, Laux, f in
            let scalesByte = y.assumingMemoryBound(to: UInt8.self)
            let mins = f, scales = f + 16, weight = f + 32, sw = f + 48
            if let qw {
                // quantize_row_q2_K_impl
                var sumx2: Float = 0
                for j in 0..<256 { sumx2 += x[j] * x[j] }
                let sigma2 = sumx2 / 256
                let Ls = Laux + 32, Lm = Laux + 48
                for j in 0..<16 {
                    sw[j] = 0
                    for l in 0..<16 { weight[l] = qw[16 * j + l] * (sigma2 + x[16 * j + l] * x[16 * j + l]).squareRoot() }
                    for l in 0..<16 { sw[j] += weight[l] }
                    scales[j] = makeQkxQuants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], -0.9, 0.05, 36,
                                              useMad: false, x3: true)
                }
                let dm = makeQpQuants(16, 15, scales, Ls, sw)
                let mm = makeQpQuants(16, 15, mins, Lm, sw)
                storeHalfGGML(dm, y + 80)
                storeHalfGGML(mm, y + 82)
                for j in 0..<16 { scalesByte[j] = Ls[j] | (Lm[j] &<< 4) }
            } else {
                // quantize_row_q2_K_ref
                var maxScale: Float = 0, maxMin: Float = 0
                for j in 0..<16 {
                    for l in 0..<16 { weight[l] = x[16 * j + l].magnitude }
                    scales[j] = makeQkxQuants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], -0.5, 0.1, 15,
                                              useMad: true, x3: false)
                    if scales[j] > maxScale { maxScale = scales[j] }
                    if mins[j] > maxMin { maxMin = mins[j] }
                }
                if maxScale > 0 {
                    let iscale = 15 / maxScale
                    for j in 0..<16 { scalesByte[j] = UInt8(truncatingIfNeeded: nearestInt(iscale * scales[j])) }
                    storeHalfGGML(maxScale / 15, y + 80)
                } else {
                    for j in 0..<16 { scalesByte[j] = 0 }
                    storeHalfGGML(0, y + 80)
                }
                if maxMin > 0 {
                    let iscale = 15 / maxMin
                    for j in 0..<16 { scalesByte[j] |= UInt8(truncatingIfNeeded: nearestInt(iscale * mins[j]) << 4) }
                    storeHalfGGML(maxMin / 15, y + 82)
                } else {
                    storeHalfGGML(0, y + 82)
                }
            }
            let d0 = loadHalf(y, 80), dmin0 = loadHalf(y, 82)
            for j in 0..<16 {
                let d = d0 * Float(scalesByte[j] & 0xf)
                if d == 0 { continue }
                let m = dmin0 * Float(scalesByte[j] >> 4)
                for ii in 0..<16 {
                    L[16 * j + ii] = UInt8(truncatingIfNeeded: clamp(nearestInt((x[16 * j + ii] + m) / d), 0, 3))
                }
            }
            packTwoBits(L, into: y + 16)
            return allFinite(x, 256) && (halfIsInfinite(y, 80) || halfIsInfinite(y, 82))
        }
    }

    static func dequantize(_ y: UnsafeRawPointer, into x: UnsafeMutablePointer<Float>) {
        let d = loadHalf(y, 80), min = loadHalf(y, 82)
        var out = x, isc = 0
        for n in stride(from: 0, to: 256, by: 128) {
            let q = y + 16 + n / 4
            for shift in stride(from: 0, to: 8, by: 2) {
                for half in 0..<2 {
                    let sc = y.load(fromByteOffset: isc, as: UInt8.self)
                    isc += 1
                    let dl = d * Float(sc & 0xf), ml = min * Float(sc >> 4)
                    for l in 0..<16 {
                        let code = (q.load(fromByteOffset: 16 * half + l, as: UInt8.self) >> UInt8(shift)) & 3
                        out[l] = dl * Float(code) - ml
                    }
                    out += 16
                }
            }
        }
    }
}

/// qs of q2_K/q3_K: byte (j/4 + l) holds codes j+l, j+l+32, j+l+64, j+l+96 (2 bits each), j = 0, 128.
private func packTwoBits(_ L: UnsafePointer<UInt8>, into qs: UnsafeMutableRawPointer) {
    for j in stride(from: 0, to: 256, by: 128) {
        for l in 0..<32 {
            let v = L[j + l] | (L[j + l + 32] &<< 2) | (L[j + l + 64] &<< 4) | (L[j + l + 96] &<< 6)
            qs.storeBytes(of: v, toByteOffset: j / 4 + l, as: UInt8.self)
        }
    }
}

// MARK: q3_K

enum Q3_K: WeightedBlockFormat {
    static let valuesPerBlock = 256
    static let bytesPerBlock = 110

    static func quantize(_ x: UnsafePointer<Float>, weights qw: UnsafePointer<Float>?, into y: UnsafeMutableRawPointer) -> Bool {
        withScratch { Lbytes, Laux, f in
            let L = UnsafeMutableRawPointer(Lbytes).assumingMemoryBound(to: Int8.self)
            let Ls = UnsafeMutableRawPointer(Laux + 32).assumingMemoryBound(to: Int8.self)
            let scales = f, weight = f + 16, sw = f + 32
            let sb = (y + 96).assumingMemoryBound(to: UInt8.self)
            for i in 0..<12 { sb[i] = 0 }
            if let qw {
                // quantize_row_q3_K_impl
                let sigma2 = twiceMeanSquare(x)
                for j in 0..<16 {
                    for l in 0..<16 { weight[l] = qw[16 * j + l] * (sigma2 + x[16 * j + l] * x[16 * j + l]).squareRoot() }
                    var sumw: Float = 0
                    for l in 0..<16 { sumw += weight[l] }
                    sw[j] = sumw
                    scales[j] = makeQxQuants(16, 4, x + 16 * j, L + 16 * j, weight)
                }
                let dBlock = makeQxQuants(16, 32, scales, Ls, sw)
                for j in 0..<16 { packScaleQ3(Int(Ls[j]), j, sb) }
                storeHalfGGML(dBlock, y + 108)
            } else {
                // quantize_row_q3_K_ref
                var maxScale: Float = 0, amax: Float = 0
                for j in 0..<16 {
                    scales[j] = makeQ3Quants(16, 4, x + 16 * j, L + 16 * j)
                    let scale = scales[j].magnitude
                    if scale > amax { amax = scale; maxScale = scales[j] }
                }
                if maxScale != 0 {
                    let iscale = -32 / maxScale
                    for j in 0..<16 {
                        let l = Int8(truncatingIfNeeded: nearestInt(iscale * scales[j]))
                        packScaleQ3(clamp(Int(l), -32, 31) + 32, j, sb)
                    }
                    storeHalfGGML(1 / iscale, y + 108)
                } else {
                    storeHalfGGML(0, y + 108)
                }
            }
            let d0 = loadHalf(y, 108)
            for j in 0..<16 {
                let d = d0 * Float(scaleQ3(j, sb))
                if d == 0 { continue }
                for ii in 0..<16 {
                    L[16 * j + ii] = Int8(truncatingIfNeeded: clamp(nearestInt(x[16 * j + ii] / d), -4, 3) + 4)
                }
            }
            // hmask: bit (j / 32) of byte j % 32 is the high bit of code j.
            let hmask = y.assumingMemoryBound(to: UInt8.self)
            for i in 0..<32 { hmask[i] = 0 }
            for j in 0..<256 where L[j] > 3 {
                hmask[j % 32] |= UInt8(1) << UInt8(j / 32)
                L[j] -= 4
            }
            packTwoBits(Lbytes, into: y + 32)
            return allFinite(x, 256) && halfIsInfinite(y, 108)
        }
    }

    /// Stores the 6-bit scale code `l` (0...63) of sub-block j: low 4 bits in byte j (j < 8) or the
    /// high nibble of byte j-8, high 2 bits at bit 2(j/4) of byte 8 + j%4. ORs into zeroed bytes.
    private static func packScaleQ3(_ code: Int, _ j: Int, _ s: UnsafeMutablePointer<UInt8>) {
        var l = Int8(truncatingIfNeeded: code)
        if j < 8 {
            s[j] = UInt8(truncatingIfNeeded: l & 0xf)
        } else {
            s[j - 8] |= UInt8(truncatingIfNeeded: (Int32(l) & 0xf) << 4)
        }
        l >>= 4
        s[j % 4 + 8] |= UInt8(truncatingIfNeeded: Int32(l) << Int32(2 * (j / 4)))
    }

    /// The signed scale (code - 32) of sub-block j.
    private static func scaleQ3(_ j: Int, _ s: UnsafePointer<UInt8>) -> Int8 {
        let low = j < 8 ? Int8(bitPattern: s[j] & 0xf) : Int8(bitPattern: s[j - 8] >> 4)
        let high = Int8(bitPattern: ((s[8 + j % 4] >> UInt8(2 * (j / 4))) & 3) << 4)
        return (low | high) - 32
    }

    static func dequantize(_ y: UnsafeRawPointer, into x: UnsafeMutablePointer<Float>) {
        let dAll = loadHalf(y, 108)
        let sb = (y + 96).assumingMemoryBound(to: UInt8.self)
        let hm = y.assumingMemoryBound(to: UInt8.self)
        var out = x, isc = 0
        var m: UInt8 = 1
        for n in stride(from: 0, to: 256, by: 128) {
            let q = (y + 32 + n / 4).assumingMemoryBound(to: UInt8.self)
            for shift in stride(from: 0, to: 8, by: 2) {
                for half in 0..<2 {
                    let dl = dAll * Float(Int32(scaleQ3(isc, sb)))
                    isc += 1
                    for l in 0..<16 {
                        let code = Int32((q[16 * half + l] >> UInt8(shift)) & 3) - (hm[16 * half + l] & m != 0 ? 0 : 4)
                        out[l] = dl * Float(code)
                    }
                    out += 16
                }
                m = m &<< 1
            }
        }
    }
}

// MARK: q4_K, q5_K

/// The shared first half of the q4_K/q5_K quantizers: per 32-value sub-block a scale and a min
/// (codes 0...nmax), then 6-bit codes for them in the 12 bytes at y+4 and d, dmin at y, y+2.
private func scalesAndMinsK4(_ x: UnsafePointer<Float>, _ qw: UnsafePointer<Float>?, _ y: UnsafeMutableRawPointer,
                             _ L: UnsafeMutablePointer<UInt8>, _ Laux: UnsafeMutablePointer<UInt8>,
                             _ f: UnsafeMutablePointer<Float>, nmax: Int) {
    let Ls = Laux + 32, Lm = Laux + 48
    let mins = f, scales = f + 8, sw = f + 16, weights = f + 32
    if let qw {
        // quantize_row_q{4,5}_K_impl
        let sigma2 = twiceMeanSquare(x)
        for j in 0..<8 {
            for l in 0..<32 { weights[l] = qw[32 * j + l] * (sigma2 + x[32 * j + l] * x[32 * j + l]).squareRoot() }
            var sumw: Float = 0
            for l in 0..<32 { sumw += weights[l] }
            sw[j] = sumw
            scales[j] = makeQkxQuants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], -0.9, 0.05, 36,
                                      useMad: false, x3: true)
        }
        let dBlock = makeQpQuants(8, 63, scales, Ls, sw)
        let mBlock = makeQpQuants(8, 63, mins, Lm, sw)
        // q5_K clamps the codes to 63 here, q4_K does not (they differ only for a negative scale,
        // whose code wraps around as a uint8_t).
        if nmax == 31 {
            packScalesMinsK4({ Swift.min(63, Ls[$0]) }, { Swift.min(63, Lm[$0]) }, y + 4)
        } else {
            packScalesMinsK4({ Ls[$0] }, { Lm[$0] }, y + 4)
        }
        storeHalfGGML(dBlock, y)
        storeHalfGGML(mBlock, y + 2)
    } else {
        // quantize_row_q{4,5}_K_ref
        var maxScale: Float = 0, maxMin: Float = 0
        let (rmin, nstep): (Float, Int) = nmax == 15 ? (-1, 20) : (-0.5, 15)
        for j in 0..<8 {
            var sumX2: Float = 0
            for l in 0..<32 { sumX2 += x[32 * j + l] * x[32 * j + l] }
            let avX = (sumX2 / 32).squareRoot()
            for l in 0..<32 { weights[l] = avX + x[32 * j + l].magnitude }
            scales[j] = makeQkxQuants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], rmin, 0.1, nstep,
                                      useMad: false, x3: false)
            if scales[j] > maxScale { maxScale = scales[j] }
            if mins[j] > maxMin { maxMin = mins[j] }
        }
        let invScale: Float = maxScale > 0 ? 63 / maxScale : 0
        let invMin: Float = maxMin > 0 ? 63 / maxMin : 0
        packScalesMinsK4({ Swift.min(63, UInt8(truncatingIfNeeded: nearestInt(invScale * scales[$0]))) },
                         { Swift.min(63, UInt8(truncatingIfNeeded: nearestInt(invMin * mins[$0]))) }, y + 4)
        storeHalfGGML(maxScale / 63, y)
        storeHalfGGML(maxMin / 63, y + 2)
    }
}

enum Q4_K: WeightedBlockFormat {
    static let valuesPerBlock = 256
    static let bytesPerBlock = 144

    static func quantize(_ x: UnsafePointer<Float>, weights qw: UnsafePointer<Float>?, into y: UnsafeMutableRawPointer) -> Bool {
        withScratch { L, Laux, f in
            scalesAndMinsK4(x, qw, y, L, Laux, f, nmax: 15)
            requantizeK4(x, y, L, nmax: 15)
            let q = (y + 16).assumingMemoryBound(to: UInt8.self)
            for j in stride(from: 0, to: 256, by: 64) {
                for l in 0..<32 { q[j / 2 + l] = L[j + l] | (L[j + l + 32] &<< 4) }
            }
            return allFinite(x, 256) && (halfIsInfinite(y, 0) || halfIsInfinite(y, 2))
        }
    }

    static func dequantize(_ y: UnsafeRawPointer, into x: UnsafeMutablePointer<Float>) {
        let d = loadHalf(y, 0), min = loadHalf(y, 2)
        let q = (y + 16).assumingMemoryBound(to: UInt8.self)
        for j in 0..<4 {
            let (sc1, m1) = scaleMinK4(2 * j, y + 4), (sc2, m2) = scaleMinK4(2 * j + 1, y + 4)
            let d1 = d * Float(sc1), mm1 = min * Float(m1)
            let d2 = d * Float(sc2), mm2 = min * Float(m2)
            for l in 0..<32 {
                x[64 * j + l] = d1 * Float(q[32 * j + l] & 0xf) - mm1
                x[64 * j + 32 + l] = d2 * Float(q[32 * j + l] >> 4) - mm2
            }
        }
    }
}

enum Q5_K: WeightedBlockFormat {
    static let valuesPerBlock = 256
    static let bytesPerBlock = 176

    static func quantize(_ x: UnsafePointer<Float>, weights qw: UnsafePointer<Float>?, into y: UnsafeMutableRawPointer) -> Bool {
        withScratch { L, Laux, f in
            scalesAndMinsK4(x, qw, y, L, Laux, f, nmax: 31)
            requantizeK4(x, y, L, nmax: 31)
            let qh = (y + 16).assumingMemoryBound(to: UInt8.self)
            let ql = (y + 48).assumingMemoryBound(to: UInt8.self)
            for j in 0..<32 { qh[j] = 0 }
            var m1: UInt8 = 1, m2: UInt8 = 2
            for n in stride(from: 0, to: 256, by: 64) {
                for j in 0..<32 {
                    var l1 = L[n + j], l2 = L[n + j + 32]
                    if l1 > 15 { l1 -= 16; qh[j] |= m1 }
                    if l2 > 15 { l2 -= 16; qh[j] |= m2 }
                    ql[n / 2 + j] = l1 | (l2 &<< 4)
                }
                m1 = m1 &<< 2; m2 = m2 &<< 2
            }
            return allFinite(x, 256) && (halfIsInfinite(y, 0) || halfIsInfinite(y, 2))
        }
    }

    static func dequantize(_ y: UnsafeRawPointer, into x: UnsafeMutablePointer<Float>) {
        let d = loadHalf(y, 0), min = loadHalf(y, 2)
        let qh = (y + 16).assumingMemoryBound(to: UInt8.self)
        let ql = (y + 48).assumingMemoryBound(to: UInt8.self)
        var u1: UInt8 = 1, u2: UInt8 = 2
        for j in 0..<4 {
            let (sc1, m1) = scaleMinK4(2 * j, y + 4), (sc2, m2) = scaleMinK4(2 * j + 1, y + 4)
            let d1 = d * Float(sc1), mm1 = min * Float(m1)
            let d2 = d * Float(sc2), mm2 = min * Float(m2)
            for l in 0..<32 {
                let lo = Int32(ql[32 * j + l] & 0xf) + (qh[l] & u1 != 0 ? 16 : 0)
                let hi = Int32(ql[32 * j + l] >> 4) + (qh[l] & u2 != 0 ? 16 : 0)
                x[64 * j + l] = d1 * Float(lo) - mm1
                x[64 * j + 32 + l] = d2 * Float(hi) - mm2
            }
            u1 = u1 &<< 2; u2 = u2 &<< 2
        }
    }
}

// MARK: q6_K

enum Q6_K: WeightedBlockFormat {
    static let valuesPerBlock = 256
    static let bytesPerBlock = 210

    static func quantize(_ x: UnsafePointer<Float>, weights qw: UnsafePointer<Float>?, into y: UnsafeMutableRawPointer) -> Bool {
        withScratch { Lbytes, _, scales in
            let L = UnsafeMutableRawPointer(Lbytes).assumingMemoryBound(to: Int8.self)
            // quantize_row_q6_K_ref, or _impl with the importance weights used as they are
            var maxScale: Float = 0, maxAbsScale: Float = 0
            for ib in 0..<16 {
                let scale = makeQxQuants(16, 32, x + 16 * ib, L + 16 * ib, qw.map { $0 + 16 * ib })
                scales[ib] = scale
                if scale.magnitude > maxAbsScale { maxAbsScale = scale.magnitude; maxScale = scale }
            }
            if maxAbsScale < groupMaxEps {
                y.initializeMemory(as: UInt8.self, repeating: 0, count: 210)
                return false
            }
            let iscale = -128 / maxScale
            storeHalfGGML(1 / iscale, y + 208)
            let sc = (y + 192).assumingMemoryBound(to: Int8.self)
            for ib in 0..<16 { sc[ib] = Int8(truncatingIfNeeded: Swift.min(127, nearestInt(iscale * scales[ib]))) }
            let d0 = loadHalf(y, 208)
            for j in 0..<16 {
                let d = d0 * Float(sc[j])
                if d == 0 { continue }
                for ii in 0..<16 {
                    L[16 * j + ii] = Int8(truncatingIfNeeded: clamp(nearestInt(x[16 * j + ii] / d), -32, 31) + 32)
                }
            }
            let ql = y.assumingMemoryBound(to: UInt8.self), qh = (y + 128).assumingMemoryBound(to: UInt8.self)
            for j in stride(from: 0, to: 256, by: 128) {
                let o = j / 2, h = j / 4
                for l in 0..<32 {
                    let c1 = UInt8(bitPattern: L[j + l]), c2 = UInt8(bitPattern: L[j + l + 32])
                    let c3 = UInt8(bitPattern: L[j + l + 64]), c4 = UInt8(bitPattern: L[j + l + 96])
                    ql[o + l] = (c1 & 0xf) | ((c3 & 0xf) << 4)
                    ql[o + l + 32] = (c2 & 0xf) | ((c4 & 0xf) << 4)
                    // (L >> 4) on int8 codes in 0...63; the shifts below truncate to uint8 as C's store does.
                    let h1 = Int32(L[j + l]) >> 4, h2 = Int32(L[j + l + 32]) >> 4
                    let h3 = Int32(L[j + l + 64]) >> 4, h4 = Int32(L[j + l + 96]) >> 4
                    qh[h + l] = UInt8(truncatingIfNeeded: h1 | (h2 << 2) | (h3 << 4) | (h4 << 6))
                }
            }
            return allFinite(x, 256) && halfIsInfinite(y, 208)
        }
    }

    static func dequantize(_ y: UnsafeRawPointer, into x: UnsafeMutablePointer<Float>) {
        let d = loadHalf(y, 208)
        let ql = y.assumingMemoryBound(to: UInt8.self), qh = (y + 128).assumingMemoryBound(to: UInt8.self)
        let sc = (y + 192).assumingMemoryBound(to: Int8.self)
        for n in 0..<2 {
            let o = 64 * n, h = 32 * n, s = 8 * n, out = x + 128 * n
            for l in 0..<32 {
                let isc = l / 16
                let q1 = Int32((ql[o + l] & 0xf) | (((qh[h + l] >> 0) & 3) << 4)) - 32
                let q2 = Int32((ql[o + l + 32] & 0xf) | (((qh[h + l] >> 2) & 3) << 4)) - 32
                let q3 = Int32((ql[o + l] >> 4) | (((qh[h + l] >> 4) & 3) << 4)) - 32
                let q4 = Int32((ql[o + l + 32] >> 4) | (((qh[h + l] >> 6) & 3) << 4)) - 32
                out[l] = d * Float(sc[s + isc]) * Float(q1)
                out[l + 32] = d * Float(sc[s + isc + 2]) * Float(q2)
                out[l + 64] = d * Float(sc[s + isc + 4]) * Float(q3)
                out[l + 96] = d * Float(sc[s + isc + 6]) * Float(q4)
            }
        }
    }
}

// MARK: iq4_nl

/// kvalues_iq4nl (ggml-common.h): the 16 levels of iq4_nl.
private let iq4nlValues: [Int8] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]

/// best_index_int8 over the 16 levels.
@inline(__always)
private func bestIndexIQ4(_ x: Float) -> Int {
    iq4nlValues.withUnsafeBufferPointer { val in
        if x <= Float(val[0]) { return 0 }
        if x >= Float(val[15]) { return 15 }
        var ml = 0, mu = 15
        while mu - ml > 1 {
            let mav = (ml + mu) / 2
            if x < Float(val[mav]) { mu = mav } else { ml = mav }
        }
        return x - Float(val[mu - 1]) < Float(val[mu]) - x ? mu - 1 : mu
    }
}

/// iq4_nl as `quantize_iq4_nl` makes it (the path of ggml_quantize_chunk and llama-quantize:
/// quantize_row_iq4_nl_impl with one 32-value block and ntry = 7), weights x² or the importance.
enum IQ4_NL: WeightedBlockFormat {
    static let valuesPerBlock = 32
    static let bytesPerBlock = 18
    private static let ntry = 7

    static func quantize(_ x: UnsafePointer<Float>, weights qw: UnsafePointer<Float>?, into y: UnsafeMutableRawPointer) -> Bool {
        withScratch { L, _, weight in
            var sigma2: Float = 0
            for j in 0..<32 { sigma2 += x[j] * x[j] }
            sigma2 *= Float(2) / Float(32)
            let q4 = (y + 2).assumingMemoryBound(to: UInt8.self)
            for j in 0..<16 { q4[j] = 0 }
            storeHalfGGML(0, y)
            for j in 0..<32 { weight[j] = qw.map { $0[j] * (sigma2 + x[j] * x[j]).squareRoot() } ?? x[j] * x[j] }
            var amax: Float = 0, max: Float = 0
            for j in 0..<32 {
                let ax = x[j].magnitude
                if ax > amax { amax = ax; max = x[j] }
            }
            var scale: Float = 0
            if amax >= groupMaxEps {   // else the scale stays 0 (amax is never NaN: NaN fails ax > amax)
                let v0 = Float(iq4nlValues[0])
                var d = -max / v0   // ntry > 0
                var id = 1 / d
                var sumqx: Float = 0, sumq2: Float = 0
                for j in 0..<32 {
                    let l = bestIndexIQ4(id * x[j])
                    L[j] = UInt8(l)
                    let q = Float(iq4nlValues[l]), w = weight[j]
                    sumqx += w * q * x[j]
                    sumq2 += w * q * q
                }
                d = sumq2 > 0 ? sumqx / sumq2 : 0
                var best = d * sumqx
                for itry in -ntry...ntry {
                    id = (Float(itry) + v0) / max
                    sumqx = 0; sumq2 = 0
                    for j in 0..<32 {
                        let q = Float(iq4nlValues[bestIndexIQ4(id * x[j])]), w = weight[j]
                        sumqx += w * q * x[j]
                        sumq2 += w * q * q
                    }
                    if sumq2 > 0 && sumqx * sumqx > best * sumq2 {
                        d = sumqx / sumq2; best = d * sumqx
                    }
                }
                scale = d
            }
            storeHalfGGML(scale, y)
            let id: Float = scale != 0 ? 1 / scale : 0
            for j in 0..<32 { L[j] = UInt8(bestIndexIQ4(id * x[j])) }
            for j in 0..<16 { q4[j] = L[j] | (L[16 + j] << 4) }
            return allFinite(x, 32) && halfIsInfinite(y, 0)
        }
    }

    static func dequantize(_ y: UnsafeRawPointer, into x: UnsafeMutablePointer<Float>) {
        let d = loadHalf(y, 0)
        for j in 0..<16 {
            let b = y.load(fromByteOffset: 2 + j, as: UInt8.self)
            x[j] = d * Float(iq4nlValues[Int(b & 0xf)])
            x[j + 16] = d * Float(iq4nlValues[Int(b >> 4)])
        }
    }
}

// MARK: ggml's weighted legacy quantizers

/// q4_0, q4_1, q5_0, q5_1 with importance weights, as `quantize_row_q4_0_impl` ... (what
/// `quantize_q4_0` and `ggml_quantize_chunk` run when given `quant_weights`): weights
/// `qw·sqrt(σ² + x²)` with σ² the mean square of the whole ROW (so the caller gives it), then
/// make_qx_quants (q4_0, q5_0) or make_qkx3_quants (q4_1, q5_1) on each 32-value block. Without
/// weights ggml uses the reference quantizers of BlockFormats.swift.
enum LegacyWeighted {
    /// σ² = Σx²/n over a row, summed in order as ggml does.
    static func rowSigma2(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var sum: Float = 0
        for j in 0..<n { sum += x[j] * x[j] }
        return sum / Float(n)
    }

    static func quantize(_ type: DType, _ x: UnsafePointer<Float>, weights qw: UnsafePointer<Float>, sigma2: Float,
                         into y: UnsafeMutableRawPointer) -> Bool {
        withScratch { L, _, weight in
            for j in 0..<32 { weight[j] = qw[j] * (sigma2 + x[j] * x[j]).squareRoot() }
            let qs: UnsafeMutableRawPointer
            switch type {
            case .q4_0, .q5_0:
                let codes = UnsafeMutableRawPointer(L).assumingMemoryBound(to: Int8.self)
                storeHalfGGML(makeQxQuants(32, type == .q4_0 ? 8 : 16, x, codes, weight), y)
                qs = y + (type == .q4_0 ? 2 : 6)
            default:   // .q4_1, .q5_1
                var theMin: Float = 0
                let d = makeQkxQuants(32, type == .q4_1 ? 15 : 31, x, weight, L, &theMin, -0.9, 0.05, 36, useMad: false, x3: true)
                storeHalfGGML(d, y)
                storeHalfGGML(-theMin, y + 2)
                qs = y + (type == .q4_1 ? 4 : 8)
            }
            if type == .q4_0 || type == .q4_1 {
                for j in 0..<16 { qs.storeBytes(of: L[j] | (L[j + 16] &<< 4), toByteOffset: j, as: UInt8.self) }
            } else {
                var qh: UInt32 = 0
                for j in 0..<16 {
                    let x0 = L[j], x1 = L[j + 16]
                    qs.storeBytes(of: (x0 & 0x0f) | ((x1 & 0x0f) << 4), toByteOffset: j, as: UInt8.self)
                    qh |= UInt32((x0 & 0x10) >> 4) << UInt32(j)
                    qh |= UInt32((x1 & 0x10) >> 4) << UInt32(j + 16)
                }
                (qs - 4).storeBytes(of: qh.littleEndian, as: UInt32.self)
            }
            let scales = type == .q4_0 || type == .q5_0 ? [0] : [0, 2]
            return allFinite(x, 32) && scales.contains { halfIsInfinite(y, $0) }
        }
    }
}
