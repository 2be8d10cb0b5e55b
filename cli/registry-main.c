/* hutch-registry: the verbs that talk to registries (pull, push, remote login/logout), a
 * program of its own since libcurl, libarchive and libcrypto are shared objects the lean
 * hutch does not load. hutch execs it for those verbs with its own argv, and spawns
 * `hutch-registry cache-pull URI` for `exec docker://...`, reading the cached SIF's path
 * from its stdout. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "exit.h"
#include "registry/registry.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/util.h"

extern char **environ;

static const char *env_first(const struct cli *c, const char *const *names)
{
        for (; *names; names++) {
                const char *v = cli_getenv(c, *names);
                if (v && *v)
                        return v;
        }
        return NULL;
}

static bool env_true(const struct cli *c, const char *const *names)
{
        const char *v = env_first(c, names);
        return v && (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes"));
}

static const char *const tmpdir_env[] = {"HUTCH_TMPDIR", "APPTAINER_TMPDIR", "SINGULARITY_TMPDIR", "TMPDIR", NULL};
static const char *const no_https_env[] = {"HUTCH_NOHTTPS", "APPTAINER_NOHTTPS", "SINGULARITY_NOHTTPS", NULL};
static const char *const user_env[] = {"HUTCH_DOCKER_USERNAME", "APPTAINER_DOCKER_USERNAME",
                                       "SINGULARITY_DOCKER_USERNAME", NULL};
static const char *const pass_env[] = {"HUTCH_DOCKER_PASSWORD", "APPTAINER_DOCKER_PASSWORD",
                                       "SINGULARITY_DOCKER_PASSWORD", NULL};

/* Where credentials are: hutch's folder, Docker's and podman's files; podman's
 * registries.conf files. */
struct paths {
        char *hutch_dir, *docker, *podman;
        char *regconf[REGISTRIES_CONF_PATHS]; /* NULL-terminated */
};

/* Fails only for registries.conf's list (out of memory): the credential files are optional,
 * a policy file left out is not. */
static int paths_init(const struct cli *c, struct paths *p, struct registry_auth *a, struct hutch_error *err)
{
        const char *home = cli_getenv(c, "HOME"), *dc = cli_getenv(c, "DOCKER_CONFIG"),
                   *raf = cli_getenv(c, "REGISTRY_AUTH_FILE"), *xdg = cli_getenv(c, "XDG_RUNTIME_DIR");
        *p = (struct paths){0};
        if (home && asprintf(&p->hutch_dir, "%s/.hutch", home) < 0)
                p->hutch_dir = NULL;
        if (dc ? asprintf(&p->docker, "%s/config.json", dc) < 0
               : home && asprintf(&p->docker, "%s/.docker/config.json", home) < 0)
                p->docker = NULL;
        if (raf)
                p->podman = strdup(raf);
        else if (xdg && asprintf(&p->podman, "%s/containers/auth.json", xdg) < 0)
                p->podman = NULL;
        a->username = env_first(c, user_env);
        a->password = a->username ? env_first(c, pass_env) : NULL;
        a->config_dir = p->hutch_dir;
        a->docker_config = p->docker;
        a->podman_auth = p->podman;
        a->registries_conf = (const char *const *) p->regconf;
        return registries_conf_paths(cli_getenv(c, "CONTAINERS_REGISTRIES_CONF"), home, p->regconf, err);
}

static void paths_free(struct paths *p)
{
        free(p->hutch_dir);
        free(p->docker);
        free(p->podman);
        for (size_t i = 0; i < ELEMENTSOF(p->regconf); i++)
                free(p->regconf[i]);
}

static bool is_pull_source(const char *s)
{
        return startswith(s, "docker://") || startswith(s, "oras://") || registry_source_is_local(s);
}

/* pull [options] [OUT] URI; cache-pull [options] URI (hidden: prints the cached path, or
 * with --disable-cache the path of a SIF in a temporary folder of its own, for the caller
 * to remove with the folder) */
