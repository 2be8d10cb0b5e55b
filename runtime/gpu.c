/* --nv and --rocm: the host's GPU driver files bound into the container, as Apptainer's
 * nvliblist.conf and rocmliblist.conf name them. The driver's libraries, found in the
 * dynamic linker's cache (`ldconfig -p`, as Apptainer reads it), go to /.singularity.d/libs,
 * which is on the container's LD_LIBRARY_PATH; its programs, found on the caller's PATH, go
 * to /usr/bin; its device nodes are bound when --contain left a minimal /dev (the host's
 * /dev has them otherwise). Nothing is bound unless a file only that vendor's driver ships
 * is found (libcuda, nvidia-smi, /dev/kfd...): generic libraries such as libGL or libdrm
 * alone are not a GPU driver, and the run then goes on without one, with Apptainer's
 * warning. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime-internal.h"
#include "util/log.h"
#include "util/util.h"

struct gpu_vendor {
        const char *flag, *name;
        const char *const *bins, *const *libs;
        const char *const *markers; /* files of this vendor's driver alone: program, library or /dev path */
        const char *const *dev_prefixes;
};

static const char *const nv_bins[] = {
        "nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nvidia-cuda-mps-control", "nvidia-cuda-mps-server",
        NULL};
static const char *const nv_libs[] = {"libcuda.so",
                                      "libcudadebugger.so",
                                      "libEGL_nvidia.so",
                                      "libGLESv1_CM_nvidia.so",
                                      "libGLESv2_nvidia.so",
                                      "libGLX_nvidia.so",
                                      "libnvcuvid.so",
                                      "libnvidia-allocator.so",
                                      "libnvidia-cfg.so",
                                      "libnvidia-compiler.so",
                                      "libnvidia-eglcore.so",
                                      "libnvidia-egl-wayland.so",
                                      "libnvidia-encode.so",
                                      "libnvidia-fbc.so",
                                      "libnvidia-glcore.so",
                                      "libnvidia-glsi.so",
                                      "libnvidia-glvkspirv.so",
                                      "libnvidia-gpucomp.so",
                                      "libnvidia-ml.so",
                                      "libnvidia-ngx.so",
                                      "libnvidia-nvvm.so",
                                      "libnvidia-opencl.so",
                                      "libnvidia-opticalflow.so",
                                      "libnvidia-pkcs11.so",
                                      "libnvidia-ptxjitcompiler.so",
                                      "libnvidia-rtcore.so",
                                      "libnvidia-tls.so",
                                      "libnvoptix.so",
                                      "libEGL.so",
                                      "libGL.so",
                                      "libGLESv1_CM.so",
                                      "libGLESv2.so",
                                      "libGLX.so",
                                      "libGLdispatch.so",
                                      "libOpenCL.so",
                                      "libOpenGL.so",
                                      "libvdpau_nvidia.so",
                                      NULL};
static const char *const nv_markers[] = {"nvidia-smi", "libcuda.so", "libnvidia-ml.so", "/dev/nvidiactl", NULL};
static const char *const nv_devs[] = {"nvidia", NULL};

static const char *const rocm_bins[] = {"rocm-smi", "rocminfo", NULL};
static const char *const rocm_libs[] = {"libamd_comgr.so",
                                        "libamdhip64.so",
                                        "libhsa-runtime64.so",
                                        "libhsakmt.so",
                                        "libamdocl64.so",
                                        "librocm_smi64.so",
                                        "libhiprtc.so",
                                        "libdrm_amdgpu.so",
                                        "libdrm.so",
                                        "libOpenCL.so",
                                        NULL};
static const char *const rocm_markers[] = {"rocminfo", "libhsa-runtime64.so", "libamdhip64.so", "/dev/kfd", NULL};
static const char *const rocm_devs[] = {"kfd", "dri", NULL};

static const struct gpu_vendor vendors[] = {
        [GPU_NV] = {"--nv", "nv", nv_bins, nv_libs, nv_markers, nv_devs},
        [GPU_ROCM] = {"--rocm", "rocm", rocm_bins, rocm_libs, rocm_markers, rocm_devs},
};

static bool lib_listed(const char *const *libs, const char *name)
{
        for (; *libs; libs++)
                if (startswith(name, *libs))
                        return true;
        return false;
}

static int push(struct bind_spec **v, size_t *n, const char *src, const char *dst)
{
        struct bind_spec *nv = realloc(*v, (*n + 1) * sizeof *nv);
        if (!nv)
                return -ENOMEM;
        *v = nv;
        nv[*n] = (struct bind_spec){.src = strdup(src), .dst = strdup(dst), .ro = true};
        if (!nv[*n].src || !nv[*n].dst) {
                free(nv[*n].src);
                free(nv[*n].dst);
                return -ENOMEM;
        }
        (*n)++;
        return 0;
}

static bool have_dst(const struct bind_spec *v, size_t n, const char *dst)
{
        for (size_t i = 0; i < n; i++)
                if (!strcmp(v[i].dst, dst))
                        return true;
        return false;
}

