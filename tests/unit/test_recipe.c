/* recipe: the definition file parser (header, sections, %files, apps, stages, templates). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "recipe/recipe-internal.h"
#include "recipe/recipe.h"
#include "util/log.h"
#include "util/util.h"

static int parse(const char *text, char *const *args, struct recipe *r, struct hutch_error *e)
{
        *e = (struct hutch_error) HUTCH_ERROR_INIT;
        return recipe_parse(text, strlen(text), args, "t.def", r, e);
}

static void test_recipe_header_sections(void **state)
{
        (void) state;
        static const char def[] = "# a comment before the header\n"
                                  "BootStrap: localimage\n"
                                  "From: /images/base.sif   # trailing comment\n"
                                  "Include: a \\\n"
                                  "  b\n"
                                  "GPG: https://example.org/RPM-GPG-KEY\n"
                                  "\n"
                                  "%help\n"
                                  "  Some help.\n"
                                  "%setup\n"
                                  "  touch $APPTAINER_ROOTFS/x\n"
                                  "%environment\n"
                                  "  export A=1\n"
                                  "%post -c /bin/bash\n"
                                  "  echo post\n"
                                  "%runscript\n"
                                  "  echo run \"$@\"\n"
                                  "%startscript\n"
                                  "  echo start\n"
                                  "%test\n"
                                  "  true\n"
                                  "%labels\n"
                                  "  Author me@example.org\n"
                                  "  Version   1.0 beta\n"
                                  "  Author you\n"
                                  "%pre\n"
                                  "  echo pre\n";
        struct recipe r;
        struct hutch_error e;
        assert_int_equal(parse(def, NULL, &r, &e), 0);
        assert_int_equal(r.n_stages, 1);
        const struct recipe_stage *st = &r.stages[0];
        assert_string_equal(st->bootstrap, "localimage");
        assert_string_equal(st->from, "/images/base.sif");
        assert_string_equal(recipe_header_get(st, "include"), "a b");
        assert_string_equal(recipe_header_get(st, "gpg"), "https://example.org/RPM-GPG-KEY");
        assert_null(st->name);
        assert_string_equal(st->script[RECIPE_HELP].text, "  Some help.\n");
        assert_string_equal(st->script[RECIPE_POST].text, "  echo post\n");
        assert_string_equal(st->script[RECIPE_POST].args, "-c /bin/bash");
        assert_null(st->script[RECIPE_RUNSCRIPT].args);
        assert_string_equal(st->script[RECIPE_RUNSCRIPT].text, "  echo run \"$@\"\n");
        assert_string_equal(st->script[RECIPE_STARTSCRIPT].text, "  echo start\n");
        assert_string_equal(st->script[RECIPE_TEST].text, "  true\n");
        assert_string_equal(st->script[RECIPE_SETUP].text, "  touch $APPTAINER_ROOTFS/x\n");
        assert_string_equal(st->script[RECIPE_ENVIRONMENT].text, "  export A=1\n");
        assert_string_equal(st->script[RECIPE_PRE].text, "  echo pre\n");
        assert_int_equal(st->n_labels, 2);
        assert_string_equal(st->labels[0].key, "Author");
        assert_string_equal(st->labels[0].value, "you");
        assert_string_equal(st->labels[1].value, "1.0 beta");
        assert_memory_equal(r.raw, def, sizeof def - 1);
        assert_int_equal(r.raw_len, sizeof def - 1);
        recipe_free(&r);
}

static void test_recipe_files(void **state)
{
        (void) state;
        struct recipe r;
        struct hutch_error e;
        assert_int_equal(parse("Bootstrap: scratch\n"
                               "%files\n"
                               "  /etc/hostname\n"
                               "  # a comment\n"
                               "\n"
                               "  /data/*.txt /opt/\n"
                               "  \"/my dir/a b\" '/opt/c d'\n"
                               "  \"/x\"/y /z\n"
                               "%post\n"
                               "  true\n"
                               "%files\n"
                               "  /second /2\n",
                               NULL, &r, &e),
                         0);
        const struct recipe_stage *st = &r.stages[0];
        assert_int_equal(st->n_files, 1);
        assert_null(st->files[0].from);
        assert_int_equal(st->files[0].n, 5);
        assert_string_equal(st->files[0].lines[0].src, "/etc/hostname");
        assert_string_equal(st->files[0].lines[0].dst, "");
        assert_string_equal(st->files[0].lines[1].src, "/data/*.txt");
        assert_string_equal(st->files[0].lines[1].dst, "/opt/");
        assert_string_equal(st->files[0].lines[2].src, "/my dir/a b");
        assert_string_equal(st->files[0].lines[2].dst, "/opt/c d");
        assert_string_equal(st->files[0].lines[3].src, "/x/y");
        assert_string_equal(st->files[0].lines[4].src, "/second");
        recipe_free(&r);

        assert_int_equal(parse("Bootstrap: scratch\n%files\n  /a /b /c\n", NULL, &r, &e), -EINVAL);
        assert_non_null(strstr(e.msg, "t.def:3: %files line '/a /b /c'"));
        assert_int_equal(parse("Bootstrap: scratch\n%files to x\n  /a\n", NULL, &r, &e), -EINVAL);
        assert_non_null(strstr(e.msg, "'from STAGE'"));
}

static void test_recipe_stages(void **state)
{
        (void) state;
        struct recipe r;
        struct hutch_error e;
        assert_int_equal(parse("# leading comment\n\n"
                               "Bootstrap: busybox\n"
                               "Stage: devel\n"
                               "%post\n"
                               "  echo one > /one\n"
                               "bootstrap: scratch\n"
                               "stage: final\n"
                               "%files from devel\n"
                               "  /one /two\n"
                               "%files FROM devel\n"
                               "  /three\n"
                               "%files\n"
                               "  /host\n",
                               NULL, &r, &e),
                         0);
        assert_int_equal(r.n_stages, 2);
        assert_string_equal(r.stages[0].name, "devel");
        assert_string_equal(r.stages[0].bootstrap, "busybox");
        assert_string_equal(r.stages[1].name, "final");
        assert_int_equal(r.stages[1].n_files, 2);
        assert_string_equal(r.stages[1].files[0].from, "devel");
        assert_int_equal(r.stages[1].files[0].n, 2);
        assert_string_equal(r.stages[1].files[0].lines[1].src, "/three");
        assert_null(r.stages[1].files[1].from);
        assert_int_equal(recipe_stage_find(&r, "final"), 1);
        assert_int_equal(recipe_stage_find(&r, "nope"), -1);
        recipe_free(&r);

        assert_int_equal(
                parse("Bootstrap: scratch\n%files from later\n /a\nBootstrap: scratch\nStage: later\n", NULL, &r, &e),
                -EINVAL);
        assert_non_null(strstr(e.msg, "no stage before this one is named 'later'"));
        assert_int_equal(parse("Bootstrap: scratch\nStage: a\nBootstrap: scratch\nStage: a\n", NULL, &r, &e), -EINVAL);
        assert_non_null(strstr(e.msg, "two stages named 'a'"));
}

static void test_recipe_apps(void **state)
{
        (void) state;
        struct recipe r;
        struct hutch_error e;
        assert_int_equal(parse("Bootstrap: scratch\n"
                               "%appinstall foo\n"
                               "  make foo\n"
                               "%apprun foo\n"
                               "  exec foo \"$@\"\n"
                               "%appenv foo\n"
                               "  FOO=1\n"
                               "%applabels foo\n"
                               "  Kind tool\n"
                               "%appfiles foo\n"
                               "  /etc/a /a\n"
                               "%apphelp bar\n"
                               "  bar's help\n"
                               "%apptest foo\n"
                               "  foo --version\n"
                               "%appstart foo\n"
                               "  foo -d\n",
                               NULL, &r, &e),
                         0);
        const struct recipe_stage *st = &r.stages[0];
        assert_int_equal(st->n_apps, 2);
        assert_string_equal(st->apps[0].name, "foo");
        assert_string_equal(st->apps[1].name, "bar");
        assert_string_equal(st->apps[0].script[RECIPE_APP_INSTALL].text, "  make foo\n");
        assert_string_equal(st->apps[0].script[RECIPE_APP_RUN].text, "  exec foo \"$@\"\n");
        assert_string_equal(st->apps[0].script[RECIPE_APP_ENV].text, "  FOO=1\n");
        assert_string_equal(st->apps[0].script[RECIPE_APP_TEST].text, "  foo --version\n");
        assert_string_equal(st->apps[0].script[RECIPE_APP_START].text, "  foo -d\n");
        assert_int_equal(st->apps[0].n_labels, 1);
        assert_string_equal(st->apps[0].labels[0].value, "tool");
        assert_int_equal(st->apps[0].n_files, 1);
        assert_string_equal(st->apps[0].files[0].dst, "/a");
        assert_string_equal(st->apps[1].script[RECIPE_APP_HELP].text, "  bar's help\n");
        recipe_free(&r);

        assert_int_equal(parse("Bootstrap: scratch\n%apprun\n  x\n", NULL, &r, &e), -EINVAL);
        assert_non_null(strstr(e.msg, "%apprun needs the app's name"));
        assert_int_equal(parse("Bootstrap: scratch\n%apprun ../x\n  x\n", NULL, &r, &e), -EINVAL);
}

static void test_recipe_twice_crlf_unknown(void **state)
{
        (void) state;
        struct recipe r;
        struct hutch_error e;
        assert_int_equal(
                parse("Bootstrap: scratch\r\n%post\r\n  echo 1\r\n%runscript\r\n  run\r\n%post -c /bin/bash\r\n"
                      "  echo 2\r\n",
                      NULL, &r, &e),
                0);
        assert_string_equal(r.stages[0].bootstrap, "scratch");
        assert_string_equal(r.stages[0].script[RECIPE_POST].text, "  echo 1\n  echo 2\n");
        assert_string_equal(r.stages[0].script[RECIPE_POST].args, "-c /bin/bash");
        assert_string_equal(r.stages[0].script[RECIPE_RUNSCRIPT].text, "  run\n");
        assert_non_null(strstr(r.raw, "\r\n"));
        recipe_free(&r);

        assert_int_equal(parse("Bootstrap: scratch\n%postinstall\n  x\n", NULL, &r, &e), -EINVAL);
        assert_string_equal(e.msg, "t.def:2: invalid section '%postinstall' (not one of Apptainer's)");
        assert_int_equal(parse("Bootstrap: scratch\nColour: blue\n", NULL, &r, &e), -EINVAL);
        assert_string_equal(e.msg, "t.def:2: unknown header keyword 'colour'");
        assert_int_equal(parse("Bootstrap: scratch\nOtherURL1: http://x\nnot a header line\n", NULL, &r, &e), -EINVAL);
        assert_non_null(strstr(e.msg, "t.def:3: header line 'not a header line'"));
        assert_int_equal(parse("From: x\n%post\n  true\n", NULL, &r, &e), -EINVAL);
        assert_string_equal(e.msg, "t.def: no 'Bootstrap:' header");
        assert_int_equal(parse("# nothing\n\n", NULL, &r, &e), -EINVAL);
        assert_string_equal(e.msg, "t.def: empty definition file");
        assert_int_equal(recipe_parse("Bootstrap: x\0y", 14, NULL, "t.def", &r, &e), -EINVAL);
}

static void test_recipe_templates(void **state)
{
        (void) state;
        struct recipe r;
        struct hutch_error e;
        static const char def[] = "Bootstrap: {{ agent }}\n"
                                  "%arguments\n"
                                  "  agent=scratch\n"
                                  "  greeting=\"hello world\"\n"
                                  "  # comment=no\n"
                                  "%post\n"
                                  "  echo {{greeting}} {{  who }} {{ .Go.Template }} {not}\n";
        char *args[] = {"who=me", "unused=1", "who=you", NULL};
        assert_int_equal(parse(def, args, &r, &e), 0);
        assert_string_equal(r.stages[0].bootstrap, "scratch");
        assert_string_equal(r.stages[0].script[RECIPE_POST].text, "  echo hello world you {{ .Go.Template }} {not}\n");
        assert_int_equal(strv_length(r.unused_args), 1);
        assert_string_equal(r.unused_args[0], "unused");
        assert_string_equal(r.raw, def); /* the file as written */
        recipe_free(&r);

        char *over[] = {"agent=busybox", NULL};
        assert_int_equal(parse(def, over, &r, &e), -EINVAL);
        assert_string_equal(e.msg, "t.def:7: build argument 'who' has no value: give it with --build-arg who=VALUE "
                                   "or a default in %arguments");
        assert_int_equal(parse("Bootstrap: scratch\n%post\n  echo {{ x\n  y }}\n", NULL, &r, &e), -EINVAL);
        assert_string_equal(e.msg, "t.def:3: unterminated template '{{ x' (no '}}' on its line)");
}

