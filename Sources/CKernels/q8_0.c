#include "chalf_q8_0.h"
#include "chalf.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define Q8_X86 1

// Compiled for AVX2 and F16C only inside these functions (chosen at run time, as in chalf.c).
// No FMA in the target list, so no multiply and add can be fused.
#define Q8_TARGET __attribute__((target("avx2,f16c")))

// The kernels read f32 or bf16; `bf16` is a constant in each caller, so the test folds away.
// A bf16 is the high half of its float: widening is exact, a shift into the upper 16 bits.
Q8_TARGET static inline __m256 load8(const void *src, size_t i, int bf16) {
    if (!bf16) return _mm256_loadu_ps((const float *)src + i);
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)src + i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

// |x| as bits (sign cleared), reduced over the block's 4 vectors to 8 lanes. These order like the
// magnitudes for finite floats, and any inf or NaN gives 0x7f800000 or more.
Q8_TARGET static inline __m256i block_magnitudes(const void *src, size_t i, int bf16) {
    const __m256i magnitude = _mm256_set1_epi32(0x7fffffff);
    __m256i m0 = _mm256_and_si256(_mm256_castps_si256(load8(src, i, bf16)), magnitude);
    __m256i m1 = _mm256_and_si256(_mm256_castps_si256(load8(src, i + 8, bf16)), magnitude);
    __m256i m2 = _mm256_and_si256(_mm256_castps_si256(load8(src, i + 16, bf16)), magnitude);
    __m256i m3 = _mm256_and_si256(_mm256_castps_si256(load8(src, i + 24, bf16)), magnitude);
    return _mm256_max_epu32(_mm256_max_epu32(m0, m1), _mm256_max_epu32(m2, m3));
}

// q = roundf(x*id) for the block at value i, into 32 int8 at qs. roundf(v) is trunc(v +
// copysign(0.49999997f, v)), the largest float below one half (a plain 0.5 would take
// 0.49999997 to 1): checked once, with a scratch C loop, against roundf for every float of
// magnitude below 2^31, both signs; the unit tests hit ties and their neighbours. With a finite
// id, |v| <= 127 * (1 + 2^-21) < 127.5 (d is rounded once, subnormal or not), so the codes fit
// int8 without saturating. v must be rounded before the add: no FMA in Q8_TARGET.
Q8_TARGET static inline void store_codes(const void *src, size_t i, int bf16, float id, uint8_t *qs) {
    const __m256 vid = _mm256_set1_ps(id), sign = _mm256_set1_ps(-0.0f), below_half = _mm256_set1_ps(0.49999997f);
    __m256i q[4];
    for (int k = 0; k < 4; k++) {
        __m256 v = _mm256_mul_ps(load8(src, i + 8 * k, bf16), vid);
        __m256 nudge = _mm256_or_ps(_mm256_and_ps(v, sign), below_half);
        q[k] = _mm256_cvttps_epi32(_mm256_add_ps(v, nudge));
    }
    // 32-bit codes -> bytes. The packs work within 128-bit lanes, leaving the dwords (4 codes
    // each) in the order 0 2 4 6 1 3 5 7 of the block; the permute restores it.
    __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    packed = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)qs, packed);
}

// One block (block b) into 34 bytes at y. Returns 1 when d overflowed f16, 0 otherwise, and -1
// (writing nothing) for a block left to the caller's reference path.
Q8_TARGET static inline int one_block(const void *src, size_t b, int bf16, uint8_t *y) {
    __m256i m = block_magnitudes(src, b * 32, bf16);
    __m128i m4 = _mm_max_epu32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
    m4 = _mm_max_epu32(m4, _mm_shuffle_epi32(m4, _MM_SHUFFLE(1, 0, 3, 2)));
    m4 = _mm_max_epu32(m4, _mm_shuffle_epi32(m4, _MM_SHUFFLE(2, 3, 0, 1)));
    uint32_t amax_bits = (uint32_t)_mm_cvtsi128_si32(m4);
    if (amax_bits >= 0x7f800000) return -1;
    // d and id exactly as ggml: one IEEE division each (no -ffast-math on this target).
    float amax;
    memcpy(&amax, &amax_bits, 4);
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    if (!(id <= 3.40282347e38f)) return -1;  // 1/d overflowed (d is a tiny subnormal)
    uint16_t h = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);  // = chalf_half_from_float(d)
    memcpy(y, &h, 2);
    store_codes(src, b * 32, bf16, id, y + 2);
    return (h & 0x7fff) == 0x7c00;
}

