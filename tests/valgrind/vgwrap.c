/*
 * vgwrap: stands in for the tokenmail binary during `make valgrind` and
 * runs the real one under valgrind's memcheck.
 *
 * The integration tests run $TOKENMAIL with an environment of their own
 * (often only PATH, LANG and HOME), so nothing comes from the environment:
 * the real binary (VG_REAL), the log directory (VG_LOGDIR), valgrind
 * (VG_VALGRIND) and an optional suppressions file (VG_SUPP) are fixed when
 * the Makefile compiles this file. The environment, the arguments, the
 * descriptors and the exit code pass through untouched.
 *
 * tokenmail's behaviour depends on the name it is run by (sendmail,
 * tokenmail, mailq, newaliases), and valgrind gives its client the path it
 * was asked to run as argv[0]. So the wrapper makes VG_LOGDIR/bin/NAME, a
 * symbolic link to VG_REAL named like basename(argv[0]), and has valgrind
 * run that. Each process logs to VG_LOGDIR/vg.PID.TIME.log: pids are
 * reused during a long run, the time keeps the names apart.
 *
 * Built without VG_REAL, it runs `vgwrap PROGRAM [ARG...]` under valgrind
 * with the same options instead (the unit tests' LOG_COMPILER).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef VG_LOGDIR
#error "build with -DVG_LOGDIR=\"/abs/path/of/the/log/directory\""
#endif
#ifndef VG_VALGRIND
#define VG_VALGRIND "/usr/bin/valgrind"
#endif
#ifndef VG_SUPP
#define VG_SUPP ""
#endif

#define EXIT_FAIL 71	/* EX_OSERR: the wrapper itself failed */
#define NAME_MAX_LEN 200
#define PATH_CAP 4096
#define FIXED_ARGS 16

static void __attribute__((noreturn))
fail(const char *what, const char *detail)
{
	fprintf(stderr, "vgwrap: %s: %s\n", what, detail);
	exit(EXIT_FAIL);
}

#ifdef VG_REAL
/* The name to run tokenmail by: basename(argv[0]), or "sendmail" where that
 * cannot name a file (tokenmail treats every name other than tokenmail,
 * mailq and newaliases alike, so nothing is lost). */
static const char *
run_name(int argc, char **argv)
{
	const char *name, *slash;

	if (argc < 1 || argv[0] == NULL)
		return "sendmail";
	slash = strrchr(argv[0], '/');
	name = slash ? slash + 1 : argv[0];
	if (name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
	    strlen(name) > NAME_MAX_LEN)
		return "sendmail";
	return name;
}

/* VG_LOGDIR/bin/NAME -> VG_REAL; several wrappers may race to make it. */
static void
make_link(const char *link)
{
	char target[PATH_CAP];
	ssize_t n;

	if (symlink(VG_REAL, link) == 0 || errno != EEXIST)
		return;
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		fail(link, strerror(errno));
	target[n] = '\0';
	if (strcmp(target, VG_REAL) != 0)
		fail(link, "exists and does not point to " VG_REAL);
}
#endif

/* Copy src into dst[cap], doubling '%' (valgrind expands %p and the like in
 * --log-file). 0, or -1 if it does not fit. */
static int
copy_escaped(char *dst, size_t cap, const char *src)
{
	size_t j = 0;

	for (; *src; src++) {
		if (j + 2 >= cap)
			return -1;
		if (*src == '%')
			dst[j++] = '%';
		dst[j++] = *src;
	}
	dst[j] = '\0';
	return 0;
}

int
main(int argc, char **argv)
{
	static const char *const fixed[] = {
		/* Not --quiet: the header and the closing ERROR SUMMARY show
		 * that the process ran to its end under memcheck. */
		"--leak-check=full",
		"--show-leak-kinds=definite,indirect",
		"--errors-for-leak-kinds=definite,indirect",
		"--track-fds=no",
		/* Only tokenmail itself: the children it forks (sh -c for
		 * client_secret_command, the setgid token broker) stay silent. */
		"--child-silent-after-fork=yes",
		"--num-callers=30",
		/* No vgdb FIFOs in /tmp (a killed process would leave them). */
		"--vgdb=no",
	};
	char link[PATH_CAP], logdir[PATH_CAP], logopt[PATH_CAP + 64];
	char suppopt[PATH_CAP + 32];
	char *args[FIXED_ARGS];
	char **vargv;
	struct timespec now;
	size_t i, n = 0, nfixed = sizeof(fixed) / sizeof(fixed[0]);
	int len, first;

	_Static_assert(sizeof(fixed) / sizeof(fixed[0]) + 4 <= FIXED_ARGS, "args[] too small");

#ifdef VG_REAL
	len = snprintf(link, sizeof(link), "%s/bin/%s", VG_LOGDIR, run_name(argc, argv));
	if (len < 0 || (size_t)len >= sizeof(link))
		fail("link path", "too long");
	make_link(link);
	first = 1;
#else
	if (argc < 2)
		fail("usage", "vgwrap PROGRAM [ARG...]");
	len = snprintf(link, sizeof(link), "%s", argv[1]);
	if (len < 0 || (size_t)len >= sizeof(link))
		fail("program path", "too long");
	first = 2;
#endif

	if (copy_escaped(logdir, sizeof(logdir), VG_LOGDIR) < 0)
		fail("log directory", "too long");
	(void)clock_gettime(CLOCK_REALTIME, &now);
	len = snprintf(logopt, sizeof(logopt), "--log-file=%s/vg.%%p.%lld%09ld.log",
	    logdir, (long long)now.tv_sec, (long)now.tv_nsec);
	if (len < 0 || (size_t)len >= sizeof(logopt))
		fail("log file", "too long");

	args[n++] = (char *)VG_VALGRIND;
	for (i = 0; i < nfixed; i++)
		args[n++] = (char *)fixed[i];
	args[n++] = logopt;
	if (VG_SUPP[0] != '\0') {
		len = snprintf(suppopt, sizeof(suppopt), "--suppressions=%s", VG_SUPP);
		if (len < 0 || (size_t)len >= sizeof(suppopt))
			fail("suppressions", "path too long");
		args[n++] = suppopt;
	}
	args[n++] = link;

	/* valgrind and its options, the program, its arguments, NULL. */
	vargv = calloc(n + (size_t)(argc > first ? argc - first : 0) + 1, sizeof(*vargv));
	if (vargv == NULL)
		fail("calloc", strerror(errno));
	for (i = 0; i < n; i++)
		vargv[i] = args[i];
	for (len = first; len < argc; len++)
		vargv[i++] = argv[len];
	vargv[i] = NULL;
	execv(VG_VALGRIND, vargv);
	fail(VG_VALGRIND, strerror(errno));
}
