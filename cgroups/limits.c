/* The pure half of cgroups/: limit flags, sizes, Apptainer's cgroups TOML, admin maxima and
 * defaults, and the translation to cgroup v1 and v2 files. No I/O except stat() of the
 * block device a --device-* flag names. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "cgroups.h"
#include "util/util.h"

void cgroup_limits_init(struct cgroup_limits *l)
{
        *l = (struct cgroup_limits){.cpu_quota = CG_UNSET,
                                    .memory = CG_UNSET,
                                    .memory_reservation = CG_UNSET,
                                    .memory_swap = CG_UNSET,
                                    .pids = CG_UNSET};
}

void cgroup_limits_free(struct cgroup_limits *l)
{
        free(l->cpuset_cpus);
        free(l->cpuset_mems);
        free(l->devs);
        cgroup_limits_init(l);
}

bool cgroup_limits_any(const struct cgroup_limits *l)
{
        return l->cpu_quota != CG_UNSET || l->cpu_period || l->cpu_shares || l->cpuset_cpus || l->cpuset_mems ||
               l->memory != CG_UNSET || l->memory_reservation != CG_UNSET || l->memory_swap != CG_UNSET ||
               l->oom_kill_disable || l->pids != CG_UNSET || l->blkio_weight || l->n_devs;
}

static int parse_u64(const char *s, uint64_t *ret)
{
        return parse_u64_range(s, 0, UINT64_MAX, ret);
}

/* "8:0": a block device's major and minor numbers */
static bool parse_dev_numbers(const char *dev, unsigned *ret_major, unsigned *ret_minor)
{
        _cleanup_free_ char *maj = strndup(dev, strcspn(dev, ":"));
        const char *colon = strchr(dev, ':');
        uint64_t a, b;
        if (!maj || !colon || parse_u64_range(maj, 0, UINT32_MAX, &a) < 0 ||
            parse_u64_range(colon + 1, 0, UINT32_MAX, &b) < 0)
                return false;
        *ret_major = (unsigned) a;
        *ret_minor = (unsigned) b;
        return true;
}

/* "0-3,5" or "0,1": what the kernel's cpuset lists accept */
static bool is_cpu_list(const char *s)
{
        if (!*s)
                return false;
        for (const char *p = s; *p; p++)
                if (!strchr("0123456789,-", *p))
                        return false;
        return true;
}

static int add_dev(struct cgroup_limits *l, unsigned major, unsigned minor, enum cgroup_dev_kind kind, uint64_t v)
{
        struct cgroup_dev_limit *n = realloc(l->devs, (l->n_devs + 1) * sizeof *n);
        if (!n)
                return -ENOMEM;
        l->devs = n;
        n[l->n_devs++] = (struct cgroup_dev_limit){major, minor, kind, v};
        return 0;
}

/* DEV:VALUE with DEV a block device path (or MAJOR:MINOR:VALUE). */
static int dev_flag(struct cgroup_limits *l, const char *flag, enum cgroup_dev_kind kind, const char *v,
                    struct hutch_error *err)
{
        const char *colon = strrchr(v, ':');
        unsigned major, minor;
        uint64_t n;
        if (!colon)
                return hutch_err(err, -EINVAL, "--%s wants DEVICE:VALUE, not '%s'", flag, v);
        _cleanup_free_ char *dev = strndup(v, colon - v);
        if (!dev)
                return hutch_err(err, -ENOMEM, "out of memory");
        int r = kind == CG_DEV_WEIGHT || kind == CG_DEV_RIOPS || kind == CG_DEV_WIOPS ? parse_u64(colon + 1, &n)
                                                                                      : size_parse(colon + 1, &n);
        if (r < 0)
                return hutch_err(err, -EINVAL, "--%s: bad value '%s'", flag, colon + 1);
        if (kind == CG_DEV_WEIGHT && (n < 10 || n > 1000))
                return hutch_err(err, -EINVAL, "--%s: a weight is 10 to 1000, not %s", flag, colon + 1);
        struct stat st;
        if (parse_dev_numbers(dev, &major, &minor))
                ;
        else if (stat(dev, &st) < 0)
                return hutch_err_sys(err, -errno, "--%s: cannot find device '%s'", flag, dev);
        else if (!S_ISBLK(st.st_mode))
                return hutch_err(err, -EINVAL, "--%s: '%s' is not a block device", flag, dev);
        else {
                major = major(st.st_rdev);
                minor = minor(st.st_rdev);
        }
        return add_dev(l, major, minor, kind, n) < 0 ? hutch_err(err, -ENOMEM, "out of memory") : 0;
}

