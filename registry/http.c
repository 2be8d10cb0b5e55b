/* The distribution API over libcurl: requests with the registry's authentication dance
 * (anonymous or credentialed bearer tokens, basic auth), and blobs fetched in parallel
 * (curl's multi interface), each hashed while it arrives and kept only when its digest
 * matches. */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "registry-internal.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/util.h"

#define BODY_MAX (16u << 20)

int sha256_file(int fd, char out[72], struct hutch_error *err)
{
        unsigned char md[32], buf[1 << 16];
        unsigned len = 0;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
                EVP_MD_CTX_free(ctx);
                return hutch_err(err, -ENOMEM, "cannot start SHA-256");
        }
        off_t off = 0;
        for (;;) {
                ssize_t n = pread(fd, buf, sizeof buf, off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        EVP_MD_CTX_free(ctx);
                        return hutch_err_sys(err, -errno, "cannot read to hash");
                }
                if (n == 0)
                        break;
                EVP_DigestUpdate(ctx, buf, (size_t) n);
                off += n;
        }
        EVP_DigestFinal_ex(ctx, md, &len);
        EVP_MD_CTX_free(ctx);
        strcpy(out, "sha256:");
        for (unsigned i = 0; i < 32; i++)
                sprintf(out + 7 + 2 * i, "%02x", md[i]);
        return 0;
}

void sha256_buf(const void *buf, size_t len, char out[72])
{
        unsigned char md[32];
        unsigned n = 0;
        EVP_Digest(buf, len, md, &n, EVP_sha256(), NULL);
        strcpy(out, "sha256:");
        for (unsigned i = 0; i < 32; i++)
                sprintf(out + 7 + 2 * i, "%02x", md[i]);
}

void http_response_free(struct http_response *r)
{
        free(r->body);
        free(r->content_type);
        free(r->www_auth);
        free(r->location);
        free(r->digest);
        *r = (struct http_response){0};
}

static size_t on_body(char *p, size_t size, size_t n, void *user)
{
        struct http_response *r = user;
        size_t len = size * n;
        if (r->len + len > BODY_MAX)
                return 0;
        char *b = realloc(r->body, r->len + len + 1);
        if (!b)
                return 0;
        memcpy(b + r->len, p, len);
        r->len += len;
        b[r->len] = 0;
        r->body = b;
        return len;
}

/* "Name: value\r\n" into *dst when name matches (case-insensitive), trimmed. */
static void header_take(const char *line, size_t len, const char *name, char **dst)
{
        size_t n = strlen(name);
        if (len <= n + 1 || strncasecmp(line, name, n) != 0 || line[n] != ':')
                return;
        const char *v = line + n + 1;
        size_t vl = len - n - 1;
        while (vl && (*v == ' ' || *v == '\t'))
                v++, vl--;
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
                vl--;
        free(*dst);
        *dst = strndup(v, vl);
}

static size_t on_header(char *p, size_t size, size_t n, void *user)
{
        struct http_response *r = user;
        size_t len = size * n;
        if (len > 5 && !strncmp(p, "HTTP/", 5)) { /* a new response (after a redirect): forget the last */
                free(r->www_auth);
                r->www_auth = NULL;
        }
        header_take(p, len, "Content-Type", &r->content_type);
        header_take(p, len, "WWW-Authenticate", &r->www_auth);
        header_take(p, len, "Location", &r->location);
        header_take(p, len, "Docker-Content-Digest", &r->digest);
        return len;
}

int http_client_init(struct http_client *c, const struct registry_ref *ref, bool no_https, const char *ca_file,
                     const struct registry_auth *a, bool push, struct hutch_error *err)
{
        *c = (struct http_client){.scheme = no_https ? "http" : "https", .ca_file = ca_file, .push = push};
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
                return hutch_err(err, -EIO, "cannot initialise libcurl");
        c->curl = curl_easy_init();
        c->host = strdup(ref->host);
        c->repo = strdup(ref->repo);
        if (!c->curl || !c->host || !c->repo) {
                http_client_free(c);
                return hutch_err(err, -ENOMEM, "out of memory");
        }
        if (a->username) {
                c->user = strdup(a->username);
                c->pass = strdup(a->password ? a->password : "");
        } else
                registry_auth_lookup(a, ref->host, &c->user, &c->pass);
        unsigned flags = 0;
        int r = registries_conf_lookup(a->registries_conf, ref->host, ref->repo, &flags, err);
        if (r >= 0 && (flags & REGISTRY_BLOCKED))
                r = hutch_err(err, -EACCES, "registry %s%s%s is blocked in registries.conf", ref->host,
                              *ref->repo ? "/" : "", ref->repo);
        if (r < 0) {
                http_client_free(c);
                return r;
        }
        c->insecure = (flags & REGISTRY_INSECURE) && !no_https;
        if (c->insecure)
                log_verbose("%s is insecure in registries.conf: TLS unverified, plain HTTP if TLS fails", ref->host);
        return 0;
}

