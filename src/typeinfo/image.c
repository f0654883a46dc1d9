/* hvi typeinfo — kernel images: input classification, bzImage payload extraction and
 * decompression (gzip, xz, lzma, zstd), ELF64 section lookup, banner/release strings.
 * Everything here reads hostile bytes: every offset is checked against the buffer. */
#include <errno.h>
#include <lzma.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "typeinfo/typeinfo.h"

#define BTF_MAGIC 0xeB9Fu
#define SETUP_HDR_MAGIC 0x53726448u /* "HdrS" at 0x202 */
#define HVI_TI_MAX_SCAN_TRIES 32

void hvi_ti_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || !err_len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) { return rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

enum hvi_ti_kind hvi_typeinfo_classify(const void *buf, size_t len)
{
    const uint8_t *b = buf;
    if (!b)
        return HVI_TI_UNKNOWN;
    if (len >= 4 && rd16(b) == BTF_MAGIC)
        return HVI_TI_RAW_BTF;
    if (len >= 4 && !memcmp(b, "\177ELF", 4))
        return HVI_TI_ELF;
    if (len >= 0x250 && rd32(b + 0x202) == SETUP_HDR_MAGIC)
        return HVI_TI_BZIMAGE;
    return HVI_TI_UNKNOWN;
}

hvi_status hvi_ti_read_file(const char *path, void **buf, size_t *len, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        hvi_ti_err(err, err_len, "%s: %s", path, strerror(errno));
        return HVI_E_IO;
    }
    size_t cap = 1u << 20, n = 0;
    uint8_t *b = malloc(cap);
    hvi_status st = b ? HVI_OK : HVI_E_NOMEM;
    while (st == HVI_OK) {
        if (n == cap) {
            if (cap >= HVI_TI_MAX_IMAGE) {
                hvi_ti_err(err, err_len, "%s: larger than %u bytes", path, HVI_TI_MAX_IMAGE);
                st = HVI_E_LIMIT;
                break;
            }
            uint8_t *nb = realloc(b, cap * 2);
            if (!nb) {
                st = HVI_E_NOMEM;
                break;
            }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) {
                hvi_ti_err(err, err_len, "%s: read error", path);
                st = HVI_E_IO;
            }
            break;
        }
    }
    fclose(f);
    if (st != HVI_OK) {
        free(b);
        return st;
    }
    *buf = b;
    *len = n;
    return HVI_OK;
}

/* ---- decompression into a growing buffer capped at HVI_TI_MAX_IMAGE ---- */
struct outbuf {
    uint8_t *p;
    size_t len, cap;
};

static hvi_status out_grow(struct outbuf *o)
{
    if (o->cap >= HVI_TI_MAX_IMAGE)
        return HVI_E_LIMIT;
    size_t nc = o->cap ? o->cap * 2 : (16u << 20);
    if (nc > HVI_TI_MAX_IMAGE)
        nc = HVI_TI_MAX_IMAGE;
    uint8_t *np = realloc(o->p, nc);
    if (!np)
        return HVI_E_NOMEM;
    o->p = np;
    o->cap = nc;
    return HVI_OK;
}

static hvi_status unz_gzip(const uint8_t *in, size_t in_len, struct outbuf *o)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return HVI_E_NOMEM;
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = in_len > UINT32_MAX ? UINT32_MAX : (uInt)in_len;
    hvi_status st = HVI_OK;
    for (;;) {
        if (o->len == o->cap && (st = out_grow(o)) != HVI_OK)
            break;
        size_t room = o->cap - o->len;
        z.next_out = o->p + o->len;
        z.avail_out = room > UINT32_MAX ? UINT32_MAX : (uInt)room;
        int r = inflate(&z, Z_NO_FLUSH);
        o->len = (size_t)(z.next_out - o->p);
        if (r == Z_STREAM_END)
            break;
        if (r != Z_OK && !(r == Z_BUF_ERROR && z.avail_out == 0)) {
            st = HVI_E_FORMAT;
            break;
        }
    }
    inflateEnd(&z);
    return st;
}

