/*
 * hvi decode layer — decoding guest code (at a GVA, at RIP) and the per-RIP decode cache.
 *
 * The cache is direct-mapped on (CR3, RIP). An entry is used only when the instruction bytes
 * now at RIP equal the cached ones (so a rewritten instruction is never served stale), and
 * hvi_decode_invalidate_gpa() drops entries whose code lies in a written frame.
 */
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "decode_priv.h"
#include "hvi/mem.h"

#define CACHE_SLOTS 256u
#define NO_GPA (~0ull)

struct cache_entry {
    bool valid;
    uint32_t mode;
    uint64_t cr3;
    uint64_t rip;
    uint64_t frame;   /* GPA frame of the first byte, NO_GPA if unknown */
    hvi_insn insn;
};

struct hvi_decode_state {
    struct cache_entry slots[CACHE_SLOTS];
    uint64_t hits, misses;
};

static void decode_cleanup(hvi_engine *e, void *ctx)
{
    (void)ctx;
    free(e->decode);
    e->decode = NULL;
}

static struct hvi_decode_state *state(hvi_engine *e)
{
    if (!e->decode) {
        e->decode = calloc(1, sizeof(*e->decode));
        if (e->decode && hvi_engine_on_free(e, decode_cleanup, NULL) != HVI_OK) {
            free(e->decode);
            e->decode = NULL;
        }
    }
    return e->decode;
}

static uint32_t slot_of(uint64_t cr3, uint64_t rip)
{
    uint64_t h = (rip ^ (cr3 >> 12) * 0x9E3779B97F4A7C15ull);
    h ^= h >> 29;
    return (uint32_t)(h * 0xBF58476D1CE4E5B9ull >> 56) % CACHE_SLOTS;
}

static hvi_status cached_decode(hvi_engine *e, uint64_t cr3, uint64_t frame, const hvi_regs *regs,
                                const uint8_t *bytes, size_t len, hvi_insn *out)
{
    uint32_t mode = hvi_decode_mode(regs);
    struct hvi_decode_state *s = state(e);
    struct cache_entry *c = s ? &s->slots[slot_of(cr3, regs->rip)] : NULL;
    if (c && c->valid && c->cr3 == cr3 && c->rip == regs->rip && c->mode == mode &&
        c->insn.len <= len && memcmp(c->insn.bytes, bytes, c->insn.len) == 0) {
        s->hits++;
        memcpy(out, &c->insn, sizeof(*out));
        hvi_decode_fill_accesses(out, regs);
        return HVI_OK;
    }
    hvi_status st = hvi_decode_buffer(bytes, len, mode, regs->rip, regs, out);
    if (st != HVI_OK)
        return st;
    if (c) {
        s->misses++;
        c->valid = true;
        c->mode = mode;
        c->cr3 = cr3;
        c->rip = regs->rip;
        c->frame = frame;
        memcpy(&c->insn, out, sizeof(*out));
    }
    return HVI_OK;
}

/* Fetch up to 15 bytes at gva; a shorter fetch when the next page is absent. */
static hvi_status fetch(hvi_engine *e, uint64_t cr3, hvi_gva gva, uint8_t *buf, size_t *len)
{
    size_t n = HVI_INSN_MAX_LEN;
    hvi_status st = hvi_gva_fetch(e, cr3, gva, buf, n);
    if (st == HVI_OK) {
        *len = n;
        return HVI_OK;
    }
    size_t in_page = HVI_PAGE_SIZE - (gva & (HVI_PAGE_SIZE - 1));
    if (in_page >= n)
        return st;
    st = hvi_gva_fetch(e, cr3, gva, buf, in_page);
    if (st == HVI_OK)
        *len = in_page;
    return st;
}

