/* hvi cami — build, dump and look up CAMI support files.
 *
 *   hvi cami build SOURCES... -o support.bin
 *   hvi cami dump FILE [--json]
 *   hvi cami lookup FILE --windows BUILD [--kpti] [--x86] | --linux "VERSION" [--json]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "hvi/cami.h"


/* JSON-safe string (the strings come from the file: escape everything non-printable) */
static void jstr(FILE *o, const char *s)
{
    fputc('"', o);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(o, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(o, "\\u%04x", c);
        else
            fputc(c, o);
    }
    fputc('"', o);
}

static void dump_groups(FILE *o, unsigned kind, const hvi_cami_opaque *g, uint32_t n, bool json, const char *ind)
{
    if (json)
        fputc('{', o);
    for (uint32_t i = 0; i < n; i++) {
        const char *gn = hvi_cami_group_name(kind, i);
        if (json) {
            fprintf(o, "%s", i ? "," : "");
            jstr(o, gn ? gn : "?");
            fputs(":{", o);
        } else {
            fprintf(o, "%s%s:\n", ind, gn ? gn : "(unknown group)");
        }
        for (uint32_t f = 0; f < g[i].count; f++) {
            const char *fn = hvi_cami_field_name(kind, i, f);
            char buf[32];
            if (!fn) {
                snprintf(buf, sizeof(buf), "#%u", f);
                fn = buf;
            }
            if (json) {
                fprintf(o, "%s", f ? "," : "");
                jstr(o, fn);
                fprintf(o, ":%u", g[i].members[f]);
            } else {
                fprintf(o, "%s  %-28s 0x%x\n", ind, fn, g[i].members[f]);
            }
        }
        if (json)
            fputc('}', o);
    }
    if (json)
        fputc('}', o);
}

static void dump_prot_one(FILE *o, const char *name, const hvi_cami_prot *p, bool json)
{
    if (json)
        fprintf(o, "\"%s\":{\"force_off\":%" PRIu64 ",\"force_beta\":%" PRIu64 ",\"force_feedback\":%" PRIu64
                   ",\"force_on\":%" PRIu64 "}",
                name, p->force_off, p->force_beta, p->force_feedback, p->force_on);
    else
        fprintf(o, "    %s: off 0x%" PRIx64 " beta 0x%" PRIx64 " feedback 0x%" PRIx64 " on 0x%" PRIx64 "\n", name,
                p->force_off, p->force_beta, p->force_feedback, p->force_on);
}

static void dump_prot(FILE *o, const hvi_cami_os_prot *p, bool json)
{
    if (json) {
        fprintf(o, "{\"present\":%s,", p->present ? "true" : "false");
        dump_prot_one(o, "core", &p->core, true);
        fputc(',', o);
        dump_prot_one(o, "shemu", &p->shemu, true);
        fputs(",\"procs\":[", o);
    } else {
        fprintf(o, "  options%s:\n", p->present ? "" : " (none: defaults)");
        dump_prot_one(o, "core", &p->core, false);
        dump_prot_one(o, "shemu", &p->shemu, false);
    }
    for (uint32_t i = 0; i < p->proc_count; i++) {
        if (json) {
            fprintf(o, "%s{\"name\":", i ? "," : "");
            jstr(o, p->procs[i].name);
            fprintf(o, ",\"encoding\":%u,", p->procs[i].encoding);
            dump_prot_one(o, "options", &p->procs[i].options, true);
            fputc('}', o);
        } else {
            fprintf(o, "    process '%s' (encoding %u):\n", p->procs[i].name, p->procs[i].encoding);
            dump_prot_one(o, "  ", &p->procs[i].options, false);
        }
    }
    if (json)
        fputs("]}", o);
}

static void dump_items(FILE *o, const hvi_cami_pattern *p, bool json)
{
    for (uint32_t i = 0; i < p->len; i++) {
        if (json)
            fprintf(o, "%s%u", i ? "," : "", p->items[i]);
        else if (p->items[i] == HVI_CAMI_WILDCARD)
            fputs(" ??", o);
        else
            fprintf(o, " %02x", p->items[i]);
    }
}

