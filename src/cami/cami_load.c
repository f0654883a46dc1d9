/* hvi cami — validate and parse a CAMI buffer (1.4 layout, hvi 1.5 additions).
 *
 * Every file pointer is checked with overflow-safe arithmetic before it is read; counts are
 * bounded (CAMI_MAX_ENTRIES); the parsed form is copied into host memory owned by the handle,
 * so the caller's buffer may go away after hvi_cami_open(). */
#include <stdio.h>
#include <stdlib.h>

#include "cami/cami_priv.h"

struct arena {
    void **blocks;
    size_t n, cap;
    uint64_t budget; /* bytes the parsed form may still take: shared tables cannot amplify */
};

/* Parsed form limit: shared objects are copied per reference, so a small file could point
 * thousands of descriptors at the same big tables. */
#define CAMI_PARSE_FACTOR 32u
#define CAMI_PARSE_SLACK (16u << 20)

struct rd {
    const uint8_t *b;
    size_t len;
    struct arena *a;
    char *msg;
    size_t msg_len;
};

static hvi_status bad(struct rd *r, hvi_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static hvi_status bad(struct rd *r, hvi_status st, const char *fmt, ...)
{
    if (r->msg && r->msg_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->msg, r->msg_len, fmt, ap);
        va_end(ap);
    }
    return st;
}

static void *aalloc(struct arena *a, size_t n, size_t size)
{
    if (n == 0)
        n = 1;
    if ((uint64_t)n * size > a->budget)
        return NULL;
    a->budget -= (uint64_t)n * size;
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        void **nb = realloc(a->blocks, nc * sizeof(*nb));
        if (!nb)
            return NULL;
        a->blocks = nb;
        a->cap = nc;
    }
    void *p = calloc(n, size);
    if (p)
        a->blocks[a->n++] = p;
    return p;
}

static void arena_free(struct arena *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->blocks[i]);
    free(a->blocks);
    free(a);
}

/* [off, off + count * size) inside the buffer, count bounded. */
static bool span_ok(const struct rd *r, uint64_t off, uint64_t count, uint64_t size)
{
    if (count > CAMI_MAX_ENTRIES || off > r->len)
        return false;
    return count * size <= r->len - off;
}

#define NEED(r, off, count, size, what)                                                            \
    do {                                                                                           \
        if (!span_ok(r, off, count, size))                                                         \
            return bad(r, HVI_E_FORMAT, "%s at 0x%llx (count %llu) is outside the file", what,     \
                       (unsigned long long)(off), (unsigned long long)(count));                    \
    } while (0)

#define ALLOC(r, p, n)                                                                             \
    do {                                                                                           \
        if ((uint64_t)(n) * sizeof(*(p)) > (r)->a->budget)                                        \
            return bad(r, HVI_E_LIMIT, "tables referenced too often: parsed form over %u x the file", \
                       CAMI_PARSE_FACTOR);                                                         \
        (p) = aalloc((r)->a, (n), sizeof(*(p)));                                                   \
        if (!(p))                                                                                  \
            return HVI_E_NOMEM;                                                                    \
    } while (0)

static hvi_status read_u32s(struct rd *r, uint32_t off, uint32_t n, const uint32_t **out)
{
    uint32_t *v;
    NEED(r, off, n, 4, "u32 array");
    ALLOC(r, v, n);
    for (uint32_t i = 0; i < n; i++)
        v[i] = cami_le32(r->b + off + 4ull * i);
    *out = v;
    return HVI_OK;
}

static hvi_status read_pattern_items(struct rd *r, uint32_t off, uint32_t n, hvi_cami_pattern *p)
{
    uint16_t *v;
    NEED(r, off, n, 2, "pattern");
    if (n == 0)
        return bad(r, HVI_E_FORMAT, "empty pattern at 0x%x", off);
    uint32_t keep = n > HVI_CAMI_MAX_PATTERN ? HVI_CAMI_MAX_PATTERN : n;
    ALLOC(r, v, keep);
    /* items above 0x100 occur in real files (e.g. 0x199): they never match a byte */
    for (uint32_t i = 0; i < keep; i++)
        v[i] = cami_le16(r->b + off + 2ull * i);
    p->items = v;
    p->len = keep;
    return HVI_OK;
}

