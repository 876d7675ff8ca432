/* UUIDs: parse/format the canonical 36-character text, and make version 7 (time-ordered). */
#ifndef UTIL_UUID_H
#define UTIL_UUID_H

#include <stddef.h>
#include <stdint.h>

enum { UUID_LEN = 16, UUID_TEXT_LEN = 36 };

/* Parses "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (hex, any case). Returns 0 or ERR_INVALID. */
int uuid_parse(const char *s, size_t n, uint8_t out[UUID_LEN]);
/* Writes 36 lower-case characters and a NUL. */
void uuid_format(const uint8_t u[UUID_LEN], char out[UUID_TEXT_LEN + 1]);
/* Fills out with a version 7 UUID for the time now_us and random bits. Thread-safe. */
void uuid_v7(int64_t now_us, uint8_t out[UUID_LEN]);

#endif
