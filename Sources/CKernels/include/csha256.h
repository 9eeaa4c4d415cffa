#ifndef CSHA256_H
#define CSHA256_H
#include <stddef.h>
#include <stdint.h>

// The SHA-256 compression function (FIPS 180-4 section 6.2.2) over `blocks` consecutive
// 64-byte blocks, updating `state` (the eight working hash words). Padding and streaming are
// done by the Swift `SHA256` type. Uses the x86 SHA extensions when the CPU has them (checked at
// run time) and portable C otherwise; both give the same result.
void csha256_compress(uint32_t state[8], const uint8_t *data, size_t blocks);

/// The portable path, exposed so tests can compare it with the SHA-extension path.
void csha256_compress_portable(uint32_t state[8], const uint8_t *data, size_t blocks);

/// 1 when the SHA-extension path is in use on this CPU.
int csha256_has_sha_extensions(void);
#endif