static int verb_pull(struct cli *c, int argc, char **argv, bool to_cache)
{
        struct pull_spec p = {0};
        struct paths paths;
        struct hutch_error err = HUTCH_ERROR_INIT;
        const char *dir = NULL, *pos[2] = {NULL, NULL}, *as_name = NULL;
        int n = 0;
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
                        cli_help_print("pull");
                        return 0;
                }
                if (!strcmp(a, "-F") || !strcmp(a, "--force"))
                        p.force = true;
                else if (!strcmp(a, "--disable-cache"))
                        p.disable_cache = true;
                else if (!strcmp(a, "--no-https") || !strcmp(a, "--nohttps"))
                        p.no_https = true;
                else if ((!strcmp(a, "--dir") || !strcmp(a, "--arch")) && i + 1 < argc)
                        *(!strcmp(a, "--dir") ? &dir : &p.arch) = argv[++i];
                else if (!strcmp(a, "--name") && i + 1 < argc) /* Apptainer's hidden spelling of OUTPUT */
                        as_name = argv[++i];
                else if (startswith(a, "--name="))
                        as_name = a + 7;
                else if (!strcmp(a, "-U") || !strcmp(a, "--allow-unsigned"))
                        ; /* Apptainer's, for library:// images, which hutch does not pull */
                else if (startswith(a, "--dir="))
                        dir = a + 6;
                else if (startswith(a, "--arch="))
                        p.arch = a + 7;
                else if (cli_log_flag(a))
                        ;
                else if (a[0] == '-' && a[1])
                        return cli_args_error("pull", "unknown option '%s'", a);
                else if (n == 2)
                        return cli_args_error("pull", "expects [OUTPUT] URI");
                else
                        pos[n++] = a;
        }
        if (n == 0)
                return cli_args_error("pull", "missing URI (docker://..., oras://...)");
        p.source = pos[n - 1];
        if (!is_pull_source(p.source))
                return cli_usage_error(
                        "pull",
                        "'%s': pull takes docker://, oras://, oci:, oci-archive:, docker-archive: or docker-daemon:",
                        p.source);
        if (to_cache && n != 1)
                return cli_usage_error("pull", "cache-pull takes the URI only");
        if (as_name && n == 2)
                return cli_args_error("pull", "--name '%s' and OUTPUT '%s' name the file twice", as_name, pos[0]);
        struct registry_ref ref;
        bool daemon = startswith(p.source, "docker-daemon:");
        if (!registry_source_is_local(p.source) || daemon) {
                /* docker-daemon:IMAGE names an image as docker://IMAGE does (or by its ID) */
                _cleanup_free_ char *as_docker =
                        daemon ? strjoin("docker://", p.source + strlen("docker-daemon:"), NULL) : NULL;
                if (daemon && !as_docker)
                        return cli_usage_error("pull", "out of memory");
                if (registry_ref_parse(daemon ? as_docker : p.source, &ref, &err) < 0)
                        return daemon ? cli_usage_error("pull", "'%s' names no image: %s", p.source, err.msg)
                                      : cli_fail(&err);
                registry_ref_free(&ref);
        }
        _cleanup_free_ char *target = NULL, *name = registry_default_name(p.source), *tmp = NULL;
        const char *out = n == 2 ? pos[0] : as_name ? as_name : name;
        if (!to_cache && (!out || (dir ? asprintf(&target, "%s/%s", dir, out) : asprintf(&target, "%s", out)) < 0))
                return cli_usage_error("pull", "out of memory");
        /* a run's registry IMAGE without the cache: a private temporary folder of its own
         * (Apptainer's $APPTAINER_TMPDIR), which the run removes once it has the image open */
        if (to_cache && p.disable_cache) {
                const char *base = env_first(c, tmpdir_env);
                if (asprintf(&tmp, "%s/hutch-image-XXXXXX", base ? base : "/tmp") < 0)
                        return cli_usage_error("pull", "out of memory");
                if (!mkdtemp(tmp)) {
                        hutch_err_sys(&err, -errno, "cannot create a temporary folder in '%s' for '%s'",
                                      base ? base : "/tmp", p.source);
                        return cli_fail(&err);
                }
                if (asprintf(&target, "%s/image.sif", tmp) < 0) {
                        rmdir(tmp);
                        return cli_usage_error("pull", "out of memory");
                }
        }
        _cleanup_free_ char *cache = cli_registry_cache_dir(c);
        if (!cache && !p.disable_cache)
                return cli_usage_error("pull", "no cache folder: set HOME or HUTCH_CACHEDIR, or use --disable-cache");
        p.target = target;
        p.cache_dir = cache;
        p.no_https = p.no_https || env_true(c, no_https_env);
        p.ca_file = cli_getenv(c, "SSL_CERT_FILE");
        p.docker_host = cli_getenv(c, "DOCKER_HOST");
        p.quiet = log_get_level() < LOG_LEVEL_INFO;
        p.progress = !p.quiet && isatty(STDERR_FILENO);
        _cleanup_free_ char *path = NULL;
        int r = paths_init(c, &paths, &p.auth, &err);
        if (r >= 0)
                r = registry_pull(&p, to_cache && !tmp ? &path : NULL, &err);
        paths_free(&paths);
        if (r < 0 && tmp)
                rmdir(tmp);
        if (r < 0)
                return cli_fail(&err);
        if (to_cache)
                printf("%s\n", tmp ? target : path);
        else if (!p.quiet)
                log_info("Pulled %s to %s", p.source, target);
        return 0;
}