static hvi_status read_opaque(struct rd *r, uint32_t off, uint32_t n, uint32_t min,
                              const hvi_cami_opaque **out)
{
    hvi_cami_opaque *g;
    if (n < min)
        return bad(r, HVI_E_FORMAT, "structure table at 0x%x has %u groups, need %u", off, n, min);
    NEED(r, off, n, CAMI_OPAQUE_SIZE, "structure table");
    ALLOC(r, g, n);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *p = r->b + off + 8ull * i;
        g[i].count = cami_le32(p + 4);
        hvi_status st = read_u32s(r, cami_le32(p), g[i].count, &g[i].members);
        if (st != HVI_OK)
            return st;
    }
    *out = g;
    return HVI_OK;
}

static hvi_status read_prot(struct rd *r, uint32_t off, hvi_cami_prot *p)
{
    NEED(r, off, 1, CAMI_PROT_SIZE, "options block");
    const uint8_t *q = r->b + off;
    p->force_off = cami_le64(q);
    p->force_beta = cami_le64(q + 8);
    p->force_feedback = cami_le64(q + 16);
    p->force_on = cami_le64(q + 24);
    return HVI_OK;
}

static void copy_name(char *dst, size_t cap, const uint8_t *src, size_t n, bool utf16)
{
    size_t k = 0;
    for (size_t i = 0; k + 1 < cap && i < n; i += utf16 ? 2 : 1) {
        uint16_t ch = utf16 ? cami_le16(src + i) : src[i];
        if (!ch)
            break;
        dst[k++] = ch < 0x80 ? (char)ch : '?';
    }
    dst[k] = 0;
}

static hvi_status read_os_prot(struct rd *r, uint32_t off, hvi_cami_os_prot *o)
{
    hvi_status st;
    if (off == 0)
        return HVI_OK;
    NEED(r, off, 1, CAMI_OSPROT_SIZE, "protection block");
    const uint8_t *q = r->b + off;
    o->present = true;
    if ((st = read_prot(r, cami_le32(q), &o->core)) != HVI_OK)
        return st;
    if (cami_le32(q + 12) && (st = read_prot(r, cami_le32(q + 12), &o->shemu)) != HVI_OK)
        return st;
    uint32_t n = cami_le32(q + 4), t = cami_le32(q + 8);
    NEED(r, t, n, CAMI_PROCPROT_SIZE, "process options");
    hvi_cami_proc_prot *pp;
    ALLOC(r, pp, n);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = r->b + t + (uint64_t)CAMI_PROCPROT_SIZE * i;
        pp[i].encoding = cami_le32(e + 68);
        if (pp[i].encoding > 1)
            return bad(r, HVI_E_FORMAT, "process option %u: unknown encoding %u", i, pp[i].encoding);
        copy_name(pp[i].name, sizeof(pp[i].name), e, 64, pp[i].encoding == 1);
        if ((st = read_prot(r, cami_le32(e + 64), &pp[i].options)) != HVI_OK)
            return st;
    }
    o->proc_count = n;
    o->procs = pp;
    return HVI_OK;
}

static hvi_status read_str64(struct rd *r, const uint8_t *p, char *dst, const char *what)
{
    if (!memchr(p, 0, 64))
        return bad(r, HVI_E_FORMAT, "%s is not NUL-terminated within 64 bytes", what);
    memcpy(dst, p, 64);
    dst[64] = 0;
    return HVI_OK;
}

static hvi_status read_sigs(struct rd *r, uint32_t off, uint32_t n, const hvi_cami_sig **out)
{
    hvi_cami_sig *s;
    NEED(r, off, n, CAMI_SIG_SIZE, "signature table");
    ALLOC(r, s, n);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *p = r->b + off + (uint64_t)CAMI_SIG_SIZE * i;
        s[i].id = cami_le32(p);
        s[i].offset = cami_le32(p + 4);
        s[i].flags = cami_le32(p + 8);
        hvi_status st = read_pattern_items(r, cami_le32(p + 16), cami_le16(p + 14), &s[i].pattern);
        if (st != HVI_OK)
            return st;
    }
    *out = s;
    return HVI_OK;
}

