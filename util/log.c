/* Leveled diagnostics: one line each (control bytes escaped), prefixed like Apptainer's so
 * log scrapers match. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static enum log_level current = LOG_LEVEL_WARNING;

void log_set_level(enum log_level level)
{
        current = level;
}

enum log_level log_get_level(void)
{
        return current;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
        static const char *const names[] = {"ERROR", "WARNING", "INFO", "VERBOSE", "DEBUG"};
        char line[1024];
        va_list ap;

        if (level > current)
                return;
        /* Apptainer's sylog: "INFO:    ", "WARNING: " ("%-8s " of the name and a colon); its
         * DEBUG lines have no colon */
        char name[16];
        snprintf(name, sizeof name, "%s%s", names[level], level == LOG_LEVEL_DEBUG ? "" : ":");
        int n = snprintf(line, sizeof line, "%-8s ", name);
        if (level == LOG_LEVEL_DEBUG)
                n += snprintf(line + n, sizeof line - n, "[P=%d] ", (int) getpid());
        char msg[sizeof line];
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        /* names and values from files and images reach a terminal: control bytes escaped */
        size_t len = n + str_escape(line + n, sizeof line - n - 1, msg);
        line[len++] = '\n';
        /* one write(2): lines from the launcher and its helpers do not interleave */
        (void) !write(STDERR_FILENO, line, len);
}
