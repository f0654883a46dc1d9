/* hvi CLI — the Linux view session (see linux_session.h). */
#include "linux_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "hvi/cami.h"
#include "hvi/linux.h"

#ifdef HVI_HAVE_BACKEND_qemu
#include "hvi_qemu.h"
#endif
#ifdef HVI_HAVE_BACKEND_dump
#include "hvi_dump.h"
#endif

void linux_json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static int usage_fail(const char *usage)
{
    fprintf(stderr, "usage: %s\n", usage);
    return 2;
}

#ifdef HVI_HAVE_BACKEND_qemu
static int attach(struct linux_session *s, const char *name, const char *offsets, void *support,
                  size_t support_len)
{
    hvi_qemu_vm *vm = NULL;
    hvi_qemu *q = NULL;
    hvi_glue glue;
    hvi_status st = hvi_qemu_vm_find(NULL, name, &vm);
    if (st != HVI_OK) {
        fprintf(stderr, "hvi: %s\n", hvi_qemu_vm_last_error());
        return 1;
    }
    s->vm = vm;
    if ((st = hvi_qemu_open(vm, &q)) != HVI_OK)
        return hvi_cli_fail("connecting to the guest", st);
    s->q = q;
    if ((st = hvi_qemu_glue(q, &glue)) != HVI_OK || (st = hvi_engine_new(&glue, &s->engine)))
        return hvi_cli_fail("creating the engine", st);
    if (offsets && (st = hvi_linux_set_offsets_file(s->engine, offsets)) != HVI_OK)
        return hvi_cli_fail("offsets file", st);
    hvi_guest_params p = {.size = sizeof(p), .os_hint = HVI_OS_LINUX, .support = support,
                          .support_len = support_len};
    st = hvi_new_guest(s->engine, &p);
    if (st != HVI_OK) {
        fprintf(stderr, "hvi: %s\n", hvi_last_error(s->engine));
        return 1;
    }
    return 0;
}
#endif

#ifdef HVI_HAVE_BACKEND_dump
/* The same view on a memory dump (backends/dump): nothing runs, nothing is paused. */
static int attach_dump(struct linux_session *s, const char *path, const char *offsets,
                       void *support, size_t support_len)
{
    hvi_dump *d = NULL;
    hvi_glue glue;
    hvi_status st = hvi_dump_open(path, &d);
    if (st != HVI_OK) {
        fprintf(stderr, "hvi: %s: %s\n", path, hvi_dump_last_error(NULL));
        return 1;
    }
    s->dump = d;
    if ((st = hvi_dump_glue(d, &glue)) != HVI_OK || (st = hvi_engine_new(&glue, &s->engine)))
        return hvi_cli_fail("creating the engine", st);
    if (offsets && (st = hvi_linux_set_offsets_file(s->engine, offsets)) != HVI_OK)
        return hvi_cli_fail("offsets file", st);
    hvi_guest_params p = {.size = sizeof(p), .os_hint = HVI_OS_LINUX, .support = support,
                          .support_len = support_len};
    if (hvi_new_guest(s->engine, &p) != HVI_OK) {
        fprintf(stderr, "hvi: %s\n", hvi_last_error(s->engine));
        return 1;
    }
    return 0;
}
#endif

int linux_session_open(struct linux_session *s, int argc, char **argv, const char *usage)
{
    const char *name = "default", *offsets = NULL, *cami = NULL, *dump = NULL;
    bool vm_given = false;
    memset(s, 0, sizeof(*s));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (hvi_cli_is_help(a)) {
            printf("usage: %s\n", usage);
            return LINUX_SESSION_HELP;
        } else if (!strcmp(a, "--json")) {
            s->json = true;
        } else if (!strcmp(a, "--threads")) {
            s->threads = true;
        } else if (i + 1 < argc && !strcmp(a, "--vm")) {
            name = argv[++i];
            vm_given = true;
        } else if (i + 1 < argc && !strcmp(a, "--dump")) {
            dump = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--offsets")) {
            offsets = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--cami")) {
            cami = argv[++i];
        } else if (a[0] != '-' && s->nrest < 4) {
            s->rest[s->nrest++] = a;
        } else {
            return usage_fail(usage);
        }
    }
    if (dump && vm_given) /* one guest or one dump, not both */
        return usage_fail(usage);
#if defined(HVI_HAVE_BACKEND_qemu) || defined(HVI_HAVE_BACKEND_dump)
    void *support = NULL;
    size_t support_len = 0;
    if (cami) {
        /* a compiled CAMI file, or YAML sources (a .yaml file or a directory such as
         * cami/linux) compiled here */
        struct stat sb;
        size_t cl = strlen(cami);
        bool yaml = (stat(cami, &sb) == 0 && S_ISDIR(sb.st_mode)) ||
                    (cl > 5 && !strcmp(cami + cl - 5, ".yaml")) ||
                    (cl > 4 && !strcmp(cami + cl - 4, ".yml"));
        char msg[256] = "";
        hvi_status st = yaml ? hvi_cami_build(&cami, 1, &support, &support_len, msg, sizeof(msg))
                             : hvi_cli_read_file(cami, &support, &support_len);
        if (st != HVI_OK) {
            if (msg[0])
                fprintf(stderr, "hvi: %s\n", msg);
            return hvi_cli_fail(cami, st);
        }
    }
    int rc = 1;
    if (dump) {
#ifdef HVI_HAVE_BACKEND_dump
        rc = attach_dump(s, dump, offsets, support, support_len);
#else
        fprintf(stderr, "hvi: this build has no dump backend\n");
#endif
    } else {
#ifdef HVI_HAVE_BACKEND_qemu
        rc = attach(s, name, offsets, support, support_len);
#else
        fprintf(stderr, "hvi: this build has no QEMU backend\n");
#endif
    }
    free(support);
    if (rc)
        linux_session_close(s);
    return rc;
#else
    (void)name, (void)offsets, (void)cami, (void)dump;
    fprintf(stderr, "hvi: this build has no QEMU or dump backend\n");
    return 1;
#endif
}

void linux_session_close(struct linux_session *s)
{
    hvi_engine_free(s->engine);
#ifdef HVI_HAVE_BACKEND_qemu
    hvi_qemu_close(s->q);
    hvi_qemu_vm_release(s->vm);
#endif
#ifdef HVI_HAVE_BACKEND_dump
    hvi_dump_close(s->dump);
#endif
    memset(s, 0, sizeof(*s));
}
