/* hvi cami — YAML front end of the compiler (the only file that includes yaml.h).
 *
 * Each document is a tagged object (supported OS, UM fields, function), a sequence of
 * signatures, or the options mapping. Every error names file:line:column. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "cami/cami_model.h"
#include "cami/cami_priv.h"
#include "hvi/hvi.h"

#define TAG_PREFIX "!"

struct yc {
    yaml_document_t *doc;
    const char *file;
    char *msg;
    size_t msg_len;
    struct cm_model *m;
    uint64_t budget; /* scalar reads left: aliases cannot make the work explode */
};

/* Scalars read per byte of input at most (aliases re-read their anchor's nodes). */
#define CAMI_YAML_WORK_FACTOR 8u
#define CAMI_YAML_WORK_SLACK 100000u

static hvi_status yerr(struct yc *y, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static hvi_status yerr(struct yc *y, const yaml_node_t *n, const char *fmt, ...)
{
    if (y->msg && y->msg_len) {
        int k = snprintf(y->msg, y->msg_len, "%s:%zu:%zu: ", y->file, n ? n->start_mark.line + 1 : 0,
                         n ? n->start_mark.column + 1 : 0);
        if (k >= 0 && (size_t)k < y->msg_len) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(y->msg + k, y->msg_len - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return HVI_E_FORMAT;
}

static const char *tag_of(const yaml_node_t *n)
{
    const char *t = (const char *)n->tag;
    if (!t || !strncmp(t, "tag:yaml.org,2002:", 18))
        return "";
    return t[0] == '!' ? t + 1 : t;
}

static bool has_tag(const yaml_node_t *n, const char *tag) { return !strcmp(tag_of(n), tag); }

static hvi_status want_tag(struct yc *y, const yaml_node_t *n, const char *tag)
{
    if (!has_tag(n, tag))
        return yerr(y, n, "expected tag !%s, found '%s'", tag, *tag_of(n) ? tag_of(n) : "(none)");
    return HVI_OK;
}

static yaml_node_t *node(struct yc *y, int id) { return yaml_document_get_node(y->doc, id); }

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* Named constants of the format. */
struct konst {
    const char *name;
    uint64_t v;
};
static const struct konst konsts[] = {
    {"WIN_PATTERN_MIN_VERSION_ANY", 0},       {"WIN_PATTERN_MAX_VERSION_ANY", 0xFFFFFFFFu},
    {"SYSCALL_SIG_FLAG_KPTI", 0x80000000u},   {"IG_GUEST_WINDOWS", 1},
    {"IG_GUEST_LINUX", 2},                    {"LOC_SYSENTER", 1},
    {"LOC_SYSCALL", 2},                       {"True", 1},
    {"False", 0},                             {"true", 1},
    {"false", 0},                             {"DET_ARG_RAX", 0},
    {"DET_ARG_RCX", 1},                       {"DET_ARG_RDX", 2},
    {"DET_ARG_RBX", 3},                       {"DET_ARG_RSP", 4},
    {"DET_ARG_RBP", 5},                       {"DET_ARG_RSI", 6},
    {"DET_ARG_RDI", 7},                       {"DET_ARG_R8", 8},
    {"DET_ARG_R9", 9},                        {"DET_ARG_R10", 10},
    {"DET_ARG_R11", 11},                      {"DET_ARG_R12", 12},
    {"DET_ARG_R13", 13},                      {"DET_ARG_R14", 14},
    {"DET_ARG_R15", 15},
};

static bool parse_uint(const char *s, uint64_t *v)
{
    if (!s || !*s)
        return false;
    for (size_t i = 0; i < sizeof(konsts) / sizeof(konsts[0]); i++)
        if (!strcmp(s, konsts[i].name)) {
            *v = konsts[i].v;
            return true;
        }
    if (!strncmp(s, "DET_ARG_STACK", 13)) {
        uint64_t k;
        if (!parse_uint(s + 13, &k) || k > 0xFFFF)
            return false;
        *v = k << 16 | 0xFFFF;
        return true;
    }
    int base = (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? 16 : 10;
    const char *p = base == 16 ? s + 2 : s;
    uint64_t x = 0;
    if (!*p)
        return false;
    for (; *p; p++) {
        unsigned d;
        if (*p >= '0' && *p <= '9')
            d = (unsigned)(*p - '0');
        else if (base == 16 && ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'f'))
            d = (unsigned)((*p | 0x20) - 'a' + 10);
        else
            return false;
        if (x > (UINT64_MAX - d) / (unsigned)base)
            return false;
        x = x * (unsigned)base + d;
    }
    *v = x;
    return true;
}

static hvi_status get_uint(struct yc *y, const yaml_node_t *n, uint64_t max, uint64_t *v)
{
    const char *s = scalar(n);
    if (y->budget-- == 0)
        return yerr(y, n, "too much work for the input size (alias expansion?)");
    if (!s)
        return yerr(y, n, "expected a number");
    if (!parse_uint(s, v))
        return yerr(y, n, "'%s' is not a number or known constant", s);
    if (*v > max)
        return yerr(y, n, "value %s is out of range (max 0x%llx)", s, (unsigned long long)max);
    return HVI_OK;
}

static hvi_status get_str(struct yc *y, const yaml_node_t *n, char *dst, size_t cap)
{
    const char *s = scalar(n);
    if (!s)
        return yerr(y, n, "expected a string");
    if (n->data.scalar.length >= cap || strlen(s) != n->data.scalar.length)
        return yerr(y, n, "string '%.40s' is too long (max %zu bytes) or has NUL", s, cap - 1);
    memcpy(dst, s, n->data.scalar.length + 1);
    return HVI_OK;
}

/* Mapping walk: keys must be in `keys` (NULL-terminated); found[i] gets the value node. */
static hvi_status map_keys(struct yc *y, const yaml_node_t *n, const char *const *keys, yaml_node_t **found,
                           unsigned required)
{
    if (n->type != YAML_MAPPING_NODE)
        return yerr(y, n, "expected a mapping");
    unsigned nk = 0;
    while (keys[nk])
        found[nk++] = NULL;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(y, p->key);
        const char *ks = scalar(k);
        unsigned i = 0;
        while (ks && i < nk && strcmp(keys[i], ks))
            i++;
        if (!ks || i == nk)
            return yerr(y, k, "unknown key '%s'", ks ? ks : "?");
        if (found[i])
            return yerr(y, k, "duplicate key '%s'", ks);
        found[i] = node(y, p->value);
    }
    for (unsigned i = 0; i < nk; i++)
        if ((required >> i & 1) && !found[i])
            return yerr(y, n, "missing key '%s'", keys[i]);
    return HVI_OK;
}

#define SEQ_EACH(y, n, it)                                                                        \
    for (yaml_node_item_t *it = (n)->data.sequence.items.start; it < (n)->data.sequence.items.top; it++)

static hvi_status want_seq(struct yc *y, const yaml_node_t *n)
{
    return n->type == YAML_SEQUENCE_NODE ? HVI_OK : yerr(y, n, "expected a sequence");
}

/* ---- opaque fields ---------------------------------------------------------------------- */

static hvi_status parse_group(struct yc *y, const yaml_node_t *n, unsigned kind, unsigned g, uint32_t *vals)
{
    hvi_status st = want_tag(y, n, "opaque_fields");
    if (st == HVI_OK && n->type != YAML_MAPPING_NODE)
        st = yerr(y, n, "expected a mapping of fields");
    if (st != HVI_OK)
        return st;
    uint64_t seen = 0; /* duplicate detection for the first 64 fields */
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(y, p->key);
        const char *ks = scalar(k);
        int f = ks ? cami_find_field(kind, g, ks) : -1;
        if (f < 0)
            return yerr(y, k, "unknown field '%s' in group %s", ks ? ks : "?", cami_group_name(kind, g));
        if (f < 64 && (seen >> f & 1))
            return yerr(y, k, "duplicate field '%s'", ks);
        seen |= f < 64 ? 1ull << f : 0;
        uint64_t v;
        if ((st = get_uint(y, node(y, p->value), UINT32_MAX, &v)) != HVI_OK)
            return st;
        vals[f] = (uint32_t)v;
    }
    return HVI_OK;
}

static hvi_status parse_fields(struct yc *y, const yaml_node_t *n, const char *type, unsigned kind,
                               struct cm_fields *out)
{
    static const char *const keys[] = {"type", "os_structs", NULL};
    yaml_node_t *v[2];
    hvi_status st = want_tag(y, n, "opaque_structures");
    if (st == HVI_OK)
        st = map_keys(y, n, keys, v, 3);
    if (st != HVI_OK)
        return st;
    const char *t = scalar(v[0]);
    if (!t || strcmp(t, type))
        return yerr(y, v[0], "structure type must be '%s'", type);
    for (unsigned g = 0; g < cami_groups(kind); g++) {
        out->values[g] = cm_alloc(y->m->a, cami_fields(kind, g) + 1, sizeof(uint32_t));
        if (!out->values[g])
            return HVI_E_NOMEM;
    }
    if (v[1]->type != YAML_MAPPING_NODE)
        return yerr(y, v[1], "os_structs must be a mapping of groups");
    for (yaml_node_pair_t *p = v[1]->data.mapping.pairs.start; p < v[1]->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(y, p->key);
        int g = scalar(k) ? cami_find_group(kind, scalar(k)) : -1;
        if (g < 0)
            return yerr(y, k, "unknown group '%s' for %s", scalar(k) ? scalar(k) : "?", type);
        if ((st = parse_group(y, node(y, p->value), kind, (unsigned)g, out->values[g])) != HVI_OK)
            return st;
    }
    return HVI_OK;
}

/* ---- intro versions ----------------------------------------------------------------------- */

static hvi_status parse_intro_ver(struct yc *y, const yaml_node_t *n, uint64_t *out)
{
    static const char *const keys[] = {"major", "minor", "revision", "build", NULL};
    yaml_node_t *v[4];
    hvi_status st = want_tag(y, n, "introcore_version");
    if (st == HVI_OK)
        st = map_keys(y, n, keys, v, 0xF);
    uint64_t part[4] = {0};
    for (int i = 0; st == HVI_OK && i < 4; i++)
        st = get_uint(y, v[i], 0xFFFF, &part[i]);
    if (st == HVI_OK)
        *out = part[3] | part[2] << 16 | part[1] << 32 | part[0] << 48;
    return st;
}

static hvi_status parse_intro_range(struct yc *y, yaml_node_t *mn, yaml_node_t *mx, uint64_t *min, uint64_t *max)
{
    hvi_status st = HVI_OK;
    *min = 0;
    *max = UINT64_MAX;
    if (mn)
        st = parse_intro_ver(y, mn, min);
    if (st == HVI_OK && mx)
        st = parse_intro_ver(y, mx, max);
    return st;
}

/* ---- patterns ----------------------------------------------------------------------------- */

static hvi_status parse_code(struct yc *y, const yaml_node_t *n, uint16_t **items, uint32_t *count)
{
    static const char *const keys[] = {"code", NULL};
    yaml_node_t *v[1];
    hvi_status st = want_tag(y, n, "code_pattern");
    if (st == HVI_OK)
        st = map_keys(y, n, keys, v, 1);
    if (st == HVI_OK)
        st = want_seq(y, v[0]);
    if (st != HVI_OK)
        return st;
    uint32_t total = 0, cap = 0;
    uint16_t *arr = NULL;
    SEQ_EACH(y, v[0], it) {
        yaml_node_t *line = node(y, *it);
        if ((st = want_seq(y, line)) != HVI_OK)
            return st;
        SEQ_EACH(y, line, jt) {
            uint64_t b;
            if ((st = get_uint(y, node(y, *jt), 0xFFFF, &b)) != HVI_OK)
                return st;
            if (total >= 0xFFFF)
                return yerr(y, line, "pattern is longer than 65535 items");
            arr = cm_push(y->m->a, arr, &total, &cap, sizeof(*arr));
            if (!arr)
                return HVI_E_NOMEM;
            arr[total - 1] = (uint16_t)b;
        }
    }
    if (!total)
        return yerr(y, n, "empty code pattern");
    *items = arr;
    *count = total;
    return HVI_OK;
}

/* ---- Linux ---------------------------------------------------------------------------------- */

static hvi_status parse_hook(struct yc *y, const yaml_node_t *n, struct cm_hook *h)
{
    static const char *const keys[] = {"name", "handler", "skip_on_boot", NULL};
    yaml_node_t *v[3];
    char name[128];
    uint64_t a = 0, b = 0;
    hvi_status st = want_tag(y, n, "intro_update_lix_hook");
    if (st == HVI_OK)
        st = map_keys(y, n, keys, v, 1);
    if (st == HVI_OK)
        st = get_str(y, v[0], name, sizeof(name));
    if (st == HVI_OK && v[1])
        st = get_uint(y, v[1], 0xFF, &a);
    if (st == HVI_OK && v[2])
        st = get_uint(y, v[2], 1, &b);
    h->hash = hvi_cami_name_hash(name);
    h->handler = (uint8_t)a;
    h->skip = (uint8_t)b;
    return st;
}

static hvi_status doc_lix(struct yc *y, const yaml_node_t *n)
{
    static const char *const keys[] = {"version", "hooks", "fields", "min_intro_ver", "max_intro_ver", NULL};
    yaml_node_t *v[5];
    struct cm_model *m = y->m;
    hvi_status st = map_keys(y, n, keys, v, 7);
    if (st != HVI_OK)
        return st;
    struct cm_lix e;
    memset(&e, 0, sizeof(e));
    if ((st = get_str(y, v[0], e.version, sizeof(e.version))) != HVI_OK)
        return st;
    for (uint32_t i = 0; i < m->nlix; i++)
        if (!strcmp(m->lix[i].version, e.version))
            return yerr(y, v[0], "duplicate Linux entry '%s'", e.version);
    if ((st = parse_intro_range(y, v[3], v[4], &e.min, &e.max)) != HVI_OK)
        return st;
    if ((st = want_seq(y, v[1])) != HVI_OK)
        return st;
    SEQ_EACH(y, v[1], it) {
        if (e.nhooks >= CAMI_LIX_MAX_HOOKS)
            return yerr(y, v[1], "more than %u hooks", CAMI_LIX_MAX_HOOKS);
        if (!(e.hooks = cm_push(m->a, e.hooks, &e.nhooks, &e.cap, sizeof(*e.hooks))))
            return HVI_E_NOMEM;
        if ((st = parse_hook(y, node(y, *it), &e.hooks[e.nhooks - 1])) != HVI_OK)
            return st;
    }
    if (!e.nhooks)
        return yerr(y, v[1], "a Linux entry needs at least one hook");
    if ((st = parse_fields(y, v[2], "lix_fields", CAMI_KIND_LIX, &e.f)) != HVI_OK)
        return st;
    if (!(m->lix = cm_push(m->a, m->lix, &m->nlix, &m->caplix, sizeof(*m->lix))))
        return HVI_E_NOMEM;
    m->lix[m->nlix - 1] = e;
    return HVI_OK;
}

/* ---- Windows ---------------------------------------------------------------------------------- */

static hvi_status parse_winver(struct yc *y, const yaml_node_t *n, struct cm_win *w)
{
    static const char *const keys[] = {"version_string", "server_version_string", NULL};
    yaml_node_t *v[2];
    hvi_status st = want_tag(y, n, "intro_update_win_version_string");
    if (st == HVI_OK)
        st = map_keys(y, n, keys, v, 1);
    if (st == HVI_OK)
        st = get_str(y, v[0], w->ver, sizeof(w->ver));
    if (st == HVI_OK && v[1])
        st = get_str(y, v[1], w->sver, sizeof(w->sver));
    return st;
}

static hvi_status get_bool(struct yc *y, const yaml_node_t *n, bool *b)
{
    uint64_t v = 0;
    hvi_status st = get_uint(y, n, 1, &v);
    *b = v != 0;
    return st;
}

static hvi_status doc_win(struct yc *y, const yaml_node_t *n)
{
    static const char *const keys[] = {"build_number", "version_string", "kpti_installed", "is_64",
                                       "km_fields", "min_intro_ver", "max_intro_ver", NULL};
    yaml_node_t *v[7];
    struct cm_model *m = y->m;
    struct cm_win w;
    uint64_t b;
    memset(&w, 0, sizeof(w));
    hvi_status st = map_keys(y, n, keys, v, 0x1F);
    if (st == HVI_OK)
        st = get_uint(y, v[0], UINT32_MAX, &b);
    if (st == HVI_OK)
        st = parse_winver(y, v[1], &w);
    if (st == HVI_OK)
        st = get_bool(y, v[2], &w.kpti);
    if (st == HVI_OK)
        st = get_bool(y, v[3], &w.is64);
    if (st != HVI_OK)
        return st;
    w.build = (uint32_t)b;
    for (uint32_t i = 0; i < m->nwin; i++)
        if (m->win[i].build == w.build && m->win[i].kpti == w.kpti && m->win[i].is64 == w.is64)
            return yerr(y, n, "duplicate Windows entry (build %u, kpti %d, 64-bit %d)", w.build, w.kpti, w.is64);
    if ((st = parse_intro_range(y, v[5], v[6], &w.min, &w.max)) != HVI_OK)
        return st;
    if ((st = parse_fields(y, v[4], "win_km_fields", CAMI_KIND_WIN_KM, &w.km)) != HVI_OK)
        return st;
    if (!(m->win = cm_push(m->a, m->win, &m->nwin, &m->capwin, sizeof(*m->win))))
        return HVI_E_NOMEM;
    m->win[m->nwin - 1] = w;
    return HVI_OK;
}

static hvi_status get_range(struct yc *y, yaml_node_t *mn, yaml_node_t *mx, uint32_t *min, uint32_t *max)
{
    uint64_t a = 0, b = 0;
    hvi_status st = get_uint(y, mn, UINT32_MAX, &a);
    if (st == HVI_OK)
        st = get_uint(y, mx, UINT32_MAX, &b);
    if (st == HVI_OK && a > b)
        st = yerr(y, mn, "min_ver %llu is above max_ver %llu", (unsigned long long)a, (unsigned long long)b);
    *min = (uint32_t)a;
    *max = (uint32_t)b;
    return st;
}

static hvi_status doc_um(struct yc *y, const yaml_node_t *n)
{
    static const char *const keys[] = {"is64", "min_ver", "max_ver", "fields", NULL};
    yaml_node_t *v[4];
    struct cm_model *m = y->m;
    struct cm_um u;
    memset(&u, 0, sizeof(u));
    hvi_status st = map_keys(y, n, keys, v, 0xF);
    if (st == HVI_OK)
        st = get_bool(y, v[0], &u.is64);
    if (st == HVI_OK)
        st = get_range(y, v[1], v[2], &u.min, &u.max);
    if (st != HVI_OK)
        return st;
    for (uint32_t i = 0; i < m->num; i++)
        if (m->um[i].is64 == u.is64 && m->um[i].min <= u.max && u.min <= m->um[i].max)
            return yerr(y, n, "user-mode fields overlap another entry (%u-%u)", m->um[i].min, m->um[i].max);
    if ((st = parse_fields(y, v[3], "win_um_fields", CAMI_KIND_WIN_UM, &u.f)) != HVI_OK)
        return st;
    if (!(m->um = cm_push(m->a, m->um, &m->num, &m->capum, sizeof(*m->um))))
        return HVI_E_NOMEM;
    m->um[m->num - 1] = u;
    return HVI_OK;
}

static hvi_status parse_args(struct yc *y, const yaml_node_t *n, struct cm_args *a)
{
    static const char *const keys[] = {"min_ver", "max_ver", "args", NULL};
    yaml_node_t *v[3];
    hvi_status st = want_tag(y, n, "intro_update_win_args");
    if (st == HVI_OK)
        st = map_keys(y, n, keys, v, 7);
    if (st == HVI_OK)
        st = get_range(y, v[0], v[1], &a->min, &a->max);
    if (st == HVI_OK)
        st = want_seq(y, v[2]);
    if (st != HVI_OK)
        return st;
    SEQ_EACH(y, v[2], it) {
        uint64_t x;
        if (a->n >= HVI_CAMI_ARGS_MAX)
            return yerr(y, v[2], "more than %u arguments", HVI_CAMI_ARGS_MAX);
        if ((st = get_uint(y, node(y, *it), UINT32_MAX, &x)) != HVI_OK)
            return st;
        a->a[a->n++] = (uint32_t)x;
    }
    return HVI_OK;
}

static hvi_status parse_pattern(struct yc *y, const yaml_node_t *n, struct cm_pat *p)
{
    static const char *const keys[] = {"section_hint", "min_ver", "max_ver", "pattern", NULL};
    yaml_node_t *v[4];
    char sec[16] = "";
    hvi_status st = want_tag(y, n, "intro_update_win_pattern");
    if (st == HVI_OK)
        st = map_keys(y, n, keys, v, 0xE);
    if (st == HVI_OK && v[0] && scalar(v[0]) && strcmp(scalar(v[0]), "NULL"))
        st = get_str(y, v[0], sec, 9);
    if (st == HVI_OK)
        st = get_range(y, v[1], v[2], &p->min, &p->max);
    if (st == HVI_OK)
        st = parse_code(y, v[3], &p->items, &p->n);
    memcpy(p->section, sec, 8);
    return st;
}

static hvi_status func_lists(struct yc *y, yaml_node_t *args, yaml_node_t *pats, struct cm_func *f)
{
    hvi_status st = HVI_OK;
    struct cm_arena *a = y->m->a;
    if (args) {
        if ((st = want_seq(y, args)) != HVI_OK)
            return st;
        SEQ_EACH(y, args, it) {
            if (!(f->args = cm_push(a, f->args, &f->nargs, &f->capa, sizeof(*f->args))))
                return HVI_E_NOMEM;
            if ((st = parse_args(y, node(y, *it), &f->args[f->nargs - 1])) != HVI_OK)
                return st;
        }
    }
    if ((st = want_seq(y, pats)) != HVI_OK)
        return st;
    SEQ_EACH(y, pats, it) {
        if (!(f->pats = cm_push(a, f->pats, &f->npats, &f->capp, sizeof(*f->pats))))
            return HVI_E_NOMEM;
        if ((st = parse_pattern(y, node(y, *it), &f->pats[f->npats - 1])) != HVI_OK)
            return st;
    }
    return f->npats ? HVI_OK : yerr(y, pats, "a function needs at least one pattern");
}

static hvi_status doc_func(struct yc *y, const yaml_node_t *n)
{
    static const char *const keys[] = {"name", "guest64", "arguments", "patterns", NULL};
    yaml_node_t *v[4];
    struct cm_model *m = y->m;
    struct cm_func f;
    memset(&f, 0, sizeof(f));
    hvi_status st = map_keys(y, n, keys, v, 0xB);
    if (st == HVI_OK)
        st = get_str(y, v[0], f.name, sizeof(f.name));
    if (st == HVI_OK)
        st = get_bool(y, v[1], &f.g64);
    if (st != HVI_OK)
        return st;
    f.hash = hvi_cami_name_hash(f.name);
    for (uint32_t i = 0; i < m->nfn; i++)
        if (m->fn[i].hash == f.hash && m->fn[i].g64 == f.g64)
            return yerr(y, v[0], "duplicate function '%s' (guest64 %d)", f.name, f.g64);
    if ((st = func_lists(y, v[2], v[3], &f)) != HVI_OK)
        return st;
    if (!(m->fn = cm_push(m->a, m->fn, &m->nfn, &m->capfn, sizeof(*m->fn))))
        return HVI_E_NOMEM;
    m->fn[m->nfn - 1] = f;
    return HVI_OK;
}

/* ---- signatures ------------------------------------------------------------------------------ */

/* a number, or a list of numbers/constants OR-ed together */
static hvi_status get_flags(struct yc *y, const yaml_node_t *n, uint32_t *out)
{
    uint64_t v = 0, x;
    hvi_status st;
    if (n->type != YAML_SEQUENCE_NODE) {
        st = get_uint(y, n, UINT32_MAX, &v);
        *out = (uint32_t)v;
        return st;
    }
    SEQ_EACH(y, n, it) {
        if ((st = get_uint(y, node(y, *it), UINT32_MAX, &x)) != HVI_OK)
            return st;
        v |= x;
    }
    *out = (uint32_t)v;
    return HVI_OK;
}

static hvi_status parse_sig(struct yc *y, const yaml_node_t *n, const char *tag, struct cm_sig *s)
{
    static const char *const keys[] = {"id", "offset", "flags", "pattern", NULL};
    yaml_node_t *v[4];
    uint64_t off = 0;
    hvi_status st = want_tag(y, n, tag);
    if (st == HVI_OK)
        st = map_keys(y, n, keys, v, 0xB);
    if (st == HVI_OK)
        st = get_flags(y, v[0], &s->id);
    if (st == HVI_OK)
        st = get_uint(y, v[1], UINT32_MAX, &off);
    if (st == HVI_OK && v[2])
        st = get_flags(y, v[2], &s->flags);
    if (st == HVI_OK)
        st = parse_code(y, v[3], &s->items, &s->n);
    s->offset = (uint32_t)off;
    return st;
}

static hvi_status doc_sigs(struct yc *y, const yaml_node_t *n)
{
    struct cm_model *m = y->m;
    hvi_status st;
    SEQ_EACH(y, n, it) {
        yaml_node_t *e = node(y, *it);
        bool sys = has_tag(e, "syscall_pattern");
        if (!sys && !has_tag(e, "linux_dist_signature"))
            return yerr(y, e, "unknown tag '%s' in a signature list", tag_of(e));
        struct cm_sig **arr = sys ? &m->sys : &m->dist;
        uint32_t *cnt = sys ? &m->nsys : &m->ndist, *cap = sys ? &m->capsys : &m->capdist;
        if (!(*arr = cm_push(m->a, *arr, cnt, cap, sizeof(**arr))))
            return HVI_E_NOMEM;
        if ((st = parse_sig(y, e, sys ? "syscall_pattern" : "linux_dist_signature", &(*arr)[*cnt - 1])) != HVI_OK)
            return st;
    }
    return HVI_OK;
}

/* ---- options ------------------------------------------------------------------------------- */

/* Option names by list kind. Shemu lists take the shemu names of the format; core and process
 * lists take hvi's own option names (HVI_OPT_* without the prefix, include/hvi/hvi.h), since the
 * bits forced on or off are the engine's options. NONE (0) and plain numbers are accepted
 * everywhere. A name of the other kind is an error, not a silent wrong bit. */
static const struct konst shemu_names[] = {
    {"NONE", 0},       {"NOP_SLED", 1}, {"LOAD_RIP", 2},    {"WRITE_SELF", 4},
    {"TIB_ACCESS", 8}, {"SYSCALL", 0x10}, {"STACK_STR", 0x20},
};
static const struct konst core_names[] = {
    {"NONE", 0},
    {"KM_TEXT", HVI_OPT_KM_TEXT},
    {"KM_IDT", HVI_OPT_KM_IDT},
    {"KM_SYSCALL_TABLE", HVI_OPT_KM_SYSCALL_TABLE},
    {"KM_VDSO", HVI_OPT_KM_VDSO},
    {"KM_MODULES", HVI_OPT_KM_MODULES},
    {"KM_MSR", HVI_OPT_KM_MSR},
    {"KM_CR", HVI_OPT_KM_CR},
    {"CREDS", HVI_OPT_CREDS},
    {"KM_UNPACK", HVI_OPT_KM_UNPACK},
    {"INTEGRITY", HVI_OPT_INTEGRITY},
    {"PROC_EXPLOIT", HVI_OPT_PROC_EXPLOIT},
    {"EVENT_PROCESS", HVI_OPT_EVENT_PROCESS},
    {"EVENT_MODULE", HVI_OPT_EVENT_MODULE},
    {"EVENT_VMA", HVI_OPT_EVENT_VMA},
    {"BLOCK_EXEC", HVI_OPT_BLOCK_EXEC},
    {"LOG_ONLY", HVI_OPT_LOG_ONLY},
};

struct opt_kind {
    const struct konst *names;
    size_t count;
    const char *what;
};
static const struct opt_kind SHEMU_OPTS = {shemu_names, sizeof(shemu_names) / sizeof(shemu_names[0]),
                                           "shemu"};
static const struct opt_kind CORE_OPTS = {core_names, sizeof(core_names) / sizeof(core_names[0]),
                                          "core/process"};

static hvi_status opt_list(struct yc *y, const yaml_node_t *n, const struct opt_kind *kind,
                           uint64_t *out)
{
    hvi_status st = want_seq(y, n);
    *out = 0;
    if (st != HVI_OK)
        return st;
    SEQ_EACH(y, n, it) {
        yaml_node_t *e = node(y, *it);
        const char *s = scalar(e);
        size_t k = 0;
        while (s && k < kind->count && strcmp(kind->names[k].name, s))
            k++;
        uint64_t v;
        if (k < kind->count)
            v = kind->names[k].v;
        else if (!s || !parse_uint(s, &v))
            return yerr(y, e, "unknown %s option '%s'", kind->what, s ? s : "?");
        *out |= v;
    }
    return HVI_OK;
}

static hvi_status parse_control(struct yc *y, const yaml_node_t *n, const struct opt_kind *kind,
                                struct cm_prot *p)
{
    static const char *const keys[] = {"force_off", "force_beta", "force_feedback", "force_on", NULL};
    yaml_node_t *v[4];
    uint64_t *dst[4] = {&p->off, &p->beta, &p->feedback, &p->on};
    hvi_status st = want_tag(y, n, "options_control");
    if (st == HVI_OK)
        st = map_keys(y, n, keys, v, 0);
    for (int i = 0; st == HVI_OK && i < 4; i++)
        if (v[i])
            st = opt_list(y, v[i], kind, dst[i]);
    return st;
}

static hvi_status parse_proc(struct yc *y, const yaml_node_t *n, struct cm_proc *p)
{
    static const char *const keys[] = {"name", "encoding", "options", NULL};
    yaml_node_t *v[3];
    hvi_status st = want_tag(y, n, "process_options");
    if (st == HVI_OK)
        st = map_keys(y, n, keys, v, 5);
    if (st == HVI_OK)
        st = get_str(y, v[0], p->name, v[1] && scalar(v[1]) && !strcmp(scalar(v[1]), "utf-16") ? 32 : 64);
    if (st == HVI_OK && v[1]) {
        const char *e = scalar(v[1]);
        if (!e || (strcmp(e, "utf-8") && strcmp(e, "utf-16")))
            return yerr(y, v[1], "encoding must be 'utf-8' or 'utf-16'");
        p->enc = !strcmp(e, "utf-16");
    }
    if (st == HVI_OK)
        st = parse_control(y, v[2], &CORE_OPTS, &p->o);
    return st;
}

static hvi_status parse_osopt(struct yc *y, yaml_node_t *core, yaml_node_t *shemu, yaml_node_t *procs,
                              struct cm_osopt *o)
{
    hvi_status st = HVI_OK;
    if (core)
        st = parse_control(y, core, &CORE_OPTS, &o->core);
    if (st == HVI_OK && shemu)
        st = parse_control(y, shemu, &SHEMU_OPTS, &o->shemu);
    if (st != HVI_OK || !procs)
        return st;
    if ((st = want_seq(y, procs)) != HVI_OK)
        return st;
    SEQ_EACH(y, procs, it) {
        if (o->nproc >= 1024)
            return yerr(y, procs, "too many process options");
        if (!(o->procs = cm_push(y->m->a, o->procs, &o->nproc, &o->cap, sizeof(*o->procs))))
            return HVI_E_NOMEM;
        if ((st = parse_proc(y, node(y, *it), &o->procs[o->nproc - 1])) != HVI_OK)
            return st;
    }
    return HVI_OK;
}

static hvi_status parse_global(struct yc *y, const yaml_node_t *n, struct cm_osopt *o)
{
    static const char *const keys[] = {"core_options", "shemu_options", "proc_options", NULL};
    yaml_node_t *v[3];
    hvi_status st = want_tag(y, n, "global_options");
    if (st == HVI_OK)
        st = map_keys(y, n, keys, v, 0);
    if (st == HVI_OK)
        st = parse_osopt(y, v[0], v[1], v[2], o);
    return st;
}

static hvi_status parse_per_os(struct yc *y, const yaml_node_t *n, struct cm_per_os *p)
{
    static const char *const keys[] = {"version", "os_type", "core_options", "shemu_options",
                                       "proc_options", NULL};
    yaml_node_t *v[5];
    hvi_status st = want_tag(y, n, "os_options");
    if (st == HVI_OK)
        st = map_keys(y, n, keys, v, 3);
    if (st != HVI_OK)
        return st;
    const char *t = scalar(v[1]);
    if (!t || (strcmp(t, "linux") && strcmp(t, "windows")))
        return yerr(y, v[1], "os_type must be 'linux' or 'windows'");
    p->is_linux = !strcmp(t, "linux");
    if (p->is_linux) {
        st = get_str(y, v[0], p->version, sizeof(p->version));
    } else {
        yaml_node_t *tv = v[0];
        uint64_t b = 0;
        if (tv->type != YAML_SEQUENCE_NODE || tv->data.sequence.items.top - tv->data.sequence.items.start != 3)
            return yerr(y, tv, "a Windows version is [build, kpti, is64]");
        st = get_uint(y, node(y, tv->data.sequence.items.start[0]), UINT32_MAX, &b);
        if (st == HVI_OK)
            st = get_bool(y, node(y, tv->data.sequence.items.start[1]), &p->kpti);
        if (st == HVI_OK)
            st = get_bool(y, node(y, tv->data.sequence.items.start[2]), &p->is64);
        p->build = (uint32_t)b;
    }
    if (st == HVI_OK)
        st = parse_osopt(y, v[2], v[3], v[4], &p->o);
    return st;
}

static hvi_status doc_options(struct yc *y, const yaml_node_t *n)
{
    static const char *const keys[] = {"globals", "per_os", NULL};
    static const char *const gk[] = {"common", "linux", "windows", NULL};
    yaml_node_t *v[2], *g[3];
    struct cm_model *m = y->m;
    hvi_status st = map_keys(y, n, keys, v, 1);
    if (st == HVI_OK)
        st = want_tag(y, v[0], "global_introcore_options");
    if (st == HVI_OK)
        st = map_keys(y, v[0], gk, g, 0);
    struct cm_osopt *dst[3] = {&m->common, &m->linux_, &m->windows};
    for (int i = 0; st == HVI_OK && i < 3; i++)
        if (g[i])
            st = parse_global(y, g[i], dst[i]);
    if (st != HVI_OK || !v[1])
        return st;
    if ((st = want_seq(y, v[1])) != HVI_OK)
        return st;
    SEQ_EACH(y, v[1], it) {
        if (!(m->per_os = cm_push(m->a, m->per_os, &m->nper, &m->capper, sizeof(*m->per_os))))
            return HVI_E_NOMEM;
        memset(&m->per_os[m->nper - 1], 0, sizeof(*m->per_os));
        if ((st = parse_per_os(y, node(y, *it), &m->per_os[m->nper - 1])) != HVI_OK)
            return st;
    }
    return HVI_OK;
}

/* ---- documents ------------------------------------------------------------------------------- */

static hvi_status doc(struct yc *y, const yaml_node_t *n)
{
    if (n->type == YAML_SEQUENCE_NODE && !*tag_of(n))
        return doc_sigs(y, n);
    if (n->type == YAML_MAPPING_NODE && !*tag_of(n))
        return doc_options(y, n);
    if (n->type != YAML_MAPPING_NODE)
        return yerr(y, n, "a document must be a tagged mapping, a signature list or the options");
    if (has_tag(n, "intro_update_lix_supported_os"))
        return doc_lix(y, n);
    if (has_tag(n, "intro_update_win_supported_os"))
        return doc_win(y, n);
    if (has_tag(n, "intro_update_win_um_fields"))
        return doc_um(y, n);
    if (has_tag(n, "intro_update_win_function"))
        return doc_func(y, n);
    return yerr(y, n, "unknown tag '!%s'", tag_of(n));
}

hvi_status cami_yaml_file(struct cm_model *m, const char *path, const char *text, size_t len, char *msg,
                          size_t msg_len)
{
    yaml_parser_t p;
    struct yc y = {NULL, path, msg, msg_len, m, (uint64_t)len * CAMI_YAML_WORK_FACTOR + CAMI_YAML_WORK_SLACK};
    hvi_status st = HVI_OK;
    if (!yaml_parser_initialize(&p))
        return HVI_E_NOMEM;
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    for (;;) {
        yaml_document_t d;
        if (!yaml_parser_load(&p, &d)) {
            yaml_mark_t mk = p.problem_mark;
            snprintf(msg, msg_len, "%s:%zu:%zu: YAML error: %s", path, mk.line + 1, mk.column + 1,
                     p.problem ? p.problem : "unknown");
            st = HVI_E_FORMAT;
            break;
        }
        yaml_node_t *root = yaml_document_get_root_node(&d);
        y.doc = &d;
        if (root)
            st = doc(&y, root);
        yaml_document_delete(&d);
        if (!root || st != HVI_OK)
            break;
    }
    yaml_parser_delete(&p);
    return st;
}
