/*
 * hvi hook layer — the watchpoint strategy (no EPT): write hooks become write watchpoints, the
 * engine keeps a shadow copy of the hooked bytes, and a hit (reported after the write) is
 * compared with it.
 *
 * Two shapes, by capability:
 *   - plain HVI_CAP_WATCHPOINT (debug registers: few, 1/2/4/8 bytes): a hook of one page at most
 *     is watched as naturally aligned 8-byte pieces, shared between hooks by reference count.
 *   - HVI_CAP_WATCH_RANGE (QEMU/TCG software watchpoints: many, any length): a hook is exactly one
 *     watchpoint over its range, and hvi_hook_watch_range_add hooks a multi-page linear range
 *     (kernel text, rodata) as one hook. The backend then names the watchpoint, not the bytes
 *     written, so the whole hooked range is compared with its shadow on a hit.
 *
 * A hit is split into runs of changed bytes (gaps under HOOK_RUN_GAP equal bytes join a run) and
 * the callback is asked once per run: DENY writes that run's shadow bytes back, ALLOW takes the
 * run's new bytes into the shadow. A run that is someone else's earlier change (through another
 * alias, or the kernel's own patching that went through a different linear address) therefore
 * gets its own decision instead of being reverted with the write that triggered the hit.
 */
#include <stdlib.h>
#include <string.h>

#include "hook_priv.h"
#include "hvi/decode.h"
#include "hvi/mem.h"

#define HOOK_RUN_GAP 8u   /* equal bytes that end a run of changed bytes */
#define HOOK_MAX_RUNS 64u /* runs reported per hit; beyond, the rest joins the last one */
#define SNAP_MAX 64u

static bool range_caps(const hvi_engine *e)
{
    return (e->glue.caps & HVI_CAP_WATCH_RANGE) != 0;
}

static uint32_t bucket_of_gva(hvi_gva gva)
{
    return (uint32_t)(((gva >> 3) * 0x9E3779B97F4A7C15ull) >> 54) % HOOK_BUCKETS;
}

/* ---- watchpoints, reference counted by (gva, len) ---- */

static struct watch_piece **watch_slot(struct hvi_hook_state *s, hvi_gva gva, uint32_t len)
{
    struct watch_piece **pp = &s->watch[bucket_of_gva(gva)];
    while (*pp && ((*pp)->gva != gva || (*pp)->len != len))
        pp = &(*pp)->next;
    return pp;
}

static hvi_status watch_ref(hvi_engine *e, struct hvi_hook_state *s, hvi_gva gva, uint32_t len,
                            bool add)
{
    struct watch_piece **pp = watch_slot(s, gva, len);
    if (add) {
        if (*pp) {
            if ((*pp)->refs++ == 0)
                s->stale--; /* a stale piece is still set: reuse it */
            return HVI_OK;
        }
        struct watch_piece *w = calloc(1, sizeof(*w));
        if (!w)
            return HVI_E_NOMEM;
        if (e->glue.set_watchpoint(e->glue.ctx, gva, len, HVI_WATCH_WRITE, true) != HVI_OK) {
            free(w);
            return HVI_E_BACKEND;
        }
        w->gva = gva;
        w->len = len;
        w->refs = 1;
        *pp = w;
        return HVI_OK;
    }
    if (!*pp || (*pp)->refs == 0)
        return HVI_OK;
    if ((*pp)->refs > 1) {
        (*pp)->refs--;
        return HVI_OK;
    }
    if (e->glue.set_watchpoint(e->glue.ctx, gva, len, HVI_WATCH_WRITE, false) != HVI_OK) {
        (*pp)->refs = 0; /* stale: the watchpoint is still set, hvi_hook_sync retries */
        s->stale++;
        return HVI_E_BACKEND;
    }
    struct watch_piece *w = *pp;
    *pp = w->next;
    free(w);
    return HVI_OK;
}

