/* The payload's environment and argv, as Apptainer builds them: the host environment
 * minus PATH and LD_LIBRARY_PATH (unless --cleanenv), container defaults, then the image's
 * /.singularity.d/env scripts sourced by its /bin/sh, then the user's forced variables. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime-internal.h"
#include "util/log.h"
#include "util/util.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define DEFAULT_PATH_WORDS "/usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin"

/* Host variables never passed in: they describe the host's filesystem, not the image's. */
static const char *const host_only[] = {"PATH", "LD_LIBRARY_PATH", "PS1", "PROMPT_COMMAND"};
/* With the env wrapper, the caller's variables reach it as HOST_PREFIX NAME=VALUE, named in
 * HOST_KEYS: hidden from the image's env scripts, restored after them where still unset. */
#define HOST_PREFIX "__HUTCH_HOST_"
#define HOST_KEYS "__hutch_host_keys"

/* Kept by --cleanenv (Apptainer keeps the terminal type and proxies, and sets LANG=C:
 * internal/pkg/util/env/clean.go). */
static const char *const clean_keep[] = {"TERM",      "http_proxy", "https_proxy", "no_proxy",
                                         "all_proxy", "ftp_proxy",  "HTTP_PROXY",  "HTTPS_PROXY",
                                         "NO_PROXY",  "ALL_PROXY",  "FTP_PROXY"};

static int put(char ***env, const char *k, const char *v)
{
        char *e = strjoin(k, "=", v);
        if (!e)
                return -ENOMEM;
        return strv_env_put(env, e);
}

static bool is_forwarding_prefix(const char *e)
{
        return startswith(e, "HUTCHENV_") || startswith(e, "APPTAINERENV_") || startswith(e, "SINGULARITYENV_");
}

/* Apptainer does not pass its own settings (APPTAINER_*, SINGULARITY_*) into the container
 * (internal/pkg/util/env/clean.go); the bind lists stay, as Apptainer sets them inside to the
 * binds for nested runs. */
static bool is_runtime_setting(const char *e)
{
        if (!startswith(e, "APPTAINER_") && !startswith(e, "SINGULARITY_"))
                return false;
        const char *k = strchr(e, '_') + 1;
        return !startswith(k, "BIND=") && !startswith(k, "BINDPATH=");
}

/* SCIF's variables for --app NAME (as Apptainer sets them, with its SINGULARITY_APPNAME that
 * images' scripts test), its bin/ and lib/ first. */
static int app_env(const char *app, char ***env)
{
        static const char *const vars[][2] = {
                {"SCIF_APPROOT", ""},
                {"SCIF_APPMETA", "/scif"},
                {"SCIF_APPBIN", "/bin"},
                {"SCIF_APPLIB", "/lib"},
                {"SCIF_APPRUN", "/scif/runscript"},
                {"SCIF_APPSTART", "/scif/startscript"},
                {"SCIF_APPTEST", "/scif/test"},
                {"SCIF_APPHELP", "/scif/runscript.help"},
                {"SCIF_APPLABELS", "/scif/labels.json"},
                {"SCIF_APPENV", "/scif/env/90-environment.sh"},
        };
        char buf[4096];
        if (put(env, "SCIF_APPNAME", app) < 0 || put(env, "APPTAINER_APPNAME", app) < 0 ||
            put(env, "SINGULARITY_APPNAME", app) < 0 || put(env, "SCIF_APPS", "/scif/apps") < 0 ||
            put(env, "SCIF_DATA", "/scif/data") < 0)
                return -ENOMEM;
        snprintf(buf, sizeof buf, "/scif/data/%s", app);
        if (put(env, "SCIF_APPDATA", buf) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(vars); i++) {
                snprintf(buf, sizeof buf, "/scif/apps/%s%s", app, vars[i][1]);
                if (put(env, vars[i][0], buf) < 0)
                        return -ENOMEM;
        }
        const char *path = strv_env_get(*env, "PATH"), *ld = strv_env_get(*env, "LD_LIBRARY_PATH");
        snprintf(buf, sizeof buf, "/scif/apps/%s/bin:%s", app, path ? path : DEFAULT_PATH);
        if (put(env, "PATH", buf) < 0)
                return -ENOMEM;
        snprintf(buf, sizeof buf, "/scif/apps/%s/lib%s%s", app, ld ? ":" : "", ld ? ld : "");
        return put(env, "LD_LIBRARY_PATH", buf);
}

