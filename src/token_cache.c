/*
 * token_cache.c: the token cache (SPEC 5). One JSON file per account in
 * cache_dir,
 *   {"version":1,"token_url":..,"client_id":..,"scope":..,
 *    "access_token":..,"expires_at":<unix time>,"refresh_token":..}
 * guarded by flock(2) on "<account>.lock" beside it, so that a burst of
 * parallel sendmail calls makes one token request: the first takes the
 * lock and asks, the others wait and then find its token.
 *
 * The directory is opened once and checked through its descriptor (ours,
 * no group/other access); every file in it is reached with openat and
 * O_NOFOLLOW, so nothing swapped in later is followed. In setgid mode
 * (SPEC 9) the directory is root's, group the setgid group, mode
 * 2770: every caller's broker shares it, so files are 0660.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "log.h"
#include "secret.h"
#include "tm_limits.h"
#include "token_priv.h"
#include "util.h"

#define CACHE_VERSION		1
/* How often a busy lock is tried again, in milliseconds. */
#define LOCK_POLL_MS		20
/* Slack on top of what the lock holder may legitimately take. */
#define LOCK_SLACK_SECONDS	10

/* ---- the directory ---- */

/* Create one missing component of cache_dir, but only inside a directory
   that the user or root owns: not one a stranger could rearrange. */
static int
make_component(const char *path, uid_t parent_uid, struct tm_err *err)
{
	uid_t euid = geteuid();

	if (parent_uid != euid && parent_uid != 0)
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "will not create token cache "
		    "directory %s: its parent is owned by uid %lu", path,
		    (unsigned long)parent_uid);
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "cannot create token cache directory "
		    "%s: %s", path, strerror(errno));
		tm_err_hint(err, "set cache_dir to a directory you can write");
		return -1;
	}
	return 0;
}

/* mkdir -p with mode 0700 for what is missing. */
static int
make_dirs(const char *dir, struct tm_err *err)
{
	char path[TM_PATH_MAX];
	uid_t parent_uid = 0;
	struct stat st;
	size_t i;

	if (str_copy(path, sizeof(path), dir) < 0)
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "cache_dir is too long");
	for (i = 1;; i++) {
		char saved = path[i];

		if (saved != '/' && saved != '\0')
			continue;
		path[i] = '\0';
		if (stat(path, &st) < 0) {
			if (make_component(path, parent_uid, err) < 0)
				return -1;
			parent_uid = geteuid();
		} else if (!S_ISDIR(st.st_mode)) {
			return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "cannot create token "
			    "cache directory %s: %s is not a directory", dir, path);
		} else {
			parent_uid = st.st_uid;
		}
		path[i] = saved;
		if (saved == '\0')
			break;
	}
	return 0;
}

/* For hints: the name of the setgid group ("GROUP" if it has none). */
static const char *
group_name(gid_t gid)
{
	const struct group *g = getgrgid(gid);

	return g != NULL ? g->gr_name : "GROUP";
}

/* The directory must be ours and closed to everyone else. In setgid mode
   it must be root's (a caller who owned it could plant a token of his own
   for another caller's account) and the group's. Never chmod'ed here:
   that is the owner's decision. */
static int
check_dir(const struct token_context *c, int fd, const char *dir, struct tm_err *err)
{
	uid_t owner = c->setgid ? 0 : geteuid();
	struct stat st;
	mode_t perm;

	if (fstat(fd, &st) < 0)
		return tm_err_set(err, TM_ERR_IO, EX_IOERR, "cannot check token cache directory "
		    "%s: %s", dir, strerror(errno));
	perm = st.st_mode & 07777;
	if (st.st_uid != owner) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "token cache directory %s is owned by "
		    "uid %lu, not by uid %lu", dir, (unsigned long)st.st_uid, (unsigned long)owner);
		if (c->setgid)
			tm_err_hint(err, "chown root %s", dir);
		else
			tm_err_hint(err, "set cache_dir to a directory of your own");
		return -1;
	}
	if (!c->setgid && (perm & 077) != 0) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "token cache directory %s is mode %04o: "
		    "group or others have access to it", dir, (unsigned)perm);
		tm_err_hint(err, "chmod 700 %s", dir);
		return -1;
	}
	if (c->setgid && (st.st_gid != getegid() || (perm & 007) != 0)) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "token cache directory %s must belong "
		    "to tokenmail's group (gid %lu) with mode 2770, not gid %lu mode %04o", dir,
		    (unsigned long)getegid(), (unsigned long)st.st_gid, (unsigned)perm);
		tm_err_hint(err, "chgrp %lu %s && chmod 2770 %s", (unsigned long)getegid(), dir,
		    dir);
		return -1;
	}
	return 0;
}