hvi_status hvi_hook_watch_apply(hvi_engine *e, struct hvi_hook_state *s, struct hvi_hook *h,
                                bool add)
{
    if (h->whole) /* one watchpoint over the hook's range */
        return watch_ref(e, s, h->gva, h->len, add);
    hvi_gva first = h->gva & ~(hvi_gva)(HOOK_WATCH_PIECE - 1), end = h->gva + h->len, p;
    hvi_status st = HVI_OK;
    for (p = first; p < end; p += HOOK_WATCH_PIECE) {
        hvi_status one = watch_ref(e, s, p, HOOK_WATCH_PIECE, add);
        if (one != HVI_OK && !add) {
            st = one; /* removal always completes; failed pieces are stale */
            continue;
        }
        if ((st = one) != HVI_OK)
            break;
    }
    if (st == HVI_OK || !add)
        return st;
    for (hvi_gva q = first; q < p; q += HOOK_WATCH_PIECE)
        (void)watch_ref(e, s, q, HOOK_WATCH_PIECE, false);
    return st;
}

hvi_status hvi_hook_watch_sync(hvi_engine *e, struct hvi_hook_state *s, uint32_t b)
{
    for (struct watch_piece **pp = &s->watch[b]; *pp;) {
        struct watch_piece *w = *pp;
        if (w->refs == 0 &&
            e->glue.set_watchpoint(e->glue.ctx, w->gva, w->len, HVI_WATCH_WRITE, false) == HVI_OK) {
            *pp = w->next;
            free(w);
            s->stale--;
            continue;
        }
        pp = &w->next;
    }
    return HVI_OK;
}

/* ---- the hooked bytes: one page (h->gpa) or a range of pages (h->pages) ---- */

static hvi_gpa byte_gpa(const struct hvi_hook *h, uint32_t off)
{
    if (!h->pages)
        return h->gpa + off;
    uint64_t idx = ((h->gva + off) >> 12) - (h->gva >> 12);
    return h->pages[idx] + ((h->gva + off) & (HVI_PAGE_SIZE - 1));
}

/* Copy [off, off+n) of the hooked range from (write = false) or to guest memory, page by page. */
static hvi_status hook_rw(hvi_engine *e, const struct hvi_hook *h, uint32_t off, uint8_t *buf,
                          uint32_t n, bool write)
{
    for (uint32_t done = 0; done < n;) {
        hvi_gpa gpa = byte_gpa(h, off + done);
        uint32_t room = (uint32_t)(HVI_PAGE_SIZE - (gpa & (HVI_PAGE_SIZE - 1)));
        uint32_t k = n - done < room ? n - done : room;
        void *page;
        if (e->glue.map_gpa(e->glue.ctx, gpa & HVI_PAGE_MASK, &page) != HVI_OK)
            return HVI_E_BACKEND;
        uint8_t *p = (uint8_t *)page + (gpa & (HVI_PAGE_SIZE - 1));
        if (write)
            memcpy(p, buf + done, k);
        else
            memcpy(buf + done, p, k);
        e->glue.unmap_gpa(e->glue.ctx, gpa & HVI_PAGE_MASK, page);
        done += k;
    }
    return HVI_OK;
}

hvi_status hvi_hook_add_watch(hvi_engine *e, struct hvi_hook_state *s, struct hvi_hook *h)
{
    if (h->access != HVI_EPT_W)
        return hvi_fail(e, HVI_E_UNSUPPORTED,
                        "hook: backend '%s' has no EPT; only write hooks (watchpoints) work",
                        e->glue.name ? e->glue.name : "?");
    if (!h->gva || h->len > HOOK_MAX_WATCH_LEN ||
        (h->gpa & HVI_PAGE_MASK) != ((h->gpa + h->len - 1) & HVI_PAGE_MASK))
        return hvi_fail(e, HVI_E_INVAL,
                        "hook: watchpoint hooks need a GVA and a range within one page");
    h->watch = true;
    h->whole = range_caps(e);
    h->shadow = malloc(h->len);
    if (!h->shadow)
        return HVI_E_NOMEM;
    if (hook_rw(e, h, 0, h->shadow, h->len, false) != HVI_OK)
        return hvi_fail(e, HVI_E_BACKEND, "hook: cannot map gpa 0x%llx",
                        (unsigned long long)h->gpa);
    hvi_status st = hvi_hook_watch_apply(e, s, h, true);
    if (st != HVI_OK)
        return hvi_fail(e, st, "hook: set_watchpoint failed");
    return HVI_OK;
}

