/* hutch-sign: the verbs that need librnp and libcrypto (key, sign, verify), a program of
 * its own so the lean hutch never loads them; hutch execs it with its argv. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "exit.h"
#include "keyserver.h"
#include "image/image.h"
#include "sign/sign.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/util.h"

extern char **environ;

struct sign_cli {
        struct cli c;
        char hutch_dir[4096], apptainer_dir[4096];
        const char *passphrase_file;
        const char *password; /* key newpair -P/--password (Apptainer's): the new key's passphrase */
};

static int fail(const struct hutch_error *err)
{
        return cli_fail(err);
}

static int key_dirs(struct sign_cli *s)
{
        const char *home = cli_getenv(&s->c, "HOME");
        const char *d = cli_getenv(&s->c, "HUTCH_KEYSDIR");
        if (!home || !*home)
                return cli_failf(-ENOENT, "HOME is not set: no keyring folder");
        if (d && *d)
                snprintf(s->hutch_dir, sizeof s->hutch_dir, "%s", d);
        else
                snprintf(s->hutch_dir, sizeof s->hutch_dir, "%s/.hutch/keys", home);
        d = cli_getenv(&s->c, "APPTAINER_KEYSDIR");
        if (d && *d)
                snprintf(s->apptainer_dir, sizeof s->apptainer_dir, "%s", d);
        else
                snprintf(s->apptainer_dir, sizeof s->apptainer_dir, "%s/.apptainer/keys", home);
        return 0;
}

/* hutch's keyring, and Apptainer's read too unless writing */
static int keyring_open(struct sign_cli *s, struct sign_keyring *kr, bool write, bool secret)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        const char *extra[] = {s->apptainer_dir, NULL};
        int r = sign_keyring_open(kr, s->hutch_dir, write ? NULL : extra, secret, &err);
        return r < 0 ? fail(&err) : 0;
}

/* The passphrase: HUTCH_SIGN_PASSPHRASE, --passphrase-file (its first line), or asked on
 * the terminal with echo off (twice when confirm). NULL after an error was printed. */
static char *passphrase_get(struct sign_cli *s, const char *prompt, bool confirm)
{
        const char *env = cli_getenv(&s->c, "HUTCH_SIGN_PASSPHRASE");
        char buf[1024], again[1024];
        if (s->password)
                return strdup(s->password);
        if (env)
                return strdup(env);
        if (s->passphrase_file) {
                _cleanup_free_ char *data = NULL;
                size_t len = 0;
                int r = read_regular_at(AT_FDCWD, s->passphrase_file, 64 * 1024, &data, &len);
                if (r < 0) {
                        struct hutch_error err = HUTCH_ERROR_INIT;
                        hutch_err_sys(&err, r, "cannot read passphrase file '%s'", s->passphrase_file);
                        fail(&err);
                        return NULL;
                }
                data[strcspn(data, "\r\n")] = 0;
                return strdup(data);
        }
        _cleanup_close_ int tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
        struct termios old, quiet;
        if (tty < 0 || tcgetattr(tty, &old) < 0) {
                cli_failf(-ENOTTY,
                          "no passphrase: set HUTCH_SIGN_PASSPHRASE, give --passphrase-file, or run on a terminal");
                return NULL;
        }
        for (int round = 0; round < (confirm ? 2 : 1); round++) {
                char *dst = round ? again : buf;
                quiet = old;
                quiet.c_lflag &= ~(tcflag_t) (ECHO | ECHONL);
                dprintf(tty, "%s", round ? "Retype passphrase: " : prompt);
                (void) tcsetattr(tty, TCSAFLUSH, &quiet);
                ssize_t n = read(tty, dst, sizeof buf - 1);
                (void) tcsetattr(tty, TCSAFLUSH, &old);
                dprintf(tty, "\n");
                dst[n > 0 ? n : 0] = 0;
                dst[strcspn(dst, "\r\n")] = 0;
        }
        if (confirm && strcmp(buf, again) != 0) {
                cli_failf(-EINVAL, "passphrases do not match");
                return NULL;
        }
        char *p = strdup(buf);
        explicit_bzero(buf, sizeof buf);
        explicit_bzero(again, sizeof again);
        return p;
}

