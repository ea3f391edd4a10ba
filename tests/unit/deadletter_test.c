/*
 * deadletter_test.c: the dead letter. Each input of the table is read with
 * message_read, saved twice to one file, and the file is compared byte for
 * byte (the From lines by pattern, as they hold the time). A large random
 * body checks that quoting and CRLF handling survive block boundaries,
 * against a simple in-memory model. Then the refusals (symlink, directory,
 * FIFO, someone else's file), the lock wait and deadletter_unquote.
 */
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "deadletter.h"
#include "message.h"
#include "tm_limits.h"
#include "util.h"
#include "tap.h"

#define FILE_LIMIT ((size_t)16 * 1024 * 1024)

static char test_dir[] = "/tmp/deadletter_test.XXXXXX";
static regex_t from_re;

struct save_case {
	const char *name;
	const char *input;
	const char *want;	/* the message as saved, without From line and
				   the empty line after */
};

static const struct save_case save_cases[] = {
	{ "LF input, From lines quoted",
	  "Subject: hi\n\nFrom here\n>From there\n>>From x\nFrom\nFromage\n From x\n",
	  "Subject: hi\n\n>From here\n>>From there\n>>>From x\nFrom\nFromage\n From x\n" },
	{ "CRLF input",
	  "Subject: hi\r\n\r\nFrom here\r\n>From there\r\n>F\r\n>\r\n",
	  "Subject: hi\n\n>From here\n>>From there\n>F\n>\n" },
	{ "no final newline",
	  "Subject: x\n\nlast line",
	  "Subject: x\n\nlast line\n" },
	{ "no final newline after From",
	  "Subject: x\n\n>>From ",
	  "Subject: x\n\n>>>From \n" },
	{ "no final newline in a partial match",
	  "Subject: x\n\n>>Fro",
	  "Subject: x\n\n>>Fro\n" },
	{ "leading mbox From line dropped by intake",
	  "From someone Sun Nov 22 23:30:43 2026\nSubject: x\n\nbody\n",
	  "Subject: x\n\nbody\n" },
	{ "lone CR is data",
	  "Subject: x\n\na\rb\r\nc\r\r\n",
	  "Subject: x\n\na\rb\nc\r\n" },
	{ "no header, From first in body",
	  "hello\nFrom me\n",
	  "hello\n>From me\n" },
	{ "empty message", "", "" },
	{ "blank lines", "\n\n\n", "\n\n\n" },
};

static char *
path_in_dir(const char *name)
{
	return xasprintf("%s/%s", test_dir, name);
}

static int
read_file(const char *path, struct strbuf *out)
{
	char buf[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	strbuf_reset(out);
	if (fd < 0)
		return -1;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (strbuf_append(out, buf, (size_t)n) < 0)
			break;
	close(fd);
	return n == 0 ? 0 : -1;
}

static void
write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, data, len) != (ssize_t)len) {
		perror(path);
		exit(99);
	}
	close(fd);
}

/* message_read over a file holding input[len]; exits on failure. */
static void
spool_message(const char *input, size_t len, struct message *m)
{
	struct intake_params p = { false, test_dir, 0, 0 };
	char *path = path_in_dir("input");
	struct tm_err err;
	int fd;

	write_file(path, input, len);
	fd = open(path, O_RDONLY);
	message_init(m);
	tm_err_clear(&err);
	if (fd < 0 || message_read(fd, &p, m, &err) < 0) {
		printf("Bail out! message_read: %s\n", err.msg);
		exit(99);
	}
	close(fd);
	unlink(path);
	free(path);
}

/* Check one entry at *p: From line for sender, want, empty line. */
static void
check_entry(const char **p, const char *end, const char *sender, const char *want,
    const char *what)
{
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));
	size_t wlen = strlen(want), slen = strlen(sender);
	char line[512];

	if (nl == NULL || (size_t)(nl - *p) >= sizeof(line)) {
		tap_ok(0, "%s: From line", what);
		*p = end;
		return;
	}
	memcpy(line, *p, (size_t)(nl - *p));
	line[nl - *p] = '\0';
	tap_ok(regexec(&from_re, line, 0, NULL, 0) == 0 &&
	    strncmp(line + 5, sender, slen) == 0 && line[5 + slen] == ' ',
	    "%s: From line [%s]", what, line);
	*p = nl + 1;
	tap_ok((size_t)(end - *p) >= wlen + 1 && memcmp(*p, want, wlen) == 0 &&
	    (*p)[wlen] == '\n', "%s: message and empty line", what);
	*p += (size_t)(end - *p) >= wlen + 1 ? wlen + 1 : (size_t)(end - *p);
}

