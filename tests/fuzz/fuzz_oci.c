/* libFuzzer target: what a registry or an image archive sends (registry/oci.c): image
 * references, OCI and Docker manifests and indexes (and the platform chosen from one),
 * image configs, layer entry names as whiteouts, archive member names. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "registry/registry.h"
#include "util/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        char *text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        struct registry_ref ref = {0};
        if (registry_ref_parse(text, &ref, &err) == 0) {
                if (!ref.repo || (!ref.tag && !ref.digest))
                        abort(); /* a reference names a repository and a tag or digest */
                if (ref.digest && !registry_digest_is_valid(ref.digest))
                        abort();
                free(registry_ref_default_name(&ref));
        }
        registry_ref_free(&ref);
        struct oci_manifest m = {0};
        if (oci_manifest_parse(text, size, &m, &err) == 0 && m.is_index) {
                const struct oci_descriptor *d = NULL;
                (void) oci_index_select(&m, "linux", "amd64", NULL, &d, &err);
                (void) oci_index_select(&m, "linux", "arm64", "v8", &d, &err);
        }
        oci_manifest_free(&m);
        struct oci_config c = {0};
        (void) oci_config_parse(text, size, &c, &err);
        oci_config_free(&c);
        char *target = NULL;
        enum whiteout w = whiteout_classify(text, &target);
        if (w == WHITEOUT_FILE && (!target || !target[0]))
                abort(); /* a file whiteout deletes a named path */
        free(target);
        (void) archive_name_is_valid(text);
        free(text);
        return 0;
}
