#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "win_fixture.h"

static void *support_buf;
static size_t support_len;
static hvi_cami *cami;

const void *wf_support(size_t *len)
{
    if (!support_buf) {
        FILE *fp = fopen(WF_CAMI_BIN, "rb");
        if (!fp) {
            fprintf(stderr, "  reference CAMI file %s is missing\n", WF_CAMI_BIN);
            return NULL;
        }
        fseek(fp, 0, SEEK_END);
        long n = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        support_buf = n > 0 ? malloc((size_t)n) : NULL;
        if (support_buf && fread(support_buf, 1, (size_t)n, fp) == (size_t)n)
            support_len = (size_t)n;
        fclose(fp);
        if (!support_len || hvi_cami_open(support_buf, support_len, &cami, NULL, 0) != HVI_OK) {
            free(support_buf);
            support_buf = NULL;
            return NULL;
        }
    }
    *len = support_len;
    return support_buf;
}

const hvi_cami *wf_cami(void)
{
    size_t n;
    return wf_support(&n) ? cami : NULL;
}

hvi_status wf_build(struct wf *f, const hvi_sim_win_config *cfg)
{
    memset(f, 0, sizeof(*f));
    if (!wf_cami())
        return HVI_E_NOT_FOUND;
    hvi_sim_config sc = {.ram_size = 32u << 20, .vcpus = 2};
    hvi_status st = hvi_sim_new(&sc, &f->sim);
    if (st == HVI_OK)
        st = hvi_sim_win_build(f->sim, wf_cami(), cfg, &f->w);
    return st;
}

static void on_alert(const hvi_alert *a, void *user)
{
    struct wf *f = user;
    if (f->nalerts < WF_MAX_ALERTS)
        f->alerts[f->nalerts++] = *a;
}

hvi_status wf_attach(struct wf *f, uint64_t options, bool support)
{
    hvi_glue g;
    hvi_status st = hvi_sim_glue(f->sim, &g);
    if (st == HVI_OK)
        st = hvi_engine_new(&g, &f->e);
    if (st != HVI_OK)
        return st;
    hvi_set_log(f->e, NULL, HVI_LOG_ERROR, NULL);
    hvi_set_alert_callback(f->e, on_alert, f);
    hvi_sim_attach(f->sim, f->e);
    size_t len = 0;
    const void *buf = wf_support(&len);
    hvi_guest_params p = {.size = sizeof(p),
                          .os_hint = HVI_OS_WINDOWS,
                          .options = options,
                          .support = support ? buf : NULL,
                          .support_len = support ? len : 0};
    return hvi_new_guest(f->e, &p);
}

void wf_free(struct wf *f)
{
    if (f->sim)
        hvi_sim_attach(f->sim, NULL);
    hvi_engine_free(f->e);
    hvi_sim_free(f->sim);
    memset(f, 0, sizeof(*f));
}

hvi_status wf_write(struct wf *f, uint64_t va, uint64_t value, uint32_t len, uint64_t rip,
                    hvi_event_reply *rep)
{
    static const uint8_t mov8[] = {0x48, 0x89, 0x58, 0x08}; /* mov [rax+8], rbx */
    static const uint8_t mov4[] = {0x89, 0x58, 0x08};       /* mov [rax+8], ebx */
    hvi_regs *r = hvi_sim_vcpu_regs(f->sim, 0);
    r->rip = rip;
    r->gpr[HVI_RAX] = va - 8;
    r->gpr[HVI_RBX] = value;
    return hvi_sim_guest_write(f->sim, 0, va, &value, len, len == 8 ? mov8 : mov4,
                               len == 8 ? sizeof(mov8) : sizeof(mov4), rep);
}

int wf_count(const struct wf *f, uint32_t type)
{
    int n = 0;
    for (int i = 0; i < f->nalerts; i++)
        n += f->alerts[i].type == type;
    return n;
}

const hvi_alert *wf_last(const struct wf *f, uint32_t type)
{
    for (int i = f->nalerts; i-- > 0;)
        if (f->alerts[i].type == type)
            return &f->alerts[i];
    return NULL;
}
