/* Strings that come from users, images and files: numbers parsed strictly (finite, in
 * range, nothing left over) and text made safe to print on a terminal. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Decimal digits only: no sign, no space, no "0x" (strtoull would accept all three and
 * wrap a '-'). */
static bool is_digits(const char *s)
{
        return *s && strspn(s, "0123456789") == strlen(s);
}

int parse_u64_range(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
        if (!s || !is_digits(s))
                return -EINVAL;
        errno = 0;
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno == ERANGE || v < min || v > max)
                return -ERANGE;
        if (errno || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

int parse_i64_range(const char *s, int64_t min, int64_t max, int64_t *ret)
{
        if (!s || !is_digits(s[0] == '-' ? s + 1 : s))
                return -EINVAL;
        errno = 0;
        char *end;
        long long v = strtoll(s, &end, 10);
        if (errno == ERANGE || v < min || v > max)
                return -ERANGE;
        if (errno || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* A plain decimal: digits, at most one '.', an optional exponent ("1.5", ".5", "2e3");
 * strtod's "inf", "nan", hex floats and leading spaces are not numbers here. */
static bool is_plain_decimal(const char *s)
{
        size_t i = 0, digits = 0;
        if (s[i] == '-' || s[i] == '+')
                i++;
        for (; s[i] >= '0' && s[i] <= '9'; i++)
                digits++;
        if (s[i] == '.')
                for (i++; s[i] >= '0' && s[i] <= '9'; i++)
                        digits++;
        if (!digits)
                return false;
        if (s[i] == 'e' || s[i] == 'E') {
                i++;
                if (s[i] == '-' || s[i] == '+')
                        i++;
                if (s[i] < '0' || s[i] > '9')
                        return false;
                while (s[i] >= '0' && s[i] <= '9')
                        i++;
        }
        return s[i] == 0;
}

int parse_double_range(const char *s, double min, double max, double *ret)
{
        if (!s || !is_plain_decimal(s))
                return -EINVAL;
        errno = 0;
        char *end;
        double v = strtod(s, &end);
        if (*end)
                return -EINVAL;
        /* ERANGE: 1e999 overflows to HUGE_VAL; 1e-999 underflows, a value nobody means */
        if (errno == ERANGE || !isfinite(v) || v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

size_t utf8_printable_len(const unsigned char *s)
{
        size_t n;
        unsigned char lo = 0x80, hi = 0xbf;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                n = 2;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                n = 3;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                n = 4;
        else
                return 0;
        if (s[0] == 0xc2)
                lo = 0xa0; /* U+0080..U+009F: C1 controls */
        else if (s[0] == 0xe0)
                lo = 0xa0; /* overlong */
        else if (s[0] == 0xed)
                hi = 0x9f; /* UTF-16 surrogates */
        else if (s[0] == 0xf0)
                lo = 0x90; /* overlong */
        else if (s[0] == 0xf4)
                hi = 0x8f; /* beyond U+10FFFF */
        if (s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if (s[i] < 0x80 || s[i] > 0xbf)
                        return 0;
        return n;
}

size_t str_escape(char *dst, size_t size, const char *src)
{
        static const char hex[] = "0123456789abcdef";
        const unsigned char *s = (const unsigned char *) src;
        size_t o = 0;
        if (size == 0)
                return 0;
        while (*s) {
                char tmp[4];
                size_t n = 0, take = 1;
                const char *out = tmp;
                if (*s == '\\' || *s == '\n' || *s == '\t' || *s == '\r') {
                        tmp[0] = '\\';
                        tmp[1] = *s == '\\' ? '\\' : *s == '\n' ? 'n' : *s == '\t' ? 't' : 'r';
                        n = 2;
                } else if (*s >= 0x20 && *s < 0x7f)
                        tmp[n++] = (char) *s;
                else if (*s >= 0x80 && (take = utf8_printable_len(s)) > 0) {
                        out = (const char *) s;
                        n = take;
                } else {
                        take = 1;
                        tmp[0] = '\\';
                        tmp[1] = 'x';
                        tmp[2] = hex[*s >> 4];
                        tmp[3] = hex[*s & 15];
                        n = 4;
                }
                if (o + n >= size)
                        break;
                memcpy(dst + o, out, n);
                o += n;
                s += take;
        }
        dst[o] = 0;
        return o;
}
