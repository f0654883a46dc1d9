/* CAMI Linux version glob: numeric intervals at every boundary, '*', '?', escapes. */
#include "harness.h"
#include "hvi/cami.h"

#define M(p, s) hvi_cami_glob_match(p, s)

HVI_TEST(closed_interval_bounds)
{
    CHECK(M("4.15.0-[24-30]", "4.15.0-24"));
    CHECK(M("4.15.0-[24-30]", "4.15.0-30"));
    CHECK(M("4.15.0-[24-30]", "4.15.0-27"));
    CHECK(!M("4.15.0-[24-30]", "4.15.0-23"));
    CHECK(!M("4.15.0-[24-30]", "4.15.0-31"));
    CHECK(!M("4.15.0-[24-30]", "4.15.0-"));
    CHECK(!M("4.15.0-[24-30]", "4.15.0-x"));
    CHECK(M("[7]", "7"));
    CHECK(!M("[7]", "8"));
}

HVI_TEST(open_bounds)
{
    CHECK(M("[24-]", "24"));
    CHECK(M("[24-]", "18446744073709551615"));
    CHECK(!M("[24-]", "23"));
    CHECK(M("[-5]", "0"));
    CHECK(M("[-5]", "5"));
    CHECK(!M("[-5]", "6"));
    CHECK(M("[-]", "0"));
    CHECK(M("[-]", "18446744073709551615"));
}

HVI_TEST(numbers_past_64_bits_match_no_interval)
{
    CHECK(!M("[-]", "18446744073709551616"));
    CHECK(!M("[0-]", "99999999999999999999999"));
    CHECK(M("[!0-5]", "99999999999999999999999"));
    CHECK(!M("[0-18446744073709551616]", "1")); /* a bound past 64 bits is malformed */
    CHECK(M("x*", "x99999999999999999999999"));
}

HVI_TEST(inverted_interval)
{
    CHECK(M("[!10-20]", "9"));
    CHECK(M("[!10-20]", "21"));
    CHECK(!M("[!10-20]", "15"));
    CHECK(!M("[!10-20]", "a"));
}

HVI_TEST(several_ranges_and_stars)
{
    const char *p = "4.[15-18].0-[80-166]*el8*";
    CHECK(M(p, "4.18.0-147.el8.x86_64"));
    CHECK(M(p, "4.15.0-80.el8"));
    CHECK(!M(p, "4.19.0-147.el8"));
    CHECK(!M(p, "4.18.0-167.el8"));
    CHECK(!M(p, "4.18.0-147.el7"));
    CHECK(M("4.15.0-[24-]*Ubuntu*", "4.15.0-112-generic (buildd@lcy01-amd64-027) #113-Ubuntu SMP Thu"));
    CHECK(M("*", ""));
    CHECK(M("*", "anything"));
    CHECK(M("**a**", "xxa"));
    CHECK(!M("*a", "xxab"));
    CHECK(M("*[3-4]", "version 4"));
    CHECK(M("*[3-4]x", "99 4x"));  /* '*' may stop inside a number */
}

HVI_TEST(question_mark_and_escapes)
{
    CHECK(M("4.1?.0", "4.19.0"));
    CHECK(!M("4.1?.0", "4.1.0"));
    CHECK(M("a\\*b", "a*b"));
    CHECK(!M("a\\*b", "axxb"));
    CHECK(M("a\\[1-2]", "a[1-2]"));
    CHECK(!M("a\\[1-2]", "a1"));
    CHECK(M("a\\?", "a?"));
    CHECK(!M("a\\?", "ab"));
    CHECK(M("a\\\\", "a\\"));
}

HVI_TEST(non_numeric_and_malformed_classes)
{
    CHECK(!M("[a-z]", "b"));   /* classes are numeric only */
    CHECK(!M("[1-2", "1"));    /* unterminated */
    CHECK(!M("[1-2]", ""));
    CHECK(M("6.1.0-[13-]-amd64", "6.1.0-13-amd64"));
    CHECK(!M("6.1.0-[13-]-amd64", "6.1.0-rc1-amd64"));
    CHECK(!M(NULL, "x"));
    CHECK(!M("x", NULL));
}

HVI_TEST(long_inputs_are_bounded)
{
    char p[300], s[300];
    memset(p, '*', 256);
    p[256] = 0;
    memset(s, 'a', 256);
    s[256] = 0;
    CHECK(M(p, s));
    p[255] = 'b';
    CHECK(!M(p, s)); /* many stars, no match: memoized, no blow-up */
    memset(s, 'a', 299);
    s[299] = 0;
    CHECK(!M("*", s)); /* longer than the bound: refused */
}

HVI_TEST_MAIN()