static hvi_status unz_lzma(const uint8_t *in, size_t in_len, struct outbuf *o, bool alone)
{
    lzma_stream z = LZMA_STREAM_INIT;
    lzma_ret r = alone ? lzma_alone_decoder(&z, 1u << 30)
                       : lzma_stream_decoder(&z, 1u << 30, 0);
    if (r != LZMA_OK)
        return HVI_E_NOMEM;
    z.next_in = in;
    z.avail_in = in_len;
    hvi_status st = HVI_OK;
    for (;;) {
        if (o->len == o->cap && (st = out_grow(o)) != HVI_OK)
            break;
        z.next_out = o->p + o->len;
        z.avail_out = o->cap - o->len;
        r = lzma_code(&z, z.avail_in ? LZMA_RUN : LZMA_FINISH);
        o->len = (size_t)(z.next_out - o->p);
        if (r == LZMA_STREAM_END)
            break;
        if (r != LZMA_OK) {
            /* The kernel appends its own 4-byte size after the stream: data past a complete
             * stream is fine, a stream cut short is not. */
            st = HVI_E_FORMAT;
            break;
        }
        if (z.avail_in == 0 && z.avail_out != 0) {
            st = HVI_E_FORMAT;
            break;
        }
    }
    lzma_end(&z);
    return st;
}

static hvi_status unz_zstd(const uint8_t *in, size_t in_len, struct outbuf *o)
{
    ZSTD_DStream *z = ZSTD_createDStream();
    if (!z)
        return HVI_E_NOMEM;
    ZSTD_initDStream(z);
    ZSTD_DCtx_setParameter(z, ZSTD_d_windowLogMax, 31);
    ZSTD_inBuffer ib = {in, in_len, 0};
    hvi_status st = HVI_OK;
    for (;;) {
        if (o->len == o->cap && (st = out_grow(o)) != HVI_OK)
            break;
        ZSTD_outBuffer ob = {o->p, o->cap, o->len};
        size_t r = ZSTD_decompressStream(z, &ob, &ib);
        o->len = ob.pos;
        if (ZSTD_isError(r)) {
            st = HVI_E_FORMAT;
            break;
        }
        if (r == 0)
            break; /* frame complete */
        if (ib.pos == ib.size && ob.pos < ob.size) {
            st = HVI_E_FORMAT; /* truncated */
            break;
        }
    }
    ZSTD_freeDStream(z);
    return st;
}

enum codec { C_NONE, C_GZIP, C_XZ, C_LZMA, C_ZSTD };

static enum codec codec_at(const uint8_t *p, size_t left)
{
    if (left >= 3 && p[0] == 0x1f && p[1] == 0x8b && p[2] == 0x08)
        return C_GZIP;
    if (left >= 6 && !memcmp(p, "\xfd" "7zXZ\0", 6))
        return C_XZ;
    if (left >= 4 && rd32(p) == 0xFD2FB528u)
        return C_ZSTD;
    if (left >= 13 && p[0] == 0x5d && p[1] == 0 && p[2] == 0)
        return C_LZMA;
    return C_NONE;
}

static const char *codec_name(enum codec c)
{
    static const char *const n[] = {"none", "gzip", "xz", "lzma", "zstd"};
    return n[c];
}

static hvi_status decompress(enum codec c, const uint8_t *in, size_t in_len, struct outbuf *o)
{
    switch (c) {
    case C_GZIP: return unz_gzip(in, in_len, o);
    case C_XZ: return unz_lzma(in, in_len, o, false);
    case C_LZMA: return unz_lzma(in, in_len, o, true);
    case C_ZSTD: return unz_zstd(in, in_len, o);
    default: return HVI_E_UNSUPPORTED;
    }
}

/* Try one payload candidate; on success *o holds an ELF. */
static hvi_status try_payload(const uint8_t *p, size_t left, struct outbuf *o)
{
    enum codec c = codec_at(p, left);
    if (c == C_NONE)
        return HVI_E_NOT_FOUND;
    o->len = 0;
    hvi_status st = decompress(c, p, left, o);
    if (st == HVI_OK && hvi_typeinfo_classify(o->p, o->len) != HVI_TI_ELF)
        st = HVI_E_FORMAT;
    return st;
}

