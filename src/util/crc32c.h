/* crc32c (Castagnoli), the checksum of WAL records and snapshot files. The SSE4.2 crc32 instruction
 * is used when the CPU has it (checked at run time, so one binary runs everywhere) and a table
 * otherwise; both give the same values, which the unit tests check against known vectors. */
#ifndef FLT_CRC32C_H
#define FLT_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Continue a crc: start with crc = 0; crc32c(crc32c(0, a), b) == crc32c(0, a b).
 * crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t crc32c(uint32_t crc, const void *data, size_t len);

/* The two implementations, for the tests and benchmarks. crc32c_hw must only be called when
 * crc32c_hw_available() is true. */
uint32_t crc32c_sw(uint32_t crc, const void *data, size_t len);
uint32_t crc32c_hw(uint32_t crc, const void *data, size_t len);
bool crc32c_hw_available(void);

#endif
