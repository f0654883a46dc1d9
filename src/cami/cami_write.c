/* hvi cami — serializer: model -> CAMI 1.5 buffer (the 1.4 layout plus an integrity section).
 *
 * Objects are written children first, then the table that points to them; identical blobs
 * (member arrays, option blocks, patterns, whole structure tables) are written once and shared,
 * as the 1.4 producer does. The output depends only on the model: same input, same bytes. */
#include <stdio.h>
#include <stdlib.h>

#include "cami/cami_model.h"
#include "cami/cami_priv.h"

struct blob_ref {
    uint64_t hash;
    uint32_t off, len;
};

struct wbuf {
    uint8_t *b;
    size_t len, cap;
    struct blob_ref *tab; /* open addressing, size tcap (power of two) */
    size_t tcap, tused;
    bool oom;
};

static uint64_t fnv(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h | 1; /* 0 marks an empty slot */
}

static bool wgrow(struct wbuf *w, size_t add)
{
    if (w->oom || add > UINT32_MAX - w->len) {
        w->oom = true;
        return false;
    }
    if (w->len + add <= w->cap)
        return true;
    size_t nc = w->cap ? w->cap : 65536;
    while (nc < w->len + add)
        nc *= 2;
    uint8_t *nb = realloc(w->b, nc);
    if (!nb) {
        w->oom = true;
        return false;
    }
    w->b = nb;
    w->cap = nc;
    return true;
}

static bool tab_grow(struct wbuf *w)
{
    size_t nc = w->tcap ? w->tcap * 2 : 1024;
    struct blob_ref *nt = calloc(nc, sizeof(*nt));
    if (!nt)
        return false;
    for (size_t i = 0; i < w->tcap; i++) {
        if (!w->tab[i].hash)
            continue;
        size_t k = w->tab[i].hash & (nc - 1);
        while (nt[k].hash)
            k = (k + 1) & (nc - 1);
        nt[k] = w->tab[i];
    }
    free(w->tab);
    w->tab = nt;
    w->tcap = nc;
    return true;
}

