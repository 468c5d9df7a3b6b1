/* SPDX-License-Identifier: BSD-2-Clause */
/* check_json.c - a small strict JSON parser for the tests. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_json.h"

#define CJ_DEPTH	64

struct cj_in {
	const char	*s;
	size_t		 i;
	const char	*why;
	int		 depth;
};

static struct cj *cj_value(struct cj_in *in);

static void
cj_ws(struct cj_in *in)
{
	while (strchr(" \t\r\n", in->s[in->i]) != NULL && in->s[in->i] != '\0')
		in->i++;
}

static struct cj *
cj_new(enum cj_type t)
{
	struct cj *v = calloc(1, sizeof(*v));

	if (v != NULL)
		v->cj_type = t;
	return v;
}

static struct cj *
cj_fail(struct cj_in *in, struct cj *v, const char *why)
{
	if (in->why == NULL)
		in->why = why;
	cj_free(v);
	return NULL;
}

/* Append c as UTF-8 to buf. */
static size_t
cj_utf8(char *buf, uint32_t c)
{
	if (c < 0x80) {
		buf[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		buf[0] = (char)(0xc0 | c >> 6);
		buf[1] = (char)(0x80 | (c & 0x3f));
		return 2;
	}
	buf[0] = (char)(0xe0 | c >> 12);
	buf[1] = (char)(0x80 | ((c >> 6) & 0x3f));
	buf[2] = (char)(0x80 | (c & 0x3f));
	return 3;
}

static bool
cj_hex4(struct cj_in *in, uint32_t *c)
{
	*c = 0;
	for (int k = 0; k < 4; k++) {
		char h = in->s[in->i++];
		*c <<= 4;
		if (h >= '0' && h <= '9')
			*c |= (uint32_t)(h - '0');
		else if (h >= 'a' && h <= 'f')
			*c |= (uint32_t)(h - 'a' + 10);
		else if (h >= 'A' && h <= 'F')
			*c |= (uint32_t)(h - 'A' + 10);
		else
			return false;
	}
	return true;
}

/* One escape after the backslash, into out; its length, 0 if bad. */
static size_t
cj_escape(struct cj_in *in, char *out)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *p = strchr(from, in->s[in->i]);
	uint32_t c;

	if (in->s[in->i] == 'u') {
		in->i++;
		return cj_hex4(in, &c) ? cj_utf8(out, c) : 0;
	}
	if (p == NULL || *p == '\0')
		return 0;
	in->i++;
	out[0] = to[p - from];
	return 1;
}

static char *
cj_string_raw(struct cj_in *in)
{
	size_t cap = 16, n = 0;
	char *buf = malloc(cap);

	if (buf == NULL || in->s[in->i++] != '"') {
		free(buf);
		return NULL;
	}
	for (;;) {
		unsigned char ch = (unsigned char)in->s[in->i];
		if (n + 4 >= cap && (buf = realloc(buf, cap *= 2)) == NULL)
			return NULL;
		if (ch == '"') {
			in->i++;
			buf[n] = '\0';
			return buf;
		}
		if (ch < 0x20) {		/* also the end of the text */
			free(buf);
			return NULL;
		}
		in->i++;
		if (ch != '\\') {
			buf[n++] = (char)ch;
			continue;
		}
		size_t k = cj_escape(in, buf + n);
		if (k == 0) {
			free(buf);
			return NULL;
		}
		n += k;
	}
}

static struct cj *
cj_string(struct cj_in *in)
{
	struct cj *v = cj_new(CJ_STR);

	if (v == NULL || (v->cj_str = cj_string_raw(in)) == NULL)
		return cj_fail(in, v, "bad string");
	return v;
}

