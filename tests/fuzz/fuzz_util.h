/*  fuzz_util: what the protobuf fuzz targets share.

    Records. An input is a sequence of records separated by FZ_SEP (4 bytes).
    The first byte of a record selects what the target does with it (each
    target says how), the rest is the payload: usually one protobuf frame.
    A record may be empty. tests/fuzz/seeds.py writes inputs in this form.

    Logs. This file is the slog module of the targets that include it (the
    linker then leaves common/src/slog.c out of the fuzz library): every
    line, of every level, is formatted, so ASan sees a freed or unterminated
    argument, but printed only when FUZZ_LOG is set in the environment.

    Time. The services' clocks are fz_now_ms, which a target sets to FZ_T0
    at the start of each input and moves only when a record says so, so the
    same input takes the same paths on every run: mclock_mono_ms() and
    mclock_wall_ms() are macros for it in every file included after this
    one (the wall clock starting at FZ_WALL_T0).

    Sockets. fz_endpoint() names a fresh inproc endpoint, so engines made
    and destroyed for each input never meet an endpoint still in use.
*/
#ifndef FUZZ_UTIL_H_INCLUDED
#define FUZZ_UTIL_H_INCLUDED

#include "mclock.h"
#include "slog.h"

#include <czmq.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FZ_SEP                                                                                     \
    "\xa5"                                                                                         \
    "FZ"                                                                                           \
    "\x5a"
#define FZ_SEP_LEN 4

static bool fz_log;

#define FZ_T0      1000000       //  fz_now_ms at the start of an input
#define FZ_WALL_T0 1700000000000 //  the wall clock then (2023-11-14)
static int64_t fz_now_ms;
static inline int64_t fz_mono_ms(void)
{
    return fz_now_ms;
}
static inline int64_t fz_wall_ms(void)
{
    return FZ_WALL_T0 + (fz_now_ms - FZ_T0);
}
#define mclock_mono_ms() fz_mono_ms()
#define mclock_wall_ms() fz_wall_ms()

static void fz_check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz: invariant broken: %s\n", what);
        abort();
    }
}

slog_level_t slog_level = SLOG_DEBUG;

void slog_init(const char *name, slog_level_t level)
{
    (void)name;
    (void)level; //  every level, always
}

int slog_parse_level(const char *text)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (text && strcasecmp(text, names[i]) == 0)
            return i;
    return -1;
}

void slog_raw(slog_level_t level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (fz_log)
        fprintf(stderr, "%c %s\n", "DIWE"[level & 3], line);
}

//  Once per process, from LLVMFuzzerInitialize. ZeroMQ frees a closed
//  socket later, in its own thread, so an input that makes and closes
//  sockets ends with more allocations than frees, and libFuzzer would run
//  every such input twice more to look for a leak (an eighth of the speed).
//  So unless the command line says otherwise, -detect_leaks=0 is added:
//  leaks are then reported when the run ends (LeakSanitizer at exit).
static void fz_init(int *argc, char ***argv)
{
    fz_log = getenv("FUZZ_LOG") != NULL;
    bool given = false;
    for (int i = 1; i < *argc; i++)
        given |= strncmp((*argv)[i], "-detect_leaks=", 14) == 0;
    if (!given) {
        static char *args[256];
        static char flag[] = "-detect_leaks=0";
        int n = *argc < 254 ? *argc : 254;
        for (int i = 0; i < n; i++)
            args[i] = (*argv)[i];
        args[n++] = flag;
        args[n] = NULL;
        *argc = n;
        *argv = args;
    }
    zsys_handler_set(NULL); //  libFuzzer, not czmq, looks after signals
    zsys_init();
}

//  The next record of an input: *sel the selector byte (0 for an empty
//  record), *rec and *len the payload. Returns false at the end.
typedef struct {
    const uint8_t *p;
    size_t left;
    bool done;
} fz_records_t;

static fz_records_t fz_records(const uint8_t *data, size_t size)
{
    return (fz_records_t){data, size, false};
}

static bool fz_next(fz_records_t *r, uint8_t *sel, const uint8_t **rec, size_t *len)
{
    if (r->done)
        return false;
    const uint8_t *end = memmem(r->p, r->left, FZ_SEP, FZ_SEP_LEN);
    size_t n = end ? (size_t)(end - r->p) : r->left;
    *sel = n ? r->p[0] : 0;
    *rec = n ? r->p + 1 : r->p;
    *len = n ? n - 1 : 0;
    if (end) {
        r->p = end + FZ_SEP_LEN;
        r->left -= n + FZ_SEP_LEN;
    } else
        r->done = true;
    return true;
}

//  A copy of a payload in a block of exactly its size (ASan sees overreads).
static uint8_t *fz_copy(const uint8_t *rec, size_t len)
{
    uint8_t *copy = (uint8_t *)malloc(len ? len : 1);
    if (len)
        memcpy(copy, rec, len);
    return copy;
}

