/* Local image sources: oci:DIR[:TAG] (an OCI image layout), oci-archive:FILE (one in a
 * tar) and docker-archive:FILE (`docker save`'s format), converted as registry images are:
 * every blob checked against its digest (an OCI layout's) or its diff_id (a docker
 * archive's uncompressed layers) before use. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry-internal.h"
#include "util/log.h"
#include "util/util.h"

bool registry_source_is_local(const char *s)
{
        return startswith(s, "oci:") || startswith(s, "oci-archive:") || startswith(s, "docker-archive:") ||
               startswith(s, "docker-daemon:");
}

/* DIR[:TAG] of oci:DIR[:TAG]: the tag is after the last ':' past the last '/'. */
static void oci_split(const char *spec, char **ret_dir, char **ret_tag)
{
        const char *slash = strrchr(spec, '/'), *colon = strrchr(spec, ':');
        if (colon && (!slash || colon > slash)) {
                *ret_dir = strndup(spec, (size_t) (colon - spec));
                *ret_tag = strdup(colon + 1);
        } else {
                *ret_dir = strdup(spec);
                *ret_tag = NULL;
        }
}

char *registry_default_name(const char *source)
{
        char *s = NULL;
        _cleanup_free_ char *daemon = NULL;
        if (startswith(source, "docker-daemon:")) /* named as the same image on a registry */
                source = daemon = strjoin("docker://", source + strlen("docker-daemon:"), NULL);
        if (!source)
                return NULL;
        if (startswith(source, "docker://") || startswith(source, "oras://")) {
                struct registry_ref r;
                struct hutch_error e;
                if (registry_ref_parse(source, &r, &e) < 0)
                        return NULL;
                s = registry_ref_default_name(&r);
                registry_ref_free(&r);
                return s;
        }
        _cleanup_free_ char *dir = NULL, *tag = NULL;
        const char *path = strchr(source, ':') + 1;
        if (startswith(source, "oci:"))
                oci_split(path, &dir, &tag);
        else
                dir = strdup(path);
        if (!dir)
                return NULL;
        for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--)
                dir[n - 1] = 0;
        /* the last path part as it is, extension and all (Apptainer's uri.GetName: an
         * oci-archive:x.tar pulls to x.tar_latest.sif) */
        const char *base = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
        size_t bl = strlen(base);
        if (asprintf(&s, "%.*s_%s.sif", (int) bl, base, tag ? tag : "latest") < 0)
                return NULL;
        return s;
}

static const char *own(struct pull_ctx *x, char *s)
{
        if (!s || strv_push(&x->owned, s) < 0)
                return NULL;
        return s;
}

DEFINE_CLEANUP_FUNC(struct json_object *, json_object_put);

static int json_read_at(int dfd, const char *name, struct json_object **ret, struct hutch_error *err)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_regular_at(dfd, name, 16u << 20, &text, &len);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot read '%s' of the image", name);
        *ret = json_tokener_parse(text);
        return *ret ? 0 : hutch_err(err, -EBADMSG, "'%s' of the image is not valid JSON", name);
}

static char *jstr(struct json_object *o, const char *key)
{
        struct json_object *v;
        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return strdup(json_object_get_string(v));
}

/* `docker save`: manifest.json names the config and the layer files (uncompressed tars
 * whose sha256 is the config's diff_id). */
