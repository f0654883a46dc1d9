/*
 * unit: the exec stub that asks the engine (lixd_stub_params.ask): decoded by Zydis, and
 * executed natively on the host. The doorbell lies in a read-only page: the stub's store to it
 * faults, and the SIGSEGV handler plays the engine stopped at a write watchpoint — it checks the
 * record is complete and asking (uncommitted), writes the verdict, makes the page writable and
 * returns, so the store is re-executed and the stub goes on. The stub is entered through a
 * thunk standing for begin_new_exec (`call stub; xor eax, eax; ret`): allowed, the call returns
 * 0 through the thunk; denied, the stub returns -EACCES straight to the thunk's caller.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
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

#define CUR_OFF 0x1fb80u
#define NREC 64u

static const char *const expected_tail[] = {"mov qword ptr [rcx+0x30], 0x01",
                                            "mov [rip+D], rcx",
                                            "inc rax",
                                            "mov [rcx], rax",
                                            "cmp qword ptr [rcx+0x30], 0x03",
                                            "pop rdx",
                                            "pop rcx",
                                            "pop rax",
                                            "jnz +0x0b",
                                            "add rsp, 0x08",
                                            "mov rax, 0xFFFFFFFFFFFFFFF3",
                                            "ret",
                                            "int3"};

HVI_TEST(ask_stub_ends_with_doorbell_commit_and_early_return)
{
    struct lixd_stub_params p = {.stub_va = 0x100000,
                                 .head_va = 0x200000,
                                 .records_va = 0x200040,
                                 .mask = 1023,
                                 .event_id = HVI_LIXD_EXEC,
                                 .current_task = CUR_OFF,
                                 .task_load = 0x970,
                                 .str = true,
                                 .str_deref = true,
                                 .str_off = 0x48,
                                 .ask = true,
                                 .doorbell_va = 0x200008};
    uint8_t b[LIXD_STUB_MAX];
    size_t len = lixd_stub_emit(&p, b, sizeof(b));
    REQUIRE(len > 0 && len <= LIXD_STUB_MAX);
    fprintf(stderr, "  exec stub with the doorbell: %zu bytes (of %u)\n", len, LIXD_STUB_MAX);
    hvi_insn insn[96];
    size_t n = 0, at[96];
    for (size_t off = 0; off < len && n < 96; n++) {
        REQUIRE(hvi_decode_buffer(b + off, len - off, 64, p.stub_va + off, NULL, &insn[n]) ==
                HVI_OK);
        at[n] = off;
        off += insn[n].len;
    }
    size_t nt = sizeof(expected_tail) / sizeof(expected_tail[0]);
    REQUIRE(n > nt);
    for (size_t i = 0; i < nt; i++) {
        const hvi_insn *x = &insn[n - nt + i];
        const char *want = expected_tail[i];
        bool ok;
        if (!strcmp(want, "mov [rip+D], rcx")) { /* the doorbell, reached rip-relative */
            int32_t d;
            memcpy(&d, x->bytes + 3, 4);
            ok = x->len == 7 && x->bytes[0] == 0x48 && x->bytes[1] == 0x89 && x->bytes[2] == 0x0d &&
                 p.stub_va + at[n - nt + i] + 7 + (uint64_t)(int64_t)d == p.doorbell_va;
        } else if (!strcmp(want, "jnz +0x0b")) { /* lands on the final ret */
            ok =
                x->len == 2 && x->bytes[0] == 0x75 && at[n - nt + i] + 2 + x->bytes[1] == at[n - 2];
        } else {
            ok = strcasecmp(x->text, want) == 0 ||
                 /* Zydis spells some immediates differently: compare the bytes' meaning */
                 (strstr(want, "0xFFFFFFFFFFFFFFF3") && x->len == 7 && x->bytes[3] == 0xf3);
        }
        if (!ok)
            fprintf(stderr, "  insn %zu: got \"%s\", want \"%s\"\n", n - nt + i, x->text, want);
        CHECK(ok);
    }
    /* without ask: the plain exec stub, shorter, no doorbell */
    p.ask = false;
    size_t plain = lixd_stub_emit(&p, b, sizeof(b));
    CHECK(plain > 0 && plain < len);
    /* a doorbell out of rel32 reach is refused */
    p.ask = true;
    p.doorbell_va = 0x100000 + (1ull << 33);
    CHECK_EQ_U64(lixd_stub_emit(&p, b, sizeof(b)), 0);
}