/* RFC 8259 number grammar, checked before strtod reads it. */
static struct cj *
cj_number(struct cj_in *in)
{
	const char *s = in->s + in->i, *p = s;
	struct cj *v;

	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (*p >= '0' && *p <= '9')
			p++;
	else
		return cj_fail(in, NULL, "bad number");
	if (*p == '.') {
		if (!(*++p >= '0' && *p <= '9'))
			return cj_fail(in, NULL, "bad fraction");
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		if (*++p == '+' || *p == '-')
			p++;
		if (!(*p >= '0' && *p <= '9'))
			return cj_fail(in, NULL, "bad exponent");
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if ((v = cj_new(CJ_NUM)) == NULL)
		return NULL;
	v->cj_num = strtod(s, NULL);
	in->i += (size_t)(p - s);
	return v;
}

static bool
cj_push(struct cj *v, struct cj *item, char *key)
{
	struct cj **items = realloc(v->cj_items, (v->cj_n + 1) *
	    sizeof(*items));
	char **keys;

	if (items == NULL)
		return false;
	v->cj_items = items;
	if (v->cj_type == CJ_OBJ) {
		keys = realloc(v->cj_keys, (v->cj_n + 1) * sizeof(*keys));
		if (keys == NULL)
			return false;
		v->cj_keys = keys;
		keys[v->cj_n] = key;
	}
	items[v->cj_n++] = item;
	return true;
}

/* An array or an object: their grammar differs only in keys. */
static struct cj *
cj_list(struct cj_in *in, enum cj_type t, char close)
{
	struct cj *v = cj_new(t), *item;
	char *key = NULL;

	in->i++;
	cj_ws(in);
	if (in->s[in->i] == close) {
		in->i++;
		return v;
	}
	for (;;) {
		cj_ws(in);
		if (t == CJ_OBJ) {
			if ((key = cj_string_raw(in)) == NULL)
				return cj_fail(in, v, "bad key");
			cj_ws(in);
			if (in->s[in->i++] != ':') {
				free(key);
				return cj_fail(in, v, "expected ':'");
			}
		}
		if ((item = cj_value(in)) == NULL || !cj_push(v, item, key)) {
			free(key);
			cj_free(item);
			return cj_fail(in, v, "bad member");
		}
		cj_ws(in);
		if (in->s[in->i] == close) {
			in->i++;
			return v;
		}
		if (in->s[in->i++] != ',')
			return cj_fail(in, v, "expected ',' or the end");
	}
}

static struct cj *
cj_word(struct cj_in *in, const char *word, enum cj_type t, bool b)
{
	struct cj *v;

	if (strncmp(in->s + in->i, word, strlen(word)) != 0)
		return cj_fail(in, NULL, "unexpected character");
	in->i += strlen(word);
	if ((v = cj_new(t)) != NULL)
		v->cj_bool = b;
	return v;
}

static struct cj *
cj_value(struct cj_in *in)
{
	struct cj *v;
	char c;

	if (++in->depth > CJ_DEPTH)
		return cj_fail(in, NULL, "nested too deep");
	cj_ws(in);
	c = in->s[in->i];
	if (c == '{')
		v = cj_list(in, CJ_OBJ, '}');
	else if (c == '[')
		v = cj_list(in, CJ_ARR, ']');
	else if (c == '"')
		v = cj_string(in);
	else if (c == 't')
		v = cj_word(in, "true", CJ_BOOL, true);
	else if (c == 'f')
		v = cj_word(in, "false", CJ_BOOL, false);
	else if (c == 'n')
		v = cj_word(in, "null", CJ_NULL, false);
	else
		v = cj_number(in);
	in->depth--;
	return v;
}

struct cj *
cj_parse(const char *text, const char **why, size_t *where)
{
	struct cj_in in = { text, 0, NULL, 0 };
	struct cj *v = cj_value(&in);

	if (v != NULL) {
		cj_ws(&in);
		if (in.s[in.i] != '\0')
			v = cj_fail(&in, v, "text after the value");
	}
	if (v == NULL && why != NULL)
		*why = in.why != NULL ? in.why : "out of memory";
	if (v == NULL && where != NULL)
		*where = in.i;
	return v;
}

void
cj_free(struct cj *v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < v->cj_n; i++) {
		cj_free(v->cj_items[i]);
		if (v->cj_keys != NULL)
			free(v->cj_keys[i]);
	}
	free(v->cj_items);
	free(v->cj_keys);
	free(v->cj_str);
	free(v);
}

const struct cj *
cj_get(const struct cj *obj, const char *key)
{
	if (obj == NULL || obj->cj_type != CJ_OBJ)
		return NULL;
	for (size_t i = 0; i < obj->cj_n; i++)
		if (strcmp(obj->cj_keys[i], key) == 0)
			return obj->cj_items[i];
	return NULL;
}

const struct cj *
cj_at(const struct cj *arr, size_t i)
{
	if (arr == NULL || arr->cj_type != CJ_ARR || i >= arr->cj_n)
		return NULL;
	return arr->cj_items[i];
}

double
cj_num(const struct cj *v)
{
	return v != NULL && v->cj_type == CJ_NUM ? v->cj_num : NAN;
}

const char *
cj_str(const struct cj *v)
{
	return v != NULL && v->cj_type == CJ_STR ? v->cj_str : NULL;
}