void http_client_free(struct http_client *c)
{
        if (c->curl)
                curl_easy_cleanup(c->curl);
        free(c->host);
        free(c->repo);
        free(c->auth);
        free(c->user);
        free(c->pass);
        *c = (struct http_client){0};
}

/* key="value" out of a WWW-Authenticate challenge */
static char *challenge_param(const char *ch, const char *key)
{
        size_t n = strlen(key);
        for (const char *p = ch; (p = strcasestr(p, key)); p += n) {
                if (p != ch && !strchr(" ,", p[-1]))
                        continue;
                if (strncmp(p + n, "=\"", 2) != 0)
                        continue;
                const char *v = p + n + 2, *end = strchr(v, '"');
                return end ? strndup(v, (size_t) (end - v)) : NULL;
        }
        return NULL;
}

static char *url_escape(CURL *h, const char *s)
{
        char *e = curl_easy_escape(h, s, 0);
        char *r = e ? strdup(e) : NULL;
        curl_free(e);
        return r;
}

/* The host name of url (no user, port or brackets), lower case. */
static void url_host(const char *url, char *out, size_t size)
{
        const char *a = strstr(url, "://");
        a = a ? a + 3 : url;
        size_t n = strcspn(a, "/?#");
        const char *at = memrchr(a, '@', n);
        if (at) {
                n -= (size_t) (at + 1 - a);
                a = at + 1;
        }
        if (*a == '[') {
                const char *close = memchr(a, ']', n);
                n = close ? (size_t) (close - a - 1) : 0;
                a++;
        } else {
                const char *colon = memchr(a, ':', n);
                if (colon)
                        n = (size_t) (colon - a);
        }
        snprintf(out, size, "%.*s", (int) n, a);
        for (char *p = out; *p; p++)
                *p = (char) tolower((unsigned char) *p);
}

/* url's HOST:PORT (no user, no brackets, the host in lower case, the port its scheme's
 * default when not given); a bare "HOST[:PORT]" is taken with scheme. */
static void url_endpoint(const char *url, const char *scheme, char *out, size_t size)
{
        const char *a = strstr(url, "://"), *port = NULL;
        if (a) {
                scheme = a - url == 5 && !strncasecmp(url, "https", 5) ? "https" : "http";
                a += 3;
        } else
                a = url;
        size_t n = strcspn(a, "/?#"), pn = 0;
        const char *at = memrchr(a, '@', n);
        if (at) {
                n -= (size_t) (at + 1 - a);
                a = at + 1;
        }
        const char *end = a + n, *colon;
        if (*a == '[') {
                const char *close = memchr(a, ']', n);
                colon = close && close + 1 < end && close[1] == ':' ? close + 1 : NULL;
                n = close ? (size_t) (close - a - 1) : 0;
                a++;
        } else {
                colon = memchr(a, ':', n);
                if (colon)
                        n = (size_t) (colon - a);
        }
        if (colon) {
                port = colon + 1;
                pn = (size_t) (end - port);
        }
        if (!pn) {
                port = !strcmp(scheme, "https") ? "443" : "80";
                pn = strlen(port);
        }
        snprintf(out, size, "%.*s:%.*s", (int) n, a, (int) pn, port);
        for (char *p = out; *p; p++)
                *p = (char) tolower((unsigned char) *p);
}

bool url_is_endpoint(const char *url, const char *scheme, const char *host)
{
        char a[300], b[300];
        url_endpoint(url, scheme, a, sizeof a);
        url_endpoint(host, scheme, b, sizeof b);
        return !strcmp(a, b);
}

/* By scheme too: a hop from https to plain http at the same port would put the credentials
 * on the wire. */
bool auth_goes_to(const char *url, const char *scheme, const char *host)
{
        const char *sep = strstr(url, "://");
        size_t n = sep ? (size_t) (sep - url) : 0;
        return sep && n == strlen(scheme) && !strncasecmp(url, scheme, n) && url_is_endpoint(url, scheme, host);
}

/* The options every handle gets; TLS verification off only towards an insecure registry
 * itself, its host at its port (a token service or blob store elsewhere, another port of
 * the same host included, is verified as always). */
