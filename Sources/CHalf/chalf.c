#include "chalf.h"
#include <math.h>
#include <string.h>
#if defined(__F16C__)
#include <immintrin.h>
#endif

void chalf_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
#endif
    for (; i < n; i++) {
        uint16_t h = src[i];
        uint32_t sign = (uint32_t)(h & 0x8000) << 16;
        uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
        if (exp == 0) {
            if (man == 0) bits = sign;
            else { // subnormal: normalise
                int e = -1;
                do { e++; man <<= 1; } while ((man & 0x400) == 0);
                bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
            }
        } else if (exp == 31) bits = sign | 0x7f800000 | (man << 13);
        else bits = sign | ((exp + 112) << 23) | (man << 13);
        memcpy(dst + i, &bits, 4);
    }
}

static uint16_t f32_to_f16_one(float f) {
    uint32_t x; memcpy(&x, &f, 4);
    uint16_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffff;
    if (ax > 0x7f800000) return sign | 0x7e00 | ((ax >> 13) & 0x3ff);   // NaN stays NaN
    if (ax >= 0x477ff000) return sign | 0x7c00;                           // rounds to inf
    if (ax < 0x38800000) {                                               // subnormal or zero
        if (ax < 0x33000000) return sign;                                  // below half the smallest subnormal
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e;                                          // 14..24
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return sign | (uint16_t)q;
    }
    uint32_t q = (ax - 0x38000000) >> 13, rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;
    return sign | (uint16_t)q;
}

size_t chalf_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
    size_t overflow = 0, i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(src + i);
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    for (size_t j = 0; j < i; j++)
        if ((dst[j] & 0x7fff) == 0x7c00 && isfinite(src[j])) overflow++;
#endif
    for (; i < n; i++) {
        dst[i] = f32_to_f16_one(src[i]);
        if ((dst[i] & 0x7fff) == 0x7c00 && isfinite(src[i])) overflow++;
    }
    return overflow;
}

void chalf_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)src[i] << 16;
        memcpy(dst + i, &bits, 4);
    }
}

void chalf_f32_to_bf16(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t x; memcpy(&x, src + i, 4);
        if ((x & 0x7fffffff) > 0x7f800000) { dst[i] = (uint16_t)((x >> 16) | 0x40); continue; }
        x += 0x7fff + ((x >> 16) & 1);
        dst[i] = (uint16_t)(x >> 16);
    }
}
