/* hvi cami — the compiler's in-memory model of the YAML sources (private). */
#ifndef HVI_CAMI_MODEL_H
#define HVI_CAMI_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cami/cami_tables.h"
#include "hvi/status.h"

struct cm_arena;
void *cm_alloc(struct cm_arena *a, size_t n, size_t size);
/* Grow an arena array to hold index n (capacity doubles); returns the (maybe moved) array. */
void *cm_push(struct cm_arena *a, void *arr, uint32_t *count, uint32_t *cap, size_t size);
struct cm_arena *cm_arena_new(void);
void cm_arena_free(struct cm_arena *a);

struct cm_prot {
    uint64_t off, beta, feedback, on;
};
struct cm_proc {
    char name[64];
    uint32_t enc;
    struct cm_prot o;
};
struct cm_osopt {
    struct cm_prot core, shemu;
    struct cm_proc *procs;
    uint32_t nproc, cap;
};
struct cm_hook {
    uint32_t hash;
    uint8_t handler, skip;
};
/* one opaque-field set: values[g] has cami_fields(kind, g) entries */
struct cm_fields {
    uint32_t *values[CAMI_MAX_GROUPS];
};
struct cm_lix {
    char version[64];
    uint64_t min, max;
    struct cm_hook *hooks;
    uint32_t nhooks, cap;
    struct cm_fields f;
};
struct cm_win {
    uint32_t build;
    bool kpti, is64;
    uint64_t min, max;
    char ver[64], sver[64];
    struct cm_fields km;
};
struct cm_um {
    bool is64;
    uint32_t min, max;
    struct cm_fields f;
};
struct cm_args {
    uint32_t min, max, n;
    uint32_t a[8];
};
struct cm_pat {
    char section[8];
    uint32_t min, max, n;
    uint16_t *items;
};
struct cm_func {
    uint32_t hash;
    bool g64;
    char name[64];
    struct cm_args *args;
    uint32_t nargs, capa;
    struct cm_pat *pats;
    uint32_t npats, capp;
};
struct cm_sig {
    uint32_t id, offset, flags, n;
    uint16_t *items;
};
struct cm_per_os {
    bool is_linux;
    char version[64];
    uint32_t build;
    bool kpti, is64;
    struct cm_osopt o;
};

struct cm_model {
    struct cm_arena *a;
    struct cm_lix *lix;
    uint32_t nlix, caplix;
    struct cm_win *win;
    uint32_t nwin, capwin;
    struct cm_um *um;
    uint32_t num, capum;
    struct cm_func *fn;
    uint32_t nfn, capfn;
    struct cm_sig *sys, *dist;
    uint32_t nsys, capsys, ndist, capdist;
    struct cm_osopt common, linux_, windows;
    struct cm_per_os *per_os;
    uint32_t nper, capper;
};

/* Parse one YAML file into the model. msg gets "file:line:col: reason" on error. */
hvi_status cami_yaml_file(struct cm_model *m, const char *path, const char *text, size_t len, char *msg,
                   size_t msg_len);
/* Serialize the model (hvi 1.5 layout). */
hvi_status cami_write(const struct cm_model *m, uint8_t **out, size_t *out_len, char *msg, size_t msg_len);

#endif
