/* CAMI: the whole reference corpus compiles; our output and the reference 1.4 binary give the
 * same answer for every entry and lookup, and both equal the numbers written in the YAML. */
#include <ctype.h>
#include <dirent.h>
#include <stdlib.h>

#include "cami_test_util.h"
#include "harness.h"

static hvi_cami *ours, *ref;
static void *our_buf;
static size_t our_len;

static int setup(void)
{
    if (ours && ref)
        return 1;
    if (!ct_have_reference())
        return 0;
    size_t rlen;
    void *rb = ct_read(CAMI_REF_DIR "/intro_live_update.bin", &rlen);
    char msg[256];
    our_buf = ct_build_corpus(&our_len);
    if (!rb || !our_buf)
        return 0;
    hvi_status a = hvi_cami_open(rb, rlen, &ref, msg, sizeof(msg));
    if (a != HVI_OK)
        fprintf(stderr, "reference refused: %s\n", msg);
    hvi_status b = hvi_cami_open(our_buf, our_len, &ours, msg, sizeof(msg));
    if (b != HVI_OK)
        fprintf(stderr, "our output refused: %s\n", msg);
    free(rb);
    return a == HVI_OK && b == HVI_OK;
}

static bool prot_eq(const hvi_cami_prot *a, const hvi_cami_prot *b)
{
    return a->force_off == b->force_off && a->force_beta == b->force_beta &&
           a->force_feedback == b->force_feedback && a->force_on == b->force_on;
}

static void check_osprot(const hvi_cami_os_prot *a, const hvi_cami_os_prot *b)
{
    CHECK(a->present == b->present);
    CHECK(prot_eq(&a->core, &b->core));
    CHECK(prot_eq(&a->shemu, &b->shemu));
    REQUIRE(a->proc_count == b->proc_count);
    for (uint32_t i = 0; i < a->proc_count; i++) {
        CHECK_STR(a->procs[i].name, b->procs[i].name);
        CHECK(prot_eq(&a->procs[i].options, &b->procs[i].options));
    }
}

/* every member the 1.4 file has is equal; members we add beyond it read 0 (not in the YAML) */
static void check_groups(const hvi_cami_opaque *r, uint32_t rn, const hvi_cami_opaque *o, uint32_t on)
{
    REQUIRE(on >= rn);
    for (uint32_t g = 0; g < rn; g++) {
        CHECK(o[g].count >= r[g].count);
        for (uint32_t f = 0; f < r[g].count && f < o[g].count; f++)
            if (r[g].members[f] != o[g].members[f]) {
                fprintf(stderr, "  group %u field %u: ref 0x%x ours 0x%x\n", g, f, r[g].members[f], o[g].members[f]);
                hvi_test_cur_failed = 1;
            }
    }
}

static void check_patterns_eq(const hvi_cami_pattern *a, const hvi_cami_pattern *b)
{
    CHECK_STR(a->section, b->section);
    REQUIRE(a->len == b->len);
    CHECK(memcmp(a->items, b->items, a->len * sizeof(uint16_t)) == 0);
}

HVI_TEST(corpus_compiles_and_both_load)
{
    REQUIRE(setup());
    CHECK_EQ_U64(ref->minor, 4);
    CHECK_EQ_U64(ours->minor, 5);
    CHECK(!ref->checksummed);
    CHECK(ours->checksummed);
    CHECK_EQ_U64(ours->lix_count, ref->lix_count);
    CHECK_EQ_U64(ours->win_count, ref->win_count);
    CHECK_EQ_U64(ref->lix_count, 3);
    CHECK_EQ_U64(ref->win_count, 10);
}

HVI_TEST(build_is_deterministic)
{
    REQUIRE(setup());
    size_t len2;
    void *b2 = ct_build_corpus(&len2);
    REQUIRE(b2);
    CHECK_EQ_U64(len2, our_len);
    CHECK(len2 == our_len && memcmp(b2, our_buf, our_len) == 0);
    free(b2);
}

