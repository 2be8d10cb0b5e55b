/* One stage of a build: the bootstrap agent makes its rootfs, then its sections run in
 * Apptainer's order and place their files where Apptainer does (/.singularity.d/...), so
 * that inspect of the image agrees with Apptainer's. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <glob.h>
#include <json-c/json.h>
#include <limits.h>
#include <sched.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mount.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "image/image.h"
#include "recipe-internal.h"
#include "util/log.h"
#include "util/util.h"

#ifndef HUTCH_VERSION
#define HUTCH_VERSION "0.0.0"
#endif

char *stage_rootfs(const struct build_ctx *b, size_t i)
{
        char *p = NULL;
        if (b->spec->update && i + 1 == b->rec.n_stages)
                return realpath(b->spec->target, NULL);
        return asprintf(&p, "%s/stage-%zu", b->work, i + 1) < 0 ? NULL : p;
}

bool section_wanted(const struct build_ctx *b, const char *name)
{
        return !b->spec->sections || strv_contains(b->spec->sections, name) || strv_contains(b->spec->sections, "all");
}

/* "stage 2 (final)" or "" for a single stage, in messages */
static void stage_label(const struct build_ctx *b, const struct recipe_stage *st, char *buf, size_t len)
{
        buf[0] = 0;
        if (b->rec.n_stages > 1)
                snprintf(buf, len, "stage %zu%s%s%s: ", (size_t) (st - b->rec.stages) + 1, st->name ? " (" : "",
                         st->name ? st->name : "", st->name ? ")" : "");
}

static const char *host_busybox(void)
{
        static const char *const paths[] = {"/usr/bin/busybox", "/bin/busybox"};
        for (size_t i = 0; i < ELEMENTSOF(paths); i++)
                if (access(paths[i], X_OK) == 0)
                        return paths[i];
        return NULL;
}

/* Agents of other sources: the first six through hutch-registry (the registry module's
 * program), with the URI prefix it takes; the others are not supported yet. */
static const char *const registry_agents[] = {"docker", "docker-archive", "oci",     "oci-archive",
                                              "oras",   "docker-daemon",  "library", "shub"};
static const char *const registry_prefix[] = {
        "docker://", "docker-archive:", "oci:", "oci-archive:", "oras://", "docker-daemon:"};

static bool is_registry_agent(const char *a)
{
        for (size_t i = 0; i < ELEMENTSOF(registry_prefix); i++)
                if (!strcasecmp(a, registry_agents[i]))
                        return true;
        return false;
}

/* The URI of a registry agent's source, as Apptainer makes it:
 * docker://[REGISTRY/][NAMESPACE/]FROM, oci:FROM, ... */
static char *registry_uri(const struct recipe_stage *st)
{
        const char *reg = recipe_header_get(st, "registry"), *ns = recipe_header_get(st, "namespace");
        char *u = NULL;
        for (size_t i = 0; i < ELEMENTSOF(registry_prefix); i++) {
                if (strcasecmp(st->bootstrap, registry_agents[i]))
                        continue;
                bool docker = i == 0;
                if (asprintf(&u, "%s%s%s%s%s%s", registry_prefix[i], docker && reg ? reg : "", docker && reg ? "/" : "",
                             docker && ns ? ns : "", docker && ns ? "/" : "", st->from) < 0)
                        return NULL;
        }
        return u;
}

/* `hutch-registry cache-pull [--disable-cache] URI`: the path of the cached SIF (or of
 * one in a temporary folder of its own) it prints on stdout; its progress and errors go to
 * our stderr. */
static int registry_fetch(const char *uri, bool disable_cache, char **ret, struct hutch_error *err)
{
        char prog[PATH_MAX];
        if (!libexec_program("hutch-registry", prog, sizeof prog))
                return hutch_err(err, -ENOENT, "'%s' needs hutch-registry, which is not installed beside hutch", uri);
        log_info("Fetching %s", uri);
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0)
                return hutch_err_sys(err, -errno, "cannot run hutch-registry");
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
                close(pfd[0]);
                close(pfd[1]);
                return hutch_err_sys(err, -errno, "cannot run hutch-registry");
        }
        if (pid == 0) {
                char *argv[6] = {"hutch-registry"}, **a = argv + 1;
                if (log_get_level() < LOG_LEVEL_INFO)
                        *a++ = "--quiet";
                *a++ = "cache-pull";
                if (disable_cache)
                        *a++ = "--disable-cache";
                *a = (char *) uri;
                if (dup2(pfd[1], STDOUT_FILENO) < 0)
                        _exit(127);
                execv(prog, argv);
                _exit(127);
        }
        close(pfd[1]);
        char buf[PATH_MAX + 2];
        size_t len = 0;
        for (ssize_t n; len < sizeof buf - 1 && (n = read(pfd[0], buf + len, sizeof buf - 1 - len)) != 0;) {
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        break;
                len += (size_t) n;
        }
        close(pfd[0]);
        buf[len] = 0;
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return hutch_err_sys(err, -errno, "cannot wait for hutch-registry");
        buf[strcspn(buf, "\n")] = 0;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !buf[0])
                return hutch_err(err, -EIO, "Bootstrap from '%s' failed (hutch-registry said why)", uri);
        *ret = strdup(buf);
        return *ret ? 0 : hutch_err(err, -ENOMEM, "out of memory");
}

int agents_fetch(struct build_ctx *b, struct hutch_error *err)
{
        b->pulled = calloc(b->rec.n_stages + 1, sizeof(char *));
        if (!b->pulled)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < b->rec.n_stages; i++) {
                const struct recipe_stage *st = &b->rec.stages[i];
                if (!is_registry_agent(st->bootstrap))
                        continue;
                _cleanup_free_ char *uri = registry_uri(st);
                if (!uri)
                        return hutch_err(err, -ENOMEM, "out of memory");
                int r = registry_fetch(uri, b->spec->disable_cache, &b->pulled[i], err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* A tool on the host, searched where root finds it (debootstrap is in /usr/sbin). */
static bool find_tool(const char *name)
{
        static const char *const dirs[] = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                                           "/usr/bin",        "/sbin",          "/bin"};
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                char p[256];
                snprintf(p, sizeof p, "%s/%s", dirs[i], name);
                if (access(p, X_OK) == 0)
                        return true;
        }
        return false;
}

/* ---- yum/dnf and zypper: the host's package manager installs into the rootfs
 * (--installroot, --root) from MirrorURL, as Apptainer's agents do */

static bool is_rpm_agent(const char *a)
{
        return !strcasecmp(a, "yum") || !strcasecmp(a, "dnf") || !strcasecmp(a, "zypper");
}

static bool is_zypper(const struct recipe_stage *st)
{
        return !strcasecmp(st->bootstrap, "zypper");
}

int osversion_subst(const char *url, const char *ver, char **ret)
{
        static const char key[] = "%{OSVERSION}";
        const size_t klen = strlen(key);
        *ret = NULL;
        if (!url)
                return 0;
        size_t n = 0;
        for (const char *p = url; (p = strcasestr(p, key)); p += klen)
                n++;
        if (n && !ver)
                return -EINVAL;
        char *out = malloc(strlen(url) + n * (ver ? strlen(ver) : 0) + 1), *o = out;
        if (!out)
                return -ENOMEM;
        for (const char *p = url, *q; *p; p = q + klen) {
                q = strcasestr(p, key);
                size_t l = q ? (size_t) (q - p) : strlen(p);
                memcpy(o, p, l);
                o += l;
                if (!q)
                        break;
                o = stpcpy(o, ver);
        }
        *o = 0;
        *ret = out;
        return 0;
}

/* An http(s) or ftp URL, or a file:// one naming a folder with repodata/repomd.xml (an
 * rpm-md repository: what createrepo_c makes); checked before anything is made, so a
 * wrong one is one line. */
static int repo_url_check(const char *key, const char *url, struct hutch_error *err)
{
        if (!strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8) || !strncasecmp(url, "ftp://", 6))
                return 0;
        if (strncasecmp(url, "file://", 7))
                return hutch_err(err, -EINVAL, "%s '%s' is not an http://, https://, ftp:// or file:// URL", key, url);
        _cleanup_free_ char *md = strjoin(url + 7, "/repodata/repomd.xml", NULL);
        if (!md)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (access(md, R_OK) < 0)
                return hutch_err_sys(err, -errno, "%s '%s' is no rpm-md repository (cannot read %s)", key, url, md);
        return 0;
}

