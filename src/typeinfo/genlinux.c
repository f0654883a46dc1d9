/* hvi typeinfo — the Linux OS-support generator: evaluates the rule table of
 * genlinux_table.c against a kernel's type information and writes one
 * `!intro_update_lix_supported_os` YAML entry. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "typeinfo/genlinux_rules.h"
#include "typeinfo/typeinfo.h"

extern const struct gl_field hvi_gl_fields[];
extern const size_t hvi_gl_field_count;
extern const struct gl_hook hvi_gl_hooks[];
extern const size_t hvi_gl_hook_count;

/* Linux groups in tags.yaml order. */
static const char *const gl_groups[] = {"Info",    "Module",  "Binprm", "Vma",   "Dentry",
                                        "MmStruct", "TaskStruct", "Fs", "FdTable", "Files",
                                        "Inode",   "Socket",  "Sock",   "Cred",  "NsProxy",
                                        "Ungrouped"};

struct gl_ctx {
    struct hvi_typeinfo *ti;
    const struct hvi_genlinux_opts *opts;
    unsigned major, minor;
    struct hvi_genlinux_stats st;
};

static void parse_mm(const char *s, unsigned *major, unsigned *minor)
{
    char *end;
    unsigned long a = strtoul(s, &end, 10), b = 0;
    if (*end == '.')
        b = strtoul(end + 1, NULL, 10);
    *major = a > 1000 ? 0 : (unsigned)a;
    *minor = b > 1000 ? 0 : (unsigned)b;
}

/* Evaluate one row. HVI_E_NOT_FOUND: the struct/member does not exist in this kernel. */
static hvi_status gl_eval(struct gl_ctx *c, const struct gl_field *f, uint32_t *v)
{
    uint64_t bits;
    uint32_t bsize, tsize;
    int64_t e;
    hvi_status st;
    switch (f->rule) {
    case GL_OFF:
        return hvi_typeinfo_offset(c->ti, f->a, f->b, v);
    case GL_BIT:
        st = hvi_typeinfo_member(c->ti, f->a, f->b, &bits, &bsize, NULL);
        *v = (uint32_t)(bits % 8);
        return st;
    case GL_SIZEOF:
        return hvi_typeinfo_struct_size(c->ti, f->a, v);
    case GL_MEMBER_SIZE:
    case GL_SLOTS:
        st = hvi_typeinfo_member(c->ti, f->a, f->b, &bits, &bsize, &tsize);
        if (st == HVI_OK && tsize == 0)
            st = HVI_E_FORMAT;
        *v = f->rule == GL_SLOTS ? tsize / 8 : tsize;
        return st;
    case GL_HAS_MEMBER:
        st = hvi_typeinfo_member(c->ti, f->a, f->b, &bits, &bsize, NULL);
        *v = st == HVI_OK;
        return st == HVI_E_NOT_FOUND ? HVI_OK : st;
    case GL_HAS_STRUCT:
        st = hvi_typeinfo_struct_size(c->ti, f->a, &tsize);
        *v = st == HVI_OK;
        return st == HVI_E_NOT_FOUND ? HVI_OK : st;
    case GL_HAS_PARAM:
        st = hvi_typeinfo_func_param(c->ti, f->a, f->b);
        *v = st == HVI_OK;
        return st == HVI_E_NOT_FOUND ? HVI_OK : st;
    case GL_ENUM:
        st = hvi_typeinfo_enum_value(c->ti, f->a, &e);
        if (st == HVI_OK && (e < 0 || e > UINT32_MAX))
            return HVI_E_RANGE;
        *v = (uint32_t)e;
        return st;
    case GL_VER_FROM: {
        unsigned ma, mi;
        parse_mm(f->a, &ma, &mi);
        *v = c->major > ma || (c->major == ma && c->minor >= mi);
        return HVI_OK;
    }
    case GL_CONST:
        *v = f->v;
        return HVI_OK;
    }
    return HVI_E_INTERNAL;
}

static void gl_describe(const struct gl_field *f, char *out, size_t len)
{
    if (f->why)
        snprintf(out, len, "rule: %s", f->why);
    else if (f->b)
        snprintf(out, len, "%s.%s", f->a, f->b);
    else
        snprintf(out, len, "%s", f->a ? f->a : "");
}

static hvi_status gl_group(struct gl_ctx *c, const char *group, FILE *out, char *err,
                           size_t err_len)
{
    fprintf(out, "\n        %s: !opaque_fields\n", group);
    for (size_t i = 0; i < hvi_gl_field_count; i++) {
        const struct gl_field *f = &hvi_gl_fields[i];
        if (strcmp(f->group, group))
            continue;
        uint32_t v = 0;
        char what[160];
        gl_describe(f, what, sizeof(what));
        hvi_status st = gl_eval(c, f, &v);
        if (st == HVI_E_NOT_FOUND) {
            if (!c->opts->quiet)
                fprintf(stderr, "hvi: gen-linux: warning: %s.%s: %s does not exist in this "
                                "kernel; writing 0x%08X (absent)\n",
                        group, f->field, what, HVI_GENLINUX_ABSENT);
            v = HVI_GENLINUX_ABSENT;
            c->st.absent++;
            snprintf(what, sizeof(what), "absent: %s.%s", f->a, f->b ? f->b : "");
        } else if (st != HVI_OK) {
            hvi_ti_err(err, err_len, "%s.%s (%s): %s", group, f->field, what, hvi_strstatus(st));
            return st;
        }
        fprintf(out, "            %s : 0x%04" PRIx32 "    # %s\n", f->field, v, what);
        c->st.fields++;
    }
    return HVI_OK;
}