static int docker_archive(struct pull_ctx *x, struct hutch_error *err)
{
        _cleanup_(json_object_putp) struct json_object *m = NULL, *cfg = NULL;
        struct json_object *e, *layers, *rootfs, *diffs = NULL;
        int r = json_read_at(x->blob_fd, "manifest.json", &m, err);
        if (r < 0)
                return r;
        if (!json_object_is_type(m, json_type_array) || json_object_array_length(m) < 1 ||
            !json_object_object_get_ex(e = json_object_array_get_idx(m, 0), "Layers", &layers) ||
            !json_object_is_type(layers, json_type_array))
                return hutch_err(err, -EBADMSG, "malformed docker archive: manifest.json names no image");
        if (json_object_array_length(m) > 1)
                log_warning("the docker archive holds %zu images; converting the first", json_object_array_length(m));
        if (!(x->config_name = own(x, jstr(e, "Config"))))
                return hutch_err(err, -EBADMSG, "malformed docker archive: no Config");
        if (!archive_name_is_valid(x->config_name))
                return hutch_err(err, -EBADMSG, "malformed docker archive: Config '%s' is not a name inside it",
                                 x->config_name);
        if ((r = json_read_at(x->blob_fd, x->config_name, &cfg, err)) < 0)
                return r;
        if (json_object_object_get_ex(cfg, "rootfs", &rootfs))
                json_object_object_get_ex(rootfs, "diff_ids", &diffs);
        size_t n = json_object_array_length(layers);
        if (!diffs || !json_object_is_type(diffs, json_type_array) || json_object_array_length(diffs) != n)
                return hutch_err(err, -EBADMSG,
                                 "malformed docker archive: the config's diff_ids do not match its layers");
        x->names = calloc(n + 1, sizeof *x->names);
        x->digests = calloc(n + 1, sizeof *x->digests);
        if (!x->names || !x->digests)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                struct json_object *l = json_object_array_get_idx(layers, i), *d = json_object_array_get_idx(diffs, i);
                if (!json_object_is_type(l, json_type_string) || !registry_digest_is_valid(json_object_get_string(d)) ||
                    !archive_name_is_valid(json_object_get_string(l)))
                        return hutch_err(err, -EBADMSG, "malformed docker archive: layer %zu", i + 1);
                x->names[i] = own(x, strdup(json_object_get_string(l)));
                x->digests[i] = (char *) own(x, strdup(json_object_get_string(d)));
                if (!x->names[i] || !x->digests[i])
                        return hutch_err(err, -ENOMEM, "out of memory");
        }
        x->n_names = n;
        x->verify = true;
        char cd[72];
        _cleanup_close_ int cfd = openat(x->blob_fd, x->config_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (cfd < 0 || sha256_file(cfd, cd, err) < 0)
                return hutch_err_sys(err, -EIO, "cannot read the config of the docker archive");
        /* docker save names the config by its digest (HEX.json, or blobs/sha256/HEX) */
        const char *cb = strrchr(x->config_name, '/');
        cb = cb ? cb + 1 : x->config_name;
        size_t hl = strspn(cb, "0123456789abcdef");
        if (hl == 64 && (!cb[64] || !strcmp(cb + 64, ".json")) && strncmp(cd + 7, cb, 64) != 0)
                return hutch_err(err, -EBADMSG, "the config of the docker archive does not match its digest %.19s", cb);
        memcpy(x->digest, cd, sizeof x->digest); /* the cache's key */
        return 0;
}

/* The manifest descriptor of index.json for tag (or the only one). */
static int oci_pick(struct json_object *idx, const char *tag, struct json_object **ret, struct hutch_error *err)
{
        struct json_object *ms, *a, *n;
        if (!json_object_object_get_ex(idx, "manifests", &ms) || !json_object_is_type(ms, json_type_array) ||
            json_object_array_length(ms) == 0)
                return hutch_err(err, -EBADMSG, "malformed OCI layout: index.json lists no image");
        size_t count = json_object_array_length(ms);
        for (size_t i = 0; i < count; i++) {
                struct json_object *d = json_object_array_get_idx(ms, i);
                const char *name = NULL;
                if (json_object_object_get_ex(d, "annotations", &a) &&
                    json_object_object_get_ex(a, "org.opencontainers.image.ref.name", &n))
                        name = json_object_get_string(n);
                if ((tag && name && !strcmp(name, tag)) || (!tag && count == 1)) {
                        *ret = d;
                        return 0;
                }
        }
        if (tag)
                return hutch_err(err, -ENOENT, "the OCI layout has no image tagged '%s'", tag);
        return hutch_err(err, -EINVAL, "the OCI layout holds %zu images: name one (oci:DIR:TAG)", count);
}

/* A blob of the layout, checked against its digest, parsed. */
static int oci_blob_json(struct pull_ctx *x, const char *digest, char **ret_text, size_t *ret_len,
                         struct hutch_error *err)
{
        char got[72];
        if (!registry_digest_is_valid(digest))
                return hutch_err(err, -EBADMSG, "malformed OCI layout: a descriptor without a sha256 digest");
        int r = read_regular_at(x->blob_fd, digest + 7, 16u << 20, ret_text, ret_len);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot read blob %.19s of the OCI layout", digest);
        sha256_buf(*ret_text, *ret_len, got);
        if (strcmp(got, digest) != 0) {
                free(*ret_text);
                *ret_text = NULL;
                return hutch_err(err, -EBADMSG, "blob %.19s of the OCI layout does not match its digest", digest);
        }
        return 0;
}

static int oci_layout(struct pull_ctx *x, int dir_fd, const char *tag, struct hutch_error *err)
{
        _cleanup_(json_object_putp) struct json_object *idx = NULL;
        struct json_object *d = NULL;
        int r = json_read_at(dir_fd, "index.json", &idx, err);
        if (r < 0 || (r = oci_pick(idx, tag, &d, err)) < 0)
                return r;
        x->blob_fd = openat(dir_fd, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (x->blob_fd < 0)
                return hutch_err_sys(err, -errno, "malformed OCI layout: no blobs/sha256");
        _cleanup_free_ char *digest = jstr(d, "digest");
        for (int depth = 0;; depth++) {
                _cleanup_free_ char *text = NULL;
                size_t len;
                if (!digest || (r = oci_blob_json(x, digest, &text, &len, err)) < 0)
                        return digest ? r
                                      : hutch_err(err, -EBADMSG, "malformed OCI layout: a descriptor without a digest");
                oci_manifest_free(&x->m);
                if ((r = oci_manifest_parse(text, len, &x->m, err)) < 0)
                        return r;
                if (!x->m.is_index) {
                        snprintf(x->digest, sizeof x->digest, "%s", digest);
                        break;
                }
                if (depth > 0)
                        return hutch_err(err, -EBADMSG, "malformed OCI layout: an index names another index");
                const char *variant, *arch = x->p->arch ? x->p->arch : registry_host_arch(&variant);
                const struct oci_descriptor *sel;
                if (x->p->arch)
                        variant = NULL;
                if ((r = oci_index_select(&x->m, "linux", arch, variant, &sel, err)) < 0)
                        return r;
                free(digest);
                digest = strdup(sel->digest);
        }
        x->config_name = x->m.config.digest + 7;
        x->config_digest = x->m.config.digest;
        x->n_names = x->m.n_layers;
        x->names = calloc(x->n_names + 1, sizeof *x->names);
        x->digests = calloc(x->n_names + 1, sizeof *x->digests);
        if (!x->names || !x->digests)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < x->n_names; i++) {
                x->names[i] = x->m.layers[i].digest + 7;
                x->digests[i] = x->m.layers[i].digest;
        }
        x->verify = true;
        return 0;
}

