/*  iolog: the per-channel I/O log and its summary. See iolog.h for the
    contract and docs/iolog.md for the line format.

    The writer keeps one buffer of whole lines (allocated on the first line,
    so a log that is never switched on costs no memory) and appends it to the
    file in chunks that never push the file past max_bytes: a chunk ends at a
    line boundary, and when the next line does not fit the file is rotated
    first. Only a single line longer than max_bytes goes alone into a fresh
    file. The file is reopened when it was deleted from outside (st_nlink 0),
    its size is read again at every flush (it may have been truncated), and
    a file left without its final '\n' by a crash is ended before appending,
    so the half line stays one bad line for the summary.

    The summary keeps three arrays of the timed replies (reply time,
    lateness, deadline) and sorts them when asked for percentiles.
*/
#include "iolog.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

//  9999-12-31T23:59:59.999Z: the last instant of four-digit years.
#define S_WALL_MAX 253402300799999LL

//  --------------------------------------------------------------------------
//  Wall time as "YYYY-MM-DDTHH:MM:SS.mmmZ", by calendar arithmetic (proleptic
//  Gregorian, days counted from 1970-01-01), so neither direction depends on
//  the time zone or the C library's locale.

static int64_t s_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void s_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static unsigned s_days_in_month(int64_t y, unsigned m)
{
    static const unsigned days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

static char *s_digits(char *p, unsigned v, int width, char sep)
{
    for (int i = width - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
    p[width] = sep;
    return p + width + 1;
}

//  buf holds at least 25 bytes.
static void s_format_time(int64_t ms, char *buf)
{
    if (ms < 0)
        ms = 0;
    if (ms > S_WALL_MAX)
        ms = S_WALL_MAX;
    int64_t days = ms / 86400000, y;
    unsigned rest = (unsigned)(ms % 86400000), mo, d;
    s_civil_from_days(days, &y, &mo, &d);
    char *p = s_digits(buf, (unsigned)y, 4, '-');
    p = s_digits(p, mo, 2, '-');
    p = s_digits(p, d, 2, 'T');
    p = s_digits(p, rest / 3600000, 2, ':');
    p = s_digits(p, rest / 60000 % 60, 2, ':');
    p = s_digits(p, rest / 1000 % 60, 2, '.');
    p = s_digits(p, rest % 1000, 3, 'Z');
    *p = '\0';
}

//  --------------------------------------------------------------------------
//  Formatting

static const char *const s_outcome_names[IOLOG_OUT_COUNT] = {
    "ok", "exception", "timeout", "malformed", "mismatch", "write-timeout"};

const char *iolog_outcome_name(iolog_outcome_t outcome)
{
    return (unsigned)outcome < IOLOG_OUT_COUNT ? s_outcome_names[outcome] : "?";
}

static int64_t s_clamp_time(int64_t t)
{
    return t < 0 ? 0 : t > IOLOG_TIME_MAX ? IOLOG_TIME_MAX : t;
}

//  Bytes other than printable ASCII, the space and '%' are written as %XX.
static void s_escape(const char *name, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strnlen(name, IOLOG_DEVICE_MAX - 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c > 0x20 && c < 0x7f && c != '%')
            *out++ = (char)c;
        else {
            *out++ = '%';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 15];
        }
    }
    *out = '\0';
}

size_t iolog_format_line(const iolog_entry_t *e, char *buf, size_t len)
{
    char when[25], dev[3 * IOLOG_DEVICE_MAX], reply[24], margin[24], outcome[24];
    s_format_time(e->sent_ms, when);
    s_escape(e->device, dev);
    int64_t deadline = s_clamp_time(e->deadline_ms);
    if (e->reply_ms >= 0) {
        int64_t r = s_clamp_time(e->reply_ms);
        snprintf(reply, sizeof reply, "%lldms", (long long)r);
        snprintf(margin, sizeof margin, "%+lldms", (long long)(deadline - r));
    } else {
        strcpy(reply, "none");
        strcpy(margin, "none");
    }
    if (e->outcome == IOLOG_OUT_EXCEPTION)
        snprintf(outcome, sizeof outcome, "exception=%u", e->exception);
    else
        snprintf(outcome, sizeof outcome, "%s", iolog_outcome_name(e->outcome));
    int n = snprintf(buf, len,
                     "%s dev=%s unit=%u fc=%u addr=%u count=%u req=%luB rep=%luB deadline=%lldms "
                     "reply=%s margin=%s %s\n",
                     when, dev, e->unit, e->fc, e->addr, e->count, (unsigned long)e->request_bytes,
                     (unsigned long)e->reply_bytes, (long long)deadline, reply, margin, outcome);
    assert(n > 0 && n < IOLOG_LINE_MAX);
    return (size_t)n;
}

