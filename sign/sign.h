/* Trust: OpenPGP keyrings in Apptainer's layout, SIF signatures in the sylabs integrity
 * format (a clear-signed JSON of the signed objects' digests, linked to their object
 * group), their verification, and the admin's trusted-key policy. Only the hutch-sign
 * program links this module (librnp, libcrypto); the lean hutch spawns it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "util/error.h"

struct rnp_ffi_st;

/* ---- keyrings: DIR/pgp-public and DIR/pgp-secret, OpenPGP transferable keys one after
 * the other (what Apptainer's ~/.apptainer/keys holds) */
struct sign_keyring {
        struct rnp_ffi_st *ffi;
        char *dir;      /* the folder written to; NULL: read-only */
        bool secret;    /* secret keys loaded */
        int log_fd;     /* where librnp's own messages go (they never reach the terminal) */
        char last[500]; /* librnp's last message line, for an error */
};
#define SIGN_KEYRING_NULL    \
        {                    \
                .log_fd = -1 \
        }

/* Open an empty keyring that writes to dir (may be NULL) and load dir's keyrings, then each
 * of extra (NULL-terminated, may be NULL), read only. A missing file is an empty keyring. */
int sign_keyring_open(struct sign_keyring *kr, const char *dir, const char *const *extra, bool secret,
                      struct hutch_error *err);
void sign_keyring_close(struct sign_keyring *kr);
/* Write the keyring(s) back to kr->dir (0600 files, 0700 folder; replaced atomically). */
int sign_keyring_save(struct sign_keyring *kr, struct hutch_error *err);

struct sign_key_info {
        char fingerprint[41]; /* upper-case hex, primary key */
        char uid[256];        /* primary user id */
        char alg[16];
        uint32_t bits;
        uint32_t created;
        bool secret;
};
/* The primary keys, in keyring order; secret: only those with secret material. */
int sign_keyring_list(struct sign_keyring *kr, bool secret, struct sign_key_info **ret, size_t *ret_n,
                      struct hutch_error *err);
/* Import armored or binary keys from data; ret_n: how many primary keys. Secret keys come
 * with their public part. */
/* *ret_n: the primary keys in data; *ret_changed (NULL: not asked): the keys and subkeys in
 * it that were new to the keyring or brought something to it (a secret part, a signature) */
int sign_keyring_import(struct sign_keyring *kr, const void *data, size_t len, size_t *ret_n, size_t *ret_changed,
                        struct hutch_error *err);
/* Export one key (fingerprint, key id or user id substring) to a malloc'd buffer. */
int sign_keyring_export(struct sign_keyring *kr, const char *which, bool secret, bool armor, char **ret,
                        size_t *ret_len, struct hutch_error *err);
int sign_keyring_remove(struct sign_keyring *kr, const char *fingerprint, bool secret, struct hutch_error *err);

struct sign_newpair {
        const char *name, *email, *comment;
        const char *passphrase; /* "" or NULL: unprotected */
        uint32_t bits;          /* RSA */
};
int sign_keyring_newpair(struct sign_keyring *kr, const struct sign_newpair *np, struct sign_key_info *ret,
                         struct hutch_error *err);

/* ---- verification */
struct sign_verify_opts {
        uint32_t sif_id;      /* only this object (0: none) */
        uint32_t group_id;    /* only this group (0: none) */
        bool legacy;          /* verify legacy (SIFHASH) signatures instead */
        bool all;             /* with legacy: each object's own signature */
        char *const *trusted; /* only signatures whose descriptor names one of these fingerprints */
};

struct sign_sig_result {
        uint32_t sig_id; /* the signature object */
        uint32_t target; /* group (is_group) or object id it covers */
        bool is_group;
        char fingerprint[41]; /* from the descriptor, or the signing key */
        char entity[256];     /* the signing key's primary user id, when the key is known */
        bool key_known;
        uint32_t verified[64]; /* objects found matching */
        size_t n_verified;
        uint32_t data_failed;   /* the object whose data does not match its signed digest (0: none) */
        struct hutch_error err; /* code 0: good */
        char reference[512];    /* err as the reference pkg/integrity words it (see the report's) */
};

