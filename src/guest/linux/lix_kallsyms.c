/* hvi guest/linux — kallsyms tables (6.1 layout) found by validated scanning of the image copy.
 *
 * The kernel's scripts/kallsyms emits, each label 8-byte aligned, in this order:
 * kallsyms_num_syms (u32), kallsyms_names (length-prefixed token strings), kallsyms_markers
 * (u32 offset into names every 256 symbols), kallsyms_token_table (256 NUL-terminated
 * strings), kallsyms_token_index (u16[256]); kallsyms_offsets (s32[num]) and
 * kallsyms_relative_base (u64) sit either just before num_syms or after token_index. No symbol
 * is known yet, so each table is recognised by its structure and cross-checked with the
 * others (docs/linux-guest.md). */
#include <stdlib.h>
#include <string.h>

#include "guest/linux/lix.h"

#define KS_NAME_MAX 512u
#define KS_MAX_TOKEN 64u

struct ks_scan {
    const uint8_t *img;
    size_t len;
    uint64_t va;
    size_t tok_index, tok_table; /* image offsets */
    size_t markers, nmarkers;
    size_t num_syms, names;
    uint32_t count;
};

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

static bool index_plausible(const uint8_t *p)
{
    if (rd16(p) != 0)
        return false;
    for (unsigned i = 1; i < 256; i++) {
        unsigned d = (unsigned)rd16(p + 2 * i) - rd16(p + 2 * (i - 1));
        if (rd16(p + 2 * i) <= rd16(p + 2 * (i - 1)) || d < 2 || d > KS_MAX_TOKEN)
            return false;
    }
    return true;
}

/* Is [t, t+size) a token table matching the index at `idx`, ending (8-aligned) at idx? */
static bool table_matches(const struct ks_scan *s, size_t t, size_t idx)
{
    const uint8_t *ix = s->img + idx;
    for (unsigned i = 0; i < 256; i++) {
        size_t start = t + rd16(ix + 2 * i);
        size_t end = i < 255 ? t + rd16(ix + 2 * i + 2) - 1 : idx;
        size_t j = start;
        for (; j < end && s->img[j]; j++)
            if (s->img[j] < 0x20 || s->img[j] > 0x7e)
                return false;
        if (j == start || s->img[j] != 0 || (i < 255 && j != end) || j >= idx)
            return false;
        if (i == 255 && ((j + 1 + 7) & ~(size_t)7) != idx)
            return false;
    }
    return true;
}

static bool find_tokens(struct ks_scan *s, size_t from)
{
    for (size_t p = from < 8 ? 8 : (from + 7) & ~(size_t)7; p + 512 <= s->len; p += 8) {
        if (rd16(s->img + p) != 0 || rd16(s->img + p + 2) < 2 || rd16(s->img + p + 2) > KS_MAX_TOKEN)
            continue;
        if (!index_plausible(s->img + p))
            continue;
        size_t last = rd16(s->img + p + 510);
        for (size_t k = 2; k <= KS_MAX_TOKEN + 8; k++) {
            if (last + k > p || ((p - last - k) & 7))
                continue;
            if (table_matches(s, p - last - k, p)) {
                s->tok_index = p;
                s->tok_table = p - last - k;
                return true;
            }
        }
    }
    return false;
}

/* Walk `n` name entries from `pos`; returns the end offset or 0 when it leaves [.., limit). */
static size_t skip_names(const struct ks_scan *s, size_t pos, uint32_t n, size_t limit)
{
    for (uint32_t i = 0; i < n; i++) {
        if (pos >= limit)
            return 0;
        size_t l = s->img[pos++];
        if (l & 0x80) {
            if (pos >= limit)
                return 0;
            l = (l & 0x7f) | ((size_t)s->img[pos++] << 7);
        }
        if (l == 0 || l > KS_NAME_MAX)
            return 0;
        pos += l;
    }
    return pos <= limit ? pos : 0;
}

