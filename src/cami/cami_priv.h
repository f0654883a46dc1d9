/* hvi cami — private helpers shared by the loader, the writer and the lookups. */
#ifndef HVI_CAMI_PRIV_H
#define HVI_CAMI_PRIV_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hvi/cami.h"

#define CAMI_HEADER_SIZE 28u
#define CAMI_SECTION_SIZE 16u
#define CAMI_SIG_SIZE 32u
#define CAMI_LIX_SIZE 112u
#define CAMI_WIN_SIZE 64u
#define CAMI_WINVER_SIZE 144u
#define CAMI_FUNC_SIZE 36u
#define CAMI_PAT_SIZE 24u
#define CAMI_PATEXT_SIZE 48u
#define CAMI_OPAQUE_SIZE 8u
#define CAMI_OSPROT_SIZE 24u
#define CAMI_PROT_SIZE 40u
#define CAMI_PROCPROT_SIZE 88u
#define CAMI_INTEGRITY_SIZE 16u
#define CAMI_MAX_ENTRIES 0x4000u
#define CAMI_LIX_MIN_GROUPS 16u
#define CAMI_WIN_MIN_KM 14u
#define CAMI_WIN_MIN_UM 3u
#define CAMI_LIX_MAX_HOOKS 512u
#define CAMI_CHECKSUM_CRC32 1u

static inline uint32_t cami_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint16_t cami_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint64_t cami_le64(const uint8_t *p)
{
    return (uint64_t)cami_le32(p) | (uint64_t)cami_le32(p + 4) << 32;
}

/* CRC-32 (reflected 0xEDB88320) register update, no pre/post inversion. */
uint32_t cami_crc32_raw(uint32_t crc, const void *data, size_t len);
/* Standard CRC-32 of the buffer with the 4 bytes at skip_off read as zero. */
uint32_t cami_checksum(const uint8_t *buf, size_t len, size_t skip_off);

#endif
