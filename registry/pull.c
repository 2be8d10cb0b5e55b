/* docker:// images to SIF files: the manifest resolved (an index to the caller's
 * platform), config and layers fetched into the blob cache, verified, unpacked into a
 * private folder, given Apptainer's /.singularity.d metadata, and squashed into a SIF. The
 * SIF is kept in the cache as oci-tmp/<manifest hex>.sif (exec docker:// runs it from there)
 * and copied to the target. Nothing is left under a final name on failure. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <json-c/json.h>

#include "image/image.h"
#include "registry-internal.h"
#include "util/log.h"
#include "util/process.h"
#include "util/util.h"

static const char *const accept_manifest[] = {
        "Accept: " MT_OCI_MANIFEST ", " MT_OCI_INDEX ", " MT_DOCKER_MANIFEST ", " MT_DOCKER_LIST, NULL};

/* Root of the initial user namespace, who may make device nodes and give files any
 * owner; root of a user namespace (a fakeroot build) is a user here (mknod fails there). */
static bool is_really_root(void)
{
        _cleanup_free_ char *map = NULL;
        if (geteuid() != 0 || read_full_at(AT_FDCWD, "/proc/self/uid_map", 4096, &map, NULL) < 0)
                return false;
        unsigned long inside, outside, count;
        return sscanf(map, "%lu %lu %lu", &inside, &outside, &count) == 3 && inside == 0 && outside == 0 &&
               count == 4294967295UL;
}

/* A verified document into the blob cache (best effort: only a cache), atomically. */
static void blob_store(int dir_fd, const char *digest, const char *buf, size_t len)
{
        char tmp[96];
        snprintf(tmp, sizeof tmp, ".%s.tmp-%d", digest + 7, (int) getpid());
        if (write_file_at(dir_fd, tmp, buf, len, 0600) < 0 || renameat(dir_fd, tmp, dir_fd, digest + 7) < 0) {
                unlinkat(dir_fd, tmp, 0);
                log_verbose("cannot cache manifest %.19s, ignoring", digest);
        }
}

/* GET the manifest of reference (a tag or digest), checked against the digest when one is
 * known. */
