#ifndef CCRC32_H
#define CCRC32_H
#include <stddef.h>
#include <stdint.h>

// CRC-32 as zip and zlib compute it (reflected polynomial 0xEDB88320, initial and final value
// inverted): `crc` is the CRC of the bytes so far (0 for none), the result that of those bytes
// followed by `data`. Carry-less multiplication (PCLMULQDQ) folds 64 bytes at a time when the
// CPU has it (checked at run time), at several GB/s; slicing-by-8 tables otherwise.
uint32_t ccrc32_update(uint32_t crc, const uint8_t *data, size_t count);

/// The table path, exposed so tests can compare it with the PCLMULQDQ path.
uint32_t ccrc32_update_portable(uint32_t crc, const uint8_t *data, size_t count);

/// 1 when the PCLMULQDQ path is in use on this CPU.
int ccrc32_has_pclmul(void);
#endif