HVI_TEST(linux_entries_equal)
{
    REQUIRE(setup());
    for (uint32_t i = 0; i < ref->lix_count; i++) {
        const hvi_cami_lix_entry *r = &ref->lix[i], *o = NULL;
        for (uint32_t k = 0; k < ours->lix_count; k++)
            if (!strcmp(ours->lix[k].version, r->version))
                o = &ours->lix[k];
        REQUIRE(o);
        CHECK_EQ_U64(o->min_intro, r->min_intro);
        CHECK_EQ_U64(o->max_intro, r->max_intro);
        check_groups(r->groups, r->group_count, o->groups, o->group_count);
        REQUIRE(o->hook_count == r->hook_count);
        for (uint32_t h = 0; h < r->hook_count; h++) {
            CHECK_EQ_U64(o->hooks[h].name_hash, r->hooks[h].name_hash);
            CHECK_EQ_U64(o->hooks[h].handler, r->hooks[h].handler);
            CHECK_EQ_U64(o->hooks[h].skip_on_boot, r->hooks[h].skip_on_boot);
        }
        check_osprot(&o->prot, &r->prot);
    }
}

static void check_function(const hvi_cami_win_function *r, const hvi_cami_win_function *o)
{
    REQUIRE(o);
    REQUIRE(o->arg_count == r->arg_count);
    CHECK(memcmp(o->args, r->args, r->arg_count * sizeof(uint32_t)) == 0);
    REQUIRE(o->pattern_count == r->pattern_count);
    for (uint32_t p = 0; p < r->pattern_count; p++)
        check_patterns_eq(&r->patterns[p], &o->patterns[p]);
}

HVI_TEST(windows_entries_equal)
{
    REQUIRE(setup());
    for (uint32_t i = 0; i < ref->win_count; i++) {
        const hvi_cami_win_entry *r = &ref->win[i], *o = NULL;
        CHECK_OK(hvi_cami_win_select(ours, r->build, r->kpti, r->is64, &o));
        REQUIRE(o);
        CHECK_STR(o->version_string, r->version_string);
        CHECK_STR(o->server_version_string, r->server_version_string);
        check_groups(r->km, r->km_count, o->km, o->km_count);
        check_groups(r->um, r->um_count, o->um, o->um_count);
        CHECK_EQ_U64(o->function_count, r->function_count);
        for (uint32_t f = 0; f < r->function_count; f++)
            check_function(&r->functions[f], hvi_cami_win_function_find(o, r->functions[f].name_hash));
        check_osprot(&o->prot, &r->prot);
    }
}

HVI_TEST(signatures_equal_and_match)
{
    REQUIRE(setup());
    REQUIRE(ours->syscall_count == ref->syscall_count);
    REQUIRE(ours->dist_count == ref->dist_count);
    CHECK_EQ_U64(ref->syscall_count, 7);
    for (uint32_t i = 0; i < ref->syscall_count; i++) {
        CHECK_EQ_U64(ours->syscalls[i].id, ref->syscalls[i].id);
        CHECK_EQ_U64(ours->syscalls[i].offset, ref->syscalls[i].offset);
        CHECK_EQ_U64(ours->syscalls[i].flags, ref->syscalls[i].flags);
        check_patterns_eq(&ours->syscalls[i].pattern, &ref->syscalls[i].pattern);
    }
    for (uint32_t i = 0; i < ref->dist_count; i++) {
        CHECK_EQ_U64(ours->dists[i].id, ref->dists[i].id);
        CHECK_EQ_U64(ours->dists[i].offset, ref->dists[i].offset);
        check_patterns_eq(&ours->dists[i].pattern, &ref->dists[i].pattern);
    }
    /* code made from signature 0 with wildcards as 0xAA matches it; one changed literal byte does not */
    uint8_t code[256];
    const hvi_cami_pattern *p = &ref->syscalls[0].pattern;
    memset(code, 0xCC, sizeof(code));
    for (uint32_t k = 0; k < p->len; k++)
        code[k] = p->items[k] == HVI_CAMI_WILDCARD ? 0xAA : (uint8_t)p->items[k];
    CHECK(hvi_cami_syscall_match(ours, code, sizeof(code)) == &ours->syscalls[0]);
    CHECK(hvi_cami_syscall_match(ref, code, sizeof(code)) == &ref->syscalls[0]);
    code[0] ^= 0xFF;
    const hvi_cami_sig *s = hvi_cami_syscall_match(ours, code, sizeof(code));
    CHECK(s != &ours->syscalls[0]);
    CHECK(!hvi_cami_pattern_match(p, code, 3)); /* shorter than the pattern */
    uint8_t page[4096];
    memset(page, 0x90, sizeof(page));
    const hvi_cami_sig *d = &ours->dists[1];
    for (uint32_t k = 0; k < d->pattern.len; k++)
        page[d->offset + k] = d->pattern.items[k] == HVI_CAMI_WILDCARD ? 0x11 : (uint8_t)d->pattern.items[k];
    CHECK(hvi_cami_dist_match(ours, page, sizeof(page)) == d);
    CHECK_EQ_U64(d->id, 0x040f0000);
}