static void dump_sigs(FILE *o, const char *what, const hvi_cami_sig *s, uint32_t n, bool json)
{
    if (json)
        fprintf(o, "\"%s\":[", what);
    for (uint32_t i = 0; i < n; i++) {
        if (json) {
            fprintf(o, "%s{\"id\":%u,\"offset\":%u,\"flags\":%u,\"pattern\":[", i ? "," : "", s[i].id,
                    s[i].offset, s[i].flags);
            dump_items(o, &s[i].pattern, true);
            fputs("]}", o);
        } else {
            fprintf(o, "%s %u: id 0x%08x offset 0x%x flags 0x%x pattern", what, i, s[i].id, s[i].offset, s[i].flags);
            dump_items(o, &s[i].pattern, false);
            fputc('\n', o);
        }
    }
    if (json)
        fputs("]", o);
}

static void dump_lix(FILE *o, const hvi_cami_lix_entry *e, bool json)
{
    if (json) {
        fputs("{\"version\":", o);
        jstr(o, e->version);
        fprintf(o, ",\"min_intro\":%" PRIu64 ",\"max_intro\":%" PRIu64 ",\"hooks\":[", e->min_intro, e->max_intro);
        for (uint32_t h = 0; h < e->hook_count; h++)
            fprintf(o, "%s{\"hash\":%u,\"handler\":%u,\"skip_on_boot\":%u}", h ? "," : "", e->hooks[h].name_hash,
                    e->hooks[h].handler, e->hooks[h].skip_on_boot);
        fputs("],\"fields\":", o);
        dump_groups(o, 0, e->groups, e->group_count, true, "");
        fputs(",\"options\":", o);
        dump_prot(o, &e->prot, true);
        fputc('}', o);
        return;
    }
    fprintf(o, "linux '%s' intro 0x%" PRIx64 "-0x%" PRIx64 ", %u hooks:\n", e->version, e->min_intro,
            e->max_intro, e->hook_count);
    for (uint32_t h = 0; h < e->hook_count; h++)
        fprintf(o, "  hook 0x%08x handler %u%s\n", e->hooks[h].name_hash, e->hooks[h].handler,
                e->hooks[h].skip_on_boot ? " skip-on-boot" : "");
    dump_groups(o, 0, e->groups, e->group_count, false, "  ");
    dump_prot(o, &e->prot, false);
}

static void dump_function(FILE *o, const hvi_cami_win_function *f, bool json)
{
    if (json) {
        fprintf(o, "{\"hash\":%u,\"args\":[", f->name_hash);
        for (uint32_t a = 0; a < f->arg_count; a++)
            fprintf(o, "%s%u", a ? "," : "", f->args[a]);
        fputs("],\"patterns\":[", o);
        for (uint32_t p = 0; p < f->pattern_count; p++) {
            fprintf(o, "%s{\"section\":", p ? "," : "");
            jstr(o, f->patterns[p].section);
            fputs(",\"items\":[", o);
            dump_items(o, &f->patterns[p], true);
            fputs("]}", o);
        }
        fputs("]}", o);
        return;
    }
    fprintf(o, "  function 0x%08x args", f->name_hash);
    for (uint32_t a = 0; a < f->arg_count; a++)
        fprintf(o, " 0x%x", f->args[a]);
    fprintf(o, ", %u patterns\n", f->pattern_count);
    for (uint32_t p = 0; p < f->pattern_count; p++) {
        fprintf(o, "    [%s]", f->patterns[p].section);
        dump_items(o, &f->patterns[p], false);
        fputc('\n', o);
    }
}

static void dump_win(FILE *o, const hvi_cami_win_entry *e, bool json)
{
    if (json) {
        fprintf(o, "{\"build\":%u,\"kpti\":%s,\"is64\":%s,\"min_intro\":%" PRIu64 ",\"max_intro\":%" PRIu64
                   ",\"version\":",
                e->build, e->kpti ? "true" : "false", e->is64 ? "true" : "false", e->min_intro, e->max_intro);
        jstr(o, e->version_string);
        fputs(",\"server_version\":", o);
        jstr(o, e->server_version_string);
        fputs(",\"km\":", o);
        dump_groups(o, 1, e->km, e->km_count, true, "");
        fputs(",\"um\":", o);
        dump_groups(o, 2, e->um, e->um_count, true, "");
        fputs(",\"functions\":[", o);
        for (uint32_t i = 0; i < e->function_count; i++) {
            fputs(i ? "," : "", o);
            dump_function(o, &e->functions[i], true);
        }
        fputs("],\"options\":", o);
        dump_prot(o, &e->prot, true);
        fputc('}', o);
        return;
    }
    fprintf(o, "windows %u kpti %d %s '%s' / '%s'\n", e->build, e->kpti, e->is64 ? "x64" : "x86", e->version_string,
            e->server_version_string);
    dump_groups(o, 1, e->km, e->km_count, false, "  km ");
    dump_groups(o, 2, e->um, e->um_count, false, "  um ");
    for (uint32_t i = 0; i < e->function_count; i++)
        dump_function(o, &e->functions[i], false);
    dump_prot(o, &e->prot, false);
}

