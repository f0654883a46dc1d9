/*
 * In-guest detours, the pure parts: the stub bytes (decoded by Zydis into exactly the expected
 * instructions; then executed natively on the host, GS pointing at a fake per-CPU area, from
 * two threads at once: every call leaves one committed, intact record) and the ring parser on
 * hostile rings (head behind/far ahead, garbage ids, later laps, torn and never-committed
 * records).
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "guest/linux/lix_indetour.h"
#include "harness.h"
#include "hvi/decode.h"
#include "hvi/linux_indetour.h"
#include "hvi_sim.h"

static const char *const expected[] = {
    "push rax",
    "push rcx",
    "push rdx",
    "mov eax, 0x01",
    "lock xadd [0x0000000000200000], rax",
    "mov ecx, eax",
    "and ecx, 0x3FF",
    "shl rcx, 0x07",
    "lea rdx, [0x0000000000200040]",
    "add rcx, rdx",
    "mov qword ptr [rcx], 0x00",
    "mov qword ptr [rcx+0x08], 0x05",
    "mov rdx, gs:[0x000000000001FB80]",
    "mov [rcx+0x10], rdx",
    "mov [rcx+0x18], rdi",
    "mov [rcx+0x20], rsi",
    "mov rdx, [rsp]",
    "mov [rcx+0x28], rdx",
    "mov rdx, [rsp+0x08]",
    "mov [rcx+0x30], rdx",
    "mov [rcx+0x38], r8",
    "inc rax",
    "mov [rcx], rax",
    "pop rdx",
    "pop rcx",
    "pop rax",
    "ret",
    "int3",
};

/* Zydis's text may differ in case/spacing/width keywords: compare loosely. */
static void norm(const char *in, char *out, size_t len)
{
    size_t o = 0;
    for (; *in && o + 1 < len; in++) {
        char c = *in;
        if (c == ' ')
            continue;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        out[o++] = c;
    }
    out[o] = 0;
    /* drop "qwordptr" (width keyword) for the comparison */
    char *q;
    while ((q = strstr(out, "qwordptr")))
        memmove(q, q + 8, strlen(q + 8) + 1);
}

/* The text may print hex immediates with or without leading zeros: compare numbers by value. */
static bool text_eq(const char *a, const char *b)
{
    char x[96], y[96];
    norm(a, x, sizeof(x));
    norm(b, y, sizeof(y));
    const char *p = x, *q = y;
    while (*p && *q) {
        if (p[0] == '0' && p[1] == 'x' && q[0] == '0' && q[1] == 'x') {
            char *pe, *qe;
            unsigned long long u = strtoull(p + 2, &pe, 16), v = strtoull(q + 2, &qe, 16);
            if (u != v)
                return false;
            p = pe, q = qe;
            continue;
        }
        if (*p++ != *q++)
            return false;
    }
    return !*p && !*q;
}

HVI_TEST(stub_decodes_to_the_expected_instructions)
{
    struct lixd_stub_params p = {.stub_va = 0x100000,
                                 .head_va = 0x200000,
                                 .records_va = 0x200040,
                                 .mask = 1023,
                                 .event_id = 5,
                                 .current_task = 0x1fb80};
    uint8_t b[LIXD_STUB_MAX];
    size_t len = lixd_stub_emit(&p, b, sizeof(b));
    REQUIRE(len > 0 && len <= LIXD_STUB_MAX);
    size_t off = 0, i = 0;
    while (off < len) {
        hvi_insn insn;
        REQUIRE(hvi_decode_buffer(b + off, len - off, 64, p.stub_va + off, NULL, &insn) == HVI_OK);
        REQUIRE(i < sizeof(expected) / sizeof(expected[0]));
        if (!text_eq(insn.text, expected[i]))
            fprintf(stderr, "  insn %zu: got \"%s\", want \"%s\"\n", i, insn.text, expected[i]);
        CHECK(text_eq(insn.text, expected[i]));
        if (i == 4)
            CHECK(insn.lock);
        off += insn.len;
        i++;
    }
    CHECK_EQ_U64(off, len);
    CHECK_EQ_U64(i, sizeof(expected) / sizeof(expected[0]));
}