static int manifest_get(struct http_client *c, int store_fd, const char *reference, const char *want_digest,
                        struct oci_manifest *ret, char ret_digest[72], struct hutch_error *err)
{
        _cleanup_free_ char *path = NULL, *what = NULL;
        struct http_response r = {0};
        if (asprintf(&path, "/v2/%s/manifests/%s", c->repo, reference) < 0 ||
            asprintf(&what, "%s/%s:%s", c->host, c->repo, reference) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        int k = http_request(c, "GET", path, accept_manifest, NULL, 0, -1, 0, &r, err);
        if (k < 0)
                return k;
        if (r.status != 200) {
                k = r.status == 404 ? hutch_err(err, -ENOENT, "%s: no such image (manifest unknown)", what)
                                    : http_status_error(&r, what, err);
                http_response_free(&r);
                return k;
        }
        sha256_buf(r.body ? r.body : "", r.len, ret_digest);
        if (want_digest && strcmp(ret_digest, want_digest) != 0) {
                http_response_free(&r);
                return hutch_err(err, -EBADMSG, "%s: the manifest does not match its digest (got %.19s)", what,
                                 ret_digest);
        }
        k = oci_manifest_parse(r.body ? r.body : "", r.len, ret, err);
        if (k >= 0 && store_fd >= 0)
                blob_store(store_fd, ret_digest, r.body ? r.body : "", r.len);
        http_response_free(&r);
        return k < 0 ? hutch_err_wrap(err, "%s", what) : 0;
}

/* The image manifest for the platform wanted, and its digest. */
static int manifest_resolve(struct http_client *c, int store_fd, const struct registry_ref *ref, const char *arch,
                            struct oci_manifest *ret, char digest[72], struct hutch_error *err)
{
        struct oci_manifest m = {0};
        int r = manifest_get(c, store_fd, ref->digest ? ref->digest : ref->tag, ref->digest, &m, digest, err);
        if (r < 0 || !m.is_index) {
                *ret = m;
                return r;
        }
        const char *variant = NULL;
        const char *host = registry_host_arch(&variant);
        if (arch) {
                variant = NULL;
                if (strchr(arch, '/')) { /* arm64/v8 */
                        static char a[32];
                        snprintf(a, sizeof a, "%s", arch);
                        char *sl = strchr(a, '/');
                        *sl = 0;
                        variant = strchr(arch, '/') + 1;
                        arch = a;
                }
        } else
                arch = host;
        const struct oci_descriptor *d;
        r = oci_index_select(&m, "linux", arch, variant, &d, err);
        if (r < 0) {
                oci_manifest_free(&m);
                return r;
        }
        _cleanup_free_ char *want = strdup(d->digest);
        oci_manifest_free(&m);
        if (!want)
                return hutch_err(err, -ENOMEM, "out of memory");
        r = manifest_get(c, store_fd, want, want, &m, digest, err);
        if (r >= 0 && m.is_index) {
                oci_manifest_free(&m);
                return hutch_err(err, -EBADMSG, "%s/%s: an index names another index", c->host, c->repo);
        }
        *ret = m;
        return r;
}

/* 'text' quoted for sh: inside single quotes, ' as '\'' */
static int squote_append(char **buf, size_t *len, FILE *f, const char *s)
{
        (void) buf;
        (void) len;
        fputc('\'', f);
        for (; *s; s++)
                if (*s == '\'')
                        fputs("'\\''", f);
                else
                        fputc(*s, f);
        fputc('\'', f);
        return 0;
}

/* OCI_ENTRYPOINT / OCI_CMD as Apptainer writes them: each word in double quotes, the
 * whole in single quotes ('"/bin/sh" "-c"'). */
static void oci_words(FILE *f, const char *var, char *const *v)
{
        char *b = NULL;
        size_t bl = 0;
        FILE *w = open_memstream(&b, &bl);
        for (size_t i = 0; w && v && v[i]; i++) {
                fprintf(w, "%s\"", i ? " " : "");
                for (const char *p = v[i]; *p; p++) {
                        if (strchr("\"\\$`", *p))
                                fputc('\\', w);
                        fputc(*p, w);
                }
                fputc('"', w);
        }
        if (w)
                fclose(w);
        fprintf(f, "%s=", var);
        squote_append(NULL, NULL, f, b ? b : "");
        fputc('\n', f);
        free(b);
}

/* The runscript Apptainer writes for an OCI image: ENTRYPOINT and CMD combined as Docker
 * does, evaluated by the shell, with SINGULARITY_NO_EVAL (APPTAINER_NO_EVAL) to pass the
 * words unevaluated. The image's WorkingDir is not entered: Apptainer runs in the caller's
 * folder (or --pwd's), so that relative paths on the command line keep working. */
static char *runscript_text(const struct oci_config *cfg)
{
        char *b = NULL;
        size_t bl = 0;
        FILE *f = open_memstream(&b, &bl);
        if (!f)
                return NULL;
        fputs("#!/bin/sh\n", f);
        oci_words(f, "OCI_ENTRYPOINT", cfg->entrypoint);
        oci_words(f, "OCI_CMD", cfg->cmd);
        fputs("\n"
              "# When SINGULARITY_NO_EVAL set, use OCI compatible behavior that does\n"
              "# not evaluate resolved CMD / ENTRYPOINT / ARGS through the shell, and\n"
              "# does not modify expected quoting behavior of args.\n"
              "if [ -n \"$SINGULARITY_NO_EVAL\" ] || [ -n \"$APPTAINER_NO_EVAL\" ]; then\n"
              "    # ENTRYPOINT only - run entrypoint plus args\n"
              "    if [ -z \"$OCI_CMD\" ] && [ -n \"$OCI_ENTRYPOINT\" ]; then\n"
              "        eval \"set -- $OCI_ENTRYPOINT \\\"\\$@\\\"\"\n"
              "        exec \"$@\"\n"
              "    fi\n"
              "    # CMD only - run CMD or override with args\n"
              "    if [ -n \"$OCI_CMD\" ] && [ -z \"$OCI_ENTRYPOINT\" ]; then\n"
              "        if [ $# -eq 0 ]; then\n"
              "            eval \"set -- $OCI_CMD\"\n"
              "        fi\n"
              "        exec \"$@\"\n"
              "    fi\n"
              "    # ENTRYPOINT and CMD - run ENTRYPOINT with CMD as default args\n"
              "    # override with user provided args\n"
              "    if [ $# -gt 0 ]; then\n"
              "        eval \"set -- $OCI_ENTRYPOINT \\\"\\$@\\\"\"\n"
              "    else\n"
              "        eval \"set -- $OCI_ENTRYPOINT $OCI_CMD\"\n"
              "    fi\n"
              "    exec \"$@\"\n"
              "fi\n"
              "\n"
              "# Standard Apptainer behavior evaluates CMD / ENTRYPOINT / ARGS combination\n"
              "CMDLINE_ARGS=\"\"\n"
              "# prepare command line arguments for evaluation\n"
              "for arg in \"$@\"; do\n"
              "    CMDLINE_ARGS=\"${CMDLINE_ARGS} \\\"$arg\\\"\"\n"
              "done\n"
              "\n"
              "# ENTRYPOINT only - run entrypoint plus args\n"
              "if [ -z \"$OCI_CMD\" ] && [ -n \"$OCI_ENTRYPOINT\" ]; then\n"
              "    if [ $# -gt 0 ]; then\n"
              "        SINGULARITY_OCI_RUN=\"${OCI_ENTRYPOINT} ${CMDLINE_ARGS}\"\n"
              "    else\n"
              "        SINGULARITY_OCI_RUN=\"${OCI_ENTRYPOINT}\"\n"
              "    fi\n"
              "fi\n"
              "\n"
              "# CMD only - run CMD or override with args\n"
              "if [ -n \"$OCI_CMD\" ] && [ -z \"$OCI_ENTRYPOINT\" ]; then\n"
              "    if [ $# -gt 0 ]; then\n"
              "        SINGULARITY_OCI_RUN=\"${CMDLINE_ARGS}\"\n"
              "    else\n"
              "        SINGULARITY_OCI_RUN=\"${OCI_CMD}\"\n"
              "    fi\n"
              "fi\n"
              "\n"
              "# ENTRYPOINT and CMD - run ENTRYPOINT with CMD as default args\n"
              "# override with user provided args\n"
              "if [ -n \"$OCI_CMD\" ] && [ -n \"$OCI_ENTRYPOINT\" ]; then\n"
              "    if [ $# -gt 0 ]; then\n"
              "        SINGULARITY_OCI_RUN=\"${OCI_ENTRYPOINT} ${CMDLINE_ARGS}\"\n"
              "    else\n"
              "        SINGULARITY_OCI_RUN=\"${OCI_ENTRYPOINT} ${OCI_CMD}\"\n"
              "    fi\n"
              "fi\n"
              "\n"
              "# Evaluate shell expressions first and set arguments accordingly,\n"
              "# then execute final command as first container process\n"
              "eval \"set ${SINGULARITY_OCI_RUN}\"\n"
              "exec \"$@\"\n",
              f);
        if (fclose(f) != 0) {
                free(b);
                return NULL;
        }
        return b;
}

/* env/10-docker2singularity.sh: the config's Env, as Apptainer writes it (PATH set, every
 * other variable only when the caller has not set it). */
static char *env_text(const struct oci_config *cfg)
{
        char *b = NULL;
        size_t bl = 0;
        FILE *f = open_memstream(&b, &bl);
        if (!f)
                return NULL;
        fputs("#!/bin/sh\n", f);
        for (size_t i = 0; cfg->env && cfg->env[i]; i++) {
                const char *eq = strchr(cfg->env[i], '=');
                size_t kl = eq ? (size_t) (eq - cfg->env[i]) : strlen(cfg->env[i]);
                if (!is_valid_env_name(cfg->env[i], kl))
                        continue;
                fprintf(f, "export %.*s=", (int) kl, cfg->env[i]);
                if (!eq)
                        fprintf(f, "\"${%.*s:-}\"\n", (int) kl, cfg->env[i]);
                else if (kl == 4 && !strncmp(cfg->env[i], "PATH", 4)) {
                        squote_append(NULL, NULL, f, eq + 1);
                        fputc('\n', f);
                } else {
                        fprintf(f, "\"${%.*s:-", (int) kl, cfg->env[i]);
                        for (const char *p = eq + 1; *p; p++) {
                                if (strchr("\"\\$`", *p))
                                        fputc('\\', f);
                                fputc(*p, f);
                        }
                        fputs("}\"\n", f);
                }
        }
        if (fclose(f) != 0) {
                free(b);
                return NULL;
        }
        return b;
}

/* A URI as Apptainer's NewDefinitionFromURI splits it: the transport (its first *ret_tl
 * bytes, the bootstrap), and what follows "://" or ":" (returned, the from). */
static const char *uri_split(const char *source, size_t *ret_tl)
{
        const char *sep = strstr(source, "://");
        size_t tl = sep ? (size_t) (sep - source) : strcspn(source, ":");
        *ret_tl = tl;
        return sep ? sep + 3 : source[tl] ? source + tl + 1 : "";
}

/* The definition file Apptainer records for an image made from a URI. */
static char *uri_deffile(const char *source)
{
        size_t tl;
        const char *from = uri_split(source, &tl);
        char *d = NULL;
        return asprintf(&d, "bootstrap: %.*s\nfrom: %s\n", (int) tl, source, from) < 0 ? NULL : d;
}

/* labels.json: the config's labels, then the org.label-schema.* ones a build writes (as a
 * definition file's build does: recipe/stage.c), so that inspect shows where it came from. */
static char *labels_text(const char *config_labels, const char *source)
{
        json_object *o = config_labels ? json_tokener_parse(config_labels) : NULL;
        if (!o || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                o = json_object_new_object();
        }
        char date[128];
        time_t now = time(NULL);
        struct tm tm;
        strftime(date, sizeof date, "%A_%-d_%B_%Y_%-H:%-M:%-S_%Z", localtime_r(&now, &tm));
        size_t tl;
        const char *from = uri_split(source, &tl);
        _cleanup_free_ char *bootstrap = strndup(source, tl);
        const char *variant;
        const char *kv[][2] = {
                {"org.label-schema.schema-version", "1.0"},
                {"org.label-schema.build-arch", registry_host_arch(&variant)},
                {"org.label-schema.build-date", date},
                {"org.label-schema.usage.hutch.version", HUTCH_VERSION},
                {"org.label-schema.usage.singularity.deffile.bootstrap", bootstrap ? bootstrap : ""},
                {"org.label-schema.usage.singularity.deffile.from", from},
        };
        for (size_t i = 0; i < ELEMENTSOF(kv); i++)
                json_object_object_add(o, kv[i][0], json_object_new_string(kv[i][1]));
        const char *t =
                json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_PRETTY_TAB |
                                                          JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
        char *r = t ? strdup(t) : NULL;
        json_object_put(o);
        return r;
}

/* /.singularity.d and the folders and files every Apptainer image has. */
static int metadata_write(int root_fd, const struct oci_config *cfg, const char *source, struct hutch_error *err)
{
        static const char *const dirs[] = {".singularity.d/env",
                                           ".singularity.d/actions",
                                           ".singularity.d/libs",
                                           "proc",
                                           "sys",
                                           "dev",
                                           "tmp",
                                           "var/tmp",
                                           "home",
                                           "root",
                                           "etc",
                                           "mnt",
                                           "opt",
                                           "srv"};
        int r;
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++)
                if ((r = root_mkdir_p(root_fd, dirs[i], 0755)) < 0)
                        return hutch_err_sys(err, r, "cannot create /%s in the image", dirs[i]);
        static const char *const etc_files[] = {"etc/passwd", "etc/group", "etc/hosts", "etc/resolv.conf"};
        for (size_t i = 0; i < ELEMENTSOF(etc_files); i++)
                if ((r = root_write(root_fd, etc_files[i], "", 0644, false)) < 0 && r != -EEXIST)
                        return hutch_err_sys(err, r, "cannot create /%s in the image", etc_files[i]);
        _cleanup_free_ char *run = runscript_text(cfg), *env = env_text(cfg), *def = uri_deffile(source),
                            *labels = labels_text(cfg->labels_json, source);
        if (!run || !env || !def || !labels)
                return hutch_err(err, -ENOMEM, "out of memory");
        static const char *const names[] = {".singularity.d/runscript", ".singularity.d/env/10-docker2singularity.sh",
                                            ".singularity.d/env/90-environment.sh", ".singularity.d/labels.json",
                                            ".singularity.d/Singularity"};
        const char *texts[] = {run, env, IMAGE_ENV_HEAD, labels, def};
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                /* an image converted from Apptainer's keeps its own 90-environment.sh */
                if ((r = root_write(root_fd, names[i], texts[i], i < 3 ? 0755 : 0644, i != 2)) < 0 &&
                    !(i == 2 && r == -EEXIST))
                        return hutch_err_sys(err, r, "cannot write /%s in the image", names[i]);
        if (unlinkat(root_fd, "singularity", 0) < 0 && errno != ENOENT && errno != EISDIR)
                return hutch_err_sys(err, -errno, "cannot replace /singularity in the image");
        if (symlinkat(".singularity.d/runscript", root_fd, "singularity") < 0 && errno != EEXIST)
                return hutch_err_sys(err, -errno, "cannot create /singularity in the image");
        return 0;
}

