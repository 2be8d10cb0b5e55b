/* Verification of SIF signatures as the reference pkg/integrity does it: each task (an
 * object group, or one object) has signature objects linked to it; each is a clear-signed
 * message checked with the keyring, whose signer must be the fingerprint the descriptor
 * names, and whose JSON lists digests of the header, the descriptors and the objects.
 * Legacy signatures (a "SIFHASH:" digest of the objects' bytes only) only when asked.
 * Each failure is also put in the reference's words (its error types' texts), for verify's
 * Apptainer-compatible error line. */
#include <errno.h>
#include <json-c/json.h>
#include <rnp/rnp.h>
#include <rnp/rnp_err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sign-internal.h"
#include "util/cleanup.h"
#include "util/util.h"

#define SIG_MAX (1u << 20)
#define TARGETS_MAX 256

struct task {
        uint32_t target; /* group id, or object id */
        bool is_group;
        uint32_t ods[64]; /* the objects checked */
        size_t n_ods;
        bool subset_ok; /* the signature may cover more than ods */
};

static bool is_signature(const struct sif_object *o)
{
        return o->d.datatype == SIF_DATA_SIGNATURE;
}

static uint32_t group_of(const struct sif_object *o)
{
        return o->d.groupid & ~SIF_GROUP_MASK;
}

/* The text of a clear-signed message, without verifying it (to tell legacy ones apart, as
 * the reference does). NULL when data is no such message. */
static const char *cleartext_body(const char *data)
{
        const char *p = strstr(data, "-----BEGIN PGP SIGNED MESSAGE-----");
        if (!p)
                return NULL;
        p = strstr(p, "\n\n");
        return p ? p + 2 : NULL;
}

static bool is_legacy_data(const char *data)
{
        const char *b = cleartext_body(data);
        return b && startswith(b, "SIFHASH:");
}

static int read_object(const struct sif_file *f, const struct sif_object *o, char **ret, struct hutch_error *err)
{
        if (o->d.size > SIG_MAX)
                return hutch_err(err, -EFBIG, "signature object %u is too large (%lld bytes)", o->d.id,
                                 (long long) o->d.size);
        char *buf = malloc((size_t) o->d.size + 1);
        if (!buf)
                return hutch_err(err, -ENOMEM, "out of memory");
        ssize_t n = pread_full(f->fd, buf, (size_t) o->d.size, o->d.offset);
        if (n != o->d.size) {
                free(buf);
                return hutch_err(err, -EIO, "cannot read signature object %u", o->d.id);
        }
        buf[n] = 0;
        *ret = buf;
        return 0;
}

static void fp_hex(const uint8_t *fp, size_t len, char *out)
{
        for (size_t i = 0; i < len; i++)
                sprintf(out + 2 * i, "%02X", fp[i]);
        out[2 * len] = 0;
}

static uint32_t group_min_id(const struct sif_file *f, uint32_t group)
{
        uint32_t min = UINT32_MAX;
        for (size_t i = 0; i < f->n_obj; i++)
                if (f->obj[i].d.groupid == (group | SIF_GROUP_MASK) && f->obj[i].d.id < min)
                        min = f->obj[i].d.id;
        return min;
}

/* Check the clear-signed message with the keyring; on success ret_text is its text. */
static int check_message(struct sign_keyring *kr, const struct sif_object *sig, const char *data,
                         struct sign_sig_result *res, char **ret_text, struct hutch_error *err)
{
        rnp_input_t in = NULL;
        rnp_output_t out = NULL;
        rnp_op_verify_t op = NULL;
        rnp_op_verify_signature_t s = NULL;
        rnp_key_handle_t key = NULL;
        size_t count = 0;
        int r = 0;