static void test_recipe_build_args_file(void **state)
{
        (void) state;
        struct hutch_error e = HUTCH_ERROR_INIT;
        _cleanup_strv_ char **args = NULL;
        assert_int_equal(recipe_build_args_parse("# c\nA=1\r\n\n  B = x y\n", &args, &e), 0);
        assert_int_equal(strv_length(args), 2);
        assert_string_equal(args[0], "A=1");
        assert_int_equal(recipe_build_args_parse("A=1\nnoequals\n", &args, &e), -EINVAL);
        assert_string_equal(e.msg, "line 2: 'noequals' is not KEY=VALUE");
}

#define FP_A "12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84"
#define FP_B "0123456789ABCDEF0123456789ABCDEF01234567"

static void test_recipe_fingerprints_parse(void **state)
{
        (void) state;
        struct hutch_error e = HUTCH_ERROR_INIT;
        _cleanup_strv_ char **fps = NULL, **none = NULL;
        /* Apptainer: a trailing comment dropped, comma-separated, spaces trimmed; any case */
        assert_int_equal(fingerprints_parse(" 12045c8c0b1004d058de4beda20c27ee7ff7ba84 ,\t" FP_B ", " FP_A
                                            " # the two release keys",
                                            &fps, &e),
                         0);
        assert_int_equal(strv_length(fps), 2);
        assert_string_equal(fps[0], FP_A);
        assert_string_equal(fps[1], FP_B);
        assert_int_equal(fingerprints_parse("  # nothing", &none, &e), 0);
        assert_null(none);
        assert_int_equal(fingerprints_parse("12345678", &none, &e), -EINVAL);
        assert_string_equal(e.msg, "'Fingerprints: 12345678': '12345678' is not a key fingerprint (40 hex digits, "
                                   "comma-separated)");
        assert_int_equal(fingerprints_parse(FP_A ",," FP_B, &none, &e), -EINVAL);
        assert_non_null(strstr(e.msg, "'' is not a key fingerprint"));
        assert_int_equal(fingerprints_parse(FP_A ",", &none, &e), -EINVAL);
        assert_int_equal(fingerprints_parse("1204 5C8C 0B10 04D0 58DE  4BED A20C 27EE 7FF7 BA84", &none, &e), -EINVAL);
        assert_int_equal(fingerprints_parse("G2045C8C0B1004D058DE4BEDA20C27EE7FF7BA84", &none, &e), -EINVAL);
        assert_int_equal(fingerprints_parse(FP_A "0", &none, &e), -EINVAL);
        assert_null(none);
}