/* A private folder: mkdtemp beside base, opened and checked to be ours. */
int private_dir(const char *base, char **ret_path, struct hutch_error *err)
{
        char *p = NULL;
        if (asprintf(&p, "%s.hutch-pull-XXXXXX", base) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (!mkdtemp(p)) {
                int r = hutch_err_sys(err, -errno, "cannot create a temporary folder beside '%s'", base);
                free(p);
                return r;
        }
        int fd = open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 07777) != 0700) {
                if (fd >= 0)
                        close(fd);
                free(p);
                return hutch_err(err, -EPERM, "the temporary folder beside '%s' was replaced", base);
        }
        *ret_path = p;
        return fd;
}

static void private_dir_remove(const char *path)
{
        /* a user's unpacked tree may hold folders without u+w again (layer_unpack_finish) */
        char *chmod_argv[] = {"chmod", "-R", "u+rwX", "--", (char *) path, NULL};
        char *rm_argv[] = {"rm", "-rf", "--", (char *) path, NULL};
        if (geteuid() != 0)
                spawn_wait(chmod_argv, true);
        spawn_wait(rm_argv, true);
}

/* The layers are unpacked by a child of ours (its own copy of our memory; the root and blob
 * folders its fds 4 and 5), in order, while later ones still download. The next layer in
 * order is unpacked as it arrives: once its download starts, the child reads its partial
 * file as it grows, and finishes it when told the blob is whole and verified. Bytes not yet
 * verified are thus unpacked, into the private work folder only: on any failure (a digest
 * that does not match among them) the child is killed and the work folder removed whole,
 * and the image is made only after every layer verified. A registry's layers are untrusted
 * input either way (a digest binds them to the manifest the same registry served), so the
 * unpacker's own checks are what guard against crafted ones. */
