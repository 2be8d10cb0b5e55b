/* libFuzzer target: Apptainer's cgroups TOML (--apply-cgroups; cgroups/toml.c). */
#include <stdlib.h>
#include <string.h>

#include "cgroups/cgroups.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct cgroup_limits l;
        char *text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        cgroup_limits_init(&l);
        (void) cgroup_toml_parse(text, "fuzz.toml", &l, &err);
        cgroup_limits_free(&l);
        free(text);
        return 0;
}
