/*
 * hvi hook layer — GPA hooks: per-frame bookkeeping, EPT rights, and the watchpoint strategy.
 */
#include <stdlib.h>
#include <string.h>

#include "hook_priv.h"

static uint32_t bucket_of(uint64_t key)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 54) % HOOK_BUCKETS;
}

static void free_hook(struct hvi_hook *h)
{
    free(h->shadow);
    free(h->pages);
    free(h->pt);
    hvi_vasmon_free(h->vas);
    free(h);
}

static void hook_cleanup(hvi_engine *e, void *ctx)
{
    (void)ctx;
    struct hvi_hook_state *s = e->hook;
    if (!s)
        return;
    for (uint32_t b = 0; b < HOOK_BUCKETS; b++) {
        for (struct hook_frame *f = s->buckets[b], *n; f; f = n) {
            n = f->next;
            free(f->hooks);
            free(f);
        }
        for (struct watch_piece *w = s->watch[b], *n; w; w = n) {
            n = w->next;
            free(w);
        }
    }
    hvi_hook_objects_release(e, s, true);
    for (struct hvi_hook *h = s->live, *n; h; h = n) {
        n = h->next;
        free_hook(h);
    }
    s->depth = 0;
    hvi_hook_reap(s);
    free(s);
    e->hook = NULL;
}

static hvi_status hook_detach(hvi_engine *e, void *ctx)
{
    (void)ctx;
    struct hvi_hook_state *s = e->hook;
    hvi_status worst = HVI_OK;
    if (s)
        hvi_hook_objects_release(e, s, false);
    for (;;) {
        struct hvi_hook *h = s ? s->live : NULL;
        while (h && h->internal)
            h = h->next; /* removed by their owner */
        if (!h)
            break;
        hvi_status st = hvi_hook_remove(e, h);
        if (st != HVI_OK) {
            /* the hook stays registered with the backend; forget it so detach terminates */
            if (!h->removed) {
                hvi_hook_unlink_live(s, h);
                hvi_hook_retire(s, h);
            }
            worst = st;
        }
    }
    if (s && hvi_hook_sync(e) != HVI_OK)
        worst = HVI_E_BACKEND;
    return worst;
}

static void hook_timer(hvi_engine *e, void *ctx)
{
    (void)ctx;
    (void)hvi_hook_sync(e);
}

struct hvi_hook_state *hvi_hook_state_get(hvi_engine *e)
{
    if (e->hook)
        return e->hook;
    struct hvi_hook_state *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    e->hook = s;
    if (hvi_engine_on_free(e, hook_cleanup, NULL) != HVI_OK ||
        hvi_engine_on_detach(e, hook_detach, NULL) != HVI_OK ||
        hvi_engine_add_timer(e, hook_timer, NULL) != HVI_OK ||
        hvi_engine_add_handler(e, HVI_EV_EPT_VIOLATION, hvi_hook_on_ept, NULL) != HVI_OK ||
        hvi_engine_add_handler(e, HVI_EV_WATCHPOINT, hvi_hook_on_watch, NULL) != HVI_OK ||
        hvi_engine_add_handler(e, HVI_EV_CR_WRITE, hvi_hook_on_reg, NULL) != HVI_OK ||
        hvi_engine_add_handler(e, HVI_EV_MSR_WRITE, hvi_hook_on_reg, NULL) != HVI_OK ||
        hvi_engine_add_handler(e, HVI_EV_DTR_LOAD, hvi_hook_on_reg, NULL) != HVI_OK ||
        hvi_engine_add_handler(e, HVI_EV_XCR_WRITE, hvi_hook_on_reg, NULL) != HVI_OK ||
        hvi_engine_add_handler(e, HVI_EV_BREAKPOINT, hvi_hook_on_bp, NULL) != HVI_OK ||
        hvi_engine_add_handler(e, HVI_EV_SINGLE_STEP, hvi_hook_on_step, NULL) != HVI_OK) {
        /* the cleanup, if registered, frees s at engine free; otherwise free now */
        hvi_fail(e, HVI_E_LIMIT, "hook: engine callback tables full");
        return NULL;
    }
    return s;
}

