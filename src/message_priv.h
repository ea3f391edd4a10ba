/*
 * message_priv.h: what message intake (message.c) and header editing and
 * output (message_header.c) share: the field list. Private to them.
 */
#ifndef TM_MESSAGE_PRIV_H
#define TM_MESSAGE_PRIV_H

#include "message.h"

struct header_field *message_field_push(struct message *m);
void message_field_set(struct header_field *f, const char *value);
void message_field_free(struct header_field *f);

#endif
