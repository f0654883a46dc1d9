/* hvi cami — group/field name tables (tags.yaml order) and extension fields (private). */
#ifndef HVI_CAMI_TABLES_H
#define HVI_CAMI_TABLES_H

#include <stdint.h>

struct cami_group_def {
    const char *name;
    const char *const *fields;
    unsigned count;
};

extern const struct cami_group_def cami_lix_groups[];
extern const unsigned cami_lix_group_count;
extern const struct cami_group_def cami_win_km_groups[];
extern const unsigned cami_win_km_group_count;
extern const struct cami_group_def cami_win_um_groups[];
extern const unsigned cami_win_um_group_count;

#define CAMI_KIND_LIX 0u
#define CAMI_KIND_WIN_KM 1u
#define CAMI_KIND_WIN_UM 2u
#define CAMI_MAX_GROUPS 64u
#define CAMI_MAX_FIELDS 256u

/* The effective tables: tags.yaml plus, for Linux, lix_fields_ext.def appended. */
unsigned cami_groups(unsigned kind);
const char *cami_group_name(unsigned kind, unsigned g);
unsigned cami_fields(unsigned kind, unsigned g);
const char *cami_field_name(unsigned kind, unsigned g, unsigned f);
int cami_find_group(unsigned kind, const char *name);
int cami_find_field(unsigned kind, unsigned g, const char *name);

#endif
