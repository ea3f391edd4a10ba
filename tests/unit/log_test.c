/*
 * log_test.c: the one line per message. A table of records and the exact
 * lines log_format_message gives (quoting, sanitizing, bounds), then
 * log_message to a file and to the -X file (read back), to stderr
 * (captured), and to syslog (only that it returns).
 */
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "address.h"
#include "log.h"
#include "util.h"
#include "tap.h"

static char test_dir[] = "/tmp/log_test.XXXXXX";

static struct address_list two_rcpts, no_rcpts, many_rcpts, odd_rcpts;

struct format_case {
	const char *name;
	struct log_record r;
	const char *want;
};

static const struct format_case format_cases[] = {
	{ "sent", { "app", "smtp", "app@example.com", &two_rcpts, 1234,
	    "<abc@example.com>", "sent", "250 2.0.0 OK <abc@example.com>", 0.4213, 0, NULL },
	  "account=app method=smtp from=<app@example.com> "
	  "to=<a@example.com>,<b@example.org> size=1234 msgid=<abc@example.com> "
	  "result=sent reply=\"250 2.0.0 OK <abc@example.com>\" duration=0.42s exit=0" },
	{ "NULLs left out", { NULL, NULL, NULL, NULL, -1, NULL, "failed", NULL, 0, 78, NULL },
	  "result=failed duration=0.00s exit=78" },
	{ "null sender, no recipients", { "a", "graph", "", &no_rcpts, 0, NULL,
	    "deferred", "connection timed out", 61.5, 75, NULL },
	  "account=a method=graph from=<> to=\"\" size=0 result=deferred "
	  "reply=\"connection timed out\" duration=61.50s exit=75" },
	{ "quotes escaped", { "my \"acct\"", "smtp", NULL, NULL, -1, NULL, "failed",
	    "550 5.7.1 \"no\"", 1, 69, NULL },
	  "account=\"my \\\"acct\\\"\" method=smtp result=failed "
	  "reply=\"550 5.7.1 \\\"no\\\"\" duration=1.00s exit=69" },
	{ "control bytes escaped", { "a\nb", "smtp", NULL, NULL, -1,
	    "<x\r\ny@z>", "failed", "451 4.3.0 a\r\n\x1b[31mred\\", 2, 75, NULL },
	  "account=a\\x0ab method=smtp msgid=<x\\x0d\\x0ay@z> result=failed "
	  "reply=\"451 4.3.0 a\\x0d\\x0a\\x1b[31mred\\\\\" duration=2.00s exit=75" },
	{ "quoted local part", { NULL, NULL, "\"j d\"@x.org", &odd_rcpts, -1, NULL,
	    "sent", NULL, 0, 0, NULL },
	  "from=\"<\\\"j d\\\"@x.org>\" to=\"<\\\"x y\\\"@x.org>,<root>\" "
	  "result=sent duration=0.00s exit=0" },
	{ "no outcome", { NULL, NULL, NULL, NULL, -1, NULL, NULL, NULL, 0, 70, NULL },
	  "result=unknown duration=0.00s exit=70" },
	{ "graph request-id", { "r", "graph", "r@x.org", NULL, 10, NULL, "sent",
	    "202 Accepted", 0.5, 0, "3f2b8c1e-9a4d-4e7b-b0c5-6d1e2f3a4b5c" },
	  "account=r method=graph from=<r@x.org> size=10 result=sent reply=\"202 Accepted\" "
	  "request-id=3f2b8c1e-9a4d-4e7b-b0c5-6d1e2f3a4b5c duration=0.50s exit=0" },
};

static void
make_lists(void)
{
	size_t i;

	address_list_add_spec(&two_rcpts, "a@example.com");
	address_list_add_spec(&two_rcpts, "b@example.org");
	address_list_add_spec(&odd_rcpts, "\"x y\"@x.org");
	address_list_add_spec(&odd_rcpts, "root");
	for (i = 0; i < 1000; i++) {
		char spec[64];

		(void)str_format(spec, sizeof(spec), "user%zu@example.com", i);
		address_list_add_spec(&many_rcpts, spec);
	}
}