static int
open_dir(const struct token_context *c, struct tm_err *err)
{
	const char *dir = c->cfg->cache_dir;
	int fd;

	if (dir == NULL || dir[0] != '/')
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
		    "cache_dir must be an absolute path");
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	/* In setgid mode a directory we made would be ours alone, useless to
	   the next caller: it has to be installed with the group. */
	if (fd < 0 && errno == ENOENT && !c->setgid) {
		if (make_dirs(dir, err) < 0)
			return -1;
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (fd < 0) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "cannot open token cache directory %s: "
		    "%s", dir, strerror(errno));
		if (c->setgid)
			tm_err_hint(err, "create it: install -d -o root -g %s -m 2770 %s",
			    group_name(getegid()), dir);
		else
			tm_err_hint(err, "set cache_dir to a directory you can write");
		return -1;
	}
	if (check_dir(c, fd, dir, err) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* ---- the lock ---- */

static long
lock_wait_seconds(const struct token_context *c)
{
	long t = c->timeout_seconds > 0 ? c->timeout_seconds : TM_HTTP_TIMEOUT_SECONDS;

	/* The holder may run a secret command and make one request. */
	return SECRET_COMMAND_SECONDS + 2 * t + LOCK_SLACK_SECONDS;
}

/* flock with a deadline: a stopped process must not hang every sendmail. */
static int
lock_wait(int fd, long seconds)
{
	const struct timespec pause = { 0, LOCK_POLL_MS * 1000000L };
	long tries = seconds * 1000 / LOCK_POLL_MS;

	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR)
			return -1;
		if (tries-- <= 0) {
			errno = EWOULDBLOCK;
			return -1;
		}
		(void)nanosleep(&pause, NULL);
	}
}

/*
 * Under the lock no other writer is at work, so a temp file of this entry is
 * what a writer killed between creating it and the rename left: it may hold
 * a token, and nothing else would ever remove it.
 */
static void
remove_stale_temps(const struct token_cache *tc)
{
	char prefix[TM_NAME_MAX + 8];
	size_t plen, len;
	struct dirent *e;
	int fd = fcntl(tc->dir_fd, F_DUPFD_CLOEXEC, 0);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	rewinddir(d);
	(void)str_format(prefix, sizeof(prefix), ".%s.", tc->name);
	plen = strlen(prefix);
	while ((e = readdir(d)) != NULL) {
		len = strlen(e->d_name);
		if (len > plen + 4 && strncmp(e->d_name, prefix, plen) == 0 &&
		    strcmp(e->d_name + len - 4, ".tmp") == 0 &&
		    unlinkat(tc->dir_fd, e->d_name, 0) == 0)
			log_trace("token cache: removed %s, left by a writer that died", e->d_name);
	}
	closedir(d);
}

static int
take_lock(const struct token_context *c, struct token_cache *tc, struct tm_err *err)
{
	char name[TM_NAME_MAX + 8];
	mode_t mode = c->setgid ? 0660 : 0600;
	long wait = lock_wait_seconds(c);

	(void)str_format(name, sizeof(name), "%s.lock", c->account->name);
	tc->lock_fd = openat(tc->dir_fd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode);
	if (tc->lock_fd < 0)
		return tm_err_set(err, TM_ERR_IO, EX_IOERR, "cannot open lock file %s/%s: %s",
		    c->cfg->cache_dir, name, strerror(errno));
	/* Other callers' brokers open it too, whatever our umask took away. */
	if (c->setgid)
		(void)fchmod(tc->lock_fd, mode);
	if (lock_wait(tc->lock_fd, wait) == 0) {
		remove_stale_temps(tc);
		return 0;
	}
	if (errno == EWOULDBLOCK)
		return tm_err_set(err, TM_ERR_IO, EX_TEMPFAIL, "token cache %s/%s is still locked "
		    "by another process after %ld s", c->cfg->cache_dir, name, wait);
	return tm_err_set(err, TM_ERR_IO, EX_IOERR, "cannot lock %s/%s: %s", c->cfg->cache_dir,
	    name, strerror(errno));
}