static int size_or_unlimited(const char *v, int64_t *ret)
{
        uint64_t n;
        if (!strcmp(v, "-1")) {
                *ret = CG_UNLIMITED;
                return 0;
        }
        if (size_parse(v, &n) < 0 || n > INT64_MAX)
                return -EINVAL;
        *ret = (int64_t) n;
        return 0;
}

enum flag_kind {
        FL_CPUS,
        FL_SHARES,
        FL_CPUSET_CPUS,
        FL_CPUSET_MEMS,
        FL_MEMORY,
        FL_MEMORY_RES,
        FL_SWAP,
        FL_OOM,
        FL_PIDS,
        FL_BLKIO,
        FL_DEV
};

/* Sorted by name: looked up with bsearch. */
static const struct limit_flag {
        const char *name;
        enum flag_kind kind;
        enum cgroup_dev_kind dev;
} flags[] = {
        {"blkio-weight", FL_BLKIO, 0},
        {"blkio-weight-device", FL_DEV, CG_DEV_WEIGHT},
        {"cpu-shares", FL_SHARES, 0},
        {"cpus", FL_CPUS, 0},
        {"cpuset-cpus", FL_CPUSET_CPUS, 0},
        {"cpuset-mems", FL_CPUSET_MEMS, 0},
        {"device-read-bps", FL_DEV, CG_DEV_RBPS},
        {"device-read-iops", FL_DEV, CG_DEV_RIOPS},
        {"device-write-bps", FL_DEV, CG_DEV_WBPS},
        {"device-write-iops", FL_DEV, CG_DEV_WIOPS},
        {"memory", FL_MEMORY, 0},
        {"memory-reservation", FL_MEMORY_RES, 0},
        {"memory-swap", FL_SWAP, 0},
        {"oom-kill-disable", FL_OOM, 0},
        {"pids-limit", FL_PIDS, 0},
};

static int flag_cmp(const void *k, const void *e)
{
        return strcmp(k, ((const struct limit_flag *) e)->name);
}

bool cgroup_is_limit_flag(const char *name)
{
        return bsearch(name, flags, ELEMENTSOF(flags), sizeof flags[0], flag_cmp) != NULL;
}

int cgroup_limit_flag(struct cgroup_limits *l, const char *name, const char *v, struct hutch_error *err)
{
        const struct limit_flag *f = bsearch(name, flags, ELEMENTSOF(flags), sizeof flags[0], flag_cmp);
        uint64_t n;
        if (!f)
                return -ENOENT;
        switch (f->kind) {
        case FL_CPUS: {
                double d = 0;
                if (parse_double_range(v, 0, 100000, &d) < 0 || d <= 0)
                        return hutch_err(err, -EINVAL, "--cpus wants a positive number of CPUs, not '%s'", v);
                l->cpu_period = 100000;
                l->cpu_quota = (int64_t) (d * 100000 + 0.5);
                if (l->cpu_quota < 1000)
                        l->cpu_quota = 1000; /* the kernel's minimum quota is 1 ms */
                return 0;
        }
        case FL_SHARES:
                if (parse_u64(v, &n) < 0 || n < 2 || n > 262144)
                        return hutch_err(err, -EINVAL, "--cpu-shares wants 2 to 262144, not '%s'", v);
                l->cpu_shares = n;
                return 0;
        case FL_CPUSET_CPUS:
        case FL_CPUSET_MEMS: {
                if (!is_cpu_list(v))
                        return hutch_err(err, -EINVAL, "--%s wants a list like 0-3,5, not '%s'", name, v);
                char **dst = f->kind == FL_CPUSET_CPUS ? &l->cpuset_cpus : &l->cpuset_mems;
                free(*dst);
                *dst = strdup(v);
                return *dst ? 0 : hutch_err(err, -ENOMEM, "out of memory");
        }
        case FL_MEMORY:
        case FL_MEMORY_RES:
                if (size_parse(v, &n) < 0 || n == 0 || n > INT64_MAX)
                        return hutch_err(err, -EINVAL, "--%s wants a size like 512M or 2G, not '%s'", name, v);
                if (f->kind == FL_MEMORY && n < (6u << 20))
                        return hutch_err(err, -EINVAL, "--memory %s is below the minimum of 6M", v);
                *(f->kind == FL_MEMORY ? &l->memory : &l->memory_reservation) = (int64_t) n;
                return 0;
        case FL_SWAP:
                if (size_or_unlimited(v, &l->memory_swap) < 0)
                        return hutch_err(err, -EINVAL, "--memory-swap wants a size or -1, not '%s'", v);
                return 0;
        case FL_OOM: l->oom_kill_disable = true; return 0;
        case FL_PIDS:
                if (!strcmp(v, "-1") || !strcmp(v, "0")) {
                        l->pids = CG_UNLIMITED;
                        return 0;
                }
                if (parse_u64(v, &n) < 0 || n > INT64_MAX)
                        return hutch_err(err, -EINVAL, "--pids-limit wants a number (-1: unlimited), not '%s'", v);
                l->pids = (int64_t) n;
                return 0;
        case FL_BLKIO:
                if (parse_u64(v, &n) < 0 || n < 10 || n > 1000)
                        return hutch_err(err, -EINVAL, "--blkio-weight wants 10 to 1000, not '%s'", v);
                l->blkio_weight = (unsigned) n;
                return 0;
        case FL_DEV: return dev_flag(l, name, f->dev, v, err);
        }
        return -ENOENT;
}