static void free_secret(char **p)
{
        if (*p) {
                explicit_bzero(*p, strlen(*p));
                free(*p);
        }
}

static int parse_id(const char *verb, const char *opt, const char *v, uint32_t *ret)
{
        uint64_t x;
        if (parse_u64_range(v, 1, UINT32_MAX & ~0xf0000000u, &x) < 0)
                return cli_usage_error(verb, "%s needs a positive number, not '%s'", opt, v);
        *ret = (uint32_t) x;
        return 0;
}

/* ---- verify */
/* hutch's own report (verify-report, read by the build's 'Fingerprints:' check) */
static void json_str(const char *s)
{
        putchar('"');
        for (; *s; s++) {
                if (*s == '"' || *s == '\\')
                        printf("\\%c", *s);
                else if ((unsigned char) *s < 0x20)
                        printf("\\u%04x", *s);
                else
                        putchar(*s);
        }
        putchar('"');
}

static void report_print_json(const char *path, const struct sign_verify_report *rep, const struct hutch_error *err)
{
        printf("{\"image\":");
        json_str(path);
        printf(",\"verified\":%s,\"signatures\":[", err->code ? "false" : "true");
        for (size_t i = 0; i < rep->n_sigs; i++) {
                const struct sign_sig_result *s = &rep->sigs[i];
                printf("%s{\"id\":%u,\"%s\":%u,\"fingerprint\":", i ? "," : "", s->sig_id,
                       s->is_group ? "group" : "object", s->target);
                json_str(s->fingerprint);
                printf(",\"entity\":");
                json_str(s->entity);
                printf(",\"local\":%s,\"objects\":[", s->key_known ? "true" : "false");
                for (size_t k = 0; k < s->n_verified; k++)
                        printf("%s%u", k ? "," : "", s->verified[k]);
                printf("],\"error\":");
                if (s->err.code)
                        json_str(s->err.msg);
                else
                        printf("null");
                printf("}");
        }
        printf("],\"error\":");
        if (err->code)
                json_str(err->msg);
        else
                printf("null");
        printf("}\n");
}

/* A string as Go's encoding/json writes it (Apptainer's --json): <, >, &, U+2028 and
 * U+2029 as \u escapes, invalid UTF-8 as U+FFFD, control bytes escaped. */
static void go_json_str(const char *str)
{
        const unsigned char *p = (const unsigned char *) str;
        putchar('"');
        while (*p) {
                size_t n = 1;
                if (*p == '"' || *p == '\\')
                        printf("\\%c", *p);
                else if (*p == '\n' || *p == '\r' || *p == '\t')
                        printf("\\%c", *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't');
                else if (*p < 0x20 || *p == '<' || *p == '>' || *p == '&')
                        printf("\\u%04x", *p);
                else if (*p < 0x80)
                        putchar(*p);
                else if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
                        printf("\\u%04x", p[2] == 0xa8 ? 0x2028 : 0x2029);
                        n = 3;
                } else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) /* C1 controls: valid, kept */
                        fwrite(p, 1, n = 2, stdout);
                else if ((n = utf8_printable_len(p)) > 0)
                        fwrite(p, 1, n, stdout);
                else {
                        printf("\\ufffd");
                        n = 1;
                }
                p += n;
        }
        putchar('"');
}

/* One "SignerKeys" entry of Apptainer's --json: the object's data type, the signer (its
 * primary user id, "unknown" without a key) and what was checked. */
static void json_signer(bool first, const struct sif *sif, const struct sign_sig_result *s, uint32_t id, bool data_ok)
{
        const struct sif_descriptor *d = sif ? sif_descriptor_find(sif, id) : NULL;
        const char *known = s->key_known ? "true" : "false";
        char fp[sizeof s->fingerprint] = "";
        for (size_t i = 0; s->key_known && s->fingerprint[i]; i++) /* Go's hex.EncodeToString: lower case */
                fp[i] = (char) tolower((unsigned char) s->fingerprint[i]), fp[i + 1] = 0;
        printf("%s\n    {\n      \"Signer\": {\n        \"Partition\": ", first ? "[" : ",");
        go_json_str(d ? sif_datatype_name(d->datatype) : "Unknown");
        printf(",\n        \"Name\": ");
        go_json_str(s->key_known && s->entity[0] ? s->entity : "unknown");
        printf(",\n        \"Fingerprint\": ");
        go_json_str(fp);
        printf(",\n        \"KeyLocal\": %s,\n        \"KeyCheck\": %s,\n        \"DataCheck\": %s\n      }\n    }",
               known, known, data_ok ? "true" : "false");
}

