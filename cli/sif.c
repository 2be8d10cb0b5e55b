/* sif list|info|dump: the objects of a SIF file, as `apptainer sif` shows them. */
#include <errno.h>
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

static void type_string(const struct sif_descriptor *d, char *buf, size_t len)
{
        if (d->datatype == SIF_DATA_PARTITION)
                snprintf(buf, len, "FS (%s/%s/%s)", sif_fstype_name(d->fstype), sif_parttype_name(d->parttype),
                         sif_arch_name(d->arch));
        else
                snprintf(buf, len, "%s", sif_datatype_name(d->datatype));
}

static void link_string(uint32_t link, char *buf, size_t len)
{
        if (!link)
                snprintf(buf, len, "NONE");
        else if ((link & SIF_GROUP_MASK) == SIF_GROUP_MASK)
                snprintf(buf, len, "%u (G)", link & ~SIF_GROUP_MASK);
        else
                snprintf(buf, len, "%u", link);
}

static void sif_list(const struct sif *s)
{
        printf("%s%-5s|%-8s|%-8s|%-26s|%s\n%s", rule, "ID", "GROUP", "LINK", "SIF POSITION (start-end)", "TYPE", rule);
        for (size_t i = 0; i < s->n_descr; i++) {
                const struct sif_descriptor *d = &s->descr[i];
                char group[16], link[24], pos[48], type[96];
                if (d->groupid & ~SIF_GROUP_MASK)
                        snprintf(group, sizeof group, "%u", d->groupid & ~SIF_GROUP_MASK);
                else
                        snprintf(group, sizeof group, "NONE");
                link_string(d->linkid, link, sizeof link);
                snprintf(pos, sizeof pos, "%lld-%lld", (long long) d->offset, (long long) (d->offset + d->size));
                type_string(d, type, sizeof type);
                printf("%-5u|%-8s|%-8s|%-26s|%s\n", d->id, group, link, pos, type);
        }
}

static void sif_info(const struct sif_descriptor *d)
{
        char link[24], type[96];
        time_t t = (time_t) d->created;
        char when[64];
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %z", gmtime(&t));
        link_string(d->linkid, link, sizeof link);
        type_string(d, type, sizeof type);
        printf("Data Object ID: %u\nData Object Type: %s\nData Object Group: %u\nLinked ID: %s\n"
               "Offset: %lld\nSize: %lld\nCreated: %s\nName: %s\n",
               d->id, type, d->groupid & ~SIF_GROUP_MASK, link, (long long) d->offset, (long long) d->size, when,
               d->name);
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
                return cli_usage_error("sif", "expects list|info ID|dump ID and IMAGE.sif");
        const char *cmd = argv[1];
        bool needs_id = !strcmp(cmd, "info") || !strcmp(cmd, "dump");
        if (!needs_id && strcmp(cmd, "list") != 0)
                return cli_usage_error("sif", "unknown sif command '%s'", cmd);
        if ((needs_id && argc != 4) || (!needs_id && argc != 3))
                return cli_usage_error("sif", "wrong number of arguments for 'sif %s'", cmd);
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
        if (!needs_id)
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