hvi_status hvi_hook_watch_range_add(hvi_engine *e, uint64_t cr3, hvi_gva gva, uint64_t len,
                                    hvi_gpa_hook_cb cb, void *ctx, hvi_hook **out)
{
    if (!e || !cb || !out || !len || len > HVI_WATCH_RANGE_MAX_LEN || gva + len - 1 < gva)
        return e ? hvi_fail(e, HVI_E_INVAL, "hook: bad watch range arguments") : HVI_E_INVAL;
    if (!range_caps(e) || !(e->glue.caps & HVI_CAP_WATCHPOINT))
        return hvi_fail(e, HVI_E_UNSUPPORTED,
                        "hook: backend '%s' has no watchpoints of any length (HVI_CAP_WATCH_RANGE)",
                        e->glue.name ? e->glue.name : "?");
    struct hvi_hook_state *s = hvi_hook_state_get(e);
    if (!s)
        return HVI_E_NOMEM;
    (void)hvi_hook_sync(e);
    uint64_t npages = ((gva + len - 1) >> 12) - (gva >> 12) + 1;
    struct hvi_hook *h = calloc(1, sizeof(*h));
    if (!h)
        return HVI_E_NOMEM;
    *h = (struct hvi_hook){.kind = HOOK_GPA,
                           .gva = gva,
                           .len = (uint32_t)len,
                           .access = HVI_EPT_W,
                           .cb = cb,
                           .ctx = ctx,
                           .watch = true,
                           .whole = true};
    h->pages = calloc(npages, sizeof(*h->pages));
    h->shadow = malloc(len);
    hvi_status st = h->pages && h->shadow ? HVI_OK : HVI_E_NOMEM;
    for (uint64_t i = 0; st == HVI_OK && i < npages; i++) {
        hvi_gpa gpa;
        hvi_gva p = (gva & HVI_PAGE_MASK) + i * HVI_PAGE_SIZE;
        if ((st = hvi_gva_to_gpa(e, cr3, p, &gpa)) != HVI_OK)
            hvi_fail(e, st, "hook: 0x%llx is not present (watchpoints follow no translation)",
                     (unsigned long long)p);
        h->pages[i] = gpa & HVI_PAGE_MASK;
    }
    if (st == HVI_OK) {
        h->gpa = byte_gpa(h, 0);
        if ((st = hook_rw(e, h, 0, h->shadow, h->len, false)) != HVI_OK)
            hvi_fail(e, st, "hook: cannot read the range at 0x%llx", (unsigned long long)gva);
    }
    if (st == HVI_OK && (st = hvi_hook_watch_apply(e, s, h, true)) != HVI_OK)
        hvi_fail(e, st, "hook: set_watchpoint(0x%llx, %llu) failed", (unsigned long long)gva,
                 (unsigned long long)len);
    if (st != HVI_OK) {
        free(h->pages);
        free(h->shadow);
        free(h);
        return st;
    }
    h->next = s->live;
    s->live = h;
    s->hooks++;
    *out = h;
    return HVI_OK;
}

hvi_status hvi_hook_watch_accept(hvi_engine *e, hvi_hook *h, hvi_gva gva, uint64_t len)
{
    if (!e || !h || h->removed || h->kind != HOOK_GPA)
        return HVI_E_INVAL;
    if (!h->watch)
        return HVI_OK; /* EPT hooks keep no copy */
    uint64_t a = gva > h->gva ? gva : h->gva;
    uint64_t b = gva + len < h->gva + h->len ? gva + len : h->gva + h->len;
    if (a >= b)
        return HVI_OK;
    return hook_rw(e, h, (uint32_t)(a - h->gva), h->shadow + (a - h->gva), (uint32_t)(b - a),
                   false);
}

/* ---- a hit ---- */

struct run {
    uint32_t first, last;
};