static void test_recipe_osversion_subst(void **state)
{
        (void) state;
        char *u = NULL;
        assert_int_equal(osversion_subst("http://m/%{OSVERSION}/os/%{osversion}/x", "9", &u), 0);
        assert_string_equal(u, "http://m/9/os/9/x");
        free(u);
        assert_int_equal(osversion_subst("file:///repo", NULL, &u), 0);
        assert_string_equal(u, "file:///repo");
        free(u);
        assert_int_equal(osversion_subst("%{OsVersion}", "stream-9", &u), 0);
        assert_string_equal(u, "stream-9");
        free(u);
        assert_int_equal(osversion_subst(NULL, "9", &u), 0);
        assert_null(u);
        assert_int_equal(osversion_subst("http://m/%{OSVERSION}", NULL, &u), -EINVAL);
        assert_null(u);
        assert_int_equal(osversion_subst("http://m/%{OSVERSION", "9", &u), 0);
        assert_string_equal(u, "http://m/%{OSVERSION");
        free(u);
}

static void test_recipe_fingerprints_signers(void **state)
{
        (void) state;
        struct hutch_error e = HUTCH_ERROR_INIT;
        _cleanup_strv_ char **s = NULL, **none = NULL;
        /* A signed both groups, B group 1 only: only A signed every group */
        static const char two[] = "{\"image\":\"x.sif\",\"verified\":true,\"signatures\":["
                                  "{\"id\":4,\"group\":1,\"fingerprint\":\"" FP_A "\",\"error\":null},"
                                  "{\"id\":5,\"group\":2,\"fingerprint\":\"" FP_A "\",\"error\":null},"
                                  "{\"id\":6,\"group\":1,\"fingerprint\":\"" FP_B "\",\"error\":null}"
                                  "],\"error\":null}";
        assert_int_equal(fingerprints_signers(two, &s, &e), 0);
        assert_int_equal(strv_length(s), 1);
        assert_string_equal(s[0], FP_A);
        static const char bad[] = "{\"image\":\"x.sif\",\"verified\":false,\"signatures\":["
                                  "{\"id\":4,\"group\":1,\"fingerprint\":\"" FP_A "\",\"error\":\"signature "
                                  "object 4 not valid: bad signature\"}],\"error\":\"signature object 4 not valid: "
                                  "bad signature\"}";
        assert_int_equal(fingerprints_signers(bad, &none, &e), -EBADMSG);
        assert_string_equal(e.msg, "signature object 4 not valid: bad signature");
        assert_int_equal(fingerprints_signers("{\"verified\":false,\"signatures\":[],\"error\":\"the image is not "
                                              "signed: no signature for object group 1\"}",
                                              &none, &e),
                         -EBADMSG);
        assert_string_equal(e.msg, "the image is not signed: no signature for object group 1");
        assert_int_equal(fingerprints_signers("{\"verified\":true,\"signatures\":[]}", &none, &e), -EBADMSG);
        assert_int_equal(fingerprints_signers("not json", &none, &e), -EBADMSG);
        assert_int_equal(fingerprints_signers("{\"verified\":true}", &none, &e), -EBADMSG);
        assert_null(none);
}

int main(void)
{
        log_set_level(LOG_LEVEL_ERROR);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_recipe_header_sections),
                cmocka_unit_test(test_recipe_files),
                cmocka_unit_test(test_recipe_stages),
                cmocka_unit_test(test_recipe_apps),
                cmocka_unit_test(test_recipe_twice_crlf_unknown),
                cmocka_unit_test(test_recipe_templates),
                cmocka_unit_test(test_recipe_build_args_file),
                cmocka_unit_test(test_recipe_fingerprints_parse),
                cmocka_unit_test(test_recipe_fingerprints_signers),
                cmocka_unit_test(test_recipe_osversion_subst),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
