/* util/zipread: archives written here with libzip's writer (into memory; no binary fixtures),
 * some then patched byte by byte: files and directories, stored and deflated data, an empty
 * archive, garbage and truncated input, zip bombs with honest and lying headers, each limit
 * at and past its value, corrupt CRCs and data, encryption, other methods, names, macOS
 * junk, and end-record signatures. */
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <zip.h>

#include "unit.h"
#include "util/errors.h"
#include "util/zipread.h"

enum {
    WHY_CAP = 200,
    BOMB_BYTES = 50 * 1000 * 1000, /* what the bombs inflate to */
    EOCD_BYTES = 22,               /* an end record without comment */
    CD_ENTRY_BYTES = 46,           /* a central directory entry before its name */
};

/* An archive's bytes (malloc'd). */
struct mem {
    unsigned char *p;
    size_t len;
};

/* An archive being written into memory. */
struct writer {
    zip_source_t *src; /* the buffer the archive is written to */
    zip_t *za;
};

static struct writer w_open(void)
{
    zip_error_t ze;
    zip_error_init(&ze);
    struct writer w;
    w.src = zip_source_buffer_create(NULL, 0, 0, &ze);
    CHECK(w.src);
    zip_source_keep(w.src); /* zip_close must leave it to us */
    w.za = zip_open_from_source(w.src, ZIP_TRUNCATE, &ze);
    CHECK(w.za);
    return w;
}

/* Adds a file; data must stay valid until w_close. Returns its index. */
static zip_uint64_t w_add(struct writer *w, const char *name, const void *data, size_t len,
                          zip_int32_t method)
{
    zip_source_t *s = zip_source_buffer(w->za, data, len, 0);
    CHECK(s);
    zip_int64_t i = zip_file_add(w->za, name, s, ZIP_FL_ENC_GUESS);
    CHECK(i >= 0);
    CHECK(zip_set_file_compression(w->za, (zip_uint64_t)i, method, 0) == 0);
    return (zip_uint64_t)i;
}

static void w_dir(struct writer *w, const char *name)
{
    CHECK(zip_dir_add(w->za, name, ZIP_FL_ENC_GUESS) >= 0);
}

static struct mem w_close(struct writer *w)
{
    CHECK(zip_close(w->za) == 0);
    struct mem m = {NULL, 0};
    if (!zip_source_is_deleted(w->src)) { /* no entries: libzip writes nothing */
        zip_stat_t st;
        CHECK(zip_source_stat(w->src, &st) == 0);
        m.len = st.size;
        m.p = malloc(m.len ? m.len : 1);
        CHECK(zip_source_open(w->src) == 0);
        CHECK(zip_source_read(w->src, m.p, m.len) == (zip_int64_t)m.len);
        zip_source_close(w->src);
    }
    zip_source_free(w->src);
    return m;
}

/* A source of size zero bytes that holds none of them in memory. */
struct zeros {
    zip_uint64_t size;
    zip_uint64_t pos;
};

static zip_int64_t on_zeros(void *arg, void *data, zip_uint64_t len, zip_source_cmd_t cmd)
{
    struct zeros *z = arg;
    switch (cmd) {
    case ZIP_SOURCE_OPEN:
        z->pos = 0;
        return 0;
    case ZIP_SOURCE_READ: {
        zip_uint64_t n = len < z->size - z->pos ? len : z->size - z->pos;
        memset(data, 0, n);
        z->pos += n;
        return (zip_int64_t)n;
    }
    case ZIP_SOURCE_STAT: {
        zip_stat_t *st = data;
        zip_stat_init(st);
        st->size = z->size;
        st->valid |= ZIP_STAT_SIZE;
        return sizeof(*st);
    }
    case ZIP_SOURCE_ERROR:
        memset(data, 0, 2 * sizeof(int));
        return 2 * sizeof(int);
    case ZIP_SOURCE_SUPPORTS:
        return ZIP_SOURCE_SUPPORTS_READABLE;
    case ZIP_SOURCE_CLOSE:
    case ZIP_SOURCE_FREE:
        return 0;
    default:
        return -1;
    }
}