static bool names_check(const struct ks_scan *s, size_t names, uint32_t v)
{
    size_t pos = names;
    for (size_t m = 1; m < s->nmarkers; m++) {
        pos = skip_names(s, pos, 256, s->markers);
        if (!pos || pos - names != rd32(s->img + s->markers + 4 * m))
            return false;
    }
    uint32_t rest = v - (uint32_t)(256 * (s->nmarkers - 1));
    pos = skip_names(s, pos, rest, s->markers);
    return pos && s->markers - pos < 8;
}

/* Cheap test of a num_syms candidate at `cand` against markers at s->markers. */
static bool markers_fit(struct ks_scan *s, size_t cand, uint32_t v)
{
    size_t n = (v + 255) / 256, names = cand + 8;
    if (s->markers + 4 * n > s->tok_table || rd32(s->img + s->markers) != 0)
        return false;
    for (size_t i = 1; i < n; i++)
        if (rd32(s->img + s->markers + 4 * i) <= rd32(s->img + s->markers + 4 * (i - 1)))
            return false;
    size_t last = rd32(s->img + s->markers + 4 * (n - 1));
    if (s->markers - names <= last || s->markers - names - last > 256u * (KS_NAME_MAX + 2))
        return false;
    /* after the markers: the token table, or kallsyms_seqs_of_names (3 bytes per symbol) */
    size_t end = (s->markers + 4 * n + 7) & ~(size_t)7;
    size_t seqs = ((size_t)v * 3 + 7) & ~(size_t)7;
    if (end != s->tok_table && end + seqs != s->tok_table)
        return false;
    s->nmarkers = n;
    return true;
}

static bool names_before(struct ks_scan *s)
{
    size_t floor = s->markers > (16u << 20) ? s->markers - (16u << 20) : 0;
    for (size_t cand = s->markers - 8; cand >= floor + 8; cand -= 8) {
        uint32_t v = rd32(s->img + cand);
        if (v == 0 || v > LIX_MAX_SYMS || rd32(s->img + cand + 4) != 0)
            continue;
        if (markers_fit(s, cand, v) && names_check(s, cand + 8, v)) {
            s->num_syms = cand;
            s->names = cand + 8;
            s->count = v;
            return true;
        }
    }
    return false;
}

/* kallsyms_markers start with 0 and are 8-aligned, somewhere below the token table (with 6.1
 * stable's kallsyms_seqs_of_names in between); each candidate is confirmed by the names. */
static bool find_names(struct ks_scan *s)
{
    size_t floor = s->tok_table > (8u << 20) ? s->tok_table - (8u << 20) : 0;
    for (size_t m = (s->tok_table & ~(size_t)7) - 8; m >= floor + 16; m -= 8) {
        uint32_t m1 = rd32(s->img + m + 4);
        if (rd32(s->img + m) != 0 || m1 < 256 || m1 > 256u * (KS_NAME_MAX + 2) ||
            rd32(s->img + m + 8) <= m1)
            continue;
        s->markers = m;
        if (names_before(s))
            return true;
    }
    return false;
}

static uint64_t sym_addr(const uint8_t *offs, uint32_t i, uint64_t base, bool abs_percpu)
{
    int32_t o = (int32_t)rd32(offs + 4 * (size_t)i);
    if (!abs_percpu)
        return base + (uint32_t)o;
    return o >= 0 ? (uint64_t)o : base - 1 - (uint64_t)(int64_t)o;
}

static bool addrs_sorted(const struct ks_scan *s, size_t offs, uint64_t base, bool abs_percpu)
{
    uint64_t prev = 0;
    for (uint32_t i = 0; i < s->count; i++) {
        uint64_t a = sym_addr(s->img + offs, i, base, abs_percpu);
        if (a < prev)
            return false;
        prev = a;
    }
    return true;
}

