/* hvi guest/linux — kallsyms tables (6.1 layout) found by validated scanning of the image copy.
 *
 * The kernel's scripts/kallsyms emits, each label 8-byte aligned, in this order:
 * kallsyms_num_syms (u32), kallsyms_names (length-prefixed token strings), kallsyms_markers
 * (u32 offset into names every 256 symbols), kallsyms_token_table (256 NUL-terminated
 * strings), kallsyms_token_index (u16[256]); kallsyms_offsets (s32[num]) and
 * kallsyms_relative_base (u64) sit either just before num_syms or after token_index. No symbol
 * is known yet, so each table is recognised by its structure and cross-checked with the
 * others (docs/linux-guest.md).
 *
 * Parsing keeps a host copy of the tables only (about 2 MB for 94 000 symbols) and decodes
 * nothing: a name lookup is a binary search through kallsyms_seqs_of_names (the symbol indexes
 * in name order, 6.1 stable and later) decoding ~17 names, or, without that table, one stream
 * over the compressed names that stops at the match. The full table (every name, by address)
 * is decoded on the first address -> symbol query. */
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
    size_t seqs; /* kallsyms_seqs_of_names, or SIZE_MAX when the kernel has none */
    uint32_t count;
    uint64_t base_lo, base_hi; /* kallsyms_relative_base must lie in the image: [lo, hi) */
    uint8_t *own;              /* img when it is a malloc'd buffer the tables may take over */
};

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32);
}

