/* SIF: the global header and descriptor table as the reference implementation
 * (github.com/sylabs/sif pkg/sif) lays them out with encoding/binary: little endian,
 * no padding. Parsing is pure; sif_load adds the bounds checks against the file. */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image.h"
#include "util/util.h"

#define MAX_DESCRIPTORS 65536

static int64_t get64(const uint8_t *p)
{
        uint64_t v;
        memcpy(&v, p, 8);
        return (int64_t) le64toh(v);
}

static uint32_t get32(const uint8_t *p)
{
        uint32_t v;
        memcpy(&v, p, 4);
        return le32toh(v);
}

static void put64(uint8_t *p, int64_t v)
{
        uint64_t le = htole64((uint64_t) v);
        memcpy(p, &le, 8);
}

static void put32(uint8_t *p, uint32_t v)
{
        uint32_t le = htole32(v);
        memcpy(p, &le, 4);
}

/* 0, or -1 with errno */
static int write_full_at(int fd, const void *buf, size_t len, int64_t off)
{
        const uint8_t *p = buf;
        while (len > 0) {
                ssize_t n = pwrite(fd, p, len, off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        if (n == 0)
                                errno = EIO;
                        return -1;
                }
                p += n, len -= (size_t) n, off += n;
        }
        return 0;
}

static void copy_str(char *dst, const uint8_t *src, size_t n)
{
        memcpy(dst, src, n);
        dst[n] = 0;
}

int sif_header_parse(const uint8_t *b, size_t len, struct sif_header *ret, struct hutch_error *err)
{
        struct sif_header h = {0};

        if (len < SIF_HEADER_SIZE)
                return hutch_err(err, -EINVAL, "not a SIF file: too short for a SIF header");
        if (memcmp(b + 32, "SIF_MAGIC\0", 10) != 0)
                return hutch_err(err, -EINVAL, "not a SIF file: no SIF_MAGIC");
        copy_str(h.launch, b, 32);
        copy_str(h.version, b + 42, 3);
        copy_str(h.arch, b + 45, 3);
        memcpy(h.id, b + 48, 16);
        h.created = get64(b + 64);
        h.modified = get64(b + 72);
        h.descr_free = get64(b + 80);
        h.descr_total = get64(b + 88);
        h.descr_offset = get64(b + 96);
        h.descr_size = get64(b + 104);
        h.data_offset = get64(b + 112);
        h.data_size = get64(b + 120);
        if (strcmp(h.version, "01") != 0)
                return hutch_err(err, -EINVAL, "unsupported SIF version '%s'", h.version);
        if (h.descr_total < 0 || h.descr_total > MAX_DESCRIPTORS || h.descr_offset < SIF_HEADER_SIZE ||
            h.descr_size < h.descr_total * SIF_DESCRIPTOR_SIZE || h.descr_free < 0 || h.descr_free > h.descr_total)
                return hutch_err(err, -EINVAL, "corrupt SIF header: bad descriptor table");
        *ret = h;
        return 0;
}

void sif_descriptor_parse(const uint8_t *b, struct sif_descriptor *d)
{
        memset(d, 0, sizeof *d);
        d->datatype = (int32_t) get32(b);
        d->used = b[4] != 0;
        d->id = get32(b + 5);
        d->groupid = get32(b + 9);
        d->linkid = get32(b + 13);
        d->offset = get64(b + 17);
        d->size = get64(b + 25);
        d->size_with_padding = get64(b + 33);
        d->created = get64(b + 41);
        d->modified = get64(b + 49);
        d->uid = get64(b + 57);
        d->gid = get64(b + 65);
        copy_str(d->name, b + 73, 128);
        memcpy(d->extra, b + 201, 384);
        if (d->datatype == SIF_DATA_PARTITION) {
                d->fstype = (int32_t) get32(d->extra);
                d->parttype = (int32_t) get32(d->extra + 4);
                copy_str(d->arch, d->extra + 8, 3);
        }
}

void sif_header_format(const struct sif_header *h, uint8_t *b)
{
        memset(b, 0, SIF_HEADER_SIZE);
        memcpy(b, h->launch, strnlen(h->launch, 32));
        memcpy(b + 32, "SIF_MAGIC\0", 10);
        memcpy(b + 42, h->version, strnlen(h->version, 3));
        memcpy(b + 45, h->arch, strnlen(h->arch, 3));
        memcpy(b + 48, h->id, 16);
        put64(b + 64, h->created);
        put64(b + 72, h->modified);
        put64(b + 80, h->descr_free);
        put64(b + 88, h->descr_total);
        put64(b + 96, h->descr_offset);
        put64(b + 104, h->descr_size);
        put64(b + 112, h->data_offset);
        put64(b + 120, h->data_size);
}

