/* Registry credentials in Docker's config.json format ({"auths":{"HOST":{"auth":
 * base64(user:pass)}}}): hutch's own file written by `remote login` (0600, replaced
 * atomically), Docker's ~/.docker/config.json and podman's auth.json read as well. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry-internal.h"
#include "util/util.h"

#define CREDS_FILE "docker-config.json"

/* Docker Hub is stored under its old index URL by docker login. */
static bool host_matches(const char *key, const char *host)
{
        if (!strcmp(host, DOCKER_HUB_HOST) && (!strcmp(key, "https://index.docker.io/v1/") ||
                                               !strcmp(key, "docker.io") || !strcmp(key, "index.docker.io")))
                return true;
        if (startswith(key, "https://"))
                key += 8;
        else if (startswith(key, "http://"))
                key += 7;
        size_t n = strlen(host);
        return !strncmp(key, host, n) && (key[n] == 0 || key[n] == '/');
}

static int decode_auth(const char *b64, char **ret_user, char **ret_pass)
{
        size_t n = strlen(b64);
        _cleanup_free_ unsigned char *out = malloc(n + 1);
        if (!out)
                return -ENOMEM;
        int len = EVP_DecodeBlock(out, (const unsigned char *) b64, (int) n);
        if (len < 0)
                return -EINVAL;
        while (len > 0 && n > 0 && b64[n - 1] == '=') /* DecodeBlock counts the padding */
                len--, n--;
        out[len] = 0;
        char *colon = strchr((char *) out, ':');
        if (!colon)
                return -EINVAL;
        *colon = 0;
        *ret_user = strdup((char *) out);
        *ret_pass = strdup(colon + 1);
        return *ret_user && *ret_pass ? 1 : -ENOMEM;
}

static int lookup_file(const char *path, const char *host, char **ret_user, char **ret_pass)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        if (!path || read_regular_at(AT_FDCWD, path, 1u << 20, &text, &len) < 0)
                return 0;
        struct json_object *o = json_tokener_parse(text), *auths, *v;
        int r = 0;
        if (o && json_object_object_get_ex(o, "auths", &auths) && json_object_is_type(auths, json_type_object)) {
                json_object_object_foreach (auths, key, val) {
                        if (!host_matches(key, host) || !json_object_object_get_ex(val, "auth", &v) ||
                            !json_object_is_type(v, json_type_string))
                                continue;
                        r = decode_auth(json_object_get_string(v), ret_user, ret_pass);
                        if (r > 0)
                                break;
                        r = 0;
                }
        }
        json_object_put(o);
        return r;
}

int registry_auth_lookup(const struct registry_auth *a, const char *host, char **ret_user, char **ret_pass)
{
        _cleanup_free_ char *own = NULL;
        if (a->config_dir && asprintf(&own, "%s/" CREDS_FILE, a->config_dir) < 0)
                own = NULL;
        const char *files[] = {own, a->docker_config, a->podman_auth};
        for (size_t i = 0; i < ELEMENTSOF(files); i++)
                if (lookup_file(files[i], host, ret_user, ret_pass) > 0)
                        return 1;
        return 0;
}

/* Read hutch's file (or an empty document), let edit change it, write it back 0600. */
static int creds_update(const char *config_dir, const char *host, const char *auth_b64, struct hutch_error *err)
{
        _cleanup_free_ char *path = NULL, *text = NULL;
        size_t len;
        if (asprintf(&path, "%s/" CREDS_FILE, config_dir) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        int r = mkdir_p_at(AT_FDCWD, config_dir, 0700);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot create '%s'", config_dir);
        r = read_regular_at(AT_FDCWD, path, 1u << 20, &text, &len);
        if (r < 0 && r != -ENOENT)
                return hutch_err_sys(err, r, "cannot read '%s'", path);
        struct json_object *o = text ? json_tokener_parse(text) : json_object_new_object(), *auths = NULL;
        if (!o || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return hutch_err(err, -EBADMSG, "'%s' is not a JSON object: remove it", path);
        }
        if (!json_object_object_get_ex(o, "auths", &auths) || !json_object_is_type(auths, json_type_object)) {
                auths = json_object_new_object();
                json_object_object_add(o, "auths", auths);
        }
        bool found = json_object_object_get_ex(auths, host, NULL);
        if (auth_b64) {
                struct json_object *e = json_object_new_object();
                json_object_object_add(e, "auth", json_object_new_string(auth_b64));
                json_object_object_add(auths, host, e);
        } else
                json_object_object_del(auths, host);
        const char *out = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
        _cleanup_free_ char *tmp = NULL;
        if (asprintf(&tmp, "%s.tmp-%d", path, (int) getpid()) < 0) {
                json_object_put(o);
                return hutch_err(err, -ENOMEM, "out of memory");
        }
        unlink(tmp);
        r = write_file_at(AT_FDCWD, tmp, out, strlen(out), 0600);
        json_object_put(o);
        if (r < 0 || rename(tmp, path) < 0) {
                r = r < 0 ? r : -errno;
                unlink(tmp);
                return hutch_err_sys(err, r, "cannot write '%s'", path);
        }
        if (!auth_b64 && !found)
                return hutch_err(err, -ENOENT, "not logged in to %s", host);
        return 0;
}

int registry_login(const char *config_dir, const char *host, const char *username, const char *password,
                   struct hutch_error *err)
{
        _cleanup_free_ char *plain = NULL;
        if (asprintf(&plain, "%s:%s", username, password) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        size_t n = strlen(plain);
        _cleanup_free_ char *b64 = malloc(4 * ((n + 2) / 3) + 1);
        if (!b64)
                return hutch_err(err, -ENOMEM, "out of memory");
        EVP_EncodeBlock((unsigned char *) b64, (const unsigned char *) plain, (int) n);
        explicit_bzero(plain, n);
        return creds_update(config_dir, host, b64, err);
}

int registry_logout(const char *config_dir, const char *host, struct hutch_error *err)
{
        return creds_update(config_dir, host, NULL, err);
}
