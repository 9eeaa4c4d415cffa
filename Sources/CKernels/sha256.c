#include "csha256.h"

// Hashing the source file is the biggest cost of a conversion after the I/O itself: the
// SHA extensions do it at a few GB/s where portable code manages a few hundred MB/s.

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

void csha256_compress_portable(uint32_t state[8], const uint8_t *data, size_t blocks) {
    uint32_t w[64];
    for (size_t blk = 0; blk < blocks; blk++, data += 64) {
        for (int i = 0; i < 16; i++) {
            w[i] = (uint32_t)data[4 * i] << 24 | (uint32_t)data[4 * i + 1] << 16 |
                   (uint32_t)data[4 * i + 2] << 8 | (uint32_t)data[4 * i + 3];
        }
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
        for (int i = 0; i < 64; i++) {
            uint32_t t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
            uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            h = g; g = f; f = e; e = d + t1;
            d = c; c = b; b = a; a = t1 + t2;
        }
        state[0] += a; state[1] += b; state[2] += c; state[3] += d;
        state[4] += e; state[5] += f; state[6] += g; state[7] += h;
    }
}

#if defined(__x86_64__)
#include "cached_feature.h"
#include <cpuid.h>
#include <immintrin.h>

static int detect_sha(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const unsigned ssse3 = 1u << 9, sse41 = 1u << 19;
    if ((c & (ssse3 | sse41)) != (ssse3 | sse41)) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 29) & 1;   // CPUID.(EAX=7,ECX=0):EBX.SHA[bit 29]
}

// sha256rnds2 works on the state split as {A,B,E,F} and {C,D,G,H}; each call does two rounds
// and the two registers swap roles, so four rounds (one group of four message words) are two calls.
#define ROUNDS4(msg, k)                                                   \
    do {                                                                  \
        __m128i m_ = _mm_add_epi32((msg), _mm_loadu_si128((const __m128i *)(k))); \
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, m_);                     \
        abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(m_, 0x0E)); \
    } while (0)

__attribute__((target("sha,sse4.1,ssse3")))
static void compress_sha(uint32_t state[8], const uint8_t *data, size_t blocks) {
    // Big-endian words of the message: reverse the bytes of each 32-bit lane.
    const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i dcba = _mm_loadu_si128((const __m128i *)&state[0]);
    __m128i hgfe = _mm_loadu_si128((const __m128i *)&state[4]);
    __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
    __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
    __m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
    __m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);

    for (size_t blk = 0; blk < blocks; blk++, data += 64) {
        const __m128i abef0 = abef, cdgh0 = cdgh;
        __m128i w[4];   // w[g & 3]: message words 4g..4g+3
        for (int i = 0; i < 4; i++) w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * i)), byteswap);
        // Words 16..63, four at a time: w[t] = s1(w[t-2]) + w[t-7] + s0(w[t-15]) + w[t-16]. Each
        // group's msg1 half starts three groups ahead and its msg2 half one group ahead, so the
        // schedule runs beside the rounds instead of in front of them (~10% faster).
        ROUNDS4(w[0], &K[0]);
        ROUNDS4(w[1], &K[4]);
        w[0] = _mm_sha256msg1_epu32(w[0], w[1]);   // w[16..19]: w[t-16] + s0(w[t-15])
        ROUNDS4(w[2], &K[8]);
        w[1] = _mm_sha256msg1_epu32(w[1], w[2]);
#pragma clang loop unroll(full)   // constant indices keep w[] in registers
        for (int g = 3; g < 15; g++) {
            ROUNDS4(w[g & 3], &K[4 * g]);
            __m128i next = _mm_add_epi32(w[(g + 1) & 3], _mm_alignr_epi8(w[g & 3], w[(g - 1) & 3], 4));   // + w[t-7]
            w[(g + 1) & 3] = _mm_sha256msg2_epu32(next, w[g & 3]);                                        // + s1(w[t-2])
            if (g + 3 < 16) w[(g + 3) & 3] = _mm_sha256msg1_epu32(w[(g + 3) & 3], w[g & 3]);
        }
        ROUNDS4(w[3], &K[60]);
        abef = _mm_add_epi32(abef, abef0);
        cdgh = _mm_add_epi32(cdgh, cdgh0);
    }

    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    _mm_storeu_si128((__m128i *)&state[0], _mm_blend_epi16(feba, dchg, 0xF0));
    _mm_storeu_si128((__m128i *)&state[4], _mm_alignr_epi8(dchg, feba, 8));
}

int csha256_has_sha_extensions(void) {
    static int cache = -1;   // 0 portable, 1 SHA extensions
    return cached_feature(&cache, detect_sha);
}

void csha256_compress(uint32_t state[8], const uint8_t *data, size_t blocks) {
    if (csha256_has_sha_extensions()) compress_sha(state, data, blocks);
    else csha256_compress_portable(state, data, blocks);
}
#else
int csha256_has_sha_extensions(void) { return 0; }
void csha256_compress(uint32_t state[8], const uint8_t *data, size_t blocks) {
    csha256_compress_portable(state, data, blocks);
}
#endif
