/* Images from registries and local OCI sources: references, the OCI distribution client
 * (docker://, oras://), the blob cache, layers unpacked with whiteouts, and the conversion
 * of an OCI image into a SIF with Apptainer's /.singularity.d metadata. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

/* ---- references: docker://[HOST[:PORT]/]REPO[:TAG][@sha256:HEX], oras://HOST/REPO:TAG */
enum registry_transport { REGISTRY_DOCKER, REGISTRY_ORAS };
struct registry_ref {
        enum registry_transport transport;
        char *host;   /* "registry-1.docker.io" for Docker Hub */
        char *repo;   /* "library/alpine" */
        char *tag;    /* NULL when only a digest was given */
        char *digest; /* "sha256:HEX" or NULL */
};
#define DOCKER_HUB_HOST "registry-1.docker.io"
int registry_ref_parse(const char *uri, struct registry_ref *ret, struct hutch_error *err);
void registry_ref_free(struct registry_ref *r);
/* Apptainer's default file name: the last component of the repository, "_" and the tag
 * (or "sha256_HEX" for a digest), ".sif". Caller frees. */
char *registry_ref_default_name(const struct registry_ref *r);
/* oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker-daemon:IMAGE[:TAG] */
bool registry_source_is_local(const char *source);
/* The default file name for any source (REPO_TAG.sif, DIR_TAG.sif, FILE.sif). */
char *registry_default_name(const char *source);
/* "sha256:" and 64 lowercase hex digits */
bool registry_digest_is_valid(const char *d);

/* ---- OCI and Docker manifests, indexes and image configs */
struct oci_descriptor {
        char *media_type, *digest;
        int64_t size;
        char *os, *arch, *variant; /* index entries */
};
struct oci_manifest {
        bool is_index;
        char *media_type;
        struct oci_descriptor config;
        struct oci_descriptor *layers; /* manifest: layers; index: manifests */
        size_t n_layers;
};
int oci_manifest_parse(const char *json, size_t len, struct oci_manifest *ret, struct hutch_error *err);
void oci_manifest_free(struct oci_manifest *m);
/* The index entry for os/arch (variant: NULL = any, else "v8" style). -ENOENT with the
 * platforms offered named in err. */
int oci_index_select(const struct oci_manifest *idx, const char *os, const char *arch, const char *variant,
                     const struct oci_descriptor **ret, struct hutch_error *err);
struct oci_config {
        char **env, **entrypoint, **cmd;
        char *labels_json, *os, *arch; /* WorkingDir is not kept: Apptainer does not enter it */
};
int oci_config_parse(const char *json, size_t len, struct oci_config *ret, struct hutch_error *err);
void oci_config_free(struct oci_config *c);
/* The host's GOARCH name (amd64, arm64, ...); *variant "v8" etc. or NULL */
const char *registry_host_arch(const char **variant);

#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_SIF_LAYER "application/vnd.sylabs.sif.layer.v1.sif"
#define MT_SIF_CONFIG "application/vnd.sylabs.sif.config.v1+json"

/* ---- whiteouts (pure): what a layer entry's name means */
enum whiteout { WHITEOUT_NONE, WHITEOUT_FILE, WHITEOUT_OPAQUE, WHITEOUT_BAD };
/* path: a normalized relative path. WHITEOUT_FILE: *ret_target is the path it deletes
 * (caller frees); WHITEOUT_OPAQUE: *ret_target is the folder made opaque ("" for the
 * root); WHITEOUT_BAD: a whiteout of "", "." or "..", which no layer may hold. */
enum whiteout whiteout_classify(const char *path, char **ret_target);
/* A file name inside an archive (docker save's manifest.json): relative, each part a
 * plain name (not empty, ".", ".."). */
bool archive_name_is_valid(const char *name);

/* ---- layers: tar, gzip or zstd, unpacked into root (an open folder) in order */
struct unpack_opts {
        bool as_root; /* keep owners and make device nodes; else leave them out */
        /* a user's unpack: folders are made u+rwx so that later layers can write into
         * them; their modes from the layers are kept here and set by layer_unpack_finish */
        void *dir_modes;
};
int layer_unpack(int root_fd, const char *layer_path, struct unpack_opts *o, struct hutch_error *err);
/* The same from fd, a file that may still be growing: at its end, wait_more(ctx) returns 1
 * once it is whole, 0 when it may have grown, < 0 (-errno) when it will not be whole. */
int layer_unpack_growing(int root_fd, int fd, const char *name, int (*wait_more)(void *ctx), void *ctx,
                         struct unpack_opts *o, struct hutch_error *err);
/* The folders' own modes back (a user's unpack); frees o's state. */
void layer_unpack_finish(int root_fd, struct unpack_opts *o);

/* ---- SHA-256 of a file, "sha256:HEX" */
int sha256_file(int fd, char out[72], struct hutch_error *err);