/* Apptainer's 'verify --json' (cmd/internal/cli/pgp.go's keyList, written by Go's encoder
 * with a two-space indent): the signatures checked, and an entry per object verified by
 * each, plus one with "DataCheck": false for an object whose data changed. */
static void verify_print_json(const struct sif *sif, const struct sign_verify_report *rep)
{
        bool first = true;
        printf("{\n  \"Signatures\": %zu,\n  \"SignerKeys\": ", rep->n_sigs);
        for (size_t i = 0; i < rep->n_sigs; i++) {
                const struct sign_sig_result *s = &rep->sigs[i];
                for (size_t k = 0; k < s->n_verified; k++, first = false)
                        json_signer(first, sif, s, s->verified[k], true);
                if (s->data_failed) {
                        json_signer(first, sif, s, s->data_failed, false);
                        first = false;
                }
        }
        printf("%s", first ? "null\n}\n" : "\n  ]\n}\n");
}

static void verify_print(const struct sif *sif, const struct sign_verify_report *rep)
{
        for (size_t i = 0; i < rep->n_sigs; i++) {
                const struct sign_sig_result *s = &rep->sigs[i];
                const char *tag = s->key_known ? "[LOCAL]  " : "[UNKNOWN]";
                if (s->entity[0])
                        printf("%s Signing entity: %s\n", tag, s->entity);
                printf("%s Fingerprint: %s\n", tag, s->fingerprint);
                if (s->err.code)
                        continue;
                printf("Objects verified:\nID  |GROUP   |LINK    "
                       "|TYPE\n------------------------------------------------\n");
                for (size_t k = 0; k < s->n_verified; k++) {
                        const struct sif_descriptor *d = sif_descriptor_find(sif, s->verified[k]);
                        char link[16] = "NONE";
                        if (!d)
                                continue;
                        if (d->linkid)
                                snprintf(link, sizeof link, "%u%s", d->linkid & ~SIF_GROUP_MASK,
                                         d->linkid & SIF_GROUP_MASK ? " (G)" : "");
                        printf("%-4u|%-8u|%-8s|%s\n", d->id, d->groupid & ~SIF_GROUP_MASK, link,
                               sif_datatype_name(d->datatype));
                }
        }
}

/* The descriptors of the image verified, for the data types printed (NULL: none) */
static bool sif_reload(const char *path, struct sif *sif)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        struct stat st;
        return fd >= 0 && fstat(fd, &st) == 0 &&
               sif_load(fd, (uint64_t) st.st_size, sif, &(struct hutch_error) HUTCH_ERROR_INIT) == 0;
}

enum verify_output { VERIFY_TEXT, VERIFY_JSON, VERIFY_REPORT };

/* Apptainer's failure line, "Failed to verify container: " and, past opening the image, the
 * reference pkg/integrity's "integrity: <error>" (cmd/internal/cli/verify.go) */
static int verify_fail(const struct sign_verify_report *rep, const struct hutch_error *err)
{
        if (rep->reference[0])
                return cli_failf(err->code, "Failed to verify container: integrity: %s", rep->reference);
        return cli_failf(err->code, "Failed to verify container: %s", err->msg);
}

