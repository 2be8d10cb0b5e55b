/* build: conversions between sandbox folders, squashfs files and SIF files, and builds
 * from definition files (recipe/). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "exit.h"
#include "image/image.h"
#include "recipe/recipe.h"
#include "util/log.h"
#include "util/util.h"

struct build_args {
        bool sandbox, force, notest, fakeroot, update, writable_tmpfs, keep_build, fix_perms, warn_unused,
                disable_cache;
        char **build_args, **sections;
        struct bind_spec *binds;
        size_t n_binds;
        const char *pos[2];
        int n;
};

static void build_args_free(struct build_args *a)
{
        strv_free(a->build_args);
        strv_free(a->sections);
        bind_spec_free_array(a->binds, a->n_binds);
}

/* An option with a value: "--opt V" or "--opt=V"; *i advanced. NULL when argv[*i] is not it. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, bool *missing)
{
        size_t n = strlen(name);
        if (strncmp(argv[*i], name, n))
                return NULL;
        if (argv[*i][n] == '=')
                return argv[*i] + n + 1;
        if (argv[*i][n])
                return NULL;
        if (*i + 1 >= argc) {
                *missing = true;
                return NULL;
        }
        return argv[++*i];
}

static int build_arg_file(struct build_args *a, const char *path)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        _cleanup_free_ char *text = NULL;
        int r = read_regular_at(AT_FDCWD, path, 1 << 20, &text, NULL);
        if (r < 0) {
                hutch_err_sys(&err, r, "cannot read --build-arg-file '%s'", path);
                return cli_fail(&err);
        }
        if (recipe_build_args_parse(text, &a->build_args, &err) < 0) {
                hutch_err_wrap(&err, "--build-arg-file '%s'", path);
                return cli_fail(&err);
        }
        return -1;
}

/* --section's names (Apptainer's, and the other sections a build runs or writes) */
static bool is_section_arg(const char *s)
{
        static const char *const names[] = {"all",       "none",        "setup", "files",  "post", "environment",
                                            "runscript", "startscript", "test",  "labels", "help"};
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (!strcmp(s, names[i]))
                        return true;
        return false;
}

/* -1 to go on, else the exit code */
static int parse_args(struct build_args *a, int argc, char **argv)
{
        for (int i = 1; i < argc; i++) {
                const char *v;
                bool missing = false;
                if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                        cli_help_print("build");
                        return 0;
                }
                if (!strcmp(argv[i], "-s") || !strcmp(argv[i], "--sandbox"))
                        a->sandbox = true;
                else if (!strcmp(argv[i], "-F") || !strcmp(argv[i], "--force"))
                        a->force = true;
                else if (!strcmp(argv[i], "-T") || !strcmp(argv[i], "--notest"))
                        a->notest = true;
                else if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--fakeroot"))
                        a->fakeroot = true;
                else if (!strcmp(argv[i], "-u") || !strcmp(argv[i], "--update"))
                        a->update = true;
                else if (!strcmp(argv[i], "--writable-tmpfs"))
                        a->writable_tmpfs = true;
                else if (!strcmp(argv[i], "--keep-build") || !strcmp(argv[i], "--no-cleanup"))
                        a->keep_build = true;
                else if (!strcmp(argv[i], "--fix-perms"))
                        a->fix_perms = true;
                else if (!strcmp(argv[i], "--warn-unused-build-args"))
                        a->warn_unused = true;
                else if (!strcmp(argv[i], "--userns"))
                        ; /* a user's build always has its namespace */
                else if (!strcmp(argv[i], "--disable-cache"))
                        a->disable_cache = true;
                else if ((v = opt_value(argc, argv, &i, "--mount", &missing))) {
                        struct hutch_error err = HUTCH_ERROR_INIT;
                        if (mount_spec_parse(v, &a->binds, &a->n_binds, &err) < 0)
                                return cli_usage_error("build", "--mount '%s': %s", v, err.msg);
                } else if ((v = opt_value(argc, argv, &i, "-B", &missing)) ||
                           (!missing && (v = opt_value(argc, argv, &i, "--bind", &missing)))) {
                        struct hutch_error err = HUTCH_ERROR_INIT;
                        if (bind_spec_parse(v, &a->binds, &a->n_binds, &err) < 0)
                                return cli_usage_error("build", "--bind '%s': %s", v, err.msg);
                } else if ((v = opt_value(argc, argv, &i, "--section", &missing))) {
                        _cleanup_strv_ char **parts = NULL;
                        if (strsplit(v, ",", &parts) < 0)
                                return cli_usage_error("build", "out of memory");
                        for (char **p = parts; p && *p; p++)
                                if (!is_section_arg(*p))
                                        return cli_usage_error("build", "--section: '%s' is not a section", *p);
                                else if (strv_extend(&a->sections, *p) < 0)
                                        return cli_usage_error("build", "out of memory");
                } else if ((v = opt_value(argc, argv, &i, "--build-arg", &missing))) {
                        if (!strchr(v, '=') || v[0] == '=')
                                return cli_usage_error("build", "--build-arg wants KEY=VALUE, not '%s'", v);
                        if (strv_extend(&a->build_args, v) < 0)
                                return cli_usage_error("build", "out of memory");
                } else if (!missing && (v = opt_value(argc, argv, &i, "--build-arg-file", &missing))) {
                        int r = build_arg_file(a, v);
                        if (r >= 0)
                                return r;
                } else if (missing)
                        return cli_args_error("build", "option '%s' needs a value", argv[i]);
                else if (cli_log_flag(argv[i]))
                        ;
                else if (argv[i][0] == '-' && argv[i][1])
                        return cli_args_error("build", "unknown option '%s'", argv[i]);
                else if (a->n == 2)
                        return cli_args_error("build", "expects TARGET and SOURCE only");
                else
                        a->pos[a->n++] = argv[i];
        }
        if (a->n != 2)
                return cli_args_error("build", "expects TARGET and SOURCE");
        return -1;
}

