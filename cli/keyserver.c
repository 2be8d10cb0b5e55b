/* Keyservers for hutch-sign: `key search|pull|push` speak HKP to --url or to the first of
 * the user's keyservers (~/.hutch/keyservers, kept by `hutch keyserver add|remove|list`, as
 * Apptainer's `keyserver` verb keeps its own). The HTTP goes through `hutch-registry
 * http-fetch` (hutch-sign does not load libcurl); a pulled key reaches the keyring only
 * when it is the one asked for, and only whole. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exit.h"
#include "keyserver.h"
#include "sign/sign.h"
#include "util/cleanup.h"
#include "util/util.h"

extern char **environ;

#define KEY_REPLY_MAX (4u << 20)   /* a key with its signatures */
#define INDEX_REPLY_MAX (1u << 20) /* a search's index */

/* ---- the user's keyservers: one "URL [insecure]" a line, the first is used */
static char *list_path(struct cli *c)
{
        const char *home = cli_getenv(c, "HOME");
        return home && *home ? strjoin(home, "/.hutch/keyservers", NULL) : NULL;
}

struct server {
        char url[1024];
        bool insecure;
};

/* -ENOENT: no file (no keyservers); else how many */
static int list_read(struct cli *c, struct server **ret, size_t *ret_n)
{
        _cleanup_free_ char *path = list_path(c), *data = NULL;
        _cleanup_free_ struct server *list = NULL;
        size_t len = 0, n = 0;
        if (!path)
                return cli_failf(-ENOENT, "HOME is not set: no list of keyservers");
        int r = read_regular_at(AT_FDCWD, path, 1u << 20, &data, &len);
        if (r < 0 && r != -ENOENT) {
                struct hutch_error err = HUTCH_ERROR_INIT;
                hutch_err_sys(&err, r, "cannot read '%s'", path);
                return cli_fail(&err);
        }
        for (char *save = NULL, *line = data ? strtok_r(data, "\n", &save) : NULL; line;
             line = strtok_r(NULL, "\n", &save)) {
                char url[1024], flag[32] = "";
                if (sscanf(line, "%1023s %31s", url, flag) < 1 || url[0] == '#')
                        continue;
                struct server *l = realloc(list, (n + 1) * sizeof *l);
                if (!l)
                        return cli_failf(-ENOMEM, "out of memory");
                list = l;
                snprintf(list[n].url, sizeof list[n].url, "%s", url);
                list[n++].insecure = !strcmp(flag, "insecure");
        }
        *ret = steal_pointer(&list);
        *ret_n = n;
        return 0;
}

static int list_write(struct cli *c, const struct server *list, size_t n)
{
        _cleanup_free_ char *path = list_path(c);
        _cleanup_free_ char *tmp = path ? strjoin(path, ".tmp", NULL) : NULL;
        _cleanup_free_ char *dir = path ? strndup(path, strrchr(path, '/') - path) : NULL;
        struct hutch_error err = HUTCH_ERROR_INIT;
        if (!tmp || !dir)
                return cli_failf(-ENOENT, "HOME is not set: no list of keyservers");
        int r = mkdir_p_at(AT_FDCWD, dir, 0700);
        _cleanup_close_ int fd =
                r < 0 ? -EBADF : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (r >= 0 && fd < 0)
                r = -errno;
        for (size_t i = 0; i < n && r >= 0; i++)
                if (dprintf(fd, "%s%s\n", list[i].url, list[i].insecure ? " insecure" : "") < 0)
                        r = -EIO;
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                if (fd >= 0)
                        unlink(tmp);
                hutch_err_sys(&err, r, "cannot write '%s'", path);
                return cli_fail(&err);
        }
        return 0;
}

static bool is_plain_http(const char *url)
{
        return startswith(url, "http://") || startswith(url, "hkp://");
}

