/* bench_cami — CAMI compile, load and lookup times (JSON to argv[1]).
 *
 * compile: hvi_cami_build() over the whole reference corpus (read + parse + serialize);
 * baseline: reading the same files and pulling every libyaml event, nothing else (the floor
 * any libyaml-based compiler pays). load: hvi_cami_open() of the reference 1.4 binary and of
 * our 1.5 output. lookup: Linux banner selection + one field, Windows selection + one field. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yaml.h>

#include "hvi/cami.h"

#define REF HVI_SHARED_DIR "/reference/hvmi-cami"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_d);
    return v[n / 2];
}

static long yaml_events_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    static char buf[1 << 22];
    size_t len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    yaml_parser_t p;
    yaml_event_t ev;
    long n = 0;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    for (;;) {
        if (!yaml_parser_parse(&p, &ev))
            break;
        int end = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        n++;
        if (end)
            break;
    }
    yaml_parser_delete(&p);
    return n;
}

static long yaml_events_dir(const char *dir)
{
    DIR *d = opendir(dir);
    long n = 0;
    if (!d)
        return 0;
    for (struct dirent *de; (de = readdir(d));) {
        char p[2048];
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        if (strstr(de->d_name, ".yaml"))
            n += yaml_events_file(p);
        else
            n += yaml_events_dir(p);
    }
    closedir(d);
    return n;
}

static void *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = malloc((size_t)n);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static double time_load(const void *b, size_t len, int reps)
{
    double t[64];
    for (int i = 0; i < reps && i < 64; i++) {
        hvi_cami *c;
        double t0 = now_s();
        if (hvi_cami_open(b, len, &c, NULL, 0) != HVI_OK)
            return -1;
        t[i] = now_s() - t0;
        hvi_cami_close(c);
    }
    return median(t, reps < 64 ? reps : 64);
}

static double time_lookups(const hvi_cami *c, int n)
{
    static const char *const banners[] = {"4.15.0-112-generic (buildd@lcy01) #113-Ubuntu SMP",
                                          "4.18.0-193.el8.x86_64 (mockbuild@x)", "4.18.0-147.el8.x86_64 (m@x)"};
    volatile uint32_t sink = 0;
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        const hvi_cami_lix_entry *e;
        const hvi_cami_win_entry *w;
        uint32_t v = 0;
        if (hvi_cami_lix_select(c, banners[i % 3], &e) == HVI_OK)
            hvi_cami_lix_field(e, HVI_LIX_TASKSTRUCT, HVI_LIX_TASKSTRUCT_COMMOFFSET, &v);
        sink += v;
        if (hvi_cami_win_select(c, i & 1 ? 17763 : 7601, true, true, &w) == HVI_OK)
            hvi_cami_win_km_field(w, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_CR3, &v);
        sink += v;
    }
    (void)sink;
    return (now_s() - t0) / n;
}

int main(int argc, char **argv)
{
    const char *src[] = {REF "/sources"};
    enum { N = 15 };
    double tb[N], ty[N];
    void *out = NULL;
    size_t len = 0;
    long events = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: bench_cami OUT.json\n");
        return 2;
    }
    for (int i = 0; i < N; i++) {
        double t0 = now_s();
        events = yaml_events_dir(REF "/sources");
        ty[i] = now_s() - t0;
        free(out);
        out = NULL;
        t0 = now_s();
        if (hvi_cami_build(src, 1, &out, &len, NULL, 0) != HVI_OK) {
            fprintf(stderr, "bench_cami: building %s failed (is the shared reference present?)\n", src[0]);
            return 1;
        }
        tb[i] = now_s() - t0;
    }
    double build = median(tb, N), yaml = median(ty, N);
    size_t rlen;
    void *rb = read_all(REF "/intro_live_update.bin", &rlen);
    double load_ref = rb ? time_load(rb, rlen, 51) : -1, load_ours = time_load(out, len, 51);
    hvi_cami *c;
    if (hvi_cami_open(out, len, &c, NULL, 0) != HVI_OK)
        return 1;
    double lookup = time_lookups(c, 200000);
    hvi_cami_close(c);
    FILE *j = fopen(argv[1], "w");
    if (!j)
        return 1;
    fprintf(j,
            "{\n  \"bench\": \"cami\",\n  \"corpus_yaml_events\": %ld,\n  \"compile_s\": %.6f,\n"
            "  \"baseline_yaml_events_only_s\": %.6f,\n  \"compile_vs_yaml_events_ratio\": %.3f,\n"
            "  \"speedup_vs_reference_compiler_1_2s_stated\": %.1f,\n  \"output_bytes\": %zu,\n"
            "  \"load_reference_1_4_s\": %.7f,\n  \"load_ours_1_5_s\": %.7f,\n"
            "  \"load_ours_vs_reference_ratio\": %.3f,\n  \"lookup_pair_ns\": %.1f,\n"
            "  \"lookup_vs_load_ratio\": %.6f\n}\n",
            events, build, yaml, build / yaml, 1.2 / build, len, load_ref, load_ours,
            load_ref > 0 ? load_ours / load_ref : -1, lookup * 1e9, lookup / load_ours);
    fclose(j);
    free(out);
    free(rb);
    FILE *r = fopen(argv[1], "r");
    for (int ch; r && (ch = fgetc(r)) != EOF;)
        putchar(ch);
    if (r)
        fclose(r);
    return 0;
}
