#include "synth_kernel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t al8(size_t v)
{
    return (v + 7) & ~(size_t)7;
}

void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}
static void put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static void sym_name(unsigned i, char *out, size_t len)
{
    if (i == 0)
        snprintf(out, len, "T_text");
    else if (i == 1)
        snprintf(out, len, "Dinit_task");
    else if (i == 2)
        snprintf(out, len, "Dmodules");
    else if (i == SYM_DUP_A || i == SYM_DUP_B)
        snprintf(out, len, "tdup_name");
    else
        snprintf(out, len, "tfn_%04u", i);
}

uint64_t sym_addr(unsigned i)
{
    return IMG_VA + (i == 0 ? 0 : 0x1000 + 16ull * i);
}

static char g_names[NSYMS][32];

/* Name order of kallsyms_seqs_of_names: the name without its type, then the address (index). */
static int cmp_seq(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    int c = strcmp(g_names[x] + 1, g_names[y] + 1);
    return c ? c : (x > y) - (x < y);
}

size_t build_image(uint8_t *img)
{
    return build_image_opts(img, KS_AT, false);
}

size_t build_image_opts(uint8_t *img, size_t ks_at, bool seqs)
{
    memset(img, 0, IMG_LEN);
    memcpy(img + 0x2000, "Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP",
           68);
    size_t p = ks_at;
    for (unsigned i = 0; i < NSYMS; i++) /* offsets (absolute percpu encoding) */
        put32(img + p + 4 * i, (uint32_t)(-(int64_t)(sym_addr(i) - IMG_VA + 1)));
    p = al8(p + 4 * NSYMS);
    put64(img + p, IMG_VA);
    p += 8;
    put32(img + p, NSYMS);
    p += 8;
    size_t names = p;
    uint32_t markers[(NSYMS + 255) / 256];
    for (unsigned i = 0; i < NSYMS; i++) {
        if (i % 256 == 0)
            markers[i / 256] = (uint32_t)(p - names);
        char n[32];
        sym_name(i, n, sizeof(n));
        img[p++] = (uint8_t)strlen(n);
        for (size_t c = 0; n[c]; c++)
            img[p++] = (uint8_t)(n[c] - 0x20);
    }
    p = al8(p);
    for (unsigned i = 0; i < (NSYMS + 255) / 256; i++)
        put32(img + p + 4 * i, markers[i]);
    p = al8(p + 4 * ((NSYMS + 255) / 256));
    if (seqs) { /* 6.1 stable: kallsyms_seqs_of_names, 3 bytes big-endian per symbol */
        unsigned order[NSYMS];
        for (unsigned i = 0; i < NSYMS; i++) {
            sym_name(i, g_names[i], sizeof(g_names[i]));
            order[i] = i;
        }
        qsort(order, NSYMS, sizeof(order[0]), cmp_seq);
        for (unsigned i = 0; i < NSYMS; i++) {
            img[p + 3 * i] = (uint8_t)(order[i] >> 16);
            img[p + 3 * i + 1] = (uint8_t)(order[i] >> 8);
            img[p + 3 * i + 2] = (uint8_t)order[i];
        }
        p = al8(p + 3 * NSYMS);
    }
    size_t table = p;
    uint16_t index[256];
    for (unsigned t = 0; t < 256; t++) {
        index[t] = (uint16_t)(p - table);
        if (t < 95) {
            img[p++] = (uint8_t)(0x20 + t);
        } else {
            img[p++] = 'q';
            img[p++] = (uint8_t)('a' + (t - 95) % 26);
        }
        img[p++] = 0;
    }
    p = al8(p);
    memcpy(img + p, index, sizeof(index));
    return p;
}