/* Append `len` bytes (or reuse an identical earlier blob when share is set); returns offset. */
static uint32_t emit(struct wbuf *w, const void *data, size_t len, bool share)
{
    uint64_t h = 0;
    if (share && len) {
        if (w->tused * 2 >= w->tcap && !tab_grow(w)) {
            w->oom = true;
            return 0;
        }
        h = fnv(data, len);
        for (size_t k = h & (w->tcap - 1); w->tab[k].hash; k = (k + 1) & (w->tcap - 1))
            if (w->tab[k].hash == h && w->tab[k].len == len && !memcmp(w->b + w->tab[k].off, data, len))
                return w->tab[k].off;
    }
    if (!wgrow(w, len))
        return 0;
    uint32_t off = (uint32_t)w->len;
    if (len)
        memcpy(w->b + w->len, data, len);
    w->len += len;
    if (h) {
        size_t k = h & (w->tcap - 1);
        while (w->tab[k].hash)
            k = (k + 1) & (w->tcap - 1);
        w->tab[k] = (struct blob_ref){h, off, (uint32_t)len};
        w->tused++;
    }
    return off;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t emit_u16s(struct wbuf *w, const uint16_t *v, uint32_t n)
{
    uint8_t tmp[2 * 1024];
    if (n > 1024)
        n = 1024;
    for (uint32_t i = 0; i < n; i++)
        put16(tmp + 2 * i, v[i]);
    return emit(w, tmp, 2ull * n, true);
}

static uint32_t emit_u32s(struct wbuf *w, const uint32_t *v, uint32_t n)
{
    uint8_t tmp[4 * CAMI_MAX_FIELDS];
    if (n > CAMI_MAX_FIELDS)
        n = CAMI_MAX_FIELDS;
    for (uint32_t i = 0; i < n; i++)
        put32(tmp + 4 * i, v[i]);
    return emit(w, tmp, 4ull * n, true);
}

/* structure table of `kind` from fields (NULL = all zero) */
static uint32_t emit_fields(struct wbuf *w, unsigned kind, const struct cm_fields *f)
{
    static const uint32_t zero[CAMI_MAX_FIELDS];
    uint8_t tab[8 * CAMI_MAX_GROUPS];
    unsigned ng = cami_groups(kind);
    for (unsigned g = 0; g < ng; g++) {
        unsigned nf = cami_fields(kind, g);
        put32(tab + 8 * g, emit_u32s(w, f && f->values[g] ? f->values[g] : zero, nf));
        put32(tab + 8 * g + 4, nf);
    }
    return emit(w, tab, 8ull * ng, true);
}

static void prot_or(struct cm_prot *d, const struct cm_prot *s)
{
    d->off |= s->off;
    d->beta |= s->beta;
    d->feedback |= s->feedback;
    d->on |= s->on;
}

static uint32_t emit_prot(struct wbuf *w, const struct cm_prot *p)
{
    uint8_t b[CAMI_PROT_SIZE] = {0};
    put64(b, p->off);
    put64(b + 8, p->beta);
    put64(b + 16, p->feedback);
    put64(b + 24, p->on);
    return emit(w, b, sizeof(b), true);
}

static void emit_proc_list(struct wbuf *w, const struct cm_osopt *o, uint8_t *tab, uint32_t *k)
{
    for (uint32_t i = 0; i < o->nproc; i++, (*k)++) {
        uint8_t *e = tab + (size_t)CAMI_PROCPROT_SIZE * *k;
        const struct cm_proc *p = &o->procs[i];
        memset(e, 0, CAMI_PROCPROT_SIZE);
        for (size_t c = 0; c < strnlen(p->name, 64); c++) {
            if (p->enc)
                put16(e + 2 * c, (uint8_t)p->name[c]);
            else
                e[c] = (uint8_t)p->name[c];
        }
        put32(e + 64, emit_prot(w, &p->o));
        put32(e + 68, p->enc);
    }
}

/* the protection block of one OS: common | OS type | matching per-OS entry */
static uint32_t emit_osprot(struct wbuf *w, const struct cm_model *m, bool lix, const char *ver,
                            uint32_t build, bool kpti, bool is64)
{
    const struct cm_osopt *parts[3] = {&m->common, lix ? &m->linux_ : &m->windows, NULL};
    for (uint32_t i = 0; i < m->nper; i++) {
        const struct cm_per_os *p = &m->per_os[i];
        if (p->is_linux == lix && (lix ? !strcmp(p->version, ver) : (p->build == build && p->kpti == kpti && p->is64 == is64)))
            parts[2] = &p->o;
    }
    struct cm_prot core = {0}, shemu = {0};
    uint32_t nproc = 0;
    for (int i = 0; i < 3; i++)
        if (parts[i]) {
            prot_or(&core, &parts[i]->core);
            prot_or(&shemu, &parts[i]->shemu);
            nproc += parts[i]->nproc;
        }
    uint8_t *tab = calloc(nproc ? nproc : 1, CAMI_PROCPROT_SIZE);
    if (!tab) {
        w->oom = true;
        return 0;
    }
    uint32_t k = 0;
    for (int i = 0; i < 3; i++)
        if (parts[i])
            emit_proc_list(w, parts[i], tab, &k);
    uint8_t b[CAMI_OSPROT_SIZE] = {0};
    put32(b, emit_prot(w, &core));
    put32(b + 4, nproc);
    put32(b + 8, nproc ? emit(w, tab, (size_t)CAMI_PROCPROT_SIZE * nproc, true) : 0);
    put32(b + 12, emit_prot(w, &shemu));
    free(tab);
    return emit(w, b, sizeof(b), true);
}

static void emit_sigs(struct wbuf *w, const struct cm_sig *s, uint32_t n, uint8_t *sec)
{
    uint8_t *d = calloc(n ? n : 1, CAMI_SIG_SIZE);
    if (!d) {
        w->oom = true;
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *p = d + (size_t)CAMI_SIG_SIZE * i;
        uint32_t len = s[i].n > HVI_CAMI_MAX_PATTERN ? HVI_CAMI_MAX_PATTERN : s[i].n;
        put32(p, s[i].id);
        put32(p + 4, s[i].offset);
        put32(p + 8, s[i].flags);
        put16(p + 14, (uint16_t)len);
        put32(p + 16, emit_u16s(w, s[i].items, len));
    }
    put32(sec + 4, n);
    put32(sec + 12, emit(w, d, (size_t)CAMI_SIG_SIZE * n, false));
    free(d);
}

static void emit_lix(struct wbuf *w, const struct cm_model *m, uint8_t *sec)
{
    uint8_t *d = calloc(m->nlix ? m->nlix : 1, CAMI_LIX_SIZE);
    if (!d) {
        w->oom = true;
        return;
    }
    for (uint32_t i = 0; i < m->nlix; i++) {
        const struct cm_lix *e = &m->lix[i];
        uint8_t *p = d + (size_t)CAMI_LIX_SIZE * i;
        uint8_t *hooks = calloc(e->nhooks, 12);
        if (!hooks) {
            w->oom = true;
            break;
        }
        for (uint32_t h = 0; h < e->nhooks; h++) {
            put32(hooks + 12 * h, e->hooks[h].hash);
            hooks[12 * h + 4] = e->hooks[h].handler;
            hooks[12 * h + 5] = e->hooks[h].skip;
        }
        memcpy(p, e->version, strnlen(e->version, 63));
        put64(p + 64, e->min);
        put64(p + 72, e->max);
        put32(p + 80, cami_groups(CAMI_KIND_LIX));
        put32(p + 84, emit_fields(w, CAMI_KIND_LIX, &e->f));
        put32(p + 88, e->nhooks);
        put32(p + 92, emit(w, hooks, 12ull * e->nhooks, true));
        put32(p + 96, emit_osprot(w, m, true, e->version, 0, false, false));
        free(hooks);
    }
    put32(sec + 4, m->nlix);
    put32(sec + 12, emit(w, d, (size_t)CAMI_LIX_SIZE * m->nlix, false));
    free(d);
}

static const struct cm_um *um_for(const struct cm_model *m, uint32_t build, bool is64)
{
    for (uint32_t i = 0; i < m->num; i++)
        if (m->um[i].is64 == is64 && m->um[i].min <= build && build <= m->um[i].max)
            return &m->um[i];
    return NULL;
}

/* one function for `build`: patterns valid for it, narrowest range first (stable); 0 when none */
static bool emit_function(struct wbuf *w, const struct cm_func *f, uint32_t build, uint8_t *out)
{
    uint32_t idx[256], n = 0;
    for (uint32_t i = 0; i < f->npats && n < 256; i++)
        if (f->pats[i].min <= build && build <= f->pats[i].max)
            idx[n++] = i;
    if (!n)
        return false;
    for (uint32_t i = 1; i < n; i++) { /* insertion sort: stable */
        uint32_t k = idx[i], j = i;
        uint64_t wk = (uint64_t)f->pats[k].max - f->pats[k].min;
        while (j > 0 && (uint64_t)f->pats[idx[j - 1]].max - f->pats[idx[j - 1]].min > wk) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = k;
    }
    const struct cm_args *a = NULL;
    for (uint32_t i = 0; i < f->nargs && !a; i++)
        if (f->args[i].min <= build && build <= f->args[i].max)
            a = &f->args[i];
    uint32_t args_off = emit_u32s(w, a ? a->a : NULL, a ? a->n : 0);
    uint8_t pt[CAMI_PAT_SIZE * 256];
    memset(pt, 0, (size_t)CAMI_PAT_SIZE * n);
    for (uint32_t i = 0; i < n; i++) {
        const struct cm_pat *p = &f->pats[idx[i]];
        uint32_t len = p->n > HVI_CAMI_MAX_PATTERN ? HVI_CAMI_MAX_PATTERN : p->n;
        memcpy(pt + CAMI_PAT_SIZE * i, p->section, strnlen(p->section, 8));
        put32(pt + CAMI_PAT_SIZE * i + 8, len);
        put32(pt + CAMI_PAT_SIZE * i + 12, emit_u16s(w, p->items, len));
    }
    memset(out, 0, CAMI_FUNC_SIZE);
    put32(out, f->hash);
    put32(out + 4, n);
    put32(out + 8, emit(w, pt, (size_t)CAMI_PAT_SIZE * n, true));
    put32(out + 12, a ? a->n : 0);
    put32(out + 16, args_off);
    return true;
}

static uint32_t emit_winver(struct wbuf *w, const struct cm_win *e)
{
    uint8_t b[CAMI_WINVER_SIZE] = {0};
    size_t n1 = strnlen(e->ver, 63), n2 = strnlen(e->sver, 63);
    put64(b, n1 + 1);
    memcpy(b + 8, e->ver, n1);
    put64(b + 72, n2 + 1);
    memcpy(b + 80, e->sver, n2);
    return emit(w, b, sizeof(b), true);
}

static void emit_win_one(struct wbuf *w, const struct cm_model *m, const struct cm_win *e, uint8_t *p)
{
    uint8_t *ft = calloc(m->nfn ? m->nfn : 1, CAMI_FUNC_SIZE);
    if (!ft) {
        w->oom = true;
        return;
    }
    const struct cm_um *um = um_for(m, e->build, e->is64);
    put32(p, e->build);
    p[4] = e->kpti;
    p[5] = e->is64;
    put64(p + 8, e->min);
    put64(p + 16, e->max);
    put32(p + 24, cami_groups(CAMI_KIND_WIN_KM));
    put32(p + 28, emit_fields(w, CAMI_KIND_WIN_KM, &e->km));
    put32(p + 32, cami_groups(CAMI_KIND_WIN_UM));
    put32(p + 36, emit_fields(w, CAMI_KIND_WIN_UM, um ? &um->f : NULL));
    uint32_t nf = 0;
    for (uint32_t i = 0; i < m->nfn; i++)
        if (m->fn[i].g64 == e->is64 && emit_function(w, &m->fn[i], e->build, ft + (size_t)CAMI_FUNC_SIZE * nf))
            nf++;
    put32(p + 40, nf);
    put32(p + 44, emit(w, ft, (size_t)CAMI_FUNC_SIZE * nf, true));
    put32(p + 48, emit_osprot(w, m, false, NULL, e->build, e->kpti, e->is64));
    put32(p + 52, emit_winver(w, e));
    free(ft);
}

static int win_cmp(const void *a, const void *b)
{
    const struct cm_win *x = *(const struct cm_win *const *)a, *y = *(const struct cm_win *const *)b;
    if (x->build != y->build)
        return x->build < y->build ? -1 : 1;
    if (x->is64 != y->is64)
        return x->is64 ? 1 : -1;
    if (x->kpti != y->kpti)
        return x->kpti ? 1 : -1;
    return 0;
}

static void emit_win(struct wbuf *w, const struct cm_model *m, uint8_t *sec)
{
    const struct cm_win **order = calloc(m->nwin ? m->nwin : 1, sizeof(*order));
    uint8_t *d = calloc(m->nwin ? m->nwin : 1, CAMI_WIN_SIZE);
    if (!order || !d) {
        w->oom = true;
        free(order);
        free(d);
        return;
    }
    for (uint32_t i = 0; i < m->nwin; i++)
        order[i] = &m->win[i];
    qsort(order, m->nwin, sizeof(*order), win_cmp); /* keys are unique: deterministic */
    for (uint32_t i = 0; i < m->nwin; i++)
        emit_win_one(w, m, order[i], d + (size_t)CAMI_WIN_SIZE * i);
    put32(sec + 4, m->nwin);
    put32(sec + 12, emit(w, d, (size_t)CAMI_WIN_SIZE * m->nwin, false));
    free(order);
    free(d);
}

#define NSECT 5u

hvi_status cami_write(const struct cm_model *m, uint8_t **out, size_t *out_len, char *msg, size_t msg_len)
{
    struct wbuf w;
    memset(&w, 0, sizeof(w));
    uint8_t hdr[CAMI_HEADER_SIZE + CAMI_SECTION_SIZE * NSECT] = {0};
    emit(&w, hdr, sizeof(hdr), false);
    uint8_t *sec = hdr + CAMI_HEADER_SIZE;
    static const uint32_t hints[NSECT] = {
        HVI_CAMI_HINT_SYSCALLS, HVI_CAMI_HINT_SUPPORTED_OS | HVI_CAMI_HINT_LINUX,
        HVI_CAMI_HINT_SUPPORTED_OS | HVI_CAMI_HINT_WINDOWS, HVI_CAMI_HINT_DIST_SIG | HVI_CAMI_HINT_LINUX,
        HVI_CAMI_HINT_INTEGRITY};
    for (unsigned i = 0; i < NSECT; i++)
        put32(sec + CAMI_SECTION_SIZE * i, hints[i]);
    emit_sigs(&w, m->sys, m->nsys, sec);
    emit_lix(&w, m, sec + 16);
    emit_win(&w, m, sec + 32);
    emit_sigs(&w, m->dist, m->ndist, sec + 48);
    uint8_t integ[CAMI_INTEGRITY_SIZE] = {0};
    put32(integ, CAMI_CHECKSUM_CRC32);
    put32(sec + 64 + 4, 1);
    put32(sec + 64 + 12, emit(&w, integ, sizeof(integ), false));
    free(w.tab);
    if (w.oom) {
        free(w.b);
        snprintf(msg, msg_len, "out of memory or output larger than 4 GiB");
        return HVI_E_NOMEM;
    }
    put32(hdr, HVI_CAMI_MAGIC);
    put32(hdr + 4, HVI_CAMI_WRITE_MINOR);
    put32(hdr + 8, HVI_CAMI_MAJOR);
    put32(hdr + 16, (uint32_t)w.len);
    put32(hdr + 20, NSECT);
    put32(hdr + 24, CAMI_HEADER_SIZE);
    memcpy(w.b, hdr, sizeof(hdr));
    uint32_t io = cami_le32(sec + 64 + 12);
    put32(w.b + io + 8, (uint32_t)w.len);
    put32(w.b + io + 4, cami_checksum(w.b, w.len, (size_t)io + 4));
    *out = w.b;
    *out_len = w.len;
    return HVI_OK;
}
