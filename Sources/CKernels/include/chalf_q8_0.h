#ifndef CHALF_Q8_0_H
#define CHALF_Q8_0_H
#include <stddef.h>
#include <stdint.h>

// ggml q8_0 quantization with AVX2 (34-byte blocks: d as f16, then 32 int8 codes), the same
// bytes as quantize_row_q8_0_ref: d = amax/127, id = d ? 1/d : 0, q = roundf(x*id), each float
// operation rounded on its own. Only for blocks whose values and id are finite: the functions
// stop before any other block, which the caller quantizes with its reference code and then calls
// again past it. Without AVX2 they do nothing (return 0): callers check chalf_has_avx2 (chalf.h)
// first and keep a portable path.

/// Quantizes up to `blocks` blocks of 32 floats from `src` into `dst`. Returns how many were
/// done: `blocks`, or the index of the first block left to the caller. Sets `*overflowed` to
/// how many of the blocks done have an infinite f16 d although their values were finite.
size_t chalf_quantize_q8_0(const float *src, uint8_t *dst, size_t blocks, size_t *overflowed);

/// The same from bfloat16 values (widened exactly in registers): the bytes of chalf_bf16_to_f32
/// followed by chalf_quantize_q8_0, without the float array.
size_t chalf_quantize_q8_0_bf16(const uint16_t *src, uint8_t *dst, size_t blocks, size_t *overflowed);

#endif