/* env: what hutch sets; host: the caller's variables that pass (payload_prepare() decides
 * how: after the image's env scripts, for those the scripts did not set, as Apptainer). */
static int base_env(const struct launch_ctx *c, char ***env, char ***host)
{
        const struct launch_spec *s = c->spec;
        if (s->cleanenv && put(env, "LANG", "C") < 0)
                return -ENOMEM;
        for (char **e = s->host_env; e && *e; e++) {
                const char *eq = strchr(*e, '=');
                if (!eq || is_forwarding_prefix(*e) || is_runtime_setting(*e) || startswith(*e, HOST_PREFIX) ||
                    startswith(*e, HOST_KEYS "="))
                        continue;
                size_t kl = eq - *e;
                bool keep = !s->cleanenv;
                for (size_t i = 0; i < ELEMENTSOF(host_only) && keep; i++)
                        if (kl == strlen(host_only[i]) && !strncmp(*e, host_only[i], kl))
                                keep = false;
                for (size_t i = 0; i < ELEMENTSOF(clean_keep) && !keep && s->cleanenv; i++)
                        if (kl == strlen(clean_keep[i]) && !strncmp(*e, clean_keep[i], kl))
                                keep = true;
                if (keep && strv_extend(host, *e) < 0)
                        return -ENOMEM;
        }
        _cleanup_free_ char *copy = strdup(c->img.path);
        if (!copy)
                return -ENOMEM;
        const char *name = basename(copy);
        /* Apptainer's action scripts' names (its APPTAINER_COMMAND, set by its action runner) */
        static const char *const commands[] = {
                [LAUNCH_EXEC] = "exec", [LAUNCH_RUN] = "run",     [LAUNCH_SHELL] = "shell",
                [LAUNCH_TEST] = "test", [LAUNCH_START] = "start",
        };
        const char *vars[][2] = {
                {"PATH", DEFAULT_PATH},
                {"LD_LIBRARY_PATH", "/.singularity.d/libs"},
                {"HOME", c->home_dst ? c->home_dst : "/"},
                {"USER", c->user},
                {"LOGNAME", c->user},
                {"HUTCH_CONTAINER", c->img.path},
                {"HUTCH_NAME", name},
                {"APPTAINER_CONTAINER", c->img.path},
                {"APPTAINER_NAME", name},
                {"SINGULARITY_CONTAINER", c->img.path},
                {"SINGULARITY_NAME", name},
                {"APPTAINER_ENVIRONMENT", "/.singularity.d/env/91-environment.sh"},
                {"SINGULARITY_ENVIRONMENT", "/.singularity.d/env/91-environment.sh"},
                {"APPTAINER_COMMAND", commands[s->action]},
                {"SINGULARITY_COMMAND", commands[s->action]},
        };
        for (size_t i = 0; i < ELEMENTSOF(vars); i++)
                if (put(env, vars[i][0], vars[i][1]) < 0)
                        return -ENOMEM;
        if (s->action == LAUNCH_SHELL && put(env, "PS1", "Hutch> ") < 0)
                return -ENOMEM;
        /* --no-eval reaches an OCI image's runscript, which then passes its arguments as they
         * are (Apptainer sets both so) */
        if (s->no_eval && (put(env, "SINGULARITY_NO_EVAL", "1") < 0 || put(env, "APPTAINER_NO_EVAL", "1") < 0))
                return -ENOMEM;
        if (s->n_binds > 0) { /* the user's binds' destinations, for a nested run: as Apptainer
                               * sets them, which binds them again from where they are inside */
                _cleanup_free_ char *list = NULL;
                for (size_t i = 0; i < s->n_binds; i++) {
                        char *n = NULL;
                        if (asprintf(&n, "%s%s%s", list ? list : "", list ? "," : "",
                                     s->binds[i].dst ? s->binds[i].dst : s->binds[i].src) < 0)
                                return -ENOMEM;
                        free(list);
                        list = n;
                }
                if (put(env, "APPTAINER_BIND", list) < 0 || put(env, "SINGULARITY_BIND", list) < 0)
                        return -ENOMEM;
        }
        return s->app ? app_env(s->app, env) : 0;
}

