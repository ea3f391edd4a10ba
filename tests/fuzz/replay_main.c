/*
 * replay_main.c: main() of tests/fuzz/replay_TARGET, the make check side of
 * the fuzzers. Built with the project's compiler and flags (so the -Werror
 * and the sanitizer builds both run it) and linked with one harness and
 * libtokenmail.a, it feeds LLVMFuzzerTestOneInput() every file of
 * tests/fuzz/corpus/TARGET and tests/fuzz/regressions/TARGET under
 * $TM_SRCDIR (TARGET from the program's name), or the files and
 * directories named on the command line, and prints TAP: one line per
 * input. A crash or a broken invariant aborts the program: the test fails.
 *
 *   tests/fuzz/replay_address crash-1234	replay one libFuzzer artifact
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "util.h"

/* Far beyond any seed or regression (libFuzzer's inputs stay below 64 KiB). */
#define REPLAY_INPUT_MAX	(4 * 1024 * 1024)

struct replay {
	int n;		/* inputs replayed */
	int failed;	/* inputs that could not be read */
};

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* path without the source tree's ".../tests/fuzz/", for the TAP line. */
static const char *
shown(const char *path)
{
	const char *p = strstr(path, "tests/fuzz/");

	return p != NULL ? p + strlen("tests/fuzz/") : path;
}

static void
replay_file(struct replay *r, const char *path)
{
	char *buf = xmalloc(REPLAY_INPUT_MAX + 1);
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = fd < 0 ? -1 : read_fd_bounded(fd, buf, REPLAY_INPUT_MAX + 1, &len);

	if (fd >= 0)
		close(fd);
	r->n++;
	if (rc != 0 || len > REPLAY_INPUT_MAX) {
		printf("not ok %d - %s: cannot read it (or over %d octets)\n", r->n, shown(path),
		    REPLAY_INPUT_MAX);
		r->failed++;
	} else {
		/* An exact-size copy, so ASan sees a read past its end. */
		uint8_t *data = xmalloc(len > 0 ? len : 1);

		memcpy(data, buf, len);
		(void)LLVMFuzzerTestOneInput(data, len);
		free(data);
		printf("ok %d - %s (%zu octets)\n", r->n, shown(path), len);
	}
	fflush(stdout);
	free(buf);
}

/* Every file of dir not starting with '.', in name order; false if dir is
   not a directory. */
static bool
replay_dir(struct replay *r, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, i;

	if (d == NULL)
		return false;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		names = xreallocarray(names, n + 1, sizeof(*names));
		names[n++] = xasprintf("%s/%s", dir, e->d_name);
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), name_cmp);
	for (i = 0; i < n; i++) {
		replay_file(r, names[i]);
		free(names[i]);
	}
	free(names);
	return true;
}

static void
replay_path(struct replay *r, const char *path)
{
	struct stat st;

	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		(void)replay_dir(r, path);
	else
		replay_file(r, path);
}

/* TARGET from argv[0]: ".../replay_TARGET". */
static const char *
target_name(const char *argv0)
{
	const char *base = strrchr(argv0, '/');

	base = base != NULL ? base + 1 : argv0;
	return strncmp(base, "replay_", 7) == 0 ? base + 7 : base;
}

int
main(int argc, char **argv)
{
	struct replay r = { 0, 0 };
	const char *src = getenv("TM_SRCDIR");
	const char *target = target_name(argv[0]);
	char *dir;
	int i;

	if (argc > 1) {
		for (i = 1; i < argc; i++)
			replay_path(&r, argv[i]);
	} else {
		dir = xasprintf("%s/tests/fuzz/corpus/%s", src != NULL ? src : ".", target);
		if (!replay_dir(&r, dir)) {
			printf("not ok %d - %s: no seed corpus\n", ++r.n, dir);
			r.failed++;
		}
		free(dir);
		/* Targets without a finding have no regressions directory. */
		dir = xasprintf("%s/tests/fuzz/regressions/%s", src != NULL ? src : ".", target);
		(void)replay_dir(&r, dir);
		free(dir);
	}
	printf("1..%d\n", r.n);
	return r.failed > 0 || r.n == 0 ? 1 : 0;
}
