/* Image references, and the JSON documents of the OCI image and distribution specs (and
 * Docker's schema 2 that predates them): manifests, indexes, image configs. Pure: no I/O. */
#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "registry.h"
#include "util/cleanup.h"
#include "util/util.h"

bool registry_digest_is_valid(const char *d)
{
        if (!d || !startswith(d, "sha256:") || strlen(d) != 7 + 64)
                return false;
        for (const char *p = d + 7; *p; p++)
                if (!isdigit((unsigned char) *p) && !(*p >= 'a' && *p <= 'f'))
                        return false;
        return true;
}

void registry_ref_free(struct registry_ref *r)
{
        free(r->host);
        free(r->repo);
        free(r->tag);
        free(r->digest);
        *r = (struct registry_ref){0};
}

/* The distribution spec's grammar: path components [a-z0-9]+ joined by ".", "_", "__" or
 * runs of "-"; tags [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}. */
static bool repo_is_valid(const char *repo)
{
        if (!*repo || strlen(repo) > 255)
                return false;
        for (const char *p = repo; *p; p++) {
                bool alnum = (*p >= 'a' && *p <= 'z') || isdigit((unsigned char) *p);
                if (alnum)
                        continue;
                if (!strchr("._-/", *p) || p == repo || !p[1])
                        return false;
                if (*p == '/' && (p[-1] == '/' || strchr("._-", p[1])))
                        return false;
                if (*p != '/' && p[-1] == '/')
                        return false;
        }
        return true;
}

static bool tag_is_valid(const char *t)
{
        size_t n = strlen(t);
        if (n == 0 || n > 128 || t[0] == '.' || t[0] == '-')
                return false;
        for (; *t; t++)
                if (!isalnum((unsigned char) *t) && !strchr("_.-", *t))
                        return false;
        return true;
}

static bool is_host(const char *s, size_t n)
{
        return memchr(s, '.', n) || memchr(s, ':', n) || (n == 9 && !memcmp(s, "localhost", 9));
}

int registry_ref_parse(const char *uri, struct registry_ref *ret, struct hutch_error *err)
{
        struct registry_ref r = {0};
        const char *s;
        if (startswith(uri, "docker://"))
                r.transport = REGISTRY_DOCKER, s = uri + 9;
        else if (startswith(uri, "oras://"))
                r.transport = REGISTRY_ORAS, s = uri + 7;
        else
                return hutch_err(err, -EINVAL, "'%s' is not a docker:// or oras:// reference", uri);
        _cleanup_free_ char *copy = strdup(s);
        if (!copy)
                return hutch_err(err, -ENOMEM, "out of memory");
        char *at = strchr(copy, '@');
        if (at) {
                *at = 0;
                if (!registry_digest_is_valid(at + 1))
                        return hutch_err(err, -EINVAL, "'%s': the digest is not sha256: and 64 hex digits", uri);
                r.digest = strdup(at + 1);
        }
        char *name = copy, *slash = strchr(copy, '/');
        if (slash && is_host(copy, (size_t) (slash - copy))) {
                *slash = 0;
                r.host = strdup(copy);
                name = slash + 1;
        } else if (r.transport == REGISTRY_ORAS) {
                registry_ref_free(&r);
                return hutch_err(err, -EINVAL, "'%s': an oras:// reference names its registry (oras://HOST/REPO:TAG)",
                                 uri);
        } else
                r.host = strdup(DOCKER_HUB_HOST);
        char *colon = strrchr(name, ':');
        if (colon && !strchr(colon, '/')) {
                *colon = 0;
                if (!tag_is_valid(colon + 1)) {
                        registry_ref_free(&r);
                        return hutch_err(err, -EINVAL, "'%s': '%s' is not a valid tag", uri, colon + 1);
                }
                r.tag = strdup(colon + 1);
        } else if (!r.digest)
                r.tag = strdup("latest");
        if (!repo_is_valid(name)) {
                registry_ref_free(&r);
                return hutch_err(err, -EINVAL,
                                 "'%s': '%s' is not a valid repository name (lowercase letters, digits, "
                                 "separators)",
                                 uri, name);
        }
        if (!strcmp(r.host, DOCKER_HUB_HOST) && !strchr(name, '/') && asprintf(&r.repo, "library/%s", name) < 0)
                r.repo = NULL;
        else if (!r.repo)
                r.repo = strdup(name);
        if (!r.host || !r.repo || (!r.tag && !r.digest)) {
                registry_ref_free(&r);
                return hutch_err(err, -ENOMEM, "out of memory");
        }
        *ret = r;
        return 0;
}

/* Apptainer's name (its uri.GetName): the reference's last element split at ':', the first
 * two parts joined by '_'. So REPO:TAG gives REPO_TAG.sif, REPO@sha256:HEX gives
 * REPO@sha256_HEX.sif and REPO:TAG@sha256:HEX gives REPO_TAG@sha256.sif. */