/* One deflated entry "bomb.txt" of BOMB_BYTES zeros (about 50 KB compressed). */
static struct mem write_bomb(void)
{
    static struct zeros z = {BOMB_BYTES, 0};
    struct writer w = w_open();
    zip_source_t *s = zip_source_function(w.za, on_zeros, &z);
    CHECK(s);
    zip_int64_t i = zip_file_add(w.za, "bomb.txt", s, 0);
    CHECK(i >= 0);
    CHECK(zip_set_file_compression(w.za, (zip_uint64_t)i, ZIP_CM_DEFLATE, 9) == 0);
    return w_close(&w);
}

static uint32_t get16(const unsigned char *p)
{
    return p[0] | (uint32_t)p[1] << 8;
}

static uint32_t get32(const unsigned char *p)
{
    return get16(p) | get16(p + 2) << 16;
}

static void put16(unsigned char *p, uint32_t v)
{
    p[0] = v & 0xff;
    p[1] = (v >> 8) & 0xff;
}

static void put32(unsigned char *p, uint32_t v)
{
    put16(p, v & 0xffff);
    put16(p + 2, v >> 16);
}

/* Offset of the index-th central directory entry (of an archive without comment). */
static size_t cd_entry(const struct mem *m, size_t index)
{
    size_t off = get32(m->p + m->len - EOCD_BYTES + 16);
    for (size_t i = 0; i < index; i++) {
        const unsigned char *e = m->p + off;
        off += CD_ENTRY_BYTES + get16(e + 28) + get16(e + 30) + get16(e + 32);
    }
    return off;
}

/* Offset of the index-th entry's local header. */
static size_t local_header(const struct mem *m, size_t index)
{
    return get32(m->p + cd_entry(m, index) + 42);
}

/* Offset of the index-th entry's data. */
static size_t data_offset(const struct mem *m, size_t index)
{
    const unsigned char *l = m->p + local_header(m, index);
    return local_header(m, index) + 30 + get16(l + 26) + get16(l + 28);
}

/* The three patches below change both the central and the local header, so that the
 * archive stays consistent (ZIP_CHECKCONS) and only the data can tell the lie. */
static void patch_size(struct mem *m, size_t index, uint32_t size)
{
    put32(m->p + cd_entry(m, index) + 24, size);
    put32(m->p + local_header(m, index) + 22, size);
}

static void patch_crc(struct mem *m, size_t index, uint32_t crc)
{
    put32(m->p + cd_entry(m, index) + 16, crc);
    put32(m->p + local_header(m, index) + 14, crc);
}

static void patch_method(struct mem *m, size_t index, uint16_t method)
{
    put16(m->p + cd_entry(m, index) + 10, method);
    put16(m->p + local_header(m, index) + 8, method);
}

/* Replaces every occurrence of from by to (same length n); returns how many. */
static int replace_all(struct mem *m, const char *from, const char *to, size_t n)
{
    int count = 0;
    for (size_t i = 0; i + n <= m->len; i++) {
        if (memcmp(m->p + i, from, n) == 0) {
            memcpy(m->p + i, to, n);
            count++;
        }
    }
    return count;
}

/* zipread_open on m; the reason goes to stderr when it fails. */
static int zr_open(const struct mem *m, struct zipread *z, char *why)
{
    why[0] = '\0';
    int rc = zipread_open(m->p, m->len, z, why, WHY_CAP);
    if (rc) {
        fprintf(stderr, "  (%s: %s)\n", err_name(rc), why);
        ASSERT_EQ(z->count, 0);
        CHECK(z->files == NULL);
    }
    return rc;
}