/* ---- podman's registries.conf (containers-registries.conf(5)): [[registry]] entries'
 * location (or prefix) with insecure = true (TLS unverified, or plain HTTP when TLS fails)
 * or blocked = true, and version 1's [registries.insecure] and [registries.block] lists */
enum { REGISTRY_INSECURE = 1, REGISTRY_BLOCKED = 2 };
/* The flags for HOST/REPO (repo "" or NULL: the host alone) from paths (NULL-terminated;
 * each a file, or a folder whose *.conf files are read in name order; missing ones
 * skipped): the longest prefix matching wins, a later entry for the same prefix replaces an
 * earlier one. A file that is not TOML: -EINVAL naming it and the line. */
int registries_conf_lookup(const char *const *paths, const char *host, const char *repo, unsigned *ret_flags,
                           struct hutch_error *err);
/* Where podman (containers/image) reads registries.conf: env ($CONTAINERS_REGISTRIES_CONF)
 * when set, else the user's file under home when there is one (and then only the user's
 * drop-ins), else the system's; the drop-in folders after the file. ret: NULL-terminated,
 * each entry for the caller to free; nothing on failure (out of memory fails the command,
 * as a file left out could be one that blocks a registry). */
#define REGISTRIES_CONF_PATHS 4
int registries_conf_paths(const char *env, const char *home, char *ret[REGISTRIES_CONF_PATHS], struct hutch_error *err);

/* ---- pulling */
struct registry_auth {
        const char *username, *password; /* NULL: from the credential files, else anonymous */
        const char *config_dir;          /* hutch's own credentials folder (~/.hutch) */
        const char *docker_config;       /* ~/.docker/config.json, or NULL */
        const char *podman_auth;         /* ${XDG_RUNTIME_DIR}/containers/auth.json, or NULL */
        /* podman's registries.conf files and drop-in folders, in order (registries_conf_lookup) */
        const char *const *registries_conf;
};
struct pull_spec {
        const char *source;      /* the URI as given */
        const char *target;      /* the SIF to write; NULL: the cache's copy only (exec docker://) */
        const char *cache_dir;   /* $HUTCH_CACHEDIR or ~/.hutch/cache */
        const char *arch;        /* --arch, NULL: the host's */
        const char *ca_file;     /* extra CA bundle (SSL_CERT_FILE), NULL: the system's */
        const char *docker_host; /* docker-daemon: DOCKER_HOST, NULL: unix:///var/run/docker.sock */
        bool force, disable_cache, no_https, progress, quiet;
        struct registry_auth auth;
};
/* The image to target, or (target NULL) to the cache, whose path is then in *ret_path
 * (caller frees; may be NULL otherwise). */
int registry_pull(const struct pull_spec *p, char **ret_path, struct hutch_error *err);

struct push_spec {
        const char *image; /* a SIF file */
        const char *dest;  /* oras://HOST/REPO:TAG */
        const char *ca_file;
        bool no_https, quiet;
        struct registry_auth auth;
};
int registry_push(const struct push_spec *p, struct hutch_error *err);

/* ---- credentials stored by `remote login`: DIR/docker-config.json, 0600, Docker's format */
int registry_login(const char *config_dir, const char *host, const char *username, const char *password,
                   struct hutch_error *err);
/* The registry accepts a's username/password (GET /v2/ with them); a's registries_conf
 * applies. */
int registry_login_check(const char *host, const struct registry_auth *a, bool no_https, const char *ca_file,
                         struct hutch_error *err);
int registry_logout(const char *config_dir, const char *host, struct hutch_error *err);
/* The credentials for host from hutch's file, then docker's, then podman's: 1 found,
 * 0 none. The caller frees both strings. */
int registry_auth_lookup(const struct registry_auth *a, const char *host, char **ret_user, char **ret_pass);

/* ---- one plain request to a whole http(s):// URL, no registry authentication (hutch-sign's
 * keyserver requests): a POST when body is given. The reply's status and body (at most max
 * bytes, -EFBIG beyond; the caller frees it) whatever the status. */
struct registry_http_req {
        const char *url;
        const char *body, *content_type; /* body NULL: GET */
        size_t body_len, max;
        const char *ca_file;
};
int registry_http_fetch(const struct registry_http_req *q, long *ret_status, char **ret_body, size_t *ret_len,
                        struct hutch_error *err);

/* ---- the cache: blob/blobs/sha256/HEX and oci-tmp/HEX.sif under the cache folder */
enum cache_type { CACHE_BLOB = 1, CACHE_SIF = 2 };
struct cache_usage {
        size_t blobs, sifs;
        uint64_t blob_bytes, sif_bytes;
};
int registry_cache_usage(const char *cache_dir, struct cache_usage *ret, struct hutch_error *err);
/* Remove entries of the types older than days (0: all). */
int registry_cache_clean(const char *cache_dir, unsigned types, unsigned days, struct hutch_error *err);
