/*
 * hvi hook layer — hook objects: named groups of hooked linear regions.
 */
#include <stdlib.h>
#include <string.h>

#include "hook_priv.h"
#include "hvi/mem.h"

#define OBJ_MAX_PAGES 65536u

struct obj_region {
    hvi_gva gva;
    uint64_t len;
    hvi_hook **hooks;
    size_t count;
    struct obj_region *next;
};

struct hvi_hook_object {
    char name[64];
    struct obj_region *regions;
    struct hvi_hook_object *next;   /* in the hook state's list */
};

hvi_status hvi_hook_object_new(hvi_engine *e, const char *name, hvi_hook_object **out)
{
    if (!e || !out)
        return HVI_E_INVAL;
    struct hvi_hook_state *s = hvi_hook_state_get(e);
    hvi_hook_object *o = s ? calloc(1, sizeof(*o)) : NULL;
    if (!o)
        return HVI_E_NOMEM;
    hvi_strlcpy(o->name, name ? name : "", sizeof(o->name));
    o->next = s->objects;
    s->objects = o;
    *out = o;
    return HVI_OK;
}

/* e == NULL: the engine is being freed, the hooks are released by the hook layer itself. */
static void region_free(hvi_engine *e, struct obj_region *r)
{
    for (size_t i = 0; e && i < r->count; i++)
        (void)hvi_hook_remove(e, r->hooks[i]);
    free(r->hooks);
    free(r);
}

static hvi_status hook_page(hvi_engine *e, uint64_t cr3, hvi_gva gva, uint32_t len,
                            uint32_t access, hvi_gpa_hook_cb cb, hvi_gva_moved_cb moved, void *ctx,
                            hvi_hook **out)
{
    if (e->glue.caps & HVI_CAP_EPT)
        return hvi_hook_gva_add(e, cr3, gva, len, access, cb, moved, ctx, out);
    hvi_gpa gpa;
    hvi_status st = hvi_gva_to_gpa(e, cr3, gva, &gpa);
    if (st != HVI_OK)
        return hvi_fail(e, st, "hook object: 0x%llx is not present (no EPT: cannot follow it)",
                        (unsigned long long)gva);
    return hvi_hook_gpa_add_gva(e, gpa, gva, len, access, cb, ctx, out);
}

hvi_status hvi_hook_object_add_region(hvi_engine *e, hvi_hook_object *obj, uint64_t cr3,
                                      hvi_gva gva, uint64_t len, uint32_t access,
                                      hvi_gpa_hook_cb cb, hvi_gva_moved_cb moved, void *ctx)
{
    if (!e || !obj || !cb || len == 0 || gva + len < gva)
        return HVI_E_INVAL;
    uint64_t pages = ((gva + len - 1) >> 12) - (gva >> 12) + 1;
    if (pages > OBJ_MAX_PAGES)
        return hvi_fail(e, HVI_E_LIMIT, "hook object %s: region too large", obj->name);
    struct obj_region *r = calloc(1, sizeof(*r));
    if (r)
        r->hooks = calloc(pages, sizeof(*r->hooks));
    if (!r || !r->hooks) {
        free(r);
        return HVI_E_NOMEM;
    }
    r->gva = gva;
    r->len = len;
    if (!(e->glue.caps & HVI_CAP_EPT) && (e->glue.caps & HVI_CAP_WATCH_RANGE) &&
        access == HVI_EPT_W) {
        /* software watchpoints of any length: the whole region is one hook, one watchpoint */
        hvi_status st = hvi_hook_watch_range_add(e, cr3, gva, len, cb, ctx, &r->hooks[0]);
        if (st != HVI_OK) {
            region_free(e, r);
            return st;
        }
        r->hooks[r->count++]->internal = true;
        r->next = obj->regions;
        obj->regions = r;
        return HVI_OK;
    }
    for (hvi_gva p = gva; p < gva + len; p = (p & HVI_PAGE_MASK) + HVI_PAGE_SIZE) {
        uint64_t room = HVI_PAGE_SIZE - (p & (HVI_PAGE_SIZE - 1));
        uint32_t n = (uint32_t)(gva + len - p < room ? gva + len - p : room);
        hvi_status st = hook_page(e, cr3, p, n, access, cb, moved, ctx, &r->hooks[r->count]);
        if (st != HVI_OK) {
            region_free(e, r);
            return st;
        }
        r->hooks[r->count++]->internal = true; /* removed through the object */
    }
    r->next = obj->regions;
    obj->regions = r;
    return HVI_OK;
}

hvi_status hvi_hook_object_remove_region(hvi_engine *e, hvi_hook_object *obj, hvi_gva gva)
{
    if (!e || !obj)
        return HVI_E_INVAL;
    for (struct obj_region **pp = &obj->regions; *pp; pp = &(*pp)->next) {
        if ((*pp)->gva == gva) {
            struct obj_region *r = *pp;
            *pp = r->next;
            region_free(e, r);
            return HVI_OK;
        }
    }
    return HVI_E_NOT_FOUND;
}

static void object_clear(hvi_engine *e, hvi_hook_object *obj)
{
    while (obj->regions) {
        struct obj_region *r = obj->regions;
        obj->regions = r->next;
        region_free(e, r);
    }
}

void hvi_hook_object_free(hvi_engine *e, hvi_hook_object *obj)
{
    if (!e || !obj || !e->hook)
        return;
    for (hvi_hook_object **pp = &e->hook->objects; *pp; pp = &(*pp)->next) {
        if (*pp == obj) {
            *pp = obj->next;
            break;
        }
    }
    object_clear(e, obj);
    free(obj);
}

void hvi_hook_objects_release(hvi_engine *e, struct hvi_hook_state *s, bool free_them)
{
    for (hvi_hook_object *o = s->objects, *n; o; o = n) {
        n = o->next;
        object_clear(free_them ? NULL : e, o);
        if (free_them)
            free(o);
    }
    if (free_them)
        s->objects = NULL;
}