static void expect_file(const struct zipread_file *f, const char *name, const void *data,
                        size_t len)
{
    ASSERT_STR(f->name, name);
    ASSERT_EQ(f->len, len);
    CHECK(memcmp(f->data, data, len) == 0);
    ASSERT_EQ(f->data[len], '\0');
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

TEST(files_in_order_directories_skipped)
{
    struct writer w = w_open();
    w_dir(&w, "src");
    w_add(&w, "src/main.lua", "return 1\n", 9, ZIP_CM_DEFLATE);
    w_dir(&w, "src/lib");
    w_add(&w, "src/lib/util.lua", "local M = {}\nreturn M\n", 22, ZIP_CM_STORE);
    w_add(&w, "README.md", "# hi\n", 5, ZIP_CM_DEFLATE);
    struct mem m = w_close(&w);
    struct zipread z;
    char why[WHY_CAP];
    ASSERT_EQ(zr_open(&m, &z, why), 0);
    ASSERT_EQ(z.count, 3);
    expect_file(&z.files[0], "src/main.lua", "return 1\n", 9);
    expect_file(&z.files[1], "src/lib/util.lua", "local M = {}\nreturn M\n", 22);
    expect_file(&z.files[2], "README.md", "# hi\n", 5);
    zipread_fini(&z);
    ASSERT_EQ(z.count, 0);
    zipread_fini(&z); /* twice: does nothing */
    free(m.p);
}

TEST(stored_and_deflated_bytes_come_back)
{
    static char text[100000];
    for (size_t i = 0; i < sizeof text; i++) {
        text[i] = "event sourcing "[i % 15];
    }
    unsigned char binary[256];
    for (int i = 0; i < 256; i++) {
        binary[i] = (unsigned char)(255 - i); /* NULs inside the data are kept */
    }
    struct writer w = w_open();
    w_add(&w, "text.txt", text, sizeof text, ZIP_CM_DEFLATE);
    w_add(&w, "binary.bin", binary, sizeof binary, ZIP_CM_STORE);
    w_add(&w, "empty.lua", "", 0, ZIP_CM_STORE);
    w_add(&w, "empty-deflated.lua", "", 0, ZIP_CM_DEFLATE);
    struct mem m = w_close(&w);
    CHECK(m.len < sizeof text / 10); /* the text was deflated */
    ASSERT_EQ(get16(m.p + cd_entry(&m, 0) + 10), ZIP_CM_DEFLATE);
    ASSERT_EQ(get16(m.p + cd_entry(&m, 1) + 10), ZIP_CM_STORE);
    struct zipread z;
    char why[WHY_CAP];
    ASSERT_EQ(zr_open(&m, &z, why), 0);
    ASSERT_EQ(z.count, 4);
    expect_file(&z.files[0], "text.txt", text, sizeof text);
    expect_file(&z.files[1], "binary.bin", binary, sizeof binary);
    expect_file(&z.files[2], "empty.lua", "", 0);
    expect_file(&z.files[3], "empty-deflated.lua", "", 0);
    zipread_fini(&z);
    free(m.p);
}

TEST(empty_archives_have_no_files)
{
    /* What zip tools write for an empty archive: an end record alone. */
    unsigned char eocd[EOCD_BYTES] = {'P', 'K', 5, 6};
    struct mem m = {eocd, sizeof eocd};
    struct zipread z;
    char why[WHY_CAP];
    ASSERT_EQ(zr_open(&m, &z, why), 0);
    ASSERT_EQ(z.count, 0);
    CHECK(z.files == NULL);
    zipread_fini(&z);

    struct writer w = w_open();
    w_dir(&w, "only/");
    w_dir(&w, "only/dirs/");
    m = w_close(&w);
    ASSERT_EQ(zr_open(&m, &z, why), 0);
    ASSERT_EQ(z.count, 0);
    zipread_fini(&z);
    free(m.p);
}

TEST(empty_and_garbage_input_is_not_a_zip)
{
    struct zipread z;
    char why[WHY_CAP];
    struct mem m = {(unsigned char *)"", 0};
    ASSERT_EQ(zr_open(&m, &z, why), ERR_INVALID);
    CHECK(strstr(why, "not a zip"));
    ASSERT_EQ(zipread_open(NULL, 0, &z, NULL, 0), ERR_INVALID); /* no room for a reason */

    unsigned char junk[4096];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof junk; i++) {
        x = x * 1103515245 + 12345;
        junk[i] = (unsigned char)(x >> 16);
    }
    m = (struct mem){junk, sizeof junk};
    ASSERT_EQ(zr_open(&m, &z, why), ERR_INVALID);
    CHECK(strstr(why, "not a zip"));
    memcpy(junk, "PK\3\4", 4); /* a local header signature alone */
    ASSERT_EQ(zr_open(&m, &z, why), ERR_INVALID);
    m = (struct mem){(unsigned char *)"hello, world", 12};
    ASSERT_EQ(zr_open(&m, &z, why), ERR_INVALID);
}

