/*
 * secret.c: reading an account's client secret, refresh token file or
 * federated assertion file, and running client_secret_command. Every
 * buffer that held a secret is wiped before it is freed; nothing here
 * logs a secret, a command's output or a command's text (it may embed a
 * secret, so errors name only its exit status).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "secret.h"
#include "tm_limits.h"
#include "util.h"

/* The only PATH a command sees: no directory the caller controls. */
#define COMMAND_PATH		"PATH=/usr/bin:/bin"
/* How often a finished command's exit is polled for, in milliseconds. */
#define WAIT_POLL_MS		10

/* What reading a command's stdout ended with. */
enum read_end { READ_EOF, READ_TIMEOUT, READ_TOO_LONG, READ_FAILED };

/* ---- buffers ---- */

void
secret_buf_init(struct strbuf *b, size_t limit)
{
	strbuf_init(b, limit);
	b->data = xmalloc(limit + 1);
	b->cap = limit + 1;
	b->data[0] = '\0';
}

void
secret_buf_free(struct strbuf *b)
{
	if (b->data)
		secret_wipe(b->data, b->cap);
	strbuf_free(b);
}

/*
 * buf[len] (len < cap) as a heap string with trailing white space dropped;
 * NULL (with why) when it holds a NUL byte or nothing else.
 */
static char *
finish_secret(char *buf, size_t len, const char **why)
{
	while (len > 0 && isspace((unsigned char)buf[len - 1]))
		len--;
	buf[len] = '\0';
	if (len == 0) {
		*why = "is empty";
		return NULL;
	}
	if (memchr(buf, '\0', len) != NULL) {
		*why = "holds a NUL byte";
		return NULL;
	}
	return xstrndup(buf, len);
}

/* ---- files ---- */

/* The private-file rule of config_check_secret_files: NULL when st is fine. */
static const char *
private_problem(const struct stat *st, const struct config_params *p, char *why, size_t size)
{
	uid_t uid = p ? p->uid : geteuid();
	mode_t perm = st->st_mode & 07777;

	if (st->st_uid != uid && st->st_uid != 0)
		(void)str_format(why, size, "is owned by uid %lu, not by uid %lu or root",
		    (unsigned long)st->st_uid, (unsigned long)uid);
	else if ((perm & 077) == 0)
		return NULL;
	else if (p && p->group_readable_ok && st->st_uid == 0 && st->st_gid == p->group &&
	    (perm & 027) == 0)
		return NULL;
	else
		(void)str_format(why, size, "is mode %04o: group or others have access to it",
		    (unsigned)perm);
	return why;
}

static int
check_opened_file(int fd, const char *path, const char *what, bool check_mode,
    const struct config_params *p, struct tm_err *err)
{
	struct stat st;
	char why[160];

	if (fstat(fd, &st) < 0)
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "cannot check %s %s: %s", what,
		    path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "%s %s is not a regular file",
		    what, path);
	if (!check_mode || private_problem(&st, p, why, sizeof(why)) == NULL)
		return 0;
	tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "%s %s %s; it holds a secret", what, path,
	    why);
	if (p && st.st_uid != p->uid && st.st_uid != 0)
		tm_err_hint(err, "chown %lu %s && chmod 600 %s", (unsigned long)p->uid, path, path);
	else
		tm_err_hint(err, "chmod 600 %s", path);
	return -1;
}

int
secret_read_file(const char *path, const char *what, bool check_mode,
    const struct config_params *p, char **out, struct tm_err *err)
{
	char *buf = xmalloc(TM_SECRET_MAX + 1);
	const char *why = NULL;
	char toolong[64];
	size_t len = 0;
	int fd, rc = -1;

	tm_err_clear(err);
	*out = NULL;
	/* O_NONBLOCK: a FIFO put in the file's place must not hang us before
	   the regular-file check refuses it. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "cannot open %s %s: %s", what, path,
		    strerror(errno));
		/* The usual cause: a web server or cron user runs sendmail. */
		if (errno == EACCES)
			tm_err_hint(err, "tokenmail runs as uid %lu here; give that user its own "
			    "configuration, or install tokenmail setgid (tokenmail(8), SETGID MODE)",
			    (unsigned long)getuid());
		goto out;
	}
	if (check_opened_file(fd, path, what, check_mode, p, err) < 0)
		goto out;
	if (read_fd_bounded(fd, buf, TM_SECRET_MAX + 1, &len) < 0) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "cannot read %s %s: %s", what, path,
		    strerror(errno));
		goto out;
	}
	if (len > TM_SECRET_MAX) {
		(void)str_format(toolong, sizeof(toolong), "is larger than %d octets",
		    TM_SECRET_MAX);
		why = toolong;
	} else
		*out = finish_secret(buf, len, &why);
	if (*out == NULL) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "%s %s %s", what, path, why);
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	secret_wipe(buf, TM_SECRET_MAX + 1);
	free(buf);
	return rc;
}

