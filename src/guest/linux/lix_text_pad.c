/* hvi guest/linux — int3 padding in kernel text, used by the agents (the LSTAR agent's stub,
 * the process/file agents' return address). */
#include "guest/linux/lix.h"

bool lix_find_int3_pad(const uint8_t *text, size_t len, size_t *off)
{
    /* ret; then at least 4 int3: padding no code path reaches (executing it would trap) */
    for (size_t j = 1; text && off && j + 4 < len; j++)
        if (text[j - 1] == 0xc3 && text[j] == 0xcc && text[j + 1] == 0xcc && text[j + 2] == 0xcc &&
            text[j + 3] == 0xcc) {
            *off = j;
            return true;
        }
    return false;
}