/* With arg0_load the r8 slot gets a qword loaded through the first argument. */
HVI_TEST(stub_with_arg0_load_decodes_and_loads_through_rdi)
{
    struct lixd_stub_params p = {.stub_va = 0x100000,
                                 .head_va = 0x200000,
                                 .records_va = 0x200040,
                                 .mask = 1023,
                                 .event_id = 9,
                                 .current_task = 0x1fb80,
                                 .arg0_load = 0x970};
    uint8_t b[LIXD_STUB_MAX];
    size_t len = lixd_stub_emit(&p, b, sizeof(b));
    REQUIRE(len > 0);
    size_t off = 0, i = 0;
    bool seen_load = false, seen_r8 = false;
    while (off < len) {
        hvi_insn insn;
        REQUIRE(hvi_decode_buffer(b + off, len - off, 64, p.stub_va + off, NULL, &insn) == HVI_OK);
        seen_load |= text_eq(insn.text, "mov rdx, [rdi+0x970]");
        seen_r8 |= text_eq(insn.text, "mov [rcx+0x38], r8");
        if (i == 20)
            CHECK(text_eq(insn.text, "mov rdx, [rdi+0x970]"));
        if (i == 21)
            CHECK(text_eq(insn.text, "mov [rcx+0x38], rdx"));
        off += insn.len;
        i++;
    }
    CHECK(seen_load && !seen_r8);
    CHECK_EQ_U64(i, sizeof(expected) / sizeof(expected[0]) + 1);
    p.arg0_load = 0x80000000u;
    CHECK(lixd_stub_emit(&p, b, sizeof(b)) == 0);
}

/* Record format 2: the exec stub loads the current task's pid/tgid into the r8 slot and copies
 * the string at *[rdi+off] byte by byte (at most 63 bytes + NUL) into the record's str area. */
static const char *const expected_exec_tail[] = {
    "mov rdx, [rcx+0x10]",
    "mov rdx, [rdx+0x970]",
    "mov [rcx+0x38], rdx",
    "push rsi",
    "push rdi",
    "push rax",
    "mov rsi, [rdi+0x48]",
    "lea rdi, [rcx+0x40]",
    "lea rdx, [rcx+0x7F]",
    "test rsi, rsi",
    "J",
    "cmp rdi, rdx",
    "J",
    "mov al, [rsi]",
    "mov [rdi], al",
    "test al, al",
    "J",
    "inc rsi",
    "inc rdi",
    "J",
    "mov byte ptr [rdi], 0x00",
    "pop rax",
    "pop rdi",
    "pop rsi",
    "inc rax",
    "mov [rcx], rax",
    "pop rdx",
    "pop rcx",
    "pop rax",
    "ret",
    "int3",
};