        if (rnp_input_from_memory(&in, (const uint8_t *) data, strlen(data), false) != RNP_SUCCESS ||
            rnp_output_to_memory(&out, SIG_MAX) != RNP_SUCCESS ||
            rnp_op_verify_create(&op, (rnp_ffi_t) kr->ffi, in, out) != RNP_SUCCESS) {
                r = hutch_err(err, -ENOMEM, "cannot set up verification");
                goto out;
        }
        int q = quiet_begin();
        (void) rnp_op_verify_execute(op);
        quiet_end(q);
        if (rnp_op_verify_get_signature_count(op, &count) != RNP_SUCCESS || count == 0 ||
            rnp_op_verify_get_signature_at(op, 0, &s) != RNP_SUCCESS) {
                r = hutch_err(err, -EBADMSG, "signature object %u not valid: no OpenPGP signature in it", sig->d.id);
                if (!cleartext_body(data))
                        snprintf(res->reference, sizeof res->reference, "clearsigned message not found");
                goto out;
        }
        uint32_t st = rnp_op_verify_signature_get_status(s);
        if (rnp_op_verify_signature_get_key(s, &key) == RNP_SUCCESS && key) {
                char *fp = NULL, *uid = NULL;
                bool primary = true;
                (void) rnp_key_is_primary(key, &primary);
                if ((primary ? rnp_key_get_fprint(key, &fp) : rnp_key_get_primary_fprint(key, &fp)) == RNP_SUCCESS) {
                        rnp_key_handle_t pk = NULL;
                        snprintf(res->fingerprint, sizeof res->fingerprint, "%s", fp);
                        if (rnp_locate_key((rnp_ffi_t) kr->ffi, "fingerprint", fp, &pk) == RNP_SUCCESS && pk) {
                                if (rnp_key_get_primary_uid(pk, &uid) == RNP_SUCCESS) {
                                        snprintf(res->entity, sizeof res->entity, "%s", uid);
                                        rnp_buffer_destroy(uid);
                                }
                                rnp_key_handle_destroy(pk);
                        }
                        rnp_buffer_destroy(fp);
                        res->key_known = true;
                }
        }
        if (st == RNP_ERROR_KEY_NOT_FOUND || (st == RNP_SUCCESS && !res->key_known)) {
                r = hutch_err(err, -ENOKEY, "signature object %u: signed by unknown key %s", sig->d.id,
                              res->fingerprint);
                /* go-crypto's ErrUnknownIssuer; the fingerprint is hutch's hint */
                snprintf(res->reference, sizeof res->reference,
                         "signature object %u not valid: openpgp: signature made by unknown entity (unknown key %s)",
                         sig->d.id, res->fingerprint);
                goto out;
        }
        if (st != RNP_SUCCESS) {
                r = hutch_err(err, -EBADMSG, "signature object %u not valid: %s", sig->d.id,
                              st == RNP_ERROR_SIGNATURE_INVALID ? "bad signature" : rnp_text(st));
                if (st == RNP_ERROR_SIGNATURE_INVALID) /* go-crypto's SignatureError */
                        snprintf(res->reference, sizeof res->reference,
                                 "signature object %u not valid: openpgp: invalid signature: bad signature", sig->d.id);
                goto out;
        }
        rnp_signature_handle_t h = NULL;
        char *alg = NULL;
        if (rnp_op_verify_signature_get_handle(s, &h) == RNP_SUCCESS &&
            rnp_signature_get_hash_alg(h, &alg) == RNP_SUCCESS) {
                bool ok = !strcmp(alg, "SHA224") || !strcmp(alg, "SHA256") || !strcmp(alg, "SHA384") ||
                          !strcmp(alg, "SHA512");
                if (!ok)
                        r = hutch_err(err, -EBADMSG, "signature object %u not valid: hash %s not accepted", sig->d.id,
                                      alg);
                rnp_buffer_destroy(alg);
        }
        if (h)
                rnp_signature_handle_destroy(h);
        if (r < 0)
                goto out;
        uint8_t *buf = NULL;
        size_t len = 0;
        if (rnp_output_memory_get_buf(out, &buf, &len, false) != RNP_SUCCESS) {
                r = hutch_err(err, -EIO, "cannot read signature object %u's text", sig->d.id);
                goto out;
        }
        char *text = malloc(len + 1);
        if (!text) {
                r = hutch_err(err, -ENOMEM, "out of memory");
                goto out;
        }
        memcpy(text, buf, len);
        text[len] = 0;
        *ret_text = text;
out:
        if (key)
                rnp_key_handle_destroy(key);
        if (op)
                rnp_op_verify_destroy(op);
        if (out)
                rnp_output_destroy(out);
        if (in)
                rnp_input_destroy(in);
        return r;
}

