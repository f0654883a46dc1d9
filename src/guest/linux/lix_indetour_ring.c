/* hvi guest/linux — in-guest detours, the pure parts: the stub bytes and the ring parser
 * (lix_indetour.h has the layout). */
#include <string.h>

#include "guest/linux/lix_indetour.h"

struct emit {
    uint8_t *buf;
    size_t cap, len;
    bool bad;
};

static void put(struct emit *m, const void *b, size_t n)
{
    if (m->len + n > m->cap) {
        m->bad = true;
        return;
    }
    memcpy(m->buf + m->len, b, n);
    m->len += n;
}

static void put32(struct emit *m, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(m, b, 4);
}

/* rel32 to `target` from the end of an instruction whose rel32 field ends at the current
 * position plus `after` bytes (immediates following the displacement). */
static void put_rel(struct emit *m, uint64_t base, uint64_t target, size_t after)
{
    uint64_t next = base + m->len + 4 + after;
    int64_t d = (int64_t)(target - next);
    if (d < INT32_MIN || d > INT32_MAX)
        m->bad = true;
    put32(m, (uint32_t)d);
}

bool lixd_call_emit(uint64_t site, uint64_t target, uint8_t out[5])
{
    int64_t d = (int64_t)(target - (site + 5));
    if (d < INT32_MIN || d > INT32_MAX)
        return false;
    uint32_t v = (uint32_t)d;
    out[0] = 0xe8;
    out[1] = (uint8_t)v;
    out[2] = (uint8_t)(v >> 8);
    out[3] = (uint8_t)(v >> 16);
    out[4] = (uint8_t)(v >> 24);
    return true;
}

/* Copy the string at [rdi+off] (or *[rdi+off]) into the record's str area, one byte at a time up
 * to and including the NUL and at most LIXD_STR_LEN - 1 bytes, so it never reads past the end of
 * the guest's string (a wider copy could run into an unmapped or KFENCE guard page). rcx = the
 * record; rax (the index) is kept on the stack meanwhile. */
static void emit_str_copy(struct emit *m, const struct lixd_stub_params *p)
{
    static const uint8_t pre[] = {0x56, 0x57, 0x50}; /* push rsi; push rdi; push rax */
    put(m, pre, sizeof(pre));
    static const uint8_t src_deref[] = {0x48, 0x8b, 0xb7};  /* mov rsi, [rdi+disp32] */
    static const uint8_t src_inline[] = {0x48, 0x8d, 0xb7}; /* lea rsi, [rdi+disp32] */
    put(m, p->str_deref ? src_deref : src_inline, 3);
    put32(m, p->str_off);
    /* clang-format off */
    static const uint8_t loop[] = {
        0x48, 0x8d, 0x79, LIXD_STR_OFF,            /* lea rdi, [rcx+0x40]    dest */
        0x48, 0x8d, 0x51, LIXD_STR_OFF + LIXD_STR_LEN - 1, /* lea rdx, [rcx+0x7f]  last byte */
        0x48, 0x85, 0xf6,                          /* test rsi, rsi */
        0x74, 0x15,                                /* jz end */
        /* loop: */
        0x48, 0x39, 0xd7,                          /* cmp rdi, rdx */
        0x73, 0x10,                                /* jae end */
        0x8a, 0x06,                                /* mov al, [rsi] */
        0x88, 0x07,                                /* mov [rdi], al */
        0x84, 0xc0,                                /* test al, al */
        0x74, 0x08,                                /* jz end */
        0x48, 0xff, 0xc6,                          /* inc rsi */
        0x48, 0xff, 0xc7,                          /* inc rdi */
        0xeb, 0xeb,                                /* jmp loop */
        /* end: */
        0xc6, 0x07, 0x00,                          /* mov byte [rdi], 0 */
        0x58, 0x5f, 0x5e,                          /* pop rax; pop rdi; pop rsi */
    };
    /* clang-format on */
    put(m, loop, sizeof(loop));
}

