/* SPDX-License-Identifier: BSD-2-Clause */
/* utf8.c - bytes of any kind shown as UTF-8, for shmq(1) and the bench. */
#include <stdint.h>
#include <string.h>

#include "utf8.h"

size_t
utf8_len(const unsigned char *p)
{
	size_t n;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, cp = p[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)	/* the NUL too: no overrun */
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return n;
}

int
utf8_control(const unsigned char *p, size_t n)
{
	if (n == 1 && (p[0] < 0x20 || p[0] == 0x7f))
		return p[0];
	if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)
		return p[1];
	return -1;
}

void
utf8_json_string(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;
	int cc;

	fputc('"', f);
	for (; *p; p += n ? n : 1) {
		n = utf8_len(p);
		if (n == 0)			/* not UTF-8: JSON cannot say it */
			fputs("\\ufffd", f);
		else if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", f);
		else if ((cc = utf8_control(p, n)) >= 0)
			fprintf(f, "\\u%04x", (unsigned)cc);
		else
			fwrite(p, 1, n, f);
	}
	fputc('"', f);
}

const char *
utf8_safe(char *buf, size_t len, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, o = 0;

	for (; *p; p += n ? n : 1) {
		const char *put = (const char *)p;
		size_t k = n = utf8_len(p);
		if (n == 0)
			put = UTF8_REPLACEMENT, k = 3;
		else if (utf8_control(p, n) >= 0)
			put = "?", k = 1;
		if (o + k >= len)
			break;
		memcpy(buf + o, put, k);
		o += k;
	}
	buf[o] = '\0';
	return buf;
}