void sif_descriptor_format(const struct sif_descriptor *d, uint8_t *b)
{
        memset(b, 0, SIF_DESCRIPTOR_SIZE);
        put32(b, (uint32_t) d->datatype);
        b[4] = d->used;
        put32(b + 5, d->id);
        put32(b + 9, d->groupid);
        put32(b + 13, d->linkid);
        put64(b + 17, d->offset);
        put64(b + 25, d->size);
        put64(b + 33, d->size_with_padding);
        put64(b + 41, d->created);
        put64(b + 49, d->modified);
        put64(b + 57, d->uid);
        put64(b + 65, d->gid);
        memcpy(b + 73, d->name, strnlen(d->name, 128));
        memcpy(b + 201, d->extra, 384);
        if (d->datatype == SIF_DATA_PARTITION) {
                put32(b + 201, (uint32_t) d->fstype);
                put32(b + 205, (uint32_t) d->parttype);
                memcpy(b + 209, d->arch, strnlen(d->arch, 3));
        }
}

int sif_load(int fd, uint64_t file_size, struct sif *ret, struct hutch_error *err)
{
        uint8_t hb[SIF_HEADER_SIZE];
        struct sif s = {0};

        ssize_t n = pread_full(fd, hb, sizeof hb, 0);
        if (n < 0)
                return hutch_err_sys(err, (int) n, "cannot read SIF header");
        int r = sif_header_parse(hb, (size_t) n, &s.header, err);
        if (r < 0)
                return r;
        uint64_t table = (uint64_t) s.header.descr_total * SIF_DESCRIPTOR_SIZE;
        if ((uint64_t) s.header.descr_offset + table > file_size)
                return hutch_err(err, -EINVAL, "truncated SIF file: descriptor table ends past the end of the file");
        _cleanup_free_ uint8_t *tb = malloc(table ? table : 1);
        _cleanup_free_ struct sif_descriptor *ds = calloc(s.header.descr_total ? s.header.descr_total : 1, sizeof *ds);
        if (!tb || !ds)
                return hutch_err(err, -ENOMEM, "out of memory");
        n = pread_full(fd, tb, table, s.header.descr_offset);
        if (n < 0 || (uint64_t) n != table)
                return hutch_err(err, n < 0 ? (int) n : -EIO, "cannot read SIF descriptor table");
        for (int64_t i = 0; i < s.header.descr_total; i++) {
                struct sif_descriptor *d = &ds[s.n_descr];
                sif_descriptor_parse(tb + i * SIF_DESCRIPTOR_SIZE, d);
                if (!d->used)
                        continue;
                if (d->offset < 0 || d->size < 0 || (uint64_t) d->offset + (uint64_t) d->size > file_size)
                        return hutch_err(err, -EINVAL, "truncated SIF file: object %u ends past the end of the file",
                                         d->id);
                s.n_descr++;
        }
        s.descr = steal_pointer(&ds);
        *ret = s;
        return 0;
}

void sif_free(struct sif *s)
{
        free(s->descr);
        s->descr = NULL;
        s->n_descr = 0;
}

const struct sif_descriptor *sif_descriptor_find(const struct sif *s, uint32_t id)
{
        for (size_t i = 0; i < s->n_descr; i++)
                if (s->descr[i].id == id)
                        return &s->descr[i];
        return NULL;
}

int sif_primary_partition(const struct sif *s, const struct sif_descriptor **ret, struct hutch_error *err)
{
        const struct sif_descriptor *found = NULL;

        for (size_t i = 0; i < s->n_descr && !found; i++)
                if (s->descr[i].datatype == SIF_DATA_PARTITION && s->descr[i].parttype == SIF_PART_PRIMSYS)
                        found = &s->descr[i];
        if (!found)
                return hutch_err(err, -ENOENT,
                                 "SIF image has no primary system partition (no squashfs root filesystem)");
        switch (found->fstype) {
        case SIF_FS_SQUASH: *ret = found; return 0;
        case SIF_FS_ENCRYPTED_SQUASH:
                return hutch_err(err, -EOPNOTSUPP,
                                 "SIF image's system partition is encrypted, which hutch does not support");
        default:
                return hutch_err(err, -EOPNOTSUPP, "SIF image's system partition is %s, not squashfs",
                                 sif_fstype_name(found->fstype));
        }
}

