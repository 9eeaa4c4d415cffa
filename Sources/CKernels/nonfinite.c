#include "cnonfinite.h"
#include "chalf.h"
#include <float.h>
#include <math.h>
#include <string.h>

// Counts in a branch-free pass (vectorized), then finds the first index only when there is one,
// so clean tensors (every real one) cost one streaming read of data already in cache.

size_t cnonfinite_f32(const uint32_t *src, size_t n, size_t *first) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++) count += (src[i] & 0x7f800000u) == 0x7f800000u;
    if (count) {
        for (size_t i = 0; i < n; i++) if ((src[i] & 0x7f800000u) == 0x7f800000u) { *first = i; break; }
    }
    return count;
}

// Whether any value has an all-ones exponent: adding the exponent's lowest bit to the masked
// bits carries into bit 15 exactly then, so one OR-reduction of (x & mask) + low answers it with
// no compare-and-widen. Compiled twice, for AVX2 (chosen at run time) and for baseline x86-64.
#define ANY_ALL_ONES_BODY                                                   \
    uint16_t low = mask & (uint16_t)-mask, acc = 0;                        \
    for (size_t i = 0; i < n; i++) acc |= (uint16_t)((src[i] & mask) + low); \
    return (acc & 0x8000) != 0;

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2")))
static int any_all_ones_avx2(const uint16_t *src, size_t n, uint16_t mask) { ANY_ALL_ONES_BODY }
#endif
static int any_all_ones_plain(const uint16_t *src, size_t n, uint16_t mask) { ANY_ALL_ONES_BODY }

size_t cnonfinite_16(const uint16_t *src, size_t n, uint16_t mask, size_t *first) {
#if defined(__x86_64__) || defined(__i386__)
    int any = chalf_has_avx2() ? any_all_ones_avx2(src, n, mask) : any_all_ones_plain(src, n, mask);
#else
    int any = any_all_ones_plain(src, n, mask);
#endif
    if (!any) return 0;   // every real tensor: one fast pass
    size_t count = 0;
    for (size_t i = 0; i < n; i++) count += (uint16_t)(src[i] & mask) == mask;
    for (size_t i = 0; i < n; i++) if ((uint16_t)(src[i] & mask) == mask) { *first = i; break; }
    return count;
}

// A double becomes an infinite float when it is not finite or its magnitude rounds beyond
// FLT_MAX (halfway to the next power of two: FLT_MAX + half an ulp, 2^128 - 2^103).
static int f64_bad(double d) {
    double a = fabs(d);
    return !(a < 0x1.ffffffp127);   // NaN compares false, so it counts too
}

size_t cnonfinite_f64(const double *src, size_t n, size_t *first) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++) { double d; memcpy(&d, src + i, 8); count += f64_bad(d); }
    if (count) {
        for (size_t i = 0; i < n; i++) { double d; memcpy(&d, src + i, 8); if (f64_bad(d)) { *first = i; break; } }
    }
    return count;
}