static int verb_push(struct cli *c, int argc, char **argv)
{
        struct push_spec p = {0};
        struct paths paths;
        struct hutch_error err = HUTCH_ERROR_INIT;
        const char *pos[2];
        int n = 0;
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
                        cli_help_print("push");
                        return 0;
                }
                if (!strcmp(a, "--no-https") || !strcmp(a, "--nohttps"))
                        p.no_https = true;
                else if (cli_log_flag(a))
                        ;
                else if (a[0] == '-' && a[1])
                        return cli_args_error("push", "unknown option '%s'", a);
                else if (n == 2)
                        return cli_args_error("push", "expects IMAGE and oras://HOST/REPO:TAG");
                else
                        pos[n++] = a;
        }
        if (n != 2)
                return cli_args_error("push", "expects IMAGE and oras://HOST/REPO:TAG");
        if (!startswith(pos[1], "oras://"))
                return cli_usage_error("push", "'%s': push takes oras://HOST/REPO:TAG", pos[1]);
        p.image = pos[0];
        p.dest = pos[1];
        p.no_https = p.no_https || env_true(c, no_https_env);
        p.ca_file = cli_getenv(c, "SSL_CERT_FILE");
        p.quiet = log_get_level() < LOG_LEVEL_INFO;
        int r = paths_init(c, &paths, &p.auth, &err);
        if (r >= 0)
                r = registry_push(&p, &err);
        paths_free(&paths);
        if (r < 0)
                return cli_fail(&err);
        if (!p.quiet)
                log_info("Pushed %s to %s", p.image, p.dest);
        return 0;
}

/* A password from stdin: one line, without its newline. */
static char *read_password(bool from_stdin)
{
        char *line = NULL;
        size_t cap = 0;
        struct termios t, quiet;
        bool tty = !from_stdin && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &t) == 0;
        if (tty) {
                fputs("Password: ", stderr);
                quiet = t;
                quiet.c_lflag &= ~(tcflag_t) ECHO;
                tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        }
        ssize_t n = getline(&line, &cap, stdin);
        if (tty) {
                tcsetattr(STDIN_FILENO, TCSAFLUSH, &t);
                fputc('\n', stderr);
        }
        if (n < 0) {
                free(line);
                return NULL;
        }
        line[strcspn(line, "\r\n")] = 0;
        return line;
}

static int verb_remote(struct cli *c, int argc, char **argv)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct registry_auth a = {0};
        struct paths paths;
        const char *cmd = argc > 1 ? argv[1] : NULL, *user = NULL, *uri = NULL, *pass_opt = NULL;
        bool pw_stdin = false, no_https = false;
        if (!cmd || !strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
                cli_help_print("remote");
                return cmd ? 0 : EXIT_USAGE;
        }
        if (strcmp(cmd, "login") != 0 && strcmp(cmd, "logout") != 0)
                return cli_args_error("remote", "unknown remote command '%s' (login, logout)", cmd);
        for (int i = 2; i < argc; i++) {
                const char *o = argv[i];
                if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
                        cli_help_print("remote");
                        return 0;
                }
                if ((!strcmp(o, "-u") || !strcmp(o, "--username")) && i + 1 < argc)
                        user = argv[++i];
                else if ((!strcmp(o, "-p") || !strcmp(o, "--password")) && i + 1 < argc)
                        pass_opt = argv[++i];
                else if (!strcmp(o, "--password-stdin"))
                        pw_stdin = true;
                else if (!strcmp(o, "--no-https") || !strcmp(o, "--nohttps"))
                        no_https = true;
                else if (cli_log_flag(o))
                        ;
                else if (o[0] == '-')
                        return cli_args_error("remote", "unknown option '%s'", o);
                else if (uri)
                        return cli_args_error("remote", "expects one docker://HOST");
                else
                        uri = o;
        }
        if (!uri || !(startswith(uri, "docker://") || startswith(uri, "oras://")))
                return cli_args_error("remote", "expects docker://HOST (or oras://HOST)");
        const char *host = strstr(uri, "://") + 3;
        _cleanup_free_ char *h = strndup(host, strcspn(host, "/"));
        if (!h || !*h)
                return cli_usage_error("remote", "'%s' names no host", uri);
        int r = paths_init(c, &paths, &a, &err);
        if (r >= 0 && !paths.hutch_dir)
                r = hutch_err(&err, -ENOENT, "HOME is not set: no place for credentials");
        else if (r >= 0 && !strcmp(cmd, "logout")) {
                r = registry_logout(paths.hutch_dir, h, &err);
                if (r >= 0)
                        log_info("Logged out of %s", h);
        } else if (r >= 0) {
                _cleanup_free_ char *pass = pass_opt ? strdup(pass_opt) : read_password(pw_stdin);
                if (!user)
                        user = a.username;
                if (!user)
                        r = hutch_err(&err, -EINVAL, "remote login needs --username");
                else if (!pass)
                        r = hutch_err(&err, -EINVAL, "no password given (--password-stdin reads it from stdin)");
                else {
                        a.username = user;
                        a.password = pass;
                        r = registry_login_check(h, &a, no_https || env_true(c, no_https_env),
                                                 cli_getenv(c, "SSL_CERT_FILE"), &err);
                }
                if (r >= 0)
                        r = registry_login(paths.hutch_dir, h, user, pass, &err);
                if (r >= 0)
                        log_info("Logged in to %s", h);
        }
        paths_free(&paths);
        return r < 0 ? cli_fail(&err) : 0;
}

