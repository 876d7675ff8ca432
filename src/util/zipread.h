/* A zip archive held in memory, read whole: every regular file's name and bytes, for uploads
 * of source files (the Hapnd dialect's archives). Over libzip (docs/design/decisions.md).
 *
 * Hostile input is assumed. Every size comes from a limit below, never from the archive's
 * headers: each file is inflated into a buffer capped at its limit plus one byte, so a zip
 * bomb (small sizes claimed, gigabytes inflated; or gigabytes claimed) is refused after at
 * most ZIPREAD_MAX_FILE_BYTES of work per file and ZIPREAD_MAX_TOTAL_BYTES in all, with no
 * allocation larger than those. Each file is read to its end, where libzip checks its CRC-32,
 * and its size must be the one its headers claim. Files are read as the central directory
 * describes them; local headers only locate the data (a streamed archive's, written before
 * the sizes were known, may say less).
 *
 * Pure: bytes in, results out; no I/O, no globals. Any thread. The time and memory libzip
 * spends on the central directory grow with len, which the caller caps (the upload limit):
 * about 0.1 s for 5 MB of directory, at most ZIPREAD_MAX_EOCD_RECORDS times that. */
#ifndef UTIL_ZIPREAD_H
#define UTIL_ZIPREAD_H

#include <stddef.h>

enum {
    ZIPREAD_MAX_ENTRIES = 256,                   /* entries in one archive, directories and
                                                    skipped entries included */
    ZIPREAD_MAX_FILE_BYTES = 1000 * 1000,        /* one file, uncompressed */
    ZIPREAD_MAX_TOTAL_BYTES = 16 * 1000 * 1000,  /* all files, uncompressed */
    ZIPREAD_NAME_BYTES = 255,                    /* a name (its path in the archive) */
    ZIPREAD_MAX_EOCD_RECORDS = 4,                /* end-of-central-directory signatures in
                                                    the last 64 KiB (see zipread.c) */
};

/* One regular file of the archive. */
struct zipread_file {
    char name[ZIPREAD_NAME_BYTES + 1]; /* its path as the archive spells it ("src/a.lua"):
                                          UTF-8, no control characters, not empty. Untrusted:
                                          may hold "..", a leading slash or backslashes;
                                          callers use the base name, never a file system
                                          path */
    char *data;                        /* owned: its bytes, with a NUL after data[len] (the
                                          bytes may hold NULs of their own) */
    size_t len;                        /* bytes in data */
};

/* The files of one archive, in the archive's order. Caller memory; zipread_fini frees it. */
struct zipread {
    struct zipread_file *files; /* owned array of count files (NULL when count is 0) */
    size_t count;               /* files read */
};

/* Reads every regular file of the zip archive in data[0..len) into *out. Skipped, never
 * read: directories (names ending in '/'), and what macOS's Finder adds when it compresses
 * a folder: entries under "__MACOSX/" and files whose base name starts with "._" (resource
 * forks). Only the names of kept files are checked. Files may be stored or deflated.
 * An archive without files (an empty one, or only directories) gives count 0.
 *
 * Returns 0 with *out filled (the caller then calls zipread_fini), or, with *out empty and a
 * one-line reason in why[0..why_cap) (truncated to fit; why may be NULL if why_cap is 0):
 *   ERR_INVALID  len is 0 or data is not a zip archive; it is cut short or corrupt (a
 *                directory that does not add up, a CRC or size that does not match the data,
 *                compressed data that does not inflate); split over several disks; two files
 *                with the same name; a file that is encrypted, or compressed by a method
 *                other than stored or deflate (the reason names the method); a name that is
 *                empty, longer than ZIPREAD_NAME_BYTES, not UTF-8 (strict: no overlong forms,
 *                no surrogates), or with a control character (U+0000-U+001F, U+007F);
 *   ERR_TOOBIG   a limit passed, and the reason says which: more than ZIPREAD_MAX_ENTRIES
 *                entries, more than ZIPREAD_MAX_EOCD_RECORDS end records, a file over
 *                ZIPREAD_MAX_FILE_BYTES or the files over ZIPREAD_MAX_TOTAL_BYTES
 *                (claimed by the headers or found while inflating);
 *   ERR_NOMEM    libzip could not allocate.
 * A NUL byte in a name never reaches the caller: libzip 1.7.3 turns it into a space when it
 * reads the directory (and drops a Unicode Path extra field that holds one), so it cannot be
 * refused. data is borrowed for the call only; *out shares no memory with it. */
int zipread_open(const void *data, size_t len, struct zipread *out, char *why, size_t why_cap);

/* Frees the files of z and empties it. Does nothing on an empty or zeroed struct zipread. */
void zipread_fini(struct zipread *z);

#endif
