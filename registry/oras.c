/* oras://: a SIF file as an OCI artifact, with the media types Apptainer uses (one layer
 * application/vnd.sylabs.sif.layer.v1.sif, config application/vnd.sylabs.sif.config.v1+json),
 * so that each pulls what the other pushed, byte for byte. */
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

static const char *const accept_oci[] = {"Accept: " MT_OCI_MANIFEST, NULL};

static int copy_file(int dir_fd, const char *name, const char *target, struct hutch_error *err)
{
        _cleanup_free_ char *tmp = NULL;
        if (asprintf(&tmp, "%s.hutch-tmp-XXXXXX", target) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        _cleanup_close_ int in = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        _cleanup_close_ int out = mkostemp(tmp, O_CLOEXEC);
        struct stat st;
        int r = in < 0 || out < 0 || fstat(in, &st) < 0 ? -errno : 0;
        for (off_t left = r == 0 ? st.st_size : 0; r == 0 && left > 0;) {
                ssize_t k = copy_file_range(in, NULL, out, NULL, (size_t) left, 0);
                if (k <= 0)
                        r = k < 0 ? -errno : -EIO;
                else
                        left -= k;
        }
        if (r == 0 && (fchmod(out, 0755) < 0 || fsync(out) < 0 || rename(tmp, target) < 0))
                r = -errno;
        if (r < 0) {
                if (out >= 0)
                        unlink(tmp);
                return hutch_err_sys(err, r, "cannot write '%s'", target);
        }
        return 0;
}

int oras_pull(const struct pull_spec *p, const struct registry_ref *ref, char **ret_path, struct hutch_error *err)
{
        struct http_client c;
        struct http_response resp = {0};
        struct oci_manifest m = {0};
        _cleanup_free_ char *path = NULL, *what = NULL, *tmpdir = NULL;
        _cleanup_close_ int blob_fd = -1;
        const struct oci_descriptor *sif = NULL;
        const char *reference = ref->digest ? ref->digest : ref->tag;
        int r = http_client_init(&c, ref, p->no_https, p->ca_file, &p->auth, false, err);
        if (r < 0)
                return r;
        if (asprintf(&path, "/v2/%s/manifests/%s", ref->repo, reference) < 0 ||
            asprintf(&what, "%s/%s:%s", ref->host, ref->repo, reference) < 0) {
                r = hutch_err(err, -ENOMEM, "out of memory");
                goto out;
        }
        if ((r = http_request(&c, "GET", path, accept_oci, NULL, 0, -1, 0, &resp, err)) < 0)
                goto out;
        if (resp.status != 200) {
                r = resp.status == 404 ? hutch_err(err, -ENOENT, "%s: no such artifact (manifest unknown)", what)
                                       : http_status_error(&resp, what, err);
                goto out;
        }
        if ((r = oci_manifest_parse(resp.body ? resp.body : "", resp.len, &m, err)) < 0) {
                hutch_err_wrap(err, "%s", what);
                goto out;
        }
        for (size_t i = 0; !m.is_index && i < m.n_layers; i++)
                if (m.layers[i].media_type && !strcmp(m.layers[i].media_type, MT_SIF_LAYER))
                        sif = &m.layers[i];
        if (!sif) {
                r = hutch_err(err, -EMEDIUMTYPE, "%s is not a SIF artifact (no %s layer)", what, MT_SIF_LAYER);
                goto out;
        }
        if (p->disable_cache) {
                if (!p->target) {
                        r = hutch_err(err, -EINVAL, "running an oras:// image needs the cache (no --disable-cache)");
                        goto out;
                }
                if (asprintf(&tmpdir, "%s.hutch-pull-XXXXXX", p->target) < 0 || !mkdtemp(tmpdir)) {
                        r = hutch_err_sys(err, -errno, "cannot create a temporary folder beside '%s'", p->target);
                        free(tmpdir);
                        tmpdir = NULL;
                        goto out;
                }
                blob_fd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        } else
                blob_fd = cache_blob_dir(p->cache_dir, true, err);
        if (blob_fd < 0) {
                r = blob_fd == -1 ? hutch_err_sys(err, -errno, "cannot open '%s'", tmpdir) : blob_fd;
                goto out;
        }
        struct blob_want w = {sif->digest, sif->size, "SIF"};
        if ((r = blobs_fetch(&c, blob_fd, &w, 1, p->progress, p->quiet, NULL, NULL, err)) < 0)
                goto out;
        if (p->target)
                r = copy_file(blob_fd, sif->digest + 7, p->target, err);
        else if (asprintf(ret_path, "%s/blob/blobs/sha256/%s", p->cache_dir, sif->digest + 7) < 0)
                r = hutch_err(err, -ENOMEM, "out of memory");
out:
        if (tmpdir) {
                if (blob_fd >= 0 && sif) { /* the blob, and blobs_fetch's lock and partial file */
                        char name[80];
                        unlinkat(blob_fd, sif->digest + 7, 0);
                        snprintf(name, sizeof name, ".%.64s.lock", sif->digest + 7);
                        unlinkat(blob_fd, name, 0);
                        snprintf(name, sizeof name, ".%.64s.part", sif->digest + 7);
                        unlinkat(blob_fd, name, 0);
                }
                rmdir(tmpdir);
        }
        oci_manifest_free(&m);
        http_response_free(&resp);
        http_client_free(&c);
        return r;
}

/* Upload the blob (fd, or the bytes of data when fd < 0) unless the registry has it. */
static int blob_push(struct http_client *c, const char *digest, int fd, const char *data, uint64_t size,
                     struct hutch_error *err)
{
        _cleanup_free_ char *path = NULL, *url = NULL;
        struct http_response r = {0};
        if (asprintf(&path, "/v2/%s/blobs/%s", c->repo, digest) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        int k = http_request(c, "HEAD", path, NULL, NULL, 0, -1, 0, &r, err);
        if (k < 0)
                return k;
        long status = r.status;
        http_response_free(&r);
        if (status == 200) {
                log_verbose("Blob %.19s exists in the registry", digest);
                return 0;
        }
        free(path);
        if (asprintf(&path, "/v2/%s/blobs/uploads/", c->repo) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        if ((k = http_request(c, "POST", path, NULL, "", 0, -1, 0, &r, err)) < 0)
                return k;
        if (r.status != 202 || !r.location) {
                k = http_status_error(&r, "starting an upload", err);
                http_response_free(&r);
                return k;
        }
        const char *loc = r.location;
        if (asprintf(&url, "%s%s%s%s%sdigest=%s", loc[0] == '/' ? c->scheme : "", loc[0] == '/' ? "://" : "",
                     loc[0] == '/' ? c->host : "", loc, strchr(loc, '?') ? "&" : "?", digest) < 0)
                url = NULL;
        http_response_free(&r);
        if (!url)
                return hutch_err(err, -ENOMEM, "out of memory");
        const char *const hdr[] = {"Content-Type: application/octet-stream", NULL};
        k = http_request(c, "PUT", url, hdr, data, data ? size : 0, fd, fd >= 0 ? size : 0, &r, err);
        if (k >= 0 && r.status != 201)
                k = http_status_error(&r, "uploading a blob", err);
        http_response_free(&r);
        return k;
}

int registry_push(const struct push_spec *p, struct hutch_error *err)
{
        struct registry_ref ref = {0};
        struct http_client c = {0};
        struct http_response resp = {0};
        char digest[72], cdigest[72];
        static const char config[] = "{}";
        struct stat st;
        _cleanup_free_ char *path = NULL;
        int r = registry_ref_parse(p->dest, &ref, err);
        if (r < 0)
                return r;
        if (ref.transport != REGISTRY_ORAS || !ref.tag) {
                registry_ref_free(&ref);
                return hutch_err(err, -EINVAL, "'%s': push takes oras://HOST/REPO:TAG", p->dest);
        }
        _cleanup_close_ int fd = open(p->image, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                r = hutch_err_sys(err, fd < 0 ? -errno : -EINVAL, "cannot read image '%s'", p->image);
                goto out;
        }
        char magic[10] = "";
        if (pread(fd, magic, sizeof magic, 32) != (ssize_t) sizeof magic || memcmp(magic, "SIF_MAGIC", 9) != 0) {
                r = hutch_err(err, -EMEDIUMTYPE, "'%s' is not a SIF file", p->image);
                goto out;
        }
        if ((r = sha256_file(fd, digest, err)) < 0)
                goto out;
        sha256_buf(config, strlen(config), cdigest);
        if ((r = http_client_init(&c, &ref, p->no_https, p->ca_file, &p->auth, true, err)) < 0)
                goto out;
        if (!p->quiet)
                log_info("Uploading %s (%lld bytes) to %s/%s:%s", p->image, (long long) st.st_size, ref.host, ref.repo,
                         ref.tag);
        if ((r = blob_push(&c, digest, fd, NULL, (uint64_t) st.st_size, err)) < 0 ||
            (r = blob_push(&c, cdigest, -1, config, strlen(config), err)) < 0)
                goto out;
        const char *base = strrchr(p->image, '/') ? strrchr(p->image, '/') + 1 : p->image;
        struct json_object *m = json_object_new_object(), *cf = json_object_new_object(),
                           *layers = json_object_new_array(), *l = json_object_new_object(),
                           *ann = json_object_new_object();
        json_object_object_add(m, "schemaVersion", json_object_new_int(2));
        json_object_object_add(m, "mediaType", json_object_new_string(MT_OCI_MANIFEST));
        json_object_object_add(cf, "mediaType", json_object_new_string(MT_SIF_CONFIG));
        json_object_object_add(cf, "digest", json_object_new_string(cdigest));
        json_object_object_add(cf, "size", json_object_new_int64((int64_t) strlen(config)));
        json_object_object_add(m, "config", cf);
        json_object_object_add(l, "mediaType", json_object_new_string(MT_SIF_LAYER));
        json_object_object_add(l, "digest", json_object_new_string(digest));
        json_object_object_add(l, "size", json_object_new_int64(st.st_size));
        json_object_object_add(ann, "org.opencontainers.image.title", json_object_new_string(base));
        json_object_object_add(l, "annotations", ann);
        json_object_array_add(layers, l);
        json_object_object_add(m, "layers", layers);
        const char *body = json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (asprintf(&path, "/v2/%s/manifests/%s", ref.repo, ref.tag) < 0)
                r = hutch_err(err, -ENOMEM, "out of memory");
        const char *const hdr[] = {"Content-Type: " MT_OCI_MANIFEST, NULL};
        if (r >= 0)
                r = http_request(&c, "PUT", path, hdr, body, strlen(body), -1, 0, &resp, err);
        json_object_put(m);
        if (r >= 0 && resp.status != 201)
                r = http_status_error(&resp, "uploading the manifest", err);
out:
        http_response_free(&resp);
        http_client_free(&c);
        registry_ref_free(&ref);
        return r;
}