/* Changed runs of h against its shadow (at most HOOK_MAX_RUNS; the last one absorbs the rest). */
static uint32_t find_runs(hvi_engine *e, const struct hvi_hook *h, struct run *runs)
{
    uint32_t n = 0, gap = 0;
    bool open = false;
    for (uint32_t off = 0; off < h->len;) {
        hvi_gpa gpa = byte_gpa(h, off);
        uint32_t room = (uint32_t)(HVI_PAGE_SIZE - (gpa & (HVI_PAGE_SIZE - 1)));
        uint32_t k = h->len - off < room ? h->len - off : room;
        void *page;
        if (e->glue.map_gpa(e->glue.ctx, gpa & HVI_PAGE_MASK, &page) != HVI_OK) {
            off += k; /* unreadable now: nothing to compare */
            continue;
        }
        const uint8_t *p = (const uint8_t *)page + (gpa & (HVI_PAGE_SIZE - 1));
        const uint8_t *sh = h->shadow + off;
        if (!open && !memcmp(p, sh, k)) {
            e->glue.unmap_gpa(e->glue.ctx, gpa & HVI_PAGE_MASK, page);
            off += k;
            continue;
        }
        for (uint32_t i = 0; i < k; i++) {
            if (p[i] == sh[i]) {
                if (open && ++gap >= HOOK_RUN_GAP)
                    open = false;
                continue;
            }
            if (open) {
                runs[n - 1].last = off + i;
            } else if (n < HOOK_MAX_RUNS) {
                runs[n++] = (struct run){off + i, off + i};
                open = true;
            } else {
                runs[n - 1].last = off + i; /* too many: join the last one */
            }
            gap = 0;
        }
        e->glue.unmap_gpa(e->glue.ctx, gpa & HVI_PAGE_MASK, page);
        off += k;
    }
    return n;
}

/* Does `in`, decoded with the registers after it ran, write byte `target`? (For MOVS/STOS,
 * whose RDI has moved on: the element before RDI.) */
static bool writes_byte(const hvi_insn *in, const hvi_regs *regs, hvi_gva target)
{
    for (uint32_t i = 0; i < in->access_count; i++) {
        const hvi_mem_access *a = &in->access[i];
        if (!(a->access & HVI_EPT_W) || !a->addr_valid || !a->size)
            continue;
        hvi_gva lo = a->gva;
        if (a->implicit && a->seg == HVI_ES)
            lo = (regs->rflags & (1u << 10)) ? a->gva + a->size : a->gva - a->size;
        if (target >= lo && target - lo < a->size)
            return true;
    }
    return false;
}

/* The instruction that wrote byte `target`: the watchpoint stop comes after it, so decode
 * backwards from RIP — the longest candidate that ends exactly at RIP and writes `target`; else
 * a REP string store at RIP itself (QEMU stops it after one element, RIP unchanged). 0 if none. */
static uint64_t writer_before(hvi_engine *e, const hvi_regs *regs, hvi_gva target, hvi_insn *in)
{
    uint8_t code[2 * HVI_INSN_MAX_LEN];
    uint64_t cr3 = (regs && (regs->valid & HVI_REGS_CR)) ? regs->cr3 : 0;
    if (!regs || !(regs->valid & HVI_REGS_GPR) || regs->rip < HVI_INSN_MAX_LEN ||
        hvi_gva_read(e, cr3, regs->rip - HVI_INSN_MAX_LEN, code, HVI_INSN_MAX_LEN) != HVI_OK)
        return 0;
    uint32_t mode = hvi_decode_mode(regs);
    for (uint32_t k = HVI_INSN_MAX_LEN; k >= 1; k--)
        if (hvi_decode_buffer(code + HVI_INSN_MAX_LEN - k, k, mode, regs->rip - k, regs, in) ==
                HVI_OK &&
            in->len == k && writes_byte(in, regs, target))
            return in->rip;
    if (hvi_gva_read(e, cr3, regs->rip, code + HVI_INSN_MAX_LEN, HVI_INSN_MAX_LEN) == HVI_OK &&
        hvi_decode_buffer(code + HVI_INSN_MAX_LEN, HVI_INSN_MAX_LEN, mode, regs->rip, regs, in) ==
            HVI_OK &&
        in->rep && writes_byte(in, regs, target))
        return in->rip;
    return 0;
}

/* One watch hook hit by a completed write: one callback per changed run, each undone (DENY) or
 * accepted (ALLOW) on its own. */