static int object_matches(const struct sif_file *f, const struct sif_object *o, json_object *om,
                          struct sign_sig_result *res, struct hutch_error *err)
{
        json_object *jd = NULL, *jo = NULL;
        struct digest want, got;
        uint8_t ib[INTEGRITY_BYTES_MAX];

        if (!json_object_object_get_ex(om, "descriptorDigest", &jd) ||
            !json_object_object_get_ex(om, "objectDigest", &jo) || digest_parse(json_object_get_string(jd), &want) < 0)
                return hutch_err(err, -EBADMSG, "signed metadata of object %u is malformed", o->d.id);
        got.name = want.name;
        if (digest_of_buffer(&got, ib, descriptor_integrity_bytes(o, ib)) < 0 || got.len != want.len ||
            memcmp(got.value, want.value, want.len)) {
                snprintf(res->reference, sizeof res->reference, "data object descriptor integrity compromised: %u",
                         o->d.id);
                return hutch_err(err, -EBADMSG,
                                 "data object descriptor integrity compromised: object %u changed after signing",
                                 o->d.id);
        }
        if (digest_parse(json_object_get_string(jo), &want) < 0)
                return hutch_err(err, -EBADMSG, "signed metadata of object %u is malformed", o->d.id);
        got.name = want.name;
        const int64_t range[1][2] = {{o->d.offset, o->d.size}};
        int r = digest_of_ranges(&got, f->fd, range, 1);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot read object %u", o->d.id);
        if (got.len != want.len || memcmp(got.value, want.value, want.len)) {
                res->data_failed = o->d.id;
                snprintf(res->reference, sizeof res->reference, "data object integrity compromised: %u", o->d.id);
                return hutch_err(err, -EBADMSG, "data object integrity compromised: object %u changed after signing",
                                 o->d.id);
        }
        return 0;
}

static json_object *metadata_for(json_object *objects, uint32_t min_id, uint32_t id)
{
        for (size_t i = 0; i < json_object_array_length(objects); i++) {
                json_object *om = json_object_array_get_idx(objects, i), *rel = NULL;
                if (json_object_object_get_ex(om, "relativeId", &rel) && json_object_is_type(rel, json_type_int) &&
                    json_object_get_int64(rel) >= 0 && (uint64_t) json_object_get_int64(rel) + min_id == id)
                        return om;
        }
        return NULL;
}

