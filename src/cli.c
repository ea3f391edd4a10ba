/*
 * cli.c: argv -> struct invocation. One table of sendmail's option letters,
 * one small handler per letter that means something to tokenmail.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "log.h"
#include "util.h"

enum opt_arg { OPT_FLAG, OPT_ARG, OPT_ARG_ATTACHED };

struct option_def {
	char letter;
	enum opt_arg arg;	/* OPT_ARG_ATTACHED: only text glued to the letter */
	int (*handle)(struct invocation *inv, const char *arg, struct tm_err *err);
};

static int
opt_ignore(struct invocation *inv, const char *arg, struct tm_err *err)
{
	(void)inv;
	(void)arg;
	(void)err;
	return 0;
}

static int
opt_t(struct invocation *inv, const char *arg, struct tm_err *err)
{
	(void)arg;
	(void)err;
	inv->read_recipients = true;
	return 0;
}

static int
opt_i(struct invocation *inv, const char *arg, struct tm_err *err)
{
	(void)arg;
	(void)err;
	inv->ignore_dots = true;
	return 0;
}

static int
opt_v(struct invocation *inv, const char *arg, struct tm_err *err)
{
	(void)arg;
	(void)err;
	inv->verbose = true;
	return 0;
}

static int
opt_f(struct invocation *inv, const char *arg, struct tm_err *err)
{
	(void)err;
	inv->sender = arg;
	return 0;
}

static int
opt_F(struct invocation *inv, const char *arg, struct tm_err *err)
{
	(void)err;
	inv->full_name = arg;
	return 0;
}

static int
opt_C(struct invocation *inv, const char *arg, struct tm_err *err)
{
	(void)err;
	inv->config_path = arg;
	return 0;
}

static int
opt_X(struct invocation *inv, const char *arg, struct tm_err *err)
{
	(void)err;
	inv->log_file = arg;
	return 0;
}

static int
opt_B(struct invocation *inv, const char *arg, struct tm_err *err)
{
	if (!str_eq_nocase(arg, "7BIT") && !str_eq_nocase(arg, "8BITMIME"))
		log_warn("ignoring unknown body type -B %s", arg);
	(void)err;
	inv->body_type = arg;
	return 0;
}

static bool
dsn_word_known(const char *word, size_t n, bool *never)
{
	static const char *const words[] = { "success", "failure", "delay", NULL };
	size_t i;

	if (n == 5 && strncasecmp(word, "never", 5) == 0) {
		*never = true;
		return true;
	}
	for (i = 0; words[i]; i++)
		if (n == strlen(words[i]) && strncasecmp(word, words[i], n) == 0)
			return true;
	return false;
}

static bool
dsn_notify_valid(const char *arg)
{
	const char *p = arg;
	bool never = false;
	size_t words = 0;

	for (;;) {
		size_t n = strcspn(p, ",");

		if (!dsn_word_known(p, n, &never))
			return false;
		words++;
		if (p[n] == '\0')
			break;
		p += n + 1;
	}
	/* RFC 3461 4.1: NEVER stands alone. */
	return !never || words == 1;
}

static int
opt_N(struct invocation *inv, const char *arg, struct tm_err *err)
{
	if (!dsn_notify_valid(arg))
		return tm_err_set(err, TM_ERR_USAGE, EX_USAGE,
		    "-N %s: expected \"never\" or a comma list of success, failure, delay", arg);
	inv->dsn_notify = arg;
	return 0;
}

static int
opt_R(struct invocation *inv, const char *arg, struct tm_err *err)
{
	if (!str_eq_nocase(arg, "full") && !str_eq_nocase(arg, "hdrs"))
		return tm_err_set(err, TM_ERR_USAGE, EX_USAGE,
		    "-R %s: expected \"full\" or \"hdrs\"", arg);
	inv->dsn_ret = arg;
	return 0;
}

static int
opt_V(struct invocation *inv, const char *arg, struct tm_err *err)
{
	(void)err;
	inv->dsn_envid = arg;
	return 0;
}