/* Try both placements of offsets/relative_base and both address encodings. */
static bool find_offsets(struct ks_scan *s, struct lix_kallsyms *ks, bool *abs_percpu)
{
    size_t bytes = ((size_t)s->count * 4 + 7) & ~(size_t)7;
    size_t cand_off[2], cand_base[2];
    int n = 0;
    if (s->num_syms >= 8 + bytes) {
        cand_base[n] = s->num_syms - 8;
        cand_off[n++] = s->num_syms - 8 - bytes;
    }
    size_t after = s->tok_index + 512;
    if (after + bytes + 8 <= s->len) {
        cand_off[n] = after;
        cand_base[n++] = after + bytes;
    }
    for (int c = 0; c < n; c++) {
        uint64_t base = rd64(s->img + cand_base[c]);
        if (base < s->va || base - s->va >= s->len)
            continue;
        for (int mode = 1; mode >= 0; mode--) {
            if (addrs_sorted(s, cand_off[c], base, mode)) {
                ks->offsets_va = s->va + cand_off[c];
                ks->relative_base_va = s->va + cand_base[c];
                ks->relative_base = base;
                *abs_percpu = mode;
                return true;
            }
        }
    }
    return false;
}

static hvi_status decode_all(const struct ks_scan *s, struct lix_kallsyms *ks, bool abs_percpu)
{
    size_t cap = (size_t)(s->markers - s->names) * 4 + 16;
    ks->syms = calloc(s->count, sizeof(*ks->syms));
    ks->names = malloc(cap);
    if (!ks->syms || !ks->names)
        return HVI_E_NOMEM;
    const uint8_t *offs = s->img + (ks->offsets_va - s->va);
    const char *tok[256];
    size_t tlen[256];
    for (unsigned t = 0; t < 256; t++) { /* table_matches() checked each is terminated */
        tok[t] = (const char *)s->img + s->tok_table + rd16(s->img + s->tok_index + 2 * t);
        tlen[t] = strlen(tok[t]);
    }
    size_t pos = s->names, out = 0;
    for (uint32_t i = 0; i < s->count; i++) {
        size_t l = s->img[pos++];
        if (l & 0x80)
            l = (l & 0x7f) | ((size_t)s->img[pos++] << 7);
        size_t start = out;
        for (size_t t = 0; t < l; t++) {
            uint8_t b = s->img[pos + t];
            if (out + tlen[b] + 1 >= cap || out - start + tlen[b] > KS_NAME_MAX)
                return HVI_E_LIMIT;
            memcpy(ks->names + out, tok[b], tlen[b]);
            out += tlen[b];
        }
        pos += l;
        if (out == start)
            return HVI_E_FORMAT;
        ks->syms[i].type = ks->names[start];
        ks->syms[i].name = (uint32_t)start + 1;
        ks->syms[i].addr = sym_addr(offs, i, ks->relative_base, abs_percpu);
        ks->names[out++] = 0;
    }
    ks->count = s->count;
    ks->names_len = out;
    return HVI_OK;
}

bool lix_kallsyms_probe(const uint8_t *image, size_t len, size_t from, size_t *at)
{
    struct ks_scan s = {.img = image, .len = len};
    if (!image || !at || !find_tokens(&s, from))
        return false;
    *at = s.tok_index;
    return true;
}

hvi_status lix_kallsyms_parse(struct lix_kallsyms *ks, const uint8_t *image, size_t len,
                              uint64_t image_va, const char **why)
{
    return lix_kallsyms_parse_at(ks, image, len, image_va, 0, why);
}

