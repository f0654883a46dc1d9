/* Shared set-up for the Windows layer tests: the reference CAMI file, a simulator with the
 * synthetic Windows guest (backends/sim/hvi_sim_windows.h) and an engine on it. */
#ifndef WIN_FIXTURE_H
#define WIN_FIXTURE_H

#include "hvi/cami.h"
#include "hvi/hvi.h"
#include "hvi/windows.h"
#include "hvi_sim.h"
#include "hvi_sim_windows.h"

#define WF_CAMI_BIN HVI_SHARED_DIR "/reference/hvmi-cami/intro_live_update.bin"
#define WF_MAX_ALERTS 64

struct wf {
    hvi_sim *sim;
    hvi_engine *e;
    hvi_sim_win w;
    hvi_alert alerts[WF_MAX_ALERTS];
    int nalerts;
};

/* The support data (loaded once, never freed); NULL with a message when missing. */
const void *wf_support(size_t *len);
const hvi_cami *wf_cami(void);
/* Build the guest only (no engine yet). */
hvi_status wf_build(struct wf *f, const hvi_sim_win_config *cfg);
/* Create the engine and attach it as a Windows guest with `options`; returns hvi_new_guest's
 * status. support == false: no support data. */
hvi_status wf_attach(struct wf *f, uint64_t options, bool support);
void wf_free(struct wf *f);
/* Guest vCPU 0 writes `len` (4 or 8) bytes of value at va with a MOV, from RIP = rip. */
hvi_status wf_write(struct wf *f, uint64_t va, uint64_t value, uint32_t len, uint64_t rip,
                    hvi_event_reply *rep);
/* Alerts of a type received so far. */
int wf_count(const struct wf *f, uint32_t type);
const hvi_alert *wf_last(const struct wf *f, uint32_t type);

#endif
