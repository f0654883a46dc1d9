/* hvi guest/linux — the adapter from the CAMI support data to struct lix_offsets.
 *
 * The entry is selected by the kernel release (version glob) through the CAMI layer and each
 * field of lix_offsets_fill() is asked for by name. Until the CAMI layer (include/hvi/cami.h)
 * is part of the build, no entry can be selected and the kernel is refused by version. */
#include "core/engine.h"
#include "guest/linux/lix.h"

hvi_status lix_select_offsets(hvi_engine *e, struct lix_kernel *k)
{
    if (!e || !k)
        return HVI_E_INVAL;
    if (!e->support || !e->support_len)
        return hvi_fail(e, HVI_E_UNSUPPORTED,
                        "Linux %s found, but no support data was given (no CAMI entry)",
                        k->release);
    return hvi_fail(e, HVI_E_UNSUPPORTED,
                    "no CAMI entry for Linux %s: this build has no CAMI layer to select one",
                    k->release);
}
