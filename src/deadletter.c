/*
 * deadletter.c: appending a message that could not be delivered to an mbox
 * file in mboxrd format. The spool is read in blocks and passed through a
 * small quoting state machine (struct dl_quote) that turns CRLF into LF and
 * adds a '>' to lines matching ^>*From , carrying its state across block
 * boundaries; the result is gathered in one output block (struct dl_out).
 * Memory use does not depend on the size of the message or of its lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "deadletter.h"
#include "tm_limits.h"
#include "util.h"

#define DL_LOCK_WAIT_MS	10000	/* how long another holder of the lock is waited for */
#define DL_LOCK_STEP_MS	100
#define DL_OUT_BLOCK	8192

static const char from_[] = "From ";
#define FROM_LEN	(sizeof(from_) - 1)

/* Bytes on their way to the file, written DL_OUT_BLOCK at a time. */
struct dl_out {
	int fd;
	int error;		/* errno of the first failed write, or 0 */
	char last;		/* the last byte put */
	size_t len;
	char buf[DL_OUT_BLOCK];
};

/* Where the quoting is between two input blocks. */
struct dl_quote {
	bool bol;		/* at a line start, matching ^>*From  so far */
	size_t ngt;		/* '>' matched at the start of this line */
	size_t nfrom;		/* octets of "From " matched after them */
	bool cr;		/* a CR is held back: dropped if LF follows */
};

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void
out_flush(struct dl_out *o)
{
	if (o->error == 0 && write_all(o->fd, o->buf, o->len) < 0)
		o->error = errno;
	o->len = 0;
}

static void
out_put(struct dl_out *o, const char *p, size_t n)
{
	if (n == 0)
		return;
	o->last = p[n - 1];
	while (n > 0) {
		size_t k = sizeof(o->buf) - o->len;

		if (k == 0) {
			out_flush(o);
			continue;
		}
		if (k > n)
			k = n;
		memcpy(o->buf + o->len, p, k);
		o->len += k;
		p += k;
		n -= k;
	}
}

/* count '>' characters: a line may start with any number of them. */
static void
out_gts(struct dl_out *o, size_t count)
{
	static const char gts[] = ">>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>";

	while (count > 0) {
		size_t k = count < sizeof(gts) - 1 ? count : sizeof(gts) - 1;

		out_put(o, gts, k);
		count -= k;
	}
}

/* The line start turned out not to be a From line: put what was held. */
static void
quote_release(struct dl_quote *q, struct dl_out *o)
{
	out_gts(o, q->ngt);
	out_put(o, from_, q->nfrom);
	q->bol = false;
}

/* At a line start: match ^>*From  in p[n]; returns the octets consumed. */
static size_t
quote_line_start(struct dl_quote *q, struct dl_out *o, const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (q->nfrom == 0 && p[i] == '>') {
			q->ngt++;
		} else if (p[i] == from_[q->nfrom]) {
			if (++q->nfrom == FROM_LEN) {
				out_gts(o, q->ngt + 1);
				out_put(o, from_, FROM_LEN);
				q->bol = false;
				return i + 1;
			}
		} else {
			quote_release(q, o);
			return i;
		}
	}
	return n;
}

/* Inside a line: copy up to and including the next CR or LF. */
static size_t
quote_line_rest(struct dl_quote *q, struct dl_out *o, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n && p[i] != '\r' && p[i] != '\n')
		i++;
	out_put(o, p, i);
	if (i == n)
		return n;
	if (p[i] == '\r') {
		q->cr = true;
	} else {
		out_put(o, "\n", 1);
		q->bol = true;
		q->ngt = q->nfrom = 0;
	}
	return i + 1;
}

static void
quote_feed(struct dl_quote *q, struct dl_out *o, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if (q->cr) {
			q->cr = false;
			if (p[i] != '\n')
				out_put(o, "\r", 1);
		}
		if (q->bol)
			i += quote_line_start(q, o, p + i, n - i);
		else
			i += quote_line_rest(q, o, p + i, n - i);
	}
}

/* End of the message: put what is held, and a final newline if missing. */
static void
quote_finish(struct dl_quote *q, struct dl_out *o)
{
	if (q->bol)
		quote_release(q, o);
	if (q->cr)
		out_put(o, "\r", 1);
	if (o->last != '\n')
		out_put(o, "\n", 1);
}

/* "From SENDER Sun Nov 22 23:30:43 2026\n", in local time, as asctime(3). */
static void
put_from_line(struct dl_out *o, const char *envelope_from, time_t now)
{
	static const char days[7][4] = {
		"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
	};
	static const char months[12][4] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
	};
	char sender[TM_ADDRESS_MAX + 1], line[TM_ADDRESS_MAX + 64];
	struct tm lt;
	size_t i;

	if (envelope_from == NULL || envelope_from[0] == '\0')
		envelope_from = "MAILER-DAEMON";
	(void)str_copy(sender, sizeof(sender), envelope_from);
	for (i = 0; sender[i]; i++) {
		unsigned char c = (unsigned char)sender[i];

		if (c <= ' ' || c == 0x7f)
			sender[i] = '_';
	}
	localtime_r(&now, &lt);
	(void)str_format(line, sizeof(line), "From %s %s %s %2d %02d:%02d:%02d %d\n",
	    sender, days[lt.tm_wday], months[lt.tm_mon], lt.tm_mday, lt.tm_hour,
	    lt.tm_min, lt.tm_sec, lt.tm_year + 1900);
	out_put(o, line, strlen(line));
}