size_t lixd_stub_emit(const struct lixd_stub_params *p, uint8_t *buf, size_t cap)
{
    if (!p || !buf || cap < LIXD_STUB_MAX || ((uint64_t)p->mask + 1) & p->mask ||
        p->mask > (1u << 24) - 1 || p->current_task > 0x7fffffffu || p->event_id > 0x7fffffffu ||
        p->arg0_load > 0x7fffffffu || p->task_load > 0x7fffffffu || p->str_off > 0x7fffffffu)
        return 0;
    struct emit m = {.buf = buf, .cap = cap};
    const uint64_t at = p->stub_va;
    static const uint8_t save[] = {0x50, 0x51, 0x52,              /* push rax; push rcx; push rdx */
                                   0xb8, 0x01, 0x00, 0x00, 0x00}; /* mov eax, 1 */
    put(&m, save, sizeof(save));
    static const uint8_t xadd[] = {0xf0, 0x48, 0x0f, 0xc1, 0x05}; /* lock xadd [rip+d32], rax */
    put(&m, xadd, sizeof(xadd));
    put_rel(&m, at, p->head_va, 0);
    static const uint8_t idx[] = {0x89, 0xc1, 0x81, 0xe1}; /* mov ecx, eax; and ecx, imm32 */
    put(&m, idx, sizeof(idx));
    put32(&m, p->mask);
    static const uint8_t shl_lea[] = {0x48, 0xc1, 0xe1, LIXD_REC_SHIFT, /* shl rcx, 7 */
                                      0x48, 0x8d, 0x15};                /* lea rdx, [rip+d32] */
    put(&m, shl_lea, sizeof(shl_lea));
    put_rel(&m, at, p->records_va, 0);
    /* clang-format off */
    static const uint8_t addz[] = {
        0x48, 0x01, 0xd1,                         /* add rcx, rdx */
        0x48, 0xc7, 0x01, 0x00, 0x00, 0x00, 0x00, /* mov qword [rcx], 0 */
        0x48, 0xc7, 0x41, 0x08,                   /* mov qword [rcx+8], imm32 */
    };
    /* clang-format on */
    put(&m, addz, sizeof(addz));
    put32(&m, p->event_id);
    static const uint8_t cur[] = {0x65, 0x48, 0x8b, 0x14, 0x25}; /* mov rdx, gs:[disp32] */
    put(&m, cur, sizeof(cur));
    put32(&m, p->current_task);
    static const uint8_t body[] = {
        0x48, 0x89, 0x51, 0x10,       /* mov [rcx+0x10], rdx   task */
        0x48, 0x89, 0x79, 0x18,       /* mov [rcx+0x18], rdi */
        0x48, 0x89, 0x71, 0x20,       /* mov [rcx+0x20], rsi */
        0x48, 0x8b, 0x14, 0x24,       /* mov rdx, [rsp]        saved rdx */
        0x48, 0x89, 0x51, 0x28,       /* mov [rcx+0x28], rdx */
        0x48, 0x8b, 0x54, 0x24, 0x08, /* mov rdx, [rsp+8]      saved rcx */
        0x48, 0x89, 0x51, 0x30,       /* mov [rcx+0x30], rdx */
    };
    put(&m, body, sizeof(body));
    if (p->arg0_load) {
        static const uint8_t load[] = {0x48, 0x8b, 0x97};      /* mov rdx, [rdi+disp32] */
        static const uint8_t st8[] = {0x48, 0x89, 0x51, 0x38}; /* mov [rcx+0x38], rdx */
        put(&m, load, sizeof(load));
        put32(&m, p->arg0_load);
        put(&m, st8, sizeof(st8));
    } else if (p->task_load) {
        static const uint8_t cur_ld[] = {0x48, 0x8b, 0x51, 0x10, /* mov rdx, [rcx+0x10]  task */
                                         0x48, 0x8b, 0x92};      /* mov rdx, [rdx+disp32] */
        static const uint8_t st8[] = {0x48, 0x89, 0x51, 0x38};   /* mov [rcx+0x38], rdx */
        put(&m, cur_ld, sizeof(cur_ld));
        put32(&m, p->task_load);
        put(&m, st8, sizeof(st8));
    } else {
        static const uint8_t r8[] = {0x4c, 0x89, 0x41, 0x38}; /* mov [rcx+0x38], r8 */
        put(&m, r8, sizeof(r8));
    }
    if (p->str)
        emit_str_copy(&m, p);
    if (p->ask) {
        /* clang-format off */
        static const uint8_t ask[] = {
            0x48, 0xc7, 0x41, 0x30, LIXD_VERDICT_ASK, 0, 0, 0, /* mov qword [rcx+0x30], ASK */
            0x48, 0x89, 0x0d,                                  /* mov [rip+d32], rcx  doorbell */
        };
        static const uint8_t tail_ask[] = {
            0x48, 0xff, 0xc0,                   /* inc rax                seq = index + 1 */
            0x48, 0x89, 0x01,                   /* mov [rcx], rax         commit */
            0x48, 0x83, 0x79, 0x30, LIXD_VERDICT_DENY, /* cmp qword [rcx+0x30], DENY */
            0x5a, 0x59, 0x58,                   /* pop rdx; pop rcx; pop rax (flags kept) */
            0x75, 0x0b,                         /* jne ret */
            0x48, 0x83, 0xc4, 0x08,             /* add rsp, 8             drop the return into
                                                   the function: back to its caller */
            0x48, 0xc7, 0xc0, (uint8_t)-LIXD_EACCES, 0xff, 0xff, 0xff, /* mov rax, -EACCES */
            0xc3, 0xcc,                         /* ret: ret; int3 */
        };
        /* clang-format on */
        put(&m, ask, sizeof(ask));
        put_rel(&m, at, p->doorbell_va, 0);
        put(&m, tail_ask, sizeof(tail_ask));
        return m.bad ? 0 : m.len;
    }
    static const uint8_t tail[] = {
        0x48, 0xff, 0xc0, /* inc rax               seq = index + 1 */
        0x48, 0x89, 0x01, /* mov [rcx], rax        commit */
        0x5a, 0x59, 0x58, /* pop rdx; pop rcx; pop rax */
        0xc3, 0xcc,       /* ret; int3 (no straight-line speculation past it) */
    };
    put(&m, tail, sizeof(tail));
    return m.bad ? 0 : m.len;
}

