/* docker-daemon:IMAGE[:TAG], as Apptainer has it: the image exported by a Docker Engine API
 * (Docker's daemon, or podman's `system service`) at DOCKER_HOST, `GET /images/NAME/get`,
 * which answers with `docker save`'s tar; the pull then reads that as a docker-archive:. */
#include <curl/curl.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry-internal.h"
#include "util/log.h"
#include "util/util.h"

#define DAEMON_ERROR_MAX 4096

bool daemon_image_is_valid(const char *image)
{
        /* a name, tag or digest: nothing that would make another path of the API (no "..",
         * no empty component, no query) */
        if (!image || strlen(image) > 512 ||
            strspn(image, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:@") != strlen(image))
                return false;
        for (const char *p = image;;) {
                size_t n = strcspn(p, "/");
                if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return false;
                if (!p[n])
                        return true;
                p += n + 1;
        }
}

struct daemon_reply {
        CURL *h;
        int fd;
        bool write_failed;
        char msg[DAEMON_ERROR_MAX]; /* a failed request's body */
        size_t msg_len;
};

static size_t on_export(char *p, size_t size, size_t n, void *user)
{
        struct daemon_reply *d = user;
        size_t len = size * n;
        long status = 0;
        curl_easy_getinfo(d->h, CURLINFO_RESPONSE_CODE, &status);
        if (status != 200) {
                size_t k = len < sizeof d->msg - 1 - d->msg_len ? len : sizeof d->msg - 1 - d->msg_len;
                memcpy(d->msg + d->msg_len, p, k);
                d->msg_len += k;
                d->msg[d->msg_len] = 0;
                return len;
        }
        if (write_full(d->fd, p, len) < 0) {
                d->write_failed = true;
                return 0;
        }
        return len;
}

/* The message of an Engine API error body ({"message": "..."}), else the body itself */
static void daemon_message(const char *body, char *out, size_t size)
{
        struct json_object *o = json_tokener_parse(body), *m = NULL;
        const char *s = o && json_object_object_get_ex(o, "message", &m) ? json_object_get_string(m) : body;
        s = s ? s : "";
        size_t n = strcspn(s, "\r\n");
        n = n < size - 1 ? n : size - 1;
        memcpy(out, s, n);
        out[n] = 0;
        json_object_put(o);
}

int daemon_export(const char *docker_host, const char *image, int out_fd, bool quiet, struct hutch_error *err)
{
        const char *host = docker_host && *docker_host ? docker_host : DOCKER_HOST_DEFAULT;
        _cleanup_free_ char *url = NULL;
        const char *sock = NULL;
        if (!daemon_image_is_valid(image))
                return hutch_err(err, -EINVAL, "'%s' is not an image name of docker-daemon:IMAGE[:TAG]", image);
        if (startswith(host, "unix://") && host[7] == '/') {
                sock = host + 7;
                if (asprintf(&url, "http://localhost/images/%s/get", image) < 0)
                        url = NULL;
        } else if (startswith(host, "tcp://") && host[6] && !strpbrk(host + 6, "/?#@")) {
                if (asprintf(&url, "http://%s/images/%s/get", host + 6, image) < 0)
                        url = NULL;
        } else
                return hutch_err(err, -EINVAL, "DOCKER_HOST '%s': hutch takes unix:///PATH or tcp://HOST:PORT", host);
        if (!url)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (!quiet)
                log_info("Exporting %s from the Docker daemon at %s", image, host);
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
                return hutch_err(err, -EIO, "cannot initialise libcurl");
        struct daemon_reply d = {.h = curl_easy_init(), .fd = out_fd};
        if (!d.h)
                return hutch_err(err, -ENOMEM, "out of memory");
        char why[CURL_ERROR_SIZE] = "";
        curl_easy_setopt(d.h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(d.h, CURLOPT_USERAGENT, "hutch/" HUTCH_VERSION);
        curl_easy_setopt(d.h, CURLOPT_PROTOCOLS_STR, "http");
        curl_easy_setopt(d.h, CURLOPT_CONNECTTIMEOUT, 30L);
        curl_easy_setopt(d.h, CURLOPT_LOW_SPEED_LIMIT, 1L); /* a daemon that stalls fails after a minute */
        curl_easy_setopt(d.h, CURLOPT_LOW_SPEED_TIME, 60L);
        curl_easy_setopt(d.h, CURLOPT_ERRORBUFFER, why);
        if (sock) { /* the daemon's own socket: never through an http_proxy of the environment */
                curl_easy_setopt(d.h, CURLOPT_UNIX_SOCKET_PATH, sock);
                curl_easy_setopt(d.h, CURLOPT_PROXY, "");
        }
        curl_easy_setopt(d.h, CURLOPT_URL, url);
        curl_easy_setopt(d.h, CURLOPT_WRITEFUNCTION, on_export);
        curl_easy_setopt(d.h, CURLOPT_WRITEDATA, &d);
        log_verbose("GET %s%s%s", url, sock ? " on " : "", sock ? sock : "");
        CURLcode cc = curl_easy_perform(d.h);
        long status = 0, os_errno = 0;
        curl_easy_getinfo(d.h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(d.h, CURLINFO_OS_ERRNO, &os_errno);
        curl_easy_cleanup(d.h);
        if (d.write_failed)
                return hutch_err(err, -EIO, "cannot store the export of '%s': %s", image,
                                 errno == ENOSPC ? "no space left on device" : "write failed");
        /* on a socket, libcurl's words would name "localhost port 80": the system's reason */
        if (cc == CURLE_COULDNT_CONNECT && sock && os_errno)
                return hutch_err(err, -(int) os_errno, "cannot reach the Docker daemon at %s: %s", host,
                                 strerror((int) os_errno));
        if (cc != CURLE_OK)
                return hutch_err(err, cc == CURLE_COULDNT_CONNECT ? -ECONNREFUSED : -EIO,
                                 "cannot reach the Docker daemon at %s: %s", host, *why ? why : curl_easy_strerror(cc));
        char msg[300];
        daemon_message(d.msg, msg, sizeof msg);
        if (status == 404)
                return hutch_err(err, -ENOENT, "no such image '%s' in the Docker daemon at %s%s%s", image, host,
                                 *msg ? ": " : "", msg);
        if (status != 200)
                return hutch_err(err, -EIO, "the Docker daemon at %s could not export '%s' (HTTP %ld)%s%s", host, image,
                                 status, *msg ? ": " : "", msg);
        return 0;
}