struct unpacker {
        const struct pull_ctx *x;
        pid_t pid;
        int sock; /* SOCK_SEQPACKET: layer messages to the child, its result back */
        size_t next;
        unsigned char *state; /* LAYER_* of each layer */
};
enum { LAYER_READY = 1, LAYER_LOADING = 2, LAYER_FOLLOWED = 4 };
/* the child's messages: a layer's index (whole and verified), or with UNPACK_FOLLOW (its
 * download has started into its part file) */
#define UNPACK_FOLLOW 0x80000000u
struct unpack_result {
        int r;
        struct hutch_error err;
};
enum { UNPACK_SOCK = 3, UNPACK_ROOT = 4, UNPACK_BLOBS = 5 };

/* layer_unpack_growing's wait_more for a layer being downloaded: the parent's word that it
 * is whole, or its file written to (inotify). */
struct follow {
        uint32_t layer;
        int inotify;
};

static int follow_wait(void *ctx)
{
        struct follow *f = ctx;
        struct pollfd p[2] = {{.fd = UNPACK_SOCK, .events = POLLIN}, {.fd = f->inotify, .events = POLLIN}};
        if (poll(p, 2, 1000) < 0)
                return errno == EINTR ? 0 : -errno;
        if (p[0].revents) {
                uint32_t i;
                ssize_t k = recv(UNPACK_SOCK, &i, sizeof i, 0);
                if (k < 0 && errno == EINTR)
                        return 0;
                return k == sizeof i && i == f->layer ? 1 : -EPROTO;
        }
        char buf[4096];
        while (p[1].revents && read(f->inotify, buf, sizeof buf) > 0)
                ;
        return 0;
}

