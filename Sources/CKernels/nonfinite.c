#include "cnonfinite.h"
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

size_t cnonfinite_16(const uint16_t *src, size_t n, uint16_t mask, size_t *first) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++) count += (uint16_t)(src[i] & mask) == mask;
    if (count) {
        for (size_t i = 0; i < n; i++) if ((uint16_t)(src[i] & mask) == mask) { *first = i; break; }
    }
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