HVI_TEST(stub_format2_task_load_and_string_copy_decode_to_the_expected_instructions)
{
    struct lixd_stub_params p = {.stub_va = 0x100000,
                                 .head_va = 0x200000,
                                 .records_va = 0x200040,
                                 .mask = 1023,
                                 .event_id = 5, /* as in `expected` */
                                 .current_task = 0x1fb80,
                                 .task_load = 0x970,
                                 .str = true,
                                 .str_deref = true,
                                 .str_off = 0x48};
    CHECK_EQ_U64(LIXD_REC_FORMAT, 2);
    CHECK_EQ_U64(LIXD_REC_SIZE, 1u << LIXD_REC_SHIFT);
    CHECK_EQ_U64(sizeof(struct lixd_record), LIXD_REC_SIZE);
    CHECK_EQ_U64(offsetof(struct lixd_record, str), LIXD_STR_OFF);
    uint8_t b[LIXD_STUB_MAX];
    size_t len = lixd_stub_emit(&p, b, sizeof(b));
    REQUIRE(len > 0 && len <= LIXD_STUB_MAX);
    size_t off = 0, i = 0, nhead = 20, ntail = sizeof(expected_exec_tail) / sizeof(char *);
    uint64_t starts[96], targets[8];
    size_t nstarts = 0, ntargets = 0;
    while (off < len) {
        hvi_insn insn;
        REQUIRE(hvi_decode_buffer(b + off, len - off, 64, p.stub_va + off, NULL, &insn) == HVI_OK);
        REQUIRE(i < nhead + ntail && nstarts < 96);
        starts[nstarts++] = p.stub_va + off;
        const char *want = i < nhead ? expected[i] : expected_exec_tail[i - nhead];
        bool ok;
        if (!strcmp(want, "J")) { /* a short jump: its target must be an instruction start */
            ok = insn.text[0] == 'j' && insn.len == 2 && ntargets < 8;
            if (ok)
                targets[ntargets++] =
                    p.stub_va + off + 2 + (uint64_t)(int64_t)(int8_t)insn.bytes[1];
        } else {
            ok = text_eq(insn.text, want);
        }
        if (!ok)
            fprintf(stderr, "  insn %zu: got \"%s\", want \"%s\"\n", i, insn.text, want);
        CHECK(ok);
        off += insn.len;
        i++;
    }
    CHECK_EQ_U64(i, nhead + ntail);
    CHECK_EQ_U64(ntargets, 4);
    for (size_t t = 0; t < ntargets; t++) {
        bool at_start = false;
        for (size_t k = 0; k < nstarts; k++)
            at_start |= starts[k] == targets[t];
        CHECK(at_start);
    }
    /* the inline variant (module->name) takes the address instead of loading through it */
    p.str_deref = false;
    REQUIRE(lixd_stub_emit(&p, b, sizeof(b)) == len);
    hvi_insn insn;
    size_t o2 = 0;
    for (size_t k = 0; k < 26; k++) { /* to the source instruction */
        REQUIRE(hvi_decode_buffer(b + o2, len - o2, 64, p.stub_va + o2, NULL, &insn) == HVI_OK);
        o2 += insn.len;
    }
    REQUIRE(hvi_decode_buffer(b + o2, len - o2, 64, p.stub_va + o2, NULL, &insn) == HVI_OK);
    CHECK(text_eq(insn.text, "lea rsi, [rdi+0x48]"));
    p.task_load = 0x80000000u;
    CHECK(lixd_stub_emit(&p, b, sizeof(b)) == 0);
    p.task_load = 0x970;
    p.str_off = 0x80000000u;
    CHECK(lixd_stub_emit(&p, b, sizeof(b)) == 0);
}

HVI_TEST(stub_and_call_refuse_bad_parameters)
{
    uint8_t b[LIXD_STUB_MAX], c[5];
    struct lixd_stub_params p = {.stub_va = 0xffffffff81000000ull,
                                 .head_va = 0xffffffff84000000ull,
                                 .records_va = 0xffffffff84000040ull,
                                 .mask = 63,
                                 .event_id = 1,
                                 .current_task = 0x1fb80};
    CHECK(lixd_stub_emit(&p, b, sizeof(b)) > 0);
    CHECK(lixd_stub_emit(&p, b, LIXD_STUB_MAX - 1) == 0); /* buffer too small */
    p.mask = 62;                                          /* not a power of two minus one */
    CHECK(lixd_stub_emit(&p, b, sizeof(b)) == 0);
    p.mask = 63;
    p.head_va = 0xffff888000000000ull; /* the direct map: out of rel32 reach */
    CHECK(lixd_stub_emit(&p, b, sizeof(b)) == 0);
    p.head_va = 0xffffffff84000000ull;
    p.current_task = 0x80000000u; /* sign-extended disp32 would go negative */
    CHECK(lixd_stub_emit(&p, b, sizeof(b)) == 0);
    CHECK(lixd_call_emit(0xffffffff81000000ull, 0xffffffff81001000ull, c));
    CHECK(c[0] == 0xe8 && c[1] == 0xfb && c[2] == 0x0f && c[3] == 0 && c[4] == 0);
    CHECK(!lixd_call_emit(0xffffffff81000000ull, 0xffff888000001000ull, c));
}

/* ---- native execution ------------------------------------------------------------------ */

#define NREC 4096u
#define PER_THREAD 1500u
#define CUR_OFF 0x1fb80u

