#include "chalf_q8_0.h"
#include "chalf.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define Q8_X86 1

// Compiled for AVX2 and F16C only inside these functions (chosen at run time, as in chalf.c).
// No FMA in the target list, so nothing can be fused: q8_0 has only a multiply to round anyway.
#define Q8_TARGET __attribute__((target("avx2,f16c")))

// One block of 32 floats (x0..x3, 8 each) into 34 bytes at y. Returns 1 when d overflowed f16,
// 0 otherwise, and -1 (writing nothing) for a block left to the caller's reference path.
Q8_TARGET static inline int q8_0_block(__m256 x0, __m256 x1, __m256 x2, __m256 x3, uint8_t *y) {
    // amax: the largest |x| as bits with the sign cleared, which order like the magnitudes for
    // finite floats; any inf or NaN gives 0x7f800000 or more.
    const __m256i magnitude = _mm256_set1_epi32(0x7fffffff);
    __m256i m = _mm256_max_epu32(_mm256_max_epu32(_mm256_and_si256(_mm256_castps_si256(x0), magnitude),
                                                  _mm256_and_si256(_mm256_castps_si256(x1), magnitude)),
                                 _mm256_max_epu32(_mm256_and_si256(_mm256_castps_si256(x2), magnitude),
                                                  _mm256_and_si256(_mm256_castps_si256(x3), magnitude)));
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

    // q = roundf(x*id): truncate |v|, add 1 when the dropped fraction (exact) is at least one
    // half, give back v's sign. With finite id, |v| <= 127 * (1 + 2^-21) < 127.5, so every
    // conversion is exact and the codes fit int8 without saturating.
    const __m256 vid = _mm256_set1_ps(id), sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f);
    __m256 xs[4] = {x0, x1, x2, x3};
    __m256i q[4];
    for (int k = 0; k < 4; k++) {
        __m256 v = _mm256_mul_ps(xs[k], vid);
        __m256 a = _mm256_andnot_ps(sign, v);
        __m256i t = _mm256_cvttps_epi32(a);
        __m256 fraction = _mm256_sub_ps(a, _mm256_cvtepi32_ps(t));
        __m256i up = _mm256_castps_si256(_mm256_cmp_ps(fraction, half, _CMP_GE_OQ));  // -1 or 0
        q[k] = _mm256_sign_epi32(_mm256_sub_epi32(t, up), _mm256_castps_si256(v));
    }
    // 32-bit codes -> bytes. The packs work within 128-bit lanes, leaving the dwords (4 codes
    // each) in the order 0 2 4 6 1 3 5 7 of the block; the permute restores it.
    __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    packed = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)(y + 2), packed);
    return (h & 0x7fff) == 0x7c00;
}

Q8_TARGET static size_t q8_0_f32_avx2(const float *src, uint8_t *dst, size_t blocks, size_t *overflowed) {
    size_t b = 0, count = 0;
    for (; b < blocks; b++) {
        const float *x = src + b * 32;
        int r = q8_0_block(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8), _mm256_loadu_ps(x + 16),
                           _mm256_loadu_ps(x + 24), dst + b * 34);
        if (r < 0) break;
        count += (size_t)r;
    }
    *overflowed = count;
    return b;
}

// A bf16 is the high half of its float: widen 8 at a time by shifting into the upper 16 bits.
Q8_TARGET static inline __m256 widen_bf16(const uint16_t *p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

Q8_TARGET static size_t q8_0_bf16_avx2(const uint16_t *src, uint8_t *dst, size_t blocks, size_t *overflowed) {
    size_t b = 0, count = 0;
    for (; b < blocks; b++) {
        const uint16_t *x = src + b * 32;
        int r = q8_0_block(widen_bf16(x), widen_bf16(x + 8), widen_bf16(x + 16), widen_bf16(x + 24), dst + b * 34);
        if (r < 0) break;
        count += (size_t)r;
    }
    *overflowed = count;
    return b;
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