static hvi_status read_lix_one(struct rd *r, const uint8_t *p, hvi_cami_lix_entry *e)
{
    hvi_status st = read_str64(r, p, e->version, "Linux version glob");
    if (st != HVI_OK)
        return st;
    e->min_intro = cami_le64(p + 64);
    e->max_intro = cami_le64(p + 72);
    e->group_count = cami_le32(p + 80);
    st = read_opaque(r, cami_le32(p + 84), e->group_count, CAMI_LIX_MIN_GROUPS, &e->groups);
    if (st != HVI_OK)
        return st;
    uint32_t nh = cami_le32(p + 88), th = cami_le32(p + 92);
    if (nh == 0 || nh > CAMI_LIX_MAX_HOOKS)
        return bad(r, HVI_E_FORMAT, "Linux entry '%s' has %u hooks (1..512)", e->version, nh);
    NEED(r, th, nh, 12, "hook table");
    hvi_cami_lix_hook *h;
    ALLOC(r, h, nh);
    for (uint32_t i = 0; i < nh; i++) {
        const uint8_t *q = r->b + th + 12ull * i;
        h[i].name_hash = cami_le32(q);
        h[i].handler = q[4];
        h[i].skip_on_boot = q[5];
    }
    e->hooks = h;
    e->hook_count = nh;
    return read_os_prot(r, cami_le32(p + 96), &e->prot);
}

static hvi_status read_lix(struct rd *r, uint32_t off, uint32_t n, const hvi_cami_lix_entry **out)
{
    hvi_cami_lix_entry *e;
    NEED(r, off, n, CAMI_LIX_SIZE, "Linux descriptor table");
    ALLOC(r, e, n);
    for (uint32_t i = 0; i < n; i++) {
        hvi_status st = read_lix_one(r, r->b + off + (uint64_t)CAMI_LIX_SIZE * i, &e[i]);
        if (st != HVI_OK)
            return st;
    }
    *out = e;
    return HVI_OK;
}

static hvi_status read_pattern(struct rd *r, const uint8_t *p, hvi_cami_pattern *pt)
{
    memcpy(pt->section, p, 8);
    pt->section[8] = 0;
    hvi_status st = read_pattern_items(r, cami_le32(p + 12), cami_le32(p + 8), pt);
    uint32_t ext = cami_le32(p + 20);
    if (st != HVI_OK || ext == 0)
        return st;
    NEED(r, ext, 1, CAMI_PATEXT_SIZE, "pattern extension");
    pt->ext_arg_count = cami_le32(r->b + ext);
    if (pt->ext_arg_count > HVI_CAMI_ARGS_MAX)
        return bad(r, HVI_E_FORMAT, "pattern extension at 0x%x has %u arguments", ext, pt->ext_arg_count);
    return read_u32s(r, cami_le32(r->b + ext + 4), pt->ext_arg_count, &pt->ext_args);
}

static hvi_status read_function(struct rd *r, const uint8_t *p, hvi_cami_win_function *f)
{
    f->name_hash = cami_le32(p);
    f->pattern_count = cami_le32(p + 4);
    uint32_t pt = cami_le32(p + 8);
    f->arg_count = cami_le32(p + 12);
    if (f->arg_count > HVI_CAMI_ARGS_MAX)
        return bad(r, HVI_E_FORMAT, "function 0x%08x has %u arguments (max 8)", f->name_hash, f->arg_count);
    hvi_status st = read_u32s(r, cami_le32(p + 16), f->arg_count, &f->args);
    if (st != HVI_OK)
        return st;
    NEED(r, pt, f->pattern_count, CAMI_PAT_SIZE, "pattern table");
    hvi_cami_pattern *pats;
    ALLOC(r, pats, f->pattern_count);
    for (uint32_t i = 0; i < f->pattern_count; i++)
        if ((st = read_pattern(r, r->b + pt + (uint64_t)CAMI_PAT_SIZE * i, &pats[i])) != HVI_OK)
            return st;
    f->patterns = pats;
    return HVI_OK;
}

static hvi_status read_winver(struct rd *r, uint32_t off, hvi_cami_win_entry *e)
{
    NEED(r, off, 1, CAMI_WINVER_SIZE, "Windows version string");
    const uint8_t *p = r->b + off;
    uint64_t n1 = cami_le64(p), n2 = cami_le64(p + 72);
    if (n1 < 1 || n1 > 64 || n2 < 1 || n2 > 64 || p[8 + n1 - 1] || p[80 + n2 - 1])
        return bad(r, HVI_E_FORMAT, "Windows %u: bad version string sizes", e->build);
    memcpy(e->version_string, p + 8, n1);
    memcpy(e->server_version_string, p + 80, n2);
    return HVI_OK;
}