static bool index_plausible(const uint8_t *p)
{
    if (rd16(p) != 0)
        return false;
    for (size_t i = 1; i < 256; i++) {
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
    for (size_t i = 0; i < 256; i++) {
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
        if (rd16(s->img + p) != 0 || rd16(s->img + p + 2) < 2 ||
            rd16(s->img + p + 2) > KS_MAX_TOKEN)
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
    if (s->markers - names <= last || s->markers - names - last > (size_t)256 * (KS_NAME_MAX + 2))
        return false;
    /* after the markers: the token table, or kallsyms_seqs_of_names (3 bytes per symbol) */
    size_t end = (s->markers + 4 * n + 7) & ~(size_t)7;
    size_t seqs = ((size_t)v * 3 + 7) & ~(size_t)7;
    if (end != s->tok_table && end + seqs != s->tok_table)
        return false;
    s->nmarkers = n;
    s->seqs = end == s->tok_table ? SIZE_MAX : end;
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

#define KS_DUP_MAX 256u         /* symbols sharing one name, followed in seqs_of_names */
#define KS_TEXT_MAX (64u << 20) /* decoded names of the full table */
#define KS_MANY_MAX 16u         /* names resolved by one stream */

/* The host copy of the tables (offsets below are into blob) and what was decoded from it. */
struct lix_ks_data {
    uint8_t *blob;
    uint8_t *own; /* the buffer blob lies in when it was taken over, else NULL */
    size_t len;
    size_t offsets, names, names_end, markers, seqs, tok_table;
    uint32_t nmarkers;
    bool abs_percpu;
    uint16_t tok_off[256]; /* token t: blob + tok_table + tok_off[t], tok_len[t] bytes */
    uint8_t tok_len[256];
    /* the full table, decoded on first need */
    struct lix_sym *syms;
    char *text;        /* "Tname\0" per symbol; lix_sym.name points after the type */
    uint32_t *by_name; /* without seqs_of_names: indexes sorted by name, then index */
    uint32_t streams;  /* streaming lookups done */
};

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

/* Try both placements of offsets/relative_base and both address encodings. *offs and *base
 * receive the image offsets of the tables. */
static bool find_offsets(struct ks_scan *s, struct lix_kallsyms *ks, bool *abs_percpu, size_t *offs,
                         size_t *basep)
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
        if (base < s->base_lo || base >= s->base_hi)
            continue;
        for (int mode = 1; mode >= 0; mode--) {
            if (addrs_sorted(s, cand_off[c], base, mode)) {
                ks->offsets_va = s->va + cand_off[c];
                ks->relative_base_va = s->va + cand_base[c];
                ks->relative_base = base;
                *abs_percpu = mode;
                *offs = cand_off[c];
                *basep = cand_base[c];
                return true;
            }
        }
    }
    return false;
}

/* ---- decoding from the host copy ------------------------------------------------------------ */

/* The token count of the entry at *p (one byte, or two when bit 7 is set: the 6.1 "big symbol"
 * encoding); moves *p past the count. False when the count or its tokens leave the names. */
static bool entry_header(const struct lix_ks_data *d, size_t *p, size_t *len)
{
    if (*p >= d->names_end)
        return false;
    size_t l = d->blob[(*p)++];
    if (l & 0x80) {
        if (*p >= d->names_end)
            return false;
        l = (l & 0x7f) | ((size_t)d->blob[(*p)++] << 7);
    }
    if (l > d->names_end - *p)
        return false;
    *len = l;
    return true;
}

/* Expand the entry at blob offset *pos into out[KS_NAME_MAX + 1] (type character first,
 * truncated at KS_NAME_MAX bytes, NUL-terminated) and move *pos past it. The entries were
 * walked by names_check(); the bounds are checked again all the same. */
static bool expand(const struct lix_ks_data *d, size_t *pos, char *out, size_t *outlen)
{
    size_t p = *pos, l;
    if (!entry_header(d, &p, &l))
        return false;
    size_t n = 0;
    for (size_t i = 0; i < l; i++) {
        uint8_t t = d->blob[p + i];
        size_t tl = d->tok_len[t];
        if (tl > KS_NAME_MAX - n)
            tl = KS_NAME_MAX - n;
        memcpy(out + n, d->blob + d->tok_table + d->tok_off[t], tl);
        n += tl;
    }
    out[n] = 0;
    *pos = p + l;
    *outlen = n;
    return true;
}

/* Expanded length of the entry at *pos without writing it; moves *pos past it. */
static bool entry_len(const struct lix_ks_data *d, size_t *pos, size_t *outlen)
{
    size_t p = *pos, l;
    if (!entry_header(d, &p, &l))
        return false;
    size_t n = 0;
    for (size_t i = 0; i < l; i++)
        n += d->tok_len[d->blob[p + i]];
    *pos = p + l;
    *outlen = n < KS_NAME_MAX ? n : KS_NAME_MAX;
    return true;
}

/* Move *pos past the entry there (its length prefix only). */
static bool skip_entry(const struct lix_ks_data *d, size_t *pos)
{
    size_t p = *pos, l;
    if (!entry_header(d, &p, &l))
        return false;
    *pos = p + l;
    return true;
}

/* Name of symbol i (type character first) through the markers: at most 255 entries skipped. */
static bool name_of(const struct lix_ks_data *d, uint32_t i, char *out)
{
    if ((i >> 8) >= d->nmarkers)
        return false;
    size_t pos = d->names + rd32(d->blob + d->markers + 4 * (size_t)(i >> 8)), n = 0;
    for (uint32_t k = 0; k < (i & 255); k++)
        if (!skip_entry(d, &pos))
            return false;
    return expand(d, &pos, out, &n);
}

static uint32_t seq_at(const struct lix_ks_data *d, uint32_t k)
{
    const uint8_t *p = d->blob + d->seqs + 3 * (size_t)k;
    return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

/* strcmp(name of symbol i without its type, name); 2 when the entry does not decode. */
static int cmp_sym(const struct lix_ks_data *d, uint32_t i, const char *name)
{
    char buf[KS_NAME_MAX + 1];
    if (!name_of(d, i, buf))
        return 2;
    int c = strcmp(buf + 1, name);
    return c < 0 ? -1 : c > 0;
}

/* seqs_of_names must be a permutation of the symbols, and a sample of neighbours must be in
 * name order; otherwise it is ignored (name lookups then stream). */
static bool seqs_usable(const struct lix_ks_data *d, uint32_t count)
{
    uint8_t *seen = calloc((count + 7) / 8, 1);
    if (!seen)
        return false;
    bool ok = true;
    for (uint32_t k = 0; k < count && ok; k++) {
        uint32_t v = seq_at(d, k);
        ok = v < count && !(seen[v / 8] & (1u << (v % 8)));
        if (ok)
            seen[v / 8] |= (uint8_t)(1u << (v % 8));
    }
    free(seen);
    char a[KS_NAME_MAX + 1], b[KS_NAME_MAX + 1];
    for (uint32_t j = 0; ok && count > 1 && j < 64; j++) {
        uint32_t k = (uint32_t)((uint64_t)j * (count - 1) / 64);
        ok = name_of(d, seq_at(d, k), a) && name_of(d, seq_at(d, k + 1), b) &&
             strcmp(a + 1, b + 1) <= 0;
    }
    return ok;
}

/* Lowest symbol index named `name` through seqs_of_names: HVI_E_LIMIT when the run of equal
 * names is longer than KS_DUP_MAX (the caller then streams). */
static hvi_status seqs_lookup(const struct lix_ks_data *d, uint32_t count, const char *name,
                              uint32_t *idx)
{
    uint32_t lo = 0, hi = count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (cmp_sym(d, seq_at(d, mid), name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint32_t best = UINT32_MAX, k = lo;
    for (; k < count && k - lo < KS_DUP_MAX && cmp_sym(d, seq_at(d, k), name) == 0; k++)
        if (seq_at(d, k) < best)
            best = seq_at(d, k);
    if (k - lo == KS_DUP_MAX)
        return HVI_E_LIMIT;
    if (best == UINT32_MAX)
        return HVI_E_NOT_FOUND;
    *idx = best;
    return HVI_OK;
}

/* One pass over the compressed names resolving names[0..n) to their lowest index (UINT32_MAX
 * when absent); stops once all are found. An entry is expanded only when its length fits. */
static void stream_lookup(const struct lix_ks_data *d, uint32_t count, const char *const *names,
                          size_t n, uint32_t *idx)
{
    size_t len[KS_MANY_MAX], left = 0;
    for (size_t j = 0; j < n; j++) {
        idx[j] = UINT32_MAX;
        len[j] = strlen(names[j]) + 1; /* with the type character */
        left += len[j] <= KS_NAME_MAX;
    }
    size_t pos = d->names;
    char buf[KS_NAME_MAX + 1];
    for (uint32_t i = 0; i < count && left; i++) {
        size_t at = pos, l = 0;
        if (!entry_len(d, &pos, &l))
            return;
        bool fits = false;
        for (size_t j = 0; j < n && !fits; j++)
            fits = idx[j] == UINT32_MAX && len[j] == l;
        if (!fits || !expand(d, &at, buf, &l))
            continue;
        for (size_t j = 0; j < n; j++) {
            if (idx[j] == UINT32_MAX && len[j] == l && !strcmp(buf + 1, names[j])) {
                idx[j] = i;
                left--;
            }
        }
    }
}

/* Decode every name into the full table (by address, as the kernel keeps them). */
static hvi_status build_table(const struct lix_kallsyms *ks)
{
    struct lix_ks_data *d = ks->d;
    if (d->syms)
        return HVI_OK;
    size_t cap = (d->names_end - d->names) * 3 + KS_NAME_MAX + 1, out = 0;
    struct lix_sym *syms = calloc(ks->count, sizeof(*syms));
    char *text = malloc(cap);
    hvi_status st = syms && text ? HVI_OK : HVI_E_NOMEM;
    size_t pos = d->names;
    const uint8_t *offs = d->blob + d->offsets;
    for (uint32_t i = 0; i < ks->count && st == HVI_OK; i++) {
        if (cap - out < KS_NAME_MAX + 1) {
            char *t = cap * 2 <= KS_TEXT_MAX ? realloc(text, cap * 2) : NULL;
            if (!t) {
                st = cap * 2 <= KS_TEXT_MAX ? HVI_E_NOMEM : HVI_E_LIMIT;
                break;
            }
            text = t, cap *= 2;
        }
        size_t n = 0;
        if (!expand(d, &pos, text + out, &n) || n == 0) {
            st = HVI_E_FORMAT;
            break;
        }
        syms[i].type = text[out];
        syms[i].name = (uint32_t)out + 1;
        syms[i].addr = sym_addr(offs, i, ks->relative_base, d->abs_percpu);
        out += n + 1;
    }
    if (st != HVI_OK) {
        free(syms), free(text);
        return st;
    }
    d->syms = syms, d->text = text;
    return HVI_OK;
}

static const struct lix_ks_data *g_sort_d; /* qsort has no context argument in C11 */

static int cmp_name(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    const struct lix_ks_data *d = g_sort_d;
    int c = strcmp(d->text + d->syms[x].name, d->text + d->syms[y].name);
    return c ? c : (x > y) - (x < y);
}

static hvi_status build_by_name(const struct lix_kallsyms *ks)
{
    struct lix_ks_data *d = ks->d;
    hvi_status st = build_table(ks);
    if (st != HVI_OK || d->by_name)
        return st;
    uint32_t *ix = malloc(sizeof(uint32_t) * ks->count);
    if (!ix)
        return HVI_E_NOMEM;
    for (uint32_t i = 0; i < ks->count; i++)
        ix[i] = i;
    g_sort_d = d;
    qsort(ix, ks->count, sizeof(uint32_t), cmp_name);
    g_sort_d = NULL;
    d->by_name = ix;
    return HVI_OK;
}

/* Lowest index named `name` in the by-name index (sorted by name, then index). */
static hvi_status by_name_lookup(const struct lix_ks_data *d, uint32_t count, const char *name,
                                 uint32_t *idx)
{
    size_t lo = 0, hi = count;
    if (!d->by_name || !d->syms)
        return HVI_E_STATE;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(d->text + d->syms[d->by_name[mid]].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == count || strcmp(d->text + d->syms[d->by_name[lo]].name, name) != 0)
        return HVI_E_NOT_FOUND;
    *idx = d->by_name[lo];
    return HVI_OK;
}

/* ---- public ---------------------------------------------------------------------------------- */

bool lix_kallsyms_index_hint(const uint8_t *p)
{
    for (unsigned i = 1; i < 16; i++) {
        unsigned a = rd16(p + 2 * (size_t)(i - 1)), b = rd16(p + 2 * (size_t)i);
        if (b <= a || b - a < 2 || b - a > KS_MAX_TOKEN)
            return false;
    }
    return rd16(p) <= 255 * KS_MAX_TOKEN;
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

/* Keep a host copy of the tables [lo, hi) and set up decoding from it. */
static hvi_status keep_tables(struct lix_kallsyms *ks, const struct ks_scan *s, size_t offs,
                              size_t base, bool abs_percpu)
{
    size_t lo = offs < s->num_syms ? offs : s->num_syms;
    size_t hi = s->tok_index + 512, oend = offs + 4 * (size_t)s->count;
    if (base < lo)
        lo = base;
    if (oend > hi)
        hi = oend;
    if (base + 8 > hi)
        hi = base + 8;
    struct lix_ks_data *d = calloc(1, sizeof(*d));
    if (!d || (!s->own && !(d->blob = malloc(hi - lo)))) {
        free(d);
        return HVI_E_NOMEM;
    }
    for (unsigned t = 0; t < 256; t++) { /* table_matches() checked each: 1..64 bytes, ended */
        d->tok_off[t] = rd16(s->img + s->tok_index + 2 * (size_t)t);
        d->tok_len[t] = (uint8_t)strlen((const char *)s->img + s->tok_table + d->tok_off[t]);
    }
    if (s->own) { /* the caller's buffer, as it is: moving 2 MB costs more than the slack */
        d->own = s->own;
        d->blob = s->own + lo;
    } else {
        memcpy(d->blob, s->img + lo, hi - lo);
    }
    d->len = hi - lo;
    d->offsets = offs - lo;
    d->names = s->names - lo;
    d->markers = s->markers - lo;
    d->names_end = d->markers;
    d->nmarkers = (uint32_t)s->nmarkers;
    d->tok_table = s->tok_table - lo;
    d->seqs = s->seqs == SIZE_MAX ? SIZE_MAX : s->seqs - lo;
    d->abs_percpu = abs_percpu;
    ks->d = d;
    ks->count = s->count;
    if (d->seqs != SIZE_MAX && !seqs_usable(d, s->count))
        d->seqs = SIZE_MAX;
    ks->seqs_va = d->seqs == SIZE_MAX ? 0 : s->va + s->seqs;
    return HVI_OK;
}

static hvi_status parse(struct lix_kallsyms *ks, struct ks_scan *s, size_t from, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    if (!ks || !s->img || s->len < 4096) {
        *why = "no image to scan";
        return HVI_E_INVAL;
    }
    memset(ks, 0, sizeof(*ks));
    bool abs_percpu = true;
    size_t offs = 0, base = 0;
    if (!find_tokens(s, from) && (from == 0 || !find_tokens(s, 0))) {
        *why = "kallsyms_token_table/kallsyms_token_index not found";
        return HVI_E_NOT_FOUND;
    }
    if (!find_names(s)) {
        *why = "kallsyms_markers/kallsyms_num_syms/kallsyms_names not found or inconsistent";
        return HVI_E_NOT_FOUND;
    }
    if (!find_offsets(s, ks, &abs_percpu, &offs, &base)) {
        *why = "kallsyms_offsets/kallsyms_relative_base not found or not sorted";
        return HVI_E_NOT_FOUND;
    }
    ks->num_syms_va = s->va + s->num_syms;
    ks->names_va = s->va + s->names;
    ks->markers_va = s->va + s->markers;
    ks->token_table_va = s->va + s->tok_table;
    ks->token_index_va = s->va + s->tok_index;
    hvi_status st = keep_tables(ks, s, offs, base, abs_percpu);
    if (st != HVI_OK) {
        *why = "out of memory for the kallsyms tables";
        lix_kallsyms_free(ks);
    }
    return st;
}

hvi_status lix_kallsyms_parse_at(struct lix_kallsyms *ks, const uint8_t *image, size_t len,
                                 uint64_t image_va, size_t from, const char **why)
{
    struct ks_scan s = {
        .img = image, .len = len, .va = image_va, .base_lo = image_va, .base_hi = image_va + len};
    return parse(ks, &s, from, why);
}

hvi_status lix_kallsyms_parse_window(struct lix_kallsyms *ks, uint8_t **win, size_t len,
                                     uint64_t win_va, size_t from, uint64_t image_va,
                                     uint64_t image_len, const char **why)
{
    struct ks_scan s = {.img = win ? *win : NULL,
                        .len = len,
                        .va = win_va,
                        .base_lo = image_va,
                        .base_hi = image_va + image_len,
                        .own = win ? *win : NULL};
    hvi_status st = parse(ks, &s, from, why);
    if (st == HVI_OK)
        *win = NULL; /* taken over by the tables */
    return st;
}

void lix_kallsyms_free(struct lix_kallsyms *ks)
{
    if (!ks)
        return;
    if (ks->d) {
        free(ks->d->own ? ks->d->own : ks->d->blob);
        free(ks->d->syms);
        free(ks->d->text);
        free(ks->d->by_name);
        free(ks->d);
    }
    memset(ks, 0, sizeof(*ks));
}

/* The names no index answered (rest[0..n), for names[where[r]]): one stream while few lookups
 * were made, else through the by-name index (built now). */
static hvi_status lookup_rest(const struct lix_kallsyms *ks, const char *const *rest,
                              const size_t *where, size_t n, uint32_t *idx, bool *found)
{
    struct lix_ks_data *d = ks->d;
    if (!d->by_name && d->streams < LIX_LINEAR_LOOKUPS) {
        /* a few streams (discovery) are cheaper than decoding and sorting every name */
        uint32_t got[KS_MANY_MAX];
        d->streams++;
        stream_lookup(d, ks->count, rest, n, got);
        for (size_t r = 0; r < n; r++)
            if ((found[where[r]] = got[r] != UINT32_MAX))
                idx[where[r]] = got[r];
        return HVI_OK;
    }
    hvi_status st = build_by_name(ks);
    for (size_t r = 0; r < n && st == HVI_OK; r++)
        found[where[r]] = by_name_lookup(d, ks->count, rest[r], &idx[where[r]]) == HVI_OK;
    return st;
}

hvi_status lix_kallsyms_lookup_many(const struct lix_kallsyms *ks, const char *const *names,
                                    size_t n, uint64_t *addrs, bool *found)
{
    if (!ks || !ks->d || !ks->count || !names || !addrs || !found || n > KS_MANY_MAX)
        return HVI_E_INVAL;
    struct lix_ks_data *d = ks->d;
    const char *rest[KS_MANY_MAX];
    size_t where[KS_MANY_MAX], nrest = 0;
    uint32_t idx[KS_MANY_MAX];
    for (size_t j = 0; j < n; j++) {
        found[j] = false;
        if (!names[j])
            return HVI_E_INVAL;
        hvi_status st = HVI_E_LIMIT;
        if (d->seqs != SIZE_MAX)
            st = seqs_lookup(d, ks->count, names[j], &idx[j]);
        else if (d->by_name)
            st = by_name_lookup(d, ks->count, names[j], &idx[j]);
        if (st == HVI_E_LIMIT) {
            rest[nrest] = names[j];
            where[nrest++] = j;
        } else {
            found[j] = st == HVI_OK;
        }
    }
    hvi_status st = nrest ? lookup_rest(ks, rest, where, nrest, idx, found) : HVI_OK;
    if (st != HVI_OK)
        return st;
    const uint8_t *offs = d->blob + d->offsets;
    for (size_t j = 0; j < n; j++)
        addrs[j] = found[j] ? sym_addr(offs, idx[j], ks->relative_base, d->abs_percpu) : 0;
    return HVI_OK;
}

hvi_status lix_kallsyms_lookup(struct lix_kallsyms *ks, const char *name, uint64_t *addr)
{
    if (!ks || !name || !addr || !ks->count || !ks->d)
        return HVI_E_INVAL;
    bool found = false;
    uint64_t a = 0;
    hvi_status st = lix_kallsyms_lookup_many(ks, &name, 1, &a, &found);
    if (st != HVI_OK)
        return st;
    if (!found)
        return HVI_E_NOT_FOUND;
    *addr = a;
    return HVI_OK;
}

hvi_status lix_kallsyms_table(const struct lix_kallsyms *ks, const struct lix_sym **syms,
                              const char **names)
{
    if (!ks || !ks->d || !ks->count || !syms || !names)
        return HVI_E_INVAL;
    hvi_status st = build_table(ks);
    if (st != HVI_OK)
        return st;
    *syms = ks->d->syms;
    *names = ks->d->text;
    return HVI_OK;
}

bool lix_kallsyms_decoded(const struct lix_kallsyms *ks)
{
    return ks && ks->d && ks->d->syms;
}

hvi_status lix_kallsyms_find(const struct lix_kallsyms *ks, uint64_t addr, const char **name,
                             uint64_t *off)
{
    const struct lix_sym *syms = NULL;
    const char *text = NULL;
    if (!name || !off)
        return HVI_E_INVAL;
    hvi_status st = lix_kallsyms_table(ks, &syms, &text);
    if (st != HVI_OK)
        return st;
    if (addr < syms[0].addr || addr > syms[ks->count - 1].addr + (1u << 20))
        return HVI_E_NOT_FOUND;
    size_t lo = 0, hi = ks->count;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (syms[mid].addr <= addr)
            lo = mid;
        else
            hi = mid;
    }
    *name = text + syms[lo].name;
    *off = addr - syms[lo].addr;
    return HVI_OK;
}
