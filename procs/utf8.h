/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * utf8.h - bytes of any kind (names from /dev/shm, socket paths) shown as
 * UTF-8.  Shared by shmq(1)'s output and shmpipe-bench's JSON, so that
 * both say the same for the same bytes: a valid sequence passes, a byte
 * that is not part of one becomes U+FFFD.
 */
#ifndef UTF8_H
#define UTF8_H

#include <stddef.h>
#include <stdio.h>

#define UTF8_REPLACEMENT	"\xef\xbf\xbd"	/* U+FFFD */

/* The length of the valid UTF-8 sequence at p (1..4), or 0: a stray
 * continuation byte, a truncated, overlong or surrogate sequence, or one
 * past U+10FFFF.  Reads no further than a NUL. */
size_t	utf8_len(const unsigned char *p);

/* The control character at p (of a valid sequence of n bytes), if any:
 * C0, DEL or C1 (U+0080..U+009F, 0xc2 0x80..0x9f); -1 if none. */
int	utf8_control(const unsigned char *p, size_t n);

/*
 * s as a JSON string, quotes included, always valid UTF-8: \" \\ and \n
 * escaped, other controls as \u00XX, and a byte that is not UTF-8 as
 * \ufffd (JSON cannot say it).
 */
void	utf8_json_string(FILE *f, const char *s);

/*
 * s as text for people (tables, CSV, messages) into buf of len bytes (at
 * least 1): a valid sequence as it is, a byte that is not part of one as
 * U+FFFD, a control character as '?'; cut short at a character, never
 * inside one, if it does not fit.  Returns buf.  len = 3 * strlen(s) + 1
 * always fits.
 */
const char *utf8_safe(char *buf, size_t len, const char *s);

#endif /* UTF8_H */