//  --------------------------------------------------------------------------
//  Parsing: a cursor over [p, end), each helper consumes or fails.

typedef struct {
    const char *p, *end;
} s_cur_t;

static bool s_lit(s_cur_t *c, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0)
        return false;
    c->p += n;
    return true;
}

//  Decimal digits, exactly `width` of them if width > 0, else 1 to 10.
static bool s_uint(s_cur_t *c, int width, uint64_t max, uint64_t *v)
{
    uint64_t x = 0;
    int n = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9' && (width ? n < width : n < 10)) {
        x = x * 10 + (uint64_t)(*c->p - '0');
        c->p++;
        n++;
    }
    if (n == 0 || (width && n != width) || x > max)
        return false;
    if (!width && c->p < c->end && *c->p >= '0' && *c->p <= '9')
        return false; //  more than 10 digits
    *v = x;
    return true;
}

static bool s_time(s_cur_t *c, int64_t *ms)
{
    uint64_t y, mo, d, h, mi, s, frac;
    if (!s_uint(c, 4, 9999, &y) || y < 1970 || !s_lit(c, "-") || !s_uint(c, 2, 12, &mo) || mo < 1 ||
        !s_lit(c, "-") || !s_uint(c, 2, 31, &d) || d < 1 ||
        d > s_days_in_month((int64_t)y, (unsigned)mo) || !s_lit(c, "T") || !s_uint(c, 2, 23, &h) ||
        !s_lit(c, ":") || !s_uint(c, 2, 59, &mi) || !s_lit(c, ":") || !s_uint(c, 2, 59, &s) ||
        !s_lit(c, ".") || !s_uint(c, 3, 999, &frac) || !s_lit(c, "Z"))
        return false;
    int64_t days = s_days_from_civil((int64_t)y, (unsigned)mo, (unsigned)d);
    *ms = days * 86400000 + (int64_t)(h * 3600000 + mi * 60000 + s * 1000 + frac);
    return true;
}

