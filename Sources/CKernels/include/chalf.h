#ifndef CHALF_H
#define CHALF_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

// Half-float conversions (IEEE binary16 and bfloat16). Array calls use F16C when the CPU has it
// (checked at run time, so the library still runs on CPUs without AVX) and exact scalar code
// otherwise; both round to nearest even and give identical bits (tested on every f16 and a
// sweep of f32 inputs).

/// IEEE half -> float, exact (a NaN comes out quiet, payload kept).
void chalf_f16_to_f32(const uint16_t *src, float *dst, size_t n);
/// float -> IEEE half, round to nearest even, NaN stays NaN (quiet); returns how many finite
/// inputs overflowed to infinity.
size_t chalf_f32_to_f16(const float *src, uint16_t *dst, size_t n);
/// bfloat16 -> float, exact (a 16-bit shift).
void chalf_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
/// float -> bfloat16, round to nearest even, NaN stays NaN (quiet, sign and top payload kept);
/// returns how many finite inputs overflowed to infinity.
size_t chalf_f32_to_bf16(const float *src, uint16_t *dst, size_t n);

// bf16 -> f16 without an f32 array in between: the same bits as chalf_bf16_to_f32 followed by
// chalf_f32_to_f16 (bf16 widens to f32 exactly). Returns the overflow count as chalf_f32_to_f16.
size_t chalf_bf16_to_f16(const uint16_t *src, uint16_t *dst, size_t n);

/// 1 when the F16C path is in use on this CPU.
int chalf_has_f16c(void);
/// 1 when the CPU also has AVX2 (for the q8_0 kernel, chalf_q8_0.h).
int chalf_has_avx2(void);
/// The portable paths of the two f16 array calls, exposed so tests can compare them with F16C.
void chalf_f16_to_f32_scalar(const uint16_t *src, float *dst, size_t n);
size_t chalf_f32_to_f16_scalar(const float *src, uint16_t *dst, size_t n);

// One-value conversions, inline so Swift callers (the block quantizers store their scales as
// f16) pay no call per value. Same rounding as the F16C instruction (vcvtps2ph, imm 0).

static inline uint16_t chalf_half_from_float(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffff;
    if (ax > 0x7f800000) return sign | 0x7e00 | ((ax >> 13) & 0x3ff);  // NaN: quiet, payload kept
    if (ax >= 0x477ff000) return sign | 0x7c00;                          // 65520 and up round to inf
    if (ax < 0x38800000) {                                              // below 2^-14: subnormal or zero
        if (ax < 0x33000000) return sign;                                 // at most 2^-25: rounds to zero
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e;                                         // 14..24
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;                  // a carry into 0x400 is right
        return sign | (uint16_t)q;
    }
    uint32_t q = (ax - 0x38000000) >> 13, rem = ax & 0x1fff;              // rebias 127 -> 15
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;                  // carries into the exponent
    return sign | (uint16_t)q;
}

static inline float chalf_float_from_half(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {  // subnormal: shift the mantissa up until its leading bit is the implicit one
            uint32_t e = 113;
            while ((man & 0x400) == 0) { man <<= 1; e--; }
            bits = sign | (e << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        // inf, or NaN made quiet with its payload kept, as vcvtph2ps does
        bits = sign | 0x7f800000 | (man << 13) | (man ? 0x00400000u : 0);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

#endif