/* ---- commands ---- */

/* How running a command ended, short of its exit status. */
enum run_end { RUN_OK, RUN_TIMEOUT, RUN_TOO_LONG, RUN_FAILED };

static long
now_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/*
 * In the child: stdout to out_fd, stdin from /dev/null, stderr kept,
 * everything else closed, then /bin/sh -c command with envp. Only
 * async-signal-safe calls between fork and exec.
 */
static void __attribute__((noreturn))
child_exec(const char *command, int out_fd, char *const envp[])
{
	char *const argv[] = { (char *)"sh", (char *)"-c", (char *)command, NULL };
	sigset_t none;
	int null_fd;

	(void)setpgid(0, 0);
	(void)signal(SIGPIPE, SIG_DFL);
	(void)sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	if (out_fd == STDOUT_FILENO)
		(void)fcntl(out_fd, F_SETFD, 0);	/* the pipe is O_CLOEXEC */
	else if (dup2(out_fd, STDOUT_FILENO) < 0)
		_exit(127);
	null_fd = open("/dev/null", O_RDONLY);
	if (null_fd < 0 || (null_fd != STDIN_FILENO && dup2(null_fd, STDIN_FILENO) < 0))
		_exit(127);
	closefrom(STDERR_FILENO + 1);
	execve("/bin/sh", argv, envp);
	_exit(127);
}

/* Read the command's stdout into buf[cap] until EOF or the deadline. */
static enum run_end
read_output(int fd, long deadline, char *buf, size_t cap, size_t *len)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ssize_t n;
	long left;
	int r;

	*len = 0;
	for (;;) {
		left = deadline - now_ms();
		if (left <= 0)
			return RUN_TIMEOUT;
		r = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return RUN_FAILED;
		if (r == 0)
			continue;
		if (*len == cap)
			return RUN_TOO_LONG;
		n = read(fd, buf + *len, cap - *len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return n == 0 ? RUN_OK : RUN_FAILED;
		*len += (size_t)n;
	}
}

/* Reap the command once it exits, polling until the deadline. */
static enum run_end
wait_child(pid_t pid, long deadline, int *status)
{
	const struct timespec pause = { 0, WAIT_POLL_MS * 1000000L };
	pid_t r;

	for (;;) {
		r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return RUN_OK;
		if (r < 0 && errno != EINTR)
			return RUN_FAILED;
		if (now_ms() >= deadline)
			return RUN_TIMEOUT;
		(void)nanosleep(&pause, NULL);
	}
}

/* Kill the command and whatever it started, and reap it. */
static void
kill_command(pid_t pid)
{
	(void)kill(-pid, SIGKILL);
	(void)kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

static int
run_failed(enum run_end end, long timeout_seconds, int saved_errno, struct tm_err *err)
{
	if (end == RUN_TIMEOUT) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
		    "client_secret_command timed out after %ld s", timeout_seconds);
		tm_err_hint(err, "it must print the secret and exit within %ld seconds; run it "
		    "by hand to see what it waits for", timeout_seconds);
		return -1;
	}
	if (end == RUN_TOO_LONG)
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
		    "client_secret_command printed more than %d octets", TM_SECRET_MAX);
	return tm_err_set(err, TM_ERR_INTERNAL, EX_OSERR,
	    "cannot run client_secret_command: %s", strerror(saved_errno));
}

/* Judge a finished command by its exit status, then its output. */
static int
command_result(int status, char *buf, size_t len, char **out, struct tm_err *err)
{
	const char *why = NULL;

	if (WIFSIGNALED(status))
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
		    "client_secret_command was killed by signal %d", WTERMSIG(status));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
		    "client_secret_command exited with status %d", WEXITSTATUS(status));
		tm_err_hint(err, "run it by hand to see why (its output is never shown: it "
		    "may hold the secret); it runs with PATH=/usr/bin:/bin");
		return -1;
	}
	if (len > TM_SECRET_MAX)
		return run_failed(RUN_TOO_LONG, 0, 0, err);
	*out = finish_secret(buf, len, &why);
	if (*out == NULL)
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "client_secret_command output %s",
		    why);
	return 0;
}

