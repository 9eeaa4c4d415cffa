#include "chalf.h"
#include "cached_feature.h"
#include <math.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define CHALF_X86 1

// F16C needs AVX state, so check CPUID (F16C, AVX, OSXSAVE) and that the OS saves YMM (XCR0).
static int detect_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const unsigned osxsave = 1u << 27, avx = 1u << 28, f16c = 1u << 29;
    if ((c & (osxsave | avx | f16c)) != (osxsave | avx | f16c)) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6) == 6;
}

// AVX2 is CPUID leaf 7, EBX bit 5; it needs the same OS support as F16C.
static int detect_avx2(void) {
    unsigned a, b, c, d;
    if (!detect_f16c() || __get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 5) & 1;
}

// Compiled for F16C only inside these functions: the rest of the library stays baseline x86-64.
__attribute__((target("avx,f16c")))
static size_t f16_to_f32_f16c(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    return i;
}

// Also counts overflows (finite inputs that became infinite), checking a group of 8 one by one
// only when one of its halves is infinite: the common case costs one compare per 8 values.
__attribute__((target("avx,f16c")))
static size_t f32_to_f16_f16c(const float *src, uint16_t *dst, size_t n, size_t *overflow) {
    const __m128i magnitude = _mm_set1_epi16(0x7fff), infinity = _mm_set1_epi16(0x7c00);
    size_t i = 0, count = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(src + i);
        __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(dst + i), h);
        if (_mm_movemask_epi8(_mm_cmpeq_epi16(_mm_and_si128(h, magnitude), infinity)))
            for (size_t j = i; j < i + 8; j++)
                count += (dst[j] & 0x7fff) == 0x7c00 && isfinite(src[j]);
    }
    *overflow = count;
    return i;
}

// bf16 widened in registers (a bf16 is the high half of its f32), then as f32_to_f16_f16c.
__attribute__((target("avx,f16c")))
static size_t bf16_to_f16_f16c(const uint16_t *src, uint16_t *dst, size_t n, size_t *overflow) {
    const __m128i magnitude = _mm_set1_epi16(0x7fff), infinity = _mm_set1_epi16(0x7c00), zero = _mm_setzero_si128();
    size_t i = 0, count = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i b = _mm_loadu_si128((const __m128i *)(src + i));
        __m256 v = _mm256_set_m128(_mm_castsi128_ps(_mm_unpackhi_epi16(zero, b)),
                                   _mm_castsi128_ps(_mm_unpacklo_epi16(zero, b)));
        __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(dst + i), h);
        if (_mm_movemask_epi8(_mm_cmpeq_epi16(_mm_and_si128(h, magnitude), infinity)))
            for (size_t j = i; j < i + 8; j++)
                count += (dst[j] & 0x7fff) == 0x7c00 && (src[j] & 0x7f80) != 0x7f80;
    }
    *overflow = count;
    return i;
}
#endif


int chalf_has_f16c(void) {
#ifdef CHALF_X86
    static int cache = -1;
    return cached_feature(&cache, detect_f16c);
#else
    return 0;
#endif
}

int chalf_has_avx2(void) {
#ifdef CHALF_X86
    static int cache = -1;
    return cached_feature(&cache, detect_avx2);
#else
    return 0;
#endif
}

void chalf_f16_to_f32_scalar(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = chalf_float_from_half(src[i]);
}

// A finite input whose half is infinite overflowed.
static size_t count_f16_overflows(const float *src, const uint16_t *dst, size_t n) {
    size_t overflow = 0;
    for (size_t i = 0; i < n; i++)
        if ((dst[i] & 0x7fff) == 0x7c00 && isfinite(src[i])) overflow++;
    return overflow;
}

size_t chalf_f32_to_f16_scalar(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = chalf_half_from_float(src[i]);
    return count_f16_overflows(src, dst, n);
}

void chalf_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    size_t done = 0;
#ifdef CHALF_X86
    if (chalf_has_f16c()) done = f16_to_f32_f16c(src, dst, n);
#endif
    chalf_f16_to_f32_scalar(src + done, dst + done, n - done);
}

size_t chalf_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
    size_t done = 0, overflow = 0;
#ifdef CHALF_X86
    if (chalf_has_f16c()) done = f32_to_f16_f16c(src, dst, n, &overflow);
#endif
    for (size_t i = done; i < n; i++) dst[i] = chalf_half_from_float(src[i]);
    return overflow + count_f16_overflows(src + done, dst + done, n - done);
}

void chalf_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)src[i] << 16;
        memcpy(dst + i, &bits, 4);
    }
}

size_t chalf_f32_to_bf16(const float *src, uint16_t *dst, size_t n) {
    size_t overflow = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t x;
        memcpy(&x, src + i, 4);
        uint32_t ax = x & 0x7fffffff;
        // Plain rounding would carry a NaN's payload into the exponent (NaN -> inf): quiet it.
        uint32_t rounded = ax > 0x7f800000 ? (x | 0x00400000) : x + 0x7fff + ((x >> 16) & 1);
        dst[i] = (uint16_t)(rounded >> 16);
        overflow += (ax < 0x7f800000) & ((dst[i] & 0x7fff) == 0x7f80);
    }
    return overflow;
}

size_t chalf_bf16_to_f16(const uint16_t *src, uint16_t *dst, size_t n) {
    size_t done = 0, overflow = 0;
#ifdef CHALF_X86
    if (chalf_has_f16c()) done = bf16_to_f16_f16c(src, dst, n, &overflow);
#endif
    float piece[256];  // the rest (or all, without F16C) through f32, a piece at a time
    while (done < n) {
        size_t m = n - done < 256 ? n - done : 256;
        chalf_bf16_to_f32(src + done, piece, m);
        overflow += chalf_f32_to_f16(piece, dst + done, m);
        done += m;
    }
    return overflow;
}
