/*
 * hvi protect layer — private: the protection record shared by the files of src/protect.
 */
#ifndef HVI_PROTECT_PRIV_H
#define HVI_PROTECT_PRIV_H

#include <stdio.h>

#include "core/engine.h"
#include "hvi/protect.h"

enum prot_kind { PROT_MEM = 1, PROT_REG = 2, PROT_INTEGRITY = 3, PROT_UNPACK = 4 };

struct hvi_protect {
    uint32_t kind;
    char object[64];
    hvi_protect_desc desc; /* desc.object points at object[] */
    hvi_hook *hook;
    uint64_t mask;
    /* integrity */
    uint64_t cr3;
    hvi_gva gva;
    uint32_t len;
    uint64_t hash;
    uint8_t *copy;       /* reference contents, written back on a denied change */
    uint8_t *scratch;
    /* other kinds: private data and its release (e == NULL at engine free: no guest access) */
    void *priv;
    void (*release)(hvi_engine *e, struct hvi_protect *p);
    struct hvi_protect *next;
};

struct hvi_slack;
struct hvi_swapmem;
struct hvi_memcloak;

struct hvi_protect_state {
    struct hvi_protect *list;
    uint64_t violations;
    struct hvi_slack *slack;
    struct hvi_swapmem *swaps;  /* pending swapmem requests */
    size_t nswaps;
    bool swap_handlers;
    struct hvi_memcloak *cloaks;
};

/* Layer state (created on first use), NULL on allocation failure. */
struct hvi_protect_state *hvi_protect_state(hvi_engine *e);
/* A new record (not yet linked); NULL on allocation failure. */
struct hvi_protect *hvi_protect_new(hvi_engine *e, const hvi_protect_desc *desc, uint32_t kind);
void hvi_protect_link(hvi_engine *e, struct hvi_protect *p);
void hvi_slack_release(struct hvi_protect_state *s);
/* Free pending swapmem requests (engine free; hooks are released by the hook layer). */
void hvi_swapmem_release(struct hvi_protect_state *s);
/* Cancel every pending request, removing its hooks (detach). */
size_t hvi_swapmem_cancel_all(hvi_engine *e);
/* Memcloak regions: detach uncloaks (restoring applied patches); engine free releases (e NULL). */
void hvi_memcloak_release_all(hvi_engine *e, struct hvi_protect_state *s);

#endif
