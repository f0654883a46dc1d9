#include "synth_kernel.h"

#include <stdio.h>
#include <string.h>


size_t al8(size_t v) { return (v + 7) & ~(size_t)7; }

void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static void sym_name(unsigned i, char *out, size_t len)
{
    if (i == 0)
        snprintf(out, len, "T_text");
    else if (i == 1)
        snprintf(out, len, "Dinit_task");
    else if (i == 2)
        snprintf(out, len, "Dmodules");
    else
        snprintf(out, len, "tfn_%04u", i);
}

uint64_t sym_addr(unsigned i) { return IMG_VA + (i == 0 ? 0 : 0x1000 + 16ull * i); }

/* Build the image; returns the token_index offset (for corrupting tests). */
size_t build_image(uint8_t *img)
{
    memset(img, 0, IMG_LEN);
    memcpy(img + 0x2000, "Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP",
           68);
    size_t p = KS_AT;
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

