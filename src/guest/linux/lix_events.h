/*
 * hvi guest/linux — events by detours: the argument decoding and the engine's own process and
 * module lists (private to the layer; the unit tests drive these on synthetic memory).
 *
 * Everything decoded here comes from guest registers and guest memory, i.e. is attacker
 * controlled: every pointer is checked (canonical kernel half, alignment) before it is followed,
 * strings are bounded, and a failure gives a negative status without touching the lists.
 */
#ifndef HVI_GUEST_LIX_EVENTS_H
#define HVI_GUEST_LIX_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest/linux/lix.h"

#define LIXE_PATH 256u
#define LIXE_MAX_PROCS LIX_MAX_TASKS
#define LIXE_MAX_MODS LIX_MAX_MODULES

struct lixe_proc {
    uint64_t task;
    int32_t pid, tgid, ppid;
    bool kernel_thread;
    char comm[17];
    char exe[LIXE_PATH];
    bool exe_pending; /* exec seen in the ring before the task's exe was readable */
};

struct lixe_mod {
    uint64_t addr;
    char name[57];
    uint32_t state;
    uint64_t base;
    uint32_t size, text_size, ro_size;
};

/* Sorted by pid / by module address; bounded by LIXE_MAX_PROCS / LIXE_MAX_MODS. */
struct lixe_lists {
    struct lixe_proc *p;
    size_t np, capp;
    struct lixe_mod *m;
    size_t nm, capm;
};

/* linux_binprm offsets (CAMI group Binprm). */
struct lixe_binprm {
    uint32_t filename, interp, file;
};

struct lixe_exec {
    uint64_t bprm;
    char filename[LIXE_PATH]; /* the path execve was given */
    char interp[LIXE_PATH];   /* script interpreter ("" or == filename when none) */
    char exe[LIXE_PATH];      /* the binary's path from bprm->file ("" when unreadable) */
};

/* current task: [gs_base + pcpu_off] (per-CPU `current_task`). HVI_E_FORMAT for a base or a
 * value that is not a kernel pointer. */
hvi_status lixe_current(const struct lix_kernel *k, uint64_t gs_base, uint64_t pcpu_off,
                        uint64_t *task);
/* The task's pid, tgid, parent's tgid, comm, kernel-thread flag and exe path. */
hvi_status lixe_decode_task(const struct lix_kernel *k, uint64_t task, struct lixe_proc *out);
hvi_status lixe_decode_exec(const struct lix_kernel *k, const struct lixe_binprm *b, uint64_t bprm,
                            struct lixe_exec *out);
hvi_status lixe_decode_module(const struct lix_kernel *k, uint64_t mod, struct lixe_mod *out);

/* Insert or replace (same pid / same address). HVI_E_LIMIT when full, HVI_E_NOMEM. */
hvi_status lixe_proc_put(struct lixe_lists *l, const struct lixe_proc *p);
struct lixe_proc *lixe_proc_find(struct lixe_lists *l, int32_t pid);
bool lixe_proc_del(struct lixe_lists *l, int32_t pid);
hvi_status lixe_mod_put(struct lixe_lists *l, const struct lixe_mod *m);
bool lixe_mod_del(struct lixe_lists *l, uint64_t addr);
void lixe_lists_clear(struct lixe_lists *l, bool procs, bool mods);
void lixe_lists_free(struct lixe_lists *l);

/* Which kernel function each event is detoured at (order: create, exec, exit, module load,
 * module unload). `hashes`/`n`: the selected CAMI entry's hooks list (hvi_cami_name_hash of each
 * name). With a non-empty list only a listed function is detoured: a function not in the list
 * leaves its event empty (`unlisted` names it), and the module pair is taken only from pairs whose
 * two functions are both listed. With no list (n == 0) every function found by `lookup` is used
 * (kallsyms fallback). `lookup` gives a function's address (true: found, a kernel pointer);
 * `want_exec` false leaves exec empty (no linux_binprm offsets). Pure: no guest access. */
#define LIXE_EVENTS 5
typedef bool (*lixe_lookup_fn)(void *ctx, const char *name, uint64_t *addr);
struct lixe_choice {
    uint64_t addr[LIXE_EVENTS];
    const char *fn[LIXE_EVENTS];       /* static name, NULL when none */
    bool from_cami[LIXE_EVENTS];       /* the function is in the hooks list */
    const char *unlisted[LIXE_EVENTS]; /* not detoured: this function is not in the list
                                          (module events: no pair is wholly listed, the
                                          first pair's function) */
};
void lixe_choose(const uint32_t *hashes, uint32_t n, bool want_exec, lixe_lookup_fn lookup,
                 void *ctx, struct lixe_choice *out);

/* Bytes of leading no-op instructions in code[0..len) (endbr64, the 5-byte ftrace nop, the
 * 6-byte nop, 66 90, 90): a detour resumes past them instead of stepping over. */
uint8_t lixe_nop_prefix(const uint8_t *code, size_t len);

/* A process or module record drained from the in-guest ring (lix_indetour.c calls this for
 * HVI_LIXD_FORK/EXEC/EXIT/MOD_LOAD/MOD_UNLOAD); ignored unless the events are started and that
 * event is recorded in the ring. */
struct lixd_record;
void lixe_ring_record(hvi_engine *e, const struct lixd_record *r);
/* Records were lost (ring overflow, torn or garbage records): the lists that depend on the ring
 * are walked again (guest paused). */
void lixe_ring_lost(hvi_engine *e);

/* kbasename(): the part after the last '/'. */
const char *lixe_basename(const char *path);

#endif