/* ---- reading ---- */

static void
drop_tokens(struct token_cache *tc)
{
	secret_free(tc->access_token);
	secret_free(tc->refresh_token);
	tc->access_token = tc->refresh_token = NULL;
	tc->expires_at = 0;
}

bool
token_text_ok(const char *s)
{
	size_t n;

	if (s == NULL || s[0] == '\0')
		return false;
	for (n = 0; s[n]; n++)
		if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f || n >= TM_SECRET_MAX)
			return false;
	return true;
}

static bool
field_is(const struct json_doc *d, const char *key, const char *want)
{
	const char *v = json_get(d, key);

	return v != NULL && want != NULL && strcmp(v, want) == 0;
}

/* Take what an intact entry holds for this account; why is set when the
   entry is damaged. */
static void
take_entry(const struct token_context *c, struct token_cache *tc, const struct json_doc *d,
    const char **why)
{
	const struct account *a = c->account;
	const char *at = json_get(d, "access_token"), *rt = json_get(d, "refresh_token");
	long version = 0, expires = 0;

	if (json_get_long(d, "version", 0, 1000, &version) < 0 || version != CACHE_VERSION)
		*why = "unknown version";
	else if ((at && (!token_text_ok(at) ||
	    json_get_long(d, "expires_at", 0, LONG_MAX, &expires) < 0)) ||
	    (rt && !token_text_ok(rt)))
		*why = "bad token fields";
	if (*why || !field_is(d, "token_url", config_token_url(a)) ||
	    !field_is(d, "client_id", a->client_id))
		return;
	if (rt)
		tc->refresh_token = xstrdup(rt);
	if (at && field_is(d, "scope", config_scope(a))) {
		tc->access_token = xstrdup(at);
		tc->expires_at = (time_t)expires;
	}
}

/* Read the open cache file; why is set when it is damaged. */
static void
read_entry(const struct token_context *c, struct token_cache *tc, int fd, const char **why)
{
	struct json_doc *d = NULL;
	struct tm_err jerr;
	struct stat st;
	char *buf = NULL;
	size_t len = 0, size = 0;

	if (fstat(fd, &st) < 0 || st.st_size > TM_JSON_MAX) {
		*why = "unreadable or too large";
		goto out;
	}
	size = (size_t)st.st_size;
	buf = xmalloc(size + 1);
	while (len < size) {
		ssize_t n = read(fd, buf + len, size - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (len != size || len == 0 || json_parse(buf, len, &d, &jerr) < 0)
		*why = len != size ? "short read" : len == 0 ? "empty" : "not JSON";
	else
		take_entry(c, tc, d, why);
out:
	json_free(d);
	if (buf)
		secret_wipe(buf, size + 1);
	free(buf);
}

static int
load_entry(const struct token_context *c, struct token_cache *tc, struct tm_err *err)
{
	const char *why = NULL;
	struct stat st;
	int fd;

	fd = openat(tc->dir_fd, tc->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
	    O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return 0;
	if ((fd < 0 && errno == ELOOP) || (fd >= 0 && fstat(fd, &st) == 0 &&
	    !S_ISREG(st.st_mode))) {
		if (fd >= 0)
			close(fd);
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "token cache file %s is a symbolic link "
		    "or not a regular file: refused", tc->path);
		tm_err_hint(err, "remove it: rm %s", tc->path);
		return -1;
	}
	if (fd < 0)
		why = strerror(errno);
	else
		read_entry(c, tc, fd, &why);
	if (fd >= 0)
		close(fd);
	if (why != NULL) {
		log_warn("discarding damaged token cache %s: %s", tc->path, why);
		drop_tokens(tc);
	}
	return 0;
}

int
token_cache_open(const struct token_context *c, struct token_cache *tc, struct tm_err *err)
{
	const char *name = c->account->name;

	memset(tc, 0, sizeof(*tc));
	tc->dir_fd = tc->lock_fd = -1;
	/* config.c admits only [A-Za-z0-9._-]; a name that could leave the
	   directory would be a bug there. */
	if (name == NULL || name[0] == '\0' || name[0] == '.' || strchr(name, '/') ||
	    str_format(tc->name, sizeof(tc->name), "%s.json", name) < 0)
		return tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE,
		    "account name unfit for a cache file name");
	if (str_format(tc->path, sizeof(tc->path), "%s/%s", c->cfg->cache_dir, tc->name) < 0)
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "cache_dir is too long");
	tc->dir_fd = open_dir(c, err);
	if (tc->dir_fd < 0 || take_lock(c, tc, err) < 0)
		return -1;
	return load_entry(c, tc, err);
}