size_t lixd_ring_drain(struct lixd_ring *r, lixd_read_fn rd, void *rctx, uint32_t id_max,
                       size_t budget, lixd_rec_fn cb, void *cctx, hvi_status *st)
{
    hvi_status dummy;
    if (!st)
        st = &dummy;
    *st = HVI_OK;
    if (!r || !rd || !cb || !r->nrec || (r->nrec & (r->nrec - 1))) {
        *st = HVI_E_INVAL;
        return 0;
    }
    uint64_t head = 0;
    if ((*st = rd(rctx, 0, &head, sizeof(head))) != HVI_OK)
        return 0;
    if (head < r->tail) { /* went backwards: the guest (or an attacker) wrote the head */
        r->resyncs++;
        r->lost_since = true;
        r->tail = head;
        r->stall = 0;
        return 0;
    }
    if (head - r->tail > r->nrec) { /* overflow: the oldest records were overwritten */
        uint64_t gone = head - r->tail - r->nrec;
        r->lost += gone;
        r->lost_since = true;
        r->tail = head - r->nrec;
        r->stall = 0;
    }
    size_t n = 0;
    const uint32_t mask = r->nrec - 1;
    while (r->tail < head && n < budget) {
        uint64_t off = LIXD_HDR_SIZE + (uint64_t)(r->tail & mask) * LIXD_REC_SIZE, s1 = 0, s2 = 0;
        struct lixd_record rec;
        if ((*st = rd(rctx, off, &s1, 8)) != HVI_OK)
            return n;
        if (s1 != r->tail + 1) {
            if (s1 > r->tail + 1) { /* a later lap already reused the slot */
                r->lost++;
                r->lost_since = true;
                r->tail++;
                r->stall = 0;
                continue;
            }
            /* claimed, not committed yet (or a stale/garbage seq): wait, but not forever */
            if (++r->stall <= LIXD_MAX_STALL)
                break;
            r->lost++;
            r->lost_since = true;
            r->tail++;
            r->stall = 0;
            continue;
        }
        r->stall = 0;
        if ((*st = rd(rctx, off, &rec, sizeof(rec))) != HVI_OK ||
            (*st = rd(rctx, off, &s2, 8)) != HVI_OK)
            return n;
        r->tail++;
        if (s2 != s1 || rec.seq != s1) { /* overwritten while we read it */
            r->lost++;
            r->lost_since = true;
            continue;
        }
        if (rec.id == 0 || rec.id >= id_max) {
            r->garbage++;
            r->lost_since = true;
            continue;
        }
        r->consumed++;
        n++;
        cb(&rec, cctx);
    }
    return n;
}