int cgroup_limits_clamp(struct cgroup_limits *l, const struct cgroup_limits *max, char **ret_what)
{
        char what[256] = "";
        int n = 0;
#define CLAMP64(field, label)                                                                              \
        if (max->field >= 0 && (l->field < 0 || l->field > max->field)) {                                  \
                l->field = max->field;                                                                     \
                snprintf(what + strlen(what), sizeof what - strlen(what), "%s%s", n++ ? ", " : "", label); \
        }
        CLAMP64(memory, "memory");
        CLAMP64(pids, "pids-limit");
        if (max->cpu_quota >= 0) {
                uint64_t mp = max->cpu_period ? max->cpu_period : 100000, lp = l->cpu_period ? l->cpu_period : 100000;
                /* compare CPUs, not raw quotas: periods may differ */
                if (l->cpu_quota < 0 || (double) l->cpu_quota / lp > (double) max->cpu_quota / mp) {
                        l->cpu_quota = max->cpu_quota;
                        l->cpu_period = mp;
                        snprintf(what + strlen(what), sizeof what - strlen(what), "%scpus", n++ ? ", " : "");
                }
        }
#undef CLAMP64
        if (n && ret_what)
                *ret_what = strdup(what);
        return n;
}

int cgroup_limits_default(struct cgroup_limits *l, const struct cgroup_limits *def)
{
        if (l->memory == CG_UNSET)
                l->memory = def->memory;
        if (l->pids == CG_UNSET)
                l->pids = def->pids;
        if (l->cpu_quota == CG_UNSET) {
                l->cpu_quota = def->cpu_quota;
                l->cpu_period = def->cpu_period;
        }
        return 0;
}

void cgroup_files_free(struct cgroup_file *f, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(f[i].value);
        free(f);
}

uint64_t cgroup_shares_to_weight(uint64_t shares)
{
        return shares == 0 ? 0 : 1 + ((shares - 2) * 9999) / 262142;
}

uint64_t cgroup_blkio_to_io_weight(uint64_t weight)
{
        return weight == 0 ? 0 : 1 + ((weight - 10) * 9999) / 990;
}

struct files {
        struct cgroup_file *v;
        size_t n;
        int r;
};

static void __attribute__((format(printf, 4, 5)))
put(struct files *f, const char *ctrl, const char *file, const char *fmt, ...)
{
        va_list ap;
        char *val = NULL;
        if (f->r < 0)
                return;
        va_start(ap, fmt);
        int k = vasprintf(&val, fmt, ap);
        va_end(ap);
        struct cgroup_file *n = k < 0 ? NULL : realloc(f->v, (f->n + 1) * sizeof *n);
        if (!n) {
                free(k < 0 ? NULL : val);
                f->r = -ENOMEM;
                return;
        }
        f->v = n;
        n[f->n++] = (struct cgroup_file){ctrl, file, val};
}

static const char *const v1_dev_files[] = {"blkio.weight_device", "blkio.throttle.read_bps_device",
                                           "blkio.throttle.write_bps_device", "blkio.throttle.read_iops_device",
                                           "blkio.throttle.write_iops_device"};