static int verb_verify(struct sign_cli *s, int argc, char **argv, enum verify_output out)
{
        static const struct option opts[] = {
                {"all", no_argument, NULL, 'a'},
                {"sif-id", required_argument, NULL, 'i'},
                {"group-id", required_argument, NULL, 'g'},
                {"legacy-insecure", no_argument, NULL, 'I'}, /* no short form, as Apptainer's */
                {"json", no_argument, NULL, 'j'},
                {"local", no_argument, NULL, 'l'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        struct sign_verify_opts o = {0};
        int ch;
        while ((ch = getopt_long(argc, argv, "+ai:g:jlh", opts, NULL)) != -1)
                switch (ch) {
                case 'a': o.all = true; break;
                case 'i':
                        if (parse_id("verify", "--sif-id", optarg, &o.sif_id))
                                return EXIT_USAGE;
                        break;
                case 'g':
                        if (parse_id("verify", "--group-id", optarg, &o.group_id))
                                return EXIT_USAGE;
                        break;
                case 'I': o.legacy = true; break;
                case 'j':
                        if (out == VERIFY_TEXT)
                                out = VERIFY_JSON;
                        break;
                case 'l': break; /* -l, --local: the keyring is always local here */
                case 'h': cli_help_print("verify"); return 0;
                default: return cli_args_error("verify", "bad option");
                }
        if (optind != argc - 1)
                return cli_args_error("verify", "verify needs one IMAGE");
        if (o.sif_id && o.group_id)
                return cli_usage_error("verify", "--sif-id and --group-id exclude each other");
        const char *path = argv[optind];
        _cleanup_(sign_keyring_close) struct sign_keyring kr = SIGN_KEYRING_NULL;
        struct sign_verify_report rep = {0};
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct sif sif = {0};
        int r = keyring_open(s, &kr, false, false);
        if (r)
                return r;
        r = sign_image_verify(&kr, path, &o, &rep, &err);
        bool loaded = out != VERIFY_REPORT && rep.n_sigs && sif_reload(path, &sif);
        /* Apptainer's opening line; after the check, so that a failure stays one line */
        if (r >= 0 && out != VERIFY_REPORT)
                log_info("Verifying image with PGP key material");
        if (out == VERIFY_REPORT)
                report_print_json(path, &rep, &err);
        else if (out == VERIFY_JSON) /* printed on failure too, as Apptainer's */
                verify_print_json(loaded ? &sif : NULL, &rep);
        else if (loaded)
                verify_print(&sif, &rep);
        if (r >= 0 && out == VERIFY_TEXT)
                log_info("Verified signature(s) from image '%s'", path);
        if (loaded)
                sif_free(&sif);
        if (r < 0) {
                fflush(stdout);
                r = out == VERIFY_REPORT ? fail(&err) : verify_fail(&rep, &err);
        }
        sign_verify_report_free(&rep);
        return r;
}

/* ---- sign */
static int pick_secret_key(struct sign_keyring *kr, long idx, char fp[41])
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        _cleanup_free_ struct sign_key_info *keys = NULL;
        size_t n = 0;
        if (sign_keyring_list(kr, true, &keys, &n, &err) < 0)
                return fail(&err);
        if (n == 0)
                return cli_failf(-ENOKEY, "no secret key in the keyring: create one with 'hutch key newpair'");
        if (idx < 0 && n > 1)
                return cli_failf(-EINVAL, "the keyring holds several secret keys: choose one with --keyidx N (see "
                                          "'hutch key list --secret')");
        if (idx < 0)
                idx = 0;
        if ((size_t) idx >= n) {
                return cli_failf(-EINVAL, "no secret key with index %ld (see 'hutch key list --secret')", idx);
        }
        memcpy(fp, keys[idx].fingerprint, 41);
        return 0;
}

static int verb_sign(struct sign_cli *s, int argc, char **argv)
{
        static const struct option opts[] = {
                {"keyidx", required_argument, NULL, 'k'},
                {"sif-id", required_argument, NULL, 'i'},
                {"group-id", required_argument, NULL, 'g'},
                {"all", no_argument, NULL, 'a'},
                {"passphrase-file", required_argument, NULL, 'P'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        struct sign_opts o = {0};
        long idx = -1;
        uint64_t v;
        int ch;
        while ((ch = getopt_long(argc, argv, "+k:i:g:ah", opts, NULL)) != -1)
                switch (ch) {
                case 'k':
                        if (parse_u64_range(optarg, 0, 1u << 20, &v) < 0)
                                return cli_usage_error("sign", "--keyidx needs a number, not '%s'", optarg);
                        idx = (long) v;
                        break;
                case 'i':
                        if (parse_id("sign", "--sif-id", optarg, &o.sif_id))
                                return EXIT_USAGE;
                        break;
                case 'g':
                        if (parse_id("sign", "--group-id", optarg, &o.group_id))
                                return EXIT_USAGE;
                        break;
                case 'a': break; /* every group is the default */
                case 'P': s->passphrase_file = optarg; break;
                case 'h': cli_help_print("sign"); return 0;
                default: return cli_args_error("sign", "bad option");
                }
        if (optind != argc - 1)
                return cli_args_error("sign", "sign needs one IMAGE");
        if (o.sif_id && o.group_id)
                return cli_usage_error("sign", "--sif-id and --group-id exclude each other");
        const char *path = argv[optind];
        _cleanup_(sign_keyring_close) struct sign_keyring kr = SIGN_KEYRING_NULL;
        _cleanup_(free_secret) char *pass = NULL;
        struct hutch_error err = HUTCH_ERROR_INIT;
        char fp[41];
        bool prot = false;
        size_t n = 0;
        int r = keyring_open(s, &kr, false, true);
        if (r || (r = pick_secret_key(&kr, idx, fp)))
                return r;
        if (sign_key_protected(&kr, fp, &prot, &err) < 0)
                return fail(&err);
        if (prot && !(pass = passphrase_get(s, "Enter key passphrase: ", false)))
                return EXIT_HUTCH_FAILURE;
        o.fingerprint = fp;
        o.passphrase = pass;
        o.now = time(NULL);
        if (sign_image_sign(&kr, path, &o, &n, &err) < 0)
                return fail(&err); /* one line, no INFO before it */
        /* Apptainer's lines, on stderr as its INFO lines are; what was signed with what
         * on stdout */
        log_info("Signing image with PGP key material");
        log_info("Signature created and applied to image '%s'", path);
        printf("%zu object group%s signed with key %s\n", n, n == 1 ? "" : "s", fp);
        return 0;
}

/* ---- key */
static void key_print(size_t i, const struct sign_key_info *k)
{
        char when[64] = "";
        time_t t = k->created;
        struct tm tm;
        if (gmtime_r(&t, &tm))
                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S +0000 UTC", &tm);
        printf("%zu) User:              %s\n   Creation time:     %s\n   Fingerprint:       %s\n"
               "   Length (in bits):  %u\n\n",
               i, k->uid, when, k->fingerprint, k->bits);
}

static int key_list(struct sign_cli *s, bool secret)
{
        _cleanup_(sign_keyring_close) struct sign_keyring kr = SIGN_KEYRING_NULL;
        _cleanup_free_ struct sign_key_info *keys = NULL;
        struct hutch_error err = HUTCH_ERROR_INIT;
        size_t n = 0;
        int r = keyring_open(s, &kr, false, secret);
        if (r)
                return r;
        if (sign_keyring_list(&kr, secret, &keys, &n, &err) < 0)
                return fail(&err);
        printf("%s key listing (%s/pgp-%s, %s/pgp-%s):\n\n", secret ? "Private" : "Public", s->hutch_dir,
               secret ? "secret" : "public", s->apptainer_dir, secret ? "secret" : "public");
        for (size_t i = 0; i < n; i++)
                key_print(i, &keys[i]);
        return 0;
}

static int read_input(const char *path, char **ret, size_t *ret_len)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        int r = read_regular_at(AT_FDCWD, path, 16u << 20, ret, ret_len);
        if (r < 0) {
                hutch_err_sys(&err, r, "cannot read '%s'", path);
                return fail(&err);
        }
        return 0;
}

static int key_import(struct sign_cli *s, const char *path)
{
        _cleanup_(sign_keyring_close) struct sign_keyring kr = SIGN_KEYRING_NULL;
        _cleanup_free_ char *data = NULL;
        struct hutch_error err = HUTCH_ERROR_INIT;
        size_t len = 0, n = 0, changed = 0;
        int r = read_input(path, &data, &len);
        if (r || (r = keyring_open(s, &kr, true, true)))
                return r;
        if (sign_keyring_import(&kr, data, len, &n, &changed, &err) < 0) {
                hutch_err_wrap(&err, "cannot import '%s'", path);
                return fail(&err);
        }
        if (changed == 0) /* Apptainer's error for a key it holds already */
                return cli_failf(-EEXIST, "the key%s in '%s' already belong%s to the keyring", n == 1 ? "" : "s", path,
                                 n == 1 ? "s" : "");
        if (sign_keyring_save(&kr, &err) < 0)
                return fail(&err);
        printf("%zu key%s imported from '%s' into %s\n", n, n == 1 ? "" : "s", path, s->hutch_dir);
        return 0;
}

static int key_export(struct sign_cli *s, const char *which, const char *path, bool secret, bool armor)
{
        _cleanup_(sign_keyring_close) struct sign_keyring kr = SIGN_KEYRING_NULL;
        _cleanup_free_ char *data = NULL;
        _cleanup_free_ struct sign_key_info *keys = NULL;
        struct hutch_error err = HUTCH_ERROR_INIT;
        size_t len = 0, n = 0;
        int r = keyring_open(s, &kr, false, secret);
        if (r)
                return r;
        if (!which) {
                if (sign_keyring_list(&kr, secret, &keys, &n, &err) < 0)
                        return fail(&err);
                if (n != 1)
                        return cli_failf(
                                -EINVAL,
                                "name the key to export (a fingerprint): the keyring does not hold exactly one");
                which = keys[0].fingerprint;
        }
        if (sign_keyring_export(&kr, which, secret, armor, &data, &len, &err) < 0)
                return fail(&err);
        if (!strcmp(path, "-"))
                return write_full(STDOUT_FILENO, data, len) < 0 ? EXIT_HUTCH_FAILURE : 0;
        /* an existing file is replaced, as Apptainer's export does: by a new file renamed over
         * it, so that a secret key is never written into an old file's mode or owner, a
         * failed write leaves the old file whole, and a symlink there is replaced, not
         * followed */
        _cleanup_free_ char *tmp = NULL;
        if (asprintf(&tmp, "%s.hutch-tmp-%d", path, (int) getpid()) < 0)
                return cli_failf(-ENOMEM, "out of memory");
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, secret ? 0600 : 0644);
        if (fd < 0 || write_full(fd, data, len) < 0 || fsync(fd) < 0 || rename(tmp, path) < 0) {
                hutch_err_sys(&err, -errno, "cannot write '%s'", path);
                if (fd >= 0)
                        unlink(tmp);
                return fail(&err);
        }
        printf("%s key with fingerprint %s correctly exported to file: %s\n", secret ? "Private" : "Public", which,
               path);
        return 0;
}

static int key_remove(struct sign_cli *s, const char *which, bool secret)
{
        _cleanup_(sign_keyring_close) struct sign_keyring kr = SIGN_KEYRING_NULL;
        struct hutch_error err = HUTCH_ERROR_INIT;
        int r = keyring_open(s, &kr, true, true);
        if (r)
                return r;
        if (sign_keyring_remove(&kr, which, secret, &err) < 0 || sign_keyring_save(&kr, &err) < 0)
                return fail(&err);
        printf("%s key %s removed from %s\n", secret ? "Private" : "Public", which, s->hutch_dir);
        return 0;
}

/* newpair: a key pair, pushed to the keyserver when asked (--push, as Apptainer's) */
static int key_newpair(struct sign_cli *s, const char *name, const char *email, const char *comment, uint32_t bits,
                       bool push, const char *url)
{
        _cleanup_(sign_keyring_close) struct sign_keyring kr = SIGN_KEYRING_NULL;
        _cleanup_(free_secret) char *pass = NULL;
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct sign_key_info ki;
        if (!name || !*name)
                return cli_usage_error("key", "newpair needs --name (and --email)");
        int r = keyring_open(s, &kr, true, true);
        if (r)
                return r;
        if (!(pass = passphrase_get(s, "Enter a passphrase (empty: none): ", true)))
                return EXIT_HUTCH_FAILURE;
        struct sign_newpair np = {.name = name, .email = email, .comment = comment, .passphrase = pass, .bits = bits};
        if (sign_keyring_newpair(&kr, &np, &ki, &err) < 0 || sign_keyring_save(&kr, &err) < 0)
                return fail(&err);
        printf("Generated key pair %s (%s) in %s\n", ki.fingerprint, ki.uid, s->hutch_dir);
        if (!push)
                return 0;
        const char *read_dirs[] = {s->hutch_dir, NULL};
        char *fp = ki.fingerprint;
        fflush(stdout);
        return keyserver_key_verb(&s->c, "push", url, s->hutch_dir, read_dirs, 1, &fp);
}

static int verb_key(struct sign_cli *s, int argc, char **argv)
{
        static const struct option opts[] = {
                {"armor", no_argument, NULL, 'a'},
                {"secret", no_argument, NULL, 's'},
                {"name", required_argument, NULL, 'N'},
                {"email", required_argument, NULL, 'E'},
                {"comment", required_argument, NULL, 'C'},
                {"bit-length", required_argument, NULL, 'b'},
                {"passphrase-file", required_argument, NULL, 'F'},
                {"password", required_argument, NULL, 'P'},
                {"push", optional_argument, NULL, 'p'},
                {"url", required_argument, NULL, 'u'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        const char *name = NULL, *email = NULL, *comment = NULL, *url = NULL;
        bool armor = false, secret = false, push = false;
        uint64_t bits = 4096;
        int ch;
        if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
                cli_help_print("key");
                return argc < 2 ? EXIT_USAGE : 0;
        }
        const char *sub = argv[1];
        optind = 2;
        opterr = 0;
        while ((ch = getopt_long(argc, argv, "+asN:E:C:b:P:Uh", opts, NULL)) != -1)
                switch (ch) {
                case 'a': armor = true; break;
                case 's': secret = true; break;
                case 'N': name = optarg; break;
                case 'E': email = optarg; break;
                case 'C': comment = optarg; break;
                case 'b':
                        if (parse_u64_range(optarg, 1024, 16384, &bits) < 0)
                                return cli_usage_error("key", "--bit-length needs 1024 to 16384, not '%s'", optarg);
                        break;
                case 'F': s->passphrase_file = optarg; break;
                case 'P': s->password = optarg; break;
                case 'U': push = true; break;
                case 'p':
                        if (!optarg || !strcmp(optarg, "true") || !strcmp(optarg, "1") || !strcmp(optarg, "yes"))
                                push = true;
                        else if (!strcmp(optarg, "false") || !strcmp(optarg, "0") || !strcmp(optarg, "no"))
                                push = false;
                        else
                                return cli_usage_error("key", "--push takes true or false, not '%s'", optarg);
                        break;
                case 'u': url = optarg; break;
                case 'h': cli_help_print("key"); return 0;
                default:
                        if (optopt)
                                return cli_args_error("key", "option '-%c' is unknown or misses its value", optopt);
                        return cli_args_error("key", "unknown option '%s'", argv[optind - 1]);
                }
        int nargs = argc - optind;
        char **a = argv + optind;
        bool keyserver = !strcmp(sub, "search") || !strcmp(sub, "push") || !strcmp(sub, "pull");
        if (url && !keyserver && strcmp(sub, "newpair") != 0)
                return cli_usage_error("key", "--url is for key search, pull, push and newpair --push");
        if (push && strcmp(sub, "newpair") != 0)
                return cli_usage_error("key", "--push is for key newpair");
        if (!strcmp(sub, "list") && nargs == 0)
                return key_list(s, secret);
        if (!strcmp(sub, "newpair") && nargs == 0)
                return key_newpair(s, name, email, comment, (uint32_t) bits, push, url);
        if (!strcmp(sub, "import") && nargs == 1)
                return key_import(s, a[0]);
        if (!strcmp(sub, "export") && (nargs == 1 || nargs == 2))
                return key_export(s, nargs == 2 ? a[0] : NULL, a[nargs - 1], secret, armor);
        if (!strcmp(sub, "remove") && nargs == 1)
                return key_remove(s, a[0], secret);
        if (keyserver) {
                const char *read_dirs[] = {s->hutch_dir, s->apptainer_dir, NULL};
                return keyserver_key_verb(&s->c, sub, url, s->hutch_dir, read_dirs, nargs, a);
        }
        if (!strcmp(sub, "list") || !strcmp(sub, "newpair") || !strcmp(sub, "import") || !strcmp(sub, "export") ||
            !strcmp(sub, "remove"))
                return cli_args_error("key", "wrong number of arguments for 'key %s'", sub);
        return cli_args_error("key", "unknown key command '%s'", sub);
}

/* ---- policy-check IMAGE: spawned by hutch before it starts an image the site's policy
 * governs; exit 0 lets it start, otherwise one error line */
/* the site's keys: the folder "keys" beside the system hutch.conf */
static void conf_keys_dir(char *buf, size_t len)
{
        snprintf(buf, len, "%s", cli_system_conf_path());
        char *slash = strrchr(buf, '/');
        if (slash)
                snprintf(slash, len - (size_t) (slash - buf), "/keys");
        else
                snprintf(buf, len, "keys");
}

static void trust_cache_put(struct sign_cli *s, const struct stat *st, char *const *fps)
{
        char name[TRUST_CACHE_NAME_MAX];
        _cleanup_close_ int dirfd = trust_cache_open(geteuid(), cli_getenv(&s->c, "XDG_RUNTIME_DIR"), true);
        if (dirfd < 0)
                return;
        trust_cache_name(st, trust_policy_hash(fps), name, sizeof name);
        int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0)
                close(fd);
}

static int verb_policy_check(struct sign_cli *s, int argc, char **argv)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        _cleanup_strv_ char **fps = NULL;
        _cleanup_(sign_keyring_close) struct sign_keyring kr = SIGN_KEYRING_NULL;
        struct sign_verify_report rep = {0};
        char real[PATH_MAX], sys_keys[PATH_MAX];
        struct stat before, after;

        if (argc != 2)
                return cli_usage_error(NULL, "policy-check is run by hutch itself");
        int r = cli_load_conf(&s->c);
        if (r)
                return r;
        if (!realpath(argv[1], real))
                return cli_failf(-errno, "the site's image policy cannot check '%s': %s", argv[1], strerror(errno));
        if (trust_policy_for(s->c.conf.trusted_keys, real, &fps, &err) < 0)
                return fail(&err);
        if (!fps)
                return 0;
        conf_keys_dir(sys_keys, sizeof sys_keys);
        const char *dirs[] = {sys_keys, s->hutch_dir, s->apptainer_dir, NULL};
        if (stat(real, &before) < 0)
                return cli_failf(-errno, "cannot stat '%s': %s", real, strerror(errno));
        if (sign_keyring_open(&kr, NULL, dirs, false, &err) < 0)
                return fail(&err);
        struct sign_verify_opts o = {.trusted = fps};
        r = sign_image_verify(&kr, real, &o, &rep, &err);
        sign_verify_report_free(&rep);
        if (r < 0)
                return cli_failf(r, "'%s' is refused by the site's image policy (hutch.conf 'trusted key'): %s",
                                 argv[1], err.msg);
        /* cached only when the file did not change meanwhile */
        if (stat(real, &after) == 0 && after.st_ino == before.st_ino && after.st_dev == before.st_dev &&
            after.st_size == before.st_size && after.st_mtim.tv_nsec == before.st_mtim.tv_nsec &&
            after.st_mtim.tv_sec == before.st_mtim.tv_sec && after.st_ctim.tv_sec == before.st_ctim.tv_sec &&
            after.st_ctim.tv_nsec == before.st_ctim.tv_nsec)
                trust_cache_put(s, &before, fps);
        return 0;
}

