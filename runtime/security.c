/* What the payload may do once it runs: a seccomp filter (an OCI/Docker JSON profile or the
 * built-in default) compiled to BPF on the host before anything is set up, capabilities
 * and ids for root and fakeroot, all applied last before the exec without allocating. */
#include <errno.h>
#include <grp.h>
#include <json-c/json.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "runtime-internal.h"
#include "util/log.h"
#include "util/util.h"

/* capabilities(7), by number */
static const char *const cap_names[] = {
        "chown",
        "dac_override",
        "dac_read_search",
        "fowner",
        "fsetid",
        "kill",
        "setgid",
        "setuid",
        "setpcap",
        "linux_immutable",
        "net_bind_service",
        "net_broadcast",
        "net_admin",
        "net_raw",
        "ipc_lock",
        "ipc_owner",
        "sys_module",
        "sys_rawio",
        "sys_chroot",
        "sys_ptrace",
        "sys_pacct",
        "sys_admin",
        "sys_boot",
        "sys_nice",
        "sys_resource",
        "sys_time",
        "sys_tty_config",
        "mknod",
        "lease",
        "audit_write",
        "audit_control",
        "setfcap",
        "mac_override",
        "mac_admin",
        "syslog",
        "wake_alarm",
        "block_suspend",
        "audit_read",
        "perfmon",
        "bpf",
        "checkpoint_restore",
};

int runtime_caps_parse(const char *list, uint64_t *mask, struct hutch_error *err)
{
        _cleanup_strv_ char **v = NULL;
        if (strsplit(list, ",", &v) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (char **p = v; *p; p++) {
                const char *n = *p + strspn(*p, " ");
                if (!strncasecmp(n, "cap_", 4))
                        n += 4;
                if (!strcasecmp(n, "all")) {
                        *mask = ~UINT64_C(0);
                        continue;
                }
                size_t i = 0;
                while (i < ELEMENTSOF(cap_names) && strcasecmp(n, cap_names[i]) != 0)
                        i++;
                if (i == ELEMENTSOF(cap_names))
                        return hutch_err(err, -EINVAL, "unknown capability '%s' (as CAP_SYS_ADMIN or sys_admin)", *p);
                *mask |= UINT64_C(1) << i;
        }
        return 0;
}

/* The default profile: a deny list (EPERM) of what a research payload has no use for and
 * the kernel's less-trodden paths: module and kexec loading, keyrings, BPF, perf, new mount
 * API and mounts, namespaces (unshare, setns, clone with CLONE_NEWUSER; clone3 answers
 * ENOSYS so libc falls back to clone), io_uring, clock setting, obsolete calls. */
static const char *const default_denied[] = {
        "_sysctl",
        "acct",
        "add_key",
        "adjtimex",
        "bpf",
        "clock_adjtime",
        "clock_settime",
        "create_module",
        "delete_module",
        "finit_module",
        "fsconfig",
        "fsmount",
        "fsopen",
        "fspick",
        "get_kernel_syms",
        "init_module",
        "io_uring_enter",
        "io_uring_register",
        "io_uring_setup",
        "ioperm",
        "iopl",
        "kexec_file_load",
        "kexec_load",
        "keyctl",
        "lookup_dcookie",
        "mount",
        "mount_setattr",
        "move_mount",
        "nfsservctl",
        "open_by_handle_at",
        "open_tree",
        "perf_event_open",
        "pivot_root",
        "query_module",
        "quotactl",
        "reboot",
        "request_key",
        "setns",
        "settimeofday",
        "stime",
        "swapoff",
        "swapon",
        "syslog",
        "umount",
        "umount2",
        "unshare",
        "uselib",
        "userfaultfd",
        "ustat",
        "vm86",
        "vm86old",
};

static int default_rules(scmp_filter_ctx ctx)
{
        int r;
        for (size_t i = 0; i < ELEMENTSOF(default_denied); i++) {
                int nr = seccomp_syscall_resolve_name(default_denied[i]);
                if (nr != __NR_SCMP_ERROR && (r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0)) < 0)
                        return r;
        }
        struct scmp_arg_cmp newuser = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER);
        if ((r = seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1, &newuser)) < 0)
                return r;
        return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
}

