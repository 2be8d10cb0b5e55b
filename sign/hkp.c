/* Keyservers over HKP (draft-shaw-openpgp-hkp), the part without a network: keyserver URLs
 * (hkp://, hkps://, http://, https://), the form encoding of queries and uploads, and the
 * machine-readable index a search answers with. The requests themselves go through
 * hutch-registry's HTTP client (hutch-sign does not load libcurl). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sign.h"
#include "util/cleanup.h"
#include "util/util.h"

int sign_hkp_base(const char *url, char **ret, struct hutch_error *err)
{
        const char *scheme, *rest;
        bool default_port = false;

        if (startswith(url, "hkp://"))
                scheme = "http", rest = url + 6, default_port = true;
        else if (startswith(url, "hkps://"))
                scheme = "https", rest = url + 7;
        else if (startswith(url, "http://"))
                scheme = "http", rest = url + 7;
        else if (startswith(url, "https://"))
                scheme = "https", rest = url + 8;
        else
                return hutch_err(err, -EINVAL, "keyserver URL '%s' is not http://, https://, hkp:// or hkps://", url);
        size_t host_len = strcspn(rest, "/");
        if (host_len == 0 || rest[0] == ':')
                return hutch_err(err, -EINVAL, "keyserver URL '%s' names no host", url);
        for (const char *p = url; *p; p++)
                if ((unsigned char) *p <= ' ' || *p == 0x7f || *p == '?' || *p == '#' || *p == '@')
                        return hutch_err(err, -EINVAL,
                                         "keyserver URL '%s' has a character it may not (space, '?', '#', '@')", url);
        /* a path of its own is kept (a keyserver under a prefix); a trailing '/' is not */
        size_t len = strlen(rest);
        while (len > host_len && rest[len - 1] == '/')
                len--;
        bool has_port = memchr(rest, ':', host_len) && rest[0] != '[';
        if (rest[0] == '[') /* [v6]:port */
                has_port = host_len > 0 && memchr(rest, ']', host_len) &&
                           ((const char *) memchr(rest, ']', host_len))[1] == ':';
        char *s = NULL;
        if (asprintf(&s, "%s://%.*s%s%.*s", scheme, (int) host_len, rest, default_port && !has_port ? ":11371" : "",
                     (int) (len - host_len), rest + host_len) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        *ret = s;
        return 0;
}

char *sign_hkp_escape(const char *s)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t n = strlen(s);
        char *out = malloc(3 * n + 1), *o = out;
        if (!out)
                return NULL;
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;
                if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
                        *o++ = (char) c;
                else {
                        *o++ = '%';
                        *o++ = hex[c >> 4];
                        *o++ = hex[c & 15];
                }
        }
        *o = 0;
        return out;
}

static int hexval(char c)
{
        return c >= '0' && c <= '9'   ? c - '0'
               : c >= 'a' && c <= 'f' ? c - 'a' + 10
               : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                      : -1;
}

/* a uid as the index escapes it (%XX); what a terminal would act on (C0 and C1 controls,
 * bytes that are no well-formed UTF-8) becomes '?' */
static void uid_unescape(const char *s, size_t len, char *out, size_t size)
{
        size_t o = 0;
        for (size_t i = 0; i < len && o + 1 < size; i++) {
                unsigned char c = (unsigned char) s[i];
                if (c == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
                        c = (unsigned char) (hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
                        i += 2;
                }
                out[o++] = c < 0x20 || c == 0x7f ? '?' : (char) c;
        }
        out[o] = 0;
        for (size_t i = 0; i < o;) {
                size_t n = (unsigned char) out[i] < 0x80 ? 1 : utf8_printable_len((const unsigned char *) out + i);
                if (n == 0)
                        out[i++] = '?';
                else
                        i += n;
        }
}

static const char *alg_name(unsigned long a)
{
        switch (a) {
        case 1:
        case 2:
        case 3: return "RSA";
        case 16: return "ElGamal";
        case 17: return "DSA";
        case 18: return "ECDH";
        case 19: return "ECDSA";
        case 22: return "EdDSA";
        default: return "";
        }
}

/* line's fields split at ':' into f (at most max, the rest in the last); how many */
static size_t split_fields(char *line, char **f, size_t max)
{
        size_t n = 0;
        f[n++] = line;
        for (char *p = line; *p && n < max; p++)
                if (*p == ':') {
                        *p = 0;
                        f[n++] = p + 1;
                }
        return n;
}

static bool parse_num(const char *s, unsigned long long max, unsigned long long *ret)
{
        char *end;
        if (!*s) {
                *ret = 0;
                return true;
        }
        if (!isdigit((unsigned char) *s))
                return false;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end || v > max)
                return false;
        *ret = v;
        return true;
}