static int s_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static bool s_device(s_cur_t *c, char *out)
{
    size_t n = 0;
    while (c->p < c->end && *c->p != ' ') {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '%') {
            if (c->end - c->p < 3)
                return false;
            int hi = s_hexval(c->p[1]), lo = s_hexval(c->p[2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return false;
            ch = (unsigned char)(hi << 4 | lo);
            c->p += 3;
        } else if (ch > 0x20 && ch < 0x7f)
            c->p++;
        else
            return false;
        if (n + 1 >= IOLOG_DEVICE_MAX)
            return false;
        out[n++] = (char)ch;
    }
    out[n] = '\0';
    return true;
}

//  "<n>ms" or "none" (*v = -1).
static bool s_ms_or_none(s_cur_t *c, int64_t *v)
{
    uint64_t x;
    if (s_lit(c, "none")) {
        *v = -1;
        return true;
    }
    if (!s_uint(c, 0, IOLOG_TIME_MAX, &x) || !s_lit(c, "ms"))
        return false;
    *v = (int64_t)x;
    return true;
}

int iolog_parse_line(const char *line, size_t len, iolog_entry_t *e)
{
    if (!line || !e)
        return -1;
    s_cur_t c = {line, line + len};
    if (len > 0 && line[len - 1] == '\n')
        c.end--;
    memset(e, 0, sizeof *e);
    uint64_t unit, fc, addr, count, req, rep, deadline, mabs;
    int64_t reply, margin;
    if (!s_time(&c, &e->sent_ms) || !s_lit(&c, " dev=") || !s_device(&c, e->device) ||
        !s_lit(&c, " unit=") || !s_uint(&c, 0, 255, &unit) || !s_lit(&c, " fc=") ||
        !s_uint(&c, 0, 255, &fc) || !s_lit(&c, " addr=") || !s_uint(&c, 0, 65535, &addr) ||
        !s_lit(&c, " count=") || !s_uint(&c, 0, 65535, &count) || !s_lit(&c, " req=") ||
        !s_uint(&c, 0, UINT32_MAX, &req) || !s_lit(&c, "B rep=") ||
        !s_uint(&c, 0, UINT32_MAX, &rep) || !s_lit(&c, "B deadline=") ||
        !s_uint(&c, 0, IOLOG_TIME_MAX, &deadline) || !s_lit(&c, "ms reply=") ||
        !s_ms_or_none(&c, &reply) || !s_lit(&c, " margin="))
        return -1;
    if (s_lit(&c, "none"))
        margin = INT64_MIN;
    else {
        bool neg;
        if (s_lit(&c, "+"))
            neg = false;
        else if (s_lit(&c, "-"))
            neg = true;
        else
            return -1;
        if (!s_uint(&c, 0, IOLOG_TIME_MAX, &mabs) || !s_lit(&c, "ms"))
            return -1;
        margin = neg ? -(int64_t)mabs : (int64_t)mabs;
    }
    //  The margin is redundant: it must agree, or the line is not ours.
    if (reply < 0 ? margin != INT64_MIN : margin != (int64_t)deadline - reply)
        return -1;
    if (!s_lit(&c, " "))
        return -1;
    uint64_t code = 0;
    iolog_outcome_t out = IOLOG_OUT_COUNT;
    if (s_lit(&c, "exception=")) {
        if (!s_uint(&c, 0, 255, &code))
            return -1;
        out = IOLOG_OUT_EXCEPTION;
    } else {
        size_t rest = (size_t)(c.end - c.p);
        for (int i = 0; i < IOLOG_OUT_COUNT; i++)
            if (i != IOLOG_OUT_EXCEPTION && strlen(s_outcome_names[i]) == rest &&
                memcmp(c.p, s_outcome_names[i], rest) == 0) {
                out = (iolog_outcome_t)i;
                c.p += rest;
            }
    }
    if (out == IOLOG_OUT_COUNT || c.p != c.end)
        return -1;
    e->unit = (uint8_t)unit;
    e->fc = (uint8_t)fc;
    e->addr = (uint16_t)addr;
    e->count = (uint16_t)count;
    e->request_bytes = (uint32_t)req;
    e->reply_bytes = (uint32_t)rep;
    e->deadline_ms = (int64_t)deadline;
    e->reply_ms = reply;
    e->outcome = out;
    e->exception = (uint8_t)code;
    return 0;
}

//  --------------------------------------------------------------------------
//  The writer

struct _iolog_t {
    char *path;
    char *from, *to; //  scratch for rotated names, strlen(path) + 8 each
    size_t max_bytes;
    int keep;
    bool enabled;
    int fd;      //  -1 while closed
    size_t size; //  size of the open file
    char *buf;   //  whole lines, IOLOG_BUFFER_MAX bytes, allocated on first use
    size_t len;
    iolog_counters_t counters;
};

iolog_t *iolog_new(const char *path, size_t max_bytes, int keep)
{
    if (!path || !*path || max_bytes == 0 || keep < 0 || keep > 999)
        return NULL;
    iolog_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    size_t n = strlen(path) + 8;
    self->path = strdup(path);
    self->from = malloc(n);
    self->to = malloc(n);
    if (!self->path || !self->from || !self->to) {
        iolog_destroy(&self);
        return NULL;
    }
    self->max_bytes = max_bytes;
    self->keep = keep;
    self->enabled = true;
    self->fd = -1;
    return self;
}

static void s_close(iolog_t *self)
{
    if (self->fd >= 0)
        close(self->fd);
    self->fd = -1;
}

void iolog_destroy(iolog_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    iolog_t *self = *self_p;
    if (self->enabled)
        iolog_flush(self);
    s_close(self);
    free(self->buf);
    free(self->path);
    free(self->from);
    free(self->to);
    free(self);
    *self_p = NULL;
}

static int s_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

//  Open (or reopen) the file if needed and learn its size.
static int s_open(iolog_t *self)
{
    struct stat st;
    if (self->fd >= 0) {
        if (fstat(self->fd, &st) == 0 && st.st_nlink > 0) {
            self->size = (size_t)st.st_size; //  it may have been truncated from outside
            return 0;
        }
        s_close(self); //  deleted from outside: start a new file
    }
    self->fd = open(self->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (self->fd < 0)
        return -1;
    if (fstat(self->fd, &st) < 0) {
        int err = errno;
        s_close(self);
        errno = err;
        return -1;
    }
    self->size = (size_t)st.st_size;
    char last;
    if (self->size > 0 && pread(self->fd, &last, 1, st.st_size - 1) == 1 && last != '\n') {
        //  A line cut short by a crash: end it, so it stays one bad line.
        if (s_write_all(self->fd, "\n", 1) < 0) {
            int err = errno;
            s_close(self);
            errno = err;
            return -1;
        }
        self->size++;
    }
    return 0;
}

static int s_rotate(iolog_t *self)
{
    s_close(self);
    if (self->keep == 0) {
        if (unlink(self->path) < 0 && errno != ENOENT)
            return -1;
    } else {
        for (int i = self->keep - 1; i >= 1; i--) {
            sprintf(self->from, "%s.%d", self->path, i);
            sprintf(self->to, "%s.%d", self->path, i + 1);
            if (rename(self->from, self->to) < 0 && errno != ENOENT)
                return -1;
        }
        sprintf(self->to, "%s.1", self->path);
        if (rename(self->path, self->to) < 0 && errno != ENOENT)
            return -1;
    }
    self->counters.rotations++;
    return s_open(self);
}

static uint64_t s_count_lines(const char *p, size_t n)
{
    uint64_t lines = 0;
    const char *end = p + n;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p)))) {
        lines++;
        p++;
    }
    return lines;
}