/* --url, else the first keyserver of the list → the http(s) base (*ret); the exit code */
static int server_pick(struct cli *c, const char *verb, const char *url, char **ret)
{
        _cleanup_free_ struct server *list = NULL;
        struct hutch_error err = HUTCH_ERROR_INIT;
        size_t n = 0;
        if (!url) {
                int r = list_read(c, &list, &n);
                if (r)
                        return r;
                if (n == 0)
                        return cli_failf(-ENOTSUP,
                                         "key %s: no network keyserver configured (add one with 'hutch keyserver add "
                                         "URL', or give --url URL)",
                                         verb);
                if (is_plain_http(list[0].url) && !list[0].insecure)
                        return cli_failf(-EPERM,
                                         "keyserver '%s' is plain HTTP: add it with 'hutch keyserver add --insecure'",
                                         list[0].url);
                url = list[0].url;
        }
        if (sign_hkp_base(url, ret, &err) < 0)
                return cli_fail(&err);
        return 0;
}

static int safe_close(int fd)
{
        if (fd >= 0)
                close(fd);
        return -EBADF;
}

static int parse_long_status(const char *s, long *ret)
{
        uint64_t v;
        char buf[8];
        size_t n = strcspn(s, "\n");
        if (n == 0 || n >= sizeof buf)
                return -EINVAL;
        memcpy(buf, s, n);
        buf[n] = 0;
        if (parse_u64_range(buf, 100, 599, &v) < 0)
                return -EINVAL;
        *ret = (long) v;
        return 0;
}

/* ---- one request through hutch-registry: the status and the body (at most max bytes) */
struct reply {
        long status;
        char *body; /* after the status line */
        size_t len;
        char *raw;
};

static void reply_free(struct reply *r)
{
        free(r->raw);
        *r = (struct reply){0};
}

static int fetch(struct cli *c, const char *url, const char *ctype, const char *body, size_t body_len, size_t max,
                 struct reply *ret)
{
        char prog[PATH_MAX], maxs[32];
        _cleanup_close_ int in_r = -EBADF, in_w = -EBADF, out_r = -EBADF, out_w = -EBADF;
        int p[2];
        if (!libexec_program("hutch-registry", prog, sizeof prog))
                return cli_failf(-ENOENT, "keyservers need hutch-registry, which is not installed beside hutch");
        if (pipe2(p, O_CLOEXEC) < 0)
                return cli_failf(-errno, "cannot make a pipe: %s", strerror(errno));
        out_r = p[0], out_w = p[1];
        if (pipe2(p, O_CLOEXEC) < 0)
                return cli_failf(-errno, "cannot make a pipe: %s", strerror(errno));
        in_r = p[0], in_w = p[1];
        snprintf(maxs, sizeof maxs, "%zu", max);
        char *argv[] = {"hutch-registry", "http-fetch", "--max", maxs, ctype ? "--post" : (char *) url,
                        (char *) ctype,   (char *) url, NULL};
        if (!ctype)
                argv[5] = NULL;
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, in_r, STDIN_FILENO);
        posix_spawn_file_actions_adddup2(&fa, out_w, STDOUT_FILENO);
        pid_t pid;
        int r = posix_spawn(&pid, prog, &fa, NULL, argv, c->environ);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0)
                return cli_failf(-r, "cannot run %s: %s", prog, strerror(r));
        in_r = safe_close(in_r);
        out_w = safe_close(out_w);
        /* the child reads its whole body before it answers: no deadlock; one that died
         * early is not a SIGPIPE here */
        signal(SIGPIPE, SIG_IGN);
        if (body)
                (void) write_full(in_w, body, body_len);
        in_w = safe_close(in_w);
        char *raw = NULL;
        size_t len = 0;
        int k = read_fd_full(out_r, max + 32, &raw, &len);
        out_r = safe_close(out_r);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (k == -EFBIG)
                return cli_failf(k, "the reply of %s is larger than %zu bytes", url, max);
        if (k < 0)
                return cli_failf(k, "cannot read the keyserver's reply: %s", strerror(-k));
        _cleanup_free_ char *owned = raw;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return EXIT_HUTCH_FAILURE; /* hutch-registry said why in its one line */
        char *nl = memchr(raw, '\n', len);
        if (!nl || parse_long_status(raw, &ret->status) < 0)
                return cli_failf(-EIO, "hutch-registry gave no HTTP status for %s", url);
        ret->body = nl + 1;
        ret->len = len - (size_t) (nl + 1 - raw);
        ret->raw = steal_pointer(&owned);
        return 0;
}