HVI_TEST(linux_selection_by_banner)
{
    REQUIRE(setup());
    const hvi_cami *both[2] = {ours, ref};
    for (int i = 0; i < 2; i++) {
        const hvi_cami_lix_entry *e = NULL;
        CHECK_OK(hvi_cami_lix_select(both[i], "4.15.0-112-generic (buildd@lcy01) #113-Ubuntu SMP", &e));
        CHECK(e && !strcmp(e->version, "4.15.0-[24-]*Ubuntu*"));
        CHECK_OK(hvi_cami_lix_select(both[i], "4.18.0-193.el8.x86_64 (mockbuild@x) gcc", &e));
        CHECK(e && !strcmp(e->version, "4.18.0-[167-]*el8*"));
        CHECK_OK(hvi_cami_lix_select(both[i], "4.18.0-147.el8.x86_64 (mockbuild@x)", &e));
        CHECK(e && !strcmp(e->version, "4.18.0-[80-166]*el8*"));
        CHECK_STATUS(hvi_cami_lix_select(both[i], "4.18.0-79.el8.x86_64", &e), HVI_E_NOT_FOUND);
        CHECK_STATUS(hvi_cami_lix_select(both[i], "4.15.0-23-generic #1-Ubuntu", &e), HVI_E_NOT_FOUND);
        uint32_t v = 1;
        CHECK_OK(hvi_cami_lix_select(both[i], "4.15.0-24-generic #1-Ubuntu", &e));
        CHECK_OK(hvi_cami_lix_field(e, HVI_LIX_INFO, HVI_LIX_INFO_THREADSIZE, &v));
        CHECK_EQ_U64(v, 0x4000);
        CHECK_STATUS(hvi_cami_lix_field(e, HVI_LIX_GROUP_COUNT + 40, 0, &v), HVI_E_INVAL);
        CHECK_STATUS(hvi_cami_lix_field(e, HVI_LIX_INFO, HVI_LIX_INFO_COUNT + 40, &v), HVI_E_INVAL);
    }
    const hvi_cami_win_entry *w;
    CHECK_STATUS(hvi_cami_win_select(ours, 7600, true, true, &w), HVI_E_NOT_FOUND);
    CHECK_OK(hvi_cami_win_select(ours, 7601, true, false, &w));
    CHECK(w && w->kpti && !w->is64 && w->build == 7601);
}

/* What a 1.4 reader does with our file: sections found by the first (hint & wanted) == wanted,
 * minor > 4 accepted, at least the known structure/member counts. */
HVI_TEST(our_file_reads_like_1_4)
{
    REQUIRE(setup());
    const uint8_t *b = our_buf;
    uint32_t ns, so;
    memcpy(&ns, b + 20, 4);
    memcpy(&so, b + 24, 4);
    CHECK_EQ_U64(so, 28);
    const uint32_t wanted[] = {0x2, 0x201, 0x101, 0x204};
    for (size_t w = 0; w < 4; w++) {
        uint32_t found = 0;
        for (uint32_t i = 0; i < ns && !found; i++) {
            uint32_t h;
            memcpy(&h, b + so + 16 * i, 4);
            if ((h & wanted[w]) == wanted[w])
                found = h;
        }
        CHECK_EQ_U64(found, wanted[w]);
    }
    for (uint32_t i = 0; i < ours->lix_count; i++) {
        CHECK(ours->lix[i].group_count >= 16);
        for (uint32_t g = 0; g < 16; g++)
            CHECK(ours->lix[i].groups[g].count >= hvi_cami_field_count(0, g) &&
                  ours->lix[i].groups[g].count >= ref->lix[0].groups[g].count);
    }
    for (uint32_t i = 0; i < ours->win_count; i++) {
        CHECK(ours->win[i].km_count >= 14);
        CHECK(ours->win[i].um_count >= 3);
    }
}

/* ---- independent check against the YAML text: a line scanner, not the compiler ---------- */

struct ykey {
    char linux_ver[80];
    long build, kpti, is64, um_min, um_max;
};

static bool yaml_num(const char *s, unsigned long long *v)
{
    char *end;
    while (*s == ' ')
        s++;
    if (!isdigit((unsigned char)*s))
        return false;
    *v = strtoull(s, &end, 0);
    while (*end == ' ')
        end++;
    return *end == 0 || *end == '#' || *end == '\n';
}

static long yaml_bool(const char *s) { return strstr(s, "True") ? 1 : 0; }