struct hook_frame *hvi_hook_frame_find(struct hvi_hook_state *s, uint64_t gfn)
{
    if (!s)
        return NULL;
    for (struct hook_frame *f = s->buckets[bucket_of(gfn)]; f; f = f->next)
        if (f->gfn == gfn)
            return f;
    return NULL;
}

void hvi_hook_unlink_live(struct hvi_hook_state *s, struct hvi_hook *h)
{
    for (struct hvi_hook **pp = &s->live; *pp; pp = &(*pp)->next) {
        if (*pp == h) {
            *pp = h->next;
            h->next = NULL;
            s->hooks--;
            return;
        }
    }
}

void hvi_hook_retire(struct hvi_hook_state *s, struct hvi_hook *h)
{
    h->removed = true;
    if (s->depth > 0) {
        h->next = s->dead;
        s->dead = h;
    } else {
        free_hook(h);
    }
}

void hvi_hook_reap(struct hvi_hook_state *s)
{
    if (s->depth > 0)
        return;
    for (struct hvi_hook *h = s->dead, *n; h; h = n) {
        n = h->next;
        free_hook(h);
    }
    s->dead = NULL;
}

/* Rights wanted for a frame: its original rights minus every hooked EPT access. A read hook also
 * removes write (EPT has no write-only pages). */
static uint32_t wanted_rights(const struct hook_frame *f)
{
    uint32_t deny = 0;
    for (size_t i = 0; i < f->count; i++)
        if (!f->hooks[i]->watch)
            deny |= f->hooks[i]->access;
    if (deny & HVI_EPT_R)
        deny |= HVI_EPT_W;
    return f->orig_rights & ~deny;
}

static hvi_status apply_rights(hvi_engine *e, struct hook_frame *f)
{
    uint32_t want = f->count ? wanted_rights(f) : f->orig_rights;
    if (want == f->rights || !(e->glue.caps & HVI_CAP_EPT))
        return HVI_OK;
    if (e->glue.set_ept_rights(e->glue.ctx, f->gfn << 12, want) != HVI_OK)
        return HVI_E_BACKEND;
    f->rights = want;
    return HVI_OK;
}

static void frame_settled(struct hvi_hook_state *s, struct hook_frame *f)
{
    if (f->stale) {
        f->stale = false;
        s->stale--;
    }
}

static void frame_drop(struct hvi_hook_state *s, struct hook_frame *f)
{
    if (f->stale)
        s->stale--;
    struct hook_frame **pp = &s->buckets[bucket_of(f->gfn)];
    while (*pp && *pp != f)
        pp = &(*pp)->next;
    if (*pp)
        *pp = f->next;
    free(f->hooks);
    free(f);
    s->frames--;
}

static hvi_status frame_get(hvi_engine *e, struct hvi_hook_state *s, uint64_t gfn,
                            struct hook_frame **out)
{
    struct hook_frame *f = hvi_hook_frame_find(s, gfn);
    if (!f) {
        uint32_t rights = HVI_EPT_RWX;
        if ((e->glue.caps & HVI_CAP_EPT) && e->glue.get_ept_rights &&
            e->glue.get_ept_rights(e->glue.ctx, gfn << 12, &rights) != HVI_OK)
            return HVI_E_BACKEND;
        f = calloc(1, sizeof(*f));
        if (!f)
            return HVI_E_NOMEM;
        f->gfn = gfn;
        f->orig_rights = f->rights = rights & HVI_EPT_RWX;
        uint32_t b = bucket_of(gfn);
        f->next = s->buckets[b];
        s->buckets[b] = f;
        s->frames++;
    }
    *out = f;
    return HVI_OK;
}

static bool frame_del_hook(struct hook_frame *f, const struct hvi_hook *h)
{
    for (size_t i = 0; i < f->count; i++) {
        if (f->hooks[i] == h) {
            memmove(&f->hooks[i], &f->hooks[i + 1], (f->count - i - 1) * sizeof(f->hooks[0]));
            f->count--;
            return true;
        }
    }
    return false;
}