/* ---- key search QUERY */
static void print_keys(const struct sign_hkp_key *keys, size_t n)
{
        printf("Showing %zu result%s\n\n", n, n == 1 ? "" : "s");
        printf("%-41s %-9s %-5s %-24s %-10s %s\n", "FINGERPRINT", "ALGORITHM", "BITS", "CREATION DATE", "STATUS",
               "NAME/EMAIL");
        for (size_t i = 0; i < n; i++) {
                const struct sign_hkp_key *k = &keys[i];
                char when[64] = "", bits[16] = "";
                time_t t = k->created;
                struct tm tm;
                if (k->created && gmtime_r(&t, &tm))
                        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
                if (k->bits)
                        snprintf(bits, sizeof bits, "%u", k->bits);
                printf("%-41s %-9s %-5s %-24s %-10s %s\n", k->fingerprint, k->alg[0] ? k->alg : "-",
                       bits[0] ? bits : "-", when[0] ? when : "-",
                       k->revoked   ? "[revoked]"
                       : k->expired ? "[expired]"
                                    : "[enabled]",
                       k->n_uids ? k->uids[0] : "");
                for (size_t u = 1; u < k->n_uids; u++)
                        printf("%-94s %s\n", "", k->uids[u]);
        }
}

static int key_search(struct cli *c, const char *base, const char *query)
{
        _cleanup_free_ char *q = sign_hkp_escape(query), *url = NULL;
        _cleanup_free_ struct sign_hkp_key *keys = NULL;
        struct reply rep = {0};
        struct hutch_error err = HUTCH_ERROR_INIT;
        size_t n = 0;
        if (!q || asprintf(&url, "%s/pks/lookup?op=index&options=mr&search=%s", base, q) < 0)
                return cli_failf(-ENOMEM, "out of memory");
        int r = fetch(c, url, NULL, NULL, 0, INDEX_REPLY_MAX, &rep);
        if (r)
                return r;
        if (rep.status == 404)
                r = cli_failf(-ENOENT, "no keys match '%s' on keyserver %s", query, base);
        else if (rep.status != 200)
                r = cli_failf(-EIO, "keyserver %s answered the search with HTTP %ld", base, rep.status);
        else if (sign_hkp_index_parse(rep.body, rep.len, &keys, &n, &err) < 0) {
                hutch_err_wrap(&err, "keyserver %s", base);
                r = cli_fail(&err);
        } else if (n == 0)
                r = cli_failf(-ENOENT, "no keys match '%s' on keyserver %s", query, base);
        else
                print_keys(keys, n);
        reply_free(&rep);
        return r;
}

/* ---- key pull FINGERPRINT: into the public keyring, only the key asked for */
static bool is_the_key(const char *want, const char *fp)
{
        size_t w = strlen(want), f = strlen(fp);
        return w <= f && !strcasecmp(fp + f - w, want);
}

static int check_reply_key(const char *want, const struct reply *rep, const char *base)
{
        _cleanup_(sign_keyring_close) struct sign_keyring scratch = SIGN_KEYRING_NULL;
        _cleanup_free_ struct sign_key_info *keys = NULL;
        struct hutch_error err = HUTCH_ERROR_INIT;
        size_t n = 0, imported = 0;
        if (sign_keyring_open(&scratch, NULL, NULL, false, &err) < 0)
                return cli_fail(&err);
        if (sign_keyring_import(&scratch, rep->body, rep->len, &imported, NULL, &err) < 0) {
                hutch_err_wrap(&err, "keyserver %s sent no usable key for %s", base, want);
                return cli_fail(&err);
        }
        if (sign_keyring_list(&scratch, false, &keys, &n, &err) < 0)
                return cli_fail(&err);
        if (n != 1 || !is_the_key(want, keys[0].fingerprint))
                return cli_failf(-EBADMSG, "keyserver %s sent %s%s instead of the key %s: nothing imported", base,
                                 n == 1 ? "the key " : "several keys", n == 1 ? keys[0].fingerprint : "", want);
        return 0;
}