static void
test_format_table(void)
{
	char line[LOG_LINE_MAX];
	size_t i;

	for (i = 0; i < sizeof(format_cases) / sizeof(format_cases[0]); i++) {
		const struct format_case *c = &format_cases[i];

		tap_is_int(log_format_message(line, sizeof(line), &c->r), 0,
		    "%s: formatted", c->name);
		tap_is_str(line, c->want, "%s: line", c->name);
	}
}

static void
test_format_bounds(void)
{
	struct log_record r = { "app", "smtp", "app@example.com", &many_rcpts, 1,
	    "<id@x>", "failed", NULL, 0, 69, NULL };
	char line[LOG_LINE_MAX], reply[2000], big[20000], small[32];
	const char *p, *q;

	memset(reply, 'r', sizeof(reply) - 1);
	reply[sizeof(reply) - 1] = '\0';
	r.reply = reply;
	tap_is_int(log_format_message(line, sizeof(line), &r), 0, "bounded record fits");
	p = strstr(line, "to=<user0@example.com>,<user1@example.com>,");
	q = strstr(line, ",...+");
	tap_ok(p != NULL && q != NULL && strlen(line) < 2500,
	    "recipients cut short (%zu octets)", strlen(line));
	tap_ok(q != NULL && strtol(q + 5, NULL, 10) > 900 &&
	    strtol(q + 5, NULL, 10) < 1000, "count of the rest given");
	p = strstr(line, "reply=");
	q = p ? strchr(p, ' ') : NULL;
	tap_is_int(p && q ? q - p - 6 : -1, 300, "reply at most 300 octets");
	tap_ok(p && strncmp(q - 3, "...", 3) == 0, "cut reply ends in ...");
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	r.account = r.method = r.envelope_from = r.message_id = r.outcome = big;
	tap_is_int(log_format_message(line, sizeof(line), &r), 0,
	    "huge values still fit LOG_LINE_MAX");
	memset(big, '"', sizeof(big) - 1);
	tap_is_int(log_format_message(line, sizeof(line), &r), 0,
	    "huge quoted values still fit LOG_LINE_MAX");
	tap_is_int(log_format_message(small, sizeof(small), &r), -1, "small buffer: -1");
	tap_is_int((long)strlen(small) < (long)sizeof(small), 1, "small buffer terminated");
	tap_is_int(log_format_message(small, 0, &r), -1, "no buffer: -1");
}

