/* build: conversions between sandbox folders, squashfs files and SIF files. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "exit.h"
#include "image/image.h"
#include "util/log.h"

int verb_build(struct cli *c, int argc, char **argv)
{
        struct build_spec b = {0};
        struct hutch_error err = HUTCH_ERROR_INIT;
        const char *pos[2];
        int n = 0;
        (void) c;

        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                        cli_help_print("build");
                        return 0;
                }
                if (!strcmp(argv[i], "-s") || !strcmp(argv[i], "--sandbox"))
                        b.sandbox = true;
                else if (!strcmp(argv[i], "-F") || !strcmp(argv[i], "--force"))
                        b.force = true;
                else if (cli_log_flag(argv[i]))
                        ;
                else if (argv[i][0] == '-' && argv[i][1])
                        return cli_usage_error("build", "unknown option '%s'", argv[i]);
                else if (n == 2)
                        return cli_usage_error("build", "expects TARGET and SOURCE only");
                else
                        pos[n++] = argv[i];
        }
        if (n != 2)
                return cli_usage_error("build", "expects TARGET and SOURCE");
        b.target = pos[0];
        b.progress = isatty(STDOUT_FILENO) && log_get_level() >= LOG_LEVEL_INFO;
        b.source = pos[1];
        int r = cli_source_check(b.source, true);
        if (r >= 0)
                return r;
        if (image_build(&b, &err) < 0)
                return cli_fail(&err);
        return 0;
}