static int key_pull(struct cli *c, const char *base, const char *which, const char *keys_dir)
{
        _cleanup_(sign_keyring_close) struct sign_keyring kr = SIGN_KEYRING_NULL;
        _cleanup_free_ char *url = NULL;
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct reply rep = {0};
        char want[41];
        size_t n = 0;
        if (!sign_hkp_keyid_valid(which, want, sizeof want))
                return cli_usage_error("key",
                                       "key pull needs a fingerprint (40 hex digits) or a long key id (16), "
                                       "not '%s'",
                                       which);
        if (asprintf(&url, "%s/pks/lookup?op=get&options=mr&search=0x%s", base, want) < 0)
                return cli_failf(-ENOMEM, "out of memory");
        int r = fetch(c, url, NULL, NULL, 0, KEY_REPLY_MAX, &rep);
        if (r)
                return r;
        if (rep.status == 404)
                r = cli_failf(-ENOENT, "keyserver %s has no key %s", base, want);
        else if (rep.status != 200)
                r = cli_failf(-EIO, "keyserver %s answered the pull of %s with HTTP %ld", base, want, rep.status);
        else
                r = check_reply_key(want, &rep, base);
        if (r == 0 &&
            (sign_keyring_open(&kr, keys_dir, NULL, false, &err) < 0 ||
             sign_keyring_import(&kr, rep.body, rep.len, &n, NULL, &err) < 0 || sign_keyring_save(&kr, &err) < 0))
                r = cli_fail(&err);
        reply_free(&rep);
        if (r == 0)
                printf("%zu key(s) added to keyring of %s/pgp-public: %s\n", n, keys_dir, want);
        return r;
}

/* ---- key push FINGERPRINT */
static int key_push(struct cli *c, const char *base, const char *which, const char *const *read_dirs)
{
        _cleanup_(sign_keyring_close) struct sign_keyring kr = SIGN_KEYRING_NULL;
        _cleanup_free_ char *armored = NULL, *escaped = NULL, *form = NULL, *url = NULL;
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct reply rep = {0};
        size_t len = 0;
        if (sign_keyring_open(&kr, NULL, read_dirs, false, &err) < 0 ||
            sign_keyring_export(&kr, which, false, true, &armored, &len, &err) < 0)
                return cli_fail(&err);
        escaped = sign_hkp_escape(armored);
        form = escaped ? strjoin("keytext=", escaped, NULL) : NULL;
        if (!form || asprintf(&url, "%s/pks/add", base) < 0)
                return cli_failf(-ENOMEM, "out of memory");
        int r = fetch(c, url, "application/x-www-form-urlencoded", form, strlen(form), INDEX_REPLY_MAX, &rep);
        if (r)
                return r;
        if (rep.status != 200)
                r = cli_failf(-EIO, "keyserver %s refused the key %s: HTTP %ld", base, which, rep.status);
        else
                printf("Public key %s pushed to %s\n", which, base);
        reply_free(&rep);
        return r;
}

int keyserver_key_verb(struct cli *c, const char *sub, const char *url, const char *keys_dir,
                       const char *const *read_dirs, int nargs, char **args)
{
        _cleanup_free_ char *base = NULL;
        if (nargs != 1)
                return cli_args_error("key", "key %s takes one %s", sub,
                                      strcmp(sub, "search") ? "FINGERPRINT" : "QUERY");
        int r = server_pick(c, sub, url, &base);
        if (r)
                return r;
        if (!strcmp(sub, "search"))
                return key_search(c, base, args[0]);
        if (!strcmp(sub, "pull"))
                return key_pull(c, base, args[0], keys_dir);
        return key_push(c, base, args[0], read_dirs);
}

