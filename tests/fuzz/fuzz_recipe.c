/* libFuzzer target: definition files (recipe/parse.c), with and without --build-arg values,
 * and --build-arg-file contents. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "recipe/recipe.h"
#include "util/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        char *text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        char *args[] = {"A=1", "name=fuzz", NULL};
        for (int k = 0; k < 2; k++) {
                struct recipe r = {0};
                if (recipe_parse(text, size, k ? args : NULL, "fuzz.def", &r, &err) == 0) {
                        if (r.raw_len != size || memcmp(r.raw, data, size) != 0)
                                abort(); /* the file is kept as written */
                        for (size_t i = 0; i < r.n_stages; i++) {
                                (void) recipe_header_get(&r.stages[i], "bootstrap");
                                if (r.stages[i].name)
                                        (void) recipe_stage_find(&r, r.stages[i].name);
                        }
                }
                recipe_free(&r);
        }
        char **bargs = NULL;
        (void) recipe_build_args_parse(text, &bargs, &err);
        strv_free(bargs);
        free(text);
        return 0;
}