static void
test_save_case(const struct save_case *c)
{
	char *path = path_in_dir("case.mbox");
	struct strbuf got;
	struct message m;
	struct tm_err err;
	struct stat st;
	const char *p;
	int rc1, rc2;

	strbuf_init(&got, FILE_LIMIT);
	spool_message(c->input, strlen(c->input), &m);
	tm_err_clear(&err);
	rc1 = deadletter_save(path, &m, "app@example.com", &err);
	rc2 = deadletter_save(path, &m, "app@example.com", &err);
	tap_ok(rc1 == 0 && rc2 == 0, "%s: saved twice %s", c->name, err.msg);
	tap_ok(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600 &&
	    S_ISREG(st.st_mode), "%s: mode 0600", c->name);
	read_file(path, &got);
	p = got.data;
	check_entry(&p, got.data + got.len, "app@example.com", c->want, c->name);
	check_entry(&p, got.data + got.len, "app@example.com", c->want, c->name);
	tap_ok(p == got.data + got.len, "%s: nothing else in the file", c->name);
	message_free(&m);
	strbuf_free(&got);
	unlink(path);
	free(path);
}

/* The model: the spool's bytes, CRLF -> LF, a final newline, and with
   quote a '>' more on lines matching ^>*From . */
static void
model(const char *s, size_t len, bool quote, struct strbuf *out)
{
	size_t i = 0;

	strbuf_reset(out);
	while (i < len) {
		size_t j = i, k = i;

		while (k < len && s[k] == '>')
			k++;
		if (quote && len - k >= 5 && memcmp(s + k, "From ", 5) == 0)
			strbuf_append(out, ">", 1);
		while (j < len && s[j] != '\n')
			j++;
		if (j < len && j > i && s[j - 1] == '\r') {
			strbuf_append(out, s + i, j - 1 - i);
			strbuf_append(out, "\n", 1);
		} else {
			strbuf_append(out, s + i, j < len ? j + 1 - i : j - i);
		}
		i = j < len ? j + 1 : j;
	}
	if (out->len > 0 && out->data[out->len - 1] != '\n')
		strbuf_append(out, "\n", 1);
}

static char *
spool_bytes(const struct message *m)
{
	char *buf = xmalloc((size_t)m->spool_size + 1);

	if (pread(m->spool_fd, buf, (size_t)m->spool_size, 0) != (ssize_t)m->spool_size) {
		printf("Bail out! spool read back\n");
		exit(99);
	}
	buf[m->spool_size] = '\0';
	return buf;
}

/* A body of pieces that make From lines, near-misses, CRs and long lines,
   so that each kind ends up across a block boundary somewhere. */
static void
random_body(struct strbuf *b, size_t size, unsigned seed)
{
	static const char *const pieces[] = {
		"From ", ">", ">>>", "From", "Fro", "\r", "\r\n", "\n", "x", " ",
		"text text text ", "F", "\n>From ", "\r\nFrom "
	};
	size_t npieces = sizeof(pieces) / sizeof(pieces[0]);

	strbuf_reset(b);
	strbuf_append_str(b, "Subject: random\n\n");
	srand(seed);
	while (b->len < size)
		strbuf_append_str(b, pieces[(size_t)rand() % npieces]);
}

/* A random message of about size octets: saved as the model says, and
   deadletter_unquote gives back the spool with LF. */
