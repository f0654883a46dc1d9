/* hvi cami — lookups: the Linux version glob, entry selection, O(1) fields, signatures. */
#include <stdlib.h>

#include "cami/cami_priv.h"
#include "cami/cami_tables.h"

#define GLOB_MAX 256u

/* Parse an unsigned decimal at *s; false on no digit or overflow past 64 bits (the digits are
 * consumed either way). */
static bool parse_num(const char **s, uint64_t *v)
{
    bool ok = true, any = false;
    uint64_t x = 0;
    while (**s >= '0' && **s <= '9') {
        unsigned d = (unsigned)(**s - '0');
        if (x > (UINT64_MAX - d) / 10)
            ok = false;
        else
            x = x * 10 + d;
        any = true;
        (*s)++;
    }
    *v = x;
    return ok && any;
}

/* "[a-b]" / "[!a-b]" at p (after '['): match the number at *s. Returns pattern position after
 * ']' or NULL when the class is malformed or does not match. */
static const char *match_range(const char *p, const char **s)
{
    bool neg = *p == '!';
    if (neg)
        p++;
    uint64_t lo = 0, hi = UINT64_MAX, v;
    if (*p != '-' && !parse_num(&p, &lo))
        return NULL;
    if (*p == '-') {
        p++;
        if (*p != ']' && !parse_num(&p, &hi))
            return NULL;
    } else {
        hi = lo;
    }
    if (*p != ']')
        return NULL;
    const char *t = *s;
    if (!(*t >= '0' && *t <= '9'))
        return NULL;
    bool fits = parse_num(&t, &v);
    bool in = fits && v >= lo && v <= hi;
    if (in == neg)
        return NULL;
    *s = t;
    return p + 1;
}

/* memo: one bit per (pattern pos, string pos) already known to fail after a '*'. */
struct glob_ctx {
    const char *p0, *s0;
    uint8_t *seen;
    size_t slen;
};

static bool glob_at(struct glob_ctx *g, const char *p, const char *s)
{
    while (*p) {
        if (*p == '*') {
            while (*p == '*')
                p++;
            if (!*p)
                return true;
            for (const char *t = s;; t++) {
                size_t bit = (size_t)(p - g->p0) * (g->slen + 1) + (size_t)(t - g->s0);
                if (!(g->seen[bit / 8] & (1u << (bit % 8)))) {
                    if (glob_at(g, p, t))
                        return true;
                    g->seen[bit / 8] |= (uint8_t)(1u << (bit % 8));
                }
                if (!*t)
                    return false;
            }
        }
        if (*p == '[') {
            p = match_range(p + 1, &s);
            if (!p)
                return false;
            continue;
        }
        if (!*s)
            return false;
        if (*p == '?') {
            p++;
            s++;
            continue;
        }
        if (*p == '\\' && p[1])
            p++;
        if (*p++ != *s++)
            return false;
    }
    return *s == 0;
}

bool hvi_cami_glob_match(const char *pattern, const char *str)
{
    if (!pattern || !str)
        return false;
    size_t pl = strnlen(pattern, GLOB_MAX + 1), sl = strnlen(str, GLOB_MAX + 1);
    if (pl > GLOB_MAX || sl > GLOB_MAX)
        return false;
    uint8_t seen[(GLOB_MAX + 1) * (GLOB_MAX + 1) / 8 + 1];
    memset(seen, 0, ((pl + 1) * (sl + 1)) / 8 + 1);
    struct glob_ctx g = {pattern, str, seen, sl};
    return glob_at(&g, pattern, str);
}

hvi_status hvi_cami_lix_select(const hvi_cami *c, const char *version, const hvi_cami_lix_entry **out)
{
    if (!c || !version || !out)
        return HVI_E_INVAL;
    for (uint32_t i = 0; i < c->lix_count; i++)
        if (hvi_cami_glob_match(c->lix[i].version, version)) {
            *out = &c->lix[i];
            return HVI_OK;
        }
    return HVI_E_NOT_FOUND;
}