int iolog_flush(iolog_t *self)
{
    assert(self);
    if (!self->enabled || self->len == 0)
        return 0;
    size_t pos = 0;
    if (s_open(self) < 0)
        goto failed;
    while (pos < self->len) {
        //  The longest run of whole lines that keeps the file within max_bytes.
        size_t room = self->size < self->max_bytes ? self->max_bytes - self->size : 0;
        size_t end = pos;
        uint64_t lines = 0;
        while (end < self->len) {
            const char *nl = memchr(self->buf + end, '\n', self->len - end);
            size_t next = nl ? (size_t)(nl - self->buf) + 1 : self->len;
            if (next - pos > room)
                break;
            end = next;
            lines++;
        }
        if (end == pos) {
            if (self->size > 0) {
                if (s_rotate(self) < 0)
                    goto failed;
                continue;
            }
            //  One line longer than max_bytes: it goes alone into the empty file.
            const char *nl = memchr(self->buf + pos, '\n', self->len - pos);
            end = nl ? (size_t)(nl - self->buf) + 1 : self->len;
            lines = 1;
        }
        if (s_write_all(self->fd, self->buf + pos, end - pos) < 0)
            goto failed;
        self->size += end - pos;
        self->counters.bytes += end - pos;
        self->counters.lines += lines;
        pos = end;
    }
    self->len = 0;
    return 0;
failed:;
    int err = errno;
    self->counters.write_errors++;
    self->counters.dropped += s_count_lines(self->buf + pos, self->len - pos);
    self->len = 0;
    s_close(self);
    errno = err;
    return -1;
}

void iolog_set_enabled(iolog_t *self, bool enabled)
{
    assert(self);
    if (self->enabled && !enabled) {
        iolog_flush(self);
        s_close(self);
    }
    self->enabled = enabled;
}

bool iolog_enabled(const iolog_t *self)
{
    return self->enabled;
}

int iolog_request(iolog_t *self, const iolog_entry_t *e)
{
    assert(self && e);
    if (!self->enabled)
        return 0;
    if (!self->buf) {
        self->buf = malloc(IOLOG_BUFFER_MAX);
        if (!self->buf) {
            self->counters.dropped++;
            return -1;
        }
    }
    char line[IOLOG_LINE_MAX];
    size_t n = iolog_format_line(e, line, sizeof line);
    if (self->len + n > IOLOG_BUFFER_MAX) {
        self->counters.dropped++;
        return -1;
    }
    memcpy(self->buf + self->len, line, n);
    self->len += n;
    return 0;
}

void iolog_counters(const iolog_t *self, iolog_counters_t *counters)
{
    *counters = self->counters;
    counters->pending = self->len;
}

const char *iolog_path(const iolog_t *self)
{
    return self->path;
}

