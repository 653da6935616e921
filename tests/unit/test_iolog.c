/*  Unit tests of iolog: the line format and its parser (round trip, every
    kind of malformed line), the writer (rotation by size, keep count and
    names, disabled means no I/O, the bounded buffer, a crash-cut last line,
    write errors), and the summary (percentiles on known data, the
    recommendation for late, tight and fine channels). Files live in a
    mkdtemp directory that each test removes.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "iolog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define T0 1795317255123LL //  2026-11-22T03:14:15.123Z

//  --------------------------------------------------------------------------
//  Helpers

typedef struct {
    char dir[64];
    char path[128];
} s_tmp_t;

static void s_tmp_init(s_tmp_t *t)
{
    strcpy(t->dir, "/tmp/test_iolog.XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/line2.log", t->dir);
}

static void s_tmp_cleanup(s_tmp_t *t)
{
    DIR *d = opendir(t->dir);
    assert_non_null(d);
    struct dirent *de;
    char p[512];
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", t->dir, de->d_name);
            assert_int_equal(unlink(p), 0);
        }
    closedir(d);
    assert_int_equal(rmdir(t->dir), 0);
}

static int s_files_in(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return n;
}

//  Size of a file, -1 if it does not exist.
static long s_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static char *s_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void s_spit(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

static int s_count_char(const char *s, char c)
{
    int n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static iolog_entry_t s_entry(int i)
{
    iolog_entry_t e = {.sent_ms = T0 + i,
                       .unit = 1,
                       .fc = 3,
                       .addr = 0,
                       .count = 10,
                       .request_bytes = 12,
                       .reply_bytes = 29,
                       .deadline_ms = 250,
                       .reply_ms = 212,
                       .outcome = IOLOG_OUT_OK};
    strcpy(e.device, "plc1");
    return e;
}

static void s_assert_entry_equal(const iolog_entry_t *a, const iolog_entry_t *b)
{
    assert_int_equal(a->sent_ms, b->sent_ms);
    assert_string_equal(a->device, b->device);
    assert_int_equal(a->unit, b->unit);
    assert_int_equal(a->fc, b->fc);
    assert_int_equal(a->addr, b->addr);
    assert_int_equal(a->count, b->count);
    assert_int_equal(a->request_bytes, b->request_bytes);
    assert_int_equal(a->reply_bytes, b->reply_bytes);
    assert_int_equal(a->deadline_ms, b->deadline_ms);
    assert_int_equal(a->reply_ms, b->reply_ms);
    assert_int_equal(a->outcome, b->outcome);
    assert_int_equal(a->exception, b->exception);
}

static int s_parse(const char *line, iolog_entry_t *e)
{
    return iolog_parse_line(line, strlen(line), e);
}

//  --------------------------------------------------------------------------
//  The line format

static void test_format_example_line(void **state)
{
    iolog_entry_t e = s_entry(0);
    e.reply_bytes = 25;
    e.deadline_ms = 250;
    e.reply_ms = 212;
    char buf[IOLOG_LINE_MAX];
    size_t n = iolog_format_line(&e, buf, sizeof buf);
    const char *want = "2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=0 count=10 req=12B "
                       "rep=25B deadline=250ms reply=212ms margin=+38ms ok\n";
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
    //  Late, no reply, exception, write timeout.
    e.reply_ms = 290;
    e.outcome = IOLOG_OUT_TIMEOUT;
    iolog_format_line(&e, buf, sizeof buf);
    assert_non_null(strstr(buf, " reply=290ms margin=-40ms timeout\n"));
    e.reply_ms = -1;
    iolog_format_line(&e, buf, sizeof buf);
    assert_non_null(strstr(buf, " deadline=250ms reply=none margin=none timeout\n"));
    e.reply_ms = 250;
    e.outcome = IOLOG_OUT_EXCEPTION;
    e.exception = 2;
    iolog_format_line(&e, buf, sizeof buf);
    assert_non_null(strstr(buf, " reply=250ms margin=+0ms exception=2\n"));
    e.reply_ms = -1;
    e.outcome = IOLOG_OUT_WRITE_TIMEOUT;
    iolog_format_line(&e, buf, sizeof buf);
    assert_non_null(strstr(buf, " reply=none margin=none write-timeout\n"));
    //  Truncation reports the full length, like snprintf.
    char small[10];
    assert_int_equal(iolog_format_line(&e, small, sizeof small), strlen(buf));
    assert_string_equal(small, "2026-11-2");
}

static void test_format_escapes_device_names(void **state)
{
    iolog_entry_t e = s_entry(0), back;
    strcpy(e.device, "pump 3%=\xc3\xa9\t");
    char buf[IOLOG_LINE_MAX];
    iolog_format_line(&e, buf, sizeof buf);
    assert_non_null(strstr(buf, " dev=pump%203%25=%C3%A9%09 unit=1 "));
    assert_int_equal(s_parse(buf, &back), 0);
    assert_string_equal(back.device, e.device);
    //  The longest name, every byte escaped, still fits a line.
    memset(e.device, ' ', IOLOG_DEVICE_MAX - 1);
    e.device[IOLOG_DEVICE_MAX - 1] = '\0';
    e.unit = 255;
    e.fc = 255;
    e.addr = 65535;
    e.count = 65535;
    e.request_bytes = UINT32_MAX;
    e.reply_bytes = UINT32_MAX;
    e.deadline_ms = IOLOG_TIME_MAX;
    e.reply_ms = 0;
    e.sent_ms = 253402300799999LL;
    size_t n = iolog_format_line(&e, buf, sizeof buf);
    assert_true(n < IOLOG_LINE_MAX);
    assert_int_equal(s_parse(buf, &back), 0);
    s_assert_entry_equal(&back, &e);
    //  Lowercase hex is accepted on input.
    assert_int_equal(
        s_parse("2026-11-22T03:14:15.123Z dev=a%c3%a9 unit=1 fc=3 addr=0 count=10 req=12B "
                "rep=25B deadline=250ms reply=212ms margin=+38ms ok",
                &back),
        0);
    assert_string_equal(back.device, "a\xc3\xa9");
}

static void test_round_trip(void **state)
{
    uint64_t rng = 12345;
    for (int i = 0; i < 5000; i++) {
        iolog_entry_t e;
        memset(&e, 0, sizeof e);
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t r = rng >> 11;
        e.sent_ms = (int64_t)(r % 253402300800000ull);
        size_t nlen = r % IOLOG_DEVICE_MAX;
        for (size_t k = 0; k < nlen; k++)
            e.device[k] = (char)(1 + (r >> (k % 40)) % 255);
        e.unit = (uint8_t)(r >> 3);
        e.fc = (uint8_t)(r >> 11);
        e.addr = (uint16_t)(r >> 19);
        e.count = (uint16_t)(r >> 27);
        e.request_bytes = (uint32_t)(r >> 13);
        e.reply_bytes = (uint32_t)(r >> 7);
        e.deadline_ms = (int64_t)(r % (IOLOG_TIME_MAX + 1ull));
        e.reply_ms = (r & 8) ? -1 : (int64_t)((r >> 5) % (IOLOG_TIME_MAX + 1ull));
        e.outcome = (iolog_outcome_t)(r % IOLOG_OUT_COUNT);
        e.exception = e.outcome == IOLOG_OUT_EXCEPTION ? (uint8_t)(r >> 40) : 0;
        char buf[IOLOG_LINE_MAX];
        size_t n = iolog_format_line(&e, buf, sizeof buf);
        iolog_entry_t back;
        assert_int_equal(iolog_parse_line(buf, n, &back), 0);
        s_assert_entry_equal(&back, &e);
        //  Without its newline too.
        assert_int_equal(iolog_parse_line(buf, n - 1, &back), 0);
        s_assert_entry_equal(&back, &e);
    }
}

static void test_time_fields(void **state)
{
    iolog_entry_t e = s_entry(0), back;
    const struct {
        int64_t ms;
        const char *text;
    } cases[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {1709251199999LL, "2024-02-29T23:59:59.999Z"},
        {951868800000LL, "2000-03-01T00:00:00.000Z"},
        {253402300799999LL, "9999-12-31T23:59:59.999Z"},
    };
    char buf[IOLOG_LINE_MAX];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        e.sent_ms = cases[i].ms;
        iolog_format_line(&e, buf, sizeof buf);
        assert_memory_equal(buf, cases[i].text, 24);
        assert_int_equal(s_parse(buf, &back), 0);
        assert_int_equal(back.sent_ms, cases[i].ms);
    }
    //  Out of range times are clamped when written.
    e.sent_ms = -5;
    iolog_format_line(&e, buf, sizeof buf);
    assert_memory_equal(buf, "1970-01-01T00:00:00.000Z", 24);
    //  Impossible dates and times are rejected.
    const char *bad[] = {
        "2023-02-29T00:00:00.000Z", "2100-02-29T00:00:00.000Z", "2026-13-01T00:00:00.000Z",
        "2026-00-01T00:00:00.000Z", "2026-04-31T00:00:00.000Z", "2026-01-00T00:00:00.000Z",
        "2026-01-01T24:00:00.000Z", "2026-01-01T00:60:00.000Z", "2026-01-01T00:00:60.000Z",
        "1969-12-31T23:59:59.999Z", "2026-01-01T00:00:00.00Z",  "2026-01-01T00:00:00.000z",
        "2026-1-01T00:00:00.000Z",  "2026-01-01 00:00:00.000Z"};
    const char *rest = " dev=plc1 unit=1 fc=3 addr=0 count=10 req=12B rep=25B deadline=250ms "
                       "reply=212ms margin=+38ms ok";
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(buf, sizeof buf, "%s%s", bad[i], rest);
        if (s_parse(buf, &back) == 0)
            fail_msg("accepted %s", bad[i]);
    }
    snprintf(buf, sizeof buf, "%s%s", "2024-02-29T12:00:00.000Z", rest);
    assert_int_equal(s_parse(buf, &back), 0);
}

static void test_malformed_lines_rejected(void **state)
{
    iolog_entry_t e;
    const char *good = "2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=0 count=10 req=12B "
                       "rep=25B deadline=250ms reply=212ms margin=+38ms ok\n";
    size_t n = strlen(good);
    assert_int_equal(iolog_parse_line(good, n, &e), 0);
    //  Every prefix (a line cut short by a crash) is rejected, except the
    //  whole line without its newline.
    for (size_t k = 0; k < n - 1; k++)
        if (iolog_parse_line(good, k, &e) == 0)
            fail_msg("accepted a prefix of %zu bytes", k);
    const char *bad[] = {
        "",
        "\n",
        "garbage",
        //  field changes
        "2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=250ms reply=212ms margin=+37ms ok", //  margin disagrees
        "2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=250ms reply=212ms margin=38ms ok", //  no sign
        "2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=250ms reply=none margin=+38ms timeout", //  margin without reply
        "2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=250ms reply=212ms margin=none ok", //  reply without margin
        "2026-11-22T03:14:15.123Z dev=plc1 unit=256 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=250ms reply=212ms margin=+38ms ok", //  unit out of range
        "2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=65536 count=10 req=12B rep=25B "
        "deadline=250ms reply=212ms margin=+38ms ok",
        "2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=0 count=10 req=4294967296B rep=25B "
        "deadline=250ms reply=212ms margin=+38ms ok",
        "2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=99999999999ms reply=212ms margin=+38ms ok", //  too many digits
        "2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=86400001ms reply=212ms margin=+86399789ms ok", //  over a day
        "2026-11-22T03:14:15.123Z dev=plc1 unit=-1 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=250ms reply=212ms margin=+38ms ok",
        "2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=0 count=10 req=12 rep=25B "
        "deadline=250ms reply=212ms margin=+38ms ok", //  missing unit suffix
        "2026-11-22T03:14:15.123Z dev=plc1 fc=3 unit=1 addr=0 count=10 req=12B rep=25B "
        "deadline=250ms reply=212ms margin=+38ms ok", //  fields out of order
        "2026-11-22T03:14:15.123Z  dev=plc1 unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=250ms reply=212ms margin=+38ms ok", //  two spaces
        "2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=250ms reply=212ms margin=+38ms ok ", //  trailing space
        "2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=250ms reply=212ms margin=+38ms okay",
        "2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=250ms reply=212ms margin=+38ms exception",
        "2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=250ms reply=212ms margin=+38ms exception=256",
        "2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=250ms reply=212ms margin=+38ms ok\n\n", //  two lines
        "2026-11-22T03:14:15.123Z dev=pl%2 unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=250ms reply=212ms margin=+38ms ok", //  cut escape
        "2026-11-22T03:14:15.123Z dev=pl%zz unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=250ms reply=212ms margin=+38ms ok", //  bad escape
        "2026-11-22T03:14:15.123Z dev=pl%00 unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=250ms reply=212ms margin=+38ms ok", //  NUL in a name
        "2026-11-22T03:14:15.123Z dev=pl\xc3\xa9 unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=250ms reply=212ms margin=+38ms ok", //  raw non-ASCII
        "2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
        "deadline=250ms reply=212ms margin=+38ms ok\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (s_parse(bad[i], &e) == 0)
            fail_msg("accepted bad line %zu: %s", i, bad[i]);
    //  A NUL byte inside an otherwise good line.
    char buf[IOLOG_LINE_MAX];
    memcpy(buf, good, n);
    buf[30] = '\0';
    assert_int_equal(iolog_parse_line(buf, n, &e), -1);
    //  63 bytes is the longest name; 64 is too long.
    char name[80];
    memset(name, 'a', 64);
    name[64] = '\0';
    snprintf(buf, sizeof buf,
             "2026-11-22T03:14:15.123Z dev=%s unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
             "deadline=250ms reply=212ms margin=+38ms ok",
             name);
    assert_int_equal(s_parse(buf, &e), -1);
    name[63] = '\0';
    snprintf(buf, sizeof buf,
             "2026-11-22T03:14:15.123Z dev=%s unit=1 fc=3 addr=0 count=10 req=12B rep=25B "
             "deadline=250ms reply=212ms margin=+38ms ok",
             name);
    assert_int_equal(s_parse(buf, &e), 0);
    assert_string_equal(e.device, name);
    assert_int_equal(iolog_parse_line(NULL, 0, &e), -1);
    assert_string_equal(iolog_outcome_name(IOLOG_OUT_WRITE_TIMEOUT), "write-timeout");
    assert_string_equal(iolog_outcome_name(IOLOG_OUT_COUNT), "?");
}

//  --------------------------------------------------------------------------
//  The writer

static size_t s_line_len(void)
{
    iolog_entry_t e = s_entry(0);
    char buf[IOLOG_LINE_MAX];
    return iolog_format_line(&e, buf, sizeof buf);
}

static void test_new_rejects_bad_arguments(void **state)
{
    assert_null(iolog_new(NULL, 100, 1));
    assert_null(iolog_new("", 100, 1));
    assert_null(iolog_new("/tmp/x", 0, 1));
    assert_null(iolog_new("/tmp/x", 100, -1));
    assert_null(iolog_new("/tmp/x", 100, 1000));
    iolog_t *log = iolog_new("/tmp/x", 100, 999);
    assert_non_null(log);
    assert_string_equal(iolog_path(log), "/tmp/x");
    assert_true(iolog_enabled(log));
    iolog_destroy(&log); //  nothing was logged: no file is created
    assert_null(log);
    iolog_destroy(&log);
    iolog_destroy(NULL);
}

static void test_rotation_sizes_keep_and_names(void **state)
{
    s_tmp_t t;
    s_tmp_init(&t);
    size_t L = s_line_len();
    //  Three lines fit, a fourth would not.
    iolog_t *log = iolog_new(t.path, 3 * L + L / 2, 2);
    for (int i = 1; i <= 10; i++) {
        iolog_entry_t e = s_entry(i);
        assert_int_equal(iolog_request(log, &e), 0);
        if (i % 3 == 0)
            assert_int_equal(iolog_flush(log), 0); //  flushes of several lines too
    }
    assert_int_equal(iolog_flush(log), 0);
    //  Lines 1-3 rotated out of path.2 and dropped; 4-6 in path.2, 7-9 in path.1, 10 in path.
    char p1[160], p2[160], p3[160];
    snprintf(p1, sizeof p1, "%s.1", t.path);
    snprintf(p2, sizeof p2, "%s.2", t.path);
    snprintf(p3, sizeof p3, "%s.3", t.path);
    assert_int_equal(s_size(t.path), (long)L);
    assert_int_equal(s_size(p1), (long)(3 * L));
    assert_int_equal(s_size(p2), (long)(3 * L));
    assert_int_equal(s_size(p3), -1);
    assert_int_equal(s_files_in(t.dir), 3);
    iolog_entry_t back;
    char *text = s_slurp(p2);
    assert_int_equal(iolog_parse_line(text, L, &back), 0);
    assert_int_equal(back.sent_ms, T0 + 4);
    free(text);
    text = s_slurp(t.path);
    assert_int_equal(s_parse(text, &back), 0);
    assert_int_equal(back.sent_ms, T0 + 10);
    free(text);
    iolog_counters_t c;
    iolog_counters(log, &c);
    assert_int_equal(c.lines, 10);
    assert_int_equal(c.bytes, 10 * L);
    assert_int_equal(c.rotations, 3);
    assert_int_equal(c.dropped, 0);
    assert_int_equal(c.pending, 0);
    iolog_destroy(&log);

    //  A new writer appends to the existing file and goes on rotating.
    log = iolog_new(t.path, 3 * L + L / 2, 2);
    for (int i = 11; i <= 13; i++) {
        iolog_entry_t e = s_entry(i);
        iolog_request(log, &e);
    }
    iolog_destroy(&log);                         //  flushes
    assert_int_equal(s_size(t.path), (long)L);   //  13
    assert_int_equal(s_size(p1), (long)(3 * L)); //  10-12
    text = s_slurp(p1);
    assert_int_equal(iolog_parse_line(text, L, &back), 0);
    assert_int_equal(back.sent_ms, T0 + 10);
    free(text);
    s_tmp_cleanup(&t);
}

static void test_rotation_keep_zero_and_exact_fit(void **state)
{
    s_tmp_t t;
    s_tmp_init(&t);
    size_t L = s_line_len();
    //  Exactly three lines fit: the file reaches max_bytes, never more.
    iolog_t *log = iolog_new(t.path, 3 * L, 0);
    for (int i = 0; i < 7; i++) {
        iolog_entry_t e = s_entry(i);
        iolog_request(log, &e);
    }
    assert_int_equal(iolog_flush(log), 0);
    assert_int_equal(s_size(t.path), (long)L); //  lines 0-2, 3-5 dropped; 6 remains
    assert_int_equal(s_files_in(t.dir), 1);    //  keep 0: no old files
    iolog_counters_t c;
    iolog_counters(log, &c);
    assert_int_equal(c.rotations, 2);
    iolog_destroy(&log);
    s_tmp_cleanup(&t);
}

static void test_line_longer_than_max_goes_alone(void **state)
{
    s_tmp_t t;
    s_tmp_init(&t);
    size_t L = s_line_len();
    iolog_t *log = iolog_new(t.path, 10, 1);
    for (int i = 0; i < 3; i++) {
        iolog_entry_t e = s_entry(i);
        iolog_request(log, &e);
    }
    assert_int_equal(iolog_flush(log), 0);
    char p1[160];
    snprintf(p1, sizeof p1, "%s.1", t.path);
    assert_int_equal(s_size(t.path), (long)L);
    assert_int_equal(s_size(p1), (long)L);
    assert_int_equal(s_files_in(t.dir), 2);
    iolog_destroy(&log);
    s_tmp_cleanup(&t);
}

static void test_disabled_log_writes_nothing(void **state)
{
    s_tmp_t t;
    s_tmp_init(&t);
    iolog_t *log = iolog_new(t.path, 1 << 20, 3);
    iolog_set_enabled(log, false);
    assert_false(iolog_enabled(log));
    for (int i = 0; i < 100; i++) {
        iolog_entry_t e = s_entry(i);
        assert_int_equal(iolog_request(log, &e), 0);
    }
    assert_int_equal(iolog_flush(log), 0);
    iolog_counters_t c;
    iolog_counters(log, &c);
    assert_int_equal(c.pending, 0);
    assert_int_equal(c.lines, 0);
    assert_int_equal(s_files_in(t.dir), 0);
    //  On, one line; off flushes it and closes; lines while off are not logged.
    iolog_set_enabled(log, true);
    iolog_entry_t e = s_entry(1000);
    iolog_request(log, &e);
    iolog_set_enabled(log, false);
    assert_int_equal(s_size(t.path), (long)s_line_len());
    e = s_entry(1001);
    iolog_request(log, &e);
    iolog_set_enabled(log, true);
    e = s_entry(1002);
    iolog_request(log, &e);
    iolog_destroy(&log);
    char *text = s_slurp(t.path);
    assert_int_equal(s_count_char(text, '\n'), 2);
    assert_non_null(strstr(text, "03:14:16.123Z"));
    assert_null(strstr(text, "03:14:16.124Z"));
    assert_non_null(strstr(text, "03:14:16.125Z"));
    free(text);
    //  A log switched off for good never touches the disk, not even on destroy.
    assert_int_equal(unlink(t.path), 0);
    log = iolog_new(t.path, 1 << 20, 3);
    iolog_set_enabled(log, false);
    iolog_request(log, &e);
    iolog_destroy(&log);
    assert_int_equal(s_files_in(t.dir), 0);
    s_tmp_cleanup(&t);
}

static void test_bounded_buffer_drops_and_counts(void **state)
{
    s_tmp_t t;
    s_tmp_init(&t);
    size_t L = s_line_len();
    size_t fit = IOLOG_BUFFER_MAX / L;
    iolog_t *log = iolog_new(t.path, 64 << 20, 1);
    iolog_entry_t e = s_entry(0);
    for (size_t i = 0; i < fit; i++)
        assert_int_equal(iolog_request(log, &e), 0);
    for (int i = 0; i < 25; i++)
        assert_int_equal(iolog_request(log, &e), -1);
    iolog_counters_t c;
    iolog_counters(log, &c);
    assert_int_equal(c.dropped, 25);
    assert_int_equal(c.pending, fit * L);
    assert_true(c.pending <= IOLOG_BUFFER_MAX);
    assert_int_equal(iolog_flush(log), 0);
    iolog_counters(log, &c);
    assert_int_equal(c.lines, fit);
    assert_int_equal(c.pending, 0);
    assert_int_equal(s_size(t.path), (long)(fit * L));
    //  Room again after the flush.
    assert_int_equal(iolog_request(log, &e), 0);
    iolog_destroy(&log);
    s_tmp_cleanup(&t);
}

static void test_write_error_drops_and_recovers(void **state)
{
    s_tmp_t t;
    s_tmp_init(&t);
    char path[192];
    snprintf(path, sizeof path, "%s/missing/line2.log", t.dir);
    iolog_t *log = iolog_new(path, 1 << 20, 1);
    iolog_entry_t e = s_entry(0);
    for (int i = 0; i < 5; i++)
        iolog_request(log, &e);
    errno = 0;
    assert_int_equal(iolog_flush(log), -1);
    assert_int_equal(errno, ENOENT);
    iolog_counters_t c;
    iolog_counters(log, &c);
    assert_int_equal(c.write_errors, 1);
    assert_int_equal(c.dropped, 5);
    assert_int_equal(c.pending, 0);
    //  The directory appears: the next flush works.
    snprintf(path, sizeof path, "%s/missing", t.dir);
    assert_int_equal(mkdir(path, 0700), 0);
    iolog_request(log, &e);
    assert_int_equal(iolog_flush(log), 0);
    iolog_counters(log, &c);
    assert_int_equal(c.lines, 1);
    iolog_destroy(&log);
    snprintf(path, sizeof path, "%s/missing/line2.log", t.dir);
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof path, "%s/missing", t.dir);
    assert_int_equal(rmdir(path), 0);
    s_tmp_cleanup(&t);
}

static void test_deleted_file_is_recreated(void **state)
{
    s_tmp_t t;
    s_tmp_init(&t);
    iolog_t *log = iolog_new(t.path, 1 << 20, 1);
    iolog_entry_t e = s_entry(0);
    iolog_request(log, &e);
    iolog_flush(log);
    assert_int_equal(unlink(t.path), 0); //  an engineer clears the log
    iolog_request(log, &e);
    iolog_flush(log);
    assert_int_equal(s_size(t.path), (long)s_line_len());
    //  Truncated from outside: the size is learned again.
    assert_int_equal(truncate(t.path, 0), 0);
    iolog_request(log, &e);
    iolog_flush(log);
    assert_int_equal(s_size(t.path), (long)s_line_len());
    iolog_destroy(&log);
    s_tmp_cleanup(&t);
}

static void test_crash_cut_line_stays_one_bad_line(void **state)
{
    s_tmp_t t;
    s_tmp_init(&t);
    char line[IOLOG_LINE_MAX];
    iolog_entry_t e = s_entry(0);
    size_t n = iolog_format_line(&e, line, sizeof line);
    //  A file with one good line and half a line, as a crash leaves it.
    char text[2 * IOLOG_LINE_MAX];
    memcpy(text, line, n);
    memcpy(text + n, line, n / 2);
    s_spit(t.path, text, n + n / 2);
    iolog_summary_t *sum = iolog_summary_new();
    assert_int_equal(iolog_summary_add_file(sum, t.path), 0);
    iolog_stats_t st;
    iolog_summary_stats(sum, &st);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.bad_lines, 1); //  the cut last line
    iolog_summary_destroy(&sum);
    //  The writer ends the cut line before appending its own.
    iolog_t *log = iolog_new(t.path, 1 << 20, 1);
    iolog_request(log, &e);
    iolog_destroy(&log);
    sum = iolog_summary_new();
    assert_int_equal(iolog_summary_add_file(sum, t.path), 0);
    iolog_summary_stats(sum, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.bad_lines, 1);
    iolog_summary_destroy(&sum);
    s_tmp_cleanup(&t);
}

static void test_hostile_file_is_counted_not_fatal(void **state)
{
    s_tmp_t t;
    s_tmp_init(&t);
    //  Random bytes with newlines, a NUL, and one line far longer than any of ours.
    size_t n = 300000;
    char *junk = malloc(n);
    uint32_t x = 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (char)(x >> 16);
    }
    memset(junk + 1000, 'a', 100000);
    junk[999] = '\n';
    junk[101000] = '\n';
    junk[500] = '\0';
    s_spit(t.path, junk, n);
    free(junk);
    iolog_summary_t *sum = iolog_summary_new();
    assert_int_equal(iolog_summary_add_file(sum, t.path), 0);
    iolog_stats_t st;
    iolog_summary_stats(sum, &st);
    assert_int_equal(st.requests, 0);
    assert_true(st.bad_lines > 100);
    iolog_summary_destroy(&sum);
    s_tmp_cleanup(&t);
}

//  --------------------------------------------------------------------------
//  The summary

static void s_add(iolog_summary_t *sum, int64_t deadline, int64_t reply, iolog_outcome_t out)
{
    iolog_entry_t e = s_entry(0);
    e.deadline_ms = deadline;
    e.reply_ms = reply;
    e.outcome = out;
    assert_int_equal(iolog_summary_add(sum, &e), 0);
}

static void test_summary_percentiles_on_known_data(void **state)
{
    iolog_summary_t *sum = iolog_summary_new();
    //  Replies 100, 99, ..., 1 ms against a 100 ms deadline, shuffled by order.
    for (int i = 100; i >= 1; i--)
        s_add(sum, 100, i, i % 10 == 0 ? IOLOG_OUT_EXCEPTION : IOLOG_OUT_OK);
    //  Not timed: garbled and foreign replies, write timeouts, unanswered timeouts.
    s_add(sum, 100, 5000, IOLOG_OUT_MALFORMED);
    s_add(sum, 100, 3, IOLOG_OUT_MISMATCH);
    s_add(sum, 100, -1, IOLOG_OUT_WRITE_TIMEOUT);
    s_add(sum, 100, -1, IOLOG_OUT_TIMEOUT);
    iolog_stats_t st;
    iolog_summary_stats(sum, &st);
    assert_int_equal(st.requests, 104);
    assert_int_equal(st.ok, 90);
    assert_int_equal(st.exceptions, 10);
    assert_int_equal(st.malformed, 1);
    assert_int_equal(st.mismatches, 1);
    assert_int_equal(st.write_timeouts, 1);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.no_reply, 1);
    assert_int_equal(st.late_replies, 0);
    assert_int_equal(st.timed, 100);
    const int64_t reply[IOLOG_NPCT] = {50, 90, 95, 99, 100};
    const int64_t late[IOLOG_NPCT] = {-50, -10, -5, -1, 0};
    for (int i = 0; i < IOLOG_NPCT; i++) {
        assert_int_equal(st.reply_ms[i], reply[i]);
        assert_int_equal(st.late_ms[i], late[i]);
    }
    assert_int_equal(st.deadline_p50_ms, 100);
    assert_int_equal(st.first_ms, T0);
    //  A late reply of a timeout is timed: it becomes the new maximum.
    s_add(sum, 100, 180, IOLOG_OUT_TIMEOUT);
    iolog_summary_stats(sum, &st);
    assert_int_equal(st.timed, 101);
    assert_int_equal(st.late_replies, 1);
    assert_int_equal(st.reply_ms[IOLOG_PMAX], 180);
    assert_int_equal(st.late_ms[IOLOG_PMAX], 80);
    assert_int_equal(st.reply_ms[IOLOG_P50], 51); //  ceil(0.5 x 101) = 51st
    iolog_summary_destroy(&sum);
    assert_null(sum);
    iolog_summary_destroy(NULL);
}

static void test_summary_small_and_empty(void **state)
{
    iolog_summary_t *sum = iolog_summary_new();
    iolog_stats_t st;
    iolog_summary_stats(sum, &st);
    assert_int_equal(st.requests, 0);
    assert_int_equal(st.timed, 0);
    assert_int_equal(iolog_recommend_delay(&st, 200), 200);
    char text[2048];
    iolog_stats_text(&st, "line2", 200, text, sizeof text);
    assert_string_equal(text, "line2: no requests in the I/O log\n");
    //  One value: every percentile is it.
    s_add(sum, 300, 120, IOLOG_OUT_OK);
    iolog_summary_stats(sum, &st);
    for (int i = 0; i < IOLOG_NPCT; i++) {
        assert_int_equal(st.reply_ms[i], 120);
        assert_int_equal(st.late_ms[i], -180);
    }
    iolog_stats_text(&st, "line2", 200, text, sizeof text);
    assert_non_null(strstr(text, "few timed replies (1): the percentiles are rough\n"));
    iolog_summary_destroy(&sum);
    //  Only unanswered requests: nothing to judge.
    sum = iolog_summary_new();
    for (int i = 0; i < 30; i++)
        s_add(sum, 250, -1, IOLOG_OUT_TIMEOUT);
    iolog_summary_stats(sum, &st);
    assert_int_equal(iolog_recommend_delay(&st, 200), 200);
    iolog_stats_text(&st, "line2", 200, text, sizeof text);
    assert_non_null(strstr(text, "no timed replies on line2: the reply delay cannot be judged"));
    assert_non_null(strstr(text, "read timeouts 30 (0 answered late, 30 never)"));
    iolog_summary_destroy(&sum);
}

//  100 replies against a `deadline`, the slowest 5% `p95_late` past it or
//  earlier; the rest well before.
static void s_fill(iolog_summary_t *sum, int64_t deadline, int64_t p95_late)
{
    for (int i = 0; i < 94; i++)
        s_add(sum, deadline, deadline / 4 + i % 7, IOLOG_OUT_OK);
    //  The 95th value is the p95; the last five are later still.
    for (int i = 0; i < 6; i++)
        s_add(sum, deadline, deadline + p95_late + i * 3,
              deadline + p95_late + i * 3 > deadline ? IOLOG_OUT_TIMEOUT : IOLOG_OUT_OK);
}

static void test_recommendation_late(void **state)
{
    iolog_summary_t *sum = iolog_summary_new();
    //  Replies as late as 40 ms at p95: the p95 sits at the 95th value, so
    //  shift: 94 early values and the rest from +40.
    for (int i = 0; i < 94; i++)
        s_add(sum, 200, 100 + i % 50, IOLOG_OUT_OK);
    for (int i = 0; i < 6; i++)
        s_add(sum, 200, 240 + i * 5, IOLOG_OUT_TIMEOUT);
    iolog_stats_t st;
    iolog_summary_stats(sum, &st);
    assert_int_equal(st.late_ms[IOLOG_P95], 40);
    assert_int_equal(st.deadline_p50_ms, 200);
    //  95% in time at 240 ms; margin ceil(240 / 9) = 27: 267, rounded up to 270.
    assert_int_equal(iolog_recommend_delay(&st, 200), 270);
    char text[2048];
    size_t n = iolog_stats_text(&st, "line2", 200, text, sizeof text);
    assert_int_equal(n, strlen(text));
    assert_non_null(strstr(text, "p95 of replies arrive 40 ms after the deadline on line2: raise "
                                 "standard_reply_delay_ms from 200 to 270 (95% of replies are in "
                                 "time at 240 ms; the rest is margin)\n"));
    assert_non_null(strstr(text, "read timeouts 6 (6 answered late, 0 never)"));
    assert_non_null(strstr(text, "line2: 100 requests from 2026-11-22T03:14:15.123Z to "
                                 "2026-11-22T03:14:15.123Z\n"));
    assert_null(strstr(text, "rough"));
    //  The text can be truncated and still reports the full length.
    char small[32];
    assert_int_equal(iolog_stats_text(&st, "line2", 200, small, sizeof small), n);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_int_equal(iolog_stats_text(&st, "line2", 200, NULL, 0), n);
    iolog_summary_destroy(&sum);
}

static void test_recommendation_tight_and_at_deadline(void **state)
{
    //  Deadline 250 (200 delay + 50 transmission), p95 only 20 ms early: less than 25.
    iolog_summary_t *sum = iolog_summary_new();
    s_fill(sum, 250, -20);
    iolog_stats_t st;
    iolog_summary_stats(sum, &st);
    assert_int_equal(st.late_ms[IOLOG_P95], -20);
    //  In time at 180; margin ceil(230 / 9) = 26: 206 -> 210.
    assert_int_equal(iolog_recommend_delay(&st, 200), 210);
    char text[2048];
    iolog_stats_text(&st, "line2", 200, text, sizeof text);
    assert_non_null(strstr(text, "p95 of replies arrive only 20 ms before the deadline on line2 "
                                 "(less than 10% of the median deadline): raise "
                                 "standard_reply_delay_ms from 200 to 210"));
    iolog_summary_destroy(&sum);
    //  Exactly at the deadline.
    sum = iolog_summary_new();
    s_fill(sum, 200, 0);
    iolog_summary_stats(sum, &st);
    iolog_stats_text(&st, "line2", 200, text, sizeof text);
    assert_non_null(strstr(text, "p95 of replies arrive at the deadline on line2: raise "
                                 "standard_reply_delay_ms from 200 to 230"));
    iolog_summary_destroy(&sum);
    //  Exactly 10% before is fine; one ms less is not.
    sum = iolog_summary_new();
    s_fill(sum, 250, -25);
    iolog_summary_stats(sum, &st);
    assert_int_equal(iolog_recommend_delay(&st, 200), 200);
    iolog_summary_destroy(&sum);
    sum = iolog_summary_new();
    s_fill(sum, 250, -24);
    iolog_summary_stats(sum, &st);
    assert_true(iolog_recommend_delay(&st, 200) > 200);
    iolog_summary_destroy(&sum);
}

static void test_recommendation_fine(void **state)
{
    iolog_summary_t *sum = iolog_summary_new();
    s_fill(sum, 200, -120);
    s_add(sum, 200, -1, IOLOG_OUT_TIMEOUT); //  one that never answered
    iolog_stats_t st;
    iolog_summary_stats(sum, &st);
    assert_int_equal(st.late_ms[IOLOG_P95], -120);
    assert_int_equal(iolog_recommend_delay(&st, 200), 200);
    char text[2048];
    iolog_stats_text(&st, "line2", 200, text, sizeof text);
    assert_non_null(strstr(text, "replies arrive well within the deadline on line2 (p95 margin "
                                 "120 ms): standard_reply_delay_ms 200 is sufficient\n"));
    assert_non_null(
        strstr(text, "no reply at all to 1 of 101 requests: a longer delay does not help"));
    assert_non_null(strstr(text, "  reply time ms (100 timed): p50 "));
    assert_non_null(strstr(text, "  lateness ms (reply - deadline, + is late): p50 "));
    iolog_summary_destroy(&sum);
}

//  Whatever the data, the recommended delay takes p95 out of the tight zone.
static void test_recommendation_clears_the_tight_zone(void **state)
{
    for (int64_t deadline = 0; deadline <= 3000; deadline += 37)
        for (int64_t late = -deadline / 10; late <= 600; late += 13) {
            uint32_t delay = (uint32_t)(deadline * 4 / 5);
            iolog_stats_t st;
            memset(&st, 0, sizeof st);
            st.timed = 100;
            st.late_ms[IOLOG_P95] = late;
            st.deadline_p50_ms = deadline;
            uint32_t rec = iolog_recommend_delay(&st, delay);
            if (10 * late <= -deadline) {
                assert_int_equal(rec, delay);
                continue;
            }
            assert_true(rec > delay);
            assert_int_equal(rec % 10, 0);
            int64_t up = (int64_t)rec - delay;
            iolog_stats_t after = st;
            after.late_ms[IOLOG_P95] = late - up;
            after.deadline_p50_ms = deadline + up;
            assert_int_equal(iolog_recommend_delay(&after, rec), rec);
            //  And not wastefully: at most 10 ms rounding plus the larger margin.
            assert_true(up <= late + (deadline + late + 8) / 9 + 10 + 10);
        }
}

static void test_summarize_files(void **state)
{
    s_tmp_t t;
    s_tmp_init(&t);
    size_t L = s_line_len();
    iolog_t *log = iolog_new(t.path, 10 * L, 3);
    for (int i = 0; i < 25; i++) {
        iolog_entry_t e = s_entry(i);
        e.reply_ms = 100 + i;
        iolog_request(log, &e);
    }
    iolog_destroy(&log);
    //  path (5 lines), path.1 and path.2 (10 each); path.3 does not exist yet.
    char p[4][160];
    const char *paths[5];
    for (int i = 0; i < 4; i++) {
        if (i == 0)
            snprintf(p[i], sizeof p[i], "%s", t.path);
        else
            snprintf(p[i], sizeof p[i], "%s.%d", t.path, i);
        paths[i] = p[i];
    }
    //  A stray bad line in the current file.
    FILE *f = fopen(t.path, "ab");
    fputs("not a line of ours\n", f);
    fclose(f);
    iolog_stats_t st;
    char text[2048];
    assert_int_equal(iolog_summarize(paths, 4, "line2", 200, &st, text, sizeof text), 3);
    assert_int_equal(st.requests, 25);
    assert_int_equal(st.bad_lines, 1);
    assert_int_equal(st.first_ms, T0);
    assert_int_equal(st.last_ms, T0 + 24);
    assert_int_equal(st.reply_ms[IOLOG_PMAX], 124);
    assert_non_null(strstr(text, "  unreadable log lines skipped: 1\n"));
    assert_non_null(strstr(text, "standard_reply_delay_ms 200 is sufficient"));
    //  Stats or text alone.
    assert_int_equal(iolog_summarize(paths, 4, "line2", 200, NULL, text, sizeof text), 3);
    assert_int_equal(iolog_summarize(paths, 4, "line2", 200, &st, NULL, 0), 3);
    //  A path that exists but cannot be read as a file fails.
    paths[4] = t.dir;
    errno = 0;
    int rc = iolog_summarize(paths, 5, "line2", 200, &st, text, sizeof text);
    assert_int_equal(rc, -1);
    assert_int_not_equal(errno, 0);
    assert_int_equal(iolog_summarize(paths, 0, "line2", 200, &st, text, sizeof text), 0);
    assert_int_equal(st.requests, 0);
    s_tmp_cleanup(&t);
}

static void test_summary_add_line(void **state)
{
    iolog_summary_t *sum = iolog_summary_new();
    const char *good = "2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=0 count=10 req=12B "
                       "rep=25B deadline=250ms reply=212ms margin=+38ms ok\n";
    assert_int_equal(iolog_summary_add_line(sum, good, strlen(good)), 0);
    assert_int_equal(iolog_summary_add_line(sum, good, 40), 1);
    assert_int_equal(iolog_summary_add_line(sum, "", 0), 1);
    iolog_stats_t st;
    iolog_summary_stats(sum, &st);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.bad_lines, 2);
    assert_int_equal(st.reply_ms[IOLOG_P50], 212);
    assert_int_equal(st.late_ms[IOLOG_P50], -38);
    iolog_summary_destroy(&sum);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_example_line),
        cmocka_unit_test(test_format_escapes_device_names),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_time_fields),
        cmocka_unit_test(test_malformed_lines_rejected),
        cmocka_unit_test(test_new_rejects_bad_arguments),
        cmocka_unit_test(test_rotation_sizes_keep_and_names),
        cmocka_unit_test(test_rotation_keep_zero_and_exact_fit),
        cmocka_unit_test(test_line_longer_than_max_goes_alone),
        cmocka_unit_test(test_disabled_log_writes_nothing),
        cmocka_unit_test(test_bounded_buffer_drops_and_counts),
        cmocka_unit_test(test_write_error_drops_and_recovers),
        cmocka_unit_test(test_deleted_file_is_recreated),
        cmocka_unit_test(test_crash_cut_line_stays_one_bad_line),
        cmocka_unit_test(test_hostile_file_is_counted_not_fatal),
        cmocka_unit_test(test_summary_percentiles_on_known_data),
        cmocka_unit_test(test_summary_small_and_empty),
        cmocka_unit_test(test_recommendation_late),
        cmocka_unit_test(test_recommendation_tight_and_at_deadline),
        cmocka_unit_test(test_recommendation_fine),
        cmocka_unit_test(test_recommendation_clears_the_tight_zone),
        cmocka_unit_test(test_summarize_files),
        cmocka_unit_test(test_summary_add_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