static int metadata_matches(const struct sif_file *f, const struct task *t, const struct sif_object *sig,
                            const char *text, struct sign_sig_result *res, struct hutch_error *err)
{
        json_object *root = json_tokener_parse(text), *v = NULL, *h = NULL, *hd = NULL, *objects = NULL;
        struct digest want, got;
        uint8_t ib[INTEGRITY_BYTES_MAX];
        int r = 0;

        if (!root || !json_object_object_get_ex(root, "version", &v) || json_object_get_int(v) != 1 ||
            !json_object_object_get_ex(root, "header", &h) || !json_object_object_get_ex(h, "digest", &hd) ||
            !json_object_object_get_ex(root, "objects", &objects) || !json_object_is_type(objects, json_type_array) ||
            digest_parse(json_object_get_string(hd), &want) < 0) {
                r = hutch_err(err, -EBADMSG, "signature object %u not valid: its signed metadata is malformed",
                              sig->d.id);
                goto out;
        }
        uint32_t group = t->is_group ? t->target : group_of(sif_file_object(f, t->target));
        uint32_t min = group_min_id(f, group);
        if (!t->subset_ok) {
                /* the signed objects are exactly the group's */
                for (size_t i = 0; i < json_object_array_length(objects) && r == 0; i++) {
                        json_object *rel = NULL;
                        json_object_object_get_ex(json_object_array_get_idx(objects, i), "relativeId", &rel);
                        uint64_t id = (uint64_t) json_object_get_int64(rel) + min;
                        bool found = false;
                        for (size_t k = 0; k < t->n_ods; k++)
                                found |= t->ods[k] == id;
                        if (!found) {
                                r = hutch_err(err, -EBADMSG, "signed object %llu not found in the image",
                                              (unsigned long long) id);
                                snprintf(res->reference, sizeof res->reference, "object %llu: signed object not found",
                                         (unsigned long long) id);
                        }
                }
                for (size_t k = 0; k < t->n_ods && r == 0; k++)
                        if (!metadata_for(objects, min, t->ods[k])) {
                                r = hutch_err(err, -EBADMSG, "object %u is not signed", t->ods[k]);
                                snprintf(res->reference, sizeof res->reference, "object %u: object not signed",
                                         t->ods[k]);
                        }
                if (r < 0)
                        goto out;
        }
        got.name = want.name;
        if (digest_of_buffer(&got, ib, header_integrity_bytes(f->header, ib)) < 0 || got.len != want.len ||
            memcmp(got.value, want.value, want.len)) {
                r = hutch_err(err, -EBADMSG, "header integrity compromised: the SIF header changed after signing");
                snprintf(res->reference, sizeof res->reference, "header integrity compromised");
                goto out;
        }
        for (size_t k = 0; k < t->n_ods; k++) {
                json_object *om = metadata_for(objects, min, t->ods[k]);
                if (!om) {
                        r = hutch_err(err, -EBADMSG, "object %u is not signed", t->ods[k]);
                        snprintf(res->reference, sizeof res->reference, "object %u: object not signed", t->ods[k]);
                        goto out;
                }
                r = object_matches(f, sif_file_object(f, t->ods[k]), om, res, err);
                if (r < 0)
                        goto out;
                res->verified[res->n_verified++] = t->ods[k];
        }
out:
        json_object_put(root);
        return r;
}

static int legacy_matches(const struct sif_file *f, const struct task *t, const struct sif_object *sig,
                          const char *text, struct sign_sig_result *res, struct hutch_error *err)
{
        int32_t ht = 0;
        uint8_t entity[SIF_ENTITY_LEN];
        struct digest want = {0}, got = {0};
        static const char *const names[] = {NULL, "sha256", "sha384", "sha512"};
        int64_t ranges[64][2];
        char hex[2 * DIGEST_MAX + 16];

        sif_signature_meta(&sig->d, &ht, entity);
        if (ht < 1 || ht > 3)
                return hutch_err(err, -EOPNOTSUPP, "signature object %u: hash type %d not supported", sig->d.id, ht);
        if (!startswith(text, "SIFHASH:\n"))
                return hutch_err(err, -EBADMSG, "signature object %u not valid: no SIFHASH in it", sig->d.id);
        size_t n = strcspn(text + 9, "\r\n");
        snprintf(hex, sizeof hex, "%s:%.*s", names[ht], (int) n, text + 9);
        if (digest_parse(hex, &want) < 0)
                return hutch_err(err, -EBADMSG, "signature object %u not valid: malformed SIFHASH", sig->d.id);
        for (size_t k = 0; k < t->n_ods; k++) {
                const struct sif_object *o = sif_file_object(f, t->ods[k]);
                ranges[k][0] = o->d.offset;
                ranges[k][1] = o->d.size;
        }
        got.name = want.name;
        int r = digest_of_ranges(&got, f->fd, (const int64_t(*)[2]) ranges, t->n_ods);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot read the signed objects");
        if (got.len != want.len || memcmp(got.value, want.value, want.len)) {
                /* the reference's legacy group verifier names no object */
                if (t->is_group)
                        snprintf(res->reference, sizeof res->reference, "data object integrity compromised");
                else {
                        res->data_failed = t->target;
                        snprintf(res->reference, sizeof res->reference, "data object integrity compromised: %u",
                                 t->target);
                }
                return hutch_err(err, -EBADMSG, "data object integrity compromised: %s %u changed after signing",
                                 t->is_group ? "object group" : "object", t->target);
        }
        for (size_t k = 0; k < t->n_ods; k++)
                res->verified[res->n_verified++] = t->ods[k];
        return 0;
}

