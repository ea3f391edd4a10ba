/* dryrun.c: the --dry-run report (format in dryrun.h). */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "dryrun.h"
#include "util.h"

static int
write_to_file(void *ctx, const char *data, size_t len)
{
	return fwrite(data, 1, len, (FILE *)ctx) == len ? 0 : -1;
}

static void
print_method(FILE *out, const struct account *a)
{
	if (a->method == METHOD_GRAPH) {
		fprintf(out, "method: graph %s user=%s save_to_sent_items=%s\n", a->graph.url,
		    a->from, a->graph.save_to_sent_items ? "yes" : "no");
		return;
	}
	fprintf(out, "method: smtp %s:%u tls=%s auth=%s", a->smtp.host, a->smtp.port,
	    config_tls_name(a->smtp.tls), config_auth_name(a->smtp.auth));
	if (a->smtp.auth != SMTP_AUTH_NONE)
		fprintf(out, " user=%s", a->smtp.user);
	fputc('\n', out);
}

int
dryrun_print(FILE *out, const char *config_path, const struct sender *s,
    const struct address_list *rcpts, const struct message *m, struct tm_err *err)
{
	size_t i;

	fprintf(out, "tokenmail: dry run, nothing sent\n");
	fprintf(out, "account: %s (%s)\n", s->account->name, config_path);
	print_method(out, s->account);
	fprintf(out, "mail from: <%s>\n", s->envelope);
	for (i = 0; i < rcpts->count; i++) {
		char spec[TM_ADDRESS_MAX + 1];

		(void)address_spec(&rcpts->items[i], spec, sizeof(spec));
		fprintf(out, "rcpt to: <%s>\n", spec);
	}
	fprintf(out, "size: %lld\n", message_transmit_size(m));
	fprintf(out, "message:\n");
	if (message_write(m, write_to_file, out, err) < 0)
		return -1;
	if (fflush(out) != 0 || ferror(out))
		return tm_err_set(err, TM_ERR_IO, EX_IOERR, "cannot write the dry run to stdout");
	return 0;
}
