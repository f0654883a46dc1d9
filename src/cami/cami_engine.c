/* hvi cami — the engine's support data: load at new-guest time, live update, accessors.
 *
 * The entry selected for the running OS belongs to the support data loaded at start (kept
 * "pinned" until the engine is freed, as the seed says: the OS-specific part is not updated).
 * hvi_update_support() replaces everything else at once: the options and the tables that the
 * layers look up later. An update that does not validate leaves the old data in force. */
#include <stdlib.h>
#include <string.h>

#include "cami/cami_priv.h"
#include "core/engine.h"

struct hvi_cami_state {
    hvi_cami *current;   /* latest valid support data */
    hvi_cami *pinned;    /* the data the selected entry points into (== current until an update) */
    const hvi_cami_lix_entry *lix;
    const hvi_cami_win_entry *win;
};

static void cami_free(hvi_engine *e, void *ctx)
{
    struct hvi_cami_state *s = ctx;
    (void)e;
    if (s->pinned != s->current)
        hvi_cami_close(s->pinned);
    hvi_cami_close(s->current);
    free(s);
}

static hvi_status replace_raw(hvi_engine *e, const void *buf, size_t len)
{
    void *copy = malloc(len);
    if (!copy)
        return HVI_E_NOMEM;
    memcpy(copy, buf, len);
    free(e->support);
    e->support = copy;
    e->support_len = len;
    return HVI_OK;
}

/* The options block that applies to the selected OS in the current data (same key). */
const hvi_cami_os_prot *hvi_cami_engine_os_prot(hvi_engine *e)
{
    struct hvi_cami_state *s = e ? e->cami : NULL;
    if (!s || !s->current)
        return NULL;
    const hvi_cami_win_entry *w;
    if (s->lix) {
        for (uint32_t i = 0; i < s->current->lix_count; i++)
            if (!strcmp(s->current->lix[i].version, s->lix->version))
                return &s->current->lix[i].prot;
        return &s->lix->prot;
    }
    if (s->win) {
        if (hvi_cami_win_select(s->current, s->win->build, s->win->kpti, s->win->is64, &w) == HVI_OK)
            return &w->prot;
        return &s->win->prot;
    }
    return NULL;
}

/* Options from the support data: core ForceOff bits (hvi option bits) are switched off now. */
static hvi_status apply_options(hvi_engine *e)
{
    const hvi_cami_os_prot *p = hvi_cami_engine_os_prot(e);
    if (!p || !p->present || !e->guest.attached)
        return HVI_OK;
    uint64_t opts = e->options & ~p->core.force_off;
    return opts == e->options ? HVI_OK : hvi_options_set(e, opts);
}

hvi_status hvi_cami_engine_load(hvi_engine *e, const void *buf, size_t len)
{
    char msg[256];
    hvi_cami *c = NULL;
    if (!e || !buf || !len)
        return HVI_E_INVAL;
    hvi_status st = hvi_cami_open(buf, len, &c, msg, sizeof(msg));
    if (st != HVI_OK)
        return hvi_fail(e, st, "support data refused: %s", msg);
    struct hvi_cami_state *s = e->cami;
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s || hvi_engine_on_free(e, cami_free, s) != HVI_OK) {
            free(s);
            hvi_cami_close(c);
            return HVI_E_NOMEM;
        }
        e->cami = s;
    }
    if ((st = replace_raw(e, buf, len)) != HVI_OK) {
        hvi_cami_close(c);
        return st;
    }
    if (s->pinned != s->current)
        hvi_cami_close(s->pinned);
    hvi_cami_close(s->current);
    s->current = s->pinned = c;
    s->lix = NULL;
    s->win = NULL;
    return HVI_OK;
}

hvi_status hvi_cami_engine_update(hvi_engine *e, const void *buf, size_t len)
{
    char msg[256];
    hvi_cami *c = NULL;
    struct hvi_cami_state *s = e ? e->cami : NULL;
    if (!e || !buf || !len)
        return HVI_E_INVAL;
    if (!s || !s->current)
        return hvi_cami_engine_load(e, buf, len);
    hvi_status st = hvi_cami_open(buf, len, &c, msg, sizeof(msg));
    if (st != HVI_OK)
        return hvi_fail(e, st, "support update refused, the old data stays: %s", msg);
    if ((st = replace_raw(e, buf, len)) != HVI_OK) {
        hvi_cami_close(c);
        return st;
    }
    if (s->current != s->pinned)
        hvi_cami_close(s->current);
    s->current = c;
    return apply_options(e);
}

hvi_status hvi_cami_engine_apply_options(hvi_engine *e) { return apply_options(e); }

const hvi_cami *hvi_cami_engine_support(hvi_engine *e)
{
    return e && e->cami ? e->cami->current : NULL;
}

const hvi_cami_lix_entry *hvi_cami_engine_lix(hvi_engine *e) { return e && e->cami ? e->cami->lix : NULL; }

const hvi_cami_win_entry *hvi_cami_engine_win(hvi_engine *e) { return e && e->cami ? e->cami->win : NULL; }

hvi_status hvi_cami_engine_select_lix(hvi_engine *e, const char *version, const hvi_cami_lix_entry **out)
{
    struct hvi_cami_state *s = e ? e->cami : NULL;
    if (!e || !version)
        return HVI_E_INVAL;
    if (!s || !s->pinned)
        return hvi_fail(e, HVI_E_STATE, "no support data loaded");
    if (s->lix || s->win) { /* selected once: stays until restart */
        if (out && s->lix)
            *out = s->lix;
        return s->lix ? HVI_OK : HVI_E_STATE;
    }
    const hvi_cami_lix_entry *l;
    hvi_status st = hvi_cami_lix_select(s->pinned, version, &l);
    if (st != HVI_OK)
        return hvi_fail(e, HVI_E_UNSUPPORTED, "no support entry matches Linux '%s'", version);
    s->lix = l;
    if (out)
        *out = l;
    return HVI_OK;
}

hvi_status hvi_cami_engine_select_win(hvi_engine *e, uint32_t build, bool kpti, bool is64,
                                      const hvi_cami_win_entry **out)
{
    struct hvi_cami_state *s = e ? e->cami : NULL;
    if (!e)
        return HVI_E_INVAL;
    if (!s || !s->pinned)
        return hvi_fail(e, HVI_E_STATE, "no support data loaded");
    if (s->lix || s->win) {
        if (out && s->win)
            *out = s->win;
        return s->win ? HVI_OK : HVI_E_STATE;
    }
    const hvi_cami_win_entry *w;
    if (hvi_cami_win_select(s->pinned, build, kpti, is64, &w) != HVI_OK)
        return hvi_fail(e, HVI_E_UNSUPPORTED, "no support entry for Windows %u kpti %d %s", build, kpti,
                        is64 ? "x64" : "x86");
    s->win = w;
    if (out)
        *out = w;
    return HVI_OK;
}