static void curl_common(struct http_client *c, CURL *h, const char *url)
{
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_USERAGENT, "hutch/" HUTCH_VERSION);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L); /* a stalled transfer fails after a minute */
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        if (c->ca_file)
                curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
        if (c->insecure && url_is_endpoint(url, c->scheme, c->host)) {
                curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
                curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
        }
        /* libcurl keeps a handle's TLS options across the redirects it follows, so a handle
         * with verification off follows none: they are followed by hand (redirect_url), each
         * hop with this function's choice for its own URL. */
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, c->insecure ? 0L : 1L);
}

/* Where a response of a handle that follows no redirects itself (an insecure registry's)
 * sends the request next, or NULL: a copy for the caller to free. */
static char *redirect_url(struct http_client *c, CURL *h, long status)
{
        char *next = NULL;
        if (!c->insecure || status < 300 || status > 399 || status == 304 ||
            curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &next) != CURLE_OK || !next)
                return NULL;
        return strdup(next);
}

/* The user's credentials go to a realm of the registry's own site only: the same host, or
 * (a host name, not an address) the same last two labels, as registry-1.docker.io and
 * auth.docker.io. */
static bool realm_is_registrys(const char *realm, const char *registry_host)
{
        char a[256], b[256];
        url_host(realm, a, sizeof a);
        url_host(registry_host, b, sizeof b);
        if (!*a || !strcmp(a, b))
                return *a != 0;
        if (strchr(a, ':') || strspn(a, "0123456789.") == strlen(a) || strspn(b, "0123456789.") == strlen(b))
                return false;
        const char *sa = a + strlen(a), *sb = b + strlen(b);
        for (int dots = 0; sa > a && dots < 2;)
                if (*--sa == '.' && ++dots == 2)
                        sa++;
        for (int dots = 0; sb > b && dots < 2;)
                if (*--sb == '.' && ++dots == 2)
                        sb++;
        return strchr(sa, '.') && !strcmp(sa, sb);
}