static int verify_sig(struct sign_keyring *kr, const struct sif_file *f, const struct task *t,
                      const struct sif_object *sig, const char *data, bool legacy, struct sign_sig_result *res,
                      struct hutch_error *err)
{
        int32_t ht = 0;
        uint8_t entity[SIF_ENTITY_LEN];
        _cleanup_free_ char *text = NULL;

        sif_signature_meta(&sig->d, &ht, entity);
        fp_hex(entity, 20, res->fingerprint);
        char desc_fp[41];
        memcpy(desc_fp, res->fingerprint, sizeof desc_fp);
        int r = check_message(kr, sig, data, res, &text, err);
        if (r < 0)
                return r;
        if (strcasecmp(desc_fp, res->fingerprint) != 0) {
                snprintf(res->reference, sizeof res->reference,
                         "fingerprint in descriptor does not correspond to signing entity");
                return hutch_err(err, -EBADMSG,
                                 "signature object %u: the fingerprint in its descriptor (%s) is not the signer's (%s)",
                                 sig->d.id, desc_fp, res->fingerprint);
        }
        if (legacy)
                return legacy_matches(f, t, sig, text, res, err);
        return metadata_matches(f, t, sig, text, res, err);
}

static int task_add_group(const struct sif_file *f, uint32_t g, struct task *t, struct hutch_error *err);

int verify_signed_text(const struct sif_file *f, uint32_t group, const struct sif_object *sig, const char *text,
                       bool legacy, struct sign_sig_result *res, struct hutch_error *err)
{
        struct task t;
        int r = task_add_group(f, group, &t, err);
        if (r < 0)
                return r;
        return legacy ? legacy_matches(f, &t, sig, text, res, err) : metadata_matches(f, &t, sig, text, res, err);
}

static int add_result(struct sign_verify_report *rep, struct sign_sig_result **ret)
{
        struct sign_sig_result *s = realloc(rep->sigs, (rep->n_sigs + 1) * sizeof *s);
        if (!s)
                return -ENOMEM;
        rep->sigs = s;
        *ret = memset(&s[rep->n_sigs++], 0, sizeof *s);
        return 0;
}

static int task_add_object(const struct sif_file *f, uint32_t id, bool legacy, struct task *t, struct hutch_error *err);

static size_t count_legacy(const struct sif_file *f)
{
        size_t n = 0;
        for (size_t i = 0; i < f->n_obj; i++) {
                _cleanup_free_ char *data = NULL;
                struct hutch_error ignored = HUTCH_ERROR_INIT;
                if (is_signature(&f->obj[i]) && read_object(f, &f->obj[i], &data, &ignored) == 0 &&
                    is_legacy_data(data))
                        n++;
        }
        return n;
}

/* Legacy signatures made without a selection cover the primary system partition alone
 * (Singularity 3.0-3.5), or a whole group: the groups that have one, else that partition. */
static size_t legacy_default_tasks(const struct sif_file *f, struct task *tasks, size_t max, struct hutch_error *err)
{
        uint32_t groups[TARGETS_MAX];
        size_t ng = sif_file_groups(f, groups, TARGETS_MAX), n = 0;
        if (ng == SIZE_MAX) /* fails closed: "not signed" */
                return 0;
        for (size_t g = 0; g < ng && n < max; g++)
                for (size_t i = 0; i < f->n_obj; i++) {
                        _cleanup_free_ char *data = NULL;
                        struct hutch_error ignored = HUTCH_ERROR_INIT;
                        if (is_signature(&f->obj[i]) && f->obj[i].d.linkid == (groups[g] | SIF_GROUP_MASK) &&
                            read_object(f, &f->obj[i], &data, &ignored) == 0 && is_legacy_data(data)) {
                                if (task_add_group(f, groups[g], &tasks[n], err) < 0)
                                        return 0;
                                n++;
                                break;
                        }
                }
        const struct sif_descriptor *prim = NULL;
        if (n == 0 && sif_primary_partition(&f->s, &prim, err) >= 0 &&
            task_add_object(f, prim->id, true, &tasks[n], err) >= 0)
                n++;
        return n;
}