/* Check every "Field: value" under "Group: !opaque_fields" against ref and ours. */
static int scan_file(const char *path, unsigned kind)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    struct ykey k = {"", -1, -1, -1, -1, -1};
    char line[512], group[128] = "";
    int checked = 0;
    while (fgets(line, sizeof(line), f)) {
        char a[128], b[256];
        if (sscanf(line, " version: %79s", k.linux_ver) == 1 && !strchr(line, '!'))
            continue;
        if (sscanf(line, " build_number: %ld", &k.build) == 1 || sscanf(line, " min_ver: %ld", &k.um_min) == 1 ||
            sscanf(line, " max_ver: %ld", &k.um_max) == 1)
            continue;
        if (strstr(line, "kpti_installed:"))
            k.kpti = yaml_bool(line);
        if (strstr(line, "is_64:") || strstr(line, "is64:"))
            k.is64 = yaml_bool(line);
        if (sscanf(line, " %127[A-Za-z0-9_]: !opaque_fields", a) == 1 && strstr(line, "!opaque_fields")) {
            snprintf(group, sizeof(group), "%s", a);
            continue;
        }
        unsigned long long v;
        if (!group[0] || sscanf(line, " %127[A-Za-z0-9_] : %255[^\n]", a, b) != 2 || !yaml_num(b, &v))
            continue;
        int g = -1, fi = -1;
        for (unsigned i = 0; i < hvi_cami_group_count(kind); i++)
            if (!strcmp(hvi_cami_group_name(kind, i), group))
                g = (int)i;
        for (unsigned i = 0; g >= 0 && i < hvi_cami_field_count(kind, (unsigned)g); i++)
            if (!strcmp(hvi_cami_field_name(kind, (unsigned)g, i), a))
                fi = (int)i;
        if (g < 0 || fi < 0) {
            fprintf(stderr, "  %s: %s.%s not in the tables\n", path, group, a);
            hvi_test_cur_failed = 1;
            continue;
        }
        const hvi_cami *both[2] = {ref, ours};
        for (int c = 0; c < 2; c++) {
            uint32_t got = 0xDEADBEEF;
            hvi_status st = HVI_E_NOT_FOUND;
            if (kind == 0) {
                for (uint32_t i = 0; i < both[c]->lix_count; i++)
                    if (!strcmp(both[c]->lix[i].version, k.linux_ver))
                        st = hvi_cami_lix_field(&both[c]->lix[i], (unsigned)g, (unsigned)fi, &got);
            } else if (kind == 1) {
                const hvi_cami_win_entry *w;
                if ((st = hvi_cami_win_select(both[c], (uint32_t)k.build, k.kpti, k.is64, &w)) == HVI_OK)
                    st = hvi_cami_win_km_field(w, (unsigned)g, (unsigned)fi, &got);
            } else {
                for (uint32_t i = 0; i < both[c]->win_count; i++) {
                    const hvi_cami_win_entry *w = &both[c]->win[i];
                    if (w->is64 == (k.is64 == 1) && w->build >= k.um_min && w->build <= k.um_max) {
                        st = hvi_cami_win_um_field(w, (unsigned)g, (unsigned)fi, &got);
                        if (st == HVI_OK && got != v)
                            break;
                    }
                }
            }
            if (st != HVI_OK || got != v) {
                fprintf(stderr, "  %s: %s.%s = 0x%llx, %s reads 0x%x (%s)\n", path, group, a, v,
                        c ? "ours" : "reference", got, hvi_strstatus(st));
                hvi_test_cur_failed = 1;
            }
        }
        checked++;
    }
    fclose(f);
    return checked;
}

static int scan_dir(const char *dir, unsigned kind)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return 0;
    for (struct dirent *de; (de = readdir(d));) {
        char p[1024];
        if (!strstr(de->d_name, ".yaml"))
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        n += scan_file(p, kind);
    }
    closedir(d);
    return n;
}

HVI_TEST(fields_equal_the_yaml_numbers)
{
    REQUIRE(setup());
    int lix = scan_dir(CAMI_REF_DIR "/sources/linux/opaque_fields", 0);
    int km = scan_dir(CAMI_REF_DIR "/sources/windows/opaque_fields/km", 1);
    int um = scan_dir(CAMI_REF_DIR "/sources/windows/opaque_fields/um", 2);
    fprintf(stderr, "  checked %d Linux, %d Windows KM, %d Windows UM field values\n", lix, km, um);
    CHECK(lix > 300);
    CHECK(km > 900);
    CHECK(um > 60);
}

HVI_TEST_MAIN()