static const struct {
        const char *name;
        uint32_t action; /* ERRNO and TRACE take their value apart */
} actions[] = {
        {"SCMP_ACT_ALLOW", SCMP_ACT_ALLOW},
        {"SCMP_ACT_ERRNO", SCMP_ACT_ERRNO(0)},
        {"SCMP_ACT_KILL", SCMP_ACT_KILL},
        {"SCMP_ACT_KILL_PROCESS", SCMP_ACT_KILL_PROCESS},
        {"SCMP_ACT_KILL_THREAD", SCMP_ACT_KILL_THREAD},
        {"SCMP_ACT_LOG", SCMP_ACT_LOG},
        {"SCMP_ACT_TRACE", SCMP_ACT_TRACE(0)},
        {"SCMP_ACT_TRAP", SCMP_ACT_TRAP},
};

static const struct {
        const char *name;
        enum scmp_compare op;
} ops[] = {
        {"SCMP_CMP_EQ", SCMP_CMP_EQ}, {"SCMP_CMP_GE", SCMP_CMP_GE}, {"SCMP_CMP_GT", SCMP_CMP_GT},
        {"SCMP_CMP_LE", SCMP_CMP_LE}, {"SCMP_CMP_LT", SCMP_CMP_LT}, {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ},
        {"SCMP_CMP_NE", SCMP_CMP_NE},
};

struct profile_ctx {
        const char *name;
        struct hutch_error *err;
        unsigned n_skipped;
};

__attribute__((format(printf, 2, 0))) static int bad(struct profile_ctx *p, const char *fmt, const char *what)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        char msg[256];
        snprintf(msg, sizeof msg, fmt, what);
#pragma GCC diagnostic pop
        return hutch_err(p->err, -EINVAL, "seccomp profile '%s': %s", p->name, msg);
}

/* an action name and its errnoRet (EPERM when absent, as runc) */
static int action_parse(struct profile_ctx *p, json_object *name, json_object *ret, uint32_t *out)
{
        if (!name || !json_object_is_type(name, json_type_string))
                return bad(p, "%s wants an action name (SCMP_ACT_...)", "action");
        const char *s = json_object_get_string(name);
        for (size_t i = 0; i < ELEMENTSOF(actions); i++)
                if (!strcmp(s, actions[i].name)) {
                        int64_t v = EPERM;
                        if (ret && !json_object_is_type(ret, json_type_int))
                                return bad(p, "%s wants a number", "errnoRet");
                        if (ret)
                                v = json_object_get_int64(ret);
                        if (v < 0 || v > 0xffff)
                                return bad(p, "%s is out of range", "errnoRet");
                        *out = actions[i].action == SCMP_ACT_ERRNO(0)   ? SCMP_ACT_ERRNO((uint32_t) v)
                               : actions[i].action == SCMP_ACT_TRACE(0) ? SCMP_ACT_TRACE((uint32_t) v)
                                                                        : actions[i].action;
                        return 0;
                }
        return bad(p, "unknown action '%s'", s);
}

static int arg_parse(struct profile_ctx *p, json_object *a, struct scmp_arg_cmp *out)
{
        json_object *idx, *val, *val2 = NULL, *op;
        if (!json_object_is_type(a, json_type_object) || !json_object_object_get_ex(a, "index", &idx) ||
            !json_object_object_get_ex(a, "value", &val) || !json_object_object_get_ex(a, "op", &op))
                return bad(p, "%s: each wants index, value and op", "args");
        json_object_object_get_ex(a, "valueTwo", &val2);
        int64_t i = json_object_get_int64(idx);
        if (!json_object_is_type(idx, json_type_int) || i < 0 || i > 5)
                return bad(p, "%s: index is 0 to 5", "args");
        if (!json_object_is_type(val, json_type_int) || (val2 && !json_object_is_type(val2, json_type_int)))
                return bad(p, "%s: value and valueTwo are numbers", "args");
        const char *o = json_object_get_string(op);
        for (size_t k = 0; o && k < ELEMENTSOF(ops); k++)
                if (!strcmp(o, ops[k].name)) {
                        *out = (struct scmp_arg_cmp){.arg = (unsigned) i,
                                                     .op = ops[k].op,
                                                     .datum_a = json_object_get_uint64(val),
                                                     .datum_b = val2 ? json_object_get_uint64(val2) : 0};
                        return 0;
                }
        return bad(p, "unknown operator '%s'", o ? o : "");
}