int gpu_ldconfig_parse(const char *text, const char *const *libs, const char *abi, struct bind_spec **v, size_t *n)
{
        while (*text) {
                size_t len = strcspn(text, "\n");
                _cleanup_free_ char *line = strndup(text, len);
                text += len + (text[len] == '\n');
                if (!line)
                        return -ENOMEM;
                /* "\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1" */
                char *name = line + strspn(line, " \t");
                char *open = strstr(name, " ("), *arrow = strstr(name, ") => ");
                if (!open || !arrow || arrow < open)
                        continue;
                *open = 0;
                *arrow = 0;
                const char *flags = open + 2, *path = arrow + 5;
                if (path[0] != '/' || strchr(name, '/') || !*name || !lib_listed(libs, name))
                        continue;
                if (abi && !strstr(flags, abi))
                        continue; /* another ABI's copy (32-bit, x32) */
                char dst[PATH_MAX];
                snprintf(dst, sizeof dst, "/.singularity.d/libs/%s", name);
                if (have_dst(*v, *n, dst))
                        continue; /* ldconfig lists the preferred copy first */
                if (push(v, n, path, dst) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* The tag ldconfig gives this machine's native libraries; NULL: take every entry. */
static const char *native_abi(void)
{
        struct utsname u;
        if (uname(&u) < 0)
                return NULL;
        if (!strcmp(u.machine, "x86_64"))
                return "x86-64";
        if (!strcmp(u.machine, "aarch64"))
                return "AArch64";
        if (!strcmp(u.machine, "ppc64le"))
                return "64bit";
        return NULL;
}

/* `ldconfig -p`'s output (at most 8 MiB); an empty text where it cannot run. */
static char *ldconfig_text(void)
{
        static const char *const progs[] = {"/sbin/ldconfig", "/usr/sbin/ldconfig"};
        const char *prog = NULL;
        for (size_t i = 0; i < ELEMENTSOF(progs) && !prog; i++)
                if (access(progs[i], X_OK) == 0)
                        prog = progs[i];
        int p[2];
        if (!prog || pipe2(p, O_CLOEXEC) < 0)
                return strdup("");
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (dup2(p[1], STDOUT_FILENO) < 0 || (null >= 0 && dup2(null, STDERR_FILENO) < 0))
                        _exit(127);
                execl(prog, prog, "-p", (char *) NULL);
                _exit(127);
        }
        close(p[1]);
        size_t cap = 1 << 16, len = 0;
        char *buf = pid > 0 ? malloc(cap) : NULL;
        for (ssize_t r; buf;) {
                if (len + 1 == cap) {
                        char *nb = cap < (8u << 20) ? realloc(buf, cap * 2) : NULL;
                        if (!nb)
                                break;
                        buf = nb;
                        cap *= 2;
                }
                r = read(p[0], buf + len, cap - 1 - len);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        break;
                len += r;
        }
        close(p[0]);
        if (pid > 0)
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                        ;
        if (!buf)
                return strdup("");
        buf[len] = 0;
        return buf;
}

/* name on the caller's PATH, into ret; false when absent. */
static bool find_program(const char *name, char *const *host_env, char *ret, size_t len)
{
        const char *path = strv_env_get(host_env, "PATH");
        if (!path)
                path = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";
        while (*path) {
                size_t n = strcspn(path, ":");
                if (n > 0 && path[0] == '/') {
                        snprintf(ret, len, "%.*s/%s", (int) n, path, name);
                        struct stat st;
                        if (stat(ret, &st) == 0 && S_ISREG(st.st_mode) && access(ret, X_OK) == 0)
                                return true;
                }
                path += n + (path[n] == ':');
        }
        return false;
}

static bool listed(const char *const *names, const char *name)
{
        for (; *names; names++)
                if (!strcmp(*names, name) || (startswith(name, *names) && strstr(*names, ".so")))
                        return true;
        return false;
}

int gpu_files(enum gpu_kind kind, const struct launch_spec *s, struct bind_spec **ret, size_t *ret_n,
              struct hutch_error *err)
{
        const struct gpu_vendor *g = &vendors[kind];
        struct bind_spec *v = NULL;
        size_t n = 0;
        bool marked = false;
        int r = 0;
        char p[PATH_MAX];

        for (const char *const *b = g->bins; *b && r >= 0; b++)
                if (find_program(*b, s->host_env, p, sizeof p)) {
                        char dst[PATH_MAX];
                        snprintf(dst, sizeof dst, "/usr/bin/%s", *b);
                        marked |= listed(g->markers, *b);
                        r = push(&v, &n, p, dst);
                }
        _cleanup_free_ char *text = r >= 0 ? ldconfig_text() : NULL;
        size_t first_lib = n;
        if (r >= 0)
                r = text ? gpu_ldconfig_parse(text, g->libs, native_abi(), &v, &n) : -ENOMEM;
        for (size_t i = first_lib; i < n && r >= 0; i++)
                marked |= listed(g->markers, v[i].dst + strlen("/.singularity.d/libs/"));
        for (const char *const *d = g->markers; *d && r >= 0; d++)
                if (startswith(*d, "/dev/") && access(*d, F_OK) == 0)
                        marked = true;
        if (r >= 0 && marked && s->contain) { /* a minimal /dev: the vendor's nodes bound in */
                _cleanup_(closedirp) DIR *dir = opendir("/dev");
                for (struct dirent *e; dir && (e = readdir(dir)) && r >= 0;)
                        for (const char *const *pre = g->dev_prefixes; *pre && r >= 0; pre++)
                                if (startswith(e->d_name, *pre)) {
                                        snprintf(p, sizeof p, "/dev/%s", e->d_name);
                                        r = push(&v, &n, p, p);
                                        if (r >= 0)
                                                v[n - 1].ro = false;
                                }
        }
        if (r < 0) {
                bind_spec_free_array(v, n);
                return hutch_err(err, r, "out of memory");
        }
        if (!marked) {
                log_warning("Could not find any %s files on this host!", g->name);
                bind_spec_free_array(v, n);
                v = NULL;
                n = 0;
        } else
                log_verbose("%s: %zu driver files of this host bound in", g->flag, n);
        *ret = v;
        *ret_n = n;
        return 0;
}
