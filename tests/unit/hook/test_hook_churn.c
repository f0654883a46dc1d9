/*
 * Hook bookkeeping under churn: thousands of random add/remove operations; after every step the
 * EPT rights of every frame equal a model computed independently, and at the end they are
 * exactly the rights from before.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "hook_fixture.h"

#define SLOTS 64
#define OPS 6000

struct slot {
    hvi_hook *h;
    hvi_gpa gpa;
    uint32_t len, access;
};

static uint32_t nop_cb(hvi_engine *e, hvi_hook *h, const hvi_hook_access *a, void *c)
{
    (void)e, (void)h, (void)a, (void)c;
    return HVI_ACTION_ALLOW;
}

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static uint32_t model(const struct slot *s, hvi_gpa frame, uint32_t orig)
{
    uint32_t deny = 0;
    for (int i = 0; i < SLOTS; i++)
        if (s[i].h && s[i].gpa < frame + 4096 && frame < s[i].gpa + s[i].len)
            deny |= s[i].access;
    if (deny & HVI_EPT_R)
        deny |= HVI_EPT_W;
    return orig & ~deny;
}

HVI_TEST(random_add_remove_restores_rights)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    hvi_gpa base = 0x200000; /* 8 contiguous frames, two with pre-existing rights */
    uint32_t orig[9];
    hvi_sim_set_ept_rights(f.sim, base + 2 * 4096, HVI_EPT_R | HVI_EPT_X);
    hvi_sim_set_ept_rights(f.sim, base + 5 * 4096, HVI_EPT_R | HVI_EPT_W);
    for (int i = 0; i < 9; i++)
        orig[i] = hvi_sim_ept_rights(f.sim, base + (uint64_t)i * 4096);
    struct slot s[SLOTS];
    memset(s, 0, sizeof(s));
    int mismatches = 0, failures = 0;
    for (int op = 0; op < OPS; op++) {
        int k = (int)rnd(SLOTS);
        if (s[k].h) {
            failures += hvi_hook_remove(f.e, s[k].h) != HVI_OK;
            s[k].h = NULL;
        } else {
            s[k].gpa = base + rnd(8 * 4096 - 1);
            s[k].len = 1 + rnd(rnd(4) == 0 ? 8192 : 64);
            if (s[k].gpa + s[k].len > base + 8 * 4096)
                s[k].len = (uint32_t)(base + 8 * 4096 - s[k].gpa);
            s[k].access = 1 + rnd(7);
            failures += hvi_hook_gpa_add(f.e, s[k].gpa, s[k].len, s[k].access, nop_cb, NULL,
                                         &s[k].h) != HVI_OK;
        }
        for (int fr = 0; fr < 9; fr++) {
            hvi_gpa g = base + (uint64_t)fr * 4096;
            mismatches += hvi_sim_ept_rights(f.sim, g) != model(s, g, orig[fr]);
        }
    }
    CHECK_EQ_U64(failures, 0);
    CHECK_EQ_U64(mismatches, 0);
    for (int k = 0; k < SLOTS; k++)
        if (s[k].h)
            CHECK_OK(hvi_hook_remove(f.e, s[k].h));
    for (int i = 0; i < 9; i++)
        CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, base + (uint64_t)i * 4096), orig[i]);
    CHECK_EQ_U64(hvi_hook_frame_count(f.e), 0);
    CHECK_EQ_U64(hvi_hook_count(f.e), 0);
    fx_fini(&f);
}

HVI_TEST_MAIN()