TEST(every_truncation_is_refused)
{
    struct writer w = w_open();
    w_add(&w, "a.lua", "return 'a'\n", 11, ZIP_CM_DEFLATE);
    w_add(&w, "b.lua", "return 'b'\n", 11, ZIP_CM_STORE);
    struct mem m = w_close(&w);
    struct zipread z;
    char why[WHY_CAP];
    for (size_t n = 0; n < m.len; n++) {
        ASSERT_EQ(zipread_open(m.p, n, &z, why, sizeof why), ERR_INVALID);
        ASSERT_EQ(z.count, 0);
    }
    ASSERT_EQ(zr_open(&m, &z, why), 0);
    zipread_fini(&z);
    free(m.p);
}

TEST(every_flipped_byte_is_survived)
{
    /* Whatever one corrupt byte does, the answer is a file set or a refusal, never a crash
     * (the sanitizer build checks the memory side). */
    struct writer w = w_open();
    w_add(&w, "a.lua", "return 'a' .. 'a' .. 'a'\n", 25, ZIP_CM_DEFLATE);
    w_add(&w, "b.lua", "return 'b'\n", 11, ZIP_CM_STORE);
    struct mem m = w_close(&w);
    struct zipread z;
    char why[WHY_CAP];
    for (size_t i = 0; i < m.len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            m.p[i] ^= (unsigned char)(1 << bit);
            int rc = zipread_open(m.p, m.len, &z, why, sizeof why);
            CHECK(rc == 0 || rc == ERR_INVALID || rc == ERR_TOOBIG);
            zipread_fini(&z);
            m.p[i] ^= (unsigned char)(1 << bit);
        }
    }
    free(m.p);
}

TEST(bomb_with_honest_header_is_refused_unread)
{
    struct mem m = write_bomb();
    CHECK(m.len < 200 * 1000);
    struct zipread z;
    char why[WHY_CAP];
    double t0 = now_s();
    ASSERT_EQ(zr_open(&m, &z, why), ERR_TOOBIG);
    CHECK(now_s() - t0 < 0.1); /* nothing inflated */
    CHECK(strstr(why, "bomb.txt") && strstr(why, "limit of a file") && strstr(why, "claimed"));
    free(m.p);
}

TEST(bomb_with_lying_header_stops_at_the_limit)
{
    struct mem m = write_bomb();
    patch_size(&m, 0, 1000); /* claims 1000 bytes; inflates to 50 MB */
    struct zipread z;
    char why[WHY_CAP];
    long rss0 = max_rss_kb();
    double t0 = now_s();
    ASSERT_EQ(zr_open(&m, &z, why), ERR_TOOBIG);
    CHECK(now_s() - t0 < 1.0);
    CHECK(max_rss_kb() - rss0 < 8 * 1024); /* about one file's limit, not 50 MB */
    CHECK(strstr(why, "bomb.txt") && strstr(why, "inflates to more than the 1000000-byte"));

    patch_size(&m, 0, 0xfffffff0u); /* claims 4 GB: refused before any allocation */
    ASSERT_EQ(zr_open(&m, &z, why), ERR_TOOBIG);
    CHECK(strstr(why, "claimed"));
    free(m.p);
}

TEST(size_lies_within_the_limits_are_corrupt)
{
    static char data[2000];
    memset(data, 'x', sizeof data);
    struct writer w = w_open();
    w_add(&w, "x.txt", data, sizeof data, ZIP_CM_DEFLATE);
    struct mem m = w_close(&w);
    struct zipread z;
    char why[WHY_CAP];
    patch_size(&m, 0, 1000); /* claims less than it holds (libzip 1.7.3 does not notice) */
    ASSERT_EQ(zr_open(&m, &z, why), ERR_INVALID);
    CHECK(strstr(why, "x.txt: inflates to 2000 bytes, its headers say 1000"));
    patch_size(&m, 0, 3000); /* claims more */
    ASSERT_EQ(zr_open(&m, &z, why), ERR_INVALID);
    CHECK(strstr(why, "its headers say 3000"));
    patch_size(&m, 0, 2000);
    ASSERT_EQ(zr_open(&m, &z, why), 0);
    zipread_fini(&z);
    free(m.p);
}