//  --------------------------------------------------------------------------
//  The summary

typedef struct {
    int64_t *v;
    size_t n, cap;
} s_vec_t;

struct _iolog_summary_t {
    iolog_stats_t st; //  counts; percentiles filled by iolog_summary_stats
    s_vec_t reply, late, deadline;
    bool sorted;
};

static int s_push(s_vec_t *vec, int64_t x)
{
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 256;
        int64_t *v = realloc(vec->v, cap * sizeof *v);
        if (!v)
            return -1;
        vec->v = v;
        vec->cap = cap;
    }
    vec->v[vec->n++] = x;
    return 0;
}

static int s_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

//  Nearest rank: the ceil(p x n / 100)-th smallest of n sorted values.
static int64_t s_rank(const s_vec_t *vec, unsigned p)
{
    size_t k = (p * vec->n + 99) / 100;
    return vec->v[k ? k - 1 : 0];
}

iolog_summary_t *iolog_summary_new(void)
{
    return calloc(1, sizeof(iolog_summary_t));
}

void iolog_summary_destroy(iolog_summary_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    iolog_summary_t *self = *self_p;
    free(self->reply.v);
    free(self->late.v);
    free(self->deadline.v);
    free(self);
    *self_p = NULL;
}

int iolog_summary_add(iolog_summary_t *self, const iolog_entry_t *e)
{
    assert(self && e);
    iolog_stats_t *st = &self->st;
    bool timed = false;
    switch (e->outcome) {
    case IOLOG_OUT_OK:
        timed = e->reply_ms >= 0;
        break;
    case IOLOG_OUT_EXCEPTION:
        timed = e->reply_ms >= 0;
        break;
    case IOLOG_OUT_TIMEOUT:
        timed = e->reply_ms >= 0; //  a late reply shows how late
        break;
    default:
        break; //  a garbled or foreign reply says nothing about this request's timing
    }
    if (timed) {
        //  Reserve all three first, so a failure leaves the summary unchanged.
        if (s_push(&self->reply, e->reply_ms) < 0)
            return -1;
        if (s_push(&self->late, e->reply_ms - e->deadline_ms) < 0) {
            self->reply.n--;
            return -1;
        }
        if (s_push(&self->deadline, e->deadline_ms) < 0) {
            self->reply.n--;
            self->late.n--;
            return -1;
        }
        st->timed++;
        self->sorted = false;
    }
    switch (e->outcome) {
    case IOLOG_OUT_OK:
        st->ok++;
        break;
    case IOLOG_OUT_EXCEPTION:
        st->exceptions++;
        break;
    case IOLOG_OUT_TIMEOUT:
        st->timeouts++;
        if (e->reply_ms >= 0)
            st->late_replies++;
        else
            st->no_reply++;
        break;
    case IOLOG_OUT_MALFORMED:
        st->malformed++;
        break;
    case IOLOG_OUT_MISMATCH:
        st->mismatches++;
        break;
    case IOLOG_OUT_WRITE_TIMEOUT:
        st->write_timeouts++;
        break;
    default:
        break;
    }
    if (st->requests == 0 || e->sent_ms < st->first_ms)
        st->first_ms = e->sent_ms;
    if (st->requests == 0 || e->sent_ms > st->last_ms)
        st->last_ms = e->sent_ms;
    st->requests++;
    return 0;
}

int iolog_summary_add_line(iolog_summary_t *self, const char *line, size_t len)
{
    iolog_entry_t e;
    if (iolog_parse_line(line, len, &e) < 0) {
        self->st.bad_lines++;
        return 1;
    }
    return iolog_summary_add(self, &e);
}

int iolog_summary_add_file(iolog_summary_t *self, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    //  Lines are read into a fixed buffer: a longer one cannot be ours and
    //  is skipped whole, so no input makes this allocate without bound.
    static const size_t block_size = 64 * 1024;
    char *block = malloc(block_size);
    char line[IOLOG_LINE_MAX];
    if (!block) {
        fclose(f);
        errno = ENOMEM;
        return -1;
    }
    size_t ll = 0, n;
    bool overlong = false;
    int rc = 0;
    while (rc == 0 && (n = fread(block, 1, block_size, f)) > 0) {
        for (size_t i = 0; i < n && rc == 0; i++) {
            char c = block[i];
            if (c == '\n') {
                if (overlong)
                    self->st.bad_lines++;
                else if (iolog_summary_add_line(self, line, ll) < 0) {
                    errno = ENOMEM;
                    rc = -1;
                }
                ll = 0;
                overlong = false;
            } else if (ll < sizeof line)
                line[ll++] = c;
            else
                overlong = true;
        }
    }
    if (rc == 0 && ferror(f)) {
        errno = EIO;
        rc = -1;
    }
    if (rc == 0 && (ll > 0 || overlong))
        self->st.bad_lines++; //  the last line has no '\n': cut short
    int err = errno;
    free(block);
    fclose(f);
    errno = err;
    return rc;
}

