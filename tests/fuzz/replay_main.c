/*
 * Replay driver for libFuzzer targets: feeds every file of the given corpus directories (or
 * files) to LLVMFuzzerTestOneInput once. Built with gcc so every ctest run exercises the
 * corpus; a crash, sanitizer report or leak fails the test.
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0) {
        fclose(f);
        return 1;
    }
    uint8_t *buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        return 1;
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, got);
    free(buf);
    return 0;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    int files = 0, errors = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s is missing\n", argv[i]);
            errors++;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            errors += run_file(argv[i]);
            files++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            errors++;
            continue;
        }
        char **names = NULL;
        size_t count = 0;
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            char **n = realloc(names, (count + 1) * sizeof(*names));
            if (!n)
                break;
            names = n;
            size_t len = strlen(argv[i]) + strlen(de->d_name) + 2;
            names[count] = malloc(len);
            if (!names[count])
                break;
            snprintf(names[count], len, "%s/%s", argv[i], de->d_name);
            count++;
        }
        closedir(d);
        qsort(names, count, sizeof(*names), cmp);
        for (size_t k = 0; k < count; k++) {
            errors += run_file(names[k]);
            files++;
            free(names[k]);
        }
        free(names);
    }
    printf("replayed %d inputs, %d errors\n", files, errors);
    if (files == 0) {
        fprintf(stderr, "replay: no corpus input found\n");
        return 1;
    }
    return errors ? 1 : 0;
}