//  Wait while more than `most` descriptors are open. ZeroMQ's reaper thread
//  destroys closed sockets (a descriptor each) behind the target's back;
//  when it falls behind, sockets pile up to ZeroMQ's limit and zsock_new()
//  fails. A target that makes sockets for every input calls this first.
static void fz_settle(int most)
{
    for (int tries = 0; tries < 5000; tries++) {
        DIR *d = opendir("/proc/self/fd");
        if (!d)
            return;
        int n = 0;
        while (readdir(d))
            n++;
        closedir(d);
        if (n <= most)
            return;
        zclock_sleep(1);
    }
}

static const char *fz_endpoint(const char *what)
{
    static char ep[96];
    static unsigned long n;
    snprintf(ep, sizeof ep, "inproc://fuzz-%s-%lu", what, ++n);
    return ep;
}

//  A DEALER with routing id `rid`, connected to `endpoint`.
static zsock_t *fz_dealer(const char *endpoint, const char *rid)
{
    zsock_t *s = zsock_new(ZMQ_DEALER);
    fz_check(s != NULL, "cannot make a DEALER");
    zsock_set_identity(s, rid);
    zsock_set_linger(s, 0);
    zsock_set_rcvtimeo(s, 0);
    //  zmq_connect: a target may replace zsock_connect (fuzz_clientreq does).
    int rc;
    do //  EINTR: libFuzzer's timer (see "Signals" below)
        rc = zmq_connect(zsock_resolve(s), endpoint);
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        fprintf(stderr, "fuzz: cannot connect a DEALER to %s: %s\n", endpoint, zmq_strerror(errno));
        fz_check(0, "cannot connect a DEALER");
    }
    return s;
}

//  A PAIR of connected sockets: what a target writes on `*in` a handler
//  reads from `*out` as if it came from its own socket.
static void fz_pair(zsock_t **in, zsock_t **out)
{
    const char *ep = fz_endpoint("pair");
    *out = zsock_new(ZMQ_PAIR);
    *in = zsock_new(ZMQ_PAIR);
    fz_check(*in && *out, "cannot make a PAIR");
    zsock_set_linger(*in, 0);
    zsock_set_linger(*out, 0);
    fz_check(zsock_bind(*out, "%s", ep) == 0, "cannot bind a PAIR");
    int rc;
    do //  EINTR: libFuzzer's timer (see "Signals" below)
        rc = zmq_connect(zsock_resolve(*in), ep);
    while (rc != 0 && errno == EINTR);
    fz_check(rc == 0, "cannot connect a PAIR");
}

//  Signals. libFuzzer's timer interrupts the process every second, and a
//  ZeroMQ call under way then fails with EINTR: the helpers below try again,
//  and fz_deliver() runs a handler again while its socket still has input
//  (a handler that was interrupted before it read its message).

//  Send `len` bytes as one frame, after `nempty` empty frames (a REQ's
//  delimiter), or two frames `topic` and the bytes when topic is not NULL.
static void fz_send_frames(zsock_t *s, int nempty, const char *topic, const uint8_t *data,
                           size_t len)
{
    void *h = zsock_resolve(s);
    int n = nempty + (topic ? 1 : 0) + 1;
    for (int i = 0; i < n; i++) {
        const void *p = i < nempty ? "" : (topic && i == nempty) ? topic : (const void *)data;
        size_t plen = i < nempty ? 0 : (topic && i == nempty) ? strlen(topic) : len;
        int rc;
        do
            rc = zmq_send(h, p, plen, i < n - 1 ? ZMQ_SNDMORE : 0);
        while (rc < 0 && errno == EINTR);
        if (rc < 0) {
            fprintf(stderr, "fuzz: cannot send on a %s: %s\n", zsock_type_str(s),
                    zmq_strerror(errno));
            fz_check(0, "cannot send a message");
        }
    }
}

static void fz_send(zsock_t *s, int nempty, const uint8_t *data, size_t len)
{
    fz_send_frames(s, nempty, NULL, data, len);
}

//  The next message waiting on `s`, or NULL when there is none.
static zmsg_t *fz_recv(zsock_t *s)
{
    for (int tries = 0; tries < 1000; tries++) {
        zmsg_t *m = zmsg_recv_nowait(s);
        if (m || errno != EINTR)
            return m;
    }
    return NULL;
}

static bool fz_readable(zsock_t *s)
{
    for (int tries = 0; tries < 1000; tries++) {
        int ev = zsock_events(s);
        if (ev >= 0)
            return (ev & ZMQ_POLLIN) != 0;
    }
    return false;
}

typedef int(fz_reader_fn)(zloop_t *loop, zsock_t *sock, void *arg);

static void fz_deliver(fz_reader_fn *fn, zsock_t *sock, void *arg)
{
    fn(NULL, sock, arg);
    for (int tries = 0; tries < 1000 && fz_readable(sock); tries++)
        fn(NULL, sock, arg);
}

#endif