static int rpm_agent_check(const struct build_ctx *b, const struct recipe_stage *st, const char *lbl,
                           struct hutch_error *err)
{
        const char *a = st->bootstrap, *path = b->spec->path, *ver = recipe_header_get(st, "osversion"),
                   *gpg = recipe_header_get(st, "gpg");
        bool zypper = is_zypper(st);
        if (zypper ? !find_tool("zypper") : !find_tool("dnf") && !find_tool("yum"))
                return hutch_err(err, -ENOENT, "%s: %sBootstrap: %s needs %s (install the %s package)", path, lbl, a,
                                 zypper ? "zypper" : "dnf or yum", zypper ? "zypper" : "dnf");
        if (!find_tool("rpm"))
                return hutch_err(err, -ENOENT, "%s: %sBootstrap: %s needs rpm (install the rpm package)", path, lbl, a);
        static const char *const keys[][2] = {{"mirrorurl", "MirrorURL:"}, {"updateurl", "UpdateURL:"}};
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const char *v = recipe_header_get(st, keys[i][0]);
                _cleanup_free_ char *url = NULL;
                if (i == 0 && (!v || !*v))
                        return hutch_err(err, -EINVAL, "%s: %sBootstrap: %s needs 'MirrorURL: URL'", path, lbl, a);
                if (i == 1 && (zypper || !v || !*v))
                        continue;
                int r = osversion_subst(v, ver, &url);
                if (r == -EINVAL)
                        return hutch_err(err, r, "%s: %s%s '%s' uses %%{OSVERSION} but there is no 'OSVersion:'", path,
                                         lbl, keys[i][1], v);
                if (r < 0)
                        return hutch_err(err, r, "out of memory");
                if ((r = repo_url_check(keys[i][1], url, err)) < 0)
                        return hutch_err_wrap(err, "%s%s%.*s", path, lbl[0] ? ": " : "",
                                              lbl[0] ? (int) strlen(lbl) - 2 : 0, lbl);
        }
        /* rpm --import takes a file or a URL; Apptainer's agent wants https */
        if (gpg && *gpg && gpg[0] != '/' && strncasecmp(gpg, "https://", 8))
                return hutch_err(err, -EINVAL, "%s: %sGPG: '%s' is neither an https:// URL nor an absolute path", path,
                                 lbl, gpg);
        return 0;
}

int agent_check(const struct build_ctx *b, const struct recipe_stage *st, struct hutch_error *err)
{
        const char *a = st->bootstrap, *path = b->spec->path;
        struct stat sst;
        char lbl[128];
        stage_label(b, st, lbl, sizeof lbl);
        const char *fpv = recipe_header_get(st, "fingerprints");
        if (fpv) {
                _cleanup_strv_ char **fps = NULL;
                if (fingerprints_parse(fpv, &fps, err) < 0)
                        return hutch_err_wrap(err, "%s%s%.*s", path, lbl[0] ? ": " : "",
                                              lbl[0] ? (int) strlen(lbl) - 2 : 0, lbl);
                /* Apptainer checks them on the SIFs of localimage, library and oras */
                if (fps && strcasecmp(a, "localimage") && strcasecmp(a, "oras") && strcasecmp(a, "library"))
                        return hutch_err(err, -EINVAL,
                                         "%s: %s'Fingerprints:' checks the signatures of a SIF source (Bootstrap: "
                                         "localimage or oras), not of Bootstrap: %s",
                                         path, lbl, a);
        }
        if (!strcasecmp(a, "scratch"))
                return 0;
        if (!strcasecmp(a, "busybox")) {
                if (!host_busybox())
                        return hutch_err(err, -ENOENT,
                                         "%s: %sBootstrap: busybox needs the host's static busybox "
                                         "(install the busybox-static package)",
                                         path, lbl);
                return 0;
        }
        if (!strcasecmp(a, "localimage")) {
                if (!st->from || !*st->from)
                        return hutch_err(err, -EINVAL, "%s: %sBootstrap: localimage needs 'From: IMAGE'", path, lbl);
                if (stat(st->from, &sst) < 0)
                        return hutch_err_sys(err, -errno, "%s: %sFrom: '%s'", path, lbl, st->from);
                return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(registry_agents); i++)
                if (!strcasecmp(a, registry_agents[i])) {
                        char prog[PATH_MAX];
                        if (!st->from || !*st->from)
                                return hutch_err(err, -EINVAL, "%s: %sBootstrap: %s needs 'From: ...'", path, lbl, a);
                        if (i >= ELEMENTSOF(registry_prefix))
                                return hutch_err(err, -ENOTSUP, "%s: %sBootstrap: %s is not supported yet", path, lbl,
                                                 a);
                        if (!libexec_program("hutch-registry", prog, sizeof prog))
                                return hutch_err(err, -ENOENT,
                                                 "%s: %sBootstrap: %s needs hutch-registry, which is not installed "
                                                 "beside hutch",
                                                 path, lbl, a);
                        return 0;
                }
        if (!strcasecmp(a, "debootstrap")) {
                if (!find_tool("debootstrap"))
                        return hutch_err(err, -ENOENT,
                                         "%s: %sBootstrap: debootstrap needs debootstrap (install the debootstrap "
                                         "package)",
                                         path, lbl);
                if (!recipe_header_get(st, "osversion"))
                        return hutch_err(err, -EINVAL, "%s: %sBootstrap: debootstrap needs 'OSVersion: SUITE'", path,
                                         lbl);
                return 0;
        }
        if (is_rpm_agent(a))
                return rpm_agent_check(b, st, lbl, err);
        if (!strcasecmp(a, "arch"))
                return hutch_err(err, -ENOTSUP, "%s: %sBootstrap: %s is not supported yet", path, lbl, a);
        return hutch_err(err, -EINVAL,
                         "%s: %sunknown bootstrap agent '%s' (localimage, busybox, scratch, docker, docker-archive, "
                         "docker-daemon, oci, oci-archive, debootstrap, yum, dnf, zypper)",
                         path, lbl, a);
}

/* ---- bootstrap agents */

/* As root of the build's user namespace debootstrap cannot make /dev's nodes (mknod needs
 * CAP_MKNOD in the initial namespace): in a mount namespace of its own, as Apptainer's
 * --fakeroot debootstrap does, the host's mknod is /bin/true and the rootfs's /dev/null,
 * zero, random and urandom are the host's, bound. The binds end with the namespace, when
 * debootstrap exits; empty files stay in the rootfs's /dev, where the launcher mounts its
 * own /dev. */