static bool
ignore_dots_value(const char *value)
{
	return *value == '\0' || str_eq_nocase(value, "true") || str_eq_nocase(value, "=true");
}

/*
 * -o takes sendmail's old one-letter options. Only -oi means anything here
 * (-oitrue and -oi=true too, as Exim spells it); error and delivery modes
 * (-oe*, -od*) do not apply: errors always go to the exit code and stderr,
 * and delivery is always immediate.
 */
static int
opt_o(struct invocation *inv, const char *arg, struct tm_err *err)
{
	(void)err;
	if (arg[0] == 'i' && ignore_dots_value(arg + 1)) {
		inv->ignore_dots = true;
		return 0;
	}
	if ((arg[0] == 'e' || arg[0] == 'd' || arg[0] == 'm') && arg[1] != '=')
		return 0;
	log_warn("ignoring option -o%s", arg);
	return 0;
}

/* -O IgnoreDots=true is the long form of -oi. */
static int
opt_O(struct invocation *inv, const char *arg, struct tm_err *err)
{
	(void)err;
	if (str_starts_nocase(arg, "IgnoreDots") && ignore_dots_value(arg + strlen("IgnoreDots")))
		inv->ignore_dots = true;
	return 0;
}

static int
opt_b(struct invocation *inv, const char *arg, struct tm_err *err)
{
	static const struct { const char *name; enum tm_mode mode; } modes[] = {
		{ "m", MODE_SEND }, { "p", MODE_MAILQ }, { "i", MODE_NEWALIASES },
		{ "v", MODE_VERIFY }, { "s", MODE_SMTP_SERVER },
	};
	size_t i;

	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (strcmp(arg, modes[i].name) == 0) {
			inv->mode = modes[i].mode;
			return 0;
		}
	}
	tm_err_set(err, TM_ERR_USAGE, EX_USAGE, "-b%s: unsupported mode", arg);
	tm_err_hint(err, "tokenmail has no daemon and no queue; it supports -bm, -bp, -bi, -bv and -bs");
	return -1;
}

static int
opt_I(struct invocation *inv, const char *arg, struct tm_err *err)
{
	(void)arg;
	(void)err;
	inv->mode = MODE_NEWALIASES;
	return 0;
}

static int
opt_q(struct invocation *inv, const char *arg, struct tm_err *err)
{
	(void)arg;
	(void)err;
	inv->mode = MODE_QUEUE_RUN;
	return 0;
}

static const struct option_def options[] = {
	{ 't', OPT_FLAG, opt_t },
	{ 'i', OPT_FLAG, opt_i },
	{ 'v', OPT_FLAG, opt_v },
	{ 'f', OPT_ARG, opt_f },
	{ 'r', OPT_ARG, opt_f },
	{ 'F', OPT_ARG, opt_F },
	{ 'C', OPT_ARG, opt_C },
	{ 'X', OPT_ARG, opt_X },
	{ 'B', OPT_ARG, opt_B },
	{ 'N', OPT_ARG, opt_N },
	{ 'R', OPT_ARG, opt_R },
	{ 'V', OPT_ARG, opt_V },
	{ 'o', OPT_ARG, opt_o },
	{ 'b', OPT_ARG, opt_b },
	{ 'h', OPT_ARG, opt_ignore },
	{ 'L', OPT_ARG, opt_ignore },
	{ 'O', OPT_ARG, opt_O },
	{ 'p', OPT_ARG, opt_ignore },
	{ 'A', OPT_ARG, opt_ignore },
	{ 'q', OPT_ARG_ATTACHED, opt_q },
	{ 'd', OPT_ARG_ATTACHED, opt_ignore },
	{ 'I', OPT_FLAG, opt_I },
	{ 'U', OPT_FLAG, opt_ignore },
	{ 'G', OPT_FLAG, opt_ignore },
	{ 'm', OPT_FLAG, opt_ignore },
	{ 'n', OPT_FLAG, opt_ignore },
	{ 'x', OPT_FLAG, opt_ignore },
	{ 'e', OPT_ARG_ATTACHED, opt_ignore },
};