static void gl_hooks(struct gl_ctx *c, FILE *out)
{
    fprintf(out, "\nhooks:\n");
    for (size_t i = 0; i < hvi_gl_hook_count; i++) {
        const struct gl_hook *h = &hvi_gl_hooks[i];
        const char *name = NULL;
        for (size_t k = 0; k < 3 && h->names[k] && !name; k++) {
            size_t n = strlen(h->names[k]);
            if ((n && h->names[k][n - 1] == '*') ||
                hvi_typeinfo_func_exists(c->ti, h->names[k]) == HVI_OK)
                name = h->names[k];
        }
        if (!name) {
            if (!c->opts->quiet)
                fprintf(stderr, "hvi: gen-linux: warning: hook %s: no such function in this "
                                "kernel; left out\n", h->names[0]);
            continue;
        }
        fprintf(out, "    - !intro_update_lix_hook\n        name: %s\n        handler: %u\n"
                     "        skip_on_boot: %u\n\n", name, h->handler, h->skip_on_boot);
        c->st.hooks++;
    }
}

/* Default glob: the release with glob metacharacters escaped, then "*". */
static void default_glob(const char *release, char *out, size_t len)
{
    size_t n = 0;
    for (const char *p = release; *p && n + 3 < len; p++) {
        if (strchr("*?[]\\", *p))
            out[n++] = '\\';
        out[n++] = *p;
    }
    out[n++] = '*';
    out[n] = 0;
}

static bool yaml_plain_ok(const char *s)
{
    if (!*s || strchr("*&!|>'\"%@`[{-?:#,", s[0]))
        return false;
    return !strstr(s, ": ") && !strstr(s, " #");
}

hvi_status hvi_genlinux_write(struct hvi_typeinfo *ti, const struct hvi_genlinux_opts *opts,
                              FILE *out, struct hvi_genlinux_stats *stats, char *err,
                              size_t err_len)
{
    static const struct hvi_genlinux_opts none = {NULL, NULL, false};
    if (!ti || !out)
        return HVI_E_INVAL;
    struct gl_ctx c = {ti, opts ? opts : &none, 0, 0, {0, 0, 0}};
    char release[128] = "", glob[160];
    const char *banner = c.opts->version ? c.opts->version : hvi_typeinfo_banner(ti);
    size_t rl = strcspn(banner, " ");
    if (rl >= sizeof(release))
        rl = sizeof(release) - 1;
    memcpy(release, banner, rl);
    release[rl] = 0;
    if (!c.opts->version_glob && !release[0]) {
        hvi_ti_err(err, err_len, "no kernel banner in the input: give --version or "
                                 "--version-glob");
        return HVI_E_NOT_FOUND;
    }
    parse_mm(release, &c.major, &c.minor);
    if (c.opts->version_glob)
        snprintf(glob, sizeof(glob), "%s", c.opts->version_glob);
    else
        default_glob(release, glob, sizeof(glob));
    if (strlen(glob) >= 64) {
        hvi_ti_err(err, err_len, "version glob longer than 63 characters (CAMI limit)");
        return HVI_E_RANGE;
    }
    fprintf(out, "# Generated by `hvi cami gen-linux` from the kernel's %s type information.\n"
                 "# Kernel: %s\n# Absent fields are 0x%08X. Do not edit; regenerate.\n"
                 "!intro_update_lix_supported_os\n",
            hvi_typeinfo_source(ti), banner[0] ? banner : "(unknown)", HVI_GENLINUX_ABSENT);
    if (yaml_plain_ok(glob)) {
        fprintf(out, "version: %s\n", glob);
    } else { /* single-quoted scalar: a quote is written twice */
        fputs("version: '", out);
        for (const char *q = glob; *q; q++) {
            if (*q == '\'')
                fputc('\'', out);
            fputc(*q, out);
        }
        fputs("'\n", out);
    }
    gl_hooks(&c, out);
    fprintf(out, "\nfields: !opaque_structures\n    type: lix_fields\n    os_structs:\n");
    for (size_t g = 0; g < sizeof(gl_groups) / sizeof(gl_groups[0]); g++) {
        hvi_status st = gl_group(&c, gl_groups[g], out, err, err_len);
        if (st != HVI_OK)
            return st;
    }
    if (ferror(out)) {
        hvi_ti_err(err, err_len, "write error");
        return HVI_E_IO;
    }
    if (stats)
        *stats = c.st;
    return HVI_OK;
}
