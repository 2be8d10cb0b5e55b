/* Keyrings with librnp: DIR/pgp-public and DIR/pgp-secret in GnuPG's transferable-key
 * format (Apptainer's layout), listed, imported, exported, removed and generated. librnp's
 * own messages go to a memfd, never the terminal. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <rnp/rnp.h>
#include <rnp/rnp_err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sign-internal.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/util.h"

#define KEYRING_MAX (64u << 20)

const char *rnp_text(uint32_t r)
{
        return rnp_result_to_string(r);
}

int quiet_begin(void)
{
        if (log_get_level() >= LOG_LEVEL_DEBUG)
                return -1;
        _cleanup_close_ int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        int saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
        if (null < 0 || saved < 0 || dup2(null, STDERR_FILENO) < 0) {
                if (saved >= 0)
                        close(saved);
                return -1;
        }
        return saved;
}

void quiet_end(int saved)
{
        if (saved < 0)
                return;
        (void) dup2(saved, STDERR_FILENO);
        close(saved);
}

static void rnp_buffer_destroyp(char **p)
{
        if (*p)
                rnp_buffer_destroy(*p);
}
static void rnp_key_handle_destroyp(rnp_key_handle_t *k)
{
        if (*k)
                rnp_key_handle_destroy(*k);
}
static void rnp_input_destroyp(rnp_input_t *i)
{
        if (*i)
                rnp_input_destroy(*i);
}
static void rnp_output_destroyp(rnp_output_t *o)
{
        if (*o)
                rnp_output_destroy(*o);
}
#define _cleanup_rnp_buf_ _cleanup_(rnp_buffer_destroyp)
#define _cleanup_rnp_key_ _cleanup_(rnp_key_handle_destroyp)
#define _cleanup_rnp_in_ _cleanup_(rnp_input_destroyp)
#define _cleanup_rnp_out_ _cleanup_(rnp_output_destroyp)

static int load_file(struct sign_keyring *kr, const char *dir, const char *name, uint32_t flags,
                     struct hutch_error *err)
{
        _cleanup_free_ char *path = strjoin(dir, "/", name);
        _cleanup_free_ char *data = NULL;
        _cleanup_rnp_in_ rnp_input_t in = NULL;
        size_t len = 0;

        if (!path)
                return hutch_err(err, -ENOMEM, "out of memory");
        int r = read_regular_at(AT_FDCWD, path, KEYRING_MAX, &data, &len);
        if (r == -ENOENT || (r == 0 && len == 0))
                return 0;
        if (r < 0)
                return hutch_err_sys(err, r, "cannot read keyring '%s'", path);
        int q = quiet_begin();
        bool ok = rnp_input_from_memory(&in, (const uint8_t *) data, len, false) == RNP_SUCCESS &&
                  rnp_load_keys((rnp_ffi_t) kr->ffi, "GPG", in, flags) == RNP_SUCCESS;
        quiet_end(q);
        if (!ok)
                return hutch_err(err, -EINVAL, "keyring '%s' is not an OpenPGP keyring", path);
        return 0;
}

int sign_keyring_open(struct sign_keyring *kr, const char *dir, const char *const *extra, bool secret,
                      struct hutch_error *err)
{
        rnp_ffi_t ffi = NULL;

        if (rnp_ffi_create(&ffi, "GPG", "GPG") != RNP_SUCCESS)
                return hutch_err(err, -ENOMEM, "cannot set up librnp");
        kr->ffi = (struct rnp_ffi_st *) ffi;
        kr->log_fd = memfd_create("hutch-rnp-log", MFD_CLOEXEC);
        int lfd = kr->log_fd >= 0 ? fcntl(kr->log_fd, F_DUPFD_CLOEXEC, 3) : open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (lfd < 0 || rnp_ffi_set_log_fd(ffi, lfd) != RNP_SUCCESS) /* librnp owns lfd now */
                return hutch_err(err, -EIO, "cannot set up librnp's log");
        kr->secret = secret;
        if (dir) {
                kr->dir = strdup(dir);
                if (!kr->dir)
                        return hutch_err(err, -ENOMEM, "out of memory");
        }
        for (size_t i = 0; i == 0 || (extra && extra[i - 1]); i++) {
                const char *d = i == 0 ? dir : extra[i - 1];
                if (!d)
                        continue;
                int r = load_file(kr, d, "pgp-public", RNP_LOAD_SAVE_PUBLIC_KEYS, err);
                if (r >= 0 && secret)
                        r = load_file(kr, d, "pgp-secret", RNP_LOAD_SAVE_SECRET_KEYS, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

void sign_keyring_close(struct sign_keyring *kr)
{
        if (kr->ffi)
                rnp_ffi_destroy((rnp_ffi_t) kr->ffi);
        kr->ffi = NULL;
        if (kr->log_fd >= 0)
                close(kr->log_fd);
        kr->log_fd = -1;
        free(kr->dir);
        kr->dir = NULL;
}

static int save_one(struct sign_keyring *kr, const char *name, uint32_t flags, struct hutch_error *err)
{
        _cleanup_rnp_out_ rnp_output_t out = NULL;
        _cleanup_free_ char *path = strjoin(kr->dir, "/", name);
        _cleanup_free_ char *tmp = path ? strjoin(path, ".tmp", NULL) : NULL;
        uint8_t *buf = NULL;
        size_t len = 0;

        if (!tmp)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (rnp_output_to_memory(&out, 0) != RNP_SUCCESS ||
            rnp_save_keys((rnp_ffi_t) kr->ffi, "GPG", out, flags) != RNP_SUCCESS ||
            rnp_output_memory_get_buf(out, &buf, &len, false) != RNP_SUCCESS)
                return hutch_err(err, -EIO, "cannot write keyring '%s'", path);
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot write keyring '%s'", tmp);
        int r = write_full(fd, buf, len);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                return hutch_err_sys(err, r, "cannot write keyring '%s'", path);
        }
        return 0;
}

int sign_keyring_save(struct sign_keyring *kr, struct hutch_error *err)
{
        if (!kr->dir)
                return hutch_err(err, -EROFS, "no keyring folder to write to");
        int r = mkdir_p_at(AT_FDCWD, kr->dir, 0700);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot create keyring folder '%s'", kr->dir);
        r = save_one(kr, "pgp-public", RNP_LOAD_SAVE_PUBLIC_KEYS, err);
        if (r >= 0 && kr->secret)
                r = save_one(kr, "pgp-secret", RNP_LOAD_SAVE_SECRET_KEYS, err);
        return r;
}

static void key_info(rnp_key_handle_t key, struct sign_key_info *ki)
{
        _cleanup_rnp_buf_ char *fp = NULL, *uid = NULL, *alg = NULL;
        bool sec = false;

        memset(ki, 0, sizeof *ki);
        if (rnp_key_get_fprint(key, &fp) == RNP_SUCCESS)
                snprintf(ki->fingerprint, sizeof ki->fingerprint, "%s", fp);
        if (rnp_key_get_primary_uid(key, &uid) == RNP_SUCCESS)
                snprintf(ki->uid, sizeof ki->uid, "%s", uid);
        if (rnp_key_get_alg(key, &alg) == RNP_SUCCESS)
                snprintf(ki->alg, sizeof ki->alg, "%s", alg);
        (void) rnp_key_get_bits(key, &ki->bits);
        (void) rnp_key_get_creation(key, &ki->created);
        ki->secret = rnp_key_have_secret(key, &sec) == RNP_SUCCESS && sec;
}

int sign_keyring_list(struct sign_keyring *kr, bool secret, struct sign_key_info **ret, size_t *ret_n,
                      struct hutch_error *err)
{
        rnp_identifier_iterator_t it = NULL;
        _cleanup_free_ struct sign_key_info *list = NULL;
        size_t n = 0;
        const char *id = NULL;

        if (rnp_identifier_iterator_create((rnp_ffi_t) kr->ffi, &it, "fingerprint") != RNP_SUCCESS)
                return hutch_err(err, -EIO, "cannot list the keyring");
        while (rnp_identifier_iterator_next(it, &id) == RNP_SUCCESS && id) {
                _cleanup_rnp_key_ rnp_key_handle_t key = NULL;
                bool primary = false;
                if (rnp_locate_key((rnp_ffi_t) kr->ffi, "fingerprint", id, &key) != RNP_SUCCESS || !key ||
                    rnp_key_is_primary(key, &primary) != RNP_SUCCESS || !primary)
                        continue;
                struct sign_key_info ki;
                key_info(key, &ki);
                if (secret && !ki.secret)
                        continue;
                struct sign_key_info *l = realloc(list, (n + 1) * sizeof *l);
                if (!l) {
                        rnp_identifier_iterator_destroy(it);
                        return hutch_err(err, -ENOMEM, "out of memory");
                }
                list = l;
                list[n++] = ki;
        }
        rnp_identifier_iterator_destroy(it);
        *ret = steal_pointer(&list);
        *ret_n = n;
        return 0;
}

/* rnp_import_keys' word for what a key brought: "new" or "updated" is something */
static bool import_changed(json_object *k, const char *part)
{
        json_object *v = NULL;
        const char *s = json_object_object_get_ex(k, part, &v) ? json_object_get_string(v) : NULL;
        return s && (!strcmp(s, "new") || !strcmp(s, "updated"));
}

int sign_keyring_import(struct sign_keyring *kr, const void *data, size_t len, size_t *ret_n, size_t *ret_changed,
                        struct hutch_error *err)
{
        _cleanup_rnp_in_ rnp_input_t in = NULL;
        _cleanup_rnp_buf_ char *results = NULL;
        size_t n = 0, changed = 0;

        uint32_t flags = RNP_LOAD_SAVE_PUBLIC_KEYS | (kr->secret ? RNP_LOAD_SAVE_SECRET_KEYS : 0);
        if (rnp_input_from_memory(&in, data, len, false) != RNP_SUCCESS)
                return hutch_err(err, -ENOMEM, "out of memory");
        int q = quiet_begin();
        uint32_t r = rnp_import_keys((rnp_ffi_t) kr->ffi, in, flags, &results);
        quiet_end(q);
        if (r != RNP_SUCCESS)
                return hutch_err(err, -EINVAL, "no valid OpenPGP key in it (%s)", rnp_text(r));
        json_object *root = json_tokener_parse(results);
        json_object *keys = NULL;
        if (root && json_object_object_get_ex(root, "keys", &keys) && json_object_is_type(keys, json_type_array))
                for (size_t i = 0; i < json_object_array_length(keys); i++) {
                        json_object *fp = NULL, *k = json_object_array_get_idx(keys, i);
                        _cleanup_rnp_key_ rnp_key_handle_t key = NULL;
                        bool primary = false;
                        /* a subkey that is new counts as much as a primary key */
                        changed += import_changed(k, "public") || import_changed(k, "secret");
                        if (json_object_object_get_ex(k, "fingerprint", &fp) &&
                            rnp_locate_key((rnp_ffi_t) kr->ffi, "fingerprint", json_object_get_string(fp), &key) ==
                                    RNP_SUCCESS &&
                            key && rnp_key_is_primary(key, &primary) == RNP_SUCCESS && primary)
                                n++;
                }
        json_object_put(root);
        if (n == 0)
                return hutch_err(err, -EINVAL, "no valid OpenPGP key in it");
        *ret_n = n;
        if (ret_changed)
                *ret_changed = changed;
        return 0;
}

/* A key by fingerprint, key id, or a part of its user id (the only match) */
static int find_key(struct sign_keyring *kr, const char *which, rnp_key_handle_t *ret, struct hutch_error *err)
{
        rnp_key_handle_t key = NULL;
        if ((rnp_locate_key((rnp_ffi_t) kr->ffi, "fingerprint", which, &key) == RNP_SUCCESS && key) ||
            (rnp_locate_key((rnp_ffi_t) kr->ffi, "keyid", which, &key) == RNP_SUCCESS && key)) {
                *ret = key;
                return 0;
        }
        _cleanup_free_ struct sign_key_info *list = NULL;
        size_t n = 0, hit = 0, found = 0;
        int r = sign_keyring_list(kr, false, &list, &n, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (strcasestr(list[i].uid, which))
                        hit = i, found++;
        if (found == 0)
                return hutch_err(err, -ENOKEY, "no key '%s' in the keyring", which);
        if (found > 1)
                return hutch_err(err, -EINVAL, "'%s' names %zu keys: give a fingerprint", which, found);
        if (rnp_locate_key((rnp_ffi_t) kr->ffi, "fingerprint", list[hit].fingerprint, &key) != RNP_SUCCESS || !key)
                return hutch_err(err, -ENOKEY, "no key '%s' in the keyring", which);
        *ret = key;
        return 0;
}

int sign_keyring_export(struct sign_keyring *kr, const char *which, bool secret, bool armor, char **ret,
                        size_t *ret_len, struct hutch_error *err)
{
        _cleanup_rnp_key_ rnp_key_handle_t key = NULL;
        _cleanup_rnp_out_ rnp_output_t out = NULL;
        uint8_t *buf = NULL;
        size_t len = 0;
        bool sec = false;

        int r = find_key(kr, which, &key, err);
        if (r < 0)
                return r;
        if (secret && (rnp_key_have_secret(key, &sec) != RNP_SUCCESS || !sec))
                return hutch_err(err, -ENOKEY, "no secret key '%s' in the keyring", which);
        uint32_t flags = (secret ? RNP_KEY_EXPORT_SECRET : RNP_KEY_EXPORT_PUBLIC) | RNP_KEY_EXPORT_SUBKEYS |
                         (armor ? RNP_KEY_EXPORT_ARMORED : 0);
        if (rnp_output_to_memory(&out, 0) != RNP_SUCCESS || rnp_key_export(key, out, flags) != RNP_SUCCESS ||
            rnp_output_memory_get_buf(out, &buf, &len, false) != RNP_SUCCESS)
                return hutch_err(err, -EIO, "cannot export key '%s'", which);
        char *copy = malloc(len + 1);
        if (!copy)
                return hutch_err(err, -ENOMEM, "out of memory");
        memcpy(copy, buf, len);
        copy[len] = 0;
        *ret = copy;
        *ret_len = len;
        return 0;
}

int sign_keyring_remove(struct sign_keyring *kr, const char *which, bool secret, struct hutch_error *err)
{
        _cleanup_rnp_key_ rnp_key_handle_t key = NULL;
        bool sec = false;

        int r = find_key(kr, which, &key, err);
        if (r < 0)
                return r;
        if (secret && (rnp_key_have_secret(key, &sec) != RNP_SUCCESS || !sec))
                return hutch_err(err, -ENOKEY, "no secret key '%s' in the keyring", which);
        if (!secret && (rnp_key_have_public(key, &sec) != RNP_SUCCESS || !sec))
                return hutch_err(err, -ENOKEY, "no key '%s' in the public keyring", which);
        uint32_t flags = (secret ? RNP_KEY_REMOVE_SECRET : RNP_KEY_REMOVE_PUBLIC) | RNP_KEY_REMOVE_SUBKEYS;
        if (rnp_key_remove(key, flags) != RNP_SUCCESS)
                return hutch_err(err, -EIO, "cannot remove key '%s'", which);
        return 0;
}

int sign_keyring_newpair(struct sign_keyring *kr, const struct sign_newpair *np, struct sign_key_info *ret,
                         struct hutch_error *err)
{
        rnp_op_generate_t op = NULL;
        _cleanup_rnp_key_ rnp_key_handle_t key = NULL;
        char uid[512];

        /* "Name (Comment) <email>", as Apptainer's (Go openpgp's) entities are named */
        int n = snprintf(uid, sizeof uid, "%s", np->name);
        if (np->comment && *np->comment)
                n += snprintf(uid + n, sizeof uid - (size_t) n, " (%s)", np->comment);
        if (np->email && *np->email)
                snprintf(uid + n, sizeof uid - (size_t) n, " <%s>", np->email);
        if (rnp_op_generate_create(&op, (rnp_ffi_t) kr->ffi, "RSA") != RNP_SUCCESS)
                return hutch_err(err, -EIO, "cannot generate a key");
        uint32_t r = rnp_op_generate_set_bits(op, np->bits);
        if (r == RNP_SUCCESS)
                r = rnp_op_generate_set_userid(op, uid);
        if (r == RNP_SUCCESS)
                r = rnp_op_generate_set_hash(op, "SHA256");
        if (r == RNP_SUCCESS)
                r = rnp_op_generate_add_usage(op, "sign");
        if (r == RNP_SUCCESS)
                r = rnp_op_generate_add_usage(op, "certify");
        if (r == RNP_SUCCESS && np->passphrase && *np->passphrase)
                r = rnp_op_generate_set_protection_password(op, np->passphrase);
        if (r == RNP_SUCCESS)
                r = rnp_op_generate_execute(op);
        if (r == RNP_SUCCESS)
                r = rnp_op_generate_get_key(op, &key);
        rnp_op_generate_destroy(op);
        if (r != RNP_SUCCESS)
                return hutch_err(err, -EINVAL, "cannot generate a %u-bit RSA key: %s", np->bits, rnp_text(r));
        key_info(key, ret);
        return 0;
}

int sign_key_protected(struct sign_keyring *kr, const char *fingerprint, bool *ret, struct hutch_error *err)
{
        _cleanup_rnp_key_ rnp_key_handle_t key = NULL;
        int r = find_key(kr, fingerprint, &key, err);
        if (r < 0)
                return r;
        if (rnp_key_is_protected(key, ret) != RNP_SUCCESS)
                return hutch_err(err, -EIO, "cannot read key '%s'", fingerprint);
        return 0;
}