/* Take the hook off one frame and restore its rights. The bookkeeping always drops the hook; when
 * the glue fails the frame keeps its old rights and stays listed as stale (retried by
 * hvi_hook_sync). */
static hvi_status frame_unhook(hvi_engine *e, struct hvi_hook_state *s, uint64_t gfn,
                               struct hvi_hook *h)
{
    struct hook_frame *f = hvi_hook_frame_find(s, gfn);
    if (!f || !frame_del_hook(f, h))
        return HVI_OK;
    hvi_status st = apply_rights(e, f);
    if (st != HVI_OK) {
        if (!f->stale) {
            f->stale = true;
            s->stale++;
        }
        return st;
    }
    if (f->count == 0)
        frame_drop(s, f);
    return HVI_OK;
}

static hvi_status frame_hook(hvi_engine *e, struct hvi_hook_state *s, uint64_t gfn,
                             struct hvi_hook *h)
{
    struct hook_frame *f;
    hvi_status st = frame_get(e, s, gfn, &f);
    if (st != HVI_OK)
        return st;
    if (f->count == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 4;
        struct hvi_hook **n = realloc(f->hooks, cap * sizeof(*n));
        if (!n) {
            if (f->count == 0)
                frame_drop(s, f);
            return HVI_E_NOMEM;
        }
        f->hooks = n;
        f->cap = cap;
    }
    f->hooks[f->count++] = h;
    st = apply_rights(e, f);
    if (st != HVI_OK) {
        f->count--;
        if (f->count == 0 && !f->stale)
            frame_drop(s, f);
        return st;
    }
    frame_settled(s, f);
    return HVI_OK;
}

static uint64_t first_gfn(const struct hvi_hook *h) { return h->gpa >> 12; }
static uint64_t last_gfn(const struct hvi_hook *h) { return (h->gpa + h->len - 1) >> 12; }

static hvi_status add_ept_hook(hvi_engine *e, struct hvi_hook_state *s, struct hvi_hook *h)
{
    uint64_t g;
    hvi_status st = HVI_OK;
    for (g = first_gfn(h); g <= last_gfn(h); g++) {
        st = frame_hook(e, s, g, h);
        if (st != HVI_OK)
            break;
    }
    if (st == HVI_OK)
        return HVI_OK;
    for (uint64_t u = first_gfn(h); u < g; u++)
        (void)frame_unhook(e, s, u, h);
    return hvi_fail(e, st, "hook: cannot hook gpa 0x%llx (+%u)", (unsigned long long)h->gpa,
                    h->len);
}

hvi_status hvi_hook_gpa_add_gva(hvi_engine *e, hvi_gpa gpa, hvi_gva gva, uint32_t len,
                                uint32_t access, hvi_gpa_hook_cb cb, void *ctx, hvi_hook **out)
{
    if (!e || !cb || !out || len == 0 || len > HOOK_MAX_LEN || !access ||
        (access & ~(uint32_t)HVI_EPT_RWX) || gpa + len < gpa)
        return e ? hvi_fail(e, HVI_E_INVAL, "hook: bad GPA hook arguments") : HVI_E_INVAL;
    bool ept = (e->glue.caps & HVI_CAP_EPT) != 0;
    if (!ept && !(e->glue.caps & HVI_CAP_WATCHPOINT))
        return hvi_fail(e, HVI_E_UNSUPPORTED, "hook: backend has neither EPT nor watchpoints");
    struct hvi_hook_state *s = hvi_hook_state_get(e);
    if (!s)
        return HVI_E_NOMEM;
    (void)hvi_hook_sync(e);
    struct hvi_hook *h = calloc(1, sizeof(*h));
    if (!h)
        return HVI_E_NOMEM;
    *h = (struct hvi_hook){.kind = HOOK_GPA, .gpa = gpa, .gva = gva, .len = len,
                           .access = access, .cb = cb, .ctx = ctx};
    hvi_status st = HVI_OK;
    if (ept) {
        st = add_ept_hook(e, s, h);
    } else if ((st = hvi_hook_add_watch(e, s, h)) == HVI_OK &&
               (st = frame_hook(e, s, first_gfn(h), h)) != HVI_OK) {
        (void)hvi_hook_watch_apply(e, s, h, false);
    }
    if (st != HVI_OK) {
        free_hook(h);
        return st;
    }
    h->next = s->live;
    s->live = h;
    s->hooks++;
    *out = h;
    return HVI_OK;
}

