/* sif list|info|dump|header: the objects and header of a SIF file, as `apptainer sif` (the
 * sif module's siftool) prints them. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "exit.h"
#include "image/image.h"
#include "util/util.h"

static const char rule[] = "------------------------------------------------------------------------------\n";

/* The names siftool (the sif module Apptainer vendors) prints for a descriptor's extra
 * bytes: a signature's hash (Go's crypto.Hash names), a crypto message's format and type, an
 * SBOM's format. */
static const char *hash_name(int32_t t)
{
        static const char *const names[] = {"SHA-256", "SHA-384", "SHA-512", "BLAKE2s-256", "BLAKE2b-256"};
        return t >= 1 && t <= 5 ? names[t - 1] : "unknown";
}

static const char *crypt_format_name(int32_t t)
{
        return t == 1 ? "OpenPGP" : t == 2 ? "PEM" : "Unknown";
}

static const char *crypt_message_name(int32_t t)
{
        return t == 0x100 ? "Clear Signature" : t == 0x200 ? "RSA-OAEP" : "Unknown";
}

static const char *sbom_format_name(int32_t t)
{
        static const char *const names[] = {"cyclonedx-json", "cyclonedx-xml",  "github-json", "spdx-json",
                                            "spdx-rdf",       "spdx-tag-value", "spdx-yaml",   "syft-json"};
        return t >= 1 && t <= 8 ? names[t - 1] : "unknown";
}

static int32_t extra32(const struct sif_descriptor *d, size_t off)
{
        const uint8_t *b = d->extra + off;
        return (int32_t) ((uint32_t) b[0] | (uint32_t) b[1] << 8 | (uint32_t) b[2] << 16 | (uint32_t) b[3] << 24);
}

static void type_string(const struct sif_descriptor *d, char *buf, size_t len)
{
        const char *t = sif_datatype_name(d->datatype);
        switch (d->datatype) {
        case SIF_DATA_PARTITION:
                snprintf(buf, len, "%s (%s/%s/%s)", t, sif_fstype_name(d->fstype), sif_parttype_name(d->parttype),
                         sif_arch_name(d->arch));
                break;
        case SIF_DATA_SIGNATURE: snprintf(buf, len, "%s (%s)", t, hash_name(extra32(d, 0))); break;
        case SIF_DATA_CRYPTOMESSAGE:
                snprintf(buf, len, "%s (%s/%s)", t, crypt_format_name(extra32(d, 0)),
                         crypt_message_name(extra32(d, 4)));
                break;
        case SIF_DATA_SBOM: snprintf(buf, len, "%s (%s)", t, sbom_format_name(extra32(d, 0))); break;
        default: snprintf(buf, len, "%s", t);
        }
}

static void sif_list(const struct sif *s)
{
        printf("%s%-4s %-8s %-8s %-26s %s\n%s", rule, "ID", "|GROUP", "|LINK", "|SIF POSITION (start-end)", "|TYPE",
               rule);
        for (size_t i = 0; i < s->n_descr; i++) {
                const struct sif_descriptor *d = &s->descr[i];
                char group[16], link[24], pos[48], type[96];
                uint32_t g = d->groupid & ~SIF_GROUP_MASK, l = d->linkid & ~SIF_GROUP_MASK;
                snprintf(group, sizeof group, g ? "|%u" : "|NONE", g);
                if (!d->linkid)
                        snprintf(link, sizeof link, "|NONE");
                else if ((d->linkid & SIF_GROUP_MASK) == SIF_GROUP_MASK)
                        snprintf(link, sizeof link, "|%-3u (G)", l);
                else
                        snprintf(link, sizeof link, "|%u", d->linkid);
                snprintf(pos, sizeof pos, "|%lld-%lld ", (long long) d->offset, (long long) (d->offset + d->size));
                type_string(d, type, sizeof type);
                printf("%-4u %-8s %-8s %-26s |%s\n", d->id, group, link, pos, type);
        }
}

/* Key/value lines aligned as Go's tabwriter aligns siftool's: the keys' column as wide as
 * the longest key plus pad. */
struct kv_lines {
        char k[16][32], v[16][512];
        size_t n;
};