/* Layer i from its file as it grows: the part file, or the blob itself when its download
 * finished before we came to it. */
static int layer_follow(const struct pull_ctx *x, uint32_t i, struct unpack_opts *uo, struct hutch_error *err)
{
        char part[128], link[64];
        snprintf(part, sizeof part, BLOB_PART_FMT, x->names[i]);
        _cleanup_close_ int fd = openat(UNPACK_BLOBS, part, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                fd = openat(UNPACK_BLOBS, x->names[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot open the download of layer %.19s", x->names[i]);
        struct follow f = {.layer = i, .inotify = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)};
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        if (f.inotify < 0 || inotify_add_watch(f.inotify, link, IN_MODIFY) < 0) {
                int r = hutch_err_sys(err, -errno, "cannot follow the download of layer %.19s", x->names[i]);
                if (f.inotify >= 0)
                        close(f.inotify);
                return r;
        }
        int r = layer_unpack_growing(UNPACK_ROOT, fd, x->names[i], follow_wait, &f, uo, err);
        close(f.inotify);
        return r;
}

static _Noreturn void unpacker_main(const struct pull_ctx *x)
{
        struct unpack_opts uo = {.as_root = is_really_root()};
        struct unpack_result res = {.err = HUTCH_ERROR_INIT};
        for (;;) {
                uint32_t i;
                ssize_t k = recv(UNPACK_SOCK, &i, sizeof i, 0);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k == 0) /* every layer sent */
                        break;
                bool follow = k == sizeof i && (i & UNPACK_FOLLOW);
                i &= ~UNPACK_FOLLOW;
                if (k != sizeof i || i >= x->n_names) {
                        res.r = hutch_err(&res.err, -EPROTO, "the layer unpacker got a bad message");
                        break;
                }
                if (follow)
                        res.r = layer_follow(x, i, &uo, &res.err);
                else {
                        char path[PATH_MAX];
                        snprintf(path, sizeof path, "/proc/self/fd/%d/%s", UNPACK_BLOBS, x->names[i]);
                        res.r = layer_unpack(UNPACK_ROOT, path, &uo, &res.err);
                }
                if (res.r < 0) {
                        hutch_err_wrap(&res.err, "layer %.19s", x->names[i]);
                        break;
                }
        }
        if (res.r >= 0)
                layer_unpack_finish(UNPACK_ROOT, &uo);
        (void) !send(UNPACK_SOCK, &res, sizeof res, MSG_NOSIGNAL);
        _exit(res.r < 0);
}

static int unpacker_start(struct unpacker *u, const struct pull_ctx *x, int root, struct hutch_error *err)
{
        int sv[2];
        *u = (struct unpacker){.x = x, .pid = -1, .sock = -1};
        if (!(u->state = calloc(x->n_names + 1, sizeof *u->state)))
                return hutch_err(err, -ENOMEM, "out of memory");
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return hutch_err_sys(err, -errno, "cannot start the layer unpacker");
        fflush(stdout);
        fflush(stderr);
        struct pidref p = PIDREF_NULL;
        int r = process_fork(FORK_DEATHSIG, &p);
        if (r == 0) {
                /* ends with us (a pull killed or interrupted stops its unpacking at once);
                 * our stderr for its warnings; the socket, root and blob folder as fds 3-5
                 * and no other fd of ours */
                const int fds[] = {sv[1], root, x->blob_fd};
                int tmp[ELEMENTSOF(fds)];
                for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                        if ((tmp[i] = fcntl(fds[i], F_DUPFD, UNPACK_SOCK + (int) ELEMENTSOF(fds))) < 0)
                                _exit(127);
                for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                        if (dup2(tmp[i], UNPACK_SOCK + (int) i) < 0)
                                _exit(127);
                close_range(UNPACK_SOCK + ELEMENTSOF(fds), ~0u, 0);
                unpacker_main(x);
        }
        close(sv[1]);
        if (r < 0) {
                close(sv[0]);
                return hutch_err_sys(err, r, "cannot start the layer unpacker");
        }
        u->pid = p.pid;
        pidref_done(&p);
        u->sock = sv[0];
        return 0;
}

/* The layers from u->next on that are ready, in order, to the child, and then the next one
 * to follow if its download has started (a send that fails: the child has ended, and says
 * why in its result). */
static void unpacker_send(struct unpacker *u)
{
        for (; u->next < u->x->n_names && (u->state[u->next] & LAYER_READY); u->next++) {
                uint32_t i = (uint32_t) u->next;
                (void) !send(u->sock, &i, sizeof i, MSG_NOSIGNAL);
        }
        unsigned char *s = &u->state[u->next];
        if (u->next < u->x->n_names && (*s & LAYER_LOADING) && !(*s & LAYER_FOLLOWED)) {
                uint32_t i = (uint32_t) u->next | UNPACK_FOLLOW;
                (void) !send(u->sock, &i, sizeof i, MSG_NOSIGNAL);
                *s |= LAYER_FOLLOWED;
        }
}

/* blobs_fetch's blob_event: a download started, or a verified blob; the layers it is (a
 * manifest may repeat one) */
static void layer_blob(void *ctx, const char *digest, bool ready)
{
        struct unpacker *u = ctx;
        for (size_t i = 0; i < u->x->n_names; i++)
                if (!strcmp(u->x->names[i], digest + 7))
                        u->state[i] |= ready ? LAYER_READY : LAYER_LOADING;
        unpacker_send(u);
}

/* ok: every layer to the child, then its result; else the child killed. Frees u. */
static int unpacker_end(struct unpacker *u, bool ok, struct hutch_error *err)
{
        struct unpack_result res = {.r = -EIO};
        ssize_t k = -1;
        if (ok) {
                for (size_t i = 0; i < u->x->n_names; i++)
                        u->state[i] |= LAYER_READY;
                unpacker_send(u);
                shutdown(u->sock, SHUT_WR);
                while ((k = recv(u->sock, &res, sizeof res, 0)) < 0 && errno == EINTR)
                        ;
        } else if (u->pid > 0)
                kill(u->pid, SIGKILL);
        while (u->pid > 0 && waitpid(u->pid, NULL, 0) < 0 && errno == EINTR)
                ;
        if (u->sock >= 0)
                close(u->sock);
        free(u->state);
        *u = (struct unpacker){.pid = -1, .sock = -1};
        if (!ok)
                return 0;
        if (k != (ssize_t) sizeof res)
                return hutch_err(err, -EIO, "the layer unpacker ended without a result");
        if (res.r < 0)
                *err = res.err;
        return res.r;
}

/* The blobs fetched (docker://) or checked (local sources) while the layers are unpacked */
static int layers_get(struct pull_ctx *x, int root, struct hutch_error *err)
{
        const struct pull_spec *p = x->p;
        struct unpacker u;
        int r = unpacker_start(&u, x, root, err);
        if (r < 0) {
                unpacker_end(&u, false, err);
                return r;
        }
        if (x->fetch) {
                size_t n = x->m.n_layers + 1;
                _cleanup_free_ struct blob_want *w = calloc(n, sizeof *w);
                if (!w)
                        r = hutch_err(err, -ENOMEM, "out of memory");
                for (size_t i = 0; w && i < n; i++)
                        w[i] = i == 0 ? (struct blob_want){x->m.config.digest, x->m.config.size, "config"}
                                      : (struct blob_want){x->m.layers[i - 1].digest, x->m.layers[i - 1].size, "layer"};
                if (w)
                        r = blobs_fetch(&x->c, x->blob_fd, w, n, p->progress, p->quiet, layer_blob, &u, err);
        }
        for (size_t i = 0; r >= 0 && x->verify && i <= x->n_names; i++) {
                const char *name = i == 0 ? x->config_name : x->names[i - 1];
                const char *want = i == 0 ? x->config_digest : x->digests[i - 1];
                char got[72];
                _cleanup_close_ int fd = openat(x->blob_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (fd < 0)
                        r = hutch_err_sys(err, -errno, "cannot open '%s' of the image", name);
                else if (want && (r = sha256_file(fd, got, err)) >= 0 && strcmp(got, want) != 0)
                        r = hutch_err(err, -EBADMSG, "'%s' of the image does not match its digest %.19s", name, want);
        }
        if (r < 0) {
                unpacker_end(&u, false, err);
                return r;
        }
        return unpacker_end(&u, true, err);
}

/* Fetch the blobs (docker://), check them (local sources), unpack the layers, write
 * metadata, squash into target. */
int convert(struct pull_ctx *x, const char *target, struct hutch_error *err)
{
        const struct pull_spec *p = x->p;
        if (mkdirat(x->work_fd, "rootfs", 0755) < 0)
                return hutch_err_sys(err, -errno, "cannot create the unpack folder");
        _cleanup_close_ int root = openat(x->work_fd, "rootfs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root < 0)
                return hutch_err_sys(err, -errno, "cannot open the unpack folder");
        int r = layers_get(x, root, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *cj = NULL;
        size_t cl;
        r = read_regular_at(x->blob_fd, x->config_name, 16u << 20, &cj, &cl);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot read the image config");
        struct oci_config cfg = {0};
        if ((r = oci_config_parse(cj, cl, &cfg, err)) < 0)
                return r;
        r = metadata_write(root, &cfg, p->source, err);
        oci_config_free(&cfg);
        if (r < 0)
                return r;
        char rootpath[PATH_MAX];
        snprintf(rootpath, sizeof rootpath, "%s/rootfs", x->work);
        _cleanup_free_ char *def = uri_deffile(p->source);
        if (!def)
                return hutch_err(err, -ENOMEM, "out of memory");
        struct build_spec b = {.target = target,
                               .source = rootpath,
                               .force = true,
                               .deffile = def,
                               .progress = p->progress,
                               .quiet = true,
                               .zstd = true};
        if (!p->quiet)
                log_info("Creating SIF file...");
        return image_build(&b, err);
}

/* Copy src into target through a temporary name beside it. */
int copy_to(const char *src, const char *target, struct hutch_error *err)
{
        _cleanup_free_ char *tmp = NULL;
        if (asprintf(&tmp, "%s.hutch-tmp-XXXXXX", target) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int out = mkostemp(tmp, O_CLOEXEC);
        if (in < 0 || out < 0) {
                int r = hutch_err_sys(err, -errno, "cannot copy the image to '%s'", target);
                if (out >= 0)
                        unlink(tmp);
                return r;
        }
        struct stat st;
        int r = fstat(in, &st) < 0 ? -errno : 0;
        for (off_t left = st.st_size; r == 0 && left > 0;) {
                ssize_t k = copy_file_range(in, NULL, out, NULL, (size_t) left, 0);
                if (k <= 0) {
                        r = k < 0 ? -errno : -EIO;
                        break;
                }
                left -= k;
        }
        if (r == 0 && (fchmod(out, 0755) < 0 || fsync(out) < 0 || rename(tmp, target) < 0))
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                return hutch_err_sys(err, r, "cannot copy the image to '%s'", target);
        }
        return 0;
}

/* The cache's SIF of the resolved manifest, built under its lock when missing. */
int cached_sif(struct pull_ctx *x, const char *target, char **ret, struct hutch_error *err)
{
        _cleanup_free_ char *dir = NULL, *path = NULL, *lock = NULL;
        const char *hex = x->digest + 7;
        if (asprintf(&dir, "%s/oci-tmp", x->p->cache_dir) < 0 || asprintf(&path, "%s/%s.sif", dir, hex) < 0 ||
            asprintf(&lock, "%s/.%s.lock", dir, hex) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        int r = mkdir_p_at(AT_FDCWD, dir, 0700);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot create the cache folder '%s'", dir);
        _cleanup_close_ int lk = open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (lk < 0)
                return hutch_err_sys(err, -errno, "cannot lock '%s'", lock);
        while (flock(lk, LOCK_EX) < 0)
                if (errno != EINTR)
                        return hutch_err_sys(err, -errno, "cannot lock '%s'", lock);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                log_verbose("Using the cached image %s", path);
                *ret = steal_pointer(&path);
                return 0;
        }
        /* a pull to a file makes it there, not in the cache: no copy of the image (the blobs
         * are cached, and exec docker:// keeps its own) */
        const char *dest = target ? target : path;
        if (!x->work && (x->work_fd = private_dir(dest, &x->work, err)) < 0)
                return x->work_fd;
        if ((r = convert(x, dest, err)) < 0)
                return r;
        *ret = target ? NULL : steal_pointer(&path);
        return 0;
}

/* A reference by digest names the same image for ever: the cache notes which image
 * manifest it resolved to for an architecture (oci-tmp/REFHEX-ARCH.ref), so that the next
 * use needs no request at all. */
static char *ref_note_path(const struct pull_ctx *x)
{
        const char *variant, *arch = x->p->arch ? x->p->arch : registry_host_arch(&variant);
        char *s = NULL, a[64];
        snprintf(a, sizeof a, "%s", arch);
        for (char *c = a; *c; c++)
                if (*c == '/')
                        *c = '-';
        if (asprintf(&s, "%s/oci-tmp/%s-%s.ref", x->p->cache_dir, x->ref.digest + 7, a) < 0)
                return NULL;
        return s;
}

/* The image manifest a digest reference resolved to before, from the cache: 0 found (x->m
 * and x->digest set), -ENOENT not. */
static int manifest_offline(struct pull_ctx *x)
{
        _cleanup_free_ char *note = ref_note_path(x), *hex = NULL, *text = NULL;
        size_t len, tl;
        char got[72];
        if (!note || read_regular_at(AT_FDCWD, note, 128, &hex, &len) < 0 || len != 64 ||
            read_regular_at(x->blob_fd, hex, 16u << 20, &text, &tl) < 0)
                return -ENOENT;
        sha256_buf(text, tl, got);
        struct hutch_error e;
        if (strcmp(got + 7, hex) != 0 || oci_manifest_parse(text, tl, &x->m, &e) < 0)
                return -ENOENT;
        if (x->m.is_index) {
                oci_manifest_free(&x->m);
                return -ENOENT;
        }
        memcpy(x->digest, got, sizeof got);
        return 0;
}

static int pull_docker(struct pull_ctx *x, char **ret_path, struct hutch_error *err)
{
        const struct pull_spec *p = x->p;
        int r = http_client_init(&x->c, &x->ref, p->no_https, p->ca_file, &p->auth, false, err);
        if (r < 0)
                return r;
        if (!p->disable_cache && (x->blob_fd = cache_blob_dir(p->cache_dir, true, err)) < 0)
                return x->blob_fd;
        _cleanup_free_ char *note = x->ref.digest && !p->disable_cache ? ref_note_path(x) : NULL;
        if (!note || manifest_offline(x) < 0) {
                if ((r = manifest_resolve(&x->c, x->blob_fd, &x->ref, p->arch, &x->m, x->digest, err)) < 0)
                        return r;
                if (note && write_file_at(AT_FDCWD, note, x->digest + 7, 64, 0600) < 0)
                        log_verbose("cannot write '%s', ignoring", note);
        }
        log_verbose("Manifest %s", x->digest);
        x->fetch = true;
        x->config_name = x->m.config.digest + 7;
        x->n_names = x->m.n_layers;
        if (!(x->names = calloc(x->n_names + 1, sizeof *x->names)))
                return hutch_err(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < x->n_names; i++)
                x->names[i] = x->m.layers[i].digest + 7;
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
        if (!p->target)
                return hutch_err(err, -EINVAL, "running a docker:// image needs the cache (no --disable-cache)");
        if ((x->work_fd = private_dir(p->target, &x->work, err)) < 0)
                return x->work_fd;
        if (mkdirat(x->work_fd, "blobs", 0700) < 0 ||
            (x->blob_fd = openat(x->work_fd, "blobs", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
                return hutch_err_sys(err, -errno, "cannot create a blob folder in '%s'", x->work);
        return convert(x, p->target, err);
}

int registry_pull(const struct pull_spec *p, char **ret_path, struct hutch_error *err)
{
        struct pull_ctx x = {.p = p, .work_fd = -1, .blob_fd = -1};
        struct stat st;
        if (ret_path)
                *ret_path = NULL;
        if (registry_source_is_local(p->source)) {
                if (p->target && !p->force && lstat(p->target, &st) == 0)
                        return hutch_err(err, -EEXIST, "image file '%s' already exists; use --force to overwrite it",
                                         p->target);
                return pull_ctx_end(&x, pull_local(&x, ret_path, err));
        }
        int r = registry_ref_parse(p->source, &x.ref, err);
        if (r < 0)
                return r;
        if (p->target && !p->force && lstat(p->target, &st) == 0) {
                registry_ref_free(&x.ref);
                return hutch_err(err, -EEXIST, "image file '%s' already exists; use --force to overwrite it",
                                 p->target);
        }
        if (x.ref.transport == REGISTRY_ORAS)
                r = oras_pull(p, &x.ref, ret_path, err);
        else
                r = pull_docker(&x, ret_path, err);
        r = pull_ctx_end(&x, r);
        return r;
}

int pull_ctx_end(struct pull_ctx *x, int r)
{
        if (x->c.requests)
                log_debug("%u HTTP requests", x->c.requests);
        if (x->work_fd >= 0)
                close(x->work_fd);
        if (x->blob_fd >= 0)
                close(x->blob_fd);
        if (x->work)
                private_dir_remove(x->work);
        free(x->work);
        free(x->names);
        free(x->digests);
        strv_free(x->owned);
        oci_manifest_free(&x->m);
        http_client_free(&x->c);
        registry_ref_free(&x->ref);
        return r;
}