int main(int argc, char **argv)
{
        struct sign_cli s = {.c.environ = environ};
        int i = 1;

        log_set_level(LOG_LEVEL_INFO);
        for (; i < argc && argv[i][0] == '-' && cli_log_flag(argv[i]); i++)
                ;
        if (i >= argc)
                return cli_usage_error(NULL, "hutch-sign is run by hutch: 'hutch key|sign|verify ...'");
        const char *verb = argv[i];
        int r = key_dirs(&s);
        if (r)
                return r;
        optind = 1;
        if (!strcmp(verb, "verify"))
                return verb_verify(&s, argc - i, argv + i, VERIFY_TEXT);
        /* hutch's own report of every signature, which the build reads (hutch runs it) */
        if (!strcmp(verb, "verify-report"))
                return verb_verify(&s, argc - i, argv + i, VERIFY_REPORT);
        if (!strcmp(verb, "sign"))
                return verb_sign(&s, argc - i, argv + i);
        if (!strcmp(verb, "key"))
                return verb_key(&s, argc - i, argv + i);
        if (!strcmp(verb, "keyserver"))
                return verb_keyserver(&s.c, argc - i, argv + i);
        if (!strcmp(verb, "policy-check"))
                return verb_policy_check(&s, argc - i, argv + i);
        return cli_args_error(NULL, "unknown command '%s'", verb);
}
