/* Signing a SIF as Apptainer 1.1+ does (pkg/integrity's groupSigner): for each object
 * group, a JSON of the header's and each object's descriptor and data digests (SHA-256),
 * clear-signed with the key and appended as a signature object linked to the group,
 * carrying the hash type and the signer's fingerprint in its descriptor. */
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

#define GROUPS_MAX 256

static int add_digest(json_object *o, const char *key, const struct digest *d)
{
        char buf[2 * DIGEST_MAX + 16];
        digest_format(d, buf, sizeof buf);
        return json_object_object_add(o, key, json_object_new_string(buf));
}

/* The metadata of ids (ascending) of group g, as JSON text. */
static int group_metadata(const struct sif_file *f, uint32_t g, const uint32_t *ids, size_t n, char **ret,
                          struct hutch_error *err)
{
        uint8_t ib[INTEGRITY_BYTES_MAX];
        struct digest d = {.name = "sha256"};
        uint32_t min = UINT32_MAX;

        for (size_t i = 0; i < f->n_obj; i++)
                if (f->obj[i].d.groupid == (g | SIF_GROUP_MASK) && f->obj[i].d.id < min)
                        min = f->obj[i].d.id;
        json_object *root = json_object_new_object(), *h = json_object_new_object(), *objs = json_object_new_array();
        json_object_object_add(root, "version", json_object_new_int(1));
        json_object_object_add(root, "header", h);
        json_object_object_add(root, "objects", objs);
        int r = digest_of_buffer(&d, ib, header_integrity_bytes(f->header, ib));
        if (r >= 0)
                add_digest(h, "digest", &d);
        for (size_t i = 0; i < n && r >= 0; i++) {
                const struct sif_object *o = sif_file_object(f, ids[i]);
                json_object *om = json_object_new_object();
                json_object_array_add(objs, om);
                json_object_object_add(om, "relativeId", json_object_new_int64(ids[i] - min));
                r = digest_of_buffer(&d, ib, descriptor_integrity_bytes(o, ib));
                if (r < 0)
                        break;
                add_digest(om, "descriptorDigest", &d);
                const int64_t range[1][2] = {{o->d.offset, o->d.size}};
                r = digest_of_ranges(&d, f->fd, range, 1);
                if (r < 0)
                        break;
                add_digest(om, "objectDigest", &d);
        }
        if (r < 0) {
                json_object_put(root);
                return hutch_err_sys(err, r, "cannot compute the digests of object group %u", g);
        }
        *ret = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(root);
        return *ret ? 0 : hutch_err(err, -ENOMEM, "out of memory");
}

static int clearsign(struct sign_keyring *kr, rnp_key_handle_t key, const char *text, char **ret, size_t *ret_len,
                     struct hutch_error *err)
{
        rnp_input_t in = NULL;
        rnp_output_t out = NULL;
        rnp_op_sign_t op = NULL;
        uint8_t *buf = NULL;
        size_t len = 0;
        uint32_t r = rnp_input_from_memory(&in, (const uint8_t *) text, strlen(text), false);
        if (r == RNP_SUCCESS)
                r = rnp_output_to_memory(&out, 0);
        if (r == RNP_SUCCESS)
                r = rnp_op_sign_cleartext_create(&op, (rnp_ffi_t) kr->ffi, in, out);
        if (r == RNP_SUCCESS)
                r = rnp_op_sign_add_signature(op, key, NULL);
        if (r == RNP_SUCCESS)
                r = rnp_op_sign_set_hash(op, "SHA256");
        if (r == RNP_SUCCESS) {
                int q = quiet_begin();
                r = rnp_op_sign_execute(op);
                quiet_end(q);
        }
        if (r == RNP_SUCCESS)
                r = rnp_output_memory_get_buf(out, &buf, &len, false);
        int ret_code = 0;
        if (r != RNP_SUCCESS)
                ret_code = hutch_err(err, -EIO, "cannot sign: %s", rnp_text(r));
        else if (!(*ret = malloc(len)))
                ret_code = hutch_err(err, -ENOMEM, "out of memory");
        else {
                memcpy(*ret, buf, len);
                *ret_len = len;
        }
        if (op)
                rnp_op_sign_destroy(op);
        if (out)
                rnp_output_destroy(out);
        if (in)
                rnp_input_destroy(in);
        return ret_code;
}

static int parse_fp(const char *hex, uint8_t out[20])
{
        if (strlen(hex) != 40)
                return -EINVAL;
        for (size_t i = 0; i < 20; i++) {
                unsigned v;
                if (sscanf(hex + 2 * i, "%2x", &v) != 1)
                        return -EINVAL;
                out[i] = (uint8_t) v;
        }
        return 0;
}