static const char *const v2_dev_keys[] = {"", "rbps", "wbps", "riops", "wiops"};

static void files_v2(const struct cgroup_limits *l, struct files *f)
{
        uint64_t period = l->cpu_period ? l->cpu_period : 100000;
        if (l->cpu_quota != CG_UNSET) {
                if (l->cpu_quota == CG_UNLIMITED)
                        put(f, "cpu", "cpu.max", "max %llu", (unsigned long long) period);
                else
                        put(f, "cpu", "cpu.max", "%lld %llu", (long long) l->cpu_quota, (unsigned long long) period);
        }
        if (l->cpu_shares)
                put(f, "cpu", "cpu.weight", "%llu", (unsigned long long) cgroup_shares_to_weight(l->cpu_shares));
        if (l->cpuset_cpus)
                put(f, "cpuset", "cpuset.cpus", "%s", l->cpuset_cpus);
        if (l->cpuset_mems)
                put(f, "cpuset", "cpuset.mems", "%s", l->cpuset_mems);
        if (l->memory_reservation >= 0)
                put(f, "memory", "memory.low", "%lld", (long long) l->memory_reservation);
        if (l->memory >= 0)
                put(f, "memory", "memory.max", "%lld", (long long) l->memory);
        /* OCI's swap is memory+swap; v2's memory.swap.max is the swap alone */
        if (l->memory_swap == CG_UNLIMITED)
                put(f, "memory", "memory.swap.max", "max");
        else if (l->memory_swap >= 0)
                put(f, "memory", "memory.swap.max", "%lld",
                    (long long) (l->memory_swap - (l->memory >= 0 ? l->memory : 0)));
        if (l->pids == CG_UNLIMITED)
                put(f, "pids", "pids.max", "max");
        else if (l->pids >= 0)
                put(f, "pids", "pids.max", "%lld", (long long) l->pids);
        if (l->blkio_weight)
                put(f, "io", "io.weight", "default %llu",
                    (unsigned long long) cgroup_blkio_to_io_weight(l->blkio_weight));
        for (size_t i = 0; i < l->n_devs; i++) {
                const struct cgroup_dev_limit *d = &l->devs[i];
                if (d->kind == CG_DEV_WEIGHT)
                        put(f, "io", "io.weight", "%u:%u %llu", d->major, d->minor,
                            (unsigned long long) cgroup_blkio_to_io_weight(d->value));
                else
                        put(f, "io", "io.max", "%u:%u %s=%llu", d->major, d->minor, v2_dev_keys[d->kind],
                            (unsigned long long) d->value);
        }
}

static void files_v1(const struct cgroup_limits *l, struct files *f)
{
        uint64_t period = l->cpu_period ? l->cpu_period : 100000;
        if (l->cpu_quota != CG_UNSET) {
                put(f, "cpu", "cpu.cfs_period_us", "%llu", (unsigned long long) period);
                put(f, "cpu", "cpu.cfs_quota_us", "%lld",
                    (long long) (l->cpu_quota == CG_UNLIMITED ? -1 : l->cpu_quota));
        }
        if (l->cpu_shares)
                put(f, "cpu", "cpu.shares", "%llu", (unsigned long long) l->cpu_shares);
        if (l->cpuset_cpus)
                put(f, "cpuset", "cpuset.cpus", "%s", l->cpuset_cpus);
        if (l->cpuset_mems)
                put(f, "cpuset", "cpuset.mems", "%s", l->cpuset_mems);
        if (l->memory_reservation >= 0)
                put(f, "memory", "memory.soft_limit_in_bytes", "%lld", (long long) l->memory_reservation);
        /* memsw must stay >= memory at every step: memory first */
        if (l->memory >= 0)
                put(f, "memory", "memory.limit_in_bytes", "%lld", (long long) l->memory);
        if (l->memory_swap != CG_UNSET)
                put(f, "memory", "memory.memsw.limit_in_bytes", "%lld",
                    (long long) (l->memory_swap == CG_UNLIMITED ? -1 : l->memory_swap));
        if (l->oom_kill_disable)
                put(f, "memory", "memory.oom_control", "1");
        if (l->pids == CG_UNLIMITED)
                put(f, "pids", "pids.max", "max");
        else if (l->pids >= 0)
                put(f, "pids", "pids.max", "%lld", (long long) l->pids);
        if (l->blkio_weight)
                put(f, "blkio", "blkio.weight", "%u", l->blkio_weight);
        for (size_t i = 0; i < l->n_devs; i++) {
                const struct cgroup_dev_limit *d = &l->devs[i];
                put(f, "blkio", v1_dev_files[d->kind], "%u:%u %llu", d->major, d->minor, (unsigned long long) d->value);
        }
}