/* Start command with its stdout on a new pipe; *fd is the read end. */
static pid_t
start_command(const char *command, char *const envp[], int *fd, struct tm_err *err)
{
	int fds[2];
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC) < 0) {
		tm_err_set(err, TM_ERR_INTERNAL, EX_OSERR, "cannot run client_secret_command: "
		    "pipe: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid == 0)
		child_exec(command, fds[1], envp);
	if (pid < 0) {
		tm_err_set(err, TM_ERR_INTERNAL, EX_OSERR, "cannot run client_secret_command: "
		    "fork: %s", strerror(errno));
		close(fds[0]);
		fds[0] = -1;
	} else {
		/* Also here, so a kill right after fork finds the group. */
		(void)setpgid(pid, pid);
	}
	close(fds[1]);
	*fd = fds[0];
	return pid;
}

int
secret_run_command(const char *command, const char *home, long timeout_seconds,
    char **out, struct tm_err *err)
{
	char *buf = xmalloc(TM_SECRET_MAX + 1), *home_env = NULL;
	char *envp[3] = { (char *)COMMAND_PATH, NULL, NULL };
	enum run_end end;
	int fd = -1, status = 0, rc = -1, saved_errno;
	size_t len = 0;
	long deadline;
	pid_t pid;

	tm_err_clear(err);
	*out = NULL;
	if (home != NULL)
		envp[1] = home_env = xasprintf("HOME=%s", home);
	pid = start_command(command, envp, &fd, err);
	if (pid < 0)
		goto out;
	deadline = now_ms() + timeout_seconds * 1000L;
	end = read_output(fd, deadline, buf, TM_SECRET_MAX + 1, &len);
	if (end == RUN_OK)
		end = wait_child(pid, deadline, &status);
	if (end != RUN_OK) {
		saved_errno = errno;
		kill_command(pid);
		rc = run_failed(end, timeout_seconds, saved_errno, err);
		goto out;
	}
	rc = command_result(status, buf, len, out, err);
out:
	if (fd >= 0)
		close(fd);
	secret_wipe(buf, TM_SECRET_MAX + 1);
	free(buf);
	free(home_env);
	return rc;
}

/*
 * In setgid mode the command runs with the group's privilege, so its
 * program must be one only root can change (SPEC 9): an absolute path,
 * owned by root, writable by no one else.
 */
static int
check_command_program(const char *command, struct tm_err *err)
{
	char prog[TM_PATH_MAX];
	struct stat st;

	if (command[0] != '/' ||
	    str_copy_n(prog, sizeof(prog), command, strcspn(command, " \t\n")) < 0)
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "client_secret_command must "
		    "start with the absolute path of its program when tokenmail runs setgid");
	if (stat(prog, &st) < 0)
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
		    "cannot check client_secret_command's program %s: %s", prog, strerror(errno));
	if (st.st_uid == 0 && (st.st_mode & 022) == 0)
		return 0;
	tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "client_secret_command's program %s must be "
	    "owned by root and writable by no one else when tokenmail runs setgid", prog);
	tm_err_hint(err, "chown root %s && chmod go-w %s", prog, prog);
	return -1;
}

static int
command_secret(const struct account *a, const struct config_params *p, char **out,
    struct tm_err *err)
{
	if (p && p->group_readable_ok && check_command_program(a->client_secret_command, err) < 0)
		return -1;
	log_trace("token: running client_secret_command for account %s", a->name);
	return secret_run_command(a->client_secret_command, p ? p->home : NULL,
	    SECRET_COMMAND_SECONDS, out, err);
}

int
secret_client_secret(const struct account *a, const struct config_params *p,
    char **out, struct tm_err *err)
{
	int rc;

	tm_err_clear(err);
	*out = NULL;
	if (a->client_secret && a->client_secret[0]) {
		*out = xstrdup(a->client_secret);
		return 0;
	}
	if (a->client_secret_file)
		rc = secret_read_file(a->client_secret_file, "client_secret_file", true, p, out,
		    err);
	else if (a->client_secret_command)
		rc = command_secret(a, p, out, err);
	else
		rc = tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "no client secret is configured");
	if (rc < 0)
		tm_err_prefix(err, "account %s", a->name);
	return rc;
}