static const struct option_def *
option_find(char letter)
{
	size_t i;

	for (i = 0; i < sizeof(options) / sizeof(options[0]); i++)
		if (options[i].letter == letter)
			return &options[i];
	return NULL;
}

static int
parse_long_option(struct invocation *inv, const char *word)
{
	if (strcmp(word, "--dry-run") == 0)
		inv->dry_run = true;
	else if (strcmp(word, "--version") == 0)
		inv->mode = MODE_VERSION;
	else if (strcmp(word, "--help") == 0)
		inv->mode = MODE_HELP;
	else
		log_warn("ignoring unknown option %s", word);
	return 0;
}

/*
 * Handle one argv word of single-letter options ("-ti", "-fADDR", "-f").
 * *index advances past a separate argument when one is used.
 */
static int
parse_letters(struct invocation *inv, int argc, char **argv, int *index,
    struct tm_err *err)
{
	const char *p = argv[*index] + 1;

	while (*p) {
		const struct option_def *def = option_find(*p);
		const char *arg = "";

		if (def == NULL) {
			/* Unknown: whether the rest of the word is its argument
			   cannot be told, so none of it is taken as options. */
			log_warn("ignoring unknown option -%s", p);
			return 0;
		}
		if (def->arg == OPT_FLAG) {
			if (def->handle(inv, "", err) < 0)
				return -1;
			p++;
			continue;
		}
		if (p[1] != '\0' || def->arg == OPT_ARG_ATTACHED)
			arg = p + 1;
		else if (*index + 1 < argc)
			arg = argv[++*index];
		else
			return tm_err_set(err, TM_ERR_USAGE, EX_USAGE,
			    "option -%c needs an argument", *p);
		return def->handle(inv, arg, err);
	}
	return 0;
}

static const char *
base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

/* One subcommand argument (before or after the word); -1 on anything else. */
static int
subcommand_argument(int argc, char **argv, int *i, struct invocation *inv)
{
	const char *a = argv[*i];

	if (strcmp(a, "-C") == 0 && *i + 1 < argc)
		inv->config_path = argv[++*i];
	else if (strcmp(a, "-v") == 0)
		inv->verbose = true;
	else if (strcmp(a, "--browser") == 0 && inv->mode == MODE_AUTHORIZE)
		inv->browser = true;
	else if (a[0] != '-' && inv->account == NULL && inv->mode != MODE_SEND)
		inv->account = a;
	else
		return -1;
	return 0;
}

static enum tm_mode
subcommand_mode(const char *word)
{
	if (strcmp(word, "authorize") == 0)
		return MODE_AUTHORIZE;
	if (strcmp(word, "check") == 0)
		return MODE_CHECK;
	return MODE_TOKEN;
}

/* "tokenmail [-C FILE] [-v] WORD [ACCOUNT] [-C FILE] [-v] [--browser]". */
static int
parse_subcommand(int argc, char **argv, int word, struct invocation *inv,
    struct tm_err *err)
{
	int i;

	inv->mode = MODE_SEND;
	for (i = 1; i < word; i++)
		(void)subcommand_argument(argc, argv, &i, inv);
	inv->mode = subcommand_mode(argv[word]);
	for (i = word + 1; i < argc; i++)
		if (subcommand_argument(argc, argv, &i, inv) < 0)
			return tm_err_set(err, TM_ERR_USAGE, EX_USAGE,
			    "tokenmail %s: unexpected argument '%s'", argv[word], argv[i]);
	if (inv->account == NULL && inv->mode != MODE_CHECK)
		return tm_err_set(err, TM_ERR_USAGE, EX_USAGE,
		    "usage: tokenmail %s ACCOUNT", argv[word]);
	return 0;
}

/*
 * The index of the subcommand word when called as tokenmail with one, after
 * any leading -C FILE and -v; 0 when this is a sendmail invocation.
 */
