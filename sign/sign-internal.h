/* Shared by sign/: a SIF opened with its descriptors' raw bytes (the integrity digests
 * cover them as stored), digests with libcrypto, and the signed metadata. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"
#include "sign.h"
#include "util/error.h"

struct sif_object {
        struct sif_descriptor d;
        uint8_t raw[SIF_DESCRIPTOR_SIZE];
        uint32_t min_id; /* smallest id of the objects sharing its raw group id */
};

struct sif_file {
        int fd;
        uint8_t header[SIF_HEADER_SIZE];
        struct sif s;
        struct sif_object *obj;
        size_t n_obj;
};
#define SIF_FILE_NULL    \
        {                \
                .fd = -1 \
        }

int sif_file_open(struct sif_file *f, const char *path, bool write, struct hutch_error *err);
void sif_file_close(struct sif_file *f);
const struct sif_object *sif_file_object(const struct sif_file *f, uint32_t id);
/* The group ids in use (no signature-only "no group"), ascending; SIZE_MAX when there are
 * more than max of them. */
size_t sif_file_groups(const struct sif_file *f, uint32_t *ret, size_t max);

/* Digest algorithms of the metadata JSON ("sha256", ...) */
#define DIGEST_MAX 64
struct digest {
        const char *name; /* as in the JSON */
        size_t len;
        uint8_t value[DIGEST_MAX];
};
/* "sha256:hex" → d; -EINVAL when malformed, -EOPNOTSUPP for another algorithm */
int digest_parse(const char *s, struct digest *d);
/* d->name chosen; value computed */
int digest_of_buffer(struct digest *d, const void *buf, size_t len);
/* over the concatenation of n (offset, length) ranges of fd */
int digest_of_ranges(struct digest *d, int fd, const int64_t (*ranges)[2], size_t n);
void digest_format(const struct digest *d, char *buf, size_t size); /* "sha256:hex" */
/* The bytes the reference hashes for the header (launch script, magic, version, id) and
 * for a descriptor (its fields minus id, group, offsets and modified time, with the id
 * relative to the group's smallest). */
size_t header_integrity_bytes(const uint8_t *header, uint8_t *out);
size_t descriptor_integrity_bytes(const struct sif_object *o, uint8_t *out);
#define INTEGRITY_BYTES_MAX 600

/* librnp prints some warnings (a key's odd MPI bit count, ...) to stderr itself, past its
 * log fd: around its calls fd 2 points to /dev/null, unless logging at debug level.
 * quiet_begin returns the saved fd for quiet_end. */
int quiet_begin(void);
void quiet_end(int saved);

/* The text of a signature object that librnp verified, checked against object group group
 * of f: the integrity JSON, or legacy's "SIFHASH:" line (verify.c; apart for fuzz_sig). */
struct sign_sig_result;
int verify_signed_text(const struct sif_file *f, uint32_t group, const struct sif_object *sig, const char *text,
                       bool legacy, struct sign_sig_result *res, struct hutch_error *err);

/* librnp's result as text */
const char *rnp_text(uint32_t r);
