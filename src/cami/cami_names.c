/* hvi cami — the effective group/field tables: tags.yaml, plus extension Linux fields from
 * lix_fields_ext.def appended after the known fields of their group (or as new groups). */
#include <pthread.h>
#include <stddef.h>
#include <string.h>

#include "cami/cami_tables.h"
#include "hvi/cami.h"

struct ext_field {
    const char *group, *field;
};

static const struct ext_field ext_fields[] = {
#define HVI_LIX_EXT_FIELD(g, f) {#g, #f},
#include "cami/lix_fields_ext.def"
#undef HVI_LIX_EXT_FIELD
    {NULL, NULL},
};
#define EXT_COUNT (sizeof(ext_fields) / sizeof(ext_fields[0]) - 1)

/* The effective Linux table, computed once (thread-safe): groups added by the extension file
 * and, per group, its extension fields in file order. Lookups are then O(1). */
static const char *new_groups[EXT_COUNT + 1];
static unsigned new_group_count;
static const char *ext_of[CAMI_MAX_GROUPS][EXT_COUNT + 1];
static unsigned ext_count_of[CAMI_MAX_GROUPS];
static pthread_once_t ext_once = PTHREAD_ONCE_INIT;

static int known_lix_group(const char *name)
{
    for (unsigned g = 0; g < cami_lix_group_count; g++)
        if (!strcmp(cami_lix_groups[g].name, name))
            return (int)g;
    return -1;
}

static void ext_build(void)
{
    for (size_t i = 0; i < EXT_COUNT; i++) {
        int g = known_lix_group(ext_fields[i].group);
        if (g < 0) {
            unsigned k = 0;
            while (k < new_group_count && strcmp(new_groups[k], ext_fields[i].group))
                k++;
            if (k == new_group_count) {
                if (cami_lix_group_count + k >= CAMI_MAX_GROUPS)
                    continue; /* over the table limit: ignored */
                new_groups[new_group_count++] = ext_fields[i].group;
            }
            g = (int)(cami_lix_group_count + k);
        }
        unsigned known = (unsigned)g < cami_lix_group_count ? cami_lix_groups[g].count : 0;
        if (known + ext_count_of[g] < CAMI_MAX_FIELDS)
            ext_of[g][ext_count_of[g]++] = ext_fields[i].field;
    }
}

static void ext_init(void) { pthread_once(&ext_once, ext_build); }

static const struct cami_group_def *base(unsigned kind, unsigned *n)
{
    switch (kind) {
    case CAMI_KIND_LIX: *n = cami_lix_group_count; return cami_lix_groups;
    case CAMI_KIND_WIN_KM: *n = cami_win_km_group_count; return cami_win_km_groups;
    case CAMI_KIND_WIN_UM: *n = cami_win_um_group_count; return cami_win_um_groups;
    default: *n = 0; return NULL;
    }
}

unsigned cami_groups(unsigned kind)
{
    unsigned n;
    base(kind, &n);
    if (kind == CAMI_KIND_LIX) {
        ext_init();
        n += new_group_count;
    }
    return n;
}

const char *cami_group_name(unsigned kind, unsigned g)
{
    unsigned n;
    const struct cami_group_def *d = base(kind, &n);
    if (g < n)
        return d[g].name;
    if (kind == CAMI_KIND_LIX) {
        ext_init();
        if (g - n < new_group_count)
            return new_groups[g - n];
    }
    return NULL;
}

unsigned cami_fields(unsigned kind, unsigned g)
{
    unsigned n;
    const struct cami_group_def *d = base(kind, &n);
    unsigned known = g < n ? d[g].count : 0;
    if (kind != CAMI_KIND_LIX)
        return known;
    ext_init();
    return g < n + new_group_count ? known + ext_count_of[g] : 0;
}

const char *cami_field_name(unsigned kind, unsigned g, unsigned f)
{
    unsigned n;
    const struct cami_group_def *d = base(kind, &n);
    unsigned known = g < n ? d[g].count : 0;
    if (f < known)
        return d[g].fields[f];
    if (kind != CAMI_KIND_LIX || g >= CAMI_MAX_GROUPS)
        return NULL;
    ext_init();
    return f - known < ext_count_of[g] ? ext_of[g][f - known] : NULL;
}

int cami_find_group(unsigned kind, const char *name)
{
    unsigned n = cami_groups(kind);
    for (unsigned g = 0; g < n; g++)
        if (!strcmp(cami_group_name(kind, g), name))
            return (int)g;
    return -1;
}

int cami_find_field(unsigned kind, unsigned g, const char *name)
{
    unsigned n = cami_fields(kind, g);
    for (unsigned f = 0; f < n; f++)
        if (!strcmp(cami_field_name(kind, g, f), name))
            return (int)f;
    return -1;
}

unsigned hvi_cami_group_count(unsigned kind) { return cami_groups(kind); }
const char *hvi_cami_group_name(unsigned kind, unsigned group) { return cami_group_name(kind, group); }
unsigned hvi_cami_field_count(unsigned kind, unsigned group) { return cami_fields(kind, group); }
const char *hvi_cami_field_name(unsigned kind, unsigned group, unsigned field)
{
    return cami_field_name(kind, group, field);
}