char *registry_ref_default_name(const struct registry_ref *r)
{
        const char *last = strrchr(r->repo, '/');
        char *s = NULL;
        last = last ? last + 1 : r->repo;
        const char *colon = r->digest ? strchr(r->digest, ':') : NULL;
        int alg = colon ? (int) (colon - r->digest) : r->digest ? (int) strlen(r->digest) : 0;
        int k;
        if (r->tag && r->digest)
                k = asprintf(&s, "%s_%s@%.*s.sif", last, r->tag, alg, r->digest);
        else if (r->tag)
                k = asprintf(&s, "%s_%s.sif", last, r->tag);
        else
                k = asprintf(&s, "%s@%.*s_%s.sif", last, alg, r->digest, colon ? colon + 1 : "");
        return k < 0 ? NULL : s;
}

/* ---- JSON */

static char *jstr(struct json_object *o, const char *key)
{
        struct json_object *v;
        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return strdup(json_object_get_string(v));
}

static void descriptor_free(struct oci_descriptor *d)
{
        free(d->media_type);
        free(d->digest);
        free(d->os);
        free(d->arch);
        free(d->variant);
        *d = (struct oci_descriptor){0};
}

static int descriptor_parse(struct json_object *o, struct oci_descriptor *d, const char *what, struct hutch_error *err)
{
        struct json_object *v, *p;
        *d = (struct oci_descriptor){.size = -1};
        if (!json_object_is_type(o, json_type_object))
                return hutch_err(err, -EBADMSG, "malformed manifest: %s is not an object", what);
        d->media_type = jstr(o, "mediaType");
        d->digest = jstr(o, "digest");
        if (json_object_object_get_ex(o, "size", &v) && json_object_is_type(v, json_type_int))
                d->size = json_object_get_int64(v);
        if (json_object_object_get_ex(o, "platform", &p)) {
                d->os = jstr(p, "os");
                d->arch = jstr(p, "architecture");
                d->variant = jstr(p, "variant");
        }
        if (!registry_digest_is_valid(d->digest) || d->size < 0) {
                descriptor_free(d);
                return hutch_err(err, -EBADMSG, "malformed manifest: %s has no valid sha256 digest and size", what);
        }
        return 0;
}

void oci_manifest_free(struct oci_manifest *m)
{
        descriptor_free(&m->config);
        for (size_t i = 0; i < m->n_layers; i++)
                descriptor_free(&m->layers[i]);
        free(m->layers);
        free(m->media_type);
        *m = (struct oci_manifest){0};
}

DEFINE_CLEANUP_FUNC(struct json_object *, json_object_put);

int oci_manifest_parse(const char *json, size_t len, struct oci_manifest *ret, struct hutch_error *err)
{
        struct oci_manifest m = {0};
        struct json_object *v, *arr;
        _cleanup_(json_object_putp) struct json_object *o = NULL;
        struct json_tokener *tok = json_tokener_new();
        if (!tok)
                return hutch_err(err, -ENOMEM, "out of memory");
        o = json_tokener_parse_ex(tok, json, (int) len);
        json_tokener_free(tok);
        if (!o || !json_object_is_type(o, json_type_object))
                return hutch_err(err, -EBADMSG, "malformed manifest: not a JSON object");
        if (json_object_object_get_ex(o, "schemaVersion", &v) && json_object_get_int(v) != 2)
                return hutch_err(err, -ENOTSUP, "manifest schema version %d is not supported (only 2)",
                                 json_object_get_int(v));
        m.media_type = jstr(o, "mediaType");
        m.is_index = json_object_object_get_ex(o, "manifests", &arr);
        if (!m.is_index && !json_object_object_get_ex(o, "layers", &arr)) {
                oci_manifest_free(&m);
                return hutch_err(err, -EBADMSG, "malformed manifest: neither layers nor manifests");
        }
        if (!json_object_is_type(arr, json_type_array)) {
                oci_manifest_free(&m);
                return hutch_err(err, -EBADMSG, "malformed manifest: %s is not a list",
                                 m.is_index ? "manifests" : "layers");
        }
        size_t n = json_object_array_length(arr);
        m.layers = calloc(n ? n : 1, sizeof *m.layers);
        if (!m.layers) {
                oci_manifest_free(&m);
                return hutch_err(err, -ENOMEM, "out of memory");
        }
        int r = 0;
        for (size_t i = 0; i < n && r >= 0; i++) {
                r = descriptor_parse(json_object_array_get_idx(arr, i), &m.layers[i],
                                     m.is_index ? "a manifest" : "a layer", err);
                if (r >= 0)
                        m.n_layers++;
        }
        if (r >= 0 && !m.is_index) {
                if (!json_object_object_get_ex(o, "config", &v))
                        r = hutch_err(err, -EBADMSG, "malformed manifest: no config");
                else
                        r = descriptor_parse(v, &m.config, "the config", err);
        }
        if (r < 0) {
                oci_manifest_free(&m);
                return r;
        }
        *ret = m;
        return 0;
}

