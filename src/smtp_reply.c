/*
 * smtp_reply.c: the pure half of the SMTP client: reply lines and whole
 * replies (RFC 5321 4.2), EHLO capabilities, the xtext encoding of DSN
 * parameters (RFC 3461 4), the decoding of a SASL error challenge, and the
 * table of hints for the replies Exchange Online and Gmail usually give.
 * No I/O here, so tests and fuzzers drive every function directly.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "log.h"
#include "smtp.h"
#include "util.h"

/* A hint for one enhanced status code (RFC 3463), or for a reply code
   when the server sent none. */
struct smtp_hint_entry {
	const char *enhanced;	/* exact "5.7.30", or NULL: match code */
	int code;		/* 0: any */
	const char *hint;
};

#define HINT_AUTH "SMTP AUTH may be disabled for the mailbox " \
	"(Set-CASMailbox -SmtpClientAuthenticationDisabled $false), the app may lack " \
	"SMTP.SendAsApp or an Exchange service principal with mailbox permission, " \
	"or smtp.user may not be the mailbox"
#define HINT_SENDAS "the mailbox smtp.user cannot send as this from address: grant it " \
	"Send As (Add-RecipientPermission), or send from an address it may use"
#define HINT_THROTTLED "Exchange Online throttles this mailbox after repeated errors; " \
	"fix the cause and wait before sending again"

static const struct smtp_hint_entry smtp_hints[] = {
	{ "5.7.30", 0, "basic authentication is retired: use auth: xoauth2 with a token "
	    "for https://outlook.office365.com/.default (or SMTP.Send)" },
	{ "5.7.3", 0, HINT_AUTH },
	{ "5.7.139", 0, "SMTP AUTH is disabled for the tenant or the mailbox: "
	    "Set-TransportConfig or Set-CASMailbox -SmtpClientAuthenticationDisabled $false "
	    "(security defaults also disable it)" },
	{ "5.7.57", 0, "the server wants an authenticated session: set smtp.auth to xoauth2" },
	{ "5.7.8", 0, "the token was refused: check its scope (Gmail: https://mail.google.com/) "
	    "and that smtp.user is the account it was issued for" },
	{ "5.7.60", 0, HINT_SENDAS },
	{ "5.2.252", 0, HINT_SENDAS },
	{ "5.2.251", 0, HINT_THROTTLED },
	{ "5.2.253", 0, HINT_THROTTLED },
	{ "5.2.254", 0, HINT_THROTTLED },
	{ "5.2.255", 0, HINT_THROTTLED },
	{ "5.2.2", 0, "the sending mailbox is full (SMTP AUTH keeps a copy in Sent Items) "
	    "or its submission quota is used up: free space or wait" },
	{ "5.3.4", 0, "the message is larger than the server accepts: send a smaller one" },
	{ "4.7.66", 0, "the server refuses this sender for now (throttling or a "
	    "reputation block): try again later; if it lasts, check the tenant's outbound "
	    "spam and sending limits" },
	{ "4.3.2", 0, "Exchange Online allows 3 concurrent connections per mailbox: "
	    "send fewer messages at once (the message will be retried)" },
	{ "4.5.3", 0, "too many recipients: Exchange Online takes at most 500 per message "
	    "by default; split the recipient list" },
	{ NULL, 535, HINT_AUTH },
	{ NULL, 552, "the message is larger than the server accepts: send a smaller one" },
	{ NULL, 421, "the server is closing the session: the message will be retried" },
};

static const struct {
	const char *keyword;
	unsigned flag;
} smtp_cap_names[] = {
	{ "PIPELINING", SMTP_CAP_PIPELINING },
	{ "SIZE", SMTP_CAP_SIZE },
	{ "8BITMIME", SMTP_CAP_8BITMIME },
	{ "SMTPUTF8", SMTP_CAP_SMTPUTF8 },
	{ "DSN", SMTP_CAP_DSN },
	{ "ENHANCEDSTATUSCODES", SMTP_CAP_ENHANCED },
	{ "STARTTLS", SMTP_CAP_STARTTLS },
	{ "AUTH", SMTP_CAP_AUTH },
	{ "CHUNKING", SMTP_CAP_CHUNKING },
};