/* An entry meant for other architectures, or for holders of capabilities (which an
 * ordinary user's payload never has), is left out, as Docker's own profile intends. */
static bool entry_applies(json_object *e)
{
        json_object *inc, *exc, *v;
#if defined(__x86_64__)
        const char *native = "amd64";
#elif defined(__aarch64__)
        const char *native = "arm64";
#else
        const char *native = NULL;
#endif
        if (json_object_object_get_ex(e, "includes", &inc)) {
                if (json_object_object_get_ex(inc, "caps", &v) && json_object_array_length(v) > 0)
                        return false;
                if (json_object_object_get_ex(inc, "arches", &v) && json_object_array_length(v) > 0) {
                        bool found = false;
                        for (size_t i = 0; i < json_object_array_length(v); i++)
                                found |= native &&
                                         !strcmp(json_object_get_string(json_object_array_get_idx(v, i)), native);
                        if (!found)
                                return false;
                }
        }
        if (json_object_object_get_ex(e, "excludes", &exc) && json_object_object_get_ex(exc, "arches", &v))
                for (size_t i = 0; i < json_object_array_length(v); i++)
                        if (native && !strcmp(json_object_get_string(json_object_array_get_idx(v, i)), native))
                                return false;
        return true;
}

static int syscall_entry(struct profile_ctx *p, scmp_filter_ctx ctx, uint32_t def, json_object *e)
{
        json_object *names, *name, *action, *ret = NULL, *args = NULL;
        if (!json_object_is_type(e, json_type_object))
                return bad(p, "%s: each entry is an object", "syscalls");
        if (!entry_applies(e))
                return 0;
        bool has_names = json_object_object_get_ex(e, "names", &names);
        if (!has_names && json_object_object_get_ex(e, "name", &name)) { /* the older form */
                names = json_object_new_array();
                json_object_array_add(names, json_object_get(name));
                json_object_object_add(e, "names", names);
        } else if (!has_names || !json_object_is_type(names, json_type_array))
                return bad(p, "%s: each entry wants a names list", "syscalls");
        json_object_object_get_ex(e, "errnoRet", &ret);
        uint32_t act;
        int r = action_parse(p, json_object_object_get_ex(e, "action", &action) ? action : NULL, ret, &act);
        if (r < 0)
                return r;
        struct scmp_arg_cmp cmp[6];
        size_t n_args = 0;
        bool same_index = false;
        if (json_object_object_get_ex(e, "args", &args) && args) {
                if (!json_object_is_type(args, json_type_array) || json_object_array_length(args) > 6)
                        return bad(p, "%s: at most 6 argument rules per entry", "args");
                for (size_t i = 0; i < json_object_array_length(args); i++, n_args++) {
                        if ((r = arg_parse(p, json_object_array_get_idx(args, i), &cmp[i])) < 0)
                                return r;
                        for (size_t j = 0; j < i; j++)
                                same_index |= cmp[j].arg == cmp[i].arg;
                }
        }
        if (act == def)
                return 0; /* what happens anyway; libseccomp refuses such a rule */
        for (size_t i = 0; i < json_object_array_length(names); i++) {
                const char *s = json_object_get_string(json_object_array_get_idx(names, i));
                int nr = s ? seccomp_syscall_resolve_name(s) : __NR_SCMP_ERROR;
                if (nr == __NR_SCMP_ERROR) {
                        log_warning("seccomp profile '%s': unknown system call '%s', skipping", p->name, s ? s : "");
                        p->n_skipped++;
                        continue;
                }
                /* libseccomp takes one comparison per argument in a rule: comparisons of one
                 * argument become a rule each (any of them matches), as runc does */
                if (same_index)
                        for (size_t k = 0; k < n_args && r >= 0; k++)
                                r = seccomp_rule_add_array(ctx, act, nr, 1, &cmp[k]);
                else
                        r = seccomp_rule_add_array(ctx, act, nr, n_args, cmp);
                if (r < 0)
                        return hutch_err(p->err, r, "seccomp profile '%s': cannot add the rule for '%s': %s", p->name,
                                         s, strerror(-r));
        }
        return 0;
}

