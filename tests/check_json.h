/* SPDX-License-Identifier: BSD-2-Clause */
/* check_json.h - a small strict JSON parser for the tests: what a tool
 * prints is parsed back and looked into, with no external program. */
#ifndef CHECK_JSON_H
#define CHECK_JSON_H

#include <stdbool.h>
#include <stddef.h>

enum cj_type { CJ_NULL, CJ_BOOL, CJ_NUM, CJ_STR, CJ_ARR, CJ_OBJ };

/* One value; arrays and objects hold cj_n children (objects: keys too). */
struct cj {
	enum cj_type	  cj_type;
	bool		  cj_bool;
	double		  cj_num;
	char		 *cj_str;	/* CJ_STR, NUL-terminated */
	struct cj	**cj_items;
	char		**cj_keys;	/* CJ_OBJ */
	size_t		  cj_n;
};

/*
 * Parse text, which must hold exactly one value (RFC 8259, whitespace
 * around it allowed).  NULL on a syntax error, with *why (static text)
 * and *where (offset) if they are not NULL.
 */
struct cj	*cj_parse(const char *text, const char **why, size_t *where);
void		 cj_free(struct cj *v);

/* A member of an object, or NULL; an element of an array, or NULL. */
const struct cj	*cj_get(const struct cj *obj, const char *key);
const struct cj	*cj_at(const struct cj *arr, size_t i);

/* Typed looks: a number (NaN if v is not one), a string (NULL if not). */
double		 cj_num(const struct cj *v);
const char	*cj_str(const struct cj *v);

#endif /* CHECK_JSON_H */
