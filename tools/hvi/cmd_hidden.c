/*
 * hvi hidden — the cross-view checks of the Linux protection, run once: a process on its
 * parent's children list but not on the task list, a module in /sys/module (module_kset) but
 * not on the modules list. Works on a live guest (--vm) and on a dump (--dump): only memory is
 * read, nothing is hooked or written (HVI_OPT_INTEGRITY alone). One JSON alert line per hidden
 * object, then a summary line on stderr. Exit 0 when the check ran (whatever it found).
 */
#include <stdio.h>

#include "cli.h"
#include "hvi/alert.h"
#include "hvi/linux_protect.h"
#include "linux_session.h"

struct found {
    unsigned processes, modules;
};

static void on_alert(const hvi_alert *a, void *user)
{
    struct found *f = user;
    char buf[4096];
    if (a->type == HVI_ALERT_HIDDEN_PROCESS)
        f->processes++;
    else if (a->type == HVI_ALERT_HIDDEN_MODULE)
        f->modules++;
    else
        return;
    if (hvi_alert_to_json(a, buf, sizeof(buf), NULL) != HVI_E_INVAL)
        printf("%s\n", buf);
}

static int cmd_hidden(int argc, char **argv)
{
    struct linux_session s;
    int rc = linux_session_open(&s, argc, argv,
                                "hvi hidden [--vm NAME | --dump FILE] [--offsets FILE]"
                                " [--cami FILE]");
    if (rc)
        return rc == LINUX_SESSION_HELP ? 0 : rc;
    struct found f = {0};
    hvi_set_alert_callback(s.engine, on_alert, &f);
    hvi_status st = hvi_options_set(s.engine, HVI_OPT_INTEGRITY);
    if (st == HVI_OK)
        st = hvi_linux_protect_start(s.engine); /* first round: the cross-view checks */
    if (st == HVI_OK)
        st = hvi_timer_tick(s.engine); /* delivers the alerts (each reported once) */
    if (st != HVI_OK) {
        fprintf(stderr, "hvi hidden: %s\n", hvi_last_error(s.engine));
        linux_session_close(&s);
        return 1;
    }
    fprintf(stderr, "hvi hidden: %u hidden process(es), %u hidden module(s)\n", f.processes,
            f.modules);
    linux_session_close(&s);
    return 0;
}

HVI_COMMAND("hidden", cmd_hidden,
            "processes and modules hidden from the kernel's lists (cross-view)")
