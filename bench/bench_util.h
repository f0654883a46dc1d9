/*
 * bench helpers shared by the benches that time rounds on the host: a millisecond clock and
 * the median of a sample (upper median for an even count; sorts the array in place).
 */
#ifndef HVI_BENCH_UTIL_H
#define HVI_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

static inline double ms_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static inline int bench_cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static inline double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), bench_cmp_d);
    return v[n / 2];
}

#endif