static uint32_t watch_one(hvi_engine *e, struct hvi_hook *h, const hvi_event *ev,
                          const hvi_regs *regs)
{
    struct run runs[HOOK_MAX_RUNS];
    uint32_t n = find_runs(e, h, runs), action = HVI_ACTION_ALLOW;
    for (uint32_t r = 0; r < n && !h->removed; r++) {
        uint32_t first = runs[r].first, size = runs[r].last - first + 1;
        hvi_hook_access acc = {.event = ev,
                               .vcpu = ev->vcpu,
                               .access = HVI_EPT_W,
                               .gpa = byte_gpa(h, first),
                               .gva = h->gva + first,
                               .size = size,
                               .rip = regs ? regs->rip : 0,
                               .regs = regs,
                               .values_known = true,
                               .after_access = true};
        uint32_t k = size > 16 ? 16 : size;
        memcpy(acc.old_bytes, h->shadow + first, k);
        if (hook_rw(e, h, first, acc.new_bytes, k, false) != HVI_OK)
            continue;
        hvi_insn in;
        if (h->whole && (acc.writer_rip = writer_before(e, regs, acc.gva, &in)) != 0)
            acc.insn = &in; /* the writing instruction (decoded with the registers after it) */
        uint32_t one = h->cb(e, h, &acc, h->ctx);
        action = hvi_hook_strictest(action, one);
        if (h->removed)
            break;
        if (one == HVI_ACTION_DENY) {
            if (hook_rw(e, h, first, h->shadow + first, size, true) != HVI_OK) {
                hvi_log(e, HVI_LOG_ERROR, "hook: cannot undo write at 0x%llx",
                        (unsigned long long)acc.gva);
                continue;
            }
            /* a multi-threaded TCG vCPU may have translated the new bytes meanwhile */
            if (h->whole)
                hvi_code_written(e, acc.gva, h->shadow + first, size);
        } else {
            (void)hook_rw(e, h, first, h->shadow + first, size, false);
        }
    }
    return action;
}

static hvi_status get_regs(hvi_engine *e, uint32_t vcpu, hvi_regs *r)
{
    uint32_t want = HVI_REGS_GPR | HVI_REGS_CR | HVI_REGS_EFER | HVI_REGS_SEG | HVI_REGS_FSGS;
    memset(r, 0, sizeof(*r));
    return e->glue.get_regs(e->glue.ctx, vcpu, want, r) == HVI_OK ? HVI_OK : HVI_E_BACKEND;
}

hvi_status hvi_hook_on_watch(hvi_engine *e, const hvi_event *ev, hvi_event_reply *reply, void *ctx)
{
    (void)ctx;
    struct hvi_hook_state *s = e->hook;
    if (!s)
        return HVI_OK;
    uint64_t len = ev->len ? ev->len : HOOK_WATCH_PIECE;
    struct hvi_hook *snap[SNAP_MAX];
    size_t n = 0;
    for (struct hvi_hook *h = s->live; h && n < SNAP_MAX; h = h->next)
        if (h->watch && ev->gva < h->gva + h->len && h->gva < ev->gva + len) {
            h->hits++;
            snap[n++] = h;
        }
    if (n == 0)
        return HVI_OK;
    hvi_regs regs;
    bool have_regs = get_regs(e, ev->vcpu, &regs) == HVI_OK;
    uint32_t action = HVI_ACTION_ALLOW;
    hvi_gpa first_gpa = snap[0]->gpa; /* snap[0] may be freed by the reap below */
    s->depth++;
    for (size_t i = 0; i < n; i++)
        if (!snap[i]->removed)
            action =
                hvi_hook_strictest(action, watch_one(e, snap[i], ev, have_regs ? &regs : NULL));
    s->depth--;
    hvi_hook_reap(s);
    if (action != HVI_ACTION_DENY)
        hvi_decode_invalidate_gpa(e, first_gpa);
    reply->action = hvi_hook_strictest(reply->action, action);
    return HVI_OK;
}

uint64_t hvi_hook_hits(const hvi_hook *hook)
{
    return hook ? hook->hits : 0;
}