// Blocks b..b+7, as one_block each, but with the 8 maxima, d and id side by side in one vector:
// the scalar reduction and the two dependent divisions per block were the kernel's critical
// path. IEEE division gives the same bits in a vector lane as in a scalar. Returns the number of
// d that overflowed f16, or -1 (writing nothing) when any of the 8 needs the reference path.
Q8_TARGET static inline int eight_blocks(const void *src, size_t b, int bf16, uint8_t *y) {
    __m256i m[8];
    for (int k = 0; k < 8; k++) m[k] = block_magnitudes(src, (b + k) * 32, bf16);
    // Transposing reduction: lane k of amax becomes the maximum of m[k]'s 8 lanes.
    __m256i p[4], r[2];
    for (int k = 0; k < 4; k++)
        p[k] = _mm256_max_epu32(_mm256_unpacklo_epi32(m[2 * k], m[2 * k + 1]), _mm256_unpackhi_epi32(m[2 * k], m[2 * k + 1]));
    for (int k = 0; k < 2; k++)
        r[k] = _mm256_max_epu32(_mm256_unpacklo_epi64(p[2 * k], p[2 * k + 1]), _mm256_unpackhi_epi64(p[2 * k], p[2 * k + 1]));
    __m256i amax = _mm256_max_epu32(_mm256_permute2x128_si256(r[0], r[1], 0x20), _mm256_permute2x128_si256(r[0], r[1], 0x31));
    if (_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(amax, _mm256_set1_epi32(0x7f7fffff))))) return -1;

    __m256 d = _mm256_div_ps(_mm256_castsi256_ps(amax), _mm256_set1_ps(127.0f));
    __m256 nonzero = _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_OQ);
    __m256 id = _mm256_and_ps(nonzero, _mm256_div_ps(_mm256_set1_ps(1.0f), d));  // 1/0 = inf, masked to 0
    if (_mm256_movemask_ps(_mm256_cmp_ps(id, _mm256_set1_ps(3.40282347e38f), _CMP_GT_OQ))) return -1;
    __m128i h = _mm256_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT);

    float ids[8];
    uint16_t hs[8];
    _mm256_storeu_ps(ids, id);
    _mm_storeu_si128((__m128i *)hs, h);
    for (int k = 0; k < 8; k++) {
        memcpy(y + (b + k) * 34, &hs[k], 2);
        store_codes(src, (b + k) * 32, bf16, ids[k], y + (b + k) * 34 + 2);
    }
    __m128i infinite = _mm_cmpeq_epi16(_mm_and_si128(h, _mm_set1_epi16(0x7fff)), _mm_set1_epi16(0x7c00));
    return __builtin_popcount((unsigned)_mm_movemask_epi8(infinite)) / 2;
}

// Eight blocks at a time; one at a time for the tail and for a group of eight holding a block
// for the reference path, up to that block, where it stops.
Q8_TARGET static inline size_t quantize_avx2(const void *src, uint8_t *dst, size_t blocks, int bf16, size_t *overflowed) {
    size_t b = 0, count = 0;
    while (b < blocks) {
        int r = b + 8 <= blocks ? eight_blocks(src, b, bf16, dst) : -1;
        if (r >= 0) {
            b += 8;
        } else {
            r = one_block(src, b, bf16, dst + b * 34);
            if (r < 0) break;
            b += 1;
        }
        count += (size_t)r;
    }
    *overflowed = count;
    return b;
}

Q8_TARGET static size_t q8_0_f32_avx2(const float *src, uint8_t *dst, size_t blocks, size_t *overflowed) {
    return quantize_avx2(src, dst, blocks, 0, overflowed);
}

Q8_TARGET static size_t q8_0_bf16_avx2(const uint16_t *src, uint8_t *dst, size_t blocks, size_t *overflowed) {
    return quantize_avx2(src, dst, blocks, 1, overflowed);
}
#endif

size_t chalf_quantize_q8_0(const float *src, uint8_t *dst, size_t blocks, size_t *overflowed) {
    *overflowed = 0;
#ifdef Q8_X86
    if (chalf_has_avx2()) return q8_0_f32_avx2(src, dst, blocks, overflowed);
#endif
    (void)src, (void)dst, (void)blocks;
    return 0;
}

size_t chalf_quantize_q8_0_bf16(const uint16_t *src, uint8_t *dst, size_t blocks, size_t *overflowed) {
    *overflowed = 0;
#ifdef Q8_X86
    if (chalf_has_avx2()) return q8_0_bf16_avx2(src, dst, blocks, overflowed);
#endif
    (void)src, (void)dst, (void)blocks;
    return 0;
}