const char *sif_datatype_name(int32_t t)
{
        static const char *const names[] = {"Def.FILE",     "Env.Vars",    "JSON.Labels",           "FS",  "Signature",
                                            "JSON.Generic", "Generic/Raw", "Cryptographic Message", "SBOM"};
        if (t >= SIF_DATA_DEFFILE && t <= SIF_DATA_SBOM)
                return names[t - SIF_DATA_DEFFILE];
        return "Unknown";
}

const char *sif_fstype_name(int32_t t)
{
        static const char *const names[] = {"Squashfs", "Ext3", "Archive", "Raw", "Encrypted squashfs"};
        return t >= 1 && t <= 5 ? names[t - 1] : "Unknown";
}

const char *sif_parttype_name(int32_t t)
{
        static const char *const names[] = {"System", "*System", "Data", "Overlay"};
        return t >= 1 && t <= 4 ? names[t - 1] : "Unknown";
}

static const struct {
        const char *code, *name;
} arches[] = {
        {"01", "386"},  {"02", "amd64"},  {"03", "arm"},    {"04", "arm64"},    {"05", "ppc64"}, {"06", "ppc64le"},
        {"07", "mips"}, {"08", "mipsle"}, {"09", "mips64"}, {"10", "mips64le"}, {"11", "s390x"}, {"12", "riscv64"},
};

const char *sif_arch_name(const char *code)
{
        for (size_t i = 0; i < ELEMENTSOF(arches); i++)
                if (strcmp(arches[i].code, code) == 0)
                        return arches[i].name;
        return "unknown";
}

const char *sif_arch_code(const char *goarch)
{
        for (size_t i = 0; i < ELEMENTSOF(arches); i++)
                if (strcmp(arches[i].name, goarch) == 0)
                        return arches[i].code;
        return "00";
}

void sif_signature_meta(const struct sif_descriptor *d, int32_t *ret_hashtype, uint8_t ret_entity[SIF_ENTITY_LEN])
{
        *ret_hashtype = (int32_t) get32(d->extra);
        memcpy(ret_entity, d->extra + 4, SIF_ENTITY_LEN);
}

int sif_object_append(int fd, const void *data, size_t len, int64_t now, struct sif_descriptor *d,
                      struct hutch_error *err)
{
        uint8_t hb[SIF_HEADER_SIZE], db[SIF_DESCRIPTOR_SIZE];
        struct sif_header h;

        ssize_t n = pread_full(fd, hb, sizeof hb, 0);
        if (n < 0)
                return hutch_err_sys(err, (int) n, "cannot read SIF header");
        int r = sif_header_parse(hb, (size_t) n, &h, err);
        if (r < 0)
                return r;
        /* the first unused slot, as the reference writer picks it; its id is its index + 1 */
        int64_t i = 0;
        for (; i < h.descr_total; i++) {
                n = pread_full(fd, db, sizeof db, h.descr_offset + i * SIF_DESCRIPTOR_SIZE);
                if (n != SIF_DESCRIPTOR_SIZE)
                        return hutch_err(err, n < 0 ? (int) n : -EIO, "cannot read SIF descriptor table");
                if (!db[4])
                        break;
        }
        if (i == h.descr_total || h.descr_free <= 0)
                return hutch_err(err, -ENOSPC, "the SIF image has no free object descriptor left");
        if (h.data_offset < 0 || h.data_size < 0 || (uint64_t) h.data_size > INT64_MAX - len - h.data_offset)
                return hutch_err(err, -EINVAL, "corrupt SIF header: bad data section");
        d->used = true;
        d->id = (uint32_t) i + 1;
        d->offset = h.data_offset + h.data_size;
        d->size = d->size_with_padding = (int64_t) len;
        d->created = d->modified = now;
        if (write_full_at(fd, data, len, d->offset) < 0)
                return hutch_err_sys(err, -errno, "cannot write the new SIF object");
        sif_descriptor_format(d, db);
        if (write_full_at(fd, db, sizeof db, h.descr_offset + i * SIF_DESCRIPTOR_SIZE) < 0)
                return hutch_err_sys(err, -errno, "cannot write the SIF descriptor");
        put64(hb + 72, now);
        put64(hb + 80, h.descr_free - 1);
        put64(hb + 120, h.data_size + (int64_t) len);
        if (write_full_at(fd, hb, sizeof hb, 0) < 0)
                return hutch_err_sys(err, -errno, "cannot write the SIF header");
        return 0;
}