TEST(entries_limit)
{
    struct zipread z;
    char why[WHY_CAP];
    for (int extra = 0; extra <= 1; extra++) {
        struct writer w = w_open();
        w_dir(&w, "d/"); /* directories count too */
        for (int i = 0; i < ZIPREAD_MAX_ENTRIES - 1 + extra; i++) {
            char name[32];
            snprintf(name, sizeof name, "d/f%03d.lua", i);
            w_add(&w, name, "", 0, ZIP_CM_STORE);
        }
        struct mem m = w_close(&w);
        if (extra) {
            ASSERT_EQ(zr_open(&m, &z, why), ERR_TOOBIG);
            CHECK(strstr(why, "more than 256 entries"));
        } else {
            ASSERT_EQ(zr_open(&m, &z, why), 0);
            ASSERT_EQ(z.count, ZIPREAD_MAX_ENTRIES - 1);
            zipread_fini(&z);
        }
        free(m.p);
    }
}

TEST(file_limit)
{
    static char data[ZIPREAD_MAX_FILE_BYTES + 1];
    memset(data, 'a', sizeof data);
    struct writer w = w_open();
    w_add(&w, "at-limit.txt", data, ZIPREAD_MAX_FILE_BYTES, ZIP_CM_DEFLATE);
    struct mem m = w_close(&w);
    struct zipread z;
    char why[WHY_CAP];
    ASSERT_EQ(zr_open(&m, &z, why), 0);
    ASSERT_EQ(z.files[0].len, ZIPREAD_MAX_FILE_BYTES);
    zipread_fini(&z);
    free(m.p);

    w = w_open();
    w_add(&w, "past-limit.txt", data, ZIPREAD_MAX_FILE_BYTES + 1, ZIP_CM_STORE);
    m = w_close(&w);
    ASSERT_EQ(zr_open(&m, &z, why), ERR_TOOBIG);
    CHECK(strstr(why, "past-limit.txt") && strstr(why, "limit of a file"));
    patch_size(&m, 0, 10); /* the same found while reading */
    ASSERT_EQ(zr_open(&m, &z, why), ERR_TOOBIG);
    CHECK(strstr(why, "inflates to more than the 1000000-byte limit of a file"));
    free(m.p);
}

/* An archive of files files of ZIPREAD_MAX_FILE_BYTES each, then a 10-byte "tail.txt". */
static struct mem write_full_files(int files)
{
    static char data[ZIPREAD_MAX_FILE_BYTES];
    memset(data, 'b', sizeof data);
    struct writer w = w_open();
    for (int i = 0; i < files; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%02d.txt", i);
        w_add(&w, name, data, sizeof data, ZIP_CM_DEFLATE);
    }
    w_add(&w, "tail.txt", "0123456789", 10, ZIP_CM_STORE);
    return w_close(&w);
}

TEST(total_limit)
{
    enum { FULL = ZIPREAD_MAX_TOTAL_BYTES / ZIPREAD_MAX_FILE_BYTES };
    struct zipread z;
    char why[WHY_CAP];
    struct mem m = write_full_files(FULL - 1); /* 15 MB and 10 bytes */
    ASSERT_EQ(zr_open(&m, &z, why), 0);
    ASSERT_EQ(z.count, FULL);
    zipread_fini(&z);
    free(m.p);

    m = write_full_files(FULL); /* 16 MB and 10 bytes */
    ASSERT_EQ(zr_open(&m, &z, why), ERR_TOOBIG);
    CHECK(strstr(why, "total limit") && strstr(why, "claimed"));
    patch_size(&m, FULL, 0); /* the same found while reading the last file */
    ASSERT_EQ(zr_open(&m, &z, why), ERR_TOOBIG);
    CHECK(strstr(why, "tail.txt: the files inflate to more than the 16000000-byte total"));
    free(m.p);
}