/* A bearer token from the challenge's realm, with the credentials when there are some. */
static int bearer_token(struct http_client *c, const char *challenge, struct hutch_error *err)
{
        _cleanup_free_ char *realm = challenge_param(challenge, "realm"),
                            *service = challenge_param(challenge, "service");
        _cleanup_free_ char *scope = NULL, *url = NULL, *es = NULL, *esc = NULL;
        if (!realm || !(startswith(realm, "https://") || startswith(realm, "http://")))
                return hutch_err(err, -EPROTO, "registry %s asks for a token without a usable realm", c->host);
        if (startswith(realm, "http://") && strcmp(c->scheme, "http") != 0 && !c->insecure)
                return hutch_err(err, -EPROTO,
                                 "registry %s asks for a token over plain http (%s); use --no-https to allow it",
                                 c->host, realm);
        /* no repository (remote login): a token for the registry alone */
        if (*c->repo && asprintf(&scope, "repository:%s:%s", c->repo, c->push ? "pull,push" : "pull") < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        es = service ? url_escape(c->curl, service) : NULL;
        esc = scope ? url_escape(c->curl, scope) : strdup("");
        if (!esc || asprintf(&url, "%s%s%s%s%s%s", realm, strchr(realm, '?') ? "&" : "?", *esc ? "scope=" : "", esc,
                             es ? "&service=" : "", es ? es : "") < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        CURL *h = curl_easy_init();
        if (!h)
                return hutch_err(err, -ENOMEM, "out of memory");
        struct http_response r = {0};
        curl_common(c, h, url);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
        bool creds = c->user && realm_is_registrys(realm, c->host);
        if (c->user && !creds)
                log_verbose("not sending the credentials for %s to the token service %s, another host", c->host, realm);
        if (creds) {
                curl_easy_setopt(h, CURLOPT_USERNAME, c->user);
                curl_easy_setopt(h, CURLOPT_PASSWORD, c->pass);
        }
        CURLcode cc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
        curl_easy_cleanup(h);
        c->requests++;
        int ret = 0;
        if (cc != CURLE_OK)
                ret = hutch_err(err, -EIO, "cannot get a token for %s from %s: %s", c->host, realm,
                                curl_easy_strerror(cc));
        else if (r.status == 401 || r.status == 403)
                ret = hutch_err(err, -EACCES, "%s refused the credentials%s (HTTP %ld)", c->host,
                                c->user ? " given" : " (none given)", r.status);
        else if (r.status != 200)
                ret = hutch_err(err, -EIO, "token request to %s failed (HTTP %ld)", realm, r.status);
        if (ret < 0) {
                http_response_free(&r);
                return ret;
        }
        struct json_object *o = json_tokener_parse(r.body ? r.body : ""), *t = NULL;
        http_response_free(&r);
        if (!o || (!json_object_object_get_ex(o, "token", &t) && !json_object_object_get_ex(o, "access_token", &t)) ||
            !json_object_is_type(t, json_type_string)) {
                json_object_put(o);
                return hutch_err(err, -EPROTO, "the token service of %s answered without a token", c->host);
        }
        free(c->auth);
        if (asprintf(&c->auth, "Authorization: Bearer %s", json_object_get_string(t)) < 0)
                c->auth = NULL;
        json_object_put(o);
        return c->auth ? 0 : hutch_err(err, -ENOMEM, "out of memory");
}

static int authenticate(struct http_client *c, const char *challenge, struct hutch_error *err)
{
        if (challenge && !strncasecmp(challenge, "bearer", 6))
                return bearer_token(c, challenge, err);
        if (!c->user)
                return hutch_err(err, -EACCES,
                                 "%s needs credentials: use 'hutch remote login docker://%s' or "
                                 "HUTCH_DOCKER_USERNAME/HUTCH_DOCKER_PASSWORD",
                                 c->host, c->host);
        _cleanup_free_ char *plain = NULL;
        if (asprintf(&plain, "%s:%s", c->user, c->pass) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        size_t n = strlen(plain);
        _cleanup_free_ char *b64 = malloc(4 * ((n + 2) / 3) + 1);
        if (!b64)
                return hutch_err(err, -ENOMEM, "out of memory");
        EVP_EncodeBlock((unsigned char *) b64, (const unsigned char *) plain, (int) n);
        free(c->auth);
        if (asprintf(&c->auth, "Authorization: Basic %s", b64) < 0)
                c->auth = NULL;
        return c->auth ? 0 : hutch_err(err, -ENOMEM, "out of memory");
}

struct upload {
        int fd;
        uint64_t left;
        off_t off;
};

static size_t on_read(char *p, size_t size, size_t n, void *user)
{
        struct upload *u = user;
        size_t want = size * n;
        if (want > u->left)
                want = (size_t) u->left;
        ssize_t k = pread(u->fd, p, want, u->off);
        if (k < 0)
                return CURL_READFUNC_ABORT;
        u->off += k;
        u->left -= (uint64_t) k;
        return (size_t) k;
}

/* One request; from: the URL that redirected here (by hand), or NULL; *ret_next: where this
 * one's redirect sends it next (GET and HEAD only), or NULL. A redirect gets the registry's
 * Authorization header when it stays at the registry's scheme, host and port only. */
static int perform_once(struct http_client *c, const char *method, const char *url, const char *from,
                        const char *const *headers, const void *body, size_t body_len, int upload_fd,
                        uint64_t upload_len, struct http_response *r, char **ret_next, struct hutch_error *err)
{
        CURL *h = c->curl;
        struct curl_slist *hl = NULL;
        struct upload up = {.fd = upload_fd, .left = upload_len};
        curl_easy_reset(h);
        curl_common(c, h, url);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
        for (size_t i = 0; headers && headers[i]; i++)
                hl = curl_slist_append(hl, headers[i]);
        if (c->auth && (!from || auth_goes_to(url, c->scheme, c->host)))
                hl = curl_slist_append(hl, c->auth);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
        if (!strcmp(method, "HEAD"))
                curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        else if (upload_fd >= 0) {
                curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
                curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
                curl_easy_setopt(h, CURLOPT_READDATA, &up);
                curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t) upload_len);
        } else if (body || strcmp(method, "GET") != 0) {
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body_len);
        }
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
                curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        /* libcurl's own words name the address it failed to reach: a proxy's, when it used one
         * (http_proxy etc.) */
        char why[CURL_ERROR_SIZE] = "";
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, why);
        CURLcode cc = curl_easy_perform(h);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
        curl_slist_free_all(hl);
        c->requests++;
        bool unreachable = cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ||
                           cc == CURLE_COULDNT_RESOLVE_PROXY || cc == CURLE_OPERATION_TIMEDOUT;
        if (cc != CURLE_OK && c->insecure && !c->scheme_fixed && !unreachable && !strcmp(c->scheme, "https")) {
                /* as podman with an insecure registry: no TLS there, so plain HTTP */
                log_verbose("%s: %s over https, trying plain http", c->host, curl_easy_strerror(cc));
                c->scheme = "http";
                c->scheme_fixed = true;
                return -EAGAIN;
        }
        /* "Failed to connect to ADDR port N after T ms: Couldn't connect to server" */
        const char *what = cc == CURLE_COULDNT_CONNECT && *why ? why : curl_easy_strerror(cc);
        if (cc != CURLE_OK && from)
                return hutch_err(err, -EIO, "cannot reach %s (a redirect of %s): %s", url, from, what);
        if (cc != CURLE_OK)
                return hutch_err(err, cc == CURLE_COULDNT_CONNECT ? -ECONNREFUSED : -EIO, "cannot reach %s://%s: %s%s",
                                 c->scheme, c->host, what,
                                 cc == CURLE_SSL_CONNECT_ERROR && !c->insecure
                                         ? " (a registry serving plain HTTP: --no-https, or insecure = true for it in "
                                           "registries.conf)"
                                         : "");
        c->scheme_fixed = true;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
        bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
        *ret_next = get && upload_fd < 0 && !body ? redirect_url(c, h, r->status) : NULL;
        return 0;
}

