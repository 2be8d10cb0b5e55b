/* libFuzzer target: what users write on the command line and in env files (conf/parse.c):
 * -B bind specs, --mount specs, --no-mount names, env files. */
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "fuzz.h"
#include "util/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        char *text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        struct bind_spec *b = NULL;
        size_t n = 0;
        if (bind_spec_parse(text, &b, &n, &err) == 0)
                for (size_t i = 0; i < n; i++)
                        if (!b[i].src[0] || b[i].dst[0] != '/')
                                abort(); /* accepted binds name a source and an absolute destination */
        (void) mount_spec_parse(text, &b, &n, &err);
        bind_spec_free_array(b, n);
        unsigned mask = 0;
        char **skip = NULL;
        (void) no_mount_parse(text, &mask, &skip, &err);
        strv_free(skip);
        char **env = NULL;
        (void) env_file_parse(text, "fuzz.env", NULL, &env, &err);
        for (char **e = env; e && *e; e++)
                if (!strchr(*e, '='))
                        abort();
        strv_free(env);
        free(text);
        return 0;
}
