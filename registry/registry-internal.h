/* Shared inside registry/: the HTTP client of the distribution API and the blob cache. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry.h"

struct http_client {
        void *curl; /* CURL *, for the small requests */
        const char *scheme;
        char *host, *repo;
        char *auth;        /* "Authorization: ..." header, or NULL */
        char *user, *pass; /* for basic auth and token requests */
        const char *ca_file;
        bool push;         /* ask for push scope */
        bool insecure;     /* registries.conf: TLS unverified, plain HTTP if TLS fails at first */
        bool scheme_fixed; /* a request has been answered: no more falling back to HTTP */
        unsigned requests; /* made so far */
};
struct http_response {
        long status;
        char *body;
        size_t len;
        char *content_type, *www_auth, *location, *digest;
};
int http_client_init(struct http_client *c, const struct registry_ref *ref, bool no_https, const char *ca_file,
                     const struct registry_auth *a, bool push, struct hutch_error *err);
void http_client_free(struct http_client *c);
void http_response_free(struct http_response *r);
/* A request to path (starting with "/v2/") or a whole URL, answered in memory (bodies of at
 * most 16 MiB); authenticates once on a 401 and repeats. upload_fd >= 0: the body is read
 * from it (upload_len bytes), else body/body_len. */
int http_request(struct http_client *c, const char *method, const char *path, const char *const *headers,
                 const void *body, size_t body_len, int upload_fd, uint64_t upload_len, struct http_response *ret,
                 struct hutch_error *err);
/* A one-line reason for a failed response: the registry's own error message when given. */
int http_status_error(const struct http_response *r, const char *what, struct hutch_error *err);

/* The blobs of desc (n of them) into dir_fd as files named by their hex digest, verified,
 * fetched in parallel; one already present is used as is. Each file is made under a
 * temporary name and renamed once verified. */
struct blob_want {
        const char *digest;
        int64_t size;
        const char *what; /* for progress lines */
};
/* blob_event (or NULL) is called with a blob's digest when its download starts into
 * BLOB_PART_NAME (ready false: the file grows in order, unverified, and is renamed to the
 * digest's hex or removed), and once it is verified under its final name or found there
 * (ready true), while the others may still be downloading. */
#define BLOB_PART_FMT ".%s.part" /* of the digest's hex */
int blobs_fetch(struct http_client *c, int dir_fd, const struct blob_want *w, size_t n, bool progress, bool quiet,
                void (*blob_event)(void *ctx, const char *digest, bool ready), void *ctx, struct hutch_error *err);

/* Per-blob progress bars on a terminal (stderr), redrawn in place. */
struct progress_row {
        const char *what, *digest;
        uint64_t got;
        int64_t total; /* -1: unknown */
        bool done;
};
struct progress {
        size_t lines;   /* rows drawn each time, fixed at the first draw */
        unsigned drawn; /* rows to move back up over */
};
/* One row fitted in width - 1 columns: "layer  0123456789ab [====>   ]  42% 1.2MiB/3.0MiB". */
void progress_row_format(const struct progress_row *r, unsigned width, char *buf, size_t size);
void progress_draw(struct progress *pg, const struct progress_row *rows, size_t n);

/* The blob cache: DIR/blob/blobs/sha256/HEX, locked per blob while it is fetched. */
int cache_blob_dir(const char *cache_dir, bool create, struct hutch_error *err);

int oras_pull(const struct pull_spec *p, const struct registry_ref *ref, char **ret_path, struct hutch_error *err);
/* url (scheme://HOST[:PORT]/...) is at host ("HOST[:PORT]", reached with scheme): the same
 * host at the same port, a missing port being its scheme's default. */
bool url_is_endpoint(const char *url, const char *scheme, const char *host);
/* A redirect to url gets the registry's (scheme://host) Authorization: the same scheme, host
 * and port. */
bool auth_goes_to(const char *url, const char *scheme, const char *host);
/* docker-daemon:IMAGE: the image's `docker save` tar from the Engine API at docker_host
 * (unix:///PATH or tcp://HOST:PORT; NULL or "": DOCKER_HOST_DEFAULT) into out_fd. */
#define DOCKER_HOST_DEFAULT "unix:///var/run/docker.sock"
bool daemon_image_is_valid(const char *image);
int daemon_export(const char *docker_host, const char *image, int out_fd, bool quiet, struct hutch_error *err);
/* "sha256:HEX" of len bytes */
void sha256_buf(const void *buf, size_t len, char out[72]);
/* Inside an unpacked root, every name resolved in it (RESOLVE_IN_ROOT: an image's symlink
 * never leads out): folders made, a file written (replace: an existing one, or a symlink,
 * is replaced; else -EEXIST). */
int root_mkdir_p(int root_fd, const char *path, mode_t mode);
int root_write(int root_fd, const char *path, const char *text, mode_t mode, bool replace);

/* ---- a pull (pull.c, local.c) */
struct pull_ctx {
        const struct pull_spec *p;
        struct registry_ref ref;
        struct http_client c;
        struct oci_manifest m;
        char digest[72]; /* the image manifest's (the cache's key) */
        char *work;      /* private folder */
        int work_fd;
        int blob_fd;             /* where config and layers are */
        const char *config_name; /* in blob_fd */
        const char **names;      /* the layers in blob_fd, bottom first */
        size_t n_names;
        bool fetch;  /* fetch the manifest's blobs into blob_fd first */
        bool verify; /* check config_digest and digests[] before use */
        const char *config_digest;
        char **digests; /* NULL entries: not checked */
        char **owned;   /* strings the above point into */
};
int convert(struct pull_ctx *x, const char *target, struct hutch_error *err);
/* The cache's SIF of x->digest (*ret), else made under its lock: into target when given
 * (*ret NULL then), else into the cache. */
int cached_sif(struct pull_ctx *x, const char *target, char **ret, struct hutch_error *err);
int copy_to(const char *src, const char *target, struct hutch_error *err);
int private_dir(const char *base, char **ret_path, struct hutch_error *err);
int pull_ctx_end(struct pull_ctx *x, int r);
int pull_local(struct pull_ctx *x, char **ret_path, struct hutch_error *err);