static int build_recipe(struct cli *c, const struct build_args *a, bool progress)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        int r = cli_load_conf(c);
        if (r != 0)
                return r;
        struct recipe_build_spec s = {
                .target = a->pos[0],
                .path = a->pos[1],
                .sandbox = a->sandbox,
                .force = a->force,
                .notest = a->notest,
                .fakeroot = a->fakeroot,
                .update = a->update,
                .sections = a->sections,
                .progress = progress,
                .build_args = a->build_args,
                .binds = a->binds,
                .n_binds = a->n_binds,
                .writable_tmpfs = a->writable_tmpfs,
                .keep_build = a->keep_build,
                .fix_perms = a->fix_perms,
                .warn_unused_args = a->warn_unused,
                .disable_cache = a->disable_cache,
                .conf = &c->conf,
                .host_env = c->environ,
        };
        r = recipe_build(&s, &err);
        conf_free(&c->conf);
        return r < 0 ? cli_fail(&err) : 0;
}

int verb_build(struct cli *c, int argc, char **argv)
{
        struct build_args a = {0};
        struct build_spec b = {0};
        struct hutch_error err = HUTCH_ERROR_INIT;
        int r = parse_args(&a, argc, argv);
        if (r >= 0) {
                build_args_free(&a);
                return r;
        }
        bool progress = isatty(STDOUT_FILENO) && log_get_level() >= LOG_LEVEL_INFO;
        if (cli_is_deffile(a.pos[1])) {
                r = build_recipe(c, &a, progress);
                build_args_free(&a);
                return r;
        }
        bool fix_perms = a.fix_perms, disable_cache = a.disable_cache;
        bool recipe_only = a.notest || a.fakeroot || a.build_args || a.update || a.sections || a.binds ||
                           a.writable_tmpfs || a.keep_build || a.warn_unused;
        build_args_free(&a);
        if (recipe_only)
                return cli_usage_error("build", "--notest, --fakeroot, --update, --section, --build-arg, --bind, "
                                                "--mount, --writable-tmpfs, --keep-build and --warn-unused-build-args "
                                                "are for definition files");
        b.target = a.pos[0];
        b.sandbox = a.sandbox;
        b.force = a.force;
        b.progress = progress;
        b.source = a.pos[1];
        /* build TARGET docker://... (as Apptainer): the image pulled into the cache by
         * hutch-registry, then converted from that SIF as any other source */
        char *pulled = NULL;
        if (cli_is_registry_source(b.source)) {
                if ((r = cli_registry_fetch(b.source, false, disable_cache, &pulled)) >= 0)
                        return r;
                b.source = pulled;
        } else if ((r = cli_source_check(b.source, true)) >= 0)
                return r;
        r = image_build(&b, &err);
        if (pulled && disable_cache)
                unlink_with_folder(pulled);
        free(pulled);
        /* a SIF or squashfs is read-only inside: only a sandbox's permissions get in the way */
        if (r >= 0 && fix_perms && b.sandbox && (r = tree_fix_perms(b.target)) < 0)
                hutch_err_sys(&err, r, "--fix-perms: cannot set the permissions in '%s'", b.target);
        return r < 0 ? cli_fail(&err) : 0;
}