/* docker-daemon:IMAGE: the daemon's export into WORK/daemon.tar, its path in *ret */
static int daemon_fetch(struct pull_ctx *x, const char *image, char **ret, struct hutch_error *err)
{
        _cleanup_free_ char *path = strjoin(x->work, "/daemon.tar", NULL);
        if (!path)
                return hutch_err(err, -ENOMEM, "out of memory");
        _cleanup_close_ int fd = openat(x->work_fd, "daemon.tar", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot create a file in '%s'", x->work);
        int r = daemon_export(x->p->docker_host, image, fd, x->p->quiet, err);
        if (r < 0)
                return r;
        *ret = steal_pointer(&path);
        return 0;
}

/* An archive's files into WORK/archive (plain tar or gzip). */
static int archive_extract(struct pull_ctx *x, const char *file, struct hutch_error *err)
{
        struct unpack_opts uo = {.as_root = false};
        if (mkdirat(x->work_fd, "archive", 0700) < 0)
                return hutch_err_sys(err, -errno, "cannot create a folder in '%s'", x->work);
        _cleanup_close_ int fd = openat(x->work_fd, "archive", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot open a folder in '%s'", x->work);
        if (access(file, R_OK) < 0)
                return hutch_err_sys(err, -errno, "cannot read '%s'", file);
        int r = layer_unpack(fd, file, &uo, err);
        layer_unpack_finish(fd, &uo);
        if (r < 0)
                return hutch_err_wrap(err, "'%s'", file);
        return steal_fd(&fd);
}

int pull_local(struct pull_ctx *x, char **ret_path, struct hutch_error *err)
{
        const struct pull_spec *p = x->p;
        const char *src = p->source, *path = strchr(src, ':') + 1;
        _cleanup_free_ char *dir = NULL, *tag = NULL, *base = NULL;
        int r;
        if (!p->target && p->disable_cache)
                return hutch_err(err, -EINVAL, "running '%s' needs the cache (no --disable-cache)", src);
        if (!p->target && asprintf(&base, "%s/oci-tmp/local", p->cache_dir) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (base && (r = mkdir_p_at(AT_FDCWD, base, 0700)) < 0)
                return hutch_err_sys(err, r, "cannot create the cache folder '%s'", base);
        if (startswith(src, "oci:")) {
                oci_split(path, &dir, &tag);
                _cleanup_close_ int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
                if (dfd < 0)
                        return hutch_err_sys(err, -errno, "cannot open the OCI layout '%s'", dir ? dir : path);
                if ((r = oci_layout(x, dfd, tag, err)) < 0)
                        return hutch_err_wrap(err, "'%s'", src);
        } else {
                if ((x->work_fd = private_dir(p->target ? p->target : base, &x->work, err)) < 0)
                        return x->work_fd;
                _cleanup_free_ char *exported = NULL;
                bool daemon = startswith(src, "docker-daemon:");
                if (daemon && (r = daemon_fetch(x, path, &exported, err)) < 0)
                        return r;
                int afd = archive_extract(x, exported ? exported : path, err);
                if (exported)
                        unlinkat(x->work_fd, "daemon.tar", 0); /* unpacked: its space back */
                if (afd < 0)
                        return afd;
                if (daemon || startswith(src, "docker-archive:")) {
                        x->blob_fd = afd;
                        r = docker_archive(x, err);
                } else {
                        r = oci_layout(x, afd, NULL, err);
                        close(afd);
                }
                if (r < 0)
                        return hutch_err_wrap(err, "'%s'", src);
        }
        if (!p->disable_cache) {
                _cleanup_free_ char *sif = NULL;
                if ((r = cached_sif(x, p->target, &sif, err)) < 0)
                        return r;
                if (!p->target) {
                        *ret_path = steal_pointer(&sif);
                        return 0;
                }
                return sif ? copy_to(sif, p->target, err) : 0;
        }
        if (!x->work && (x->work_fd = private_dir(p->target, &x->work, err)) < 0)
                return x->work_fd;
        return convert(x, p->target, err);
}
