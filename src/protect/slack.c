/*
 * hvi protect layer — the slack allocator: small allocations inside free guest ranges the OS
 * layer hands in (e.g. padding between kernel functions). Pure bookkeeping: the allocator never
 * touches guest memory; the caller writes (and hides) what it puts there.
 */
#include <stdlib.h>

#include "protect_priv.h"

#define SLACK_MAX_RANGES 256u
#define SLACK_MAX_ALLOCS 1024u

struct slack_range {
    hvi_gva start;
    uint32_t len;
};

struct slack_alloc {
    hvi_gva gva;
    uint32_t size;
};

struct hvi_slack {
    struct slack_range ranges[SLACK_MAX_RANGES];
    uint32_t nranges;
    struct slack_alloc allocs[SLACK_MAX_ALLOCS];
    uint32_t nallocs;
};

void hvi_slack_release(struct hvi_protect_state *s)
{
    if (s) {
        free(s->slack);
        s->slack = NULL;
    }
}

static struct hvi_slack *slack(hvi_engine *e)
{
    struct hvi_protect_state *s = hvi_protect_state(e);
    if (s && !s->slack)
        s->slack = calloc(1, sizeof(*s->slack));
    return s ? s->slack : NULL;
}

static bool overlaps(hvi_gva a, uint64_t alen, hvi_gva b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

hvi_status hvi_slack_add_range(hvi_engine *e, hvi_gva gva, uint32_t len)
{
    if (!e || len == 0 || gva + len < gva)
        return HVI_E_INVAL;
    struct hvi_slack *sl = slack(e);
    if (!sl)
        return HVI_E_NOMEM;
    for (uint32_t i = 0; i < sl->nranges; i++)
        if (overlaps(gva, len, sl->ranges[i].start, sl->ranges[i].len))
            return hvi_fail(e, HVI_E_EXISTS, "slack: range overlaps an existing one");
    if (sl->nranges == SLACK_MAX_RANGES)
        return hvi_fail(e, HVI_E_LIMIT, "slack: too many ranges");
    sl->ranges[sl->nranges++] = (struct slack_range){gva, len};
    return HVI_OK;
}

/* Lowest aligned address in range r where `size` bytes overlap no allocation; 0 if none. */
static hvi_gva fit_in(const struct hvi_slack *sl, const struct slack_range *r, uint32_t size,
                      uint32_t align)
{
    hvi_gva end = r->start + r->len;
    hvi_gva cand = (r->start + align - 1) & ~(hvi_gva)(align - 1);
    while (cand >= r->start && cand + size <= end) {
        hvi_gva next = 0;
        for (uint32_t i = 0; i < sl->nallocs; i++) {
            const struct slack_alloc *a = &sl->allocs[i];
            if (overlaps(cand, size, a->gva, a->size) && a->gva + a->size > next)
                next = a->gva + a->size;
        }
        if (!next)
            return cand;
        cand = (next + align - 1) & ~(hvi_gva)(align - 1);
    }
    return 0;
}

hvi_status hvi_slack_alloc(hvi_engine *e, uint32_t size, uint32_t align, hvi_gva *out)
{
    if (!e || !out || size == 0 || align == 0 || align > 4096 || (align & (align - 1)))
        return HVI_E_INVAL;
    struct hvi_slack *sl = slack(e);
    if (!sl)
        return HVI_E_NOMEM;
    if (sl->nallocs == SLACK_MAX_ALLOCS)
        return hvi_fail(e, HVI_E_LIMIT, "slack: too many allocations");
    for (uint32_t i = 0; i < sl->nranges; i++) {
        hvi_gva g = fit_in(sl, &sl->ranges[i], size, align);
        if (g) {
            sl->allocs[sl->nallocs++] = (struct slack_alloc){g, size};
            *out = g;
            return HVI_OK;
        }
    }
    return hvi_fail(e, HVI_E_LIMIT, "slack: no free range fits %u bytes (align %u)", size, align);
}

hvi_status hvi_slack_free(hvi_engine *e, hvi_gva gva)
{
    struct hvi_slack *sl = e && e->protect ? e->protect->slack : NULL;
    for (uint32_t i = 0; sl && i < sl->nallocs; i++) {
        if (sl->allocs[i].gva == gva) {
            sl->allocs[i] = sl->allocs[--sl->nallocs];
            return HVI_OK;
        }
    }
    return e ? hvi_fail(e, HVI_E_NOT_FOUND, "slack: 0x%llx is not an allocation",
                        (unsigned long long)gva)
             : HVI_E_INVAL;
}

uint64_t hvi_slack_free_bytes(const hvi_engine *e)
{
    const struct hvi_slack *sl = e && e->protect ? e->protect->slack : NULL;
    uint64_t total = 0;
    for (uint32_t i = 0; sl && i < sl->nranges; i++)
        total += sl->ranges[i].len;
    for (uint32_t i = 0; sl && i < sl->nallocs; i++)
        total -= sl->allocs[i].size;
    return total;
}