static void kv_add(struct kv_lines *t, const char *k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void kv_add(struct kv_lines *t, const char *k, const char *fmt, ...)
{
        if (t->n == ELEMENTSOF(t->k))
                return;
        va_list ap;
        va_start(ap, fmt);
        snprintf(t->k[t->n], sizeof t->k[0], "%s", k);
        vsnprintf(t->v[t->n], sizeof t->v[0], fmt, ap);
        va_end(ap);
        t->n++;
}

static void kv_print(const struct kv_lines *t, const char *indent, int pad)
{
        int w = 0;
        for (size_t i = 0; i < t->n; i++)
                if ((int) strlen(t->k[i]) > w)
                        w = (int) strlen(t->k[i]);
        for (size_t i = 0; i < t->n; i++)
                printf("%s%-*s%s\n", indent, w + pad, t->k[i], t->v[i]);
}

/* A SIF time as Go prints a time.Time in UTC; false for Go's zero time (what siftool omits). */
static bool go_time(int64_t unix_secs, char *buf, size_t len)
{
        if (unix_secs == -62135596800LL)
                return false;
        time_t t = (time_t) unix_secs;
        struct tm tm;
        if (!gmtime_r(&t, &tm))
                return false;
        strftime(buf, len, "%Y-%m-%d %H:%M:%S +0000 UTC", &tm);
        return true;
}

static void sif_info(const struct sif_descriptor *d)
{
        struct kv_lines t = {0};
        char when[64];
        uint32_t g = d->groupid & ~SIF_GROUP_MASK, l = d->linkid & ~SIF_GROUP_MASK;
        kv_add(&t, "Data Type:", "%s", sif_datatype_name(d->datatype));
        kv_add(&t, "ID:", "%u", d->id);
        kv_add(&t, "Group ID:", g ? "%u" : "NONE", g);
        if (!d->linkid)
                kv_add(&t, "Linked ID:", "NONE");
        else
                kv_add(&t, "Linked ID:", (d->linkid & SIF_GROUP_MASK) == SIF_GROUP_MASK ? "%u (G)" : "%u", l);
        kv_add(&t, "Offset:", "%lld", (long long) d->offset);
        kv_add(&t, "Size:", "%lld", (long long) d->size);
        if (go_time(d->created, when, sizeof when))
                kv_add(&t, "Created At:", "%s", when);
        if (go_time(d->modified, when, sizeof when))
                kv_add(&t, "Modified At:", "%s", when);
        if (d->name[0])
                kv_add(&t, "Name:", "%s", d->name);
        switch (d->datatype) {
        case SIF_DATA_PARTITION:
                kv_add(&t, "Filesystem Type:", "%s", sif_fstype_name(d->fstype));
                kv_add(&t, "Partition Type:", "%s", sif_parttype_name(d->parttype));
                kv_add(&t, "Architecture:", "%s", sif_arch_name(d->arch));
                break;
        case SIF_DATA_SIGNATURE: {
                char fp[41] = "";
                bool any = false;
                for (size_t i = 0; i < 20; i++) {
                        snprintf(fp + 2 * i, 3, "%02X", d->extra[4 + i]);
                        any |= d->extra[4 + i] != 0;
                }
                kv_add(&t, "Hash Type:", "%s", hash_name(extra32(d, 0)));
                if (any)
                        kv_add(&t, "Entity:", "%s", fp);
                break;
        }
        case SIF_DATA_CRYPTOMESSAGE:
                kv_add(&t, "Format Type:", "%s", crypt_format_name(extra32(d, 0)));
                kv_add(&t, "Message Type:", "%s", crypt_message_name(extra32(d, 4)));
                break;
        case SIF_DATA_SBOM: kv_add(&t, "Format:", "%s", sbom_format_name(extra32(d, 0))); break;
        }
        kv_print(&t, "  ", 2);
}

/* A size as siftool's readableSize prints it: "N B" under 1 KiB, else rounded in KiB, MiB... */
static void readable_size(int64_t size, char *buf, size_t len)
{
        if (size > -1024 && size < 1024) {
                snprintf(buf, len, "%lld B", (long long) size);
                return;
        }
        static const char units[] = "KMGTPE";
        uint64_t div = 1024;
        int exp = 0;
        for (int64_t n = size / 1024; n <= -1024 || n >= 1024; n /= 1024) {
                div *= 1024;
                exp++;
        }
        /* rounded half away from zero, as Go's math.Round */
        uint64_t mag = size < 0 ? (uint64_t) - (size + 1) + 1 : (uint64_t) size;
        snprintf(buf, len, "%s%llu %ciB", size < 0 ? "-" : "", (unsigned long long) ((mag + div / 2) / div),
                 units[exp]);
}

static void sif_header_print(const struct sif_header *h)
{
        struct kv_lines t = {0};
        char buf[64];
        static const uint8_t nil[16];
        if (h->launch[0]) {
                char launch[sizeof h->launch];
                snprintf(launch, sizeof launch, "%s", h->launch);
                size_t n = strlen(launch);
                if (n && launch[n - 1] == '\n')
                        launch[n - 1] = 0;
                kv_add(&t, "Launch Script:", "%s", launch);
        }
        kv_add(&t, "Version:", "%s", h->version);
        if (strcmp(sif_arch_name(h->arch), "unknown") != 0)
                kv_add(&t, "Primary Architecture:", "%s", sif_arch_name(h->arch));
        if (memcmp(h->id, nil, sizeof nil)) {
                const uint8_t *u = h->id;
                kv_add(&t, "ID:", "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
                       u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
        }
        if (go_time(h->created, buf, sizeof buf))
                kv_add(&t, "Created At:", "%s", buf);
        if (go_time(h->modified, buf, sizeof buf))
                kv_add(&t, "Modified At:", "%s", buf);
        kv_add(&t, "Descriptors Free:", "%lld", (long long) h->descr_free);
        kv_add(&t, "Descriptors Total:", "%lld", (long long) h->descr_total);
        kv_add(&t, "Descriptors Offset:", "%lld", (long long) h->descr_offset);
        readable_size(h->descr_size, buf, sizeof buf);
        kv_add(&t, "Descriptors Size:", "%s", buf);
        kv_add(&t, "Data Offset:", "%lld", (long long) h->data_offset);
        readable_size(h->data_size, buf, sizeof buf);
        kv_add(&t, "Data Size:", "%s", buf);
        kv_print(&t, "", 1);
}

static int sif_dump(int fd, const struct sif_descriptor *d)
{
        char buf[65536];
        int64_t left = d->size;
        off_t off = d->offset;
        while (left > 0) {
                ssize_t n = pread(fd, buf, left < (int64_t) sizeof buf ? (size_t) left : sizeof buf, off);
                if (n <= 0)
                        return -EIO;
                if (write_full(STDOUT_FILENO, buf, n) < 0)
                        return -EIO;
                left -= n;
                off += n;
        }
        return 0;
}

int verb_sif(struct cli *c, int argc, char **argv)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct sif s = {0};
        struct stat st;
        (void) c;

        if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
                cli_help_print("sif");
                return 0;
        }
        if (argc < 3)
                return cli_args_error("sif", "expects list|header|info ID|dump ID and IMAGE.sif");
        const char *cmd = argv[1];
        bool needs_id = !strcmp(cmd, "info") || !strcmp(cmd, "dump");
        if (!needs_id && strcmp(cmd, "list") != 0 && strcmp(cmd, "header") != 0)
                return cli_args_error("sif", "unknown sif command '%s'", cmd);
        if ((needs_id && argc != 4) || (!needs_id && argc != 3))
                return cli_args_error("sif", "wrong number of arguments for 'sif %s'", cmd);
        const char *path = argv[argc - 1];
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0 || fstat(fd, &st) < 0) {
                hutch_err_sys(&err, -errno, "cannot open '%s'", path);
                return cli_fail(&err);
        }
        if (!S_ISREG(st.st_mode)) {
                hutch_err(&err, -EINVAL, "'%s' is not a SIF file (not a regular file)", path);
                return cli_fail(&err);
        }
        if (sif_load(fd, (uint64_t) st.st_size, &s, &err) < 0) {
                hutch_err_wrap(&err, "'%s'", path);
                return cli_fail(&err);
        }
        int r = 0;
        if (!strcmp(cmd, "header"))
                sif_header_print(&s.header);
        else if (!needs_id)
                sif_list(&s);
        else {
                uint64_t id;
                const struct sif_descriptor *d = parse_u64_range(argv[2], 1, UINT32_MAX, &id) < 0
                                                         ? NULL
                                                         : sif_descriptor_find(&s, (uint32_t) id);
                if (!d) {
                        hutch_err(&err, -ENOENT, "'%s' has no object with ID '%s'", path, argv[2]);
                        r = cli_fail(&err);
                } else if (!strcmp(cmd, "info"))
                        sif_info(d);
                else if (sif_dump(fd, d) < 0) {
                        hutch_err(&err, -EIO, "cannot read object %s of '%s'", argv[2], path);
                        r = cli_fail(&err);
                }
        }
        sif_free(&s);
        return r;
}
