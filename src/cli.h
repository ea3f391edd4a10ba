/*
 * cli.h: the command line. Turns argv into a struct invocation following
 * sendmail's conventions (SPEC section 1): the program's name selects the
 * mode (sendmail, mailq, newaliases), options may carry their argument
 * attached (-fADDR, -oi, -B8BITMIME) or separate (-f ADDR), options end at
 * "--" or at the first argument that is not an option, unknown options are
 * warned about and ignored. When called as tokenmail with a subcommand word
 * first (authorize, check, token), that word selects the mode.
 */
#ifndef TM_CLI_H
#define TM_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

enum tm_mode {
	MODE_SEND,		/* -bm, the default */
	MODE_MAILQ,		/* mailq, -bp */
	MODE_QUEUE_RUN,		/* -q: there is no queue to run */
	MODE_NEWALIASES,	/* newaliases, -bi, -I */
	MODE_VERIFY,		/* -bv ADDR... */
	MODE_SMTP_SERVER,	/* -bs */
	MODE_VERSION,		/* --version */
	MODE_HELP,		/* --help */
	MODE_AUTHORIZE,		/* tokenmail authorize ACCOUNT [--browser] */
	MODE_CHECK,		/* tokenmail check [ACCOUNT] */
	MODE_TOKEN		/* tokenmail token ACCOUNT */
};

struct invocation {
	enum tm_mode mode;
	const char *progname;		/* basename of argv[0] */
	bool read_recipients;		/* -t */
	bool ignore_dots;		/* -i, -oi: a lone dot does not end the message */
	bool verbose;			/* -v */
	bool dry_run;			/* --dry-run */
	bool browser;			/* authorize --browser */
	const char *sender;		/* -f / -r argument, as given */
	const char *full_name;		/* -F */
	const char *config_path;	/* -C */
	const char *log_file;		/* -X */
	const char *dsn_notify;		/* -N */
	const char *dsn_ret;		/* -R */
	const char *dsn_envid;		/* -V */
	const char *body_type;		/* -B */
	const char *account;		/* subcommand's ACCOUNT */
	char **args;			/* recipients (or -bv addresses), into argv */
	size_t nargs;
};

/*
 * Parse argv into inv. Strings point into argv. Warnings for ignored
 * options go to stderr through log_warn. Returns 0, or -1 with err
 * (EX_USAGE): an option missing its argument, a malformed -N/-R, a
 * subcommand missing its ACCOUNT, an unsupported mode such as -bd.
 */
int cli_parse(int argc, char **argv, struct invocation *inv, struct tm_err *err);

/* The --help text. */
const char *cli_usage(void);

#endif
