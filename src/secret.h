/*
 * secret.h: reading an account's credentials from where the config says
 * they live. Only token.c calls it. A secret file must be private (mode
 * 0600 or stricter, owned by the user or root) and its trailing newline is
 * ignored; a client_secret_command runs through /bin/sh -c with no secret
 * in its argv or environment, its stdout read up to TM_SECRET_MAX octets
 * within SECRET_COMMAND_SECONDS. Returned strings are wiped when freed
 * with secret_free().
 */
#ifndef TM_SECRET_H
#define TM_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "err.h"
#include "util.h"

#define SECRET_COMMAND_SECONDS 30

/*
 * The client secret from client_secret, client_secret_file or
 * client_secret_command, into *out (heap; free with secret_free). Returns
 * 0, or -1 with err (EX_CONFIG: msg "account A: ..." naming the file, or
 * the command's exit status, never its output or its text; hint the fix).
 * In setgid mode (p->group_readable_ok) a command's program (its first
 * word) must be an absolute path owned by root and writable by no one
 * else (SPEC 9), because it runs with the group's privilege.
 */
int secret_client_secret(const struct account *a, const struct config_params *p,
    char **out, struct tm_err *err);

/*
 * A whole private file (refresh_token_file) or, with check_mode false, any
 * readable file (client_assertion_file, re-read for every request); at most
 * TM_SECRET_MAX octets, trailing white space dropped. what names it in
 * errors ("client_secret_file"). It must be a regular file (symlinks are
 * followed, as config_check_secret_files does); with check_mode, owned by
 * p->uid or root with no group/other access (p->group_readable_ok allows
 * root:group 0640). Returns 0 with *out (free with secret_free), or -1
 * with err (EX_CONFIG: unreadable, not private, empty, too large, or
 * holding a NUL byte).
 */
int secret_read_file(const char *path, const char *what, bool check_mode,
    const struct config_params *p, char **out, struct tm_err *err);

/*
 * Run command through /bin/sh -c in its own process group: stdin
 * /dev/null, stdout a pipe, stderr inherited, the environment only
 * PATH=/usr/bin:/bin and HOME=home (when home is not NULL), every other
 * descriptor closed. Its stdout (at most TM_SECRET_MAX octets, trailing
 * white space dropped) goes to *out (free with secret_free). Returns 0,
 * or -1 with err (EX_CONFIG): it ran longer than timeout_seconds (the
 * process group is killed), exited non-zero or by a signal, printed
 * nothing, too much or a NUL byte; EX_OSERR when it could not be started.
 * secret_client_secret uses SECRET_COMMAND_SECONDS; tests pass less.
 */
int secret_run_command(const char *command, const char *home, long timeout_seconds,
    char **out, struct tm_err *err);

/*
 * A strbuf for text that holds secrets (a request body, a cache file):
 * its whole limit is allocated at once, so it never reallocates and never
 * leaves a copy behind in freed memory. secret_buf_free wipes all of it.
 */
void secret_buf_init(struct strbuf *b, size_t limit);
void secret_buf_free(struct strbuf *b);

#endif