TEST(corrupt_data_and_crc_are_refused)
{
    static char text[5000];
    uint32_t x = 7;
    for (size_t i = 0; i < sizeof text; i++) {
        x = x * 1103515245 + 12345;
        text[i] = "abcdefghij \n"[(x >> 16) % 12];
    }
    struct writer w = w_open();
    w_add(&w, "stored.txt", "hello world", 11, ZIP_CM_STORE);
    w_add(&w, "deflated.txt", text, sizeof text, ZIP_CM_DEFLATE);
    struct mem m = w_close(&w);
    struct zipread z;
    char why[WHY_CAP];

    m.p[data_offset(&m, 0) + 4] ^= 0x20; /* "hellO world" */
    ASSERT_EQ(zr_open(&m, &z, why), ERR_INVALID);
    CHECK(strstr(why, "stored.txt: CRC-32 does not match"));
    m.p[data_offset(&m, 0) + 4] ^= 0x20;
    ASSERT_EQ(zr_open(&m, &z, why), 0);
    zipread_fini(&z);

    uint32_t crc = get32(m.p + cd_entry(&m, 0) + 16);
    patch_crc(&m, 0, crc ^ 1);
    ASSERT_EQ(zr_open(&m, &z, why), ERR_INVALID);
    CHECK(strstr(why, "CRC-32"));
    patch_crc(&m, 0, crc);

    size_t mid = data_offset(&m, 1) + get32(m.p + cd_entry(&m, 1) + 20) / 2;
    m.p[mid] ^= 0x55;
    ASSERT_EQ(zr_open(&m, &z, why), ERR_INVALID);
    CHECK(strstr(why, "deflated.txt: "));
    free(m.p);
}

TEST(encrypted_files_are_refused)
{
    const zip_uint16_t methods[] = {ZIP_EM_AES_256, ZIP_EM_AES_128, ZIP_EM_TRAD_PKWARE};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        CHECK(zip_encryption_method_supported(methods[i], 1));
        struct writer w = w_open();
        w_add(&w, "plain.lua", "return 1\n", 9, ZIP_CM_DEFLATE);
        zip_uint64_t idx = w_add(&w, "secret.lua", "return 2\n", 9, ZIP_CM_DEFLATE);
        CHECK(zip_file_set_encryption(w.za, idx, methods[i], "password") == 0);
        struct mem m = w_close(&w);
        struct zipread z;
        char why[WHY_CAP];
        ASSERT_EQ(zr_open(&m, &z, why), ERR_INVALID);
        CHECK(strstr(why, "secret.lua: encrypted"));
        free(m.p);
    }
}

TEST(methods_other_than_stored_and_deflate_are_refused)
{
    struct writer w = w_open();
    w_add(&w, "a.lua", "return 1\n", 9, ZIP_CM_BZIP2);
    struct mem m = w_close(&w);
    struct zipread z;
    char why[WHY_CAP];
    ASSERT_EQ(zr_open(&m, &z, why), ERR_INVALID);
    CHECK(strstr(why, "a.lua: compression method 12 (bzip2)"));
    patch_method(&m, 0, ZIP_CM_LZMA);
    ASSERT_EQ(zr_open(&m, &z, why), ERR_INVALID);
    CHECK(strstr(why, "method 14 (lzma)"));
    patch_method(&m, 0, 93);
    ASSERT_EQ(zr_open(&m, &z, why), ERR_INVALID);
    CHECK(strstr(why, "method 93 (zstd)"));
    free(m.p);
}