/* ---- reply lines ---- */

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* true if text[len] holds only printable octets (tab and UTF-8 allowed). */
static bool
printable(const char *text, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

int
smtp_reply_line(const char *line, size_t len, int *code, bool *last, const char **text,
    struct tm_err *err)
{
	if (len > SMTP_LINE_MAX)
		return tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL,
		    "reply line of %zu octets is longer than %d", len, SMTP_LINE_MAX);
	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' ||
	    !is_digit(line[2]))
		return tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL,
		    "reply line does not start with a reply code");
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL,
		    "reply code is not followed by ' ' or '-'");
	if (len > 3 && !printable(line + 4, len - 4))
		return tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL,
		    "reply line holds a control character");
	*code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	*last = len == 3 || line[3] == ' ';
	*text = len > 3 ? line + 4 : line + 3;
	return 0;
}

/* Length of a 1-3 digit number at s, or 0. */
static size_t
digits(const char *s)
{
	size_t n = 0;

	while (n < 4 && is_digit(s[n]))
		n++;
	return n >= 1 && n <= 3 ? n : 0;
}

/*
 * Copy the enhanced status code at the start of text ("5.7.30 ...") into
 * out[size] when its class matches code's first digit; else out = "".
 */
static void
parse_enhanced(const char *text, int code, char *out, size_t size)
{
	const char *p = text;
	size_t n;
	int part;

	out[0] = '\0';
	if (p[0] != '0' + code / 100 || p[1] != '.')
		return;
	p += 2;
	for (part = 0; part < 2; part++) {
		if ((n = digits(p)) == 0)
			return;
		p += n;
		if (part == 0 && *p++ != '.')
			return;
	}
	if (*p != '\0' && *p != ' ')
		return;
	(void)str_copy_n(out, size, text, (size_t)(p - text));
}

int
smtp_reply_add(struct smtp_reply *r, const char *line, size_t len, bool *done,
    struct tm_err *err)
{
	const char *text;
	size_t used, n;
	bool last;
	int code;

	if (smtp_reply_line(line, len, &code, &last, &text, err) == -1)
		return -1;
	if (r->code != 0 && code != r->code)
		return tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL,
		    "reply lines disagree on the code (%d, then %d)", r->code, code);
	n = len - (size_t)(text - line);
	used = strlen(r->text);
	if (used + n + 2 > sizeof(r->text))
		return tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL,
		    "reply longer than %d octets", SMTP_REPLY_MAX);
	if (r->code != 0)
		r->text[used++] = '\n';
	memcpy(r->text + used, text, n);
	r->text[used + n] = '\0';
	if (r->code == 0) {
		r->code = code;
		parse_enhanced(r->text, code, r->enhanced, sizeof(r->enhanced));
	}
	*done = last;
	return 0;
}

void
smtp_reply_format(const struct smtp_reply *r, char *out, size_t size)
{
	char joined[SMTP_REPLY_MAX];
	size_t i;

	(void)str_copy(joined, sizeof(joined), r->text);
	for (i = 0; joined[i] != '\0'; i++)
		if (joined[i] == '\n')
			joined[i] = ' ';
	/* Truncation keeps the code and the start, which is what a person reads. */
	(void)str_format(out, size, "%d %s", r->code, joined);
}

/* ---- EHLO capabilities ---- */

/* Append the mechanisms in params to caps->auth, space-separated. */
static void
add_mechanisms(struct smtp_caps *caps, const char *params, size_t len)
{
	size_t used = strlen(caps->auth);

	while (len > 0 && *params == ' ') {
		params++;
		len--;
	}
	if (len == 0 || used + len + 2 > sizeof(caps->auth))
		return;
	if (used > 0)
		caps->auth[used++] = ' ';
	memcpy(caps->auth + used, params, len);
	caps->auth[used + len] = '\0';
}

/* One EHLO line: a keyword and its parameters. */
static void
parse_cap_line(struct smtp_caps *caps, const char *line, size_t len)
{
	size_t klen = strcspn(line, " =");
	char num[24];
	long size;
	size_t i;

	if (klen > len)
		klen = len;
	if (klen == 4 && strncasecmp(line, "AUTH", 4) == 0) {
		caps->flags |= SMTP_CAP_AUTH;
		add_mechanisms(caps, line + klen + (klen < len), len - klen - (klen < len));
		return;
	}
	for (i = 0; i < sizeof(smtp_cap_names) / sizeof(smtp_cap_names[0]); i++)
		if (strlen(smtp_cap_names[i].keyword) == klen &&
		    strncasecmp(line, smtp_cap_names[i].keyword, klen) == 0)
			caps->flags |= smtp_cap_names[i].flag;
	if (klen == 4 && strncasecmp(line, "SIZE", 4) == 0 && len > 5 &&
	    str_copy_n(num, sizeof(num), line + 5, len - 5) == 0 &&
	    parse_long(num, 0, LONG_MAX, &size) == 0)
		caps->size = size;
}

