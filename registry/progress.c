/* Progress of blob downloads on a terminal: a bar per blob, redrawn in place (the cursor
 * moved back up over the rows drawn before), never wider than the terminal so that no row
 * wraps and the count of rows to go back over stays true. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "registry-internal.h"
#include "util/util.h"

#define BAR_MAX 30

void progress_row_format(const struct progress_row *r, unsigned width, char *buf, size_t size)
{
        char got[32], total[32], bar[BAR_MAX + 1] = "";
        const char *hex = startswith(r->digest, "sha256:") ? r->digest + 7 : r->digest;
        size_format(r->got, got, sizeof got);
        if (r->total >= 0)
                size_format((uint64_t) r->total, total, sizeof total);
        unsigned pct = r->total > 0 ? (unsigned) (r->got * 100 / (uint64_t) r->total) : r->done ? 100 : 0;
        if (pct > 100)
                pct = 100;
        /* "layer  0123456789ab [" ... "] 100% 12.3MiB/45.6MiB done" */
        int fixed = snprintf(NULL, 0, "%-6s %.12s [] %3u%% %s%s%s%s", r->what, hex, pct, got, r->total >= 0 ? "/" : "",
                             r->total >= 0 ? total : "", r->done ? " done" : "");
        int bw = (int) width - 1 - fixed;
        if (bw > BAR_MAX)
                bw = BAR_MAX;
        if (bw >= 5) {
                int fill = r->total > 0 ? (int) ((uint64_t) bw * r->got / (uint64_t) r->total) : r->done ? bw : 0;
                if (fill > bw)
                        fill = bw;
                memset(bar, '=', (size_t) fill);
                memset(bar + fill, ' ', (size_t) (bw - fill));
                if (fill > 0 && fill < bw)
                        bar[fill - 1] = '>';
                bar[bw] = 0;
                snprintf(buf, size, "%-6s %.12s [%s] %3u%% %s%s%s%s", r->what, hex, bar, pct, got,
                         r->total >= 0 ? "/" : "", r->total >= 0 ? total : "", r->done ? " done" : "");
        } else
                snprintf(buf, size, "%-6s %.12s %3u%% %s%s%s%s", r->what, hex, pct, got, r->total >= 0 ? "/" : "",
                         r->total >= 0 ? total : "", r->done ? " done" : "");
        if (width > 1 && strlen(buf) > width - 1) /* no wrapping, whatever the width */
                buf[width - 1] = 0;
}

/* The terminal's size, or 80x24 */
static void term_size(unsigned *cols, unsigned *rows)
{
        struct winsize ws;
        *cols = 80;
        *rows = 24;
        if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
                *cols = ws.ws_col;
                *rows = ws.ws_row;
        }
}

void progress_draw(struct progress *pg, const struct progress_row *rows, size_t n)
{
        unsigned cols, trows;
        term_size(&cols, &trows);
        if (!pg->lines) { /* fixed at the first draw: as many rows each time */
                size_t most = trows > 3 ? trows - 2 : 1;
                pg->lines = n < most ? n : most;
        }
        if (!pg->lines)
                return;
        /* more blobs than rows: the unfinished ones first, the rest summed on the last row */
        size_t shown = n > pg->lines ? pg->lines - 1 : n, k = 0;
        _cleanup_free_ size_t *order = calloc(n ? n : 1, sizeof *order);
        if (!order)
                return;
        for (int pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < n; i++)
                        if (rows[i].done == (pass == 1))
                                order[k++] = i;
        char *out = NULL;
        size_t outlen = 0;
        FILE *f = open_memstream(&out, &outlen);
        if (!f)
                return;
        if (pg->drawn)
                fprintf(f, "\033[%uA", pg->drawn);
        char line[512];
        for (size_t i = 0; i < shown; i++) {
                progress_row_format(&rows[order[i]], cols < sizeof line ? cols : sizeof line, line, sizeof line);
                fprintf(f, "\r%s\033[K\n", line);
        }
        if (shown < n) {
                uint64_t got = 0, total = 0;
                for (size_t i = shown; i < n; i++) {
                        got += rows[order[i]].got;
                        total += rows[order[i]].total > 0 ? (uint64_t) rows[order[i]].total : 0;
                }
                char g[32], t[32];
                size_format(got, g, sizeof g);
                size_format(total, t, sizeof t);
                snprintf(line, sizeof line, "... %zu more blobs: %s/%s", n - shown, g, t);
                if (cols > 1 && strlen(line) > cols - 1)
                        line[cols - 1] = 0;
                fprintf(f, "\r%s\033[K\n", line);
        }
        if (fclose(f) == 0) {
                (void) write_full(STDERR_FILENO, out, outlen);
                pg->drawn = (unsigned) pg->lines;
        }
        free(out);
}