hvi_status hvi_hook_gpa_add(hvi_engine *e, hvi_gpa gpa, uint32_t len, uint32_t access,
                            hvi_gpa_hook_cb cb, void *ctx, hvi_hook **out)
{
    return hvi_hook_gpa_add_gva(e, gpa, 0, len, access, cb, ctx, out);
}

static hvi_status remove_gpa(hvi_engine *e, struct hvi_hook_state *s, struct hvi_hook *h)
{
    hvi_status st = HVI_OK;
    if (h->watch) {
        st = hvi_hook_watch_apply(e, s, h, false);
        (void)frame_unhook(e, s, first_gfn(h), h);
    } else {
        for (uint64_t g = first_gfn(h); g <= last_gfn(h); g++) {
            hvi_status one = frame_unhook(e, s, g, h);
            if (one != HVI_OK)
                st = one;
        }
    }
    if (st != HVI_OK)
        hvi_fail(e, st, "hook: removed, but the backend refused to restore some rights/watchpoints "
                        "(%zu stale; retried by hvi_hook_sync)", s->stale);
    return st;
}

hvi_status hvi_hook_remove(hvi_engine *e, hvi_hook *h)
{
    if (!e || !h || !e->hook || h->removed)
        return HVI_E_INVAL;
    struct hvi_hook_state *s = e->hook;
    (void)hvi_hook_sync(e);
    if (h->kind == HOOK_REG || h->kind == HOOK_DETOUR) {
        hvi_status st = hvi_hook_reg_remove(e, h);
        if (st != HVI_OK)
            return st;
    }
    hvi_status st = h->kind == HOOK_GPA ? remove_gpa(e, s, h) : HVI_OK;
    if (h->kind == HOOK_PT || h->kind == HOOK_GVA)
        st = hvi_hook_pt_remove(e, h);
    if (h->kind == HOOK_VAS)
        hvi_vasmon_remove(e, h);
    hvi_hook_unlink_live(s, h);
    hvi_hook_retire(s, h);
    return st;
}

hvi_status hvi_hook_sync(hvi_engine *e)
{
    struct hvi_hook_state *s = e ? e->hook : NULL;
    if (!s || s->stale == 0)
        return HVI_OK;
    for (uint32_t b = 0; b < HOOK_BUCKETS; b++) {
        for (struct hook_frame *f = s->buckets[b], *n; f; f = n) {
            n = f->next;
            if (!f->stale || apply_rights(e, f) != HVI_OK)
                continue;
            frame_settled(s, f);
            if (f->count == 0)
                frame_drop(s, f);
        }
        (void)hvi_hook_watch_sync(e, s, b);
    }
    return s->stale ? HVI_E_BACKEND : HVI_OK;
}

void hvi_hook_set_owned(hvi_hook *hook, bool owned)
{
    if (hook)
        hook->internal = owned;
}

uint32_t hvi_hook_frame_rights(hvi_engine *e, hvi_gpa gpa)
{
    struct hook_frame *f = e ? hvi_hook_frame_find(e->hook, gpa >> 12) : NULL;
    return f ? wanted_rights(f) : HVI_EPT_RWX;
}

size_t hvi_hook_count(const hvi_engine *e)
{
    return e && e->hook ? e->hook->hooks : 0;
}

size_t hvi_hook_frame_count(const hvi_engine *e)
{
    return e && e->hook ? e->hook->frames : 0;
}