static void dump_all(FILE *o, const hvi_cami *c, bool json)
{
    if (json) {
        fprintf(o, "{\"version\":\"%u.%u\",\"build\":%u,\"checksummed\":%s,", c->major, c->minor, c->build,
                c->checksummed ? "true" : "false");
        dump_sigs(o, "syscalls", c->syscalls, c->syscall_count, true);
        fputc(',', o);
        dump_sigs(o, "dist_sigs", c->dists, c->dist_count, true);
        fputs(",\"linux\":[", o);
    } else {
        fprintf(o, "CAMI %u.%u build %u%s\n", c->major, c->minor, c->build, c->checksummed ? ", checksum ok" : "");
        dump_sigs(o, "syscall", c->syscalls, c->syscall_count, false);
        dump_sigs(o, "dist-sig", c->dists, c->dist_count, false);
    }
    for (uint32_t i = 0; i < c->lix_count; i++) {
        if (json && i)
            fputc(',', o);
        dump_lix(o, &c->lix[i], json);
    }
    if (json)
        fputs("],\"windows\":[", o);
    for (uint32_t i = 0; i < c->win_count; i++) {
        if (json && i)
            fputc(',', o);
        dump_win(o, &c->win[i], json);
    }
    if (json)
        fputs("]}\n", o);
}

static int open_file(const char *path, hvi_cami **c)
{
    void *buf;
    size_t len;
    char msg[256];
    hvi_status st = hvi_cli_read_file(path, &buf, &len);
    if (st != HVI_OK)
        return hvi_cli_fail(path, st);
    st = hvi_cami_open(buf, len, c, msg, sizeof(msg));
    free(buf);
    if (st != HVI_OK) {
        fprintf(stderr, "hvi: %s: %s: %s\n", path, hvi_strstatus(st), msg);
        return 1;
    }
    return 0;
}

static int cmd_build(int argc, char **argv)
{
    const char *out = NULL;
    const char **src = calloc((size_t)argc + 1, sizeof(*src));
    size_t n = 0;
    if (!src)
        return hvi_cli_fail("build", HVI_E_NOMEM);
    for (int i = 1; i < argc; i++) {
        if (hvi_cli_is_help(argv[i])) {
            printf("usage: hvi cami build SOURCES... -o support.bin\n"
                   "  Compile CAMI YAML files and directories (walked recursively, sorted) into a\n"
                   "  CAMI 1.5 support file (loads in 1.4 readers; adds a checksum).\n");
            free(src);
            return 0;
        }
        if (!strcmp(argv[i], "-o") && i + 1 < argc)
            out = argv[++i];
        else if (argv[i][0] == '-') {
            fprintf(stderr, "hvi cami build: unknown option '%s' (see --help)\n", argv[i]);
            free(src);
            return 2;
        } else
            src[n++] = argv[i];
    }
    if (!out || !n) {
        fprintf(stderr, "usage: hvi cami build SOURCES... -o support.bin\n");
        free(src);
        return 2;
    }
    void *bin;
    size_t len;
    char msg[512];
    hvi_status st = hvi_cami_build(src, n, &bin, &len, msg, sizeof(msg));
    free(src);
    if (st != HVI_OK) {
        fprintf(stderr, "hvi cami build: %s\n", msg[0] ? msg : hvi_strstatus(st));
        return 1;
    }
    FILE *f = fopen(out, "wb");
    bool ok = f && fwrite(bin, 1, len, f) == len;
    ok = (f && fclose(f) == 0) && ok;
    free(bin);
    if (!ok)
        return hvi_cli_fail(out, HVI_E_IO);
    return 0;
}

