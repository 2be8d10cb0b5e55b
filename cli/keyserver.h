/* hutch-sign's keyserver verbs (cli/keyserver.c): key search|pull|push over HKP, and the
 * user's list of keyservers (hutch keyserver add|remove|list). */
#pragma once

#include "cli.h"

/* sub: search, pull or push; url: --url, or NULL for the user's first keyserver; keys_dir:
 * the keyring pulled keys go into; read_dirs: the keyrings push reads (NULL-terminated) */
int keyserver_key_verb(struct cli *c, const char *sub, const char *url, const char *keys_dir,
                       const char *const *read_dirs, int nargs, char **args);
int verb_keyserver(struct cli *c, int argc, char **argv);