hvi_status lix_kallsyms_parse_at(struct lix_kallsyms *ks, const uint8_t *image, size_t len,
                                 uint64_t image_va, size_t from, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    if (!ks || !image || len < 4096) {
        *why = "no image to scan";
        return HVI_E_INVAL;
    }
    memset(ks, 0, sizeof(*ks));
    struct ks_scan s = {.img = image, .len = len, .va = image_va};
    bool abs_percpu = true;
    if (!find_tokens(&s, from) && (from == 0 || !find_tokens(&s, 0))) {
        *why = "kallsyms_token_table/kallsyms_token_index not found";
        return HVI_E_NOT_FOUND;
    }
    if (!find_names(&s)) {
        *why = "kallsyms_markers/kallsyms_num_syms/kallsyms_names not found or inconsistent";
        return HVI_E_NOT_FOUND;
    }
    if (!find_offsets(&s, ks, &abs_percpu)) {
        *why = "kallsyms_offsets/kallsyms_relative_base not found or not sorted";
        return HVI_E_NOT_FOUND;
    }
    ks->num_syms_va = image_va + s.num_syms;
    ks->names_va = image_va + s.names;
    ks->markers_va = image_va + s.markers;
    ks->token_table_va = image_va + s.tok_table;
    ks->token_index_va = image_va + s.tok_index;
    hvi_status st = decode_all(&s, ks, abs_percpu);
    if (st != HVI_OK) {
        *why = "kallsyms names do not decode";
        lix_kallsyms_free(ks);
    }
    return st;
}

void lix_kallsyms_free(struct lix_kallsyms *ks)
{
    if (!ks)
        return;
    free(ks->syms);
    free(ks->names);
    free(ks->by_name);
    memset(ks, 0, sizeof(*ks));
}

static const struct lix_kallsyms *g_sort_ks; /* qsort has no context argument in C11 */

static int cmp_name(const void *a, const void *b)
{
    const struct lix_kallsyms *ks = g_sort_ks;
    return strcmp(ks->names + ks->syms[*(const uint32_t *)a].name,
                  ks->names + ks->syms[*(const uint32_t *)b].name);
}

hvi_status lix_kallsyms_lookup(struct lix_kallsyms *ks, const char *name, uint64_t *addr)
{
    if (!ks || !name || !addr || !ks->count)
        return HVI_E_INVAL;
    if (!ks->by_name && ks->lookups < LIX_LINEAR_LOOKUPS) {
        /* the first few lookups (discovery) are cheaper than sorting 100k names */
        ks->lookups++;
        for (uint32_t i = 0; i < ks->count; i++) {
            if (!strcmp(ks->names + ks->syms[i].name, name)) {
                *addr = ks->syms[i].addr;
                return HVI_OK;
            }
        }
        return HVI_E_NOT_FOUND;
    }
    if (!ks->by_name) {
        uint32_t *ix = malloc(sizeof(uint32_t) * ks->count);
        if (!ix)
            return HVI_E_NOMEM;
        for (uint32_t i = 0; i < ks->count; i++)
            ix[i] = i;
        g_sort_ks = ks;
        qsort(ix, ks->count, sizeof(uint32_t), cmp_name);
        g_sort_ks = NULL;
        ks->by_name = ix;
    }
    size_t lo = 0, hi = ks->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ks->names + ks->syms[ks->by_name[mid]].name, name);
        if (c == 0) {
            /* several local symbols may share a name: take the first in address order */
            while (mid > 0 && !strcmp(ks->names + ks->syms[ks->by_name[mid - 1]].name, name))
                mid--;
            *addr = ks->syms[ks->by_name[mid]].addr;
            return HVI_OK;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return HVI_E_NOT_FOUND;
}

hvi_status lix_kallsyms_find(const struct lix_kallsyms *ks, uint64_t addr, const char **name,
                             uint64_t *off)
{
    if (!ks || !name || !off || !ks->count)
        return HVI_E_INVAL;
    if (addr < ks->syms[0].addr || addr > ks->syms[ks->count - 1].addr + (1u << 20))
        return HVI_E_NOT_FOUND;
    size_t lo = 0, hi = ks->count;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (ks->syms[mid].addr <= addr)
            lo = mid;
        else
            hi = mid;
    }
    /* prefer the last symbol at that address that is not an alias-less marker */
    *name = ks->names + ks->syms[lo].name;
    *off = addr - ks->syms[lo].addr;
    return HVI_OK;
}