/* Open path for appending: a regular file of ours, never through a symlink. */
static int
dl_open(const char *path, struct tm_err *err)
{
	struct stat st;
	int fd;

	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC, 0600);
	if (fd < 0 && errno != ELOOP && errno != EISDIR && errno != ENXIO)
		return tm_err_set(err, TM_ERR_IO, EX_CANTCREAT, "dead letter %s: %s",
		    path, strerror(errno));
	if (fd >= 0 && fstat(fd, &st) < 0) {
		tm_err_set(err, TM_ERR_IO, EX_CANTCREAT, "dead letter %s: %s", path,
		    strerror(errno));
		close(fd);
		return -1;
	}
	if (fd < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
		if (fd >= 0)
			close(fd);
		tm_err_set(err, TM_ERR_IO, EX_CANTCREAT,
		    "dead letter %s is not a regular file of yours", path);
		tm_err_hint(err, "remove it, or set dead_letter to another path");
		return -1;
	}
	return fd;
}

/* flock(LOCK_EX), waiting up to DL_LOCK_WAIT_MS for another holder. */
static int
dl_lock(int fd, const char *path, struct tm_err *err)
{
	const struct timespec step = { 0, DL_LOCK_STEP_MS * 1000000L };
	int waited = 0;

	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK && errno != EINTR)
			return tm_err_set(err, TM_ERR_IO, EX_CANTCREAT,
			    "dead letter %s: cannot lock: %s", path, strerror(errno));
		if (waited >= DL_LOCK_WAIT_MS)
			return tm_err_set(err, TM_ERR_IO, EX_CANTCREAT,
			    "dead letter %s: still locked by another process after %d s",
			    path, DL_LOCK_WAIT_MS / 1000);
		nanosleep(&step, NULL);
		waited += DL_LOCK_STEP_MS;
	}
	return 0;
}

/* Stream the spool of m through the quoting into o. */
static int
copy_spool(const struct message *m, struct dl_out *o, const char *path,
    struct tm_err *err)
{
	struct dl_quote q = { true, 0, 0, false };
	char *buf = xmalloc(TM_IO_BLOCK);
	long long off = 0;
	int rc = -1;

	if (m->spool_fd < 0 && m->spool_size > 0) {
		tm_err_set(err, TM_ERR_IO, EX_CANTCREAT,
		    "dead letter %s: the message was not spooled", path);
		goto out;
	}
	while (off < m->spool_size) {
		long long want = m->spool_size - off;
		ssize_t n = pread(m->spool_fd, buf,
		    want < TM_IO_BLOCK ? (size_t)want : TM_IO_BLOCK, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			tm_err_set(err, TM_ERR_IO, EX_CANTCREAT,
			    "dead letter %s: reading the spool: %s", path,
			    n < 0 ? strerror(errno) : "it is shorter than expected");
			goto out;
		}
		quote_feed(&q, o, buf, (size_t)n);
		off += n;
	}
	quote_finish(&q, o);
	rc = 0;
out:
	free(buf);
	return rc;
}

/* The entry after the lock is held: From line, message, empty line, fsync. */
static int
write_entry(int fd, const struct message *m, const char *envelope_from,
    const char *path, struct tm_err *err)
{
	struct dl_out *o = xcalloc(1, sizeof(*o));
	int rc = -1;

	o->fd = fd;
	put_from_line(o, envelope_from, time(NULL));
	if (copy_spool(m, o, path, err) < 0)
		goto out;
	out_put(o, "\n", 1);
	out_flush(o);
	if (o->error == 0 && fsync(fd) < 0)
		o->error = errno;
	if (o->error != 0) {
		tm_err_set(err, TM_ERR_IO, EX_CANTCREAT, "dead letter %s: %s", path,
		    strerror(o->error));
		goto out;
	}
	rc = 0;
out:
	free(o);
	return rc;
}

int
deadletter_save(const char *path, const struct message *m, const char *envelope_from,
    struct tm_err *err)
{
	struct stat st;
	int fd, rc = -1;

	fd = dl_open(path, err);
	if (fd < 0)
		return -1;
	if (dl_lock(fd, path, err) < 0)
		goto out;
	if (fstat(fd, &st) < 0) {
		tm_err_set(err, TM_ERR_IO, EX_CANTCREAT, "dead letter %s: %s", path,
		    strerror(errno));
		goto out;
	}
	rc = write_entry(fd, m, envelope_from, path, err);
	if (rc < 0 && ftruncate(fd, st.st_size) < 0)
		tm_err_detail(err, "the file may now hold part of the message");
out:
	if (close(fd) < 0 && rc == 0)
		rc = tm_err_set(err, TM_ERR_IO, EX_CANTCREAT, "dead letter %s: %s",
		    path, strerror(errno));
	return rc;
}

/* true if line[n] matches ^>+From . */
static bool
is_quoted_from(const char *line, size_t n)
{
	size_t i = 0;

	while (i < n && line[i] == '>')
		i++;
	return i > 0 && n - i >= FROM_LEN && memcmp(line + i, from_, FROM_LEN) == 0;
}

int
deadletter_unquote(struct strbuf *out, const char *text, size_t len)
{
	const char *p, *end = text + len, *nl;

	if (len < FROM_LEN || memcmp(text, from_, FROM_LEN) != 0)
		return -1;
	nl = memchr(text, '\n', len);
	if (nl == NULL || end - nl < 2 || end[-1] != '\n')
		return -1;
	p = nl + 1;
	end--;		/* the empty line that ends the entry */
	if (end > p && end[-1] != '\n')
		return -1;
	while (p < end) {
		size_t n, skip;

		nl = memchr(p, '\n', (size_t)(end - p));
		n = (size_t)(nl + 1 - p);	/* the entry ends in '\n': nl is found */
		skip = is_quoted_from(p, n) ? 1 : 0;
		if (strbuf_append(out, p + skip, n - skip) < 0)
			return -1;
		p += n;
	}
	return 0;
}