static int
read_text(const char *path, char *out, size_t size)
{
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return -1;
	n = read(fd, out, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	out[n] = '\0';
	return 0;
}

/* Check the file line at *p: "DATE tokenmail[PID]: line\n". */
static void
check_file_line(const char **p, const regex_t *re, const char *line, const char *what)
{
	const char *sep = strstr(*p, "]: "), *nl = strchr(*p, '\n');
	char prefix[128];

	if (sep == NULL || nl == NULL || sep > nl ||
	    str_copy_n(prefix, sizeof(prefix), *p, (size_t)(sep + 3 - *p)) < 0) {
		tap_ok(0, "%s: a line", what);
		*p += strlen(*p);
		return;
	}
	tap_ok(regexec(re, prefix, 0, NULL, 0) == 0, "%s: prefix [%s]", what, prefix);
	tap_ok((size_t)(nl - sep - 3) == strlen(line) &&
	    memcmp(sep + 3, line, strlen(line)) == 0, "%s: the line", what);
	*p = nl + 1;
}

/* path holds two lines for line, and is mode 0600. */
static void
check_log_file(const char *path, const char *line, const char *what)
{
	char text[4 * LOG_LINE_MAX], pattern[256];
	const char *p = text;
	struct stat st;
	regex_t re;

	tap_ok(read_text(path, text, sizeof(text)) == 0, "%s: read back", what);
	tap_ok(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600, "%s: mode 0600",
	    what);
	(void)str_format(pattern, sizeof(pattern),
	    "^[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9][-+][0-9]{4} "
	    "tokenmail\\[%ld\\]: $", (long)getpid());
	if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
		exit(99);
	check_file_line(&p, &re, line, what);
	check_file_line(&p, &re, line, what);
	tap_is_str(p, "", "%s: two lines only", what);
	regfree(&re);
}

static void
test_files(void)
{
	const struct log_record *r = &format_cases[0].r;
	char *file = xasprintf("%s/mail.log", test_dir);
	char *extra = xasprintf("%s/extra.log", test_dir);
	char *link = xasprintf("%s/link.log", test_dir);
	char *missing = xasprintf("%s/no/such.log", test_dir);
	struct tm_err err;
	int rc;

	tm_err_clear(&err);
	rc = log_message(LOG_FILE, file, extra, r, &err);
	rc |= log_message(LOG_FILE, file, extra, r, &err);
	tap_ok(rc == 0, "logged twice to file and -X file %s", err.msg);
	check_log_file(file, format_cases[0].want, "log file");
	check_log_file(extra, format_cases[0].want, "-X file");
	unlink(extra);
	tap_ok(log_message(LOG_SYSLOG, NULL, extra, r, &err) == 0 &&
	    log_message(LOG_SYSLOG, NULL, extra, r, &err) == 0, "syslog and -X file");
	check_log_file(extra, format_cases[0].want, "-X file with syslog");
	tap_ok(log_message(LOG_FILE, missing, NULL, r, &err) == -1 &&
	    err.cls == TM_ERR_IO && strstr(err.msg, missing) &&
	    strstr(err.msg, "No such file"), "missing directory: %s", err.msg);
	tap_ok(symlink(file, link) == 0, "symlink made");
	tm_err_clear(&err);
	tap_ok(log_message(LOG_FILE, link, NULL, r, &err) == -1 &&
	    strstr(err.msg, "symbolic link"), "symlink refused: %s", err.msg);
	tm_err_clear(&err);
	tap_ok(log_message(LOG_FILE, file, missing, r, &err) == -1 &&
	    strstr(err.msg, missing), "-X failure reported: %s", err.msg);
	tm_err_clear(&err);
	tap_ok(log_message(LOG_FILE, link, missing, r, &err) == -1 &&
	    strstr(err.msg, link), "first failure kept: %s", err.msg);
	tap_ok(log_message(LOG_FILE, NULL, NULL, r, &err) == -1, "no file name: -1");
	unlink(file);
	unlink(extra);
	unlink(link);
	free(file);
	free(extra);
	free(link);
	free(missing);
}

/* LOG_STDERR: "tokenmail: LINE", captured through a file. */
static void
test_stderr(void)
{
	char *path = xasprintf("%s/stderr", test_dir);
	char text[LOG_LINE_MAX + 64], want[LOG_LINE_MAX + 64];
	struct tm_err err;
	int fd, saved, rc;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	saved = dup(2);
	if (fd < 0 || saved < 0 || dup2(fd, 2) < 0)
		exit(99);
	rc = log_message(LOG_STDERR, NULL, NULL, &format_cases[1].r, &err);
	dup2(saved, 2);
	close(saved);
	close(fd);
	tap_is_int(rc, 0, "stderr: logged");
	(void)str_format(want, sizeof(want), "tokenmail: %s\n", format_cases[1].want);
	tap_ok(read_text(path, text, sizeof(text)) == 0, "stderr: read back");
	tap_is_str(text, want, "stderr: line");
	unlink(path);
	free(path);
}

static void
test_syslog(void)
{
	struct log_record r = format_cases[0].r;
	struct tm_err err;

	tap_is_int(log_message(LOG_SYSLOG, NULL, NULL, &r, &err), 0, "syslog sent");
	r.outcome = "deferred";
	tap_is_int(log_message(LOG_SYSLOG, NULL, NULL, &r, &err), 0, "syslog deferred");
	r.outcome = "failed";
	tap_is_int(log_message(LOG_SYSLOG, NULL, NULL, &r, &err), 0, "syslog failed");
}

int
main(void)
{
	if (mkdtemp(test_dir) == NULL) {
		perror("mkdtemp");
		return 99;
	}
	umask(0);
	make_lists();
	test_format_table();
	test_format_bounds();
	test_files();
	test_stderr();
	test_syslog();
	address_list_free(&two_rcpts);
	address_list_free(&many_rcpts);
	address_list_free(&odd_rcpts);
	rmdir(test_dir);
	return tap_done();
}