static hvi_status read_win_one(struct rd *r, const uint8_t *p, hvi_cami_win_entry *e)
{
    e->build = cami_le32(p);
    e->kpti = p[4] != 0;
    e->is64 = p[5] != 0;
    e->min_intro = cami_le64(p + 8);
    e->max_intro = cami_le64(p + 16);
    e->km_count = cami_le32(p + 24);
    e->um_count = cami_le32(p + 32);
    hvi_status st = read_opaque(r, cami_le32(p + 28), e->km_count, CAMI_WIN_MIN_KM, &e->km);
    if (st == HVI_OK)
        st = read_opaque(r, cami_le32(p + 36), e->um_count, CAMI_WIN_MIN_UM, &e->um);
    if (st != HVI_OK)
        return st;
    e->function_count = cami_le32(p + 40);
    uint32_t ft = cami_le32(p + 44);
    NEED(r, ft, e->function_count, CAMI_FUNC_SIZE, "function table");
    hvi_cami_win_function *f;
    ALLOC(r, f, e->function_count);
    for (uint32_t i = 0; i < e->function_count; i++)
        if ((st = read_function(r, r->b + ft + (uint64_t)CAMI_FUNC_SIZE * i, &f[i])) != HVI_OK)
            return st;
    e->functions = f;
    if ((st = read_os_prot(r, cami_le32(p + 48), &e->prot)) != HVI_OK)
        return st;
    return read_winver(r, cami_le32(p + 52), e);
}

static hvi_status read_win(struct rd *r, uint32_t off, uint32_t n, const hvi_cami_win_entry **out)
{
    hvi_cami_win_entry *e;
    NEED(r, off, n, CAMI_WIN_SIZE, "Windows descriptor table");
    ALLOC(r, e, n);
    for (uint32_t i = 0; i < n; i++) {
        hvi_status st = read_win_one(r, r->b + off + (uint64_t)CAMI_WIN_SIZE * i, &e[i]);
        if (st != HVI_OK)
            return st;
        if (i && e[i].build < e[i - 1].build)
            return bad(r, HVI_E_FORMAT, "Windows entries are not sorted by build (%u after %u)",
                       e[i].build, e[i - 1].build);
    }
    *out = e;
    return HVI_OK;
}

static hvi_status check_integrity(struct rd *r, uint32_t off, uint32_t n, bool *ok)
{
    NEED(r, off, 1, CAMI_INTEGRITY_SIZE, "integrity block");
    const uint8_t *p = r->b + off;
    if (n != 1 || cami_le32(p) != CAMI_CHECKSUM_CRC32 || cami_le32(p + 8) != r->len)
        return bad(r, HVI_E_FORMAT, "integrity block at 0x%x is malformed", off);
    uint32_t want = cami_le32(p + 4), got = cami_checksum(r->b, r->len, (size_t)off + 4);
    if (want != got)
        return bad(r, HVI_E_INTEGRITY, "checksum mismatch: file says 0x%08x, content is 0x%08x", want, got);
    *ok = true;
    return HVI_OK;
}

struct sect {
    uint32_t hint, count, table;
    uint64_t size;
};

static hvi_status check_sections(struct rd *r, const struct sect *s, uint32_t n, uint64_t hdr_end)
{
    for (uint32_t i = 0; i < n; i++) {
        uint64_t a = s[i].table, ae = a + s[i].size;
        if (s[i].count && a < hdr_end)
            return bad(r, HVI_E_FORMAT, "section %u table at 0x%x overlaps the headers", i, s[i].table);
        for (uint32_t j = 0; j < i; j++) {
            uint64_t b = s[j].table, be = b + s[j].size;
            if (s[i].count && s[j].count && a < be && b < ae)
                return bad(r, HVI_E_FORMAT, "section tables %u and %u overlap", j, i);
        }
    }
    return HVI_OK;
}

static uint64_t entry_size(uint32_t hint)
{
    if (hint & HVI_CAMI_HINT_INTEGRITY)
        return CAMI_INTEGRITY_SIZE;
    if (hint & (HVI_CAMI_HINT_SYSCALLS | HVI_CAMI_HINT_DIST_SIG))
        return CAMI_SIG_SIZE;
    if (hint & HVI_CAMI_HINT_SUPPORTED_OS)
        return (hint & HVI_CAMI_HINT_LINUX) ? CAMI_LIX_SIZE : CAMI_WIN_SIZE;
    return 0;
}