static int perform(struct http_client *c, const char *method, const char *url, const char *const *headers,
                   const void *body, size_t body_len, int upload_fd, uint64_t upload_len, struct http_response *r,
                   struct hutch_error *err)
{
        _cleanup_free_ char *hop = NULL, *from = NULL;
        for (unsigned hops = 0;; hops++) {
                char *next = NULL;
                int k = perform_once(c, method, hop ? hop : url, from, headers, body, body_len, upload_fd, upload_len,
                                     r, &next, err);
                if (k < 0 || !next)
                        return k;
                free(from);
                from = hop ? steal_pointer(&hop) : strdup(url);
                hop = next;
                if (!from)
                        return hutch_err(err, -ENOMEM, "out of memory");
                if (hops == 5)
                        return hutch_err(err, -ELOOP, "%s: more than 5 redirects", c->host);
                log_verbose("%s: redirected to %s", c->host, hop);
                http_response_free(r);
        }
}

int http_request(struct http_client *c, const char *method, const char *path, const char *const *headers,
                 const void *body, size_t body_len, int upload_fd, uint64_t upload_len, struct http_response *ret,
                 struct hutch_error *err)
{
        bool whole = startswith(path, "http://") || startswith(path, "https://");
        for (int attempt = 0;; attempt++) {
                _cleanup_free_ char *url = NULL;
                if (whole ? !(url = strdup(path)) : asprintf(&url, "%s://%s%s", c->scheme, c->host, path) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
                struct http_response r = {0};
                int k = perform(c, method, url, headers, body, body_len, upload_fd, upload_len, &r, err);
                if (k == -EAGAIN && !whole) { /* the scheme changed: again, once */
                        http_response_free(&r);
                        attempt--;
                        continue;
                }
                if (k < 0) {
                        http_response_free(&r);
                        return k == -EAGAIN ? hutch_err(err, -EIO, "cannot reach %s", url) : k;
                }
                if (r.status == 401 && attempt == 0) {
                        k = authenticate(c, r.www_auth, err);
                        http_response_free(&r);
                        if (k < 0)
                                return k;
                        continue;
                }
                *ret = r;
                return 0;
        }
}

int http_status_error(const struct http_response *r, const char *what, struct hutch_error *err)
{
        const char *msg = NULL;
        struct json_object *o = r->body ? json_tokener_parse(r->body) : NULL, *e, *m;
        if (o && json_object_object_get_ex(o, "errors", &e) && json_object_is_type(e, json_type_array) &&
            json_object_array_length(e) > 0 &&
            json_object_object_get_ex(json_object_array_get_idx(e, 0), "message", &m))
                msg = json_object_get_string(m);
        int code = r->status == 404 ? -ENOENT : r->status == 401 || r->status == 403 ? -EACCES : -EIO;
        int ret = hutch_err(err, code, "%s: HTTP %ld%s%s", what, r->status, msg ? ": " : "", msg ? msg : "");
        json_object_put(o);
        return ret;
}

/* ---- blobs */

struct transfer {
        const struct blob_want *w;
        char tmp[128];
        int fd;
        EVP_MD_CTX *md;
        uint64_t got;
        bool write_failed, done;
        int lock;
        unsigned hops; /* redirects followed by hand */
        void *easy;    /* CURL *, attached to the multi handle */
};

static size_t on_blob(char *p, size_t size, size_t n, void *user)
{
        struct transfer *t = user;
        size_t len = size * n;
        long status = 0;
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 300 && status <= 399) /* a redirect's own body (followed by hand) */
                return len;
        if (t->w->size >= 0 && t->got + len > (uint64_t) t->w->size)
                return 0; /* more than the manifest said: a wrong blob */
        if (write_full(t->fd, p, len) < 0) {
                t->write_failed = true;
                return 0;
        }
        EVP_DigestUpdate(t->md, p, len);
        t->got += len;
        return len;
}

