#include "ccrc32.h"
#include <pthread.h>

// Reading a .pth checks the CRC-32 of every byte of every tensor record; zlib's crc32 (3 GB/s
// here) took a third as long as the whole rest of a conversion's work on the reading thread.

// tables[k][b]: the CRC of byte b followed by k zero bytes, made once on first use.
static uint32_t tables[8][256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void make_tables(void) {
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        tables[0][b] = c;
    }
    for (int k = 1; k < 8; k++)
        for (int b = 0; b < 256; b++) tables[k][b] = tables[0][tables[k - 1][b] & 0xff] ^ (tables[k - 1][b] >> 8);
}

// Slicing-by-8 on the raw (not inverted) register.
static uint32_t crc_tables(uint32_t c, const uint8_t *p, size_t n) {
    pthread_once(&tables_once, make_tables);
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo = ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24) ^ c;
        c = tables[7][lo & 0xff] ^ tables[6][(lo >> 8) & 0xff] ^ tables[5][(lo >> 16) & 0xff] ^ tables[4][lo >> 24]
            ^ tables[3][p[4]] ^ tables[2][p[5]] ^ tables[1][p[6]] ^ tables[0][p[7]];
    }
    for (; n > 0; n--, p++) c = tables[0][(c ^ *p) & 0xff] ^ (c >> 8);
    return c;
}

uint32_t ccrc32_update_portable(uint32_t crc, const uint8_t *data, size_t count) {
    return ~crc_tables(~crc, data, count);
}

#if defined(__x86_64__)
#include "cached_feature.h"
#include <cpuid.h>
#include <immintrin.h>

static int detect_pclmul(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const unsigned pclmul = 1u << 1, sse41 = 1u << 19;
    return (c & (pclmul | sse41)) == (pclmul | sse41);
}

// Folding as in Intel's "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ" (2009),
// with the constants for the bit-reflected CRC-32 polynomial: x^(k) mod P(x) for the fold
// distances (512±32 bits for four lanes, 128±32 for one, 64 and 32 for the last folds), then a
// Barrett reduction with P(x) and mu = floor(x^64 / P(x)).
#define LOAD(p) _mm_loadu_si128((const __m128i *)(p))

__attribute__((target("pclmul,sse4.1")))
static inline __m128i fold(__m128i x, __m128i k, __m128i next) {
    __m128i lo = _mm_clmulepi64_si128(x, k, 0x00);   // x.low * k.low
    __m128i hi = _mm_clmulepi64_si128(x, k, 0x11);   // x.high * k.high
    return _mm_xor_si128(_mm_xor_si128(lo, hi), next);
}

// The raw register over n bytes, n >= 64 and a multiple of 16.
__attribute__((target("pclmul,sse4.1")))
static uint32_t crc_pclmul(uint32_t c, const uint8_t *p, size_t n) {
    const __m128i k1k2 = _mm_set_epi64x(0x1c6e41596, 0x154442bd4);   // four lanes, 64 bytes apart
    const __m128i k3k4 = _mm_set_epi64x(0x0ccaa009e, 0x1751997d0);   // one lane, 16 bytes
    const __m128i k5 = _mm_set_epi64x(0, 0x163cd6124);
    const __m128i poly = _mm_set_epi64x(0x1f7011641, 0x1db710641);   // mu, P(x)
    const __m128i low32 = _mm_set_epi32(0, 0, 0, -1);
    __m128i x1 = _mm_xor_si128(LOAD(p), _mm_cvtsi32_si128((int)c)), x2 = LOAD(p + 16), x3 = LOAD(p + 32), x4 = LOAD(p + 48);
    for (p += 64, n -= 64; n >= 64; p += 64, n -= 64) {
        x1 = fold(x1, k1k2, LOAD(p));
        x2 = fold(x2, k1k2, LOAD(p + 16));
        x3 = fold(x3, k1k2, LOAD(p + 32));
        x4 = fold(x4, k1k2, LOAD(p + 48));
    }
    x1 = fold(fold(fold(x1, k3k4, x2), k3k4, x3), k3k4, x4);
    for (; n >= 16; p += 16, n -= 16) x1 = fold(x1, k3k4, LOAD(p));
    // 128 -> 64 bits, then 64 -> 32 (each also appends 32 zero bits), then Barrett.
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), _mm_clmulepi64_si128(x1, k3k4, 0x10));
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 4), _mm_clmulepi64_si128(_mm_and_si128(x1, low32), k5, 0x00));
    __m128i t = _mm_clmulepi64_si128(_mm_and_si128(x1, low32), poly, 0x10);
    t = _mm_clmulepi64_si128(_mm_and_si128(t, low32), poly, 0x00);
    return (uint32_t)_mm_extract_epi32(_mm_xor_si128(x1, t), 1);
}

int ccrc32_has_pclmul(void) {
    static int cache = -1;   // 0 tables, 1 PCLMULQDQ
    return cached_feature(&cache, detect_pclmul);
}

uint32_t ccrc32_update(uint32_t crc, const uint8_t *data, size_t count) {
    uint32_t c = ~crc;
    if (count >= 64 && ccrc32_has_pclmul()) {
        size_t bulk = count & ~(size_t)15;
        c = crc_pclmul(c, data, bulk);
        data += bulk;
        count -= bulk;
    }
    return ~crc_tables(c, data, count);
}
#else
int ccrc32_has_pclmul(void) { return 0; }
uint32_t ccrc32_update(uint32_t crc, const uint8_t *data, size_t count) { return ccrc32_update_portable(crc, data, count); }
#endif