/* ---- native execution ---- */

static struct {
    uint8_t *code, *ring, *bell_page;
    uint64_t verdict;    /* what the "engine" answers */
    int rings;           /* doorbell stops seen */
    bool record_ok;      /* the record was complete, asking and uncommitted at the stop */
    uint64_t bell_value; /* the record address the stub stored */
} g;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    uint8_t *a = si->si_addr;
    if (a < g.bell_page || a >= g.bell_page + 4096)
        abort(); /* not our doorbell: a real crash */
    g.rings++;
    /* the record being asked about: the one whose seq is 0 and whose verdict slot says ASK */
    for (uint32_t i = 0; i < NREC; i++) {
        struct lixd_record *r = (void *)(g.ring + LIXD_HDR_SIZE + i * LIXD_REC_SIZE);
        if (r->id == HVI_LIXD_EXEC && r->seq == 0 &&
            r->args[LIXD_VERDICT_SLOT] == LIXD_VERDICT_ASK) {
            g.record_ok = r->args[0] != 0 && r->task != 0 && r->str[0] == '/';
            r->args[LIXD_VERDICT_SLOT] = g.verdict;
        }
    }
    mprotect(g.bell_page, 4096, PROT_READ | PROT_WRITE); /* the store runs again */
}

struct call {
    uint64_t task, rdi;
    uint8_t *percpu;
    long ret;
    int ok;
};

static void *thr(void *arg)
{
    struct call *c = arg;
    memcpy(c->percpu + CUR_OFF, &c->task, 8);
    if (syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)c->percpu) != 0)
        return NULL;
    long (*fn)(uint64_t) = NULL;
    uint8_t *thunk = g.code + 1024;
    memcpy(&fn, &thunk, sizeof(fn));
    c->ret = fn(c->rdi);
    c->ok = 1;
    return NULL;
}

static bool run(uint64_t task, uint64_t bprm, long *ret)
{
    static uint8_t percpu[CUR_OFF + 64];
    struct call c = {task, bprm, percpu, 0, 0};
    pthread_t th;
    if (pthread_create(&th, NULL, thr, &c) != 0)
        return false;
    pthread_join(th, NULL);
    *ret = c.ret;
    return c.ok;
}