hvi_status hvi_typeinfo_extract_vmlinux(const void *buf, size_t len, void **elf, size_t *elf_len,
                                        char *err, size_t err_len)
{
    const uint8_t *b = buf;
    if (!b || !elf || !elf_len)
        return HVI_E_INVAL;
    if (hvi_typeinfo_classify(b, len) != HVI_TI_BZIMAGE) {
        hvi_ti_err(err, err_len, "not a bzImage (no HdrS setup header)");
        return HVI_E_FORMAT;
    }
    struct outbuf o = {0};
    hvi_status st = HVI_E_NOT_FOUND;
    /* 1. The setup header's payload_offset/payload_length (boot protocol >= 2.08). */
    uint32_t sects = b[0x1f1] ? b[0x1f1] : 4;
    size_t pm_start = ((size_t)sects + 1) * 512;
    uint32_t poff = rd32(b + 0x248), plen = rd32(b + 0x24c);
    if (rd16(b + 0x206) >= 0x208 && pm_start < len && poff < len - pm_start &&
        plen <= len - pm_start - poff && plen > 0)
        st = try_payload(b + pm_start + poff, plen, &o);
    /* 2. A magic scan after the setup code (bounded number of decompression attempts). */
    unsigned tries = 0;
    for (size_t i = pm_start < len ? pm_start : len;
         st != HVI_OK && i + 16 < len && tries < HVI_TI_MAX_SCAN_TRIES; i++) {
        if (codec_at(b + i, len - i) == C_NONE)
            continue;
        tries++;
        hvi_status s2 = try_payload(b + i, len - i, &o);
        if (s2 == HVI_OK || s2 == HVI_E_NOMEM || s2 == HVI_E_LIMIT) {
            st = s2;
            break;
        }
    }
    if (st != HVI_OK) {
        free(o.p);
        size_t p = pm_start + poff;
        bool in_file = pm_start < len && poff < len - pm_start;
        hvi_ti_err(err, err_len, "bzImage: no decompressible ELF payload (header payload: %s, %u "
                                 "bytes%s)",
                   in_file ? codec_name(codec_at(b + p, len - p)) : "out of range", plen,
                   in_file && plen > len - p ? ", past the end of the file: truncated?"
                                             : ", corrupt or unsupported codec");
        return st == HVI_E_NOT_FOUND ? HVI_E_FORMAT : st;
    }
    *elf = o.p;
    *elf_len = o.len;
    return HVI_OK;
}

hvi_status hvi_typeinfo_elf_section(const void *buf, size_t len, const char *name,
                                    const void **sec, size_t *sec_len)
{
    const uint8_t *b = buf;
    if (!b || !name || !sec || !sec_len)
        return HVI_E_INVAL;
    if (len < 64 || memcmp(b, "\177ELF", 4) || b[4] != 2 /* ELFCLASS64 */ || b[5] != 1 /* LE */)
        return HVI_E_FORMAT;
    uint64_t shoff = rd64(b + 0x28);
    uint16_t shentsize = rd16(b + 0x3a), shnum = rd16(b + 0x3c), shstrndx = rd16(b + 0x3e);
    if (shentsize < 64 || shnum == 0 || shstrndx >= shnum || shoff > len ||
        (uint64_t)shnum * shentsize > len - shoff)
        return HVI_E_FORMAT;
    const uint8_t *strh = b + shoff + (size_t)shstrndx * shentsize;
    uint64_t str_off = rd64(strh + 0x18), str_size = rd64(strh + 0x20);
    if (str_off > len || str_size > len - str_off)
        return HVI_E_FORMAT;
    size_t nlen = strlen(name);
    for (uint16_t i = 0; i < shnum; i++) {
        const uint8_t *sh = b + shoff + (size_t)i * shentsize;
        uint32_t nm = rd32(sh);
        if (rd32(sh + 4) == 8 /* SHT_NOBITS */ || nm >= str_size || str_size - nm <= nlen)
            continue;
        if (memcmp(b + str_off + nm, name, nlen + 1))
            continue;
        uint64_t off = rd64(sh + 0x18), size = rd64(sh + 0x20);
        if (off > len || size > len - off)
            return HVI_E_FORMAT;
        *sec = b + off;
        *sec_len = (size_t)size;
        return HVI_OK;
    }
    return HVI_E_NOT_FOUND;
}

