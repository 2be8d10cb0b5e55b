/* The SIF as the integrity format sees it: raw descriptor bytes, group ids relative to a
 * group's smallest, and digests of header, descriptors and objects (libcrypto's SHA-2). */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sign-internal.h"
#include "util/cleanup.h"
#include "util/util.h"

int sif_file_open(struct sif_file *f, const char *path, bool write, struct hutch_error *err)
{
        struct stat st;

        f->fd = open(path, (write ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (f->fd < 0)
                return hutch_err_sys(err, -errno, "cannot open image '%s'", path);
        if (fstat(f->fd, &st) < 0)
                return hutch_err_sys(err, -errno, "cannot stat image '%s'", path);
        if (!S_ISREG(st.st_mode))
                return hutch_err(err, -EINVAL, "'%s' is not a SIF file", path);
        ssize_t n = pread_full(f->fd, f->header, sizeof f->header, 0);
        if (n < 0)
                return hutch_err_sys(err, (int) n, "cannot read '%s'", path);
        int r = sif_load(f->fd, (uint64_t) st.st_size, &f->s, err);
        if (r < 0)
                return hutch_err_wrap(err, "'%s'", path);
        f->obj = calloc(f->s.n_descr ? f->s.n_descr : 1, sizeof *f->obj);
        if (!f->obj)
                return hutch_err(err, -ENOMEM, "out of memory");
        /* raw bytes of each used descriptor, in table order as sif_load keeps them */
        size_t k = 0;
        for (int64_t i = 0; i < f->s.header.descr_total && k < f->s.n_descr; i++) {
                uint8_t raw[SIF_DESCRIPTOR_SIZE];
                n = pread_full(f->fd, raw, sizeof raw, f->s.header.descr_offset + i * SIF_DESCRIPTOR_SIZE);
                if (n != SIF_DESCRIPTOR_SIZE)
                        return hutch_err(err, -EIO, "cannot read the descriptors of '%s'", path);
                if (!raw[4])
                        continue;
                memcpy(f->obj[k].raw, raw, sizeof raw);
                f->obj[k].d = f->s.descr[k];
                k++;
        }
        f->n_obj = k;
        for (size_t i = 0; i < f->n_obj; i++) {
                uint32_t min = f->obj[i].d.id;
                for (size_t j = 0; j < f->n_obj; j++)
                        if (f->obj[j].d.groupid == f->obj[i].d.groupid && f->obj[j].d.id < min)
                                min = f->obj[j].d.id;
                f->obj[i].min_id = min;
        }
        return 0;
}

void sif_file_close(struct sif_file *f)
{
        if (f->fd >= 0)
                close(f->fd);
        f->fd = -1;
        sif_free(&f->s);
        free(f->obj);
        f->obj = NULL;
        f->n_obj = 0;
}

const struct sif_object *sif_file_object(const struct sif_file *f, uint32_t id)
{
        for (size_t i = 0; i < f->n_obj; i++)
                if (f->obj[i].d.id == id)
                        return &f->obj[i];
        return NULL;
}

size_t sif_file_groups(const struct sif_file *f, uint32_t *ret, size_t max)
{
        size_t n = 0;
        for (size_t i = 0; i < f->n_obj; i++) {
                uint32_t g = f->obj[i].d.groupid & ~SIF_GROUP_MASK;
                if (g == 0)
                        continue;
                size_t k = 0;
                while (k < n && ret[k] < g)
                        k++;
                if (k < n && ret[k] == g)
                        continue;
                if (n == max) /* a group left out would go unverified: the caller refuses */
                        return SIZE_MAX;
                memmove(ret + k + 1, ret + k, (n - k) * sizeof *ret);
                ret[k] = g;
                n++;
        }
        return n;
}

static const struct {
        const char *name, *evp;
        size_t len;
} algs[] = {
        {"sha224", "SHA224", 28}, {"sha256", "SHA256", 32},         {"sha384", "SHA384", 48},
        {"sha512", "SHA512", 64}, {"sha512_224", "SHA512-224", 28}, {"sha512_256", "SHA512-256", 32},
};

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int digest_parse(const char *s, struct digest *d)
{
        const char *colon = strchr(s, ':');
        if (!colon || strchr(colon + 1, ':'))
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(algs); i++) {
                if (strlen(algs[i].name) != (size_t) (colon - s) || strncmp(s, algs[i].name, colon - s))
                        continue;
                const char *hex = colon + 1;
                if (strlen(hex) != 2 * algs[i].len)
                        return -EINVAL;
                for (size_t k = 0; k < algs[i].len; k++) {
                        int hi = hexval(hex[2 * k]), lo = hexval(hex[2 * k + 1]);
                        if (hi < 0 || lo < 0)
                                return -EINVAL;
                        d->value[k] = (uint8_t) (hi << 4 | lo);
                }
                d->name = algs[i].name;
                d->len = algs[i].len;
                return 0;
        }
        return -EOPNOTSUPP;
}

void digest_format(const struct digest *d, char *buf, size_t size)
{
        int n = snprintf(buf, size, "%s:", d->name);
        for (size_t i = 0; i < d->len && n > 0 && (size_t) n + 2 < size; i++)
                n += snprintf(buf + n, size - (size_t) n, "%02x", d->value[i]);
}

static const EVP_MD *md_of(const struct digest *d)
{
        for (size_t i = 0; i < ELEMENTSOF(algs); i++)
                if (!strcmp(algs[i].name, d->name))
                        return EVP_get_digestbyname(algs[i].evp);
        return NULL;
}

DEFINE_CLEANUP_FUNC(EVP_MD_CTX *, EVP_MD_CTX_free)

int digest_of_buffer(struct digest *d, const void *buf, size_t len)
{
        unsigned int n = 0;
        const EVP_MD *md = md_of(d);
        if (!md || !EVP_Digest(buf, len, d->value, &n, md, NULL))
                return -EOPNOTSUPP;
        d->len = n;
        return 0;
}

/* Large sequential reads: hashing a partition is bound by SHA-256 itself, not the syscalls. */
#define CHUNK (1u << 20)

int digest_of_ranges(struct digest *d, int fd, const int64_t (*ranges)[2], size_t n_ranges)
{
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        _cleanup_free_ uint8_t *buf = malloc(CHUNK);
        const EVP_MD *md = md_of(d);
        unsigned int n = 0;

        if (!ctx || !buf)
                return -ENOMEM;
        if (!md || !EVP_DigestInit_ex(ctx, md, NULL))
                return -EOPNOTSUPP;
        for (size_t i = 0; i < n_ranges; i++) {
                int64_t off = ranges[i][0], len = ranges[i][1];
                (void) posix_fadvise(fd, off, len, POSIX_FADV_SEQUENTIAL);
                while (len > 0) {
                        size_t want = len < CHUNK ? (size_t) len : CHUNK;
                        ssize_t got = pread_full(fd, buf, want, off);
                        if (got < 0)
                                return (int) got;
                        if ((size_t) got != want)
                                return -EIO;
                        if (!EVP_DigestUpdate(ctx, buf, want))
                                return -EIO;
                        off += got;
                        len -= got;
                }
        }
        if (!EVP_DigestFinal_ex(ctx, d->value, &n))
                return -EIO;
        d->len = n;
        return 0;
}

size_t header_integrity_bytes(const uint8_t *h, uint8_t *out)
{
        memcpy(out, h, 45);           /* launch script [32], magic [10], version [3] */
        memcpy(out + 45, h + 48, 16); /* id (the arch between changes as partitions come) */
        return 61;
}

size_t descriptor_integrity_bytes(const struct sif_object *o, uint8_t *out)
{
        const uint8_t *r = o->raw;
        uint32_t rel = htole32(o->d.id - o->min_id);
        size_t n = 0;
#define PUT(p, len) (memcpy(out + n, (p), (len)), n += (len))
        PUT(r, 4);              /* datatype */
        PUT(r + 4, 1);          /* used */
        PUT(&rel, 4);           /* id relative to the group's smallest */
        PUT(r + 13, 4);         /* link */
        PUT(r + 25, 8);         /* size */
        PUT(r + 41, 8);         /* created */
        PUT(r + 57, 16);        /* uid, gid */
        PUT(r + 73, 128 + 384); /* name, extra */
#undef PUT
        return n;
}