/* A blob's handle for url; hl: the registry's headers (its authorization), or NULL */
static void blob_handle_setup(struct http_client *c, CURL *h, const char *url, struct curl_slist *hl,
                              struct transfer *t)
{
        curl_common(c, h, url);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_blob);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
        curl_easy_setopt(h, CURLOPT_PRIVATE, t);
}

static int cmp_want(const void *a, const void *b)
{
        return strcmp(((const struct blob_want *) a)->digest, ((const struct blob_want *) b)->digest);
}

/* Finish one transfer: verified and renamed, or removed. */
static int transfer_finish(int dir_fd, struct transfer *t, CURLcode cc, long status, const char *host,
                           struct hutch_error *err)
{
        unsigned char md[32];
        unsigned len = 0;
        char hex[65];
        const char *want = t->w->digest + 7;
        int r = 0;
        EVP_DigestFinal_ex(t->md, md, &len);
        for (unsigned i = 0; i < 32; i++)
                sprintf(hex + 2 * i, "%02x", md[i]);
        if (t->write_failed)
                r = hutch_err(err, -EIO, "cannot store blob %.19s: %s", t->w->digest,
                              errno == ENOSPC ? "no space left on device" : "write failed");
        else if (cc != CURLE_OK)
                r = hutch_err(err, -EIO, "download of blob %.19s from %s failed: %s", t->w->digest, host,
                              curl_easy_strerror(cc));
        else if (status != 200)
                r = hutch_err(err, status == 404 ? -ENOENT : -EIO, "blob %.19s: HTTP %ld from %s", t->w->digest, status,
                              host);
        else if (t->w->size >= 0 && t->got != (uint64_t) t->w->size)
                r = hutch_err(err, -EIO, "blob %.19s is truncated: %llu of %lld bytes", t->w->digest,
                              (unsigned long long) t->got, (long long) t->w->size);
        else if (strcmp(hex, want) != 0)
                r = hutch_err(err, -EBADMSG, "blob %.19s does not match its digest (got sha256:%.12s)", t->w->digest,
                              hex);
        else if (fsync(t->fd) < 0 || renameat(dir_fd, t->tmp, dir_fd, want) < 0)
                r = hutch_err_sys(err, -errno, "cannot store blob %.19s", t->w->digest);
        if (r < 0)
                unlinkat(dir_fd, t->tmp, 0);
        return r;
}

