#ifndef CNONFINITE_H
#define CNONFINITE_H
#include <stddef.h>
#include <stdint.h>

// Counting NaN and infinite values in raw tensor bytes, for the converter's check of every piece
// it streams (a diverged checkpoint must not convert silently). Integer tests on the exponent
// bits: no float conversion, so a plain loop the compiler vectorizes. Each returns the count and
// sets *first to the index of the first such value (unchanged when there is none).

size_t cnonfinite_f32(const uint32_t *src, size_t n, size_t *first);
/// IEEE half (exponent 0x1f) or bfloat16 (exponent 0xff): mask is 0x7c00 or 0x7f80.
size_t cnonfinite_16(const uint16_t *src, size_t n, uint16_t mask, size_t *first);
/// float64: NaN, infinities, and finite values beyond float32's range (they become infinite).
size_t cnonfinite_f64(const double *src, size_t n, size_t *first);

#endif