int oci_index_select(const struct oci_manifest *idx, const char *os, const char *arch, const char *variant,
                     const struct oci_descriptor **ret, struct hutch_error *err)
{
        const struct oci_descriptor *any = NULL;
        char offered[256] = "";
        for (size_t i = 0; i < idx->n_layers; i++) {
                const struct oci_descriptor *d = &idx->layers[i];
                if (!d->os || !d->arch)
                        continue;
                if (strlen(offered) + strlen(d->os) + strlen(d->arch) + 20 < sizeof offered)
                        snprintf(offered + strlen(offered), sizeof offered - strlen(offered), "%s%s/%s%s%s",
                                 offered[0] ? ", " : "", d->os, d->arch, d->variant ? "/" : "",
                                 d->variant ? d->variant : "");
                if (strcmp(d->os, os) != 0 || strcmp(d->arch, arch) != 0)
                        continue;
                if (!variant || (d->variant && !strcmp(d->variant, variant))) {
                        *ret = d;
                        return 0;
                }
                if (!any)
                        any = d;
        }
        if (any) {
                *ret = any;
                return 0;
        }
        return hutch_err(err, -ENOENT, "the image has no %s/%s%s%s variant (it has: %s)", os, arch, variant ? "/" : "",
                         variant ? variant : "", offered[0] ? offered : "none");
}

static char **jstrv(struct json_object *o, const char *key)
{
        struct json_object *a;
        if (!o || !json_object_object_get_ex(o, key, &a) || !json_object_is_type(a, json_type_array))
                return NULL;
        size_t n = json_object_array_length(a);
        char **v = calloc(n + 1, sizeof *v);
        for (size_t i = 0, k = 0; v && i < n; i++) {
                struct json_object *e = json_object_array_get_idx(a, i);
                if (json_object_is_type(e, json_type_string) && !(v[k++] = strdup(json_object_get_string(e)))) {
                        strv_free(v);
                        return NULL;
                }
        }
        return v;
}

void oci_config_free(struct oci_config *c)
{
        strv_free(c->env);
        strv_free(c->entrypoint);
        strv_free(c->cmd);
        free(c->labels_json);
        free(c->os);
        free(c->arch);
        *c = (struct oci_config){0};
}

int oci_config_parse(const char *json, size_t len, struct oci_config *ret, struct hutch_error *err)
{
        struct oci_config c = {0};
        struct json_object *cfg = NULL, *labels;
        _cleanup_(json_object_putp) struct json_object *o = NULL;
        struct json_tokener *tok = json_tokener_new();
        if (!tok)
                return hutch_err(err, -ENOMEM, "out of memory");
        o = json_tokener_parse_ex(tok, json, (int) len);
        json_tokener_free(tok);
        if (!o || !json_object_is_type(o, json_type_object))
                return hutch_err(err, -EBADMSG, "malformed image config: not a JSON object");
        c.os = jstr(o, "os");
        c.arch = jstr(o, "architecture");
        if (json_object_object_get_ex(o, "config", &cfg) && json_object_is_type(cfg, json_type_object)) {
                c.env = jstrv(cfg, "Env");
                c.entrypoint = jstrv(cfg, "Entrypoint");
                c.cmd = jstrv(cfg, "Cmd");
                if (json_object_object_get_ex(cfg, "Labels", &labels) && json_object_is_type(labels, json_type_object))
                        c.labels_json = strdup(json_object_to_json_string_ext(
                                labels, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        }
        *ret = c;
        return 0;
}

const char *registry_host_arch(const char **variant)
{
        static const struct {
                const char *machine, *goarch, *variant;
        } m[] = {{"x86_64", "amd64", NULL},   {"aarch64", "arm64", "v8"},   {"armv7l", "arm", "v7"},
                 {"i686", "386", NULL},       {"ppc64le", "ppc64le", NULL}, {"s390x", "s390x", NULL},
                 {"riscv64", "riscv64", NULL}};
        struct utsname u;
        *variant = NULL;
        if (uname(&u) == 0)
                for (size_t i = 0; i < ELEMENTSOF(m); i++)
                        if (!strcmp(u.machine, m[i].machine)) {
                                *variant = m[i].variant;
                                return m[i].goarch;
                        }
        return "amd64";
}

/* ---- whiteouts, as the OCI image spec's layer changesets write them */
enum whiteout whiteout_classify(const char *path, char **ret_target)
{
        const char *slash = strrchr(path, '/');
        const char *base = slash ? slash + 1 : path;
        size_t dirlen = slash ? (size_t) (slash - path) : 0;
        *ret_target = NULL;
        if (!startswith(base, ".wh."))
                return WHITEOUT_NONE;
        if (!strcmp(base, ".wh..wh..opq")) {
                *ret_target = strndup(path, dirlen);
                return WHITEOUT_OPAQUE;
        }
        if (!base[4] || !strcmp(base + 4, ".") || !strcmp(base + 4, ".."))
                return WHITEOUT_BAD;
        if (asprintf(ret_target, "%.*s%s%s", (int) dirlen, path, slash ? "/" : "", base + 4) < 0)
                *ret_target = NULL;
        return WHITEOUT_FILE;
}

bool archive_name_is_valid(const char *name)
{
        if (!name || !*name || *name == '/')
                return false;
        for (const char *p = name;;) {
                const char *end = strchrnul(p, '/');
                size_t n = (size_t) (end - p);
                if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return false;
                if (!*end)
                        return true;
                p = end + 1;
        }
}
