/* hvi cami — CRC-32 for name hashes and the file checksum. */
#include <zlib.h>

#include "cami/cami_priv.h"

static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
    crc_ready = 1;
}

uint32_t cami_crc32_raw(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    if (!crc_ready)
        crc_init();
    for (size_t i = 0; i < len; i++)
        crc = crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return crc;
}

uint32_t hvi_cami_name_hash(const char *name)
{
    if (!name)
        return 0;
    return ~cami_crc32_raw(0, name, strlen(name));
}

/* zlib's crc32 is the same standard CRC-32, several times faster than the table loop above */
static uint32_t zcrc(uint32_t crc, const uint8_t *p, size_t len)
{
    while (len) {
        uInt n = len > 0x40000000u ? 0x40000000u : (uInt)len;
        crc = (uint32_t)crc32(crc, p, n);
        p += n;
        len -= n;
    }
    return crc;
}

uint32_t cami_checksum(const uint8_t *buf, size_t len, size_t skip_off)
{
    static const uint8_t zero[4];
    if (skip_off > len || len - skip_off < 4)
        return zcrc(0, buf, len);
    uint32_t crc = zcrc(0, buf, skip_off);
    crc = zcrc(crc, zero, 4);
    return zcrc(crc, buf + skip_off + 4, len - skip_off - 4);
}