static const uint8_t *find_bytes(const uint8_t *hay, size_t n, const char *needle, size_t nl)
{
    while (n >= nl) {
        const uint8_t *p = memchr(hay, needle[0], n - nl + 1);
        if (!p)
            return NULL;
        if (!memcmp(p, needle, nl))
            return p;
        n -= (size_t)(p - hay) + 1;
        hay = p + 1;
    }
    return NULL;
}

/* Copy the printable run at b[i..] (at most 255 chars) into out. */
static size_t copy_line(const uint8_t *b, size_t len, size_t i, char *out, size_t out_len)
{
    size_t n = 0;
    while (i + n < len && b[i + n] >= 0x20 && b[i + n] < 0x7f && n + 1 < out_len && n < 255)
        n++;
    memcpy(out, b + i, n);
    out[n] = 0;
    return n;
}

/* A 6.1 image holds two banners: the early one with an empty build number ("# SMP") and
 * linux_banner with the real one ("#1 SMP"); prefer a banner with "#<digit>". */
hvi_status hvi_typeinfo_find_banner(const void *buf, size_t len, char *out, size_t out_len)
{
    static const char key[] = "Linux version ";
    const size_t kl = sizeof(key) - 1;
    const uint8_t *b = buf;
    if (!b || !out || out_len == 0)
        return HVI_E_INVAL;
    size_t pos = 0;
    bool found = false;
    char cand[256];
    for (unsigned hits = 0; pos + kl < len && hits < 64; hits++) {
        const uint8_t *hit = find_bytes(b + pos, len - pos, key, kl);
        if (!hit)
            break;
        size_t i = (size_t)(hit - b) + kl;
        pos = i;
        if (i >= len || b[i] < '0' || b[i] > '9')
            continue; /* a format string ("%s"), not the banner */
        copy_line(b, len, i, cand, sizeof(cand));
        const char *h = strchr(cand, '#');
        bool numbered = h && h[1] >= '0' && h[1] <= '9';
        if (!found || numbered) {
            snprintf(out, out_len, "%s", cand);
            found = true;
        }
        if (numbered)
            break;
    }
    return found ? HVI_OK : HVI_E_NOT_FOUND;
}

static void release_of(const char *banner, char *out, size_t out_len)
{
    size_t n = strcspn(banner, " ");
    if (n >= out_len)
        n = out_len - 1;
    memcpy(out, banner, n);
    out[n] = 0;
}

hvi_status hvi_typeinfo_release_from_buffer(const void *buf, size_t len, char *out, size_t out_len)
{
    const uint8_t *b = buf;
    char banner[256];
    if (!b || !out || out_len == 0)
        return HVI_E_INVAL;
    if (hvi_typeinfo_classify(b, len) == HVI_TI_BZIMAGE && rd16(b + 0x206) >= 0x200) {
        /* kernel_version: offset of a NUL-terminated string, relative to 0x200. */
        size_t kv = (size_t)rd16(b + 0x20e) + 0x200;
        if (rd16(b + 0x20e) && kv < len && b[kv] >= '0' && b[kv] <= '9') {
            size_t n = 0;
            while (kv + n < len && b[kv + n] > 0x20 && b[kv + n] < 0x7f && n + 1 < out_len)
                n++;
            memcpy(out, b + kv, n);
            out[n] = 0;
            return HVI_OK;
        }
        void *elf = NULL;
        size_t elf_len = 0;
        hvi_status st = hvi_typeinfo_extract_vmlinux(b, len, &elf, &elf_len, NULL, 0);
        if (st != HVI_OK)
            return st;
        st = hvi_typeinfo_find_banner(elf, elf_len, banner, sizeof(banner));
        free(elf);
        if (st == HVI_OK)
            release_of(banner, out, out_len);
        return st;
    }
    hvi_status st = hvi_typeinfo_find_banner(b, len, banner, sizeof(banner));
    if (st == HVI_OK)
        release_of(banner, out, out_len);
    return st;
}

hvi_status hvi_typeinfo_kernel_release(const char *path, char *out, size_t out_len)
{
    void *buf = NULL;
    size_t len = 0;
    if (!path)
        return HVI_E_INVAL;
    hvi_status st = hvi_ti_read_file(path, &buf, &len, NULL, 0);
    if (st != HVI_OK)
        return st;
    st = hvi_typeinfo_release_from_buffer(buf, len, out, out_len);
    free(buf);
    return st;
}