static hvi_status field_of(const hvi_cami_opaque *g, uint32_t gcount, unsigned kind, unsigned group,
                           unsigned field, uint32_t *out)
{
    if (!g || !out || group >= cami_groups(kind) || field >= cami_fields(kind, group))
        return HVI_E_INVAL;
    *out = (group < gcount && field < g[group].count) ? g[group].members[field] : 0;
    return HVI_OK;
}

hvi_status hvi_cami_lix_field(const hvi_cami_lix_entry *e, unsigned group, unsigned field, uint32_t *out)
{
    if (!e)
        return HVI_E_INVAL;
    return field_of(e->groups, e->group_count, CAMI_KIND_LIX, group, field, out);
}

hvi_status hvi_cami_lix_field_by_name(const hvi_cami_lix_entry *e, const char *group, const char *field,
                                      uint32_t *out)
{
    if (!e || !group || !field || !out)
        return HVI_E_INVAL;
    int g = cami_find_group(CAMI_KIND_LIX, group);
    int f = g < 0 ? -1 : cami_find_field(CAMI_KIND_LIX, (unsigned)g, field);
    if (f < 0)
        return HVI_E_NOT_FOUND;
    return hvi_cami_lix_field(e, (unsigned)g, (unsigned)f, out);
}

hvi_status hvi_cami_win_select(const hvi_cami *c, uint32_t build, bool kpti, bool is64,
                               const hvi_cami_win_entry **out)
{
    if (!c || !out)
        return HVI_E_INVAL;
    for (uint32_t i = 0; i < c->win_count; i++) {
        const hvi_cami_win_entry *w = &c->win[i];
        if (w->build == build && w->kpti == kpti && w->is64 == is64) {
            *out = w;
            return HVI_OK;
        }
    }
    return HVI_E_NOT_FOUND;
}

hvi_status hvi_cami_win_km_field(const hvi_cami_win_entry *e, unsigned group, unsigned field, uint32_t *out)
{
    if (!e)
        return HVI_E_INVAL;
    return field_of(e->km, e->km_count, CAMI_KIND_WIN_KM, group, field, out);
}

hvi_status hvi_cami_win_um_field(const hvi_cami_win_entry *e, unsigned group, unsigned field, uint32_t *out)
{
    if (!e)
        return HVI_E_INVAL;
    return field_of(e->um, e->um_count, CAMI_KIND_WIN_UM, group, field, out);
}

const hvi_cami_win_function *hvi_cami_win_function_find(const hvi_cami_win_entry *e, uint32_t name_hash)
{
    for (uint32_t i = 0; e && i < e->function_count; i++)
        if (e->functions[i].name_hash == name_hash)
            return &e->functions[i];
    return NULL;
}

bool hvi_cami_pattern_match(const hvi_cami_pattern *p, const uint8_t *buf, size_t len)
{
    if (!p || !buf || p->len == 0 || p->len > len)
        return false;
    for (uint32_t i = 0; i < p->len; i++)
        if (p->items[i] != HVI_CAMI_WILDCARD && p->items[i] != buf[i])
            return false;
    return true;
}

const hvi_cami_sig *hvi_cami_syscall_match(const hvi_cami *c, const uint8_t *code, size_t len)
{
    for (uint32_t i = 0; c && code && i < c->syscall_count; i++) {
        const hvi_cami_sig *s = &c->syscalls[i];
        if (s->offset < len && hvi_cami_pattern_match(&s->pattern, code + s->offset, len - s->offset))
            return s;
    }
    return NULL;
}

const hvi_cami_sig *hvi_cami_dist_match(const hvi_cami *c, const uint8_t *page, size_t len)
{
    for (uint32_t i = 0; c && page && i < c->dist_count; i++) {
        const hvi_cami_sig *s = &c->dists[i];
        if (s->offset < len && hvi_cami_pattern_match(&s->pattern, page + s->offset, len - s->offset))
            return s;
    }
    return NULL;
}