hvi_status hvi_decode_gva(hvi_engine *e, uint64_t cr3, hvi_gva gva, uint32_t mode,
                          const hvi_regs *regs, hvi_insn *out)
{
    uint8_t buf[HVI_INSN_MAX_LEN];
    size_t len = 0;
    if (!e || !out)
        return HVI_E_INVAL;
    hvi_status st = fetch(e, cr3, gva, buf, &len);
    if (st != HVI_OK)
        return hvi_fail(e, st, "decode: cannot fetch code at 0x%llx", (unsigned long long)gva);
    st = hvi_decode_buffer(buf, len, mode, gva, regs, out);
    if (st != HVI_OK)
        return hvi_fail(e, st, "decode: invalid instruction at 0x%llx", (unsigned long long)gva);
    return HVI_OK;
}

static hvi_status need_regs(hvi_engine *e, uint32_t vcpu, const hvi_regs **regs, hvi_regs *tmp)
{
    if (*regs)
        return HVI_OK;
    uint32_t want = HVI_REGS_GPR | HVI_REGS_CR | HVI_REGS_EFER | HVI_REGS_SEG | HVI_REGS_FSGS;
    memset(tmp, 0, sizeof(*tmp));
    hvi_status st = e->glue.get_regs(e->glue.ctx, vcpu, want, tmp);
    if (st != HVI_OK)
        return hvi_fail(e, HVI_E_BACKEND, "decode: get_regs(vcpu %u) failed", vcpu);
    *regs = tmp;
    return HVI_OK;
}

hvi_status hvi_decode_rip(hvi_engine *e, uint32_t vcpu, const hvi_regs *regs, hvi_insn *out)
{
    hvi_regs tmp;
    uint8_t buf[HVI_INSN_MAX_LEN];
    size_t len = 0;
    if (!e || !out)
        return HVI_E_INVAL;
    hvi_status st = need_regs(e, vcpu, &regs, &tmp);
    if (st != HVI_OK)
        return st;
    uint64_t cr3 = (regs->valid & HVI_REGS_CR) ? regs->cr3 : 0;
    st = fetch(e, cr3, regs->rip, buf, &len);
    if (st != HVI_OK)
        return hvi_fail(e, st, "decode: cannot fetch code at RIP 0x%llx",
                        (unsigned long long)regs->rip);
    hvi_gpa gpa = NO_GPA;
    if (hvi_gva_to_gpa(e, cr3, regs->rip, &gpa) == HVI_OK)
        gpa &= HVI_PAGE_MASK;
    st = cached_decode(e, cr3, gpa, regs, buf, len, out);
    if (st != HVI_OK)
        return hvi_fail(e, st, "decode: invalid instruction at RIP 0x%llx",
                        (unsigned long long)regs->rip);
    return HVI_OK;
}

hvi_status hvi_decode_rip_bytes(hvi_engine *e, const hvi_regs *regs, const uint8_t *bytes,
                                size_t len, hvi_insn *out)
{
    if (!e || !regs || !bytes || !out || len == 0)
        return HVI_E_INVAL;
    uint64_t cr3 = (regs->valid & HVI_REGS_CR) ? regs->cr3 : 0;
    return cached_decode(e, cr3, NO_GPA, regs, bytes, len > HVI_INSN_MAX_LEN ? HVI_INSN_MAX_LEN : len,
                         out);
}

void hvi_decode_invalidate_gpa(hvi_engine *e, hvi_gpa gpa)
{
    if (!e || !e->decode)
        return;
    uint64_t frame = gpa & HVI_PAGE_MASK;
    for (uint32_t i = 0; i < CACHE_SLOTS; i++) {
        struct cache_entry *c = &e->decode->slots[i];
        if (c->valid && c->frame == frame)
            c->valid = false;
    }
}

void hvi_decode_cache_flush(hvi_engine *e)
{
    if (!e || !e->decode)
        return;
    for (uint32_t i = 0; i < CACHE_SLOTS; i++)
        e->decode->slots[i].valid = false;
}

void hvi_decode_cache_stats(const hvi_engine *e, uint64_t *hits, uint64_t *misses)
{
    if (hits)
        *hits = (e && e->decode) ? e->decode->hits : 0;
    if (misses)
        *misses = (e && e->decode) ? e->decode->misses : 0;
}
