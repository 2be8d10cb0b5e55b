/* The audit trail: each start, stop, unexpected exit and restart of an instance as one
 * structured journal entry (HUTCH_INSTANCE=, HUTCH_USER=, ... so that `journalctl
 * HUTCH_INSTANCE=web` answers an admin), written by hand in journald's native protocol (a
 * datagram of KEY=VALUE lines to /run/systemd/journal/socket, see systemd.journal-fields(7)
 * and the protocol notes of systemd-journald), or one syslog line where no journald listens.
 * Never blocking, never failing an instance. */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "instanced-internal.h"
#include "util/cleanup.h"
#include "util/util.h"

#define JOURNAL_SOCKET "/run/systemd/journal/socket"

/* KEY=VALUE\n, or for a value holding a newline the binary form KEY\n<le64 size>VALUE\n */
static int field_append(char **buf, size_t *len, const char *key, const char *value)
{
        size_t kl = strlen(key), vl = strlen(value);
        bool binary = strchr(value, '\n') != NULL;
        char *n = realloc(*buf, *len + kl + vl + 10);
        if (!n)
                return -ENOMEM;
        *buf = n;
        memcpy(n + *len, key, kl);
        *len += kl;
        if (binary) {
                n[(*len)++] = '\n';
                for (int i = 0; i < 8; i++)
                        n[(*len)++] = (char) ((uint64_t) vl >> (8 * i) & 0xff);
        } else
                n[(*len)++] = '=';
        memcpy(n + *len, value, vl);
        *len += vl;
        n[(*len)++] = '\n';
        return 0;
}

int instance_audit_format(const struct instance_audit *a, char **ret, size_t *ret_len)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        char msg[600], pid[24], uid[24], status[24], restarts[24];
        snprintf(pid, sizeof pid, "%d", (int) a->pid);
        snprintf(uid, sizeof uid, "%u", (unsigned) a->uid);
        snprintf(status, sizeof status, "%d", a->exit_status);
        snprintf(restarts, sizeof restarts, "%u", a->restarts);
        char what[300];
        if (a->instance)
                snprintf(what, sizeof what, "instance %s of %s", a->instance, a->user);
        else
                snprintf(what, sizeof what, "%s of %s", a->verb ? a->verb : "run", a->user);
        if (a->exit_status >= 0)
                snprintf(msg, sizeof msg, "%s: %s (status %d)", what, a->event, a->exit_status);
        else
                snprintf(msg, sizeof msg, "%s: %s (pid %d)", what, a->event, (int) a->pid);
        const char *f[][2] = {
                {"MESSAGE", msg},
                {"PRIORITY", a->exit_status > 0 ? "5" : "6"},
                {"SYSLOG_IDENTIFIER", "hutch"},
                {"HUTCH_EVENT", a->event},
                {"HUTCH_USER", a->user},
                {"HUTCH_UID", uid},
                {"HUTCH_IMAGE", a->image ? a->image : ""},
                {"HUTCH_PID", pid},
        };
        for (size_t i = 0; i < ELEMENTSOF(f); i++)
                if (field_append(&buf, &len, f[i][0], f[i][1]) < 0)
                        return -ENOMEM;
        /* an instance's: its name, keeper and restarts; a batch run's: its verb */
        if (a->instance && (field_append(&buf, &len, "HUTCH_INSTANCE", a->instance) < 0 ||
                            field_append(&buf, &len, "HUTCH_KEEPER", a->keeper ? a->keeper : "hutch") < 0 ||
                            field_append(&buf, &len, "HUTCH_RESTARTS", restarts) < 0))
                return -ENOMEM;
        if (!a->instance && field_append(&buf, &len, "HUTCH_VERB", a->verb ? a->verb : "run") < 0)
                return -ENOMEM;
        if (a->exit_status >= 0 && field_append(&buf, &len, "HUTCH_EXIT_STATUS", status) < 0)
                return -ENOMEM;
        if (a->unit && field_append(&buf, &len, "HUTCH_UNIT", a->unit) < 0)
                return -ENOMEM;
        if (a->limits && *a->limits && field_append(&buf, &len, "HUTCH_LIMITS", a->limits) < 0)
                return -ENOMEM;
        if (a->image_digest && *a->image_digest && field_append(&buf, &len, "HUTCH_IMAGE_DIGEST", a->image_digest) < 0)
                return -ENOMEM;
        char by[24];
        snprintf(by, sizeof by, "%u", (unsigned) a->requested_by);
        if (a->requested && field_append(&buf, &len, "HUTCH_REQUESTED_BY", by) < 0)
                return -ENOMEM;
        *ret = steal_pointer(&buf);
        *ret_len = len;
        return 0;
}

void instance_audit(const struct instance_audit *a)
{
        _cleanup_free_ char *buf = NULL;
        size_t len;
        if (instance_audit_format(a, &buf, &len) < 0)
                return;
        struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = JOURNAL_SOCKET};
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        bool sent = fd >= 0 && sendto(fd, buf, len, MSG_NOSIGNAL, (struct sockaddr *) &sa, sizeof sa) >= 0;
        if (fd >= 0)
                close(fd);
        if (!sent && !a->instance)
                syslog(LOG_INFO, "%s (user %s, uid %u): %s, pid %d, image %s, limits %s, exit status %d",
                       a->verb ? a->verb : "run", a->user, (unsigned) a->uid, a->event, (int) a->pid,
                       a->image ? a->image : "", a->limits && *a->limits ? a->limits : "none", a->exit_status);
        else if (!sent) {
                char by[48] = "";
                if (a->requested)
                        snprintf(by, sizeof by, ", requested by uid %u", (unsigned) a->requested_by);
                syslog(LOG_INFO,
                       "instance %s (user %s, uid %u): %s, pid %d, image %s (%s), keeper %s, limits %s, exit status "
                       "%d%s",
                       a->instance, a->user, (unsigned) a->uid, a->event, (int) a->pid, a->image ? a->image : "",
                       a->image_digest && *a->image_digest ? a->image_digest : "no digest",
                       a->keeper ? a->keeper : "hutch", a->limits && *a->limits ? a->limits : "none", a->exit_status,
                       by);
        }
}