int cgroup_limits_files(const struct cgroup_limits *l, int version, struct cgroup_file **ret, size_t *ret_n,
                        struct hutch_error *err)
{
        struct files f = {0};
        if (version == 2 && l->oom_kill_disable)
                return hutch_err(err, -EOPNOTSUPP, "--oom-kill-disable has no cgroup v2 equivalent");
        if (l->memory_swap >= 0 && l->memory >= 0 && l->memory_swap < l->memory)
                return hutch_err(err, -EINVAL, "--memory-swap must be at least --memory (it counts both)");
        if (l->memory_swap >= 0 && l->memory < 0)
                return hutch_err(err, -EINVAL, "--memory-swap needs --memory");
        if (version == 2)
                files_v2(l, &f);
        else
                files_v1(l, &f);
        if (f.r < 0) {
                cgroup_files_free(f.v, f.n);
                return hutch_err(err, f.r, "out of memory");
        }
        *ret = f.v;
        *ret_n = f.n;
        return 0;
}

/* A size as its flag takes it: 1G, 512M, 64K where exact, else bytes. */
static void size_flag(FILE *f, int64_t v)
{
        static const char units[] = "KMGT";
        int u = -1;
        while (u < 3 && v >= 1024 && v % 1024 == 0) {
                v /= 1024;
                u++;
        }
        if (u >= 0)
                fprintf(f, "%lld%c", (long long) v, units[u]);
        else
                fprintf(f, "%lld", (long long) v);
}

int cgroup_limits_format(const struct cgroup_limits *l, char **ret)
{
        static const char *const dev_flag_name[] = {
                [CG_DEV_WEIGHT] = "blkio-weight-device", [CG_DEV_RBPS] = "device-read-bps",
                [CG_DEV_WBPS] = "device-write-bps",      [CG_DEV_RIOPS] = "device-read-iops",
                [CG_DEV_WIOPS] = "device-write-iops",
        };
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        const char *sep = "";
#define NEXT(name) (fprintf(f, "%s%s", sep, name), sep = ",")
        if (l && l->memory >= 0) {
                NEXT("memory=");
                size_flag(f, l->memory);
        }
        if (l && l->memory_reservation >= 0) {
                NEXT("memory-reservation=");
                size_flag(f, l->memory_reservation);
        }
        if (l && l->memory_swap == CG_UNLIMITED)
                NEXT("memory-swap=-1");
        else if (l && l->memory_swap >= 0) {
                NEXT("memory-swap=");
                size_flag(f, l->memory_swap);
        }
        if (l && l->cpu_quota >= 0) {
                NEXT("cpus=");
                fprintf(f, "%g", (double) l->cpu_quota / (double) (l->cpu_period ? l->cpu_period : 100000));
        }
        if (l && l->cpu_shares)
                NEXT("cpu-shares="), fprintf(f, "%llu", (unsigned long long) l->cpu_shares);
        if (l && l->cpuset_cpus)
                NEXT("cpuset-cpus="), fprintf(f, "%s", l->cpuset_cpus);
        if (l && l->cpuset_mems)
                NEXT("cpuset-mems="), fprintf(f, "%s", l->cpuset_mems);
        if (l && l->oom_kill_disable)
                NEXT("oom-kill-disable");
        if (l && l->pids == CG_UNLIMITED)
                NEXT("pids-limit=-1");
        else if (l && l->pids >= 0)
                NEXT("pids-limit="), fprintf(f, "%lld", (long long) l->pids);
        if (l && l->blkio_weight)
                NEXT("blkio-weight="), fprintf(f, "%u", l->blkio_weight);
        for (size_t i = 0; l && i < l->n_devs; i++) {
                const struct cgroup_dev_limit *d = &l->devs[i];
                NEXT(dev_flag_name[d->kind]);
                fprintf(f, "=%u:%u:%llu", d->major, d->minor, (unsigned long long) d->value);
        }
#undef NEXT
        if (fclose(f) != 0 || !buf) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        return 0;
}
