/* inspect and run-help: an image's metadata, read without starting a container. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "exit.h"
#include "image/image.h"
#include "util/util.h"

/* Apptainer's flags and their short forms (cmd/internal/cli/inspect.go). */
static const struct {
        const char *flag, *short_flag;
        unsigned bit;
} inspect_flags[] = {
        {"--all", NULL, IMAGE_META_ALL},
        {"--deffile", "-d", IMAGE_META_DEFFILE},
        {"--environment", "-e", IMAGE_META_ENVIRONMENT},
        {"--helpfile", "-H", IMAGE_META_HELPFILE},
        {"--labels", "-l", IMAGE_META_LABELS},
        {"--runscript", "-r", IMAGE_META_RUNSCRIPT},
        {"--startscript", "-s", IMAGE_META_STARTSCRIPT},
        {"--test", "-t", IMAGE_META_TEST},
};

static const char app_bad[] = "";
#define APP_BAD app_bad

/* --app NAME or --app=NAME at argv[*i] (*i moved onto NAME): the name; APP_BAD for a bad
 * or missing one; else cur. */
static const char *app_option(int argc, char **argv, int *i, const char *cur)
{
        const char *v = NULL;
        if (!strcmp(argv[*i], "--app"))
                v = *i + 1 < argc ? argv[++*i] : APP_BAD;
        else if (startswith(argv[*i], "--app="))
                v = argv[*i] + strlen("--app=");
        else
                return cur;
        return v != APP_BAD && cli_is_app_name(v) ? v : APP_BAD;
}

/* --list-apps: the apps, sorted, one a line. */
static int print_apps(struct image *img, struct hutch_error *err)
{
        _cleanup_strv_ char **names = NULL;
        int r = image_list_apps(img, &names, err);
        for (char **n = names; r >= 0 && n && *n; n++)
                printf("%s\n", *n);
        return r;
}

static int print_meta(const char *path, const char *app, unsigned what, bool json, bool apps, const char *empty_msg)
{
        struct image img = IMAGE_NULL;
        struct hutch_error err = HUTCH_ERROR_INIT;
        _cleanup_free_ char *out = NULL;

        int r = image_open(path, false, &img, &err);
        if (r >= 0 && app) {
                /* an app has one of these at least (image_has_file reads files, not folders) */
                static const char *const any[] = {"labels.json", "runscript",      "env/90-environment.sh",
                                                  "test",        "runscript.help", "startscript"};
                bool found = false;
                for (size_t i = 0; i < ELEMENTSOF(any) && !found; i++) {
                        char p[4096];
                        snprintf(p, sizeof p, "/scif/apps/%s/scif/%s", app, any[i]);
                        found = image_has_file(&img, p);
                }
                img.app = app;
                if (!found)
                        r = hutch_err(&err, -ENOENT, "no app '%s' in '%s'", app, path);
        }
        if (r >= 0 && apps && !json)
                r = print_apps(&img, &err);
        if (r >= 0)
                r = json ? image_inspect_json(&img, what, &out, &err) : image_inspect_text(&img, what, &out, &err);
        image_close(&img);
        if (r < 0)
                return cli_fail(&err);
        if (!*out && empty_msg)
                printf("%s\n", empty_msg);
        else
                fputs(out, stdout);
        if (json)
                putchar('\n');
        return 0;
}

int verb_inspect(struct cli *c, int argc, char **argv)
{
        unsigned what = 0;
        bool json = false, apps = false;
        const char *image = NULL, *app = NULL;
        (void) c;

        for (int i = 1; i < argc; i++) {
                bool known = false;
                if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                        cli_help_print("inspect");
                        return 0;
                }
                if (!strcmp(argv[i], "--json") || !strcmp(argv[i], "-j"))
                        json = known = true;
                if (!strcmp(argv[i], "--list-apps"))
                        apps = known = true;
                if (!strcmp(argv[i], "--app") || startswith(argv[i], "--app=")) {
                        if ((app = app_option(argc, argv, &i, app)) == APP_BAD)
                                return cli_usage_error("inspect", "--app wants an app's name");
                        continue;
                }
                for (size_t k = 0; k < ELEMENTSOF(inspect_flags) && !known; k++)
                        if (!strcmp(argv[i], inspect_flags[k].flag) ||
                            (inspect_flags[k].short_flag && !strcmp(argv[i], inspect_flags[k].short_flag))) {
                                what |= inspect_flags[k].bit;
                                /* --all shows everything, as JSON only (as Apptainer) */
                                json |= inspect_flags[k].bit == IMAGE_META_ALL;
                                known = true;
                        }
                if (known || cli_log_flag(argv[i]))
                        continue;
                if (argv[i][0] == '-')
                        return cli_args_error("inspect", "unknown option '%s'", argv[i]);
                if (image)
                        return cli_args_error("inspect", "one IMAGE only");
                image = argv[i];
        }
        if (!image)
                return cli_args_error("inspect", "missing IMAGE");
        /* the labels unless something else is asked (Apptainer's defaultToLabels) */
        /* with --json, --list-apps gives each app's attributes (as Apptainer's from a SIF) */
        if (apps && json)
                what |= IMAGE_META_APPS;
        return print_meta(image, app, what ? what : apps ? 0 : IMAGE_META_LABELS, json, apps, NULL);
}

int verb_run_help(struct cli *c, int argc, char **argv)
{
        const char *app = NULL;
        (void) c;
        if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
                cli_help_print("run-help");
                return 0;
        }
        int i = 1;
        if (argc > 1 && (app = app_option(argc, argv, &i, NULL)) == APP_BAD)
                return cli_usage_error("run-help", "--app wants an app's name");
        if (app)
                i++;
        if (argc - i != 1)
                return cli_args_error("run-help", "expects exactly one IMAGE");
        return print_meta(argv[i], app, IMAGE_META_HELPFILE, false, false,
                          "No help sections were defined for this image");
}
