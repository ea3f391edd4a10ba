/*
 * tm_limits.h: every size and time limit tokenmail enforces, in one place.
 * A buffer that grows has one of these as its cap; a read has one of these
 * as its deadline.
 */
#ifndef TM_LIMITS_H
#define TM_LIMITS_H

/* RFC 5322 2.1.1: a line is at most 998 octets, excluding CRLF. */
#define TM_HEADER_LINE_MAX	998
/* The whole header block, unfolded fields included, held in memory. */
#define TM_HEADER_BLOCK_MAX	(256 * 1024)
#define TM_HEADER_FIELDS_MAX	2000
/* Largest message read from stdin: Exchange Online and Graph stop at 150 MB. */
#define TM_MESSAGE_MAX		((long long)200 * 1024 * 1024)
/* Graph: one request body (PROTOCOL 4.4, "about 4 MB"; 413 beyond), the
   part of it a base64 message may fill (room left for headers and JSON),
   an upload-session chunk (10 x 320 KiB, under the 4 MB range limit), the
   size from which an attachment needs an upload session (smaller ones are
   posted whole), and the largest message (Exchange Online's ceiling). */
#define TM_GRAPH_REQUEST_MAX	(4 * 1024 * 1024)
#define TM_GRAPH_INLINE_MAX	(TM_GRAPH_REQUEST_MAX - 64 * 1024)
#define TM_GRAPH_CHUNK		(10 * 320 * 1024)
#define TM_GRAPH_UPLOAD_MIN	(3 * 1024 * 1024)
#define TM_GRAPH_MESSAGE_MAX	(150 * 1024 * 1024)
/* Seconds stdin may stay silent before the message is given up. */
#define TM_STDIN_IDLE_SECONDS	600
/* Bytes read from stdin per read(2) and written per spool write. */
#define TM_IO_BLOCK		65536

/* RFC 5321 4.5.3.1: local part 64, domain 255, path 256 octets. */
#define TM_LOCAL_PART_MAX	64
#define TM_DOMAIN_MAX		255
#define TM_ADDRESS_MAX		256
/* A display name kept for a rewritten From: header. */
#define TM_DISPLAY_MAX		512
/* Envelope recipients of one message (Exchange Online allows 500). */
#define TM_RECIPIENTS_MAX	1000
/* Alias expansion depth (root -> admin -> ops@example.com). */
#define TM_ALIAS_DEPTH_MAX	10

#define TM_CONFIG_FILE_MAX	(1024 * 1024)
/* A secret, key, assertion or refresh token read from a file or command. */
#define TM_SECRET_MAX		(64 * 1024)
/* A JSON document from a token endpoint or Graph. */
#define TM_JSON_MAX		(1024 * 1024)
/* Network timeout of one HTTP request when the config sets none. */
#define TM_HTTP_TIMEOUT_SECONDS	60
#define TM_ALIASES_FILE_MAX	(4 * 1024 * 1024)
#define TM_CONFIG_ERRORS_MAX	20
#define TM_PATH_MAX		4096
#define TM_NAME_MAX		256

#endif