static int arches_add(struct profile_ctx *p, scmp_filter_ctx ctx, json_object *arches)
{
        if (!json_object_is_type(arches, json_type_array))
                return bad(p, "%s is a list", "architectures");
        for (size_t i = 0; i < json_object_array_length(arches); i++) {
                const char *s = json_object_get_string(json_object_array_get_idx(arches, i));
                char lower[32];
                size_t k = 0;
                if (!s || strncmp(s, "SCMP_ARCH_", 10) != 0)
                        return bad(p, "architecture '%s' is not SCMP_ARCH_...", s ? s : "");
                for (s += 10; *s && k + 1 < sizeof lower; s++)
                        lower[k++] = (char) (*s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s);
                lower[k] = 0;
                uint32_t a = seccomp_arch_resolve_name(lower);
                if (a == 0) {
                        log_warning("seccomp profile '%s': unknown architecture '%s', skipping", p->name, lower);
                        continue;
                }
                int r = seccomp_arch_add(ctx, a);
                if (r < 0 && r != -EEXIST)
                        return hutch_err(p->err, r, "seccomp profile '%s': cannot add architecture '%s'", p->name,
                                         lower);
        }
        return 0;
}

static int profile_build(struct profile_ctx *p, const char *json, scmp_filter_ctx *ret)
{
        enum json_tokener_error jerr;
        json_object *root = json_tokener_parse_verbose(json, &jerr), *v, *ret_errno = NULL;
        int r;
        if (!root)
                return bad(p, "not valid JSON (%s)", json_tokener_error_desc(jerr));
        if (!json_object_is_type(root, json_type_object)) {
                json_object_put(root);
                return bad(p, "%s: the profile is a JSON object", "top level");
        }
        uint32_t def;
        json_object_object_get_ex(root, "defaultErrnoRet", &ret_errno);
        if (!json_object_object_get_ex(root, "defaultAction", &v)) {
                json_object_put(root);
                return bad(p, "%s is missing", "defaultAction");
        }
        if ((r = action_parse(p, v, ret_errno, &def)) < 0) {
                json_object_put(root);
                return r;
        }
        scmp_filter_ctx ctx = seccomp_init(def);
        if (!ctx) {
                json_object_put(root);
                return hutch_err(p->err, -ENOMEM, "cannot create a seccomp filter");
        }
        if (json_object_object_get_ex(root, "architectures", &v) && v)
                r = arches_add(p, ctx, v);
        if (r >= 0 && json_object_object_get_ex(root, "syscalls", &v) && v) {
                if (!json_object_is_type(v, json_type_array))
                        r = bad(p, "%s is a list", "syscalls");
                for (size_t i = 0; r >= 0 && i < json_object_array_length(v); i++)
                        r = syscall_entry(p, ctx, def, json_object_array_get_idx(v, i));
        }
        json_object_put(root);
        if (r < 0) {
                seccomp_release(ctx);
                return r;
        }
        *ret = ctx;
        return 0;
}

/* libseccomp 2.5 writes its BPF to an fd only: through a memfd into memory of ours. */
static int export_bpf(scmp_filter_ctx ctx, struct seccomp_prog *ret, struct hutch_error *err)
{
        _cleanup_close_ int fd = memfd_create("hutch-seccomp", MFD_CLOEXEC);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot make the seccomp filter");
        int r = seccomp_export_bpf(ctx, fd);
        if (r < 0)
                return hutch_err(err, r, "cannot compile the seccomp filter: %s", strerror(-r));
        off_t len = lseek(fd, 0, SEEK_END);
        if (len <= 0 || len % sizeof(struct sock_filter) != 0 || len / sizeof(struct sock_filter) > BPF_MAXINSNS)
                return hutch_err(err, -E2BIG, "the seccomp filter has more than %d instructions", BPF_MAXINSNS);
        struct sock_filter *f = malloc(len);
        if (!f)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (pread(fd, f, len, 0) != len) {
                free(f);
                return hutch_err_sys(err, -EIO, "cannot read the seccomp filter back");
        }
        ret->filter = f;
        ret->len = (unsigned short) (len / sizeof(struct sock_filter));
        return 0;
}

