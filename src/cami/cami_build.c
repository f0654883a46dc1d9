/* hvi cami — the compiler driver: walk the sources (directories recursively, sorted), parse
 * every .yaml/.yml file into the model, serialize. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "cami/cami_model.h"
#include "cami/cami_priv.h"

#define CAMI_MAX_DEPTH 16
#define CAMI_MAX_FILE (64u << 20)

struct cm_arena {
    void **blocks;
    size_t n, cap;
};

struct cm_arena *cm_arena_new(void) { return calloc(1, sizeof(struct cm_arena)); }

void cm_arena_free(struct cm_arena *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->blocks[i]);
    free(a->blocks);
    free(a);
}

void *cm_alloc(struct cm_arena *a, size_t n, size_t size)
{
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 256;
        void **nb = realloc(a->blocks, nc * sizeof(*nb));
        if (!nb)
            return NULL;
        a->blocks = nb;
        a->cap = nc;
    }
    void *p = calloc(n ? n : 1, size);
    if (p)
        a->blocks[a->n++] = p;
    return p;
}

void *cm_push(struct cm_arena *a, void *arr, uint32_t *count, uint32_t *cap, size_t size)
{
    if (*count == UINT32_MAX)
        return NULL;
    if (*count == *cap) {
        uint32_t nc = *cap ? *cap * 2 : 8;
        void *na = cm_alloc(a, nc, size);
        if (!na)
            return NULL;
        if (*count)
            memcpy(na, arr, (size_t)*count * size);
        arr = na;
        *cap = nc;
    }
    memset((uint8_t *)arr + (size_t)*count * size, 0, size);
    (*count)++;
    return arr;
}

static hvi_status build_file(struct cm_model *m, const char *path, char *msg, size_t msg_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(msg, msg_len, "%s: %s", path, strerror(errno));
        return HVI_E_IO;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    hvi_status st = HVI_OK;
    for (;;) {
        if (len == cap) {
            size_t nc = cap ? cap * 2 : 65536;
            char *nb = nc <= CAMI_MAX_FILE ? realloc(buf, nc) : NULL;
            if (!nb) {
                snprintf(msg, msg_len, "%s: too large or out of memory", path);
                st = HVI_E_LIMIT;
                break;
            }
            buf = nb;
            cap = nc;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
    }
    if (st == HVI_OK && ferror(f)) {
        snprintf(msg, msg_len, "%s: read error", path);
        st = HVI_E_IO;
    }
    fclose(f);
    if (st == HVI_OK)
        st = cami_yaml_file(m, path, buf, len, msg, msg_len);
    free(buf);
    return st;
}

static bool is_yaml(const char *name)
{
    size_t n = strlen(name);
    return (n > 5 && !strcmp(name + n - 5, ".yaml")) || (n > 4 && !strcmp(name + n - 4, ".yml"));
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static hvi_status build_path(struct cm_model *m, const char *path, int depth, bool top, char *msg, size_t msg_len);

static hvi_status build_dir(struct cm_model *m, const char *path, int depth, char *msg, size_t msg_len)
{
    DIR *d = opendir(path);
    if (!d) {
        snprintf(msg, msg_len, "%s: %s", path, strerror(errno));
        return HVI_E_IO;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    hvi_status st = HVI_OK;
    for (struct dirent *de; st == HVI_OK && (de = readdir(d));) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char **nn = realloc(names, nc * sizeof(*nn));
            if (!nn) {
                st = HVI_E_NOMEM;
                break;
            }
            names = nn;
            cap = nc;
        }
        if (!(names[n] = strdup(de->d_name)))
            st = HVI_E_NOMEM;
        else
            n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof(*names), name_cmp);
    for (size_t i = 0; i < n; i++) {
        char sub[4096];
        if (st == HVI_OK && (size_t)snprintf(sub, sizeof(sub), "%s/%s", path, names[i]) >= sizeof(sub))
            st = HVI_E_LIMIT;
        if (st == HVI_OK)
            st = build_path(m, sub, depth + 1, false, msg, msg_len);
        free(names[i]);
    }
    free(names);
    return st;
}

static hvi_status build_path(struct cm_model *m, const char *path, int depth, bool top, char *msg, size_t msg_len)
{
    struct stat sb;
    if (depth > CAMI_MAX_DEPTH) {
        snprintf(msg, msg_len, "%s: directories nested too deep", path);
        return HVI_E_LIMIT;
    }
    if (stat(path, &sb) != 0) {
        snprintf(msg, msg_len, "%s: %s", path, strerror(errno));
        return HVI_E_IO;
    }
    if (S_ISDIR(sb.st_mode))
        return build_dir(m, path, depth, msg, msg_len);
    if (!S_ISREG(sb.st_mode) || (!top && !is_yaml(path)))
        return HVI_OK; /* inside directories only *.yaml / *.yml; named files always */
    return build_file(m, path, msg, msg_len);
}

hvi_status hvi_cami_build(const char *const *paths, size_t npaths, void **out, size_t *out_len, char *msg,
                          size_t msg_len)
{
    char dummy[8];
    if (!msg || !msg_len) {
        msg = dummy;
        msg_len = sizeof(dummy);
    }
    msg[0] = 0;
    if (!paths || !npaths || !out || !out_len)
        return HVI_E_INVAL;
    struct cm_model m;
    memset(&m, 0, sizeof(m));
    if (!(m.a = cm_arena_new()))
        return HVI_E_NOMEM;
    hvi_status st = HVI_OK;
    for (size_t i = 0; st == HVI_OK && i < npaths; i++)
        st = build_path(&m, paths[i], 0, true, msg, msg_len);
    if (st == HVI_OK && !m.nlix && !m.nwin) {
        snprintf(msg, msg_len, "no supported OS entry in the sources");
        st = HVI_E_FORMAT;
    }
    uint8_t *b = NULL;
    size_t len = 0;
    if (st == HVI_OK)
        st = cami_write(&m, &b, &len, msg, msg_len);
    cm_arena_free(m.a);
    if (st == HVI_OK) {
        *out = b;
        *out_len = len;
    }
    return st;
}
