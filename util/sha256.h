/* SHA-256 (FIPS 180-4) for the lean hutch, which links no crypto library: content digests
 * of images for the audit trail. Not for signatures (sign/ uses libcrypto for those). */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct sha256 {
        uint32_t h[8];
        uint64_t len; /* bytes hashed so far */
        uint8_t buf[64];
        size_t n; /* bytes in buf */
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
void sha256_final(struct sha256 *s, uint8_t out[32]);
/* "sha256:" and 64 lowercase hex digits, NUL-terminated (72 bytes) */
void sha256_hex(const uint8_t d[32], char out[72]);