int seccomp_prog_make(const struct launch_spec *s, struct seccomp_prog *ret, struct hutch_error *err)
{
        struct profile_ctx p = {.name = s->seccomp_name ? s->seccomp_name : "default", .err = err};
        scmp_filter_ctx ctx = NULL;
        int r;
        *ret = (struct seccomp_prog){0};
        if (!s->seccomp_json && !s->seccomp_default)
                return 0;
        if (s->seccomp_json)
                r = profile_build(&p, s->seccomp_json, &ctx);
        else {
                ctx = seccomp_init(SCMP_ACT_ALLOW);
                r = ctx ? default_rules(ctx) : -ENOMEM;
                if (r < 0)
                        r = hutch_err(err, r, "cannot build the default seccomp profile");
        }
        if (r >= 0)
                r = export_bpf(ctx, ret, err);
        if (ctx)
                seccomp_release(ctx);
        return r;
}

void seccomp_prog_free(struct seccomp_prog *p)
{
        free(p->filter);
        p->filter = NULL;
        p->len = 0;
}

struct cap_header {
        uint32_t version;
        int pid;
};
struct cap_data {
        uint32_t effective, permitted, inheritable;
};

/* Capabilities of a payload whose uid inside is 0 (root, fakeroot): all, or none with
 * --no-privs, then --add-caps, then --drop-caps. The bounding set goes too, so an exec
 * of a setuid-root file or as root cannot get them back. */
static int caps_apply(const struct launch_spec *s, struct hutch_error *err)
{
        uint64_t keep = s->no_privs ? 0 : ~UINT64_C(0);
        keep = (keep | s->add_caps) & ~s->drop_caps;
        if (keep == ~UINT64_C(0))
                return 0;
        for (int cap = 0; cap < 64; cap++)
                if (!(keep & (UINT64_C(1) << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                        return hutch_err_sys(err, -errno, "cannot drop capability %d", cap);
        (void) prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        struct cap_header h = {.version = _LINUX_CAPABILITY_VERSION_3};
        struct cap_data d[2];
        if (syscall(SYS_capget, &h, d) < 0)
                return hutch_err_sys(err, -errno, "cannot read capabilities");
        for (int i = 0; i < 2; i++) {
                uint32_t k = (uint32_t) (keep >> (32 * i));
                d[i].effective &= k;
                d[i].permitted &= k;
                d[i].inheritable &= k;
        }
        if (syscall(SYS_capset, &h, d) < 0)
                return hutch_err_sys(err, -errno, "cannot set capabilities");
        return 0;
}

int security_apply(const struct launch_ctx *c, struct hutch_error *err)
{
        const struct launch_spec *s = c->spec;
        int r;
        if (s->has_gid) {
                if (setgroups(0, NULL) < 0 || setresgid(s->gid, s->gid, s->gid) < 0)
                        return hutch_err_sys(err, -errno, "cannot take gid %u (--security gid:)", (unsigned) s->gid);
        }
        if (geteuid() == 0 && (r = caps_apply(s, err)) < 0)
                return r;
        if (s->has_uid && setresuid(s->uid, s->uid, s->uid) < 0)
                return hutch_err_sys(err, -errno, "cannot take uid %u (--security uid:)", (unsigned) s->uid);
        /* --allow-setuid (root only): setuid files of the image keep their effect */
        if (!s->allow_setuid && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return hutch_err_sys(err, -errno, "cannot set no_new_privs");
        if (c->seccomp.filter) {
                struct sock_fprog prog = {.len = c->seccomp.len, .filter = c->seccomp.filter};
                if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
                        return hutch_err_sys(err, -errno, "cannot load the seccomp filter");
        }
        return 0;
}