struct native {
    uint8_t *code; /* stub, executable */
    uint8_t *ring; /* head + records */
    void (*fn)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
};

static struct native g_nat;

struct thr {
    uint64_t task;
    uint8_t *percpu;
    int ok;
};

static void *thr_run(void *arg)
{
    struct thr *t = arg;
    memcpy(t->percpu + CUR_OFF, &t->task, 8);
    if (syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)t->percpu) != 0)
        return NULL;
    for (uint64_t i = 0; i < PER_THREAD; i++)
        g_nat.fn(t->task ^ i, i, i * 3, ~i, t->task);
    t->ok = 1;
    return NULL;
}

static uint64_t g_task_arg;

static void *thr_one(void *arg)
{
    struct thr *t = arg;
    memcpy(t->percpu + CUR_OFF, &t->task, 8);
    if (syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)t->percpu) != 0)
        return NULL;
    g_nat.fn(g_task_arg, 1, 2, 3, 0xdead);
    t->ok = 1;
    return NULL;
}

HVI_TEST(stub_runs_natively_two_threads_every_call_one_intact_record)
{
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
    /* code and ring in one mapping so rel32 reaches */
    uint8_t *m = mmap(NULL, 1u << 20, PROT_READ | PROT_WRITE | PROT_EXEC,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        SKIP_CASE("no RWX anonymous mapping allowed here");
    g_nat.code = m;
    g_nat.ring = m + 4096;
    struct lixd_stub_params p = {.stub_va = (uint64_t)(uintptr_t)m,
                                 .head_va = (uint64_t)(uintptr_t)g_nat.ring,
                                 .records_va = (uint64_t)(uintptr_t)g_nat.ring + LIXD_HDR_SIZE,
                                 .mask = NREC - 1,
                                 .event_id = 3,
                                 .current_task = CUR_OFF};
    size_t len = lixd_stub_emit(&p, m, LIXD_STUB_MAX);
    REQUIRE(len > 0);
    memcpy(&g_nat.fn, &m, sizeof(m));
    static uint8_t percpu[2][CUR_OFF + 64];
    struct thr t[2] = {{0x1111000000000000ull, percpu[0], 0},
                       {0x2222000000000000ull, percpu[1], 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        REQUIRE(pthread_create(&th[i], NULL, thr_run, &t[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    if (!t[0].ok || !t[1].ok) {
        munmap(m, 1u << 20);
        SKIP_CASE("arch_prctl(ARCH_SET_GS) refused: cannot give the stub a GS base");
    }
    uint64_t head;
    memcpy(&head, g_nat.ring, 8);
    CHECK_EQ_U64(head, 2 * PER_THREAD);
    /* each thread's calls appear once, in its own order, with its task and arguments */
    uint64_t next[2] = {0, 0};
    bool intact = true;
    for (uint64_t i = 0; i < head; i++) {
        struct lixd_record r;
        memcpy(&r, g_nat.ring + LIXD_HDR_SIZE + i * LIXD_REC_SIZE, sizeof(r));
        int w = r.task == t[0].task ? 0 : r.task == t[1].task ? 1 : -1;
        if (r.seq != i + 1 || r.id != 3 || w < 0) {
            intact = false;
            break;
        }
        uint64_t k = next[w]++;
        intact = intact && r.args[0] == (t[w].task ^ k) && r.args[1] == k && r.args[2] == k * 3 &&
                 r.args[3] == ~k && r.args[4] == t[w].task;
    }
    CHECK(intact);
    CHECK_EQ_U64(next[0], PER_THREAD);
    CHECK_EQ_U64(next[1], PER_THREAD);
    /* a stub with arg0_load stores the qword at [rdi + off] (a new task's pid/tgid) */
    p.stub_va = (uint64_t)(uintptr_t)(m + 1024);
    p.event_id = 9;
    p.arg0_load = 8;
    REQUIRE(lixd_stub_emit(&p, m + 1024, LIXD_STUB_MAX) > 0);
    uint8_t *s2 = m + 1024;
    memcpy(&g_nat.fn, &s2, sizeof(s2));
    static uint64_t fake_task[4] = {0, 0x0000007b0000007bull, 0, 0};
    g_task_arg = (uint64_t)(uintptr_t)fake_task;
    pthread_t t2;
    struct thr one = {0x3333000000000000ull, percpu[0], 0};
    REQUIRE(pthread_create(&t2, NULL, thr_one, &one) == 0);
    pthread_join(t2, NULL);
    struct lixd_record r2;
    memcpy(&r2, g_nat.ring + LIXD_HDR_SIZE + (head & (NREC - 1)) * LIXD_REC_SIZE, sizeof(r2));
    CHECK(one.ok && r2.seq == head + 1 && r2.id == 9 && r2.task == one.task &&
          r2.args[0] == g_task_arg && r2.args[4] == fake_task[1]);
    munmap(m, 1u << 20);
#else
    SKIP_CASE("not an x86-64 host");
#endif
}

/* Format 2 executed natively: an exec-style stub (pid/tgid through the current task, the string
 * through *[rdi+off]) and a module-style one (string inline at rdi+off). The strings end at the
 * last byte of a page followed by an inaccessible page: a copy reading past the NUL would
 * crash the test. */
struct call_args {
    uint64_t task, rdi;
    uint8_t *percpu;
    int ok;
};

static void *thr_call(void *arg)
{
    struct call_args *c = arg;
    memcpy(c->percpu + CUR_OFF, &c->task, 8);
    if (syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)c->percpu) != 0)
        return NULL;
    g_nat.fn(c->rdi, 1, 2, 3, 0xdead);
    c->ok = 1;
    return NULL;
}

static bool call_stub(uint8_t *stub, uint64_t task, uint64_t rdi, struct lixd_record *out)
{
    static uint8_t percpu[CUR_OFF + 64];
    memcpy(&g_nat.fn, &stub, sizeof(stub));
    uint64_t head;
    memcpy(&head, g_nat.ring, 8);
    struct call_args c = {task, rdi, percpu, 0};
    pthread_t th;
    if (pthread_create(&th, NULL, thr_call, &c) != 0)
        return false;
    pthread_join(th, NULL);
    memcpy(out, g_nat.ring + LIXD_HDR_SIZE + (head & 63) * LIXD_REC_SIZE, sizeof(*out));
    return c.ok && out->seq == head + 1;
}

HVI_TEST(stub_format2_runs_natively_and_copies_strings_without_reading_past_them)
{
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
    uint8_t *m = mmap(NULL, 1u << 20, PROT_READ | PROT_WRITE | PROT_EXEC,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        SKIP_CASE("no RWX anonymous mapping allowed here");
    uint8_t *data = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(data != MAP_FAILED);
    REQUIRE(mprotect(data + 4096, 4096, PROT_NONE) == 0);
    g_nat.code = m;
    g_nat.ring = m + 4096;
    memset(g_nat.ring, 0, LIXD_HDR_SIZE + 64 * LIXD_REC_SIZE);
    struct lixd_stub_params p = {.stub_va = (uint64_t)(uintptr_t)m,
                                 .head_va = (uint64_t)(uintptr_t)g_nat.ring,
                                 .records_va = (uint64_t)(uintptr_t)g_nat.ring + LIXD_HDR_SIZE,
                                 .mask = 63,
                                 .event_id = HVI_LIXD_EXEC,
                                 .current_task = CUR_OFF,
                                 .task_load = 16,
                                 .str = true,
                                 .str_deref = true,
                                 .str_off = 24};
    REQUIRE(lixd_stub_emit(&p, m, LIXD_STUB_MAX) > 0);
    static uint64_t task[4] = {0, 0, 0x0000004d0000004eull, 0}; /* pid 78, tgid 77 */
    uint64_t bprm[8] = {0};
    const char *name = "/bin/true";
    char *str = (char *)data + 4096 - strlen(name) - 1; /* NUL on the page's last byte */
    memcpy(str, name, strlen(name) + 1);
    bprm[3] = (uint64_t)(uintptr_t)str;
    struct lixd_record r;
    if (!call_stub(m, (uint64_t)(uintptr_t)task, (uint64_t)(uintptr_t)bprm, &r)) {
        munmap(data, 8192);
        munmap(m, 1u << 20);
        SKIP_CASE("arch_prctl(ARCH_SET_GS) refused: cannot give the stub a GS base");
    }
    CHECK(r.id == HVI_LIXD_EXEC && r.task == (uint64_t)(uintptr_t)task);
    CHECK(r.args[0] == (uint64_t)(uintptr_t)bprm && r.args[1] == 1 && r.args[3] == 3);
    CHECK_EQ_U64(r.args[4], task[2]);
    CHECK_STR(r.str, "/bin/true");
    /* a long name is cut at 63 bytes, terminated */
    char longname[101];
    memset(longname, 'a', 100);
    longname[100] = 0;
    str = (char *)data + 4096 - 101;
    memcpy(str, longname, 101);
    bprm[3] = (uint64_t)(uintptr_t)str;
    REQUIRE(call_stub(m, (uint64_t)(uintptr_t)task, (uint64_t)(uintptr_t)bprm, &r));
    CHECK(strlen(r.str) == 63 && !strncmp(r.str, longname, 63));
    /* no string: "" (the slot's old bytes do not leak through) */
    bprm[3] = 0;
    REQUIRE(call_stub(m, (uint64_t)(uintptr_t)task, (uint64_t)(uintptr_t)bprm, &r));
    CHECK_STR(r.str, "");
    /* module style: the name is inline at rdi + off, and the r8 slot is r8 itself */
    p.stub_va = (uint64_t)(uintptr_t)(m + 1024);
    p.event_id = HVI_LIXD_MOD_UNLOAD;
    p.task_load = 0;
    p.str_deref = false;
    p.str_off = 8;
    REQUIRE(lixd_stub_emit(&p, m + 1024, LIXD_STUB_MAX) > 0);
    uint8_t *mod = data + 4096 - 8 - 5; /* "crc7" + NUL ends the page */
    memcpy(mod + 8, "crc7", 5);
    REQUIRE(call_stub(m + 1024, (uint64_t)(uintptr_t)task, (uint64_t)(uintptr_t)mod, &r));
    CHECK(r.id == HVI_LIXD_MOD_UNLOAD && r.args[0] == (uint64_t)(uintptr_t)mod);
    CHECK_EQ_U64(r.args[4], 0xdead);
    CHECK_STR(r.str, "crc7");
    munmap(data, 8192);
    munmap(m, 1u << 20);
#else
    SKIP_CASE("not an x86-64 host");
#endif
}

/* ---- the parser on hostile rings ------------------------------------------------------------ */

struct fake {
    uint8_t mem[LIXD_HDR_SIZE + 16 * LIXD_REC_SIZE];
    int reads_until_tear; /* >0: after this many reads, bump the seq of the record being read */
    uint64_t tear_off;
    bool fail;
};

static hvi_status fake_read(void *ctx, uint64_t off, void *buf, size_t len)
{
    struct fake *f = ctx;
    if (f->fail || off > sizeof(f->mem) || len > sizeof(f->mem) - off)
        return HVI_E_RANGE;
    memcpy(buf, f->mem + off, len);
    if (f->reads_until_tear > 0 && --f->reads_until_tear == 0) {
        uint64_t s;
        memcpy(&s, f->mem + f->tear_off, 8);
        s += 16;
        memcpy(f->mem + f->tear_off, &s, 8);
    }
    return HVI_OK;
}

static void put_head(struct fake *f, uint64_t h)
{
    memcpy(f->mem, &h, 8);
}

static void put_rec(struct fake *f, uint64_t idx, uint64_t seq, uint64_t id)
{
    struct lixd_record r = {.seq = seq, .id = id, .task = 0xffff888000000000ull + idx};
    r.args[0] = idx;
    memcpy(f->mem + LIXD_HDR_SIZE + (idx & 15) * LIXD_REC_SIZE, &r, sizeof(r));
}

struct got {
    uint64_t idx[64];
    size_t n;
};

static void got_cb(const struct lixd_record *r, void *ctx)
{
    struct got *g = ctx;
    if (g->n < 64)
        g->idx[g->n++] = r->args[0];
}

HVI_TEST(ring_in_order_then_overflow_then_backwards)
{
    static struct fake f;
    memset(&f, 0, sizeof(f));
    struct lixd_ring r = {.nrec = 16};
    struct got g = {.n = 0};
    hvi_status st;
    for (uint64_t i = 0; i < 5; i++)
        put_rec(&f, i, i + 1, 1);
    put_head(&f, 5);
    CHECK_EQ_U64(lixd_ring_drain(&r, fake_read, &f, 9, 100, got_cb, &g, &st), 5);
    CHECK_OK(st);
    CHECK(g.n == 5 && g.idx[0] == 0 && g.idx[4] == 4);
    CHECK(!r.lost_since);
    /* head far beyond the ring: 40 more claimed, only the last 16 can still be there */
    for (uint64_t i = 5; i < 45; i++)
        put_rec(&f, i, i + 1, 2);
    put_head(&f, 45);
    g.n = 0;
    CHECK_EQ_U64(lixd_ring_drain(&r, fake_read, &f, 9, 100, got_cb, &g, &st), 16);
    CHECK_EQ_U64(r.lost, 24);
    CHECK(r.lost_since && g.idx[0] == 29);
    /* an absurd head (attacker): bounded work, tail resynchronised */
    put_head(&f, UINT64_MAX - 3);
    g.n = 0;
    size_t n = lixd_ring_drain(&r, fake_read, &f, 9, 100, got_cb, &g, &st);
    CHECK(n <= 16);
    /* the head moved backwards: resync, nothing delivered */
    uint64_t resyncs = r.resyncs;
    put_head(&f, 3);
    CHECK_EQ_U64(lixd_ring_drain(&r, fake_read, &f, 9, 100, got_cb, &g, &st), 0);
    CHECK_EQ_U64(r.resyncs, resyncs + 1);
    CHECK_EQ_U64(r.tail, 3);
}

HVI_TEST(ring_garbage_ids_later_laps_and_torn_records_are_not_delivered)
{
    static struct fake f;
    memset(&f, 0, sizeof(f));
    struct lixd_ring r = {.nrec = 16};
    struct got g = {.n = 0};
    hvi_status st;
    put_rec(&f, 0, 1, 0);      /* id 0 */
    put_rec(&f, 1, 2, 77);     /* id beyond the max */
    put_rec(&f, 2, 3 + 16, 1); /* a later lap wrote this slot */
    put_rec(&f, 3, 4, 1);      /* fine */
    put_rec(&f, 4, 5, 1);      /* torn while read (below) */
    put_rec(&f, 5, 6, 1);      /* fine */
    put_head(&f, 6);
    f.reads_until_tear = 1 + 3 + 3 + 1 + 3 + 2; /* head, r0(3), r1(3), r2(1), r3(3), r4: 2nd read */
    f.tear_off = LIXD_HDR_SIZE + 4 * LIXD_REC_SIZE;
    CHECK_EQ_U64(lixd_ring_drain(&r, fake_read, &f, 9, 100, got_cb, &g, &st), 2);
    CHECK(g.n == 2 && g.idx[0] == 3 && g.idx[1] == 5);
    CHECK_EQ_U64(r.garbage, 2);
    CHECK_EQ_U64(r.lost, 2);
    CHECK(r.lost_since);
    CHECK_EQ_U64(r.tail, 6);
}

HVI_TEST(ring_uncommitted_record_blocks_then_counts_as_lost)
{
    static struct fake f;
    memset(&f, 0, sizeof(f));
    struct lixd_ring r = {.nrec = 16};
    struct got g = {.n = 0};
    hvi_status st;
    put_rec(&f, 0, 1, 1);
    put_rec(&f, 1, 0, 0); /* claimed, being written */
    put_rec(&f, 2, 3, 1);
    put_head(&f, 3);
    CHECK_EQ_U64(lixd_ring_drain(&r, fake_read, &f, 9, 100, got_cb, &g, &st), 1);
    CHECK_EQ_U64(r.tail, 1);
    /* the writer commits: the next drain gets both, in order */
    put_rec(&f, 1, 2, 1);
    CHECK_EQ_U64(lixd_ring_drain(&r, fake_read, &f, 9, 100, got_cb, &g, &st), 2);
    CHECK(g.n == 3 && g.idx[1] == 1 && g.idx[2] == 2);
    /* a record that never commits blocks only LIXD_MAX_STALL drains */
    put_rec(&f, 3, 0, 0);
    put_rec(&f, 4, 5, 1);
    put_head(&f, 5);
    size_t total = 0;
    for (unsigned i = 0; i <= LIXD_MAX_STALL; i++)
        total += lixd_ring_drain(&r, fake_read, &f, 9, 100, got_cb, &g, &st);
    CHECK_EQ_U64(total, 1);
    CHECK_EQ_U64(r.lost, 1);
    CHECK_EQ_U64(r.tail, 5);
}

HVI_TEST(ring_read_failure_and_bad_arguments)
{
    static struct fake f;
    memset(&f, 0, sizeof(f));
    struct lixd_ring r = {.nrec = 16};
    struct got g = {.n = 0};
    hvi_status st = HVI_OK;
    f.fail = true;
    CHECK_EQ_U64(lixd_ring_drain(&r, fake_read, &f, 9, 100, got_cb, &g, &st), 0);
    CHECK_STATUS(st, HVI_E_RANGE);
    struct lixd_ring bad = {.nrec = 12};
    CHECK_EQ_U64(lixd_ring_drain(&bad, fake_read, &f, 9, 100, got_cb, &g, &st), 0);
    CHECK_STATUS(st, HVI_E_INVAL);
    /* the budget bounds one drain */
    f.fail = false;
    for (uint64_t i = 0; i < 10; i++)
        put_rec(&f, i, i + 1, 1);
    put_head(&f, 10);
    CHECK_EQ_U64(lixd_ring_drain(&r, fake_read, &f, 9, 4, got_cb, &g, &st), 4);
    CHECK_EQ_U64(lixd_ring_drain(&r, fake_read, &f, 9, 100, got_cb, &g, &st), 6);
}

/* The API on a simulated guest that is not Linux: clear states, nothing written. */
HVI_TEST(api_refuses_cleanly_without_a_linux_kernel)
{
    hvi_sim_config cfg = {.ram_size = 1u << 20};
    hvi_sim *sim = NULL;
    hvi_glue g;
    hvi_engine *e = NULL;
    REQUIRE(hvi_sim_new(&cfg, &sim) == HVI_OK && hvi_sim_glue(sim, &g) == HVI_OK &&
            hvi_engine_new(&g, &e) == HVI_OK);
    CHECK_STATUS(hvi_linux_indetour_start(e, NULL), HVI_E_STATE);
    CHECK(!hvi_linux_indetour_active(e));
    size_t n = 7;
    CHECK_STATUS(hvi_linux_indetour_drain(e, &n), HVI_E_STATE);
    CHECK_EQ_U64(n, 0);
    CHECK_STATUS(hvi_linux_vma_follow(e, 1), HVI_E_STATE);
    CHECK_STATUS(hvi_linux_vma_follow(e, 0), HVI_E_INVAL);
    hvi_linux_vma *v = NULL;
    size_t c = 0;
    CHECK_STATUS(hvi_linux_vma_view(e, 1, &v, &c), HVI_E_NOT_FOUND);
    CHECK(v == NULL && c == 0);
    hvi_linux_indetour_stats st;
    CHECK_STATUS(hvi_linux_indetour_stats_get(e, &st), HVI_E_STATE);
    CHECK_OK(hvi_linux_indetour_stop(e));
    CHECK_STATUS(hvi_linux_indetour_start(NULL, NULL), HVI_E_INVAL);
    CHECK(strcmp(hvi_lixd_event_name(HVI_LIXD_VMA_STORE), "vma-store") == 0);
    CHECK(strcmp(hvi_lixd_event_name(1000), "?") == 0);
    hvi_engine_free(e);
    hvi_sim_free(sim);
}

HVI_TEST_MAIN()
