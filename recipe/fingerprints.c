/* The 'Fingerprints:' header, with Apptainer's rule: the SIF a stage starts from must verify
 * (every signature of every object group good, with the user's keyrings) and each listed key
 * must have signed all of its object groups. The signatures are checked by hutch-sign (the
 * program that links librnp: hutch links libc alone), whose `verify-report` this reads (hutch's
 * own report of each signature: `verify --json` is Apptainer's, which names no groups). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "image/image.h"
#include "recipe-internal.h"
#include "util/log.h"
#include "util/util.h"

#define REPORT_MAX (4u << 20)

static bool is_fingerprint(const char *s)
{
        size_t n = 0;
        for (; s[n]; n++)
                if (!isxdigit((unsigned char) s[n]))
                        return false;
        return n == 40;
}

int fingerprints_parse(const char *value, char ***ret, struct hutch_error *err)
{
        _cleanup_strv_ char **fps = NULL;
        _cleanup_free_ char *v = strndup(value, strcspn(value, "#")); /* a trailing comment */
        if (!v)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (char *p = v, *next; p; p = next) {
                next = strchr(p, ',');
                if (next)
                        *next++ = 0;
                p += strspn(p, " \t");
                for (size_t n = strlen(p); n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r'); n--)
                        p[n - 1] = 0;
                if (!*p && !next && !fps)
                        break; /* an empty header: nothing required, as Apptainer */
                if (!is_fingerprint(p))
                        return hutch_err(err, -EINVAL,
                                         "'Fingerprints: %s': '%s' is not a key fingerprint (40 hex digits, "
                                         "comma-separated)",
                                         value, p);
                for (char *c = p; *c; c++)
                        *c = (char) toupper((unsigned char) *c);
                if (!strv_contains(fps, p) && strv_extend(&fps, p) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
        }
        *ret = steal_pointer(&fps);
        return 0;
}

static bool json_true(json_object *o, const char *key)
{
        json_object *v = NULL;
        return json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

static const char *json_str(json_object *o, const char *key)
{
        json_object *v = NULL;
        return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
                       ? json_object_get_string(v)
                       : NULL;
}

/* Whether fp made a good signature of group g in sigs. */
static bool signed_group(json_object *sigs, const char *fp, int64_t g)
{
        for (size_t i = 0; i < json_object_array_length(sigs); i++) {
                json_object *s = json_object_array_get_idx(sigs, i), *grp = NULL, *e = NULL;
                const char *f = json_str(s, "fingerprint");
                if (json_object_object_get_ex(s, "group", &grp) && json_object_get_int64(grp) == g && f &&
                    !strcasecmp(f, fp) && (!json_object_object_get_ex(s, "error", &e) || !e))
                        return true;
        }
        return false;
}

int fingerprints_signers(const char *report, char ***ret, struct hutch_error *err)
{
        _cleanup_strv_ char **all = NULL;
        json_object *root = json_tokener_parse(report), *sigs = NULL;
        int r = 0;
        if (!root || !json_object_object_get_ex(root, "signatures", &sigs) ||
            !json_object_is_type(sigs, json_type_array)) {
                r = hutch_err(err, -EBADMSG, "hutch-sign's verify report is malformed");
                goto out;
        }
        if (!json_true(root, "verified")) {
                const char *e = json_str(root, "error");
                r = hutch_err(err, -EBADMSG, "%s", e ? e : "it does not verify");
                goto out;
        }
        /* the keys that signed every object group (pkg/integrity's AllSignedBy): a verified
         * report has a good signature for each group */
        for (size_t i = 0; i < json_object_array_length(sigs); i++) {
                const char *fp = json_str(json_object_array_get_idx(sigs, i), "fingerprint");
                bool every = fp && !strv_contains(all, fp);
                for (size_t k = 0; every && k < json_object_array_length(sigs); k++) {
                        json_object *grp = NULL;
                        if (json_object_object_get_ex(json_object_array_get_idx(sigs, k), "group", &grp))
                                every = signed_group(sigs, fp, json_object_get_int64(grp));
                }
                if (every && strv_extend(&all, fp) < 0) {
                        r = hutch_err(err, -ENOMEM, "out of memory");
                        goto out;
                }
        }
        if (!all) {
                r = hutch_err(err, -EBADMSG, "the image is not signed");
                goto out;
        }
        *ret = steal_pointer(&all);
out:
        json_object_put(root);
        return r;
}

static int read_all(int fd, char **ret)
{
        size_t len = 0, cap = 0;
        _cleanup_free_ char *buf = NULL;
        for (;;) {
                if (cap - len < 4096) {
                        if (cap >= REPORT_MAX)
                                return -EFBIG;
                        char *n = realloc(buf, cap += 65536);
                        if (!n)
                                return -ENOMEM;
                        buf = n;
                }
                ssize_t k = read(fd, buf + len, cap - len - 1);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                len += (size_t) k;
        }
        buf[len] = 0;
        *ret = steal_pointer(&buf);
        return 0;
}

/* `hutch-sign verify-report SIF` with the caller's environment (HOME, HUTCH_KEYSDIR,
 * APPTAINER_KEYSDIR name the keyrings): its report on ret; its error line (when it printed
 * no report) on ret_errline. */
static int sign_verify_run(const struct build_ctx *b, const char *sif, char **ret, char *errline, size_t errlen,
                           struct hutch_error *err)
{
        char prog[PATH_MAX];
        if (!libexec_program("hutch-sign", prog, sizeof prog))
                return hutch_err(err, -ENOENT, "'Fingerprints:' needs hutch-sign, which is not installed beside hutch");
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0)
                return hutch_err_sys(err, -errno, "cannot run hutch-sign");
        _cleanup_close_ int out = pfd[0], in = pfd[1];
        _cleanup_close_ int efd = memfd_create("hutch-sign-stderr", MFD_CLOEXEC);
        if (efd < 0)
                return hutch_err_sys(err, -errno, "cannot run hutch-sign");
        posix_spawn_file_actions_t fa;
        if (posix_spawn_file_actions_init(&fa) != 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, in, STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, efd, STDERR_FILENO);
        char *argv[] = {"hutch-sign", "verify-report", (char *) sif, NULL};
        char *noenv[] = {NULL};
        pid_t pid;
        fflush(NULL);
        int r = posix_spawn(&pid, prog, &fa, NULL, argv, b->spec->host_env ? b->spec->host_env : noenv);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0)
                return hutch_err_sys(err, -r, "cannot run %s", prog);
        close(in);
        in = -EBADF;
        r = read_all(out, ret);
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return hutch_err_sys(err, -errno, "cannot wait for hutch-sign");
        if (r < 0)
                return hutch_err_sys(err, r, "cannot read hutch-sign's verify report");
        ssize_t n = pread(efd, errline, errlen - 1, 0);
        errline[n > 0 ? n : 0] = 0;
        errline[strcspn(errline, "\n")] = 0;
        return 0;
}