/* The secret key, unlocked. */
static int signing_key(struct sign_keyring *kr, const struct sign_opts *o, rnp_key_handle_t *ret,
                       struct hutch_error *err)
{
        rnp_key_handle_t key = NULL;
        bool sec = false, prot = false;
        if (rnp_locate_key((rnp_ffi_t) kr->ffi, "fingerprint", o->fingerprint, &key) != RNP_SUCCESS || !key)
                return hutch_err(err, -ENOKEY, "no key %s in the keyring", o->fingerprint);
        if (rnp_key_have_secret(key, &sec) != RNP_SUCCESS || !sec) {
                rnp_key_handle_destroy(key);
                return hutch_err(err, -ENOKEY, "no secret key %s in the keyring", o->fingerprint);
        }
        if (rnp_key_is_protected(key, &prot) == RNP_SUCCESS && prot &&
            rnp_key_unlock(key, o->passphrase ? o->passphrase : "") != RNP_SUCCESS) {
                rnp_key_handle_destroy(key);
                return hutch_err(err, -EACCES, "wrong passphrase for key %s", o->fingerprint);
        }
        *ret = key;
        return 0;
}

int sign_image_sign(struct sign_keyring *kr, const char *path, const struct sign_opts *o, size_t *ret_n,
                    struct hutch_error *err)
{
        _cleanup_(sif_file_close) struct sif_file f = SIF_FILE_NULL;
        uint32_t groups[GROUPS_MAX], ids[64];
        size_t ng = 0;
        rnp_key_handle_t key = NULL;
        uint8_t fp[20];

        if (parse_fp(o->fingerprint, fp) < 0)
                return hutch_err(err, -EINVAL, "'%s' is not a key fingerprint", o->fingerprint);
        int r = sif_file_open(&f, path, true, err);
        if (r < 0)
                return r;
        if (o->sif_id) {
                const struct sif_object *obj = sif_file_object(&f, o->sif_id);
                if (!obj)
                        return hutch_err(err, -ENOENT, "the image has no object %u", o->sif_id);
                groups[ng++] = obj->d.groupid & ~SIF_GROUP_MASK;
                if (!groups[0])
                        return hutch_err(err, -EINVAL, "object %u belongs to no object group", o->sif_id);
        } else if (o->group_id)
                groups[ng++] = o->group_id;
        else
                ng = sif_file_groups(&f, groups, GROUPS_MAX);
        if (ng == SIZE_MAX)
                return hutch_err(err, -E2BIG, "the image has more than %d object groups", GROUPS_MAX);
        if (ng == 0)
                return hutch_err(err, -ENOENT, "the image has no object group to sign");
        r = signing_key(kr, o, &key, err);
        if (r < 0)
                return r;
        for (size_t gi = 0; gi < ng && r >= 0; gi++) {
                _cleanup_free_ char *text = NULL, *msg = NULL;
                size_t n = 0, len = 0;
                for (size_t i = 0; i < f.n_obj; i++)
                        if (f.obj[i].d.groupid == (groups[gi] | SIF_GROUP_MASK) &&
                            (!o->sif_id || f.obj[i].d.id == o->sif_id) && n < ELEMENTSOF(ids))
                                ids[n++] = f.obj[i].d.id;
                if (n == 0) {
                        r = hutch_err(err, -ENOENT, "the image has no object group %u", groups[gi]);
                        break;
                }
                /* ascending ids, as the reference lists them */
                for (size_t i = 1; i < n; i++)
                        for (size_t k = i; k > 0 && ids[k - 1] > ids[k]; k--) {
                                uint32_t t = ids[k];
                                ids[k] = ids[k - 1];
                                ids[k - 1] = t;
                        }
                r = group_metadata(&f, groups[gi], ids, n, &text, err);
                if (r >= 0)
                        r = clearsign(kr, key, text, &msg, &len, err);
                if (r < 0)
                        break;
                struct sif_descriptor d = {
                        .datatype = SIF_DATA_SIGNATURE,
                        .groupid = SIF_GROUP_MASK,
                        .linkid = groups[gi] | SIF_GROUP_MASK,
                };
                d.extra[0] = 1; /* hash type SHA-256, little endian int32 */
                memcpy(d.extra + 4, fp, sizeof fp);
                r = sif_object_append(f.fd, msg, len, o->now, &d, err);
        }
        rnp_key_lock(key);
        rnp_key_handle_destroy(key);
        if (r < 0)
                return r;
        *ret_n = ng;
        return 0;
}
