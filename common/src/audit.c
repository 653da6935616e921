/*  audit: the record of every write attempt. See audit.h. */
#include "audit.h"
#include "slog.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_FIELDS 14 //  field/value pairs of a stream entry

typedef struct {
    char *argv[3 + 2 * S_FIELDS + 4];
    int argc;
} s_entry_t;

struct audit_s {
    int fd;
    char *path;
    char *stream;
    rzloop_t *redis;
    zlistx_t *backlog; //  s_entry_t waiting for Redis
    uint64_t records, file_errors, dropped;
    int64_t error_logged;
};

//  A line being formatted: what does not fit in buf is counted, not written.
typedef struct {
    char *buf;
    size_t len, at;
} s_out_t;

static void s_put(s_out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void s_put(s_out_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->buf + (o->at < o->len ? o->at : o->len),
                      o->at < o->len ? o->len - o->at : 0, fmt, ap);
    va_end(ap);
    if (k > 0)
        o->at += (size_t)k;
}

//  ,"key": and a JSON string (or null)
static void s_put_str(s_out_t *o, const char *key, const char *s)
{
    s_put(o, ",\"%s\":", key);
    if (!s) {
        s_put(o, "null");
        return;
    }
    s_put(o, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            s_put(o, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            s_put(o, "\\u%04x", *p);
        else
            s_put(o, "%c", *p);
    }
    s_put(o, "\"");
}

static void s_put_num(s_out_t *o, const char *key, bool has, double v)
{
    if (has && isfinite(v))
        s_put(o, ",\"%s\":%.17g", key, v);
    else
        s_put(o, ",\"%s\":null", key);
}

size_t audit_format(const audit_rec_t *r, char *buf, size_t len)
{
    s_out_t o = {buf, len, 0};
    if (len)
        buf[0] = 0;
    s_put(&o, "{\"ts_ms\":%lld", (long long)r->ts_ms);
    s_put_str(&o, "via", r->via);
    s_put_str(&o, "user", r->user);
    s_put_str(&o, "key", r->key);
    s_put_str(&o, "client", r->client);
    s_put_str(&o, "tag", r->tag);
    s_put_str(&o, "area", r->area);
    s_put_num(&o, "old", r->has_old, r->old_value);
    s_put_str(&o, "old_quality", r->has_old ? r->old_quality : NULL);
    s_put_num(&o, "new", true, r->new_value);
    s_put_str(&o, "result", r->result);
    s_put_str(&o, "error", r->error);
    s_put(&o, "}");
    return o.at;
}

static int s_mkdirs(const char *path)
{
    char *dir = strdup(path);
    if (!dir)
        return -1;
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        for (char *p = dir + 1; *p; p++)
            if (*p == '/') {
                *p = 0;
                mkdir(dir, 0750);
                *p = '/';
            }
        mkdir(dir, 0750);
    }
    free(dir);
    return 0;
}

static void s_entry_free(void **item)
{
    s_entry_t *e = (s_entry_t *)*item;
    if (!e)
        return;
    for (int i = 0; i < e->argc; i++)
        free(e->argv[i]);
    free(e);
    *item = NULL;
}

audit_t *audit_new(const char *path, const char *stream, rzloop_t *redis)
{
    s_mkdirs(path);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return NULL;
    audit_t *self = (audit_t *)calloc(1, sizeof *self);
    if (!self) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    self->fd = fd;
    self->path = strdup(path);
    self->stream = strdup(stream ? stream : "");
    self->redis = redis;
    self->backlog = zlistx_new();
    zlistx_set_destructor(self->backlog, s_entry_free);
    return self;
}

void audit_set_redis(audit_t *self, rzloop_t *redis)
{
    self->redis = redis;
}

void audit_destroy(audit_t **self_p)
{
    audit_t *self = *self_p;
    if (!self)
        return;
    audit_flush(self);
    if (zlistx_size(self->backlog))
        slog_warn("audit: %zu stream entries never reached Redis (they are in %s)",
                  zlistx_size(self->backlog), self->path);
    zlistx_destroy(&self->backlog);
    close(self->fd);
    free(self->path);
    free(self->stream);
    free(self);
    *self_p = NULL;
}