/* http-fetch [--post CONTENT-TYPE] [--max BYTES] URL (hidden: hutch-sign's keyserver
 * requests, as hutch-sign does not load libcurl): the body to post on stdin; on stdout the
 * reply's status on a line of its own, then its body. */
static int verb_http_fetch(struct cli *c, int argc, char **argv)
{
        struct registry_http_req q = {.max = 1u << 20, .ca_file = cli_getenv(c, "SSL_CERT_FILE")};
        struct hutch_error err = HUTCH_ERROR_INIT;
        _cleanup_free_ char *in = NULL, *body = NULL;
        size_t in_len = 0, len = 0;
        long status = 0;
        uint64_t v;
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--post") && i + 1 < argc)
                        q.content_type = argv[++i];
                else if (!strcmp(argv[i], "--max") && i + 1 < argc && parse_u64_range(argv[++i], 1, 16u << 20, &v) == 0)
                        q.max = (size_t) v;
                else if (argv[i][0] != '-' && !q.url)
                        q.url = argv[i];
                else
                        return cli_usage_error(NULL, "http-fetch is run by hutch-sign");
        }
        if (!q.url)
                return cli_usage_error(NULL, "http-fetch is run by hutch-sign");
        if (q.content_type) {
                int r = read_full_at(AT_FDCWD, "/dev/stdin", 16u << 20, &in, &in_len);
                if (r < 0) {
                        hutch_err_sys(&err, r, "cannot read the request's body");
                        return cli_fail(&err);
                }
                q.body = in;
                q.body_len = in_len;
        }
        if (registry_http_fetch(&q, &status, &body, &len, &err) < 0)
                return cli_fail(&err);
        printf("%ld\n", status);
        fflush(stdout);
        return write_full(STDOUT_FILENO, body, len) < 0 ? EXIT_HUTCH_FAILURE : 0;
}

int main(int argc, char **argv)
{
        struct cli c = {.environ = environ};
        int i = 1;
        log_set_level(LOG_LEVEL_INFO);
        for (; i < argc && argv[i][0] == '-'; i++)
                if (!cli_log_flag(argv[i]))
                        return cli_args_error(NULL, "unknown global option '%s'", argv[i]);
        if (i >= argc)
                return cli_usage_error(NULL, "hutch-registry is run by hutch: pull, push, remote");
        const char *verb = argv[i];
        if (!strcmp(verb, "pull"))
                return verb_pull(&c, argc - i, argv + i, false);
        if (!strcmp(verb, "cache-pull"))
                return verb_pull(&c, argc - i, argv + i, true);
        if (!strcmp(verb, "push"))
                return verb_push(&c, argc - i, argv + i);
        if (!strcmp(verb, "remote"))
                return verb_remote(&c, argc - i, argv + i);
        if (!strcmp(verb, "http-fetch"))
                return verb_http_fetch(&c, argc - i, argv + i);
        return cli_args_error(NULL, "unknown command '%s'", verb);
}