void iolog_summary_stats(iolog_summary_t *self, iolog_stats_t *stats)
{
    static const unsigned pct[IOLOG_PMAX] = {50, 90, 95, 99};
    iolog_stats_t *st = &self->st;
    if (!self->sorted && self->reply.n > 0) {
        qsort(self->reply.v, self->reply.n, sizeof(int64_t), s_cmp);
        qsort(self->late.v, self->late.n, sizeof(int64_t), s_cmp);
        qsort(self->deadline.v, self->deadline.n, sizeof(int64_t), s_cmp);
        self->sorted = true;
    }
    memset(st->reply_ms, 0, sizeof st->reply_ms);
    memset(st->late_ms, 0, sizeof st->late_ms);
    st->deadline_p50_ms = 0;
    if (self->reply.n > 0) {
        for (int i = 0; i < IOLOG_PMAX; i++) {
            st->reply_ms[i] = s_rank(&self->reply, pct[i]);
            st->late_ms[i] = s_rank(&self->late, pct[i]);
        }
        st->reply_ms[IOLOG_PMAX] = self->reply.v[self->reply.n - 1];
        st->late_ms[IOLOG_PMAX] = self->late.v[self->late.n - 1];
        st->deadline_p50_ms = s_rank(&self->deadline, 50);
    }
    *stats = *st;
}

//  The p95 reply is "tight" when it arrives after the deadline or less than
//  10% of the median deadline before it.
static bool s_tight(const iolog_stats_t *st)
{
    return st->timed > 0 && 10 * st->late_ms[IOLOG_P95] > -st->deadline_p50_ms;
}

uint32_t iolog_recommend_delay(const iolog_stats_t *st, uint32_t reply_delay_ms)
{
    if (!s_tight(st))
        return reply_delay_ms;
    int64_t lateness = st->late_ms[IOLOG_P95], deadline = st->deadline_p50_ms;
    //  With the delay raised by x, the p95 lateness becomes lateness - x and
    //  the median deadline deadline + x. x = lateness + m puts that reply m
    //  before the deadline; m >= (deadline + x) / 10 solves to
    //  m >= (deadline + lateness) / 9.
    int64_t margin = (deadline + lateness + 8) / 9;
    if (margin < 10)
        margin = 10;
    int64_t v = (int64_t)reply_delay_ms + lateness + margin;
    v = (v + 9) / 10 * 10;
    if (v <= (int64_t)reply_delay_ms)
        v = (int64_t)reply_delay_ms + 10;
    if (v > IOLOG_TIME_MAX)
        v = IOLOG_TIME_MAX;
    return (uint32_t)v;
}

typedef struct {
    char *buf;
    size_t len, need;
} s_text_t;