/* ---- writing ---- */

static int
format_entry(const struct token_context *c, const struct token_cache *tc, struct strbuf *b)
{
	const struct account *a = c->account;

	if (strbuf_appendf(b, "{\"version\":%d,\"token_url\":", CACHE_VERSION) < 0 ||
	    json_append_string(b, config_token_url(a)) < 0 ||
	    strbuf_append_str(b, ",\"client_id\":") < 0 || json_append_string(b, a->client_id) < 0 ||
	    strbuf_append_str(b, ",\"scope\":") < 0 || json_append_string(b, config_scope(a)) < 0)
		return -1;
	if (tc->access_token && (strbuf_append_str(b, ",\"access_token\":") < 0 ||
	    json_append_string(b, tc->access_token) < 0 ||
	    strbuf_appendf(b, ",\"expires_at\":%lld", (long long)tc->expires_at) < 0))
		return -1;
	if (tc->refresh_token && (strbuf_append_str(b, ",\"refresh_token\":") < 0 ||
	    json_append_string(b, tc->refresh_token) < 0))
		return -1;
	return strbuf_append_str(b, "}\n");
}

static int
write_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* A new file in the cache directory that no one else can have opened:
   O_EXCL on a random name, as mkstemp does, but relative to dir_fd. */
static int
create_temp(const struct token_context *c, const struct token_cache *tc, char *name,
    size_t size)
{
	char hex[17];
	int fd;

	random_hex(hex, sizeof(hex), 8);
	if (str_format(name, size, ".%s.%s.tmp", tc->name, hex) < 0) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = openat(tc->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	/* Explicitly, since the umask may take the group bits setgid mode needs. */
	if (fd >= 0 && fchmod(fd, c->setgid ? 0660 : 0600) < 0) {
		close(fd);
		(void)unlinkat(tc->dir_fd, name, 0);
		return -1;
	}
	return fd;
}

/* Write b to a temp file and rename it over the entry; -1 with errno. */
static int
replace_file(const struct token_context *c, const struct token_cache *tc,
    const struct strbuf *b)
{
	char tmp[TM_NAME_MAX + 64];
	int fd, rc = -1, saved;
	bool renamed = false;

	fd = create_temp(c, tc, tmp, sizeof(tmp));
	if (fd < 0)
		return -1;
	if (write_all(fd, b->data, b->len) < 0 || fsync(fd) < 0)
		goto out;
	rc = close(fd);
	fd = -1;
	if (rc < 0)
		goto out;
	rc = renameat(tc->dir_fd, tmp, tc->dir_fd, tc->name);
	renamed = rc == 0;
	/* The rename itself must survive a crash too. */
	if (renamed)
		rc = fsync(tc->dir_fd);
out:
	saved = errno;
	if (fd >= 0)
		close(fd);
	if (!renamed)
		(void)unlinkat(tc->dir_fd, tmp, 0);
	errno = saved;
	return rc;
}

int
token_cache_write(const struct token_context *c, const struct token_cache *tc,
    struct tm_err *err)
{
	struct strbuf b;
	int rc = -1;

	secret_buf_init(&b, TM_JSON_MAX);
	if (tc->dir_fd < 0 || tc->lock_fd < 0) {
		tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE, "token cache written without its lock");
		goto out;
	}
	if (format_entry(c, tc, &b) < 0) {
		tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE, "token cache entry for %s is too "
		    "large", c->account->name);
		goto out;
	}
	if (replace_file(c, tc, &b) < 0) {
		tm_err_set(err, TM_ERR_IO, EX_IOERR, "cannot write token cache %s: %s", tc->path,
		    strerror(errno));
		goto out;
	}
	rc = 0;
out:
	secret_buf_free(&b);
	return rc;
}

void
token_cache_close(struct token_cache *tc)
{
	drop_tokens(tc);
	/* Closing the lock file releases the flock. */
	if (tc->lock_fd >= 0)
		close(tc->lock_fd);
	if (tc->dir_fd >= 0)
		close(tc->dir_fd);
	tc->lock_fd = tc->dir_fd = -1;
}