struct sign_verify_report {
        struct sign_sig_result *sigs;
        size_t n_sigs;
        /* On a failure past opening the image: the failure in the words of the reference
         * pkg/integrity, which Apptainer's verify prints after "integrity: ", with a hint of
         * hutch's in parentheses where it has one; hutch's own wording where the reference has
         * no counterpart. "" when the image could not be opened. */
        char reference[512];
};
void sign_verify_report_free(struct sign_verify_report *r);

/* Verify the signatures of the SIF at path with kr's public keys. Fills ret as far as it
 * got (also on failure); the first failure is err and the return value. */
int sign_image_verify(struct sign_keyring *kr, const char *path, const struct sign_verify_opts *o,
                      struct sign_verify_report *ret, struct hutch_error *err);

/* ---- signing */
struct sign_opts {
        uint32_t sif_id, group_id; /* 0: every group */
        const char *fingerprint;   /* the secret key to sign with */
        const char *passphrase;    /* for a protected key */
        int64_t now;
};
/* Append one signature object per signed group; ret_n: how many. */
int sign_image_sign(struct sign_keyring *kr, const char *path, const struct sign_opts *o, size_t *ret_n,
                    struct hutch_error *err);
/* Whether the secret key needs a passphrase. */
int sign_key_protected(struct sign_keyring *kr, const char *fingerprint, bool *ret, struct hutch_error *err);

/* ---- keyservers (HKP, sign/hkp.c: pure; the HTTP is hutch-registry's) */
/* hkp://HOST[:PORT] (port 11371 by default), hkps://HOST, http(s)://HOST[:PORT][/PATH] →
 * the http(s) URL that /pks/lookup and /pks/add go under (caller frees) */
int sign_hkp_base(const char *url, char **ret, struct hutch_error *err);
/* s in application/x-www-form-urlencoded (caller frees; NULL: out of memory) */
char *sign_hkp_escape(const char *s);
/* a key's fingerprint (40 hex digits) or long key id (16), "0x" allowed → upper case */
bool sign_hkp_keyid_valid(const char *s, char *out, size_t size);
#define SIGN_HKP_KEYS_MAX 1000
struct sign_hkp_key {
        char fingerprint[41]; /* or the key id the server gave, upper-case hex */
        char alg[16];         /* "" when unknown */
        uint32_t bits, created;
        bool revoked, expired;
        char uids[8][256]; /* unescaped; control characters as '?' */
        size_t n_uids;
};
/* The machine-readable index of op=index&options=mr: info, pub and uid lines. Anything
 * else is -EBADMSG; more than SIGN_HKP_KEYS_MAX keys -E2BIG. */
int sign_hkp_index_parse(const char *text, size_t len, struct sign_hkp_key **ret, size_t *ret_n,
                         struct hutch_error *err);

/* ---- the admin's policy (hutch.conf 'trusted key = FINGERPRINT [FOLDER...]'): pure, and
 * linked into the lean hutch, which spawns 'hutch-sign policy-check' only when needed */
/* The fingerprints (upper case) of the lines that govern path (absolute, symlinks
 * resolved): a line without folders governs every image, one with folders the images in
 * them. None: the policy leaves path alone. A malformed line is an error (fail closed). */
int trust_policy_for(char *const *lines, const char *path, char ***ret_fps, struct hutch_error *err);
uint64_t trust_policy_hash(char *const *fps);
/* $XDG_RUNTIME_DIR/hutch/trust when that folder is uid's, else /dev/shm/hutch-UID/trust: an
 * entry named after an image file's device, inode, size and times and the policy's hash
 * says that file passed. */
int trust_cache_open(uid_t uid, const char *xdg_runtime_dir, bool create);
void trust_cache_name(const struct stat *st, uint64_t policy, char *buf, size_t len);
#define TRUST_CACHE_NAME_MAX 160