static void s_cat(s_text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_cat(s_text_t *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool room = t->need < t->len;
    int n = vsnprintf(room ? t->buf + t->need : NULL, room ? t->len - t->need : 0, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->need += (size_t)n;
}

size_t iolog_stats_text(const iolog_stats_t *st, const char *channel, uint32_t reply_delay_ms,
                        char *text, size_t len)
{
    s_text_t t = {text, len, 0};
    if (len > 0)
        text[0] = '\0';
    if (!channel)
        channel = "?";
    if (st->requests == 0) {
        s_cat(&t, "%s: no requests in the I/O log", channel);
        if (st->bad_lines)
            s_cat(&t, " (unreadable log lines skipped: %llu)", (unsigned long long)st->bad_lines);
        s_cat(&t, "\n");
        return t.need;
    }
    char first[25], last[25];
    s_format_time(st->first_ms, first);
    s_format_time(st->last_ms, last);
    s_cat(&t, "%s: %llu requests from %s to %s\n", channel, (unsigned long long)st->requests, first,
          last);
    s_cat(&t,
          "  replies %llu (ok %llu, exception %llu), read timeouts %llu (%llu answered late, "
          "%llu never), write timeouts %llu, malformed %llu, mismatched %llu\n",
          (unsigned long long)(st->ok + st->exceptions), (unsigned long long)st->ok,
          (unsigned long long)st->exceptions, (unsigned long long)st->timeouts,
          (unsigned long long)st->late_replies, (unsigned long long)st->no_reply,
          (unsigned long long)st->write_timeouts, (unsigned long long)st->malformed,
          (unsigned long long)st->mismatches);
    if (st->bad_lines)
        s_cat(&t, "  unreadable log lines skipped: %llu\n", (unsigned long long)st->bad_lines);
    if (st->timed == 0) {
        s_cat(&t,
              "no timed replies on %s: the reply delay cannot be judged from this log; check "
              "the outstations, the link and the server\n",
              channel);
        return t.need;
    }
    const int64_t *r = st->reply_ms, *l = st->late_ms;
    s_cat(&t, "  reply time ms (%llu timed): p50 %lld p90 %lld p95 %lld p99 %lld max %lld\n",
          (unsigned long long)st->timed, (long long)r[IOLOG_P50], (long long)r[IOLOG_P90],
          (long long)r[IOLOG_P95], (long long)r[IOLOG_P99], (long long)r[IOLOG_PMAX]);
    s_cat(&t,
          "  lateness ms (reply - deadline, + is late): p50 %+lld p90 %+lld p95 %+lld p99 %+lld "
          "max %+lld; median deadline %lld ms\n",
          (long long)l[IOLOG_P50], (long long)l[IOLOG_P90], (long long)l[IOLOG_P95],
          (long long)l[IOLOG_P99], (long long)l[IOLOG_PMAX], (long long)st->deadline_p50_ms);
    int64_t late = l[IOLOG_P95];
    if (s_tight(st)) {
        uint32_t rec = iolog_recommend_delay(st, reply_delay_ms);
        if (late > 0)
            s_cat(&t, "p95 of replies arrive %lld ms after the deadline on %s", (long long)late,
                  channel);
        else if (late == 0)
            s_cat(&t, "p95 of replies arrive at the deadline on %s", channel);
        else
            s_cat(&t,
                  "p95 of replies arrive only %lld ms before the deadline on %s (less than 10%% "
                  "of the median deadline)",
                  (long long)-late, channel);
        s_cat(&t,
              ": raise standard_reply_delay_ms from %u to %u (95%% of replies are in time at "
              "%lld ms; the rest is margin)\n",
              reply_delay_ms, rec, (long long)reply_delay_ms + late);
    } else {
        s_cat(&t,
              "replies arrive well within the deadline on %s (p95 margin %lld ms): "
              "standard_reply_delay_ms %u is sufficient\n",
              channel, (long long)-late, reply_delay_ms);
    }
    if (st->timed < 20)
        s_cat(&t, "few timed replies (%llu): the percentiles are rough\n",
              (unsigned long long)st->timed);
    if (st->no_reply > 0)
        s_cat(&t,
              "no reply at all to %llu of %llu requests: a longer delay does not help those; "
              "check the outstations, the link and the server\n",
              (unsigned long long)st->no_reply, (unsigned long long)st->requests);
    return t.need;
}

int iolog_summarize(const char *const *paths, size_t npaths, const char *channel,
                    uint32_t reply_delay_ms, iolog_stats_t *stats, char *text, size_t len)
{
    iolog_summary_t *sum = iolog_summary_new();
    if (!sum) {
        errno = ENOMEM;
        return -1;
    }
    int files = 0;
    for (size_t i = 0; i < npaths; i++) {
        if (iolog_summary_add_file(sum, paths[i]) == 0)
            files++;
        else if (errno != ENOENT) {
            int err = errno;
            iolog_summary_destroy(&sum);
            errno = err;
            return -1;
        }
    }
    iolog_stats_t st;
    iolog_summary_stats(sum, &st);
    if (stats)
        *stats = st;
    if (len > 0)
        iolog_stats_text(&st, channel, reply_delay_ms, text, len);
    iolog_summary_destroy(&sum);
    return files;
}