/* Forced variables: --env and friends. PREPEND_PATH/APPEND_PATH edit PATH, as Apptainer. */
/* Double-quote rules without a shell to expand: "\$", "\`", "\"" and "\\" lose their
 * backslash (an env file's values arrive so escaped), the rest stays. */
static char *dquote_unescape(const char *v)
{
        char *r = malloc(strlen(v) + 1), *o = r;
        for (const char *p = v; r && *p; p++) {
                if (*p == '\\' && p[1] && strchr("$`\"\\", p[1]))
                        p++;
                *o++ = *p;
        }
        if (r)
                *o = 0;
        return r;
}

/* unescape: the values are double-quote text no shell will evaluate (no /bin/sh): what a
 * shell would leave of them but for the expansions */
static int apply_forced(char *const *forced, bool unescape, char ***env)
{
        for (char *const *f = forced; f && *f; f++) {
                const char *eq = strchr(*f, '=');
                const char *path = strv_env_get(*env, "PATH");
                _cleanup_free_ char *np = NULL, *val = unescape ? dquote_unescape(eq + 1) : strdup(eq + 1);
                if (!val)
                        return -ENOMEM;
                if (startswith(*f, "PREPEND_PATH="))
                        np = strjoin(val, ":", path ? path : "");
                else if (startswith(*f, "APPEND_PATH="))
                        np = strjoin(path ? path : "", ":", val);
                else {
                        _cleanup_free_ char *key = strndup(*f, eq - *f);
                        if (!key || put(env, key, val) < 0)
                                return -ENOMEM;
                        continue;
                }
                if (!np || put(env, "PATH", np) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* The text of the env scripts the wrapper sources (the image's, then the app's), joined;
 * at most 4 MiB, the rest left out; "" when none. */
static char *env_scripts_text(const char *app)
{
        char dirs[2][4096];
        snprintf(dirs[0], sizeof dirs[0], "/.singularity.d/env");
        snprintf(dirs[1], sizeof dirs[1], "/scif/apps/%s/scif/env", app ? app : "");
        char *all = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&all, &len);
        if (!f)
                return NULL;
        for (size_t d = 0; d < (app ? 2u : 1u); d++) {
                _cleanup_(closedirp) DIR *dir = opendir(dirs[d]);
                for (struct dirent *e; dir && (e = readdir(dir)) && len < (4u << 20);) {
                        if (!endswith(e->d_name, ".sh"))
                                continue;
                        char p[8192];
                        _cleanup_free_ char *t = NULL;
                        snprintf(p, sizeof p, "%s/%s", dirs[d], e->d_name);
                        if (read_regular_at(AT_FDCWD, p, 1u << 20, &t, NULL) >= 0) {
                                fputs(t, f);
                                fputc('\n', f);
                                fflush(f);
                        }
                }
        }
        if (fclose(f) != 0) {
                free(all);
                return NULL;
        }
        return all;
}

/* Whether text names the variable (a whole word: no letter, digit or '_' on either side). */
static bool names_var(const char *text, const char *key, size_t kl)
{
        size_t tl = strlen(text);
        for (const char *p = text; (p = memmem(p, tl - (size_t) (p - text), key, kl)); p++) {
                bool before = p > text && (isalnum((unsigned char) p[-1]) || p[-1] == '_');
                bool after = isalnum((unsigned char) p[kl]) || p[kl] == '_';
                if (!before && !after)
                        return true;
        }
        return false;
}

/* The caller's variables into env, where hutch did not set the name. Without the wrapper,
 * as they are. With it, as Apptainer's action script treats them: hidden from the image's
 * env scripts (so a Docker image's ENV and %environment win over the host's), restored
 * after them where still unset, unset where they left them empty (payload_env_script()).
 * Only a variable the scripts name can be set by them (a name built at run time, `export
 * $n=...`, is the exception this accepts), so only those go the long way, through the
 * wrapper's loop: the others, and a name the shell cannot take, pass as they are. */
static int host_pass(char *const *host, bool wrapper, const char *app, char ***env)
{
        _cleanup_free_ char *keys = strdup(""), *scripts = wrapper && host ? env_scripts_text(app) : NULL;
        if (wrapper && host && !scripts)
                return -ENOMEM;
        for (char *const *h = host; keys && h && *h; h++) {
                size_t kl = strcspn(*h, "=");
                if (strv_env_find(*env, *h, kl) >= 0)
                        continue;
                if (!scripts || !is_valid_env_name(*h, kl) || !names_var(scripts, *h, kl)) {
                        if (strv_extend(env, *h) < 0)
                                return -ENOMEM;
                        continue;
                }
                char *e = strjoin(HOST_PREFIX, *h, NULL), *k = NULL;
                if (!e || strv_env_put(env, e) < 0 ||
                    asprintf(&k, "%s%s%.*s", keys, *keys ? " " : "", (int) kl, *h) < 0)
                        return -ENOMEM;
                free(keys);
                keys = k;
        }
        if (!keys)
                return -ENOMEM;
        return *keys ? put(env, HOST_KEYS, keys) : 0;
}

/* Whether a forced value would read differently once the shell evaluates it. */
static bool needs_eval(char *const *forced)
{
        for (char *const *f = forced; f && *f; f++)
                if (strpbrk(strchr(*f, '=') ? strchr(*f, '=') + 1 : *f, "$`\\"))
                        return true;
        return false;
}

/* Shell text that sources the image's env scripts, then re-applies the forced variables
 * (they win over %environment), then execs "$@". A name goes into the text as it is, so
 * only a POSIX name may (-EINVAL otherwise; the CLI refuses others first). A value goes in
 * double-quoted when eval (Apptainer evaluates --env and *ENV_ values after the image's
 * scripts: $PATH, ${X}, $(cmd) expand there), single-quoted (as it is) otherwise. */
int payload_env_script(char *const *forced, const char *app, bool eval, bool devnull, char **ret)
{
        /* without /dev/null (--no-mount dev on an image without one) nothing may be redirected
         * there: the one redirect that must hide output becomes a command substitution */
        const char *quiet = devnull ? "2>/dev/null" : "2>&-";
        _cleanup_free_ char *s =
                strdup("for f in /.singularity.d/env/*.sh; do if [ -f \"$f\" ]; then . \"$f\"; "
                       /* after a Docker image's env, the default PATH's folders it lacks are
                        * appended (Apptainer's fixpath) */
                       "case $f in */10-docker*.sh) for d in " DEFAULT_PATH_WORDS "; do case :$PATH: in "
                       "*:$d:*) ;; *) PATH=$PATH:$d;; esac; done; export PATH;; esac; fi; done; ");
        if (s && app) { /* the app's scripts after the image's; its bin/ first again, once */
                char *n = NULL;
                if (asprintf(&n,
                             "%sfor f in /scif/apps/%s/scif/env/*.sh; do if [ -f \"$f\" ]; then . \"$f\"; fi; "
                             "done; case $PATH in /scif/apps/%s/bin:*) ;; *) PATH=/scif/apps/%s/bin:$PATH;; esac; "
                             "export PATH; ",
                             s, app, app, app) < 0)
                        n = NULL;
                free(s);
                s = n;
        }
        /* the caller's variables the scripts left unset, back (host_pass()); before the forced
         * ones, so that an evaluated value sees them. The list is split by hand: a script may
         * have left IFS set to anything. */
        char *h = s ? strjoin(s,
                              "__hutch_l=\"$" HOST_KEYS
                              " \"; while [ \"$__hutch_l\" != \" \" ] && [ -n \"$__hutch_l\" ]; do "
                              "__hutch_k=${__hutch_l%% *}; __hutch_l=${__hutch_l#* }; "
                              "eval \"if [ -z \\\"\\${$__hutch_k+x}\\\" ]; then export $__hutch_k=\\\"\\${" HOST_PREFIX
                              "$__hutch_k}\\\"; elif [ -z \\\"\\${$__hutch_k}\\\" ]; then unset $__hutch_k; fi; "
                              "unset " HOST_PREFIX "$__hutch_k\"; done; unset " HOST_KEYS " __hutch_k __hutch_l; ",
                              NULL)
                    : NULL;
        free(s);
        s = h;
        for (char *const *f = forced; s && f && *f; f++) {
                const char *eq = strchr(*f, '=');
                if (!eq || !is_valid_env_name(*f, eq - *f))
                        return -EINVAL;
                _cleanup_free_ char *key = strndup(*f, eq - *f), *q = eval ? shell_dquote(eq + 1) : shell_quote(eq + 1),
                                    *line = NULL;
                if (!key || !q)
                        return -ENOMEM;
                if (!strcmp(key, "PREPEND_PATH"))
                        line = strjoin("export PATH=", q, ":\"$PATH\"");
                else if (!strcmp(key, "APPEND_PATH"))
                        line = strjoin("export PATH=\"$PATH\":", q, NULL);
                else if (asprintf(&line, "export %s=%s", key, q) < 0)
                        line = NULL;
                if (line && eval) {
                        /* a value the shell cannot parse fails in one line of ours: the export
                         * becomes a function first (parsed, not run), then runs with its
                         * commands' own stderr */
                        _cleanup_free_ char *def = strjoin("__hutch_v() { ", line, "; }"),
                                            *ql = def ? shell_quote(def) : NULL;
                        free(line);
                        if (!ql ||
                            asprintf(&line,
                                     "command eval %s %s || { echo \"hutch: error: cannot evaluate the "
                                     "value of %s in the container (--no-eval sets it as it is)\" >&2; exit 255; }; "
                                     "__hutch_v; unset -f __hutch_v; ",
                                     ql, quiet, key) < 0)
                                line = NULL;
                } else if (line) {
                        char *n = strjoin(line, "; ", NULL);
                        free(line);
                        line = n;
                }
                if (!line)
                        return -ENOMEM;
                char *n = strjoin(s, line, NULL);
                free(s);
                s = n;
        }
        /* a missing command, a folder or a file without x fail as without the wrapper (and as
         * Apptainer, whose exec looks the command up first): one line, status 255 */
        char *n = s ? strjoin(s,
                              devnull ? "__hutch_m=; command -v \"$1\" >/dev/null 2>&1 || "
                                        "__hutch_m='No such file or directory'; "
                                      : "__hutch_m=; [ -n \"$(command -v \"$1\" 2>&-)\" ] || "
                                        "__hutch_m='No such file or directory'; ",
                              NULL)
                    : NULL;
        free(s);
        s = n;
        n = s ? strjoin(s,
                        "case $1 in */*) if [ -d \"$1\" ]; then __hutch_m='Is a directory'; "
                        "elif [ -e \"$1\" ] && [ ! -x \"$1\" ]; then __hutch_m='Permission denied'; fi;; esac; "
                        "[ -z \"$__hutch_m\" ] || { echo \"hutch: error: cannot run '$1' in the container: "
                        "$__hutch_m\" >&2; "
                        "exit 255; }; unset __hutch_m; exec \"$@\"",
                        NULL)
              : NULL;
        if (!n)
                return -ENOMEM;
        *ret = n;
        return 0;
}

static bool exists_exec(const char *p)
{
        return access(p, X_OK) == 0;
}

static bool has_shebang(const char *p)
{
        char b[2];
        _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        return fd >= 0 && read(fd, b, 2) == 2 && b[0] == '#' && b[1] == '!';
}

/* --app NAME with run, test or instance start: the app's script, by /bin/sh (Apptainer runs
 * them so); -ENOENT when the app has none. */
static int app_action_argv(const struct launch_spec *s, char ***ret)
{
        const char *f = s->action == LAUNCH_RUN ? "runscript" : s->action == LAUNCH_TEST ? "test" : "startscript";
        _cleanup_strv_ char **v = NULL;
        char p[4096];
        snprintf(p, sizeof p, "/scif/apps/%s/scif/%s", s->app, f);
        if (access(p, F_OK) < 0)
                return -ENOENT;
        if (strv_extend(&v, "/bin/sh") < 0 || strv_extend(&v, p) < 0)
                return -ENOMEM;
        for (char **a = s->argv; a && *a; a++)
                if (strv_extend(&v, *a) < 0)
                        return -ENOMEM;
        *ret = steal_pointer(&v);
        return 0;
}

/* The command for the action, before any env wrapper. */
static int action_argv(const struct launch_ctx *c, char ***ret)
{
        const struct launch_spec *s = c->spec;
        _cleanup_strv_ char **v = NULL;

        if (s->app && s->action != LAUNCH_EXEC && s->action != LAUNCH_SHELL)
                return app_action_argv(s, ret);

        switch (s->action) {
        case LAUNCH_EXEC: v = strv_copy(s->argv); break;
        case LAUNCH_RUN:
                if (exists_exec("/.singularity.d/runscript"))
                        strv_extend(&v, "/.singularity.d/runscript");
                else if (exists_exec("/singularity"))
                        strv_extend(&v, "/singularity");
                else if (exists_exec("/bin/sh")) {
                        log_info("No runscript found in container, executing /bin/sh");
                        strv_extend(&v, "/bin/sh");
                } else
                        return -ENOENT; /* nothing to run: payload_none() says so */
                break;
        case LAUNCH_START:
                if (!exists_exec("/.singularity.d/startscript"))
                        return -ENOENT;
                strv_extend(&v, "/.singularity.d/startscript");
                break;
        case LAUNCH_TEST:
                if (access("/.singularity.d/test", F_OK) < 0)
                        return -ENOENT;
                /* an executable test with a #! line runs under it (as Apptainer's test
                 * action execs it); any other, under /bin/sh */
                if (!exists_exec("/.singularity.d/test") || !has_shebang("/.singularity.d/test"))
                        strv_extend(&v, "/bin/sh");
                strv_extend(&v, "/.singularity.d/test");
                break;
        case LAUNCH_SHELL:
                if (s->shell)
                        strv_extend(&v, s->shell);
                else if (exists_exec("/bin/bash")) {
                        strv_extend(&v, "/bin/bash");
                        strv_extend(&v, "--norc");
                } else
                        strv_extend(&v, "/bin/sh");
                break;
        }
        if (!v)
                return -ENOMEM;
        if (s->action != LAUNCH_EXEC)
                for (char **a = s->argv; a && *a; a++)
                        if (strv_extend(&v, *a) < 0)
                                return -ENOMEM;
        *ret = steal_pointer(&v);
        return 0;
}

int payload_prepare(struct launch_ctx *c, struct payload_cmd *ret, struct hutch_error *err)
{
        _cleanup_strv_ char **env = NULL, **argv = NULL, **host = NULL;
        int r = base_env(c, &env, &host);
        if (r < 0)
                return hutch_err(err, r, "out of memory");
        if (c->spec->app) {
                char p[4096];
                snprintf(p, sizeof p, "/scif/apps/%s/scif", c->spec->app);
                if (access(p, F_OK) < 0)
                        return hutch_err(err, -EINVAL, "no app '%s' in the image (no %s)", c->spec->app, p);
        }
        r = action_argv(c, &argv);
        if (r == -ENOENT)
                return r; /* no test script: the caller reports it */
        if (r < 0 || (c->spec->action == LAUNCH_SHELL && put(&env, "SHELL", argv[0]) < 0))
                return hutch_err(err, -ENOMEM, "out of memory"); /* $SHELL: the shell started, as Apptainer */
        /* without a /bin/sh, forced values are set as they are: nothing could evaluate them */
        bool eval = !c->spec->no_eval && needs_eval(c->spec->env);
        bool wrapper = (c->has_env_scripts || c->spec->app || eval) && exists_exec("/bin/sh");
        if (host_pass(host, wrapper, c->spec->app, &env) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (wrapper) {
                _cleanup_free_ char *script = NULL;
                _cleanup_strv_ char **w = NULL;
                r = payload_env_script(c->spec->env, c->spec->app, !c->spec->no_eval,
                                       !(c->spec->no_mount & NO_MOUNT_DEV), &script);
                if (r == -EINVAL)
                        return hutch_err(err, r, "a forced environment variable has an invalid name");
                if (r < 0 || strv_extend(&w, "/bin/sh") < 0 || strv_extend(&w, "-c") < 0 ||
                    strv_push(&w, steal_pointer(&script)) < 0 || strv_extend(&w, "hutch") < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
                for (char **a = argv; *a; a++)
                        if (strv_extend(&w, *a) < 0)
                                return hutch_err(err, -ENOMEM, "out of memory");
                strv_free(argv);
                argv = steal_pointer(&w);
        } else if (apply_forced(c->spec->env, !c->spec->no_eval, &env) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        size_t n = strv_length(argv);
        char **sh = calloc(n + 2, sizeof(char *));
        if (!sh)
                return hutch_err(err, -ENOMEM, "out of memory");
        sh[0] = "/bin/sh";
        memcpy(sh + 1, argv, n * sizeof(char *));
        ret->sh_argv = sh;
        ret->argv = steal_pointer(&argv);
        ret->envp = steal_pointer(&env);
        return 0;
}

void payload_cmd_free(struct payload_cmd *cmd)
{
        strv_free(cmd->argv);
        strv_free(cmd->envp);
        free(cmd->sh_argv);
        *cmd = (struct payload_cmd){0};
}