static int parse_pub(char **f, size_t n, struct sign_hkp_key *k)
{
        unsigned long long alg, bits, created;
        size_t idlen = n > 1 ? strlen(f[1]) : 0;
        if (n < 2 || (idlen != 8 && idlen != 16 && idlen != 32 && idlen != 40))
                return -EBADMSG;
        for (size_t i = 0; i < idlen; i++) {
                if (hexval(f[1][i]) < 0)
                        return -EBADMSG;
                k->fingerprint[i] = (char) toupper((unsigned char) f[1][i]);
        }
        if (!parse_num(n > 2 ? f[2] : "", 255, &alg) || !parse_num(n > 3 ? f[3] : "", 65536, &bits) ||
            !parse_num(n > 4 ? f[4] : "", UINT32_MAX, &created))
                return -EBADMSG;
        snprintf(k->alg, sizeof k->alg, "%s", alg_name((unsigned long) alg));
        k->bits = (uint32_t) bits;
        k->created = (uint32_t) created;
        k->revoked = n > 6 && strchr(f[6], 'r');
        k->expired = n > 6 && strchr(f[6], 'e');
        return 0;
}

int sign_hkp_index_parse(const char *text, size_t len, struct sign_hkp_key **ret, size_t *ret_n,
                         struct hutch_error *err)
{
        _cleanup_free_ struct sign_hkp_key *keys = NULL;
        _cleanup_free_ char *copy = strndup(text, len);
        size_t n = 0, lineno = 0;
        bool info = false;

        if (!copy)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (strlen(copy) != len)
                return hutch_err(err, -EBADMSG, "the keyserver's index is not text");
        for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *f[8];
                lineno++;
                line[strcspn(line, "\r")] = 0;
                if (!*line)
                        continue;
                size_t nf = split_fields(line, f, ELEMENTSOF(f));
                if (!strcmp(f[0], "info")) {
                        if (info || n)
                                goto bad;
                        info = true;
                } else if (!strcmp(f[0], "pub")) {
                        if (n == SIGN_HKP_KEYS_MAX)
                                return hutch_err(err, -E2BIG, "more than %d keys match: narrow the search",
                                                 SIGN_HKP_KEYS_MAX);
                        struct sign_hkp_key *k = realloc(keys, (n + 1) * sizeof *k);
                        if (!k)
                                return hutch_err(err, -ENOMEM, "out of memory");
                        keys = k;
                        memset(&keys[n], 0, sizeof keys[n]);
                        if (parse_pub(f, nf, &keys[n]) < 0)
                                goto bad;
                        n++;
                } else if (!strcmp(f[0], "uid")) {
                        if (n == 0 || nf < 2)
                                goto bad;
                        struct sign_hkp_key *k = &keys[n - 1];
                        if (k->n_uids < ELEMENTSOF(k->uids))
                                uid_unescape(f[1], strlen(f[1]), k->uids[k->n_uids++], sizeof k->uids[0]);
                } else
                        goto bad;
        }
        if (!info && n == 0)
                return hutch_err(err, -EBADMSG, "the keyserver's reply is not an HKP index (no keys, no info line)");
        *ret = steal_pointer(&keys);
        *ret_n = n;
        return 0;
bad:
        return hutch_err(err, -EBADMSG, "the keyserver's reply is not an HKP index (line %zu)", lineno);
}

bool sign_hkp_keyid_valid(const char *s, char *out, size_t size)
{
        if (startswith(s, "0x") || startswith(s, "0X"))
                s += 2;
        size_t n = strlen(s);
        if ((n != 16 && n != 40) || size <= n)
                return false;
        for (size_t i = 0; i < n; i++) {
                if (hexval(s[i]) < 0)
                        return false;
                out[i] = (char) toupper((unsigned char) s[i]);
        }
        out[n] = 0;
        return true;
}