static char *s_num(bool has, double v)
{
    char buf[40];
    if (has && isfinite(v))
        snprintf(buf, sizeof buf, "%.17g", v);
    else
        buf[0] = 0;
    return strdup(buf);
}

static void s_queue(audit_t *self, const audit_rec_t *r)
{
    if (!self->redis || !*self->stream)
        return;
    s_entry_t *e = (s_entry_t *)calloc(1, sizeof *e);
    if (!e)
        return;
    char ts[24];
    snprintf(ts, sizeof ts, "%lld", (long long)r->ts_ms);
    const char *head[] = {"XADD", self->stream, "MAXLEN", "~", NULL, "*"};
    char maxlen[16];
    snprintf(maxlen, sizeof maxlen, "%d", AUDIT_STREAM_MAXLEN);
    head[4] = maxlen;
    for (int i = 0; i < 6; i++)
        e->argv[e->argc++] = strdup(head[i]);
    const char *names[] = {"ts_ms", "via", "user",        "key", "client", "tag",
                           "area",  "old", "old_quality", "new", "result", "error"};
    char *values[12] = {
        strdup(ts),
        strdup(r->via ? r->via : ""),
        strdup(r->user ? r->user : ""),
        strdup(r->key ? r->key : ""),
        strdup(r->client ? r->client : ""),
        strdup(r->tag ? r->tag : ""),
        strdup(r->area ? r->area : ""),
        s_num(r->has_old, r->old_value),
        strdup(r->has_old && r->old_quality ? r->old_quality : ""),
        s_num(true, r->new_value),
        strdup(r->result ? r->result : ""),
        strdup(r->error ? r->error : ""),
    };
    for (int i = 0; i < 12; i++) {
        e->argv[e->argc++] = strdup(names[i]);
        e->argv[e->argc++] = values[i];
    }
    while (zlistx_size(self->backlog) >= AUDIT_BACKLOG) {
        zlistx_first(self->backlog);
        zlistx_delete(self->backlog, zlistx_cursor(self->backlog));
        self->dropped++;
    }
    zlistx_add_end(self->backlog, e);
}

void audit_flush(audit_t *self)
{
    if (!self || !self->redis)
        return;
    while (zlistx_size(self->backlog) && rzloop_connected(self->redis)) {
        s_entry_t *e = (s_entry_t *)zlistx_first(self->backlog);
        size_t lens[sizeof e->argv / sizeof e->argv[0]];
        for (int i = 0; i < e->argc; i++)
            lens[i] = e->argv[i] ? strlen(e->argv[i]) : 0;
        if (rzloop_command_argv(self->redis, e->argc, (const char **)e->argv, lens) != 0)
            break; //  its output is full or it went away: next time
        zlistx_delete(self->backlog, zlistx_cursor(self->backlog));
    }
}

int audit_write(audit_t *self, const audit_rec_t *r)
{
    char stack[2048];
    size_t need = audit_format(r, stack, sizeof stack);
    char *line = stack;
    if (need + 2 > sizeof stack) {
        line = (char *)malloc(need + 2);
        if (line)
            audit_format(r, line, need + 1);
        else
            line = stack; //  cut, but a line all the same
    }
    size_t n = strlen(line);
    line[n] = '\n';
    ssize_t w;
    do
        w = write(self->fd, line, n + 1);
    while (w < 0 && errno == EINTR);
    int rc = 0;
    if (w != (ssize_t)(n + 1)) {
        self->file_errors++;
        int64_t now = zclock_mono();
        if (now - self->error_logged >= 60000 || self->file_errors == 1) {
            slog_error("audit: cannot append to %s: %s (%llu records lost from the file so far)",
                       self->path, w < 0 ? strerror(errno) : "short write",
                       (unsigned long long)self->file_errors);
            self->error_logged = now;
        }
        rc = -1;
    }
    if (line != stack)
        free(line);
    self->records++;
    s_queue(self, r);
    audit_flush(self);
    return rc;
}

uint64_t audit_records(const audit_t *self)
{
    return self->records;
}

uint64_t audit_file_errors(const audit_t *self)
{
    return self->file_errors;
}

uint64_t audit_stream_dropped(const audit_t *self)
{
    return self->dropped;
}
