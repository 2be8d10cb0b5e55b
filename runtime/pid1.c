/* hutch-init: PID 1 of a container's PID namespace, as a program of its own. hutch's init
 * forks the payload, then execs this (by an fd opened before pivot_root; runtime/launch.c)
 * so that what stays for the container's whole life is a few KiB, not a copy of hutch: no
 * libc, no heap, raw system calls, built with -nostdlib -static and installed in
 * libexec/hutch (meson.build).
 *
 * usage: hutch-init PAYLOAD-PID KEEP   (every signal blocked on entry, as exec left them)
 * Forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH and SIGCONT to the
 * payload, reaps every child, and exits with the payload's status (128+N for signal N).
 * KEEP=1 (an instance): a payload that exits 0 leaves PID 1 running, which then ends on
 * SIGTERM, SIGINT, SIGHUP or SIGQUIT, or on the supervisor's stop signal, whichever it is
 * (pid1.h: marked so). A payload that exits 0 after such a stop signal was forwarded to it
 * has stopped as asked (a service that exits 0 on SIGTERM), and PID 1 ends with it. */
#include <asm/unistd.h>
#include <linux/prctl.h>
#include <linux/wait.h>

#include "pid1.h"

#define SIGHUP 1
#define SIGINT 2
#define SIGQUIT 3
#define SIGUSR1 10
#define SIGUSR2 12
#define SIGTERM 15
#define SIGCHLD 17
#define SIGCONT 18
#define SIGWINCH 28
#define SIG_BLOCK 0

static long sys(long n, long a, long b, long c, long d)
{
        long ret;
#if defined(__x86_64__)
        register long r10 __asm__("r10") = d;
        __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
#elif defined(__aarch64__)
        register long x8 __asm__("x8") = n;
        register long x0 __asm__("x0") = a;
        register long x1 __asm__("x1") = b;
        register long x2 __asm__("x2") = c;
        register long x3 __asm__("x3") = d;
        __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
        ret = x0;
#else
#error "hutch-init: no system call stub for this architecture"
#endif
        return ret;
}

static _Noreturn void quit(int code)
{
        for (;;)
                sys(__NR_exit_group, code, 0, 0, 0);
}

static long number(const char *s)
{
        long v = 0;
        if (!s || !*s)
                return -1;
        for (; *s; s++) {
                if (*s < '0' || *s > '9' || v > 1 << 22)
                        return -1;
                v = v * 10 + (*s - '0');
        }
        return v;
}

static int status_code(int ws)
{
        int sig = ws & 0x7f;
        return sig ? 128 + sig : (ws >> 8) & 0xff;
}

/* called from _start with the initial stack: argc, argv[], NULL, envp[] */
_Noreturn void pid1_main(long *sp);
_Noreturn void pid1_main(long *sp)
{
        static const int fwd[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT};
        char **argv = (char **) (sp + 1);
        unsigned long all = ~0UL;
        long info[16]; /* siginfo_t: 128 bytes */

        if (sp[0] != 3)
                quit(255);
        long payload = number(argv[1]);
        int keep = argv[2][0] == '1', stopping = 0;
        if (payload <= 0)
                quit(255);
        sys(__NR_rt_sigprocmask, SIG_BLOCK, (long) &all, 0, sizeof all);
        sys(__NR_prctl, PR_SET_NAME, (long) "hutch-init", 0, 0);
        for (;;) {
                long sig = sys(__NR_rt_sigtimedwait, (long) &all, (long) info, 0, sizeof all);
                /* the supervisor's stop: queued (si_code SI_QUEUE, -1) with its mark as
                 * si_value (siginfo: si_code at byte 8, si_value at 24) */
                const int *si = (const int *) info;
                int marked = sig > 0 && si[2] == -1 && si[6] == HUTCH_INIT_STOP_MARK;
                if (sig == SIGCHLD) {
                        int ws;
                        long p;
                        while ((p = sys(__NR_wait4, -1, (long) &ws, WNOHANG, 0)) > 0) {
                                if (p != payload)
                                        continue;
                                int code = status_code(ws);
                                /* a payload that ends after `instance stop` asked it to has
                                 * stopped, whatever its status (a service that exits 0 on
                                 * SIGTERM): the instance ends with it, not at the stop's
                                 * timeout. Another signal (a reload's SIGHUP) is no stop. */
                                if (code != 0 || !keep || stopping)
                                        quit(code);
                                payload = 0;
                        }
                        continue;
                }
                if (payload == 0 && (marked || sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT))
                        quit(0);
                stopping |= marked;
                for (unsigned i = 0; i < sizeof fwd / sizeof fwd[0] && payload > 0; i++)
                        if (sig == fwd[i])
                                sys(__NR_kill, payload, sig, 0, 0);
        }
}

#if defined(__x86_64__)
__asm__(".text\n.global _start\n_start:\n\txor %rbp, %rbp\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n\tcall pid1_main\n");
#elif defined(__aarch64__)
__asm__(".text\n.global _start\n_start:\n\tmov x0, sp\n\tbl pid1_main\n");
#endif