/* ---- hutch keyserver add [--insecure] URL | remove URL | list */
static int keyserver_list(struct cli *c)
{
        _cleanup_free_ struct server *list = NULL;
        _cleanup_free_ char *path = list_path(c);
        size_t n = 0;
        int r = list_read(c, &list, &n);
        if (r)
                return r;
        printf("Keyservers (%s; the first is used):\n\n%-50s %-8s %s\n", path, "URL", "INSECURE", "ORDER");
        for (size_t i = 0; i < n; i++)
                printf("%-50s %-8s %zu%s\n", list[i].url, list[i].insecure ? "YES" : "NO", i + 1, i ? "" : "*");
        return 0;
}

static int keyserver_add(struct cli *c, const char *url, bool insecure)
{
        _cleanup_free_ struct server *list = NULL;
        _cleanup_free_ char *base = NULL;
        struct hutch_error err = HUTCH_ERROR_INIT;
        size_t n = 0;
        if (sign_hkp_base(url, &base, &err) < 0)
                return cli_fail(&err);
        if (strlen(url) >= sizeof list->url)
                return cli_failf(-ENAMETOOLONG, "keyserver URL '%.60s...' is too long", url);
        if (is_plain_http(url) && !insecure)
                return cli_failf(-EPERM, "keyserver '%s' is plain HTTP: add it with --insecure to use it all the same",
                                 url);
        int r = list_read(c, &list, &n);
        if (r)
                return r;
        for (size_t i = 0; i < n; i++)
                if (!strcmp(list[i].url, url))
                        return cli_failf(-EEXIST, "keyserver '%s' is already in the list", url);
        struct server *l = realloc(list, (n + 1) * sizeof *l);
        if (!l)
                return cli_failf(-ENOMEM, "out of memory");
        list = l;
        snprintf(list[n].url, sizeof list[n].url, "%s", url);
        list[n++].insecure = insecure;
        r = list_write(c, list, n);
        if (r == 0)
                printf("Keyserver %s added%s\n", url, n == 1 ? " (the one used)" : "");
        return r;
}

static int keyserver_remove(struct cli *c, const char *url)
{
        _cleanup_free_ struct server *list = NULL;
        size_t n = 0, k = 0;
        int r = list_read(c, &list, &n);
        if (r)
                return r;
        for (size_t i = 0; i < n; i++)
                if (strcmp(list[i].url, url) != 0)
                        list[k++] = list[i];
        if (k == n)
                return cli_failf(-ENOENT, "keyserver '%s' is not in the list (see 'hutch keyserver list')", url);
        r = list_write(c, list, k);
        if (r == 0)
                printf("Keyserver %s removed\n", url);
        return r;
}

int verb_keyserver(struct cli *c, int argc, char **argv)
{
        const char *sub = argc > 1 ? argv[1] : NULL, *url = NULL;
        bool insecure = false;
        if (!sub || !strcmp(sub, "-h") || !strcmp(sub, "--help")) {
                cli_help_print("keyserver");
                return sub ? 0 : EXIT_USAGE;
        }
        for (int i = 2; i < argc; i++) {
                if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                        cli_help_print("keyserver");
                        return 0;
                }
                if (!strcmp(argv[i], "--insecure"))
                        insecure = true;
                else if (argv[i][0] == '-')
                        return cli_args_error("keyserver", "unknown option '%s'", argv[i]);
                else if (url)
                        return cli_args_error("keyserver", "keyserver %s takes one URL", sub);
                else
                        url = argv[i];
        }
        if (!strcmp(sub, "list") && !url && !insecure)
                return keyserver_list(c);
        if (!strcmp(sub, "add") && url)
                return keyserver_add(c, url, insecure);
        if (!strcmp(sub, "remove") && url && !insecure)
                return keyserver_remove(c, url);
        if (!strcmp(sub, "list") || !strcmp(sub, "add") || !strcmp(sub, "remove"))
                return cli_args_error("keyserver", "usage: hutch keyserver add [--insecure] URL | remove URL | list");
        return cli_args_error("keyserver", "unknown keyserver command '%s' (add, remove, list)", sub);
}