/* "A, B" */
static void strv_text(char *const *v, char *buf, size_t len)
{
        buf[0] = 0;
        for (size_t i = 0, at = 0; v && v[i] && at < len; i++)
                at += (size_t) snprintf(buf + at, len - at, "%s%s", i ? ", " : "", v[i]);
}

int fingerprints_check(const struct build_ctx *b, const struct recipe_stage *st, const char *source,
                       struct hutch_error *err)
{
        _cleanup_strv_ char **want = NULL, **signers = NULL;
        _cleanup_free_ char *report = NULL;
        const char *value = recipe_header_get(st, "fingerprints"), *path = b->spec->path;
        char errline[sizeof err->msg], list[sizeof err->msg / 2];
        struct image img = IMAGE_NULL;

        if (!value)
                return 0;
        int r = fingerprints_parse(value, &want, err);
        if (r < 0)
                return hutch_err_wrap(err, "%s", path);
        if (!want)
                return 0;
        r = image_open(source, false, &img, err);
        if (r < 0)
                return hutch_err_wrap(err, "%s: From: '%s'", path, st->from);
        enum image_format f = img.format;
        image_close(&img);
        if (f != IMAGE_FORMAT_SIF)
                return hutch_err(err, -EINVAL, "%s: 'Fingerprints:' needs a signed SIF image, and From: '%s' is a %s",
                                 path, st->from, image_format_name(f));
        log_info("Checking that %s is signed by %s", st->from, value);
        r = sign_verify_run(b, source, &report, errline, sizeof errline, err);
        if (r < 0)
                return r;
        if (!report[0])
                return hutch_err(err, -EIO, "%s: cannot check the signatures of '%s': %s", path, st->from,
                                 errline[0] ? errline + (startswith(errline, "hutch: error: ") ? 14 : 0)
                                            : "hutch-sign said nothing");
        r = fingerprints_signers(report, &signers, err);
        if (r < 0 && strstr(err->msg, "unknown key")) {
                snprintf(errline, sizeof errline, "%s", err->msg);
                return hutch_err(err, r,
                                 "%s: From: '%s' does not verify (Fingerprints:): %s; import the signer's public key "
                                 "with 'hutch key import'",
                                 path, st->from, errline);
        }
        if (r < 0)
                return hutch_err_wrap(err, "%s: From: '%s' does not verify (Fingerprints:)", path, st->from);
        strv_text(signers, list, sizeof list);
        for (size_t i = 0; want[i]; i++)
                if (!strv_contains(signers, want[i]))
                        return hutch_err(err, -EPERM,
                                         "%s: From: '%s' is not signed by %s (Fingerprints:); it is signed by %s", path,
                                         st->from, want[i], list);
        return 0;
}
