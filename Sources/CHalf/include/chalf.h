#ifndef CHALF_H
#define CHALF_H
#include <stddef.h>
#include <stdint.h>

/// IEEE half -> float, exact.
void chalf_f16_to_f32(const uint16_t *src, float *dst, size_t n);
/// float -> IEEE half, round to nearest even; returns how many finite inputs overflowed to inf.
size_t chalf_f32_to_f16(const float *src, uint16_t *dst, size_t n);
/// bfloat16 -> float, exact (a 16-bit shift).
void chalf_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
/// float -> bfloat16, round to nearest even; NaN stays NaN (quiet), inf stays inf.
void chalf_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
#endif