static int debootstrap_fakeroot_setup(void *arg)
{
        const char *rootfs = arg;
        static const char *const devs[] = {"null", "zero", "random", "urandom"};
        char t[PATH_MAX], m[PATH_MAX];
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return -errno;
        if (!realpath("/bin/true", t) || !realpath("/bin/mknod", m) || mount(t, m, NULL, MS_BIND, NULL) < 0)
                return -errno;
        _cleanup_close_ int root = open(rootfs, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root < 0 || (mkdirat(root, "dev", 0755) < 0 && errno != EEXIST))
                return -errno;
        _cleanup_close_ int dev = openat(root, "dev", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dev < 0)
                return -errno;
        for (size_t i = 0; i < ELEMENTSOF(devs); i++) {
                char src[32], dst[64];
                _cleanup_close_ int fd = openat(dev, devs[i], O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
                if (fd < 0)
                        return -errno;
                snprintf(src, sizeof src, "/dev/%s", devs[i]);
                snprintf(dst, sizeof dst, "/proc/self/fd/%d", fd);
                if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
                        return -errno;
        }
        return 0;
}

/* debootstrap --variant=minbase [--include=A,B] OSVERSION ROOTFS [MIRRORURL], its output
 * shown; as Apptainer's agent (which uses MirrorURL and Include the same way). */
static int bootstrap_debootstrap(const struct build_ctx *b, const struct recipe_stage *st, const char *rootfs,
                                 struct hutch_error *err)
{
        const char *suite = recipe_header_get(st, "osversion"), *mirror = recipe_header_get(st, "mirrorurl"),
                   *include = recipe_header_get(st, "include");
        _cleanup_free_ char *inc = NULL;
        _cleanup_strv_ char **argv = NULL;
        if (include && *include) {
                inc = strjoin("--include=", include, NULL);
                for (char *p = inc ? inc + strlen("--include=") : NULL; p && *p; p++)
                        if (*p == ' ' || *p == '\t')
                                *p = ',';
        }
        if (strv_extend(&argv, "debootstrap") < 0 || strv_extend(&argv, "--variant=minbase") < 0 ||
            (inc && strv_extend(&argv, inc) < 0) || strv_extend(&argv, suite) < 0 || strv_extend(&argv, rootfs) < 0 ||
            (mirror && *mirror && strv_extend(&argv, mirror) < 0))
                return hutch_err(err, -ENOMEM, "out of memory");
        log_info("Running debootstrap %s%s%s", suite, mirror ? " from " : "", mirror ? mirror : "");
        char *env[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", NULL};
        if (b->fakeroot && !b->subids)
                return hutch_err(err, -EPERM,
                                 "Bootstrap: debootstrap as a user needs a range for you in /etc/subuid and "
                                 "/etc/subgid (its packages belong to several ids)");
        if (b->fakeroot && mkdir(rootfs, 0755) < 0)
                return hutch_err_sys(err, -errno, "cannot create '%s'", rootfs);
        int r = host_run_setup(argv, env, NULL, b->fakeroot ? debootstrap_fakeroot_setup : NULL, (void *) rootfs);
        if (r != 0)
                return hutch_err(err, r < 0 ? r : -EIO, "debootstrap of '%s' failed (%s %d)", suite,
                                 r < 0 ? "error" : "exit status", r < 0 ? -r : r);
        return 0;
}

/* yum's configuration, as Apptainer's agent writes it: the cache inside the rootfs (dnf
 * puts it under --installroot), no repository but ours. */
static char *yum_conf(const char *mirror, const char *update, bool gpg)
{
        const char *check = gpg ? "gpgcheck=1\n" : "gpgcheck=0\n";
        char *c = NULL;
        if (asprintf(&c,
                     "[main]\ncachedir=/var/cache/yum-bootstrap\nkeepcache=0\ndebuglevel=2\nlogfile=/var/log/yum.log\n"
                     "syslog_device=/dev/null\nexactarch=1\nobsoletes=1\n%splugins=1\nreposdir=0\ndeltarpm=0\n\n"
                     "[base]\nname=Linux $releasever - $basearch\nbaseurl=%s\nenabled=1\n%s%s%s%s%s\n",
                     check, mirror, check,
                     update ? "\n[updates]\nname=Linux $releasever - $basearch updates\nbaseurl=" : "",
                     update ? update : "", update ? "\nenabled=1\n" : "", update ? check : "") < 0)
                return NULL;
        return c;
}

/* Run a package tool of the rpm agents with HOME at the build's folder, whose .rpmmacros
 * puts the rpm database at /var/lib/rpm of the rootfs: Debian's rpm would put it in
 * ~/.rpmdb, where no rpm of the image looks (Apptainer asks the user to write that file). */
static int rpm_tool_run(const struct build_ctx *b, const struct recipe_stage *st, char **argv, struct hutch_error *err)
{
        _cleanup_free_ char *home = strjoin(b->work, "/rpmhome", NULL), *macros = strjoin(home, "/.rpmmacros", NULL),
                            *env_home = strjoin("HOME=", home, NULL);
        static const char m[] = "%_var /var\n%_dbpath %{_var}/lib/rpm\n";
        if (!home || !macros || !env_home)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (mkdir(home, 0700) < 0 && errno != EEXIST)
                return hutch_err_sys(err, -errno, "cannot create '%s'", home);
        int r = write_file_at(AT_FDCWD, macros, m, strlen(m), 0600);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot write '%s'", macros);
        char *env[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", env_home, NULL};
        r = host_run(argv, env, NULL);
        if (r != 0)
                return hutch_err(err, r < 0 ? r : -EIO, "Bootstrap: %s: %s failed (%s %d)", st->bootstrap, argv[0],
                                 r < 0 ? "error" : "exit status", r < 0 ? -r : r);
        return 0;
}

/* yum/dnf (dnf --installroot) and zypper (zypper --root) into rootfs: Include's packages
 * and the base Apptainer adds (yum: /etc/redhat-release coreutils; zypper: aaa_base);
 * GPG: a key imported into the new rpm database and every package checked with it
 * (without it nothing is checked, as in Apptainer). */
static int bootstrap_rpm(const struct build_ctx *b, const struct recipe_stage *st, const char *rootfs, int rootfd,
                         struct hutch_error *err)
{
        const char *ver = recipe_header_get(st, "osversion"), *gpg = recipe_header_get(st, "gpg"),
                   *include = recipe_header_get(st, "include"), *setopt = recipe_header_get(st, "setopt");
        bool zypper = is_zypper(st), check = gpg && *gpg;
        size_t i = (size_t) (st - b->rec.stages) + 1;
        _cleanup_free_ char *mirror = NULL, *update = NULL, *conf = NULL, *confpath = NULL, *rel = NULL;
        _cleanup_strv_ char **argv = NULL, **inc = NULL;
        int r;
        if (osversion_subst(recipe_header_get(st, "mirrorurl"), ver, &mirror) < 0 ||
            osversion_subst(recipe_header_get(st, "updateurl"), ver, &update) < 0 ||
            (include && strsplit(include, " \t,", &inc) < 0) || (ver && asprintf(&rel, "--releasever=%s", ver) < 0))
                return hutch_err(err, -ENOMEM, "out of memory");
        if (update && !*update)
                update = mfree_str(update);
        log_info("Running %s into the rootfs from %s", zypper ? "zypper" : "dnf", mirror);
        if (check) {
                char *a1[] = {"rpm", "--root", (char *) rootfs, "--initdb", NULL};
                char *a2[] = {"rpm", "--root", (char *) rootfs, "--import", (char *) gpg, NULL};
                if ((r = rpm_tool_run(b, st, a1, err)) < 0 || (r = rpm_tool_run(b, st, a2, err)) < 0)
                        return r;
        }
        if (zypper) {
                char *ar[] = {"zypper", "--non-interactive", "--root", (char *) rootfs, "addrepo",
                              mirror,   "repo-oss",          NULL};
                char *rf[] = {"zypper", "--non-interactive", check ? "--gpg-auto-import-keys" : "--no-gpg-checks",
                              "--root", (char *) rootfs,     "refresh",
                              NULL};
                if ((r = rpm_tool_run(b, st, ar, err)) < 0 || (r = rpm_tool_run(b, st, rf, err)) < 0)
                        return r;
                if (strv_extend(&argv, "zypper") < 0 || strv_extend(&argv, "--non-interactive") < 0 ||
                    (!check && strv_extend(&argv, "--no-gpg-checks") < 0) || strv_extend(&argv, "--root") < 0 ||
                    strv_extend(&argv, rootfs) < 0 || (rel && strv_extend(&argv, rel) < 0) ||
                    strv_extend(&argv, "install") < 0 || strv_extend(&argv, "--auto-agree-with-licenses") < 0 ||
                    strv_extend(&argv, "--download-in-advance") < 0 || strv_extend(&argv, "aaa_base") < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
        } else {
                if (asprintf(&confpath, "%s/yum-%zu.conf", b->work, i) < 0 || !(conf = yum_conf(mirror, update, check)))
                        return hutch_err(err, -ENOMEM, "out of memory");
                if ((r = write_file_at(AT_FDCWD, confpath, conf, strlen(conf), 0600)) < 0)
                        return hutch_err_sys(err, r, "cannot write '%s'", confpath);
                const char *dnf = find_tool("dnf") ? "dnf" : "yum";
                if (strv_extend(&argv, dnf) < 0 || strv_extend(&argv, "--noplugins") < 0 ||
                    strv_extend(&argv, "-c") < 0 || strv_extend(&argv, confpath) < 0 ||
                    strv_extend(&argv, "--installroot") < 0 || strv_extend(&argv, rootfs) < 0 ||
                    (rel && strv_extend(&argv, rel) < 0) || strv_extend(&argv, "-y") < 0 ||
                    (setopt && *setopt && (strv_extend(&argv, "--setopt") < 0 || strv_extend(&argv, setopt) < 0)) ||
                    strv_extend(&argv, "install") < 0 || strv_extend(&argv, "/etc/redhat-release") < 0 ||
                    strv_extend(&argv, "coreutils") < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
        }
        for (size_t k = 0; inc && inc[k]; k++)
                if (inc[k][0] && strv_extend(&argv, inc[k]) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
        if ((r = rpm_tool_run(b, st, argv, err)) < 0)
                return r;
        /* the downloaded packages are not part of the image (Apptainer removes them too) */
        _cleanup_close_ int cache = root_open(rootfd, "/var/cache", O_PATH | O_DIRECTORY);
        if (cache >= 0) {
                char dir[64];
                snprintf(dir, sizeof dir, "/proc/self/fd/%d/%s", cache, zypper ? "zypp" : "yum-bootstrap");
                char *rm[] = {"rm", "-rf", "--", dir, NULL};
                int keep[] = {cache, -1};
                if (host_run(rm, NULL, keep) != 0)
                        log_warning("cannot remove /var/cache/%s of the rootfs, ignoring",
                                    zypper ? "zypp" : "yum-bootstrap");
        }
        return 0;
}

/* The host's static busybox as /bin/busybox, a link for each of its applets, and the
 * passwd and group files of root and nobody. */
static int bootstrap_busybox(int rootfd, struct hutch_error *err)
{
        const char *bb = host_busybox();
        _cleanup_free_ char *data = NULL;
        size_t len;
        int r = read_regular_at(AT_FDCWD, bb, 64u << 20, &data, &len);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot read %s", bb);
        if ((r = root_write(rootfd, "/bin/busybox", data, len, 0755)) < 0)
                return hutch_err_sys(err, r, "cannot write /bin/busybox");
        _cleanup_close_ int bin = root_open(rootfd, "/bin", O_RDONLY | O_DIRECTORY);
        _cleanup_free_ char *cmd = strjoin(bb, " --list", NULL);
        FILE *p = cmd ? popen(cmd, "re") : NULL;
        char line[256];
        size_t n = 0;
        while (p && bin >= 0 && fgets(line, sizeof line, p)) {
                line[strcspn(line, "\n")] = 0;
                if (line[0] && !strchr(line, '/') && strcmp(line, "busybox") && symlinkat("busybox", bin, line) == 0)
                        n++;
        }
        if (p)
                pclose(p);
        if (n == 0)
                return hutch_err(err, -EIO, "cannot list the applets of %s", bb);
        static const char passwd[] = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/"
                                     "false\n";
        static const char group[] = "root:x:0:\nnogroup:x:65534:\n";
        if ((r = root_write(rootfd, "/etc/passwd", passwd, strlen(passwd), 0644)) < 0 ||
            (r = root_write(rootfd, "/etc/group", group, strlen(group), 0644)) < 0)
                return hutch_err_sys(err, r, "cannot write /etc/passwd");
        return 0;
}

/* Whether a mount lies beneath the folder at path (absolute, resolved): overlay shows the
 * folder's own file system alone, where a copy would cross into what is mounted there. */
static bool mounts_beneath(const char *path)
{
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
        char line[4096], mp[PATH_MAX];
        size_t n = strlen(path);
        while (f && fgets(line, sizeof line, f)) {
                /* ID PARENT MAJ:MIN ROOT MOUNTPOINT ...; a space or a newline in a mount
                 * point is octal-escaped, which no prefix of an unescaped path matches */
                if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && !strncmp(mp, path, n) && mp[n] == '/')
                        return true;
        }
        return !f || n <= 1;
}

/* Bootstrap: localimage of a folder, where the build has mounts of its own (root of the
 * initial user namespace, not --sandbox's last stage: recipe_build decides): the rootfs is
 * an overlay of the folder (read-only below) and an empty upper folder beside it, rather
 * than a copy of the tree, which would cost a fifth of mksquashfs's time on a
 * distribution's tree. What the sections change goes to the upper folder; the source
 * folder is never written. redirect_dir and index make renames of the folder's
 * subfolders and hard links behave as in a copy; the upper root takes the folder's owner,
 * mode and times, as the copy's root would. A folder on overlayfs itself (the stack would
 * grow too deep for a container's own overlays) or with mounts beneath it is copied. The
 * mount is the build's alone (its namespace) and is taken down before the build folder is
 * removed (build.c: work_remove). 1: mounted; 0: not here (the caller copies). */
static int stage_overlay(struct build_ctx *b, size_t i, const char *from, const char *rootfs)
{
        struct stat st;
        struct statfs sf;
        if (!b->private_mounts || !b->overlaid || (b->spec->sandbox && i + 1 == b->rec.n_stages))
                return 0;
        _cleanup_close_ int lfd = open(from, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_free_ char *real = lfd >= 0 ? realpath(from, NULL) : NULL;
        if (!real || fstat(lfd, &st) < 0 || fstatfs(lfd, &sf) < 0 || sf.f_type == OVERLAYFS_SUPER_MAGIC ||
            mounts_beneath(real))
                return 0;
        _cleanup_free_ char *upper = strjoin(rootfs, ".upper", NULL), *work = strjoin(rootfs, ".work", NULL);
        if (!upper || !work || mkdir(rootfs, 0755) < 0)
                return 0;
        int ufd = mkdir(upper, 0755) == 0 ? open(upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        int wfd = mkdir(work, 0700) == 0 ? open(work, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        struct timespec times[2] = {st.st_atim, st.st_mtim};
        char opts[192];
        /* paths by descriptor: overlay's options cannot hold a ',' or ':' of a folder's name */
        snprintf(opts, sizeof opts,
                 "lowerdir=/proc/self/fd/%d,upperdir=/proc/self/fd/%d,workdir=/proc/self/fd/%d,redirect_dir=on,"
                 "index=on",
                 lfd, ufd, wfd);
        bool ok = ufd >= 0 && wfd >= 0 && fchown(ufd, st.st_uid, st.st_gid) == 0 &&
                  fchmod(ufd, st.st_mode & 07777) == 0 && futimens(ufd, times) == 0 &&
                  mount("overlay", rootfs, "overlay", 0, opts) == 0;
        int e = errno;
        if (ufd >= 0)
                close(ufd);
        if (wfd >= 0)
                close(wfd);
        if (!ok) {
                log_verbose("cannot mount an overlay of '%s' (%s): copying it", from, strerror(e));
                (void) rmdir(work);
                (void) rmdir(upper);
                (void) rmdir(rootfs);
                return 0;
        }
        b->overlaid[i] = true;
        return 1;
}

static int bootstrap(struct build_ctx *b, const struct recipe_stage *st, const char *rootfs, struct hutch_error *err)
{
        size_t i = (size_t) (st - b->rec.stages);
        const char *pulled = b->pulled ? b->pulled[i] : NULL;
        if (!strcasecmp(st->bootstrap, "localimage") && !pulled && stage_overlay(b, i, st->from, rootfs) > 0)
                return 0;
        if (!strcasecmp(st->bootstrap, "localimage") || pulled) {
                struct build_spec bs = {
                        .target = rootfs, .source = pulled ? pulled : st->from, .sandbox = true, .quiet = true};
                return image_build(&bs, err);
        }
        if (!strcasecmp(st->bootstrap, "debootstrap"))
                return bootstrap_debootstrap(b, st, rootfs, err);
        if (mkdir(rootfs, 0755) < 0)
                return hutch_err_sys(err, -errno, "cannot create '%s'", rootfs);
        if (is_rpm_agent(st->bootstrap)) {
                _cleanup_close_ int rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
                return rootfd < 0 ? hutch_err_sys(err, -errno, "cannot open '%s'", rootfs)
                                  : bootstrap_rpm(b, st, rootfs, rootfd, err);
        }
        if (!strcasecmp(st->bootstrap, "busybox")) {
                _cleanup_close_ int rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
                return rootfd < 0 ? hutch_err_sys(err, -errno, "cannot open '%s'", rootfs)
                                  : bootstrap_busybox(rootfd, err);
        }
        (void) b;
        return 0; /* scratch */
}

/* What Apptainer puts in every image: the folders the runtime mounts on, the metadata
 * folders and their default files, the /singularity and /environment links. */
static int base_env(int rootfd, struct hutch_error *err)
{
        static const char *const dirs[] = {"/bin",
                                           "/dev",
                                           "/home",
                                           "/etc",
                                           "/root",
                                           "/proc",
                                           "/sys",
                                           "/tmp",
                                           "/var/tmp",
                                           "/.singularity.d/actions",
                                           "/.singularity.d/env",
                                           "/.singularity.d/libs"};
        int r = 0;
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(dirs); i++)
                r = root_mkdirs(rootfd, dirs[i], 0755);
        /* the env scripts Apptainer's images carry, so that an image built here behaves
         * under Apptainer as one it built: its libs folder on LD_LIBRARY_PATH and its prompt
         * (99-base.sh), and its APPTAINERENV_{PREPEND,APPEND}_PATH and PATH, which it passes
         * as SING_USER_DEFINED_* (99-runtimevars.sh; hutch sets PATH itself and passes none) */
        static const char base99[] =
                "#!/bin/sh\n"
                "case \":${LD_LIBRARY_PATH:-}:\" in\n"
                "*:/.singularity.d/libs:*) ;;\n"
                "*) LD_LIBRARY_PATH=\"${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/.singularity.d/libs\" ;;\n"
                "esac\n"
                "PS1=\"Apptainer> \"\n"
                "export LD_LIBRARY_PATH PS1\n";
        static const char runtimevars99[] = "#!/bin/sh\n"
                                            "if [ -n \"${SING_USER_DEFINED_PREPEND_PATH:-}\" ]; then\n"
                                            "    PATH=\"${SING_USER_DEFINED_PREPEND_PATH}:${PATH}\"\n"
                                            "fi\n"
                                            "if [ -n \"${SING_USER_DEFINED_APPEND_PATH:-}\" ]; then\n"
                                            "    PATH=\"${PATH}:${SING_USER_DEFINED_APPEND_PATH}\"\n"
                                            "fi\n"
                                            "if [ -n \"${SING_USER_DEFINED_PATH:-}\" ]; then\n"
                                            "    PATH=\"${SING_USER_DEFINED_PATH}\"\n"
                                            "fi\n"
                                            "unset SING_USER_DEFINED_PREPEND_PATH SING_USER_DEFINED_APPEND_PATH "
                                            "SING_USER_DEFINED_PATH\n"
                                            "export PATH\n";
        static const struct {
                const char *path, *text;
                mode_t mode;
        } files[] = {
                {"/etc/hosts", "", 0644},
                {"/etc/resolv.conf", "", 0644},
                {"/.singularity.d/env/90-environment.sh", IMAGE_ENV_HEAD, 0755},
                {"/.singularity.d/env/99-base.sh", base99, 0755},
                {"/.singularity.d/env/99-runtimevars.sh", runtimevars99, 0755},
        };
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(files); i++)
                if (!root_exists(rootfd, files[i].path))
                        r = root_write(rootfd, files[i].path, files[i].text, strlen(files[i].text), files[i].mode);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot make the base folders and files of the image");
        _cleanup_close_ int top = root_open(rootfd, "/", O_RDONLY | O_DIRECTORY);
        if (top >= 0) {
                (void) symlinkat(".singularity.d/runscript", top, "singularity");
                (void) symlinkat(".singularity.d/env/90-environment.sh", top, "environment");
        }
        return 0;
}

/* ---- sections */

static int section_failed(const struct build_ctx *b, const struct recipe_stage *st, const char *sec, int r,
                          struct hutch_error *err)
{
        char lbl[128];
        stage_label(b, st, lbl, sizeof lbl);
        if (r < 0)
                return hutch_err_wrap(err, "%s%%%s", lbl, sec);
        if (b->fakeroot && !b->subids)
                return hutch_err(err, -EIO,
                                 "%s%%%s failed with exit status %d (only your own id is mapped: chown to other ids, "
                                 "apt-get, dnf and useradd need a range for you in /etc/subuid and /etc/subgid)",
                                 lbl, sec, r);
        return hutch_err(err, -EIO, "%s%%%s failed with exit status %d", lbl, sec, r);
}

/* %setup: on the host, $APPTAINER_ROOTFS and $SINGULARITY_ROOTFS naming the rootfs. */
static int run_setup(struct build_ctx *b, const struct recipe_stage *st, size_t i, const char *rootfs,
                     struct hutch_error *err)
{
        const struct recipe_script *sc = &st->script[RECIPE_SETUP];
        if (!section_wanted(b, "setup"))
                return 0;
        _cleanup_free_ char *path = NULL, *e1 = strjoin("APPTAINER_ROOTFS=", rootfs, NULL),
                            *e2 = strjoin("SINGULARITY_ROOTFS=", rootfs, NULL);
        _cleanup_strv_ char **argv = NULL;
        if (!sc->text)
                return 0;
        log_info("Running setup scriptlet");
        if (asprintf(&path, "%s/setup-%zu.sh", b->work, i + 1) < 0 || !e1 || !e2 ||
            script_argv(sc->args, path, true, true, &argv) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        int r = write_file_at(AT_FDCWD, path, sc->text, strlen(sc->text), 0700);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot write '%s'", path);
        char *env[] = {e1, e2, NULL};
        r = host_run_script(argv, env);
        return r != 0 ? section_failed(b, st, "setup", r, err) : 0;
}

static bool has_glob(const char *s)
{
        return strpbrk(s, "*?[") != NULL;
}

/* The destination of a %files line as a path cp can write to without following the
 * rootfs's symlinks on the host: /proc/self/fd/N[/NAME], N a folder opened in the root. */
static int dest_path(int rootfd, const char *dst, bool many, int *ret_fd, char **ret)
{
        _cleanup_free_ char *d = dst[0] == '/' ? strdup(dst) : strjoin("/", dst, NULL);
        if (!d)
                return -ENOMEM;
        struct stat st;
        int fd = root_open(rootfd, d, O_RDONLY | O_DIRECTORY);
        if (fd < 0 && (endswith(d, "/") || many)) {
                int r = root_mkdirs(rootfd, d, 0755);
                if (r < 0)
                        return r;
                fd = root_open(rootfd, d, O_RDONLY | O_DIRECTORY);
        }
        if (fd >= 0) {
                *ret_fd = fd;
                return asprintf(ret, "/proc/self/fd/%d/", fd) < 0 ? -ENOMEM : 0;
        }
        char *slash = strrchr(d, '/');
        *slash = 0;
        int r = root_mkdirs(rootfd, d[0] ? d : "/", 0755);
        if (r < 0)
                return r;
        fd = root_open(rootfd, d[0] ? d : "/", O_RDONLY | O_DIRECTORY);
        if (fd < 0)
                return fd;
        /* a symlink at the name is replaced, not written through */
        if (fstatat(fd, slash + 1, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                unlinkat(fd, slash + 1, 0);
        *ret_fd = fd;
        return asprintf(ret, "/proc/self/fd/%d/%s", fd, slash + 1) < 0 ? -ENOMEM : 0;
}

/* Sources of a %files from STAGE line: its folder opened in that stage's root, entries of
 * it matching the last component (a glob there). */
static int stage_sources(int srcroot, const char *src, int *ret_fd, char ***ret, struct hutch_error *err)
{
        _cleanup_free_ char *d = src[0] == '/' ? strdup(src) : strjoin("/", src, NULL);
        if (!d)
                return hutch_err(err, -ENOMEM, "out of memory");
        char *slash = strrchr(d, '/');
        *slash = 0;
        const char *pat = slash + 1;
        int fd = root_open(srcroot, d[0] ? d : "/", O_RDONLY | O_DIRECTORY);
        if (fd < 0)
                return hutch_err_sys(err, fd, "%%files: source '%s'", src);
        _cleanup_strv_ char **v = NULL;
        DIR *dir = dir_stream_at(fd);
        for (struct dirent *e; dir && (e = readdir(dir));) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                        continue;
                if (has_glob(pat) ? fnmatch(pat, e->d_name, FNM_PERIOD) != 0 : strcmp(pat, e->d_name) != 0)
                        continue;
                char *p = NULL;
                if (asprintf(&p, "/proc/self/fd/%d/%s", fd, e->d_name) < 0 || strv_push(&v, p) < 0) {
                        closedir(dir);
                        close(fd);
                        return hutch_err(err, -ENOMEM, "out of memory");
                }
        }
        if (dir)
                closedir(dir);
        if (!v) {
                close(fd);
                return hutch_err(err, -ENOENT, "%%files: source '%s' does not exist", src);
        }
        *ret_fd = fd;
        *ret = steal_pointer(&v);
        return 0;
}

/* One cp of srcs to the destination d (a folder when there are several), resolved in the
 * root. */
static int copy_run(const struct recipe_files *f, char **srcs, int sfd, int rootfd, const char *src, const char *d,
                    struct hutch_error *err)
{
        _cleanup_strv_ char **argv = NULL;
        _cleanup_free_ char *dst = NULL;
        _cleanup_close_ int dfd = -1;
        int r;
        if ((r = dest_path(rootfd, d, strv_length(srcs) > 1, &dfd, &dst)) < 0)
                return hutch_err_sys(err, r, "%%files: cannot make the destination '%s'", d);
        /* host files are copied with their symlinks followed (cp -L, as Apptainer); a stage's
         * are copied as they are, so that its links cannot reach the host's files.
         * cp runs on the host below dst, a folder resolved inside the root: nothing the image
         * holds may redirect it there. --remove-destination unlinks an existing name before
         * writing (a symlink or a hard link is replaced, never written through), and cp
         * descends only into real folders (lstat), refusing a symlink where a folder goes. */
        if (strv_extend(&argv, "cp") < 0 || strv_extend(&argv, f->from ? "-RP" : "-Lr") < 0 ||
            strv_extend(&argv, "--remove-destination") < 0 || strv_extend(&argv, "--") < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (char **s = srcs; *s; s++)
                if (strv_extend(&argv, *s) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
        if (strv_extend(&argv, dst) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        int keep[] = {sfd, dfd, -1};
        if (sfd < 0) {
                keep[0] = dfd;
                keep[1] = -1;
        }
        if (host_run(argv, NULL, keep) != 0)
                return hutch_err(err, -EIO, "%%files: copying '%s' to '%s' failed", src, d);
        return 0;
}

static int copy_line(const struct recipe_files *f, const struct recipe_file *l, int rootfd, int srcroot,
                     struct hutch_error *err)
{
        _cleanup_strv_ char **srcs = NULL;
        _cleanup_close_ int sfd = -1;
        int r;
        if (f->from) {
                if ((r = stage_sources(srcroot, l->src, &sfd, &srcs, err)) < 0)
                        return r;
        } else {
                glob_t g;
                r = 0;
                if (glob(l->src, GLOB_NOSORT, NULL, &g) != 0 || g.gl_pathc == 0) {
                        globfree(&g);
                        return hutch_err(err, -ENOENT, "%%files: source '%s' %s", l->src,
                                         has_glob(l->src) ? "matches nothing" : "does not exist");
                }
                for (size_t i = 0; i < g.gl_pathc && r >= 0; i++)
                        r = strv_extend(&srcs, g.gl_pathv[i]);
                globfree(&g);
                if (r < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
        }
        if (l->dst[0] || (strv_length(srcs) == 1 && !has_glob(l->src)))
                return copy_run(f, srcs, sfd, rootfd, l->src, l->dst[0] ? l->dst : l->src, err);
        /* a pattern and no destination: each match to its own path in the root, as
         * Apptainer copies them (a stage's: its folder's, with the match's name) */
        for (char **s = srcs; *s; s++) {
                _cleanup_free_ char *d = NULL;
                if (f->from) {
                        const char *slash = strrchr(l->src, '/');
                        int dir = slash ? (int) (slash - l->src) : 0;
                        if (asprintf(&d, "%.*s/%s", dir, l->src, strrchr(*s, '/') + 1) < 0)
                                d = NULL;
                } else
                        d = strdup(*s);
                char *one[] = {*s, NULL};
                if (!d)
                        return hutch_err(err, -ENOMEM, "out of memory");
                if ((r = copy_run(f, one, sfd, rootfd, l->src, d, err)) < 0)
                        return r;
        }
        return 0;
}

static int copy_files(struct build_ctx *b, const struct recipe_stage *st, int rootfd, struct hutch_error *err)
{
        if (!section_wanted(b, "files"))
                return 0;
        for (size_t k = 0; k < st->n_files; k++) {
                const struct recipe_files *f = &st->files[k];
                _cleanup_close_ int srcroot = -1;
                if (f->from) {
                        int s = recipe_stage_find(&b->rec, f->from);
                        _cleanup_free_ char *p = stage_rootfs(b, (size_t) s);
                        srcroot = p ? open(p, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
                        if (srcroot < 0)
                                return hutch_err_sys(err, -errno, "cannot open stage '%s'", f->from);
                        log_info("Copying files from stage %s", f->from);
                } else if (f->n)
                        log_info("Copying files from host");
                for (size_t i = 0; i < f->n; i++) {
                        int r = copy_line(f, &f->lines[i], rootfd, srcroot, err);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* %post may add labels as "KEY VALUE" lines to this file ($APPTAINER_LABELS), as Apptainer's;
 * metadata() reads them into labels.json and removes it */
#define BUILD_LABELS "/.build.labels"

/* %post: in the container (writable), /bin/sh -e -x unless "-c SHELL", the host's network. */
static int run_post(struct build_ctx *b, const struct recipe_stage *st, const char *rootfs, int rootfd,
                    struct hutch_error *err)
{
        const struct recipe_script *sc = &st->script[RECIPE_POST];
        static const char script[] = "/.post.script";
        _cleanup_strv_ char **argv = NULL;
        if (!sc->text || !section_wanted(b, "post"))
                return 0;
        log_info("Running post scriptlet");
        if (script_argv(sc->args, script, true, true, &argv) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        int r = root_write(rootfd, BUILD_LABELS, "", 0, 0644);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot write %s into the image", BUILD_LABELS);
        if ((r = root_write(rootfd, script, sc->text, strlen(sc->text), 0755)) < 0) {
                _cleanup_close_ int top = root_open(rootfd, "/", O_RDONLY | O_DIRECTORY);
                if (top >= 0)
                        unlinkat(top, BUILD_LABELS + 1, 0);
                return hutch_err_sys(err, r, "cannot write %s into the image", script);
        }
        char *env[] = {"APPTAINER_ROOTFS=/", "SINGULARITY_ROOTFS=/", "APPTAINER_LABELS=" BUILD_LABELS,
                       "SINGULARITY_LABELS=" BUILD_LABELS, NULL};
        r = container_run(b, rootfs, LAUNCH_EXEC, argv, env, true, NULL, err);
        _cleanup_close_ int top = root_open(rootfd, "/", O_RDONLY | O_DIRECTORY);
        if (top >= 0) {
                unlinkat(top, script + 1, 0);
                if (r != 0) /* metadata() reads and removes it after a %post that succeeded */
                        unlinkat(top, BUILD_LABELS + 1, 0);
        }
        return r != 0 ? section_failed(b, st, "post", r, err) : 0;
}

/* ---- metadata */

static int write_script(int rootfd, const char *path, const char *text, struct hutch_error *err)
{
        _cleanup_free_ char *s = strjoin("#!/bin/sh\n\n", text, "\n");
        int r = s ? root_write(rootfd, path, s, strlen(s), 0755) : -ENOMEM;
        return r < 0 ? hutch_err_sys(err, r, "cannot write %s into the image", path) : 0;
}

/* %runscript, %startscript and %test as Apptainer writes them: a script whose text begins
 * with a #! line runs under that interpreter (else /bin/sh), and the section's arguments
 * ("%runscript -x") are added to that line. */
static int write_section_script(int rootfd, const char *path, const struct recipe_script *sc, struct hutch_error *err)
{
        const char *t = sc->text;
        while (*t && strchr(" \t\n\r\v\f", *t))
                t++;
        _cleanup_free_ char *shebang = NULL, *body = NULL;
        bool own = startswith(t, "#!");
        if (own) {
                size_t n = strcspn(t, "\n");
                shebang = strndup(t, n);
                body = strdup(t[n] ? t + n + 1 : "");
        } else {
                shebang = strdup("#!/bin/sh");
                body = strdup(sc->text);
        }
        if (!shebang || !body)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (own) { /* trimmed, as Apptainer trims the text before it splits off the #! line */
                size_t k = strlen(shebang);
                while (k && strchr(" \t\r", shebang[k - 1]))
                        shebang[--k] = 0;
                k = strlen(body);
                while (k && strchr(" \t\n\r\v\f", body[k - 1]))
                        body[--k] = 0;
        }
        _cleanup_free_ char *s = NULL;
        const char *args = sc->args ? sc->args : "";
        if (asprintf(&s, "%s%s%s\n\n%s\n", shebang, *args ? " " : "", args, body) < 0)
                s = NULL;
        int r = s ? root_write(rootfd, path, s, strlen(s), 0755) : -ENOMEM;
        return r < 0 ? hutch_err_sys(err, r, "cannot write %s into the image", path) : 0;
}

static const char *goarch(void)
{
        static struct utsname u;
        static const char *const m[][2] = {{"x86_64", "amd64"},    {"aarch64", "arm64"}, {"i686", "386"},
                                           {"ppc64le", "ppc64le"}, {"s390x", "s390x"},   {"riscv64", "riscv64"}};
        if (uname(&u) == 0)
                for (size_t i = 0; i < ELEMENTSOF(m); i++)
                        if (!strcmp(u.machine, m[i][0]))
                                return m[i][1];
        return u.machine;
}

static void label_set(json_object *o, const char *k, const char *v)
{
        json_object_object_add(o, k, json_object_new_string(v));
}

/* labels.json: the base image's, then the build's org.label-schema.* labels, then %labels. */
int labels_write(int rootfd, const char *path, const struct recipe_stage *st, const struct recipe_kv *labels, size_t n,
                 bool build_labels, bool force, struct hutch_error *err)
{
        _cleanup_free_ char *old = NULL;
        json_object *o = NULL;
        if (root_read(rootfd, path, &old) >= 0)
                o = json_tokener_parse(old);
        if (!o || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                o = json_object_new_object();
        }
        /* which of labels[] the base image has, before the build's own are added */
        _cleanup_free_ bool *in_base = n ? calloc(n, sizeof *in_base) : NULL;
        if (n && !in_base) {
                json_object_put(o);
                return hutch_err(err, -ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < n; i++)
                in_base[i] = json_object_object_get_ex(o, labels[i].key, NULL);
        if (build_labels) {
                char date[128];
                time_t now = time(NULL);
                struct tm tm;
                strftime(date, sizeof date, "%A_%-d_%B_%Y_%-H:%-M:%-S_%Z", localtime_r(&now, &tm));
                label_set(o, "org.label-schema.schema-version", "1.0");
                label_set(o, "org.label-schema.build-arch", goarch());
                label_set(o, "org.label-schema.build-date", date);
                label_set(o, "org.label-schema.usage.hutch.version", HUTCH_VERSION);
                if (st->script[RECIPE_HELP].text) {
                        label_set(o, "org.label-schema.usage", "/.singularity.d/runscript.help");
                        label_set(o, "org.label-schema.usage.singularity.runscript.help",
                                  "/.singularity.d/runscript.help");
                }
                for (size_t i = 0; i < st->n_header; i++) {
                        _cleanup_free_ char *k =
                                strjoin("org.label-schema.usage.singularity.deffile.", st->header[i].key, NULL);
                        if (k)
                                label_set(o, k, st->header[i].value);
                }
        }
        for (size_t i = 0; i < n; i++) {
                if (in_base[i] && !force) {
                        log_warning("Label: %s already exists and force option is false, not overwriting",
                                    labels[i].key);
                        continue;
                }
                label_set(o, labels[i].key, labels[i].value);
        }
        const char *s =
                json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_PRETTY_TAB |
                                                          JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
        int r = root_write(rootfd, path, s, strlen(s), 0644);
        json_object_put(o);
        return r < 0 ? hutch_err_sys(err, r, "cannot write %s into the image", path) : 0;
}

/* The definition file as /.singularity.d/Singularity; the base image's goes to
 * bootstrap_history/SingularityN, as Apptainer keeps it. */
static int deffile_write(struct build_ctx *b, int rootfd, struct hutch_error *err)
{
        static const char path[] = "/.singularity.d/Singularity";
        _cleanup_free_ char *old = NULL;
        int r = 0;
        if (root_read(rootfd, path, &old) >= 0) {
                for (int n = 0; n < 1000; n++) {
                        char h[128];
                        snprintf(h, sizeof h, "/.singularity.d/bootstrap_history/Singularity%d", n);
                        if (!root_exists(rootfd, h)) {
                                r = root_write(rootfd, h, old, strlen(old), 0644);
                                break;
                        }
                }
        }
        if (r >= 0)
                r = root_write(rootfd, path, b->rec.raw, b->rec.raw_len, 0644);
        return r < 0 ? hutch_err_sys(err, r, "cannot write %s into the image", path) : 0;
}

static int metadata(struct build_ctx *b, const struct recipe_stage *st, int rootfd, struct hutch_error *err)
{
        const struct recipe_script *sc = st->script;
        int r = 0;
        if (sc[RECIPE_HELP].text && section_wanted(b, "help")) {
                log_info("Adding help info");
                r = root_write(rootfd, "/.singularity.d/runscript.help", sc[RECIPE_HELP].text,
                               strlen(sc[RECIPE_HELP].text), 0644);
                if (r < 0)
                        return hutch_err_sys(err, r, "cannot write the help file into the image");
        }
        if (sc[RECIPE_ENVIRONMENT].text && section_wanted(b, "environment")) {
                log_info("Adding environment to container");
                _cleanup_free_ char *t = strjoin("\n", sc[RECIPE_ENVIRONMENT].text, "\n");
                _cleanup_close_ int fd = -1;
                r = t ? root_open(rootfd, "/.singularity.d/env/90-environment.sh", O_WRONLY | O_APPEND) : -ENOMEM;
                if (r >= 0) {
                        fd = r;
                        r = write_full(fd, t, strlen(t));
                }
                if (r < 0)
                        return hutch_err_sys(err, r, "cannot write the environment into the image");
        }
        if (sc[RECIPE_RUNSCRIPT].text && section_wanted(b, "runscript")) {
                log_info("Adding runscript");
                if ((r = write_section_script(rootfd, "/.singularity.d/runscript", &sc[RECIPE_RUNSCRIPT], err)) < 0)
                        return r;
        }
        if (sc[RECIPE_STARTSCRIPT].text && section_wanted(b, "startscript")) {
                log_info("Adding startscript");
                if ((r = write_section_script(rootfd, "/.singularity.d/startscript", &sc[RECIPE_STARTSCRIPT], err)) < 0)
                        return r;
        }
        if (sc[RECIPE_TEST].text && section_wanted(b, "test")) {
                log_info("Adding testscript");
                if ((r = write_section_script(rootfd, "/.singularity.d/test", &sc[RECIPE_TEST], err)) < 0)
                        return r;
        }
        /* labels %post wrote to $APPTAINER_LABELS, after %labels' (a key in both: %post's) */
        _cleanup_free_ char *dynamic = NULL;
        struct recipe_kv *labels = NULL;
        size_t n = 0;
        if (root_read(rootfd, BUILD_LABELS, &dynamic) >= 0) {
                _cleanup_close_ int top = root_open(rootfd, "/", O_RDONLY | O_DIRECTORY);
                if (top >= 0)
                        unlinkat(top, BUILD_LABELS + 1, 0);
        }
        if (!section_wanted(b, "labels"))
                return deffile_write(b, rootfd, err);
        log_info("Adding labels");
        r = 0;
        for (size_t i = 0; i < st->n_labels && r >= 0; i++)
                r = recipe_kv_set(&labels, &n, st->labels[i].key, st->labels[i].value);
        if (r < 0 || (dynamic && recipe_labels_add(&labels, &n, dynamic) < 0)) {
                recipe_kv_free(labels, n);
                return hutch_err(err, -ENOMEM, "out of memory");
        }
        /* --update rebuilds the sandbox's own labels: they are not a base image's */
        r = labels_write(rootfd, "/.singularity.d/labels.json", st, labels, n, true, b->spec->force || b->spec->update,
                         err);
        recipe_kv_free(labels, n);
        if (r < 0)
                return r;
        return deffile_write(b, rootfd, err);
}

/* %test, after everything else, unless --notest: its failure fails the build. */
static int run_test(struct build_ctx *b, const struct recipe_stage *st, const char *rootfs, struct hutch_error *err)
{
        if (!st->script[RECIPE_TEST].text || !section_wanted(b, "test"))
                return 0;
        if (b->spec->notest) {
                log_verbose("--notest: not running the test script");
                return 0;
        }
        log_info("Running testscript");
        char *argv[] = {NULL};
        int r = container_run(b, rootfs, LAUNCH_TEST, argv, NULL, false, NULL, err);
        return r != 0 ? section_failed(b, st, "test", r, err) : 0;
}

/* ---- SCIF apps: /scif/apps/NAME (bin, lib, scif/ with the app's metadata), /scif/data/NAME */

static int app_dirs_files(const struct recipe_stage *st, int rootfd, struct hutch_error *err)
{
        for (size_t k = 0; k < st->n_apps; k++) {
                const struct recipe_app *a = &st->apps[k];
                static const char *const dirs[][2] = {{"/scif/apps/", "/bin"},
                                                      {"/scif/apps/", "/lib"},
                                                      {"/scif/apps/", "/scif/env"},
                                                      {"/scif/data/", "/input"},
                                                      {"/scif/data/", "/output"}};
                char p[4096];
                for (size_t d = 0; d < ELEMENTSOF(dirs); d++) {
                        snprintf(p, sizeof p, "%s%s%s", dirs[d][0], a->name, dirs[d][1]);
                        int r = root_mkdirs(rootfd, p, 0755);
                        if (r < 0)
                                return hutch_err_sys(err, r, "cannot make %s in the image", p);
                }
                /* the app's SCIF variables, as Apptainer's 01-base.sh sets them: sourced by
                 * %appinstall, and by any runtime that reads the app's env/ */
                _cleanup_free_ char *env01 = NULL;
                if (asprintf(&env01,
                             "#!/bin/sh\n\nSCIF_APPNAME=%1$s\nSCIF_APPROOT=\"/scif/apps/%1$s\"\n"
                             "SCIF_APPMETA=\"/scif/apps/%1$s/scif\"\nSCIF_DATA=\"/scif/data\"\n"
                             "SCIF_APPDATA=\"/scif/data/%1$s\"\nSCIF_APPINPUT=\"/scif/data/%1$s/input\"\n"
                             "SCIF_APPOUTPUT=\"/scif/data/%1$s/output\"\n"
                             "export SCIF_APPDATA SCIF_APPNAME SCIF_APPROOT SCIF_APPMETA SCIF_APPINPUT "
                             "SCIF_APPOUTPUT SCIF_DATA\n",
                             a->name) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
                snprintf(p, sizeof p, "/scif/apps/%s/scif/env/01-base.sh", a->name);
                int w = root_write(rootfd, p, env01, strlen(env01), 0755);
                if (w < 0)
                        return hutch_err_sys(err, w, "cannot write %s into the image", p);
                if (a->n_files)
                        log_info("Copying files of app %s", a->name);
                for (size_t i = 0; i < a->n_files; i++) {
                        const struct recipe_file *l = &a->files[i];
                        struct recipe_files host = {0};
                        const char *base = strrchr(l->src, '/') ? strrchr(l->src, '/') + 1 : l->src;
                        _cleanup_free_ char *dst = NULL;
                        if (asprintf(&dst, "/scif/apps/%s/%s", a->name, l->dst[0] ? l->dst : base) < 0)
                                return hutch_err(err, -ENOMEM, "out of memory");
                        struct recipe_file line = {.src = l->src, .dst = dst};
                        int r = copy_line(&host, &line, rootfd, -1, err);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* %appinstall NAME: after %post, in the container, in the app's folder. */
static int app_install(struct build_ctx *b, const struct recipe_stage *st, const char *rootfs, int rootfd,
                       struct hutch_error *err)
{
        static const char script[] = "/.appinstall.script";
        for (size_t k = 0; k < st->n_apps; k++) {
                const struct recipe_app *a = &st->apps[k];
                const struct recipe_script *sc = &a->script[RECIPE_APP_INSTALL];
                _cleanup_strv_ char **argv = NULL;
                char pwd[4096], sec[300];
                if (!sc->text)
                        continue;
                log_info("Running appinstall scriptlet of app %s", a->name);
                /* with the app's SCIF variables, as Apptainer runs it */
                _cleanup_free_ char *text = NULL;
                if (asprintf(&text, ". /scif/apps/%s/scif/env/01-base.sh\n%s", a->name, sc->text) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
                int r = root_write(rootfd, script, text, strlen(text), 0755);
                if (r < 0)
                        return hutch_err_sys(err, r, "cannot write %s into the image", script);
                if (script_argv(sc->args, script, true, true, &argv) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
                snprintf(pwd, sizeof pwd, "/scif/apps/%s", a->name);
                char *env[] = {"APPTAINER_ROOTFS=/", "SINGULARITY_ROOTFS=/", NULL};
                r = container_run(b, rootfs, LAUNCH_EXEC, argv, env, true, pwd, err);
                _cleanup_close_ int top = root_open(rootfd, "/", O_RDONLY | O_DIRECTORY);
                if (top >= 0)
                        unlinkat(top, script + 1, 0);
                snprintf(sec, sizeof sec, "appinstall %s", a->name);
                if (r != 0)
                        return section_failed(b, st, sec, r, err);
        }
        return 0;
}

static int app_metadata(const struct recipe_stage *st, int rootfd, struct hutch_error *err)
{
        static const struct {
                enum recipe_app_section sec;
                const char *file;
                bool script;
        } files[] = {
                {RECIPE_APP_RUN, "runscript", true},
                {RECIPE_APP_START, "startscript", true},
                {RECIPE_APP_TEST, "test", true},
                {RECIPE_APP_HELP, "runscript.help", false},
        };
        _cleanup_free_ char *base = strdup("#!/bin/sh\n");
        for (size_t k = 0; base && k < st->n_apps; k++) {
                const struct recipe_app *a = &st->apps[k];
                char p[4096];
                int r = 0;
                for (size_t f = 0; f < ELEMENTSOF(files) && r >= 0; f++) {
                        const char *t = a->script[files[f].sec].text;
                        snprintf(p, sizeof p, "/scif/apps/%s/scif/%s", a->name, files[f].file);
                        if (t && files[f].script)
                                r = write_script(rootfd, p, t, err);
                        else if (t && (r = root_write(rootfd, p, t, strlen(t), 0644)) < 0)
                                r = hutch_err_sys(err, r, "cannot write %s into the image", p);
                }
                if (r >= 0 && a->script[RECIPE_APP_ENV].text) {
                        _cleanup_free_ char *t = strjoin(IMAGE_ENV_HEAD, a->script[RECIPE_APP_ENV].text, "\n");
                        snprintf(p, sizeof p, "/scif/apps/%s/scif/env/90-environment.sh", a->name);
                        if ((r = t ? root_write(rootfd, p, t, strlen(t), 0755) : -ENOMEM) < 0)
                                r = hutch_err_sys(err, r, "cannot write %s into the image", p);
                }
                snprintf(p, sizeof p, "/scif/apps/%s/scif/labels.json", a->name);
                /* SCIF_APP_NAME first, as Apptainer labels every app; %applabels may set it */
                struct recipe_kv *kv = NULL;
                size_t n_kv = 0;
                if (r >= 0 && recipe_kv_set(&kv, &n_kv, "SCIF_APP_NAME", a->name) < 0)
                        r = hutch_err(err, -ENOMEM, "out of memory");
                for (size_t i = 0; r >= 0 && i < a->n_labels; i++)
                        if (recipe_kv_set(&kv, &n_kv, a->labels[i].key, a->labels[i].value) < 0)
                                r = hutch_err(err, -ENOMEM, "out of memory");
                if (r >= 0)
                        r = labels_write(rootfd, p, st, kv, n_kv, false, true, err);
                recipe_kv_free(kv, n_kv);
                if (r < 0)
                        return r;
                /* every app's folders by name, for the image's scripts (94-appsbase.sh) */
                if (!is_valid_env_name(a->name, strlen(a->name)))
                        continue;
                char *n = NULL;
                if (asprintf(&n,
                             "%sexport SCIF_APPROOT_%s=/scif/apps/%s SCIF_APPBIN_%s=/scif/apps/%s/bin "
                             "SCIF_APPLIB_%s=/scif/apps/%s/lib SCIF_APPDATA_%s=/scif/data/%s\n",
                             base, a->name, a->name, a->name, a->name, a->name, a->name, a->name, a->name) < 0)
                        n = NULL;
                free(base);
                base = n;
        }
        if (!base)
                return hutch_err(err, -ENOMEM, "out of memory");
        int r = st->n_apps ? root_write(rootfd, "/.singularity.d/env/94-appsbase.sh", base, strlen(base), 0755) : 0;
        return r < 0 ? hutch_err_sys(err, r, "cannot write 94-appsbase.sh into the image") : 0;
}

int stage_build(struct build_ctx *b, size_t i, struct hutch_error *err)
{
        const struct recipe_stage *st = &b->rec.stages[i];
        _cleanup_free_ char *rootfs = stage_rootfs(b, i);
        if (!rootfs)
                return hutch_err(err, -ENOMEM, "out of memory");
        log_info("Stage %zu/%zu%s%s%s: Bootstrap: %s%s%s", i + 1, b->rec.n_stages, st->name ? " (" : "",
                 st->name ? st->name : "", st->name ? ")" : "", st->bootstrap, st->from ? " From: " : "",
                 st->from ? st->from : "");
        /* --update: the last stage's sections run in the existing sandbox, not bootstrapped */
        bool update = b->spec->update && i + 1 == b->rec.n_stages, apps = !b->spec->sections;
        int r = update ? 0 : bootstrap(b, st, rootfs, err);
        if (r < 0)
                return r;
        _cleanup_close_ int rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
                return hutch_err_sys(err, -errno, "cannot open '%s'", rootfs);
        if ((r = base_env(rootfd, err)) < 0 || (r = run_setup(b, st, i, rootfs, err)) < 0 ||
            (r = copy_files(b, st, rootfd, err)) < 0 || (apps && (r = app_dirs_files(st, rootfd, err)) < 0) ||
            (r = run_post(b, st, rootfs, rootfd, err)) < 0 ||
            (apps && (r = app_install(b, st, rootfs, rootfd, err)) < 0) || (r = metadata(b, st, rootfd, err)) < 0 ||
            (apps && (r = app_metadata(st, rootfd, err)) < 0))
                return r;
        if (i + 1 == b->rec.n_stages)
                r = run_test(b, st, rootfs, err);
        return r;
}
