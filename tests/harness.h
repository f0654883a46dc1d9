/*
 * A small assertion runner for hvi's tests.
 *
 *   HVI_TEST(name) { CHECK(x == 1); CHECK_EQ_U64(a, b); CHECK_OK(st); }
 *   int main(void) { return hvi_test_run_all(); }   // or HVI_TEST_MAIN()
 *
 * Each HVI_TEST registers itself; a failed CHECK prints file:line and the
 * expression, marks the case failed and continues with the next check.
 * hvi_test_skip("why") marks the whole program skipped (exit 77) unless a
 * case failed. The closing line is "N passed, N failed[, N skipped]".
 */
#ifndef HVI_TEST_HARNESS_H
#define HVI_TEST_HARNESS_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hvi/status.h"

typedef void (*hvi_test_fn)(void);

struct hvi_test_case {
    const char *name;
    hvi_test_fn fn;
};

#define HVI_TEST_MAX 512
static struct hvi_test_case hvi_test_cases[HVI_TEST_MAX];
static int hvi_test_count;
static int hvi_test_cur_failed;
static int hvi_test_cur_skipped;
static const char *hvi_test_skip_reason;

static inline void hvi_test_register(const char *name, hvi_test_fn fn)
{
    if (hvi_test_count < HVI_TEST_MAX) {
        hvi_test_cases[hvi_test_count].name = name;
        hvi_test_cases[hvi_test_count].fn = fn;
        hvi_test_count++;
    }
}

#define HVI_TEST(name)                                                                             \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void test_register_##name(void)                           \
    {                                                                                              \
        hvi_test_register(#name, test_##name);                                                     \
    }                                                                                              \
    static void test_##name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);            \
            hvi_test_cur_failed = 1;                                                               \
        }                                                                                          \
    } while (0)

/* Stop the current case when the condition fails (use where continuing would crash). */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: REQUIRE(%s) failed\n", __FILE__, __LINE__, #cond);          \
            hvi_test_cur_failed = 1;                                                               \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                                         \
    do {                                                                                           \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                          \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "  %s:%d: %s == %s failed: 0x%" PRIx64 " != 0x%" PRIx64 "\n", __FILE__, \
                    __LINE__, #a, #b, a_, b_);                                                     \
            hvi_test_cur_failed = 1;                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_STATUS(expr, want)                                                                   \
    do {                                                                                           \
        hvi_status s_ = (expr);                                                                    \
        if (s_ != (want)) {                                                                        \
            fprintf(stderr, "  %s:%d: %s returned %d (%s), wanted %s\n", __FILE__, __LINE__, #expr, \
                    (int)s_, hvi_strstatus(s_), #want);                                            \
            hvi_test_cur_failed = 1;                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, HVI_OK)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                   \
            fprintf(stderr, "  %s:%d: \"%s\" == \"%s\" failed\n", __FILE__, __LINE__,              \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                       \
            hvi_test_cur_failed = 1;                                                               \
        }                                                                                          \
    } while (0)

/* Skip the current case with a reason (counted as skipped, never passed). */
#define SKIP_CASE(why)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "  skipped: %s\n", (why));                                                 \
        hvi_test_cur_skipped = 1;                                                                  \
        return;                                                                                    \
    } while (0)

static inline int hvi_test_run_all(void)
{
    int passed = 0, failed = 0, skipped = 0;
    const char *only = getenv("HVI_TEST_ONLY");
    for (int i = 0; i < hvi_test_count; i++) {
        if (only && !strstr(hvi_test_cases[i].name, only))
            continue;
        hvi_test_cur_failed = 0;
        hvi_test_cur_skipped = 0;
        hvi_test_cases[i].fn();
        if (hvi_test_cur_failed) {
            failed++;
            printf("FAIL %s\n", hvi_test_cases[i].name);
        } else if (hvi_test_cur_skipped) {
            skipped++;
            printf("SKIP %s\n", hvi_test_cases[i].name);
        } else {
            passed++;
            printf("ok   %s\n", hvi_test_cases[i].name);
        }
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    (void)hvi_test_skip_reason;
    if (failed)
        return 1;
    if (skipped && passed == 0)
        return 77;
    return 0;
}

#define HVI_TEST_MAIN()                                                                            \
    int main(void)                                                                                 \
    {                                                                                              \
        return hvi_test_run_all();                                                                 \
    }

#endif