static bool blob_present(int dir_fd, const struct blob_want *w)
{
        struct stat st;
        return fstatat(dir_fd, w->digest + 7, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
               (w->size < 0 || st.st_size == w->size);
}

static uint64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static void progress_update(struct progress *pg, struct progress_row *rows, const struct transfer *t, size_t n)
{
        for (size_t i = 0; i < n; i++)
                rows[i] = (struct progress_row){.what = t[i].w->what,
                                                .digest = t[i].w->digest,
                                                .got = t[i].got,
                                                .total = t[i].w->size,
                                                .done = t[i].done};
        progress_draw(pg, rows, n);
}

int blobs_fetch(struct http_client *c, int dir_fd, const struct blob_want *want, size_t n, bool progress, bool quiet,
                void (*blob_event)(void *ctx, const char *digest, bool ready), void *ctx, struct hutch_error *err)
{
        /* locks taken in digest order: two pulls wanting the same blobs never wait on each other crosswise */
        _cleanup_free_ struct blob_want *w = calloc(n ? n : 1, sizeof *w);
        _cleanup_free_ struct transfer *t = calloc(n ? n : 1, sizeof *t);
        if (!w || !t)
                return hutch_err(err, -ENOMEM, "out of memory");
        memcpy(w, want, n * sizeof *w);
        qsort(w, n, sizeof *w, cmp_want);
        size_t nt = 0;
        int r = 0;
        for (size_t i = 0; i < n && r >= 0; i++) {
                if (i > 0 && !strcmp(w[i].digest, w[i - 1].digest))
                        continue;
                char lockname[80];
                snprintf(lockname, sizeof lockname, ".%s.lock", w[i].digest + 7);
                int lk = openat(dir_fd, lockname, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (lk < 0) {
                        r = hutch_err_sys(err, -errno, "cannot lock blob %.19s", w[i].digest);
                        break;
                }
                if (flock(lk, LOCK_EX | LOCK_NB) < 0) {
                        if (!quiet)
                                log_info("Waiting for another pull of blob %.19s", w[i].digest);
                        while (flock(lk, LOCK_EX) < 0 && errno == EINTR)
                                ;
                }
                if (blob_present(dir_fd, &w[i])) {
                        log_verbose("Blob %.19s is cached", w[i].digest);
                        if (blob_event)
                                blob_event(ctx, w[i].digest, true);
                        close(lk);
                        continue;
                }
                t[nt] = (struct transfer){.w = &w[i], .lock = lk, .fd = -1};
                snprintf(t[nt].tmp, sizeof t[nt].tmp, BLOB_PART_FMT, w[i].digest + 7);
                t[nt].fd = openat(dir_fd, t[nt].tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
                t[nt].md = EVP_MD_CTX_new();
                if (t[nt].fd < 0 || !t[nt].md || EVP_DigestInit_ex(t[nt].md, EVP_sha256(), NULL) != 1)
                        r = hutch_err_sys(err, t[nt].fd < 0 ? -errno : -ENOMEM, "cannot store blob %.19s", w[i].digest);
                nt++;
        }
        CURLM *m = r >= 0 && nt > 0 ? curl_multi_init() : NULL;
        if (!m && r >= 0 && nt > 0)
                r = hutch_err(err, -ENOMEM, "out of memory");
        if (m) {
                curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 6L);
                curl_multi_setopt(m, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
        }
        struct curl_slist *hl = c->auth ? curl_slist_append(NULL, c->auth) : NULL;
        _cleanup_free_ struct progress_row *rows = progress && m ? calloc(nt, sizeof *rows) : NULL;
        struct progress pg = {0};
        for (size_t i = 0; m && i < nt; i++) {
                CURL *h = curl_easy_init();
                if (!h) {
                        r = hutch_err(err, -ENOMEM, "out of memory");
                        break;
                }
                char url[1024];
                snprintf(url, sizeof url, "%s://%s/v2/%s/blobs/%s", c->scheme, c->host, c->repo, t[i].w->digest);
                t[i].easy = h;
                blob_handle_setup(c, h, url, hl, &t[i]);
                curl_multi_add_handle(m, h);
                if (!quiet && !rows) {
                        char size[32] = "size unknown";
                        if (t[i].w->size >= 0)
                                size_format((uint64_t) t[i].w->size, size, sizeof size);
                        log_info("Copying blob %.19s (%s, %s)", t[i].w->digest, t[i].w->what, size);
                }
        }
        for (size_t i = 0; r >= 0 && m && blob_event && i < nt; i++)
                blob_event(ctx, t[i].w->digest, false);
        uint64_t last = 0;
        for (int running = r >= 0; m && running;) {
                curl_multi_perform(m, &running);
                CURLMsg *msg;
                int left;
                while ((msg = curl_multi_info_read(m, &left))) {
                        if (msg->msg != CURLMSG_DONE)
                                continue;
                        struct transfer *tr;
                        long status = 0;
                        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &tr);
                        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
                        CURL *h = msg->easy_handle;
                        _cleanup_free_ char *next = msg->data.result == CURLE_OK ? redirect_url(c, h, status) : NULL;
                        if (next && tr->hops++ < 5) { /* the same transfer, at the URL it was sent to */
                                log_verbose("blob %.19s: redirected to %s", tr->w->digest, next);
                                curl_multi_remove_handle(m, h);
                                curl_easy_reset(h);
                                blob_handle_setup(c, h, next, url_is_endpoint(next, c->scheme, c->host) ? hl : NULL,
                                                  tr);
                                curl_multi_add_handle(m, h);
                                running = 1;
                                continue;
                        }
                        const char *where = c->host;
                        char *eff = NULL;
                        if (tr->hops && curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK && eff)
                                where = eff;
                        struct hutch_error e = HUTCH_ERROR_INIT;
                        int k = transfer_finish(dir_fd, tr, msg->data.result, status, where, &e);
                        c->requests++;
                        tr->done = k >= 0;
                        if (k >= 0 && r >= 0 && blob_event)
                                blob_event(ctx, tr->w->digest, true);
                        if (k < 0 && r >= 0) {
                                r = k;
                                *err = e;
                                running = 0; /* stop the others: their partial files go below */
                        }
                        close(tr->fd);
                        tr->fd = -1;
                }
                if (rows && now_ms() - last >= 100) {
                        last = now_ms();
                        progress_update(&pg, rows, t, nt);
                }
                if (running)
                        curl_multi_poll(m, NULL, 0, rows ? 100 : 1000, NULL);
        }
        if (rows)
                progress_update(&pg, rows, t, nt);
        for (size_t i = 0; i < nt; i++) {
                if (t[i].fd >= 0) { /* not finished: abandoned after another one's failure */
                        close(t[i].fd);
                        unlinkat(dir_fd, t[i].tmp, 0);
                }
                EVP_MD_CTX_free(t[i].md);
                close(t[i].lock);
        }
        for (size_t i = 0; m && i < nt; i++)
                if (t[i].easy) {
                        curl_multi_remove_handle(m, t[i].easy);
                        curl_easy_cleanup(t[i].easy);
                }
        if (m)
                curl_multi_cleanup(m);
        curl_slist_free_all(hl);
        return r;
}

int cache_blob_dir(const char *cache_dir, bool create, struct hutch_error *err)
{
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s/blob/blobs/sha256", cache_dir) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (create) {
                int r = mkdir_p_at(AT_FDCWD, p, 0700);
                if (r < 0)
                        return hutch_err_sys(err, r, "cannot create the cache folder '%s'", p);
        }
        int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot open the cache folder '%s'", p);
        return fd;
}

int registry_login_check(const char *host, const struct registry_auth *site, bool no_https, const char *ca_file,
                         struct hutch_error *err)
{
        struct registry_ref ref = {.host = (char *) host, .repo = (char *) ""};
        const char *user = site->username;
        struct registry_auth a = *site;
        struct http_client c;
        struct http_response r = {0};
        int k = http_client_init(&c, &ref, no_https, ca_file, &a, false, err);
        if (k < 0)
                return k;
        k = http_request(&c, "GET", "/v2/", NULL, NULL, 0, -1, 0, &r, err);
        if (k >= 0 && (r.status == 401 || r.status == 403))
                k = hutch_err(err, -EACCES, "%s refused the credentials of '%s' (HTTP %ld)", host, user, r.status);
        else if (k >= 0 && r.status != 200)
                k = http_status_error(&r, host, err);
        http_response_free(&r);
        http_client_free(&c);
        return k;
}

/* ---- one plain request to a whole URL (the keyservers' HKP, for hutch-sign) */
struct capped {
        struct http_response *r;
        size_t max;
        bool over;
};

static size_t on_capped_body(char *p, size_t size, size_t n, void *user)
{
        struct capped *c = user;
        if (c->r->len + size * n > c->max) {
                c->over = true;
                return 0;
        }
        return on_body(p, size, n, c->r);
}

int registry_http_fetch(const struct registry_http_req *q, long *ret_status, char **ret_body, size_t *ret_len,
                        struct hutch_error *err)
{
        struct http_client c = {.ca_file = q->ca_file, .host = (char *) ""}; /* never insecure */
        struct http_response r = {0};
        struct capped cap = {.r = &r, .max = q->max < BODY_MAX ? q->max : BODY_MAX};
        struct curl_slist *hl = NULL;

        if (!startswith(q->url, "http://") && !startswith(q->url, "https://"))
                return hutch_err(err, -EINVAL, "'%s' is not an http:// or https:// URL", q->url);
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
                return hutch_err(err, -EIO, "cannot initialise libcurl");
        CURL *h = curl_easy_init();
        if (!h)
                return hutch_err(err, -ENOMEM, "out of memory");
        curl_common(&c, h, q->url);
        curl_easy_setopt(h, CURLOPT_URL, q->url);
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_capped_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &cap);
        if (q->body) {
                if (q->content_type) {
                        _cleanup_free_ char *ct = strjoin("Content-Type: ", q->content_type, NULL);
                        hl = ct ? curl_slist_append(hl, ct) : NULL;
                        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
                }
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body);
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) q->body_len);
        }
        CURLcode cc = curl_easy_perform(h);
        curl_slist_free_all(hl);
        int k = 0;
        if (cap.over)
                k = hutch_err(err, -EFBIG, "the reply of %s is larger than %zu bytes", q->url, cap.max);
        else if (cc != CURLE_OK)
                k = hutch_err(err, cc == CURLE_COULDNT_CONNECT ? -ECONNREFUSED : -EIO, "cannot reach %s: %s", q->url,
                              curl_easy_strerror(cc));
        else {
                curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, ret_status);
                *ret_body = r.body ? steal_pointer(&r.body) : strdup("");
                *ret_len = r.len;
                if (!*ret_body)
                        k = hutch_err(err, -ENOMEM, "out of memory");
        }
        curl_easy_cleanup(h);
        http_response_free(&r);
        return k;
}