static int
subcommand_index(int argc, char **argv, const char *progname)
{
	static const char *const words[] = { "authorize", "check", "token", NULL };
	int i = 1;
	size_t w;

	if (strcmp(progname, "tokenmail") != 0)
		return 0;
	while (i < argc && (strcmp(argv[i], "-v") == 0 ||
	    (strcmp(argv[i], "-C") == 0 && i + 1 < argc)))
		i += strcmp(argv[i], "-C") == 0 ? 2 : 1;
	for (w = 0; i < argc && words[w]; w++)
		if (strcmp(argv[i], words[w]) == 0)
			return i;
	return 0;
}

static void
mode_from_name(struct invocation *inv)
{
	if (strcmp(inv->progname, "mailq") == 0)
		inv->mode = MODE_MAILQ;
	else if (strcmp(inv->progname, "newaliases") == 0)
		inv->mode = MODE_NEWALIASES;
	else
		inv->mode = MODE_SEND;
}

static int
check_arguments(const struct invocation *inv, struct tm_err *err)
{
	if (inv->mode == MODE_SEND && inv->nargs == 0 && !inv->read_recipients) {
		tm_err_set(err, TM_ERR_USAGE, EX_USAGE, "no recipients given");
		tm_err_hint(err, "name them as arguments, or use -t to read them from To:, Cc: and Bcc:");
		return -1;
	}
	if (inv->mode == MODE_VERIFY && inv->nargs == 0)
		return tm_err_set(err, TM_ERR_USAGE, EX_USAGE, "-bv needs at least one address");
	return 0;
}

int
cli_parse(int argc, char **argv, struct invocation *inv, struct tm_err *err)
{
	int i;

	memset(inv, 0, sizeof(*inv));
	inv->progname = base_name(argc > 0 && argv[0] ? argv[0] : "sendmail");
	mode_from_name(inv);
	i = subcommand_index(argc, argv, inv->progname);
	if (i > 0)
		return parse_subcommand(argc, argv, i, inv, err);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (a[0] != '-' || a[1] == '\0')
			break;
		if (a[1] == '-' ? parse_long_option(inv, a) < 0 :
		    parse_letters(inv, argc, argv, &i, err) < 0)
			return -1;
	}
	inv->args = argv + i;
	inv->nargs = (size_t)(argc - i);
	return check_arguments(inv, err);
}

const char *
cli_usage(void)
{
	return
	    "usage: sendmail [options] [--] [recipient ...]\n"
	    "       tokenmail authorize ACCOUNT [--browser] [-C FILE]\n"
	    "       tokenmail check [ACCOUNT] [-C FILE]\n"
	    "       tokenmail token ACCOUNT [-C FILE]\n"
	    "\n"
	    "Reads a message on stdin and delivers it at once with OAuth 2.0\n"
	    "(SMTP XOAUTH2/OAUTHBEARER or Microsoft Graph).\n"
	    "\n"
	    "  -t            take recipients from To:, Cc:, Bcc: (and the arguments)\n"
	    "  -i, -oi       a line with a single dot does not end the message\n"
	    "  -f ADDR       envelope sender (-r is the same; \"<>\" is the null sender)\n"
	    "  -F NAME       full name for a From: header tokenmail adds\n"
	    "  -C FILE       configuration file\n"
	    "  -X FILE       also append the log line to FILE\n"
	    "  -N DSN, -R RET, -V ENVID   delivery status notification requests\n"
	    "  -v            protocol trace on stderr (secrets redacted)\n"
	    "  -bv ADDR...   show how addresses resolve, send nothing\n"
	    "  -bs           speak SMTP on stdin/stdout\n"
	    "  -bp           (mailq) there is no queue; -bi (newaliases) checks the aliases\n"
	    "  --dry-run     do everything but the network; print what would be sent\n"
	    "  --version, --help\n"
	    "\n"
	    "See tokenmail(8) and tokenmail.yaml(5).\n";
}