static bool is_trusted(const struct sif_object *sig, char *const *trusted)
{
        int32_t ht = 0;
        uint8_t entity[SIF_ENTITY_LEN];
        char fp[41];
        sif_signature_meta(&sig->d, &ht, entity);
        fp_hex(entity, 20, fp);
        for (size_t i = 0; trusted[i]; i++)
                if (!strcasecmp(trusted[i], fp))
                        return true;
        return false;
}

static int run_task(struct sign_keyring *kr, const struct sif_file *f, const struct task *t, bool legacy,
                    char *const *trusted, struct sign_verify_report *rep, struct hutch_error *err)
{
        size_t n = 0, other = 0;
        uint32_t link = t->is_group ? (t->target | SIF_GROUP_MASK) : t->target;
        if (!legacy && !t->is_group)
                link = group_of(sif_file_object(f, t->target)) | SIF_GROUP_MASK;

        for (size_t i = 0; i < f->n_obj; i++) {
                const struct sif_object *sig = &f->obj[i];
                _cleanup_free_ char *data = NULL;
                struct sign_sig_result *res = NULL;
                if (!is_signature(sig) || sig->d.linkid != link || (trusted && !is_trusted(sig, trusted)))
                        continue;
                int r = read_object(f, sig, &data, err);
                if (r < 0)
                        return r;
                /* an object's own (legacy) signature is legacy whatever its text */
                if ((t->is_group || !legacy) && is_legacy_data(data) != legacy) {
                        other++;
                        continue;
                }
                n++;
                if (add_result(rep, &res) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
                res->sig_id = sig->d.id;
                res->target = t->target;
                res->is_group = t->is_group;
                r = verify_sig(kr, f, t, sig, data, legacy, res, err);
                if (r < 0) {
                        res->err = *err;
                        memcpy(rep->reference, res->reference, sizeof rep->reference);
                        return r;
                }
        }
        if (n > 0)
                return 0;
        const char *what = t->is_group ? "object group" : "object";
        if (trusted)
                return hutch_err(err, -ENOENT, "%s %u is not signed by a key the site trusts", what, t->target);
        if (!legacy)
                other += count_legacy(f);
        /* the reference verifies an object with its group's signatures, but a legacy one
         * with its own */
        if (legacy && !t->is_group)
                snprintf(rep->reference, sizeof rep->reference, "signature not found for object %u", t->target);
        else
                snprintf(rep->reference, sizeof rep->reference, "signature not found for object group %u",
                         t->is_group ? t->target : group_of(sif_file_object(f, t->target)));
        if (other && !legacy) {
                size_t len = strlen(rep->reference);
                snprintf(rep->reference + len, sizeof rep->reference - len,
                         " (it has legacy signatures only, verified with --legacy-insecure)");
                return hutch_err(err, -ENOENT,
                                 "%s %u has only legacy signatures, which are not verified without --legacy-insecure",
                                 what, t->target);
        }
        return hutch_err(err, -ENOENT, "the image is not signed: no %ssignature for %s %u", legacy ? "legacy " : "",
                         what, t->target);
}

static int task_add_group(const struct sif_file *f, uint32_t g, struct task *t, struct hutch_error *err)
{
        memset(t, 0, sizeof *t);
        t->target = g;
        t->is_group = true;
        for (size_t i = 0; i < f->n_obj; i++)
                if (group_of(&f->obj[i]) == g) {
                        if (t->n_ods == ELEMENTSOF(t->ods))
                                return hutch_err(err, -E2BIG, "object group %u has too many objects", g);
                        t->ods[t->n_ods++] = f->obj[i].d.id;
                }
        if (t->n_ods == 0)
                return hutch_err(err, -ENOENT, "the image has no object group %u", g);
        return 0;
}

static int task_add_object(const struct sif_file *f, uint32_t id, bool legacy, struct task *t, struct hutch_error *err)
{
        const struct sif_object *o = sif_file_object(f, id);
        memset(t, 0, sizeof *t);
        if (!o)
                return hutch_err(err, -ENOENT, "the image has no object %u", id);
        if (group_of(o) == 0 && !legacy)
                return hutch_err(err, -EINVAL, "object %u belongs to no object group", id);
        t->target = id;
        t->ods[0] = id;
        t->n_ods = 1;
        t->subset_ok = true;
        return 0;
}

/* The tasks of o (the reference's selection) run in order; the first failure ends them. */
static int verify_tasks(struct sign_keyring *kr, const struct sif_file *f, const struct sign_verify_opts *o,
                        struct sign_verify_report *ret, struct hutch_error *err)
{
        _cleanup_free_ struct task *tasks = calloc(TARGETS_MAX, sizeof *tasks);
        size_t n = 0;
        int r = 0;

        if (!tasks)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < f->n_obj; i++)
                if (!is_signature(&f->obj[i]) && group_of(&f->obj[i]) == 0) {
                        snprintf(ret->reference, sizeof ret->reference,
                                 "non-signature object not associated with object group");
                        return hutch_err(err, -EINVAL, "object %u is in no object group, which signatures cannot cover",
                                         f->obj[i].d.id);
                }
        if (o->legacy && o->all) {
                for (size_t i = 0; i < f->n_obj && r >= 0; i++)
                        if (!is_signature(&f->obj[i]) && group_of(&f->obj[i]) && n < TARGETS_MAX)
                                r = task_add_object(f, f->obj[i].d.id, true, &tasks[n++], err);
        } else if (o->sif_id) {
                r = task_add_object(f, o->sif_id, o->legacy, &tasks[n++], err);
                if (r == -ENOENT)
                        snprintf(ret->reference, sizeof ret->reference, "object not found (no object %u in the image)",
                                 o->sif_id);
        } else if (o->group_id) {
                r = task_add_group(f, o->group_id, &tasks[n++], err);
                if (r == -ENOENT)
                        snprintf(ret->reference, sizeof ret->reference,
                                 "group not found (no object group %u in the image)", o->group_id);
        } else if (o->legacy) {
                n = legacy_default_tasks(f, tasks, TARGETS_MAX, err);
                if (n == 0)
                        return hutch_err(err, -ENOENT, "the image is not signed: no legacy signature in it");
        } else {
                uint32_t groups[TARGETS_MAX];
                size_t ng = sif_file_groups(f, groups, TARGETS_MAX);
                if (ng == SIZE_MAX)
                        return hutch_err(err, -E2BIG, "the image has more than %d object groups", TARGETS_MAX);
                if (ng == 0) {
                        snprintf(ret->reference, sizeof ret->reference, "no groups found");
                        return hutch_err(err, -ENOENT, "the image has no object group to verify");
                }
                for (size_t i = 0; i < ng && r >= 0; i++)
                        r = task_add_group(f, groups[i], &tasks[n++], err);
        }
        if (r < 0)
                return r;
        /* the legacy object verifier covers its object alone */
        for (size_t i = 0; i < n; i++) {
                if (o->legacy && !tasks[i].is_group)
                        tasks[i].subset_ok = false;
                r = run_task(kr, f, &tasks[i], o->legacy, o->trusted, ret, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int sign_image_verify(struct sign_keyring *kr, const char *path, const struct sign_verify_opts *o,
                      struct sign_verify_report *ret, struct hutch_error *err)
{
        _cleanup_(sif_file_close) struct sif_file f = SIF_FILE_NULL;

        ret->reference[0] = 0;
        int r = sif_file_open(&f, path, false, err);
        if (r < 0)
                return r;
        r = verify_tasks(kr, &f, o, ret, err);
        if (r < 0 && !ret->reference[0])
                snprintf(ret->reference, sizeof ret->reference, "%s", err->msg);
        return r;
}

void sign_verify_report_free(struct sign_verify_report *r)
{
        free(r->sigs);
        r->sigs = NULL;
        r->n_sigs = 0;
}