void
smtp_ehlo_caps(const char *text, struct smtp_caps *caps)
{
	const char *p = strchr(text, '\n');

	memset(caps, 0, sizeof(*caps));
	/* The first line is the server's name and greeting, not a keyword. */
	while (p != NULL) {
		const char *line = p + 1;

		p = strchr(line, '\n');
		parse_cap_line(caps, line, p != NULL ? (size_t)(p - line) : strlen(line));
	}
}

bool
smtp_caps_has_auth(const struct smtp_caps *caps, const char *mech)
{
	const char *p = caps->auth;
	size_t n = strlen(mech);

	while (*p != '\0') {
		size_t w = strcspn(p, " ");

		if (w == n && strncasecmp(p, mech, n) == 0)
			return true;
		p += w;
		p += strspn(p, " ");
	}
	return false;
}

/* ---- the SASL error challenge ---- */

void
smtp_sasl_error_decode(const char *text, char *out, size_t size)
{
	struct strbuf json;

	strbuf_init(&json, SMTP_CHALLENGE_MAX);
	if (base64_decode(&json, text, strlen(text)) == 0 && json.len > 0)
		log_sanitize(out, size, json.data, json.len);
	else
		log_sanitize(out, size, text, strlen(text));
	strbuf_free(&json);
}

/* ---- DSN xtext and hints ---- */

int
smtp_xtext(const char *in, char *out, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (; *in != '\0'; in++) {
		unsigned char c = (unsigned char)*in;

		if (o + 4 > size)
			return -1;
		if (c >= '!' && c <= '~' && c != '+' && c != '=') {
			out[o++] = (char)c;
		} else {
			out[o++] = '+';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	if (o >= size)
		return -1;
	out[o] = '\0';
	return 0;
}

const char *
smtp_hint(const char *enhanced, int code)
{
	size_t i, n = sizeof(smtp_hints) / sizeof(smtp_hints[0]);

	if (enhanced != NULL && enhanced[0] != '\0')
		for (i = 0; i < n; i++)
			if (smtp_hints[i].enhanced != NULL &&
			    strcmp(smtp_hints[i].enhanced, enhanced) == 0)
				return smtp_hints[i].hint;
	for (i = 0; i < n; i++)
		if (smtp_hints[i].enhanced == NULL && smtp_hints[i].code == code)
			return smtp_hints[i].hint;
	return NULL;
}

/* true if text holds word, ignoring case. */
static bool
smtp_text_has(const char *text, const char *word)
{
	size_t n = strlen(word);

	for (; *text != '\0'; text++)
		if (strncasecmp(text, word, n) == 0)
			return true;
	return false;
}

#define SET_CAS "Set-CASMailbox -Identity %s -SmtpClientAuthenticationDisabled $false"

/* The variants of 5.7.139 (PROTOCOL 3.3), told apart by their text. */
int
smtp_auth_hint(const struct smtp_reply *r, const char *user, char *out, size_t size)
{
	if (strcmp(r->enhanced, "5.7.139") != 0 || user == NULL)
		return -1;
	if (smtp_text_has(r->text, "disabled for the Tenant"))
		(void)str_format(out, size, "SMTP AUTH is disabled for the whole tenant: "
		    "Set-TransportConfig -SmtpClientAuthenticationDisabled $false, or for this "
		    "mailbox only: " SET_CAS " (Exchange Online PowerShell)", user);
	else if (smtp_text_has(r->text, "disabled for the Mailbox"))
		(void)str_format(out, size, "SMTP AUTH is disabled for the mailbox %s: " SET_CAS
		    " (Exchange Online PowerShell)", user, user);
	else if (smtp_text_has(r->text, "security defaults"))
		(void)str_format(out, size, "the tenant's security defaults block SMTP AUTH: "
		    "turn them off (Entra admin center) and run " SET_CAS ", or use method: "
		    "graph", user);
	else
		(void)str_format(out, size, "SMTP AUTH is disabled or blocked for %s: " SET_CAS
		    " (or Set-TransportConfig -SmtpClientAuthenticationDisabled $false for the "
		    "tenant); security defaults and conditional access can also block it",
		    user, user);
	return 0;
}
