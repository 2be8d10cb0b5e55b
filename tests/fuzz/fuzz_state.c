/* libFuzzer target: an instance's state file (instanced/state.c): parsed, and what parses
 * is formatted and parsed again to the same fields. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "instanced/instanced.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct instance_state st = {0}, again = {0};
        char *text = malloc(size + 1), *out = NULL;
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        if (instance_state_parse(text, &st, &err) == 0 && instance_state_format(&st, &out) == 0) {
                if (instance_state_parse(out, &again, &err) != 0 || strcmp(st.name, again.name) != 0 ||
                    st.pid != again.pid || st.supervisor != again.supervisor ||
                    strcmp(st.image ? st.image : "", again.image ? again.image : "") != 0)
                        abort(); /* what hutch writes, hutch must read back the same */
                instance_state_clear(&again);
        }
        free(out);
        instance_state_clear(&st);
        free(text);
        return 0;
}