TEST(macos_junk_is_skipped)
{
    struct writer w = w_open();
    w_add(&w, "proj/a.lua", "a", 1, ZIP_CM_DEFLATE);
    w_add(&w, "proj/._a.lua", "fork", 4, ZIP_CM_DEFLATE);
    w_add(&w, "._top", "fork", 4, ZIP_CM_STORE);
    w_dir(&w, "__MACOSX/");
    w_dir(&w, "__MACOSX/proj/");
    w_add(&w, "__MACOSX/proj/._a.lua", "fork", 4, ZIP_CM_DEFLATE);
    w_add(&w, "__MACOSX/anything", "x", 1, ZIP_CM_STORE);
    w_add(&w, "proj/x._y.lua", "kept", 4, ZIP_CM_STORE); /* "._" not at the start */
    w_add(&w, "proj/__MACOSX/b.lua", "kept", 4, ZIP_CM_STORE); /* only at the top */
    struct mem m = w_close(&w);
    struct zipread z;
    char why[WHY_CAP];
    ASSERT_EQ(zr_open(&m, &z, why), 0);
    ASSERT_EQ(z.count, 3);
    ASSERT_STR(z.files[0].name, "proj/a.lua");
    ASSERT_STR(z.files[1].name, "proj/x._y.lua");
    ASSERT_STR(z.files[2].name, "proj/__MACOSX/b.lua");
    zipread_fini(&z);
    free(m.p);
}

/* zipread_open on a one-file archive whose file is called name. */
static int open_named(const char *name, struct zipread *z, char *why)
{
    struct writer w = w_open();
    w_add(&w, name, "x", 1, ZIP_CM_STORE);
    struct mem m = w_close(&w);
    int rc = zr_open(&m, z, why);
    free(m.p);
    return rc;
}