static hvi_status read_section(struct rd *r, hvi_cami *c, const struct sect *s, bool *sum_ok)
{
    uint32_t h = s->hint;
    if (h & HVI_CAMI_HINT_INTEGRITY)
        return check_integrity(r, s->table, s->count, sum_ok);
    if (h == HVI_CAMI_HINT_SYSCALLS && !c->syscalls) {
        c->syscall_count = s->count;
        return read_sigs(r, s->table, s->count, &c->syscalls);
    }
    if (h == (HVI_CAMI_HINT_DIST_SIG | HVI_CAMI_HINT_LINUX) && !c->dists) {
        c->dist_count = s->count;
        return read_sigs(r, s->table, s->count, &c->dists);
    }
    if (h == (HVI_CAMI_HINT_SUPPORTED_OS | HVI_CAMI_HINT_LINUX) && !c->lix) {
        c->lix_count = s->count;
        return read_lix(r, s->table, s->count, &c->lix);
    }
    if (h == (HVI_CAMI_HINT_SUPPORTED_OS | HVI_CAMI_HINT_WINDOWS) && !c->win) {
        c->win_count = s->count;
        return read_win(r, s->table, s->count, &c->win);
    }
    return HVI_OK; /* unknown or repeated section: ignored, as a 1.4 reader would */
}

static hvi_status parse(struct rd *r, hvi_cami *c)
{
    if (r->len < CAMI_HEADER_SIZE)
        return bad(r, HVI_E_FORMAT, "%zu bytes is shorter than the 28-byte header", r->len);
    if (cami_le32(r->b) != HVI_CAMI_MAGIC)
        return bad(r, HVI_E_FORMAT, "bad magic 0x%08x", cami_le32(r->b));
    c->minor = cami_le32(r->b + 4);
    c->major = cami_le32(r->b + 8);
    c->build = cami_le32(r->b + 12);
    if (c->major != HVI_CAMI_MAJOR || c->minor < HVI_CAMI_MIN_MINOR)
        return bad(r, HVI_E_VERSION, "version %u.%u is not supported (need 1.4 or later 1.x)", c->major, c->minor);
    if (cami_le32(r->b + 16) != r->len)
        return bad(r, HVI_E_FORMAT, "header size %u != buffer size %zu", cami_le32(r->b + 16), r->len);
    uint32_t ns = cami_le32(r->b + 20), so = cami_le32(r->b + 24);
    NEED(r, so, ns, CAMI_SECTION_SIZE, "section header table");
    if (ns > 64 || so < CAMI_HEADER_SIZE)
        return bad(r, HVI_E_FORMAT, "section header table (%u at 0x%x) is invalid", ns, so);
    struct sect s[64];
    for (uint32_t i = 0; i < ns; i++) {
        const uint8_t *p = r->b + so + 16ull * i;
        s[i].hint = cami_le32(p);
        s[i].count = cami_le32(p + 4);
        s[i].table = cami_le32(p + 12);
        s[i].size = entry_size(s[i].hint) * s[i].count;
        NEED(r, s[i].table, s[i].count, entry_size(s[i].hint) ? entry_size(s[i].hint) : 1, "section");
    }
    hvi_status st = check_sections(r, s, ns, (uint64_t)so + 16ull * ns);
    bool sum_ok = false;
    for (uint32_t i = 0; st == HVI_OK && i < ns; i++)
        st = read_section(r, c, &s[i], &sum_ok);
    if (st == HVI_OK && c->minor >= HVI_CAMI_WRITE_MINOR && !sum_ok)
        return bad(r, HVI_E_INTEGRITY, "a 1.%u file must carry an integrity section", c->minor);
    c->checksummed = sum_ok;
    return st;
}

hvi_status hvi_cami_open(const void *buf, size_t len, hvi_cami **out, char *msg, size_t msg_len)
{
    if (msg && msg_len)
        msg[0] = 0;
    if (!buf || !out || len > UINT32_MAX)
        return HVI_E_INVAL;
    struct arena *a = calloc(1, sizeof(*a));
    if (a)
        a->budget = (uint64_t)len * CAMI_PARSE_FACTOR + CAMI_PARSE_SLACK;
    hvi_cami *c = a ? aalloc(a, 1, sizeof(*c)) : NULL;
    if (!c) {
        if (a)
            arena_free(a);
        return HVI_E_NOMEM;
    }
    struct rd r = {buf, len, a, msg, msg_len};
    hvi_status st = parse(&r, c);
    if (st != HVI_OK) {
        arena_free(a);
        return st;
    }
    c->priv_ = a;
    *out = c;
    return HVI_OK;
}

void hvi_cami_close(hvi_cami *c)
{
    if (c)
        arena_free(c->priv_);
}