static int cmd_dump(int argc, char **argv)
{
    const char *file = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (hvi_cli_is_help(argv[i])) {
            printf("usage: hvi cami dump FILE [--json]\n  Print every entry of a CAMI file.\n");
            return 0;
        }
        if (!strcmp(argv[i], "--json"))
            json = true;
        else if (argv[i][0] != '-' && !file)
            file = argv[i];
        else {
            fprintf(stderr, "hvi cami dump: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!file) {
        fprintf(stderr, "usage: hvi cami dump FILE [--json]\n");
        return 2;
    }
    hvi_cami *c;
    int rc = open_file(file, &c);
    if (rc)
        return rc;
    dump_all(stdout, c, json);
    hvi_cami_close(c);
    return 0;
}

static int lookup_usage(void)
{
    fprintf(stderr, "usage: hvi cami lookup FILE --windows BUILD [--kpti] [--x86] | --linux \"VERSION\" [--json]\n");
    return 2;
}

static int do_lookup(const hvi_cami *c, const char *linux_ver, uint64_t build, bool kpti, bool is64, bool json)
{
    if (linux_ver) {
        const hvi_cami_lix_entry *e;
        if (hvi_cami_lix_select(c, linux_ver, &e) != HVI_OK) {
            fprintf(stderr, "hvi cami lookup: no Linux entry matches '%s'\n", linux_ver);
            return 1;
        }
        dump_lix(stdout, e, json);
    } else {
        const hvi_cami_win_entry *e;
        if (build > UINT32_MAX || hvi_cami_win_select(c, (uint32_t)build, kpti, is64, &e) != HVI_OK) {
            fprintf(stderr, "hvi cami lookup: no Windows entry for build %" PRIu64 " kpti %d %s\n", build, kpti,
                    is64 ? "x64" : "x86");
            return 1;
        }
        dump_win(stdout, e, json);
    }
    if (json)
        fputc('\n', stdout);
    return 0;
}

static int cmd_lookup(int argc, char **argv)
{
    const char *file = NULL, *linux_ver = NULL;
    uint64_t build = 0;
    bool win = false, kpti = false, x86 = false, json = false;
    for (int i = 1; i < argc; i++) {
        if (hvi_cli_is_help(argv[i])) {
            printf("usage: hvi cami lookup FILE --windows BUILD [--kpti] [--x86] | --linux \"VERSION\" [--json]\n"
                   "  Select the entry the engine would use and print its fields by name.\n"
                   "  VERSION is the banner text after \"Linux version \" (or just the release).\n");
            return 0;
        }
        if (!strcmp(argv[i], "--windows") && i + 1 < argc) {
            win = true;
            if (!hvi_cli_parse_u64(argv[++i], &build)) {
                fprintf(stderr, "hvi cami lookup: '%s' is not a build number\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--linux") && i + 1 < argc) {
            linux_ver = argv[++i];
        } else if (!strcmp(argv[i], "--kpti")) {
            kpti = true;
        } else if (!strcmp(argv[i], "--x86")) {
            x86 = true;
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (argv[i][0] != '-' && !file) {
            file = argv[i];
        } else {
            fprintf(stderr, "hvi cami lookup: unexpected argument '%s'\n", argv[i]);
            return lookup_usage();
        }
    }
    if (!file || win == (linux_ver != NULL))
        return lookup_usage();
    hvi_cami *c;
    int rc = open_file(file, &c);
    if (rc)
        return rc;
    rc = do_lookup(c, linux_ver, build, kpti, !x86, json);
    hvi_cami_close(c);
    return rc;
}

static int cmd_cami(int argc, char **argv) { return hvi_cli_dispatch_sub("cami", argc, argv); }

HVI_COMMAND("cami", cmd_cami, "CAMI support files: build, dump, lookup")
HVI_SUBCOMMAND("cami", "build", cmd_build, "compile YAML sources into a support file")
HVI_SUBCOMMAND("cami", "dump", cmd_dump, "print every entry of a support file [--json]")
HVI_SUBCOMMAND("cami", "lookup", cmd_lookup, "select and print a Windows or Linux entry")