HVI_TEST(ask_stub_runs_natively_allowed_returns_into_the_function_denied_returns_eacces)
{
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
    uint8_t *m = mmap(NULL, 1u << 20, PROT_READ | PROT_WRITE | PROT_EXEC,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        SKIP_CASE("no RWX anonymous mapping allowed here");
    g.code = m;
    g.ring = m + 8192;
    g.bell_page = m + 4096; /* the doorbell alone in its page, read-only until it rings */
    memset(g.ring, 0, LIXD_HDR_SIZE + NREC * LIXD_REC_SIZE);
    struct lixd_stub_params p = {.stub_va = (uint64_t)(uintptr_t)m,
                                 .head_va = (uint64_t)(uintptr_t)g.ring,
                                 .records_va = (uint64_t)(uintptr_t)g.ring + LIXD_HDR_SIZE,
                                 .mask = NREC - 1,
                                 .event_id = HVI_LIXD_EXEC,
                                 .current_task = CUR_OFF,
                                 .task_load = 16,
                                 .str = true,
                                 .str_deref = true,
                                 .str_off = 24,
                                 .ask = true,
                                 .doorbell_va = (uint64_t)(uintptr_t)g.bell_page + 8};
    REQUIRE(lixd_stub_emit(&p, m, LIXD_STUB_MAX) > 0);
    /* the thunk for begin_new_exec: call stub; xor eax, eax; ret */
    uint8_t *thunk = m + 1024;
    REQUIRE(lixd_call_emit((uint64_t)(uintptr_t)thunk, (uint64_t)(uintptr_t)m, thunk));
    static const uint8_t rest[] = {0x31, 0xc0, 0xc3};
    memcpy(thunk + 5, rest, sizeof(rest));
    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    REQUIRE(sigaction(SIGSEGV, &sa, &old) == 0);

    static uint64_t task[4] = {0, 0, 0x0000004d0000004eull, 0};
    static char name[] = "/bin/uname";
    uint64_t bprm[8] = {0};
    bprm[3] = (uint64_t)(uintptr_t)name;
    long ret = 0;
    /* denied: -EACCES to the caller, the record committed with the verdict */
    g.verdict = LIXD_VERDICT_DENY;
    REQUIRE(mprotect(g.bell_page, 4096, PROT_READ) == 0);
    bool ran = run((uint64_t)(uintptr_t)task, (uint64_t)(uintptr_t)bprm, &ret);
    if (!ran) {
        sigaction(SIGSEGV, &old, NULL);
        munmap(m, 1u << 20);
        SKIP_CASE("arch_prctl(ARCH_SET_GS) refused: cannot give the stub a GS base");
    }
    struct lixd_record *r0 = (void *)(g.ring + LIXD_HDR_SIZE);
    uint64_t bell = 0;
    memcpy(&bell, g.bell_page + 8, 8);
    CHECK_EQ_U64(g.rings, 1);
    CHECK(g.record_ok);
    CHECK_EQ_U64((uint64_t)ret, (uint64_t)(int64_t)-LIXD_EACCES);
    CHECK_EQ_U64(r0->seq, 1);
    CHECK_EQ_U64(r0->args[LIXD_VERDICT_SLOT], LIXD_VERDICT_DENY);
    CHECK_EQ_U64(bell, (uint64_t)(uintptr_t)r0);
    CHECK_STR(r0->str, "/bin/uname");
    CHECK_EQ_U64(r0->args[4], task[2]);
    /* allowed: back into the function (the thunk returns 0) */
    g.verdict = LIXD_VERDICT_ALLOW;
    g.record_ok = false;
    REQUIRE(mprotect(g.bell_page, 4096, PROT_READ) == 0);
    REQUIRE(run((uint64_t)(uintptr_t)task, (uint64_t)(uintptr_t)bprm, &ret));
    struct lixd_record *r1 = (void *)(g.ring + LIXD_HDR_SIZE + LIXD_REC_SIZE);
    CHECK_EQ_U64(g.rings, 2);
    CHECK(g.record_ok);
    CHECK_EQ_U64(ret, 0);
    CHECK_EQ_U64(r1->seq, 2);
    CHECK_EQ_U64(r1->args[LIXD_VERDICT_SLOT], LIXD_VERDICT_ALLOW);
    /* nobody watching (the page stays writable): the stub's own ASK stands, the exec goes on */
    REQUIRE(run((uint64_t)(uintptr_t)task, (uint64_t)(uintptr_t)bprm, &ret));
    struct lixd_record *r2 = (void *)(g.ring + LIXD_HDR_SIZE + 2 * LIXD_REC_SIZE);
    CHECK_EQ_U64(g.rings, 2);
    CHECK_EQ_U64(ret, 0);
    CHECK_EQ_U64(r2->seq, 3);
    CHECK_EQ_U64(r2->args[LIXD_VERDICT_SLOT], LIXD_VERDICT_ASK);
    sigaction(SIGSEGV, &old, NULL);
    munmap(m, 1u << 20);
#else
    SKIP_CASE("not an x86-64 host");
#endif
}

HVI_TEST_MAIN()