static void
test_random(unsigned seed, size_t size, const char *path)
{
	struct strbuf in, want, got, back;
	struct message m;
	struct tm_err err;
	const char *p;
	char *spool;

	strbuf_init(&in, FILE_LIMIT);
	strbuf_init(&want, FILE_LIMIT);
	strbuf_init(&got, FILE_LIMIT);
	strbuf_init(&back, FILE_LIMIT);
	random_body(&in, size, seed);
	spool_message(in.data, in.len, &m);
	spool = spool_bytes(&m);
	model(spool, (size_t)m.spool_size, true, &want);
	tm_err_clear(&err);
	unlink(path);
	tap_ok(deadletter_save(path, &m, "", &err) == 0, "random %u: saved %s", seed,
	    err.msg);
	read_file(path, &got);
	p = got.data;
	check_entry(&p, got.data + got.len, "MAILER-DAEMON", want.data, "random");
	tap_ok(p == got.data + got.len, "random %u: nothing else in the file", seed);
	tap_ok(deadletter_unquote(&back, got.data, got.len) == 0, "random %u: unquote",
	    seed);
	model(spool, (size_t)m.spool_size, false, &want);
	tap_ok(back.len == want.len && memcmp(back.data, want.data, back.len) == 0,
	    "random %u: unquote gives the spool with LF", seed);
	free(spool);
	message_free(&m);
	strbuf_free(&in);
	strbuf_free(&want);
	strbuf_free(&got);
	strbuf_free(&back);
}

static void
test_large_random(void)
{
	char *path = path_in_dir("big.mbox");
	unsigned seed;

	for (seed = 1; seed <= 4; seed++)
		test_random(seed, (size_t)TM_IO_BLOCK * 3 + seed * 977, path);
	test_random(5, 100, path);
	unlink(path);
	free(path);
}

/* deadletter_save on path must fail with EX_CANTCREAT and a message
   holding both the path and why. */
static void
expect_refused(const char *path, const char *why, const char *what)
{
	struct message m;
	struct tm_err err;
	int rc;

	spool_message("Subject: x\n\nbody\n", 17, &m);
	tm_err_clear(&err);
	rc = deadletter_save(path, &m, "app@example.com", &err);
	tap_ok(rc == -1 && err.exit == EX_CANTCREAT && err.cls == TM_ERR_IO &&
	    strstr(err.msg, path) && strstr(err.msg, why), "%s refused: %s", what,
	    err.msg);
	message_free(&m);
}

static void
test_refusals(void)
{
	char *target = path_in_dir("target"), *link = path_in_dir("link");
	char *dir = path_in_dir("dir"), *fifo = path_in_dir("fifo");
	char *other = path_in_dir("other"), *missing = path_in_dir("no/such");
	struct stat st;

	tap_ok(symlink(target, link) == 0, "dangling symlink made");
	expect_refused(link, "is not a regular file of yours", "dangling symlink");
	tap_ok(lstat(target, &st) < 0 && errno == ENOENT, "symlink target not created");
	write_file(target, "keep", 4);
	expect_refused(link, "is not a regular file of yours", "symlink to a file");
	tap_ok(stat(target, &st) == 0 && st.st_size == 4, "symlink target untouched");
	tap_ok(mkdir(dir, 0700) == 0, "directory made");
	expect_refused(dir, "is not a regular file of yours", "directory");
	tap_ok(mkfifo(fifo, 0600) == 0, "FIFO made");
	expect_refused(fifo, "is not a regular file of yours", "FIFO");
	expect_refused(missing, "No such file or directory", "missing directory");
	write_file(other, "", 0);
	if (geteuid() != 0) {
		tap_ok(1, "# SKIP someone else's file: not root");
	} else {
		tap_ok(chown(other, 65534, 65534) == 0, "file given to 65534");
		expect_refused(other, "is not a regular file of yours", "someone else's file");
		tap_ok(stat(other, &st) == 0 && st.st_size == 0, "their file untouched");
	}
	unlink(link);
	unlink(target);
	rmdir(dir);
	unlink(fifo);
	unlink(other);
	free(target);
	free(link);
	free(dir);
	free(fifo);
	free(other);
	free(missing);
}

