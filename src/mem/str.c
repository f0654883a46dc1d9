/* hvi mem — bounded ASCII and UTF-16LE string fetch from guest virtual memory. */
#include <string.h>

#include "mem/mem_internal.h"

#define STR_CHUNK 256u

/* Append one code point as UTF-8 if it fits (keeping room for the NUL). */
static bool put_utf8(char *out, size_t out_len, size_t *pos, uint32_t cp)
{
    uint8_t b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (uint8_t)cp, n = 1;
    } else if (cp < 0x800) {
        b[0] = (uint8_t)(0xc0 | (cp >> 6)), b[1] = (uint8_t)(0x80 | (cp & 0x3f)), n = 2;
    } else if (cp < 0x10000) {
        b[0] = (uint8_t)(0xe0 | (cp >> 12)), b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (uint8_t)(0x80 | (cp & 0x3f)), n = 3;
    } else {
        b[0] = (uint8_t)(0xf0 | (cp >> 18)), b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f)), b[3] = (uint8_t)(0x80 | (cp & 0x3f)), n = 4;
    }
    if (*pos + n + 1 > out_len)
        return false;
    memcpy(out + *pos, b, n);
    *pos += n;
    return true;
}

/* Read the next chunk of up to `want` bytes, not crossing into a page that may be absent
 * unless needed: a chunk stops at the page end. */
static hvi_status read_chunk(hvi_engine *e, uint64_t cr3, hvi_gva gva, uint8_t *buf, size_t want,
                             size_t *got)
{
    size_t n = HVI_PAGE_SIZE - (size_t)(gva & 0xfff);
    if (n > want)
        n = want;
    *got = n;
    return hvi_gva_read(e, cr3, gva, buf, n);
}

hvi_status hvi_gva_read_str(hvi_engine *e, uint64_t cr3, hvi_gva gva, size_t max_chars, char *out,
                            size_t out_len, size_t *len_out)
{
    if (len_out)
        *len_out = 0;
    if (!e || !out || !out_len)
        return HVI_E_INVAL;
    out[0] = 0;
    size_t pos = 0, read = 0;
    uint8_t chunk[STR_CHUNK];
    while (read < max_chars) {
        size_t got = 0, want = max_chars - read < STR_CHUNK ? max_chars - read : STR_CHUNK;
        if (gva + read < gva)
            return HVI_E_RANGE; /* wrapped past 2^64 */
        hvi_status st = read_chunk(e, cr3, gva + read, chunk, want, &got);
        if (st != HVI_OK)
            return st;
        for (size_t i = 0; i < got; i++) {
            if (!chunk[i]) {
                if (len_out)
                    *len_out = pos;
                return HVI_OK;
            }
            if (pos + 1 >= out_len) {
                if (len_out)
                    *len_out = pos;
                return HVI_E_LIMIT;
            }
            out[pos++] = (char)chunk[i];
            out[pos] = 0;
        }
        read += got;
    }
    if (len_out)
        *len_out = pos;
    return HVI_E_LIMIT;
}

struct wdec {
    uint32_t hi; /* pending high surrogate, 0 if none */
};

/* Feed one UTF-16 unit; returns false when the output is full. */
static bool feed_unit(struct wdec *d, uint16_t u, char *out, size_t out_len, size_t *pos)
{
    if (u >= 0xd800 && u <= 0xdbff) {
        bool ok = !d->hi || put_utf8(out, out_len, pos, 0xfffd);
        d->hi = u;
        return ok;
    }
    if (u >= 0xdc00 && u <= 0xdfff) {
        if (!d->hi)
            return put_utf8(out, out_len, pos, 0xfffd);
        uint32_t cp = 0x10000 + ((d->hi - 0xd800) << 10) + (u - 0xdc00u);
        d->hi = 0;
        return put_utf8(out, out_len, pos, cp);
    }
    if (d->hi && !put_utf8(out, out_len, pos, 0xfffd))
        return false;
    d->hi = 0;
    return put_utf8(out, out_len, pos, u);
}

hvi_status hvi_gva_read_wstr(hvi_engine *e, uint64_t cr3, hvi_gva gva, size_t max_chars,
                             char *out, size_t out_len, size_t *len_out)
{
    if (len_out)
        *len_out = 0;
    if (!e || !out || !out_len)
        return HVI_E_INVAL;
    out[0] = 0;
    size_t pos = 0;
    struct wdec d = {0};
    hvi_status st = HVI_E_LIMIT;
    for (size_t i = 0; i < max_chars; i++) {
        uint16_t u = 0;
        hvi_status rs = gva + 2 * i < gva ? HVI_E_RANGE /* wrapped past 2^64 */
                                          : hvi_gva_read(e, cr3, gva + 2 * i, &u, 2);
        if (rs != HVI_OK) {
            st = rs;
            break;
        }
        if (!u) {
            st = HVI_OK;
            break;
        }
        if (!feed_unit(&d, u, out, out_len, &pos)) {
            d.hi = 0;
            break;
        }
    }
    if (d.hi && (st == HVI_OK || st == HVI_E_LIMIT))
        (void)put_utf8(out, out_len, &pos, 0xfffd); /* dangling high surrogate */
    out[pos] = 0;
    if (len_out)
        *len_out = pos;
    return st;
}