TEST(names)
{
    struct zipread z;
    char why[WHY_CAP];
    char name[ZIPREAD_NAME_BYTES + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    ASSERT_EQ(open_named(name, &z, why), ERR_INVALID); /* 256 bytes */
    CHECK(strstr(why, "longer than 255 bytes"));
    name[ZIPREAD_NAME_BYTES] = '\0';
    ASSERT_EQ(open_named(name, &z, why), 0);
    ASSERT_STR(z.files[0].name, name);
    zipread_fini(&z);

    const char *good[] = {"caf\xc3\xa9.lua", "\xe6\x97\xa5\xe6\x9c\xac/\xf0\x9f\x98\x80.lua",
                          "../../etc/passwd", "/abs.lua", "sp ace.lua"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ASSERT_EQ(open_named(good[i], &z, why), 0);
        ASSERT_STR(z.files[0].name, good[i]);
        zipread_fini(&z);
    }
    const char *not_utf8[] = {"\xff.lua",          /* never in UTF-8 */
                              "\xe9t\xe9.lua",     /* Latin-1 */
                              "\xc0\xaf.lua",      /* overlong '/' */
                              "\xed\xa0\x80.lua",  /* a surrogate */
                              "\xf4\x90\x80\x80",  /* past U+10FFFF */
                              "cut\xe6\x97"};      /* cut short */
    for (size_t i = 0; i < sizeof not_utf8 / sizeof not_utf8[0]; i++) {
        ASSERT_EQ(open_named(not_utf8[i], &z, why), ERR_INVALID);
        CHECK(strstr(why, "not UTF-8"));
    }
    ASSERT_EQ(open_named("a\nb.lua", &z, why), ERR_INVALID);
    CHECK(strstr(why, "control character"));
    ASSERT_EQ(open_named("tab\t.lua", &z, why), ERR_INVALID);
    ASSERT_EQ(open_named("del\x7f.lua", &z, why), ERR_INVALID);
}

TEST(nul_in_a_name_becomes_a_space)
{
    /* libzip 1.7.3 replaces NUL bytes in names as it reads the directory: the name can be
     * neither truncated nor refused. Pinned so that a libzip change is noticed. */
    struct writer w = w_open();
    w_add(&w, "nul@here.lua", "x", 1, ZIP_CM_STORE);
    struct mem m = w_close(&w);
    ASSERT_EQ(replace_all(&m, "nul@here", "nul\0here", 8), 2); /* local and central */
    struct zipread z;
    char why[WHY_CAP];
    ASSERT_EQ(zr_open(&m, &z, why), 0);
    ASSERT_STR(z.files[0].name, "nul here.lua");
    zipread_fini(&z);
    free(m.p);
}

TEST(duplicate_names_are_refused)
{
    struct writer w = w_open();
    w_add(&w, "dup1.lua", "one", 3, ZIP_CM_STORE);
    w_add(&w, "dup2.lua", "two", 3, ZIP_CM_STORE);
    struct mem m = w_close(&w);
    ASSERT_EQ(replace_all(&m, "dup2.lua", "dup1.lua", 8), 2);
    struct zipread z;
    char why[WHY_CAP];
    ASSERT_EQ(zr_open(&m, &z, why), ERR_INVALID);
    CHECK(strstr(why, "dup1.lua: two files have this name"));
    free(m.p);
}

TEST(streamed_archives_are_read_by_their_directory)
{
    /* What Info-ZIP's zip writes to a pipe: local headers flagged as followed by a data
     * descriptor, with a zero CRC and a zero compressed size. */
    struct writer w = w_open();
    w_add(&w, "a.lua", "return 'streamed'\n", 18, ZIP_CM_DEFLATE);
    w_add(&w, "b.lua", "return 'stored'\n", 16, ZIP_CM_STORE);
    struct mem m = w_close(&w);
    for (size_t i = 0; i < 2; i++) {
        unsigned char *l = m.p + local_header(&m, i);
        put16(l + 6, get16(l + 6) | 8);
        put32(l + 14, 0);
        put32(l + 18, 0);
        put16(m.p + cd_entry(&m, i) + 8, get16(l + 6));
    }
    struct zipread z;
    char why[WHY_CAP];
    ASSERT_EQ(zr_open(&m, &z, why), 0);
    ASSERT_EQ(z.count, 2);
    expect_file(&z.files[0], "a.lua", "return 'streamed'\n", 18);
    expect_file(&z.files[1], "b.lua", "return 'stored'\n", 16);
    zipread_fini(&z);
    free(m.p);
}

TEST(stored_zip_as_last_file_is_read)
{
    /* Its end record lies where libzip looks for the outer one. */
    struct writer w = w_open();
    w_add(&w, "inner.lua", "return 'inner'\n", 15, ZIP_CM_DEFLATE);
    struct mem inner = w_close(&w);
    w = w_open();
    w_add(&w, "outer.lua", "return 'outer'\n", 15, ZIP_CM_DEFLATE);
    w_add(&w, "fixture.zip", inner.p, inner.len, ZIP_CM_STORE);
    struct mem m = w_close(&w);
    struct zipread z;
    char why[WHY_CAP];
    ASSERT_EQ(zr_open(&m, &z, why), 0);
    ASSERT_EQ(z.count, 2);
    expect_file(&z.files[1], "fixture.zip", inner.p, inner.len);
    zipread_fini(&z);
    free(m.p);
    free(inner.p);
}

TEST(end_record_signatures_limit)
{
    /* Signatures in the archive comment, each one an end record libzip must try. libzip
     * writes only UTF-8 comments: the signatures are patched in. */
    char comment[64] = "";
    for (int n = 1; n <= ZIPREAD_MAX_EOCD_RECORDS; n++) {
        strcat(comment, "SIG!....");
        struct writer w = w_open();
        w_add(&w, "a.lua", "a", 1, ZIP_CM_STORE);
        CHECK(zip_set_archive_comment(w.za, comment, (zip_uint16_t)strlen(comment)) == 0);
        struct mem m = w_close(&w);
        ASSERT_EQ(replace_all(&m, "SIG!", "PK\5\6", 4), n);
        struct zipread z;
        char why[WHY_CAP];
        if (n < ZIPREAD_MAX_EOCD_RECORDS) { /* n + 1 signatures in all */
            ASSERT_EQ(zr_open(&m, &z, why), 0);
            ASSERT_EQ(z.count, 1);
            zipread_fini(&z);
        } else {
            ASSERT_EQ(zr_open(&m, &z, why), ERR_TOOBIG);
            CHECK(strstr(why, "end-of-directory signatures"));
        }
        free(m.p);
    }
}

TEST(reasons_are_truncated_to_fit)
{
    struct zipread z;
    char why[8];
    memset(why, '#', sizeof why);
    ASSERT_EQ(zipread_open("garbage!", 8, &z, why, 5), ERR_INVALID);
    ASSERT_EQ(strlen(why), 4);
    ASSERT_EQ(why[5], '#');
}