/* A child holds the lock for 300 ms: the save waits for it, then appends. */
static void
test_lock_wait(void)
{
	char *path = path_in_dir("locked.mbox");
	struct timespec t0, t1;
	struct message m;
	struct tm_err err;
	int fds[2], status, rc;
	double waited;
	pid_t pid;
	char c;

	write_file(path, "", 0);
	if (pipe(fds) < 0 || (pid = fork()) < 0) {
		perror("pipe/fork");
		exit(99);
	}
	if (pid == 0) {
		const struct timespec hold = { 0, 300 * 1000000L };
		int fd = open(path, O_WRONLY);

		if (fd < 0 || flock(fd, LOCK_EX) < 0 || write(fds[1], "x", 1) != 1)
			_exit(1);
		nanosleep(&hold, NULL);
		_exit(0);
	}
	close(fds[1]);
	tap_ok(read(fds[0], &c, 1) == 1, "child holds the lock");
	close(fds[0]);
	spool_message("Subject: x\n\nbody\n", 17, &m);
	tm_err_clear(&err);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = deadletter_save(path, &m, "a@example.com", &err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	tap_ok(rc == 0, "saved once the lock was released %s", err.msg);
	tap_ok(waited >= 0.2 && waited < 5, "waited for the lock (%.2f s)", waited);
	tap_ok(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0, "child done");
	message_free(&m);
	unlink(path);
	free(path);
}

static void
test_sender(void)
{
	char *path = path_in_dir("sender.mbox");
	struct strbuf got;
	struct message m;
	struct tm_err err;
	const char *p;

	strbuf_init(&got, FILE_LIMIT);
	spool_message("body\n", 5, &m);
	tap_ok(deadletter_save(path, &m, "\"john doe\"@example.com", &err) == 0 &&
	    deadletter_save(path, &m, NULL, &err) == 0, "saved with odd senders");
	read_file(path, &got);
	p = got.data;
	check_entry(&p, got.data + got.len, "\"john_doe\"@example.com", "body\n",
	    "space in sender");
	check_entry(&p, got.data + got.len, "MAILER-DAEMON", "body\n", "NULL sender");
	message_free(&m);
	message_init(&m);
	m.spool_size = 10;
	tap_ok(deadletter_save(path, &m, "a@b", &err) < 0 &&
	    strstr(err.msg, "not spooled") != NULL, "no spool refused: %s", err.msg);
	strbuf_free(&got);
	unlink(path);
	free(path);
}

struct unquote_case {
	const char *entry;
	int rc;
	const char *want;
};

static const struct unquote_case unquote_cases[] = {
	{ "From a Sun Nov 22 23:30:43 2026\n>From x\n>>From y\nFrom\n>Fro\n\n", 0,
	  "From x\n>From y\nFrom\n>Fro\n" },
	{ "From a Sun Nov 22 23:30:43 2026\n\n", 0, "" },
	{ "From a Sun Nov 22 23:30:43 2026\n\n\n", 0, "\n" },
	{ "From a Sun Nov 22 23:30:43 2026\nbody\n", -1, NULL },
	{ "From a Sun Nov 22 23:30:43 2026\nbody\nx\n", -1, NULL },
	{ "From a Sun Nov 22 23:30:43 2026\n", -1, NULL },
	{ "from a\nbody\n\n", -1, NULL },
	{ "", -1, NULL },
};

static void
test_unquote(void)
{
	struct strbuf out;
	size_t i;

	strbuf_init(&out, 1024);
	for (i = 0; i < sizeof(unquote_cases) / sizeof(unquote_cases[0]); i++) {
		const struct unquote_case *c = &unquote_cases[i];
		int rc;

		strbuf_reset(&out);
		rc = deadletter_unquote(&out, c->entry, strlen(c->entry));
		tap_is_int(rc, c->rc, "unquote %zu: result", i);
		if (c->rc == 0)
			tap_is_str(out.data, c->want, "unquote %zu: text", i);
	}
	strbuf_free(&out);
	strbuf_init(&out, 4);
	tap_is_int(deadletter_unquote(&out, "From a\nlong line\n\n", 18), -1,
	    "unquote past the limit");
	strbuf_free(&out);
}

int
main(void)
{
	size_t i;

	if (mkdtemp(test_dir) == NULL) {
		perror("mkdtemp");
		return 99;
	}
	umask(0);
	if (regcomp(&from_re, "^From [^ ]+ (Sun|Mon|Tue|Wed|Thu|Fri|Sat) "
	    "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 1-3][0-9] "
	    "[0-2][0-9]:[0-5][0-9]:[0-6][0-9] [0-9]{4}$", REG_EXTENDED | REG_NOSUB) != 0)
		return 99;
	for (i = 0; i < sizeof(save_cases) / sizeof(save_cases[0]); i++)
		test_save_case(&save_cases[i]);
	test_large_random();
	test_sender();
	test_refusals();
	test_lock_wait();
	test_unquote();
	regfree(&from_re);
	rmdir(test_dir);
	return tap_done();
}
