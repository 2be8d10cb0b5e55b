/* overlay create: a new ext3 overlay image (Apptainer's `overlay create`). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "exit.h"
#include "image/image.h"
#include "util/util.h"

enum { OPT_SIZE = 0x100, OPT_SPARSE, OPT_CREATE_DIR, OPT_FAKEROOT };

static const struct option options[] = {
        {"size", required_argument, NULL, OPT_SIZE},
        {"sparse", no_argument, NULL, OPT_SPARSE},
        {"create-dir", required_argument, NULL, OPT_CREATE_DIR},
        {"fakeroot", no_argument, NULL, OPT_FAKEROOT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
};

/* The largest size taken: 16 TiB, ext3's limit with 4 KiB blocks. */
#define SIZE_MAX_MIB (16ull << 20)

static int overlay_create(int argc, char **argv)
{
        struct overlay_create_spec s = {.size_mib = OVERLAY_SIZE_MIN_MIB};
        struct hutch_error err = HUTCH_ERROR_INIT;
        _cleanup_strv_ char **dirs = NULL;
        bool fakeroot = false;
        int o, r;
        optind = 1;
        opterr = 0;
        while ((o = getopt_long(argc, argv, "+s:Sfh", options, NULL)) != -1) {
                switch (o) {
                case OPT_SIZE:
                case 's':
                        r = parse_u64_range(optarg, OVERLAY_SIZE_MIN_MIB, SIZE_MAX_MIB, &s.size_mib);
                        if (r < 0)
                                return cli_usage_error("overlay",
                                                       "--size wants a whole number of MiB from %d to %llu, not '%s'",
                                                       OVERLAY_SIZE_MIN_MIB, SIZE_MAX_MIB, optarg);
                        break;
                case OPT_SPARSE:
                case 'S': s.sparse = true; break;
                case OPT_FAKEROOT:
                case 'f': fakeroot = true; break;
                case OPT_CREATE_DIR:
                        if (overlay_create_dir_check(optarg, &err) < 0)
                                return cli_fail(&err);
                        if (strv_extend(&dirs, optarg) < 0)
                                return cli_usage_error("overlay", "out of memory");
                        break;
                case 'h': cli_help_print("overlay"); return 0;
                default: return cli_args_error("overlay", "unknown option '%s'", argv[optind - 1]);
                }
        }
        if (optind + 1 != argc)
                return cli_args_error("overlay", optind >= argc ? "missing FILE" : "create takes one FILE");
        s.target = argv[optind];
        s.create_dirs = dirs;
        /* --fakeroot: made as root of a user namespace whose root is the caller (as --fakeroot
         * maps it), so upper/, work/ and the --create-dir folders are uid 0 in the image: root
         * inside a --fakeroot container that mounts it in its namespace (hutch-ext3, as
         * Apptainer's fuse2fs, under --fakeroot) and root's own when root mounts it. The file stays the caller's. */
        if (fakeroot && getuid() != 0) {
                bool subids;
                if (runtime_fakeroot_enter(&subids, &err) < 0)
                        return cli_fail(&err);
        }
        return image_overlay_create(&s, &err) < 0 ? cli_fail(&err) : 0;
}

int verb_overlay(struct cli *c, int argc, char **argv)
{
        (void) c;
        if (argc < 2)
                return cli_args_error("overlay", "missing subcommand (create)");
        if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
                cli_help_print("overlay");
                return 0;
        }
        if (strcmp(argv[1], "create") != 0)
                return cli_args_error("overlay", "unknown subcommand '%s' (create)", argv[1]);
        return overlay_create(argc - 1, argv + 1);
}
