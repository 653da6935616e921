/*  scadactl: the command line for people.

    get TAG...      current value of tags, through the broker (one SUBSCRIBE)
    watch TAG...    live values through the broker, until Ctrl-C
    write TAG VALUE write a tag through the broker
    status          the site from its Redis keys: processes, devices, channels
    tail [TAG...]   follow the value and event stream of every I/O server
    iolog CHANNEL   switch a channel's I/O log, or summarize it
    alarms, ack, shelve, unshelve, disable, enable: the alarm service

    get and write with --direct skip the broker and ask the I/O servers'
    control sockets, best priority first (no broker needed).

    Exit codes: 0 ok, 1 runtime failure (a peer did not answer, a write was
    refused), 2 bad usage or bad site file.
*/
#include "alarms.h"
#include "ctlsec.h"
#include "ping.h"
#include "sec.h"
#include "iolog.h"
#include "mclock.h"
#include "scada.pb-c.h"
#include "scada_client.h"
#include "site.h"
#include "slog.h"

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool s_json = false;
static int s_timeout_ms = 2000;
static bool s_timeout_given = false; //  --timeout on the command line
static bool s_direct = false;        //  get/write straight to the I/O servers
static const char *s_broker_name = NULL;
static const char *s_endpoint = NULL; //  --endpoint: overrides the site's broker
static long s_count = 0;              //  watch: stop after this many updates (0: never)
static long s_duration_ms = 0;        //  watch: stop after this long (0: never)
static bool s_watch_alarms = false;   //  watch: the alarm list under the table
static const char *s_cert = NULL;     //  --cert: an operator's certificate (else SCADA_CERT)
//  status: devices not online listed per I/O server (the rest are counted)
#define STATUS_DEVICES_LISTED 10
static scadactl_alarm_opts_t s_al; //  alarm commands' options

static void s_usage(FILE *out)
{
    fprintf(
        out,
        "usage: scadactl --config SITE.yaml [OPTIONS] COMMAND [OPTIONS] [ARGS]\n"
        "\n"
        "commands:\n"
        "  get TAG...        one line per tag: TAG VALUE QUALITY TIMESTAMP, through the broker\n"
        "  watch TAG...      live values through the broker: a table on a terminal, else one\n"
        "                    line per change; Ctrl-C (or --count / --duration) stops\n"
        "  write TAG VALUE   write a tag through the broker; prints ok or the reason it was\n"
        "                    refused (VALUE: a number, true/false or on/off)\n"
        "  status            the site from Redis: processes alive, devices online per I/O\n"
        "                    server, connect window use, failed channels, active alarms\n"
        "  keygen [USER...]  CURVE certificates for every process of the site (and these\n"
        "                    operators) in its key directory; existing ones are kept\n"
        "  revoke NAME       remove NAME's public key: its handshakes are refused from now on\n"
        "  ping NAME...      is each process answering on its own socket (an I/O server or\n"
        "                    broker name, resolver, alarm, devsim); exit 1 if one is not\n"
        "  tail [TAG...]     follow value changes and events of every I/O server (Ctrl-C stops)\n"
        "  iolog CHANNEL on|off   switch a channel's I/O log at run time\n"
        "  iolog CHANNEL --summary  reply times against deadlines, and advice\n"
        "  alarms [ID...]    the active alarm list (--area A, --priority N: 1..N only);\n"
        "                    --history: events from the journal, newest last (--limit N)\n"
        "  ack ID...         acknowledge alarms (--all-area AREA: every unacknowledged one)\n"
        "  shelve ID... DURATION   shelve until DURATION passes (90s, 15m, 2h, 1d)\n"
        "  unshelve ID...    end a shelve now\n"
        "  disable ID...     take alarms out of service; enable ID... puts them back\n"
        "                    (--user NAME, --comment TEXT on ack/shelve/disable)\n"
        "\n"
        "options (before or right after the command):\n"
        "  --config FILE     the site file (required)\n"
        "  --json            one JSON object per line instead of text\n"
        "  --timeout MS      how long to wait for a peer (default 2000; write through the\n"
        "                    broker: the broker's write_timeout_ms + 2000)\n"
        "  --broker NAME     the broker of the site file to use (default: the first listed,\n"
        "                    or tcp://127.0.0.1:5700 when the file lists none)\n"
        "  --endpoint URL    talk to the broker at URL instead\n"
        "  --direct          get, write: ask the I/O servers' control sockets, not a broker\n"
        "  --count N         watch: stop after N value updates\n"
        "  --duration MS     watch: stop after MS milliseconds\n"
        "  --cert FILE       the certificate to talk to the site's processes with (default\n"
        "                    $SCADA_CERT, else the site's scadactl certificate)\n"
        "  --alarms          watch: the active alarm list under the values, most urgent\n"
        "                    first (not on a terminal: a line when its counts change)\n"
        "  --help            this text\n"
        "\n"
        "quality: good, uncertain, bad-no-comm, bad-config, bad-not-found, bad-device,\n"
        "         bad-not-allowed (your role may not read the tag's area).\n"
        "exit codes: 0 ok, 1 runtime failure (no answer, refused write), 2 bad usage or site.\n");
}

static void s_format_ts(int64_t ms, char *buf, size_t len)
{
    if (ms <= 0) {
        snprintf(buf, len, "-");
        return;
    }
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

//  JSON string with the characters that need it escaped.
static void s_json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(out, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(out, "\\u%04x", *s);
        else
            fputc(*s, out);
    }
    fputc('"', out);
}

static void s_print_value(const char *tag, bool has, double number, int quality, int64_t ts,
                          const char *reason)
{
    char tsbuf[80];
    s_format_ts(ts, tsbuf, sizeof tsbuf);
    if (s_json) {
        printf("{\"tag\":");
        s_json_str(stdout, tag);
        if (has && isfinite(number))
            printf(",\"value\":%.10g", number);
        else
            printf(",\"value\":null");
        printf(",\"quality\":\"%s\",\"timestamp\":\"%s\"", scada_quality_name(quality), tsbuf);
        if (reason) {
            printf(",\"reason\":");
            s_json_str(stdout, reason);
        }
        printf("}\n");
    } else {
        char val[64];
        if (has)
            snprintf(val, sizeof val, "%.10g", number);
        else
            snprintf(val, sizeof val, "-");
        printf("%s %s %s %s\n", tag, val, scada_quality_name(quality), tsbuf);
    }
}

//  Send one request to an I/O server's control socket and wait for the reply.
//  Returns NULL if it did not answer in time. Caller owns the result.
static Scada__IoReply *s_request(site_ioserver_t *io, Scada__IoRequest *req)
{
    zsock_t *sock = zsock_new(ZMQ_DEALER);
    zsock_set_linger(sock, 0);
    zsock_set_rcvtimeo(sock, s_timeout_ms);
    if (ctlsec_client(sock, io->name) != 0 || zsock_connect(sock, "%s", io->control) < 0) {
        zsock_destroy(&sock);
        return NULL;
    }
    size_t len = scada__io_request__get_packed_size(req);
    zframe_t *frame = zframe_new(NULL, len);
    scada__io_request__pack(req, zframe_data(frame));
    zframe_send(&frame, sock, 0);
    Scada__IoReply *reply = NULL;
    zframe_t *in = zframe_recv(sock);
    if (in) {
        reply = scada__io_reply__unpack(NULL, zframe_size(in), zframe_data(in));
        zframe_destroy(&in);
    }
    zsock_destroy(&sock);
    return reply;
}

//  The I/O servers of a device, best priority first.
static size_t s_servers_by_priority(const site_t *site, const site_device_t *dev,
                                    site_ioserver_t **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < dev->nservers && n < max; i++) {
        site_ioserver_t *io = site_ioserver(site, dev->servers[i].ioserver);
        if (io)
            out[n++] = io;
    }
    //  Insertion sort on priority: lists are short.
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0; j--) {
            int pa = site_device_priority(dev, out[j - 1]->name);
            int pb = site_device_priority(dev, out[j]->name);
            if (pb >= pa)
                break;
            site_ioserver_t *t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return n;
}

//  get --direct: READ from the I/O servers of each tag, best priority first.
static int s_cmd_get_direct(site_t *site, int argc, char **argv)
{
    int rc = 0;
    for (int i = 0; i < argc; i++) {
        site_tag_t *tag = site_tag(site, argv[i]);
        if (!tag) {
            s_print_value(argv[i], false, 0, SCADA__QUALITY__BAD_NOT_FOUND, 0, "no such tag");
            continue;
        }
        site_ioserver_t *ios[16];
        size_t n = s_servers_by_priority(site, tag->device, ios, 16);
        bool done = false;
        //  The best offer that answers with a good value wins; otherwise the
        //  best answer we got.
        Scada__IoReply *best = NULL;
        for (size_t k = 0; k < n && !done; k++) {
            Scada__IoRequest req = SCADA__IO_REQUEST__INIT;
            req.id = (uint64_t)i + 1;
            req.kind = SCADA__IO_REQUEST__KIND__READ;
            char *tags[1] = {argv[i]};
            req.n_tags = 1;
            req.tags = tags;
            Scada__IoReply *reply = s_request(ios[k], &req);
            if (!reply || reply->n_values != 1) {
                if (reply)
                    scada__io_reply__free_unpacked(reply, NULL);
                continue;
            }
            if (reply->values[0]->quality == SCADA__QUALITY__GOOD) {
                if (best)
                    scada__io_reply__free_unpacked(best, NULL);
                best = reply;
                done = true;
            } else if (!best)
                best = reply;
            else
                scada__io_reply__free_unpacked(reply, NULL);
        }
        if (best) {
            Scada__Value *v = best->values[0];
            s_print_value(argv[i], v->has_number, v->number, v->quality, v->source_ts_ms,
                          v->reason);
            scada__io_reply__free_unpacked(best, NULL);
        } else {
            s_print_value(argv[i], false, 0, SCADA__QUALITY__BAD_NO_COMM, 0,
                          "no I/O server answered");
            rc = 1;
        }
    }
    return rc;
}

//  VALUE of write: a number, true/false or on/off. Returns 0, or 2 (bad
//  usage) with the message printed.
static int s_parse_value(const char *text, double *value)
{
    char *end = NULL;
    *value = strtod(text, &end);
    if (end && !*end && end != text)
        return 0;
    if (strcasecmp(text, "true") == 0 || strcasecmp(text, "on") == 0)
        *value = 1;
    else if (strcasecmp(text, "false") == 0 || strcasecmp(text, "off") == 0)
        *value = 0;
    else {
        fprintf(stderr, "scadactl write: \"%s\" is not a number (or true/false)\n", text);
        return 2;
    }
    return 0;
}

static void s_print_write_result(const char *tag, const char *error)
{
    if (!error && s_json) {
        printf("{\"tag\":");
        s_json_str(stdout, tag);
        printf(",\"result\":\"ok\"}\n");
    } else if (!error)
        printf("%s ok\n", tag);
    else if (s_json) {
        printf("{\"tag\":");
        s_json_str(stdout, tag);
        printf(",\"result\":\"error\",\"error\":");
        s_json_str(stdout, error);
        printf("}\n");
    } else
        printf("%s error: %s\n", tag, error);
}

//  write --direct: WRITE to the I/O servers of the tag, best priority first.
static int s_cmd_write_direct(site_t *site, char **argv, double value)
{
    site_tag_t *tag = site_tag(site, argv[0]);
    if (!tag) {
        fprintf(stderr, "scadactl write: no tag named \"%s\" in %s\n", argv[0], site->path);
        return 1;
    }
    site_ioserver_t *ios[16];
    size_t n = s_servers_by_priority(site, tag->device, ios, 16);
    const char *last = "no I/O server answered";
    char buf[256];
    for (size_t k = 0; k < n; k++) {
        Scada__IoRequest req = SCADA__IO_REQUEST__INIT;
        req.id = 1;
        req.kind = SCADA__IO_REQUEST__KIND__WRITE;
        req.tag = argv[0];
        req.has_value = true;
        req.value = value;
        Scada__IoReply *reply = s_request(ios[k], &req);
        if (!reply)
            continue;
        bool ok = reply->status == SCADA__IO_REPLY__STATUS__OK;
        snprintf(buf, sizeof buf, "%s", reply->error ? reply->error : "refused");
        scada__io_reply__free_unpacked(reply, NULL);
        if (ok) {
            s_print_write_result(argv[0], NULL);
            return 0;
        }
        last = buf;
        //  An offline device at the primary may be online at the standby.
        if (strcmp(buf, "device offline") != 0)
            break;
    }
    s_print_write_result(argv[0], last);
    return 1;
}

//  --------------------------------------------------------------------------
//  Through the broker: get, watch, write

#define S_PAGE 1 //  the one page scadactl subscribes

//  The broker to talk to: the site's broker --broker NAME (default the
//  first listed), at --endpoint when given.
typedef struct {
    const char *name; //  for messages; NULL: only an endpoint was given
    const char *endpoint;
    const site_broker_t *cfg;
} s_target_t;

static int s_target(const site_t *site, s_target_t *t)
{
    const site_broker_t *b = site_broker(site, s_broker_name);
    if (s_broker_name && !streq(b->name, s_broker_name)) {
        fprintf(stderr, "scadactl: --broker: no broker named \"%s\" in %s (brokers:", s_broker_name,
                site->path);
        for (size_t i = 0; i < site->nbrokers; i++)
            fprintf(stderr, " %s", site->brokers[i].name);
        fprintf(stderr, "%s)\n", site->nbrokers ? "" : " none listed, the default is b1");
        return 2;
    }
    t->cfg = b;
    t->endpoint = s_endpoint ? s_endpoint : b->endpoint;
    t->name = s_endpoint && !s_broker_name ? NULL : b->name;
    return 0;
}

static void s_no_answer(const s_target_t *t, const char *cmd, const char *more)
{
    fprintf(stderr, "scadactl %s: no answer from broker%s%s at %s: is scada-broker running?%s\n",
            cmd, t->name ? " " : "", t->name ? t->name : "", t->endpoint, more);
}

//  A client of the target broker; NULL (message printed) if the endpoint
//  is not one.
static scada_client_t *s_client(const s_target_t *t)
{
    char name[64];
    snprintf(name, sizeof name, "scadactl-%d", (int)getpid());
    scada_client_opts_t opts = {.name = name,
                                .heartbeat_ms = t->cfg->client_heartbeat_ms,
                                .sec = ctlsec(),
                                .sec_peer = t->cfg->name};
    scada_client_t *c = scada_client_new(t->endpoint, &opts);
    if (!c)
        fprintf(stderr, "scadactl: cannot use broker endpoint \"%s\": %s\n", t->endpoint,
                zmq_strerror(zmq_errno()));
    return c;
}

//  One tag of get or watch.
typedef struct {
    const char *tag;
    bool answered;  //  anything reported yet
    bool has_value; //
    double value;   //
    int quality;    //
    int64_t ts_ms;  //
    char *reason;   //  owned
} s_row_t;

//  What get and watch know.
typedef struct {
    s_row_t *rows;      //  one per distinct tag, in command-line order
    size_t n;           //
    zhashx_t *index;    //  tag -> s_row_t
    size_t answered;    //  rows answered
    long updates;       //  values reported
    bool heard;         //  the broker answered at least once
    bool lost;          //  the link is lost now
    bool lost_shown;    //  watch: "broker lost" printed, "broker back" due
    int64_t lost_since; //  wall ms
    char *error;        //  the broker refused our SUBSCRIBE (get), or its last error (watch)
    bool tty;           //  watch: draw a table
    bool dirty;         //  watch: redraw due
    uint64_t missed;    //  watch: updates the broker last said this client missed
    int64_t missed_at;  //  wall ms when it said so
    const s_target_t *target;
    scadactl_alarm_view_t *alarms; //  watch --alarms: the alarm list under the table
} s_view_t;

static int s_view_init(s_view_t *view, int argc, char **argv, const s_target_t *t)
{
    *view = (s_view_t){.target = t};
    view->rows = (s_row_t *)calloc((size_t)argc + 1, sizeof *view->rows);
    view->index = zhashx_new();
    if (!view->rows || !view->index)
        return -1;
    for (int i = 0; i < argc; i++)
        if (!zhashx_lookup(view->index, argv[i])) {
            s_row_t *row = &view->rows[view->n++];
            row->tag = argv[i];
            zhashx_insert(view->index, argv[i], row);
        }
    return 0;
}

static void s_view_destroy(s_view_t *view)
{
    for (size_t i = 0; i < view->n; i++)
        free(view->rows[i].reason);
    free(view->rows);
    zhashx_destroy(&view->index);
    free(view->error);
}

static s_row_t *s_view_set(s_view_t *view, const char *tag, const scada_value_t *v)
{
    s_row_t *row = (s_row_t *)zhashx_lookup(view->index, tag);
    if (!row)
        return NULL;
    row->has_value = v->has_value;
    row->value = v->value;
    row->quality = v->quality;
    row->ts_ms = v->ts_ms;
    free(row->reason);
    row->reason = v->reason ? strdup(v->reason) : NULL;
    if (!row->answered) {
        row->answered = true;
        view->answered++;
    }
    return row;
}

static void s_row_print(const s_row_t *row)
{
    s_print_value(row->tag, row->has_value, row->value, row->quality, row->ts_ms, row->reason);
}

static const char **s_view_tags(const s_view_t *view)
{
    const char **tags = (const char **)calloc(view->n + 1, sizeof *tags);
    for (size_t i = 0; tags && i < view->n; i++)
        tags[i] = view->rows[i].tag;
    return tags;
}

static int s_subscribe_view(scada_client_t *c, s_view_t *view, scada_value_fn *cb)
{
    const char **tags = s_view_tags(view);
    if (!tags)
        return -1;
    int rc = scada_client_subscribe(c, S_PAGE, tags, view->n, cb, view);
    free(tags);
    return rc;
}

//  get

static void s_get_on_value(scada_client_t *c, uint32_t page, const char *tag, uint32_t tag_id,
                           const scada_value_t *v, void *arg)
{
    s_view_t *view = (s_view_t *)arg;
    if (!view->lost) //  our own report of a lost link is no answer
        s_view_set(view, tag, v);
}

static void s_get_on_event(scada_client_t *c, scada_client_event_t event, uint32_t page,
                           const char *text, void *arg)
{
    s_view_t *view = (s_view_t *)arg;
    if (event == SCADA_CLIENT_UP)
        view->heard = true;
    else if (event == SCADA_CLIENT_LOST)
        view->lost = true;
    else if (event == SCADA_CLIENT_ERROR && page == S_PAGE && !view->error)
        view->error = strdup(text ? text : "refused");
    else if (event == SCADA_CLIENT_ERROR)
        fprintf(stderr, "scadactl get: broker: %s\n", text ? text : "error");
}

static int s_cmd_get(site_t *site, int argc, char **argv)
{
    s_target_t t;
    if (s_target(site, &t))
        return 2;
    scada_client_t *c = s_client(&t);
    if (!c)
        return 2;
    s_view_t view;
    int rc = 0;
    if (s_view_init(&view, argc, argv, &t) < 0 || s_subscribe_view(c, &view, s_get_on_value) < 0) {
        fprintf(stderr, "scadactl get: cannot send to %s\n", t.endpoint);
        rc = 1;
    }
    scada_client_set_event_handler(c, s_get_on_event, &view);
    int64_t deadline = mclock_mono_ms() + s_timeout_ms;
    bool interrupted = false;
    while (rc == 0 && view.answered < view.n && !view.lost && !view.error) {
        int64_t left = deadline - mclock_mono_ms();
        if (left <= 0)
            break;
        if (scada_client_wait(c, (int)left) < 0) {
            interrupted = true;
            break;
        }
    }
    if (rc == 0) {
        char why[96];
        if (view.lost && view.heard)
            snprintf(why, sizeof why, "broker lost");
        else if (view.heard)
            snprintf(why, sizeof why, "no value from the broker within %d ms", s_timeout_ms);
        else
            snprintf(why, sizeof why, "no answer from broker");
        for (int i = 0; i < argc; i++) {
            s_row_t *row = (s_row_t *)zhashx_lookup(view.index, argv[i]);
            if (row && row->answered)
                s_row_print(row);
            else
                s_print_value(argv[i], false, 0, SCADA_Q_BAD_NO_COMM, 0,
                              view.error ? view.error : why);
        }
        if (view.error)
            fprintf(stderr, "scadactl get: the broker refused the request: %s\n", view.error);
        else if (!view.heard && !interrupted)
            s_no_answer(&t, "get", "");
        rc = view.answered == view.n && !view.error ? 0 : 1;
    }
    fflush(stdout);
    s_view_destroy(&view);
    scada_client_destroy(&c);
    return rc;
}

//  watch

static void s_fmt_age(int64_t ts_ms, int64_t now_ms, char *buf, size_t len)
{
    if (ts_ms <= 0) {
        snprintf(buf, len, "-");
        return;
    }
    int64_t age = now_ms > ts_ms ? now_ms - ts_ms : 0;
    int64_t s = age / 1000;
    if (age < 10000)
        snprintf(buf, len, "%.1fs", (double)age / 1000.0);
    else if (s < 60)
        snprintf(buf, len, "%" PRId64 "s", s);
    else if (s < 3600)
        snprintf(buf, len, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, len, "%" PRId64 "h%02" PRId64 "m", s / 3600, (s % 3600) / 60);
    else
        snprintf(buf, len, "%" PRId64 "d%02" PRId64 "h", s / 86400, (s % 86400) / 3600);
}

//  The whole table, from the top of the screen.
static void s_watch_draw(const s_view_t *view)
{
    const s_target_t *t = view->target;
    int64_t now = mclock_wall_ms();
    char nowbuf[40], since[40];
    s_format_ts(now, nowbuf, sizeof nowbuf);
    s_format_ts(view->lost_since, since, sizeof since);
    int width = 3;
    for (size_t i = 0; i < view->n; i++)
        if ((int)strlen(view->rows[i].tag) > width)
            width = (int)strlen(view->rows[i].tag);
    printf("\033[H\033[2J");
    printf("broker%s%s at %s: ", t->name ? " " : "", t->name ? t->name : "", t->endpoint);
    if (view->lost && view->heard)
        printf("broker lost (since %s), reconnecting", since);
    else if (view->lost || !view->heard)
        printf("no answer yet: is scada-broker running?");
    else
        printf("connected");
    printf("   %s\n", nowbuf);
    if (view->error)
        printf("last broker error: %s\n", view->error);
    if (view->missed_at) {
        char when[40];
        s_format_ts(view->missed_at, when, sizeof when);
        printf("missed %" PRIu64 " updates while this client was slow (%s): values below are "
               "fresh\n",
               view->missed, when);
    }
    printf("\n%-*s %14s  %-13s  %-24s  %8s  %s\n", width, "TAG", "VALUE", "QUALITY", "TIMESTAMP",
           "AGE", "REASON");
    for (size_t i = 0; i < view->n; i++) {
        const s_row_t *row = &view->rows[i];
        char val[64], ts[40], age[32];
        if (row->answered && row->has_value)
            snprintf(val, sizeof val, "%.10g", row->value);
        else
            snprintf(val, sizeof val, "-");
        s_format_ts(row->answered ? row->ts_ms : 0, ts, sizeof ts);
        s_fmt_age(row->answered ? row->ts_ms : 0, now, age, sizeof age);
        printf("%-*s %14s  %-13s  %-24s  %8s  %s\n", width, row->tag, val,
               row->answered ? scada_quality_name(row->quality) : "waiting", ts, age,
               row->answered && row->reason ? row->reason : "");
    }
    printf("\n%ld update%s. Ctrl-C stops.\n", view->updates, view->updates == 1 ? "" : "s");
    if (view->alarms) {
        printf("\n");
        scadactl_alarm_view_print(view->alarms, 12);
    }
    fflush(stdout);
}

static void s_watch_on_value(scada_client_t *c, uint32_t page, const char *tag, uint32_t tag_id,
                             const scada_value_t *v, void *arg)
{
    s_view_t *view = (s_view_t *)arg;
    if (s_count > 0 && view->updates >= s_count)
        return; //  --count reached: the rest of this message is not printed
    if (!s_view_set(view, tag, v))
        return;
    view->updates++;
    if (view->tty)
        view->dirty = true;
    else {
        s_print_value(tag, v->has_value, v->value, v->quality, v->ts_ms, v->reason);
        fflush(stdout);
    }
}

//  A line about the link, when the output is not a table.
static void s_watch_note(const s_view_t *view, const char *event, const char *text)
{
    if (view->tty)
        return;
    const s_target_t *t = view->target;
    if (s_json) {
        printf("{\"event\":\"%s\",\"broker\":", event);
        s_json_str(stdout, t->name ? t->name : "");
        printf(",\"endpoint\":");
        s_json_str(stdout, t->endpoint);
        if (text) {
            printf(",\"reason\":");
            s_json_str(stdout, text);
        }
        printf("}\n");
    } else
        printf("# %s %s at %s%s%s\n", event, t->name ? t->name : "broker", t->endpoint,
               text ? ": " : "", text ? text : "");
    fflush(stdout);
}

static void s_watch_on_event(scada_client_t *c, scada_client_event_t event, uint32_t page,
                             const char *text, void *arg)
{
    s_view_t *view = (s_view_t *)arg;
    switch (event) {
    case SCADA_CLIENT_UP:
        view->heard = true;
        view->lost = false;
        if (view->lost_shown)
            s_watch_note(view, "broker-back", NULL);
        view->lost_shown = false;
        break;
    case SCADA_CLIENT_LOST:
        if (!view->lost)
            view->lost_since = mclock_wall_ms();
        view->lost = true;
        if (view->heard && !view->lost_shown) {
            s_watch_note(view, "broker-lost", text);
            view->lost_shown = true;
        }
        break;
    case SCADA_CLIENT_ERROR:
        free(view->error);
        view->error = strdup(text ? text : "error");
        if (!view->tty)
            fprintf(stderr, "scadactl watch: broker: %s\n", view->error);
        break;
    case SCADA_CLIENT_SUBSCRIBED:
        break;
    case SCADA_CLIENT_MISSED:
        view->missed = text ? strtoull(text, NULL, 10) : 0;
        view->missed_at = mclock_wall_ms();
        if (view->tty)
            break;
        if (s_json) {
            const s_target_t *t = view->target;
            printf("{\"event\":\"missed\",\"broker\":");
            s_json_str(stdout, t->name ? t->name : "");
            printf(",\"endpoint\":");
            s_json_str(stdout, t->endpoint);
            printf(",\"count\":%" PRIu64 "}\n", view->missed);
        } else
            printf("# missed %" PRIu64 " updates while this client was slow: values below are "
                   "fresh\n",
                   view->missed);
        fflush(stdout);
        break;
    }
    view->dirty = true;
}

static int s_cmd_watch(site_t *site, int argc, char **argv)
{
    s_target_t t;
    if (s_target(site, &t))
        return 2;
    scada_client_t *c = s_client(&t);
    if (!c)
        return 2;
    s_view_t view;
    if (s_view_init(&view, argc, argv, &t) < 0 ||
        s_subscribe_view(c, &view, s_watch_on_value) < 0) {
        fprintf(stderr, "scadactl watch: cannot send to %s\n", t.endpoint);
        s_view_destroy(&view);
        scada_client_destroy(&c);
        return 1;
    }
    view.tty = isatty(STDOUT_FILENO) && !s_json;
    if (s_watch_alarms)
        view.alarms = scadactl_alarm_view_new(site);
    scada_client_set_event_handler(c, s_watch_on_event, &view);
    int64_t start = mclock_mono_ms();
    int64_t drawn = 0;
    bool warned = false;
    if (view.tty) {
        s_watch_draw(&view);
        drawn = start;
    }
    while (!(s_count > 0 && view.updates >= s_count)) {
        int64_t now = mclock_mono_ms();
        if (s_duration_ms > 0 && now - start >= s_duration_ms)
            break;
        int64_t wait = view.tty ? 250 : 1000;
        if (s_duration_ms > 0 && start + s_duration_ms - now < wait)
            wait = start + s_duration_ms - now;
        if (scada_client_wait(c, wait > 0 ? (int)wait : 1) < 0)
            break; //  Ctrl-C
        if (view.alarms && scadactl_alarm_view_poll(view.alarms)) {
            view.dirty = true;
            if (!view.tty) {
                printf("# ");
                scadactl_alarm_view_print(view.alarms, 0);
                fflush(stdout);
            }
        }
        now = mclock_mono_ms();
        if (!view.heard && !warned && now - start >= s_timeout_ms) {
            if (!view.tty)
                s_no_answer(&t, "watch", " (still trying)");
            warned = true;
        }
        if (view.tty && ((view.dirty && now - drawn >= 100) || now - drawn >= 1000)) {
            s_watch_draw(&view);
            view.dirty = false;
            drawn = now;
        }
    }
    if (view.tty)
        s_watch_draw(&view);
    int rc = view.heard ? 0 : 1;
    if (!view.heard && (!warned || view.tty))
        s_no_answer(&t, "watch", "");
    scadactl_alarm_view_destroy(&view.alarms);
    s_view_destroy(&view);
    scada_client_destroy(&c);
    return rc;
}

//  write

static int s_cmd_write(site_t *site, const char *tag, double value)
{
    s_target_t t;
    if (s_target(site, &t))
        return 2;
    scada_client_t *c = s_client(&t);
    if (!c)
        return 2;
    //  The broker answers within its write_timeout_ms; wait a little more.
    int timeout = s_timeout_given ? s_timeout_ms : (int)t.cfg->write_timeout_ms + s_timeout_ms;
    char error[512];
    int rc = scada_client_write_wait(c, tag, value, timeout, error, sizeof error);
    s_print_write_result(tag, rc == 0 ? NULL : error);
    fflush(stdout);
    if (rc != 0 && !scada_client_connected(c) && !zsys_interrupted)
        s_no_answer(&t, "write", "");
    scada_client_destroy(&c);
    return rc == 0 ? 0 : 1;
}

static int s_cmd_tail(site_t *site, int argc, char **argv)
{
    //  One SUB per I/O server: each has its own server key.
    zpoller_t *poller = zpoller_new(NULL);
    zsock_t **subs = (zsock_t **)zmalloc((site->nioservers + 1) * sizeof *subs);
    for (size_t i = 0; i < site->nioservers; i++) {
        subs[i] = zsock_new(ZMQ_SUB);
        if (ctlsec_client(subs[i], site->ioservers[i].name) == 0)
            zsock_connect(subs[i], "%s", site->ioservers[i].publish);
        zsock_set_subscribe(subs[i], "V");
        zsock_set_subscribe(subs[i], "E");
        zpoller_add(poller, subs[i]);
    }
    while (!zsys_interrupted) {
        zsock_t *sub = (zsock_t *)zpoller_wait(poller, 500);
        if (!sub)
            continue;
        zmsg_t *msg = zmsg_recv(sub);
        if (!msg)
            continue;
        char *topic = zmsg_popstr(msg);
        zframe_t *body = zmsg_pop(msg);
        if (topic && body && streq(topic, "V")) {
            Scada__ValueBatch *b =
                scada__value_batch__unpack(NULL, zframe_size(body), zframe_data(body));
            for (size_t i = 0; b && i < b->n_values; i++) {
                Scada__Value *v = b->values[i];
                bool wanted = argc == 0;
                for (int k = 0; k < argc && !wanted; k++)
                    wanted = streq(argv[k], v->tag);
                if (wanted)
                    s_print_value(v->tag, v->has_number, v->number, v->quality, v->source_ts_ms,
                                  v->reason);
            }
            if (b)
                scada__value_batch__free_unpacked(b, NULL);
        } else if (topic && body && streq(topic, "E") && argc == 0) {
            Scada__EventBatch *b =
                scada__event_batch__unpack(NULL, zframe_size(body), zframe_data(body));
            static const char *kinds[] = {"device-state", "io-timeout-raise", "io-timeout-clear",
                                          "channel-state", "connect-starved"};
            static const char *states[] = {"offline", "queued", "connecting", "online", "failed"};
            for (size_t i = 0; b && i < b->n_events; i++) {
                Scada__Event *e = b->events[i];
                char tsbuf[80];
                s_format_ts(e->ts_ms, tsbuf, sizeof tsbuf);
                const char *kind = (unsigned)e->kind < 5 ? kinds[e->kind] : "event";
                const char *st = e->has_device_state && (unsigned)e->device_state < 5
                                     ? states[e->device_state]
                                     : (e->state ? e->state : "");
                if (s_json)
                    printf("{\"event\":\"%s\",\"ioserver\":\"%s\",\"device\":\"%s\","
                           "\"state\":\"%s\",\"reason\":\"%s\",\"timestamp\":\"%s\"}\n",
                           kind, e->ioserver, e->device ? e->device : "", st,
                           e->reason ? e->reason : "", tsbuf);
                else
                    printf("# %s %s %s %s %s%s%s\n", tsbuf, e->ioserver, kind,
                           e->device ? e->device : "-", st, e->reason ? ": " : "",
                           e->reason ? e->reason : "");
            }
            if (b)
                scada__event_batch__free_unpacked(b, NULL);
        }
        fflush(stdout);
        zstr_free(&topic);
        zframe_destroy(&body);
        zmsg_destroy(&msg);
    }
    zpoller_destroy(&poller);
    for (size_t i = 0; i < site->nioservers; i++)
        zsock_destroy(&subs[i]);
    free(subs);
    return 0;
}

//  --------------------------------------------------------------------------
//  iolog

static site_channel_t *s_channel(site_t *site, const char *name)
{
    for (size_t c = 0; c < site->nchannels; c++)
        if (streq(site->channels[c].name, name))
            return &site->channels[c];
    return NULL;
}

//  The I/O servers with at least one device on `ch`.
static size_t s_channel_ioservers(site_t *site, site_channel_t *ch, site_ioserver_t **out,
                                  size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < site->nioservers && n < max; i++) {
        bool serves = false;
        for (size_t d = 0; d < ch->ndevices && !serves; d++)
            serves = site_device_priority(&ch->devices[d], site->ioservers[i].name) > 0;
        if (serves)
            out[n++] = &site->ioservers[i];
    }
    return n;
}

static int s_cmd_iolog(site_t *site, int argc, char **argv)
{
    if (argc != 2 ||
        (!streq(argv[1], "on") && !streq(argv[1], "off") && !streq(argv[1], "--summary"))) {
        fprintf(stderr, "scadactl iolog: usage: iolog CHANNEL on|off|--summary\n");
        return 2;
    }
    site_channel_t *ch = s_channel(site, argv[0]);
    if (!ch) {
        fprintf(stderr, "scadactl iolog: no channel named \"%s\" in %s\n", argv[0], site->path);
        return 2;
    }
    site_ioserver_t *ios[64];
    size_t n = s_channel_ioservers(site, ch, ios, 64);
    if (streq(argv[1], "--summary")) {
        //  Every I/O server's log of the channel, with its rotated files.
        char *paths[64 * 101];
        size_t np = 0;
        for (size_t i = 0; i < n; i++) {
            char *dir = site_path(site, ios[i]->iolog_dir);
            for (uint32_t k = 0; k <= ios[i]->iolog_keep; k++)
                paths[np++] = k ? zsys_sprintf("%s/%s-%s.log.%u", dir, ios[i]->name, ch->name, k)
                                : zsys_sprintf("%s/%s-%s.log", dir, ios[i]->name, ch->name);
            free(dir);
        }
        iolog_stats_t stats;
        char text[2048];
        int rc = iolog_summarize((const char *const *)paths, np, ch->name,
                                 ch->standard_reply_delay_ms, &stats, text, sizeof text);
        for (size_t i = 0; i < np; i++)
            zstr_free(&paths[i]);
        if (rc < 0) {
            fprintf(stderr, "scadactl iolog: cannot read the I/O log of %s: %s\n", ch->name,
                    strerror(errno));
            return 1;
        }
        if (rc == 0) {
            fprintf(stderr,
                    "scadactl iolog: no I/O log of %s yet (switch it on: scadactl iolog %s on)\n",
                    ch->name, ch->name);
            return 1;
        }
        printf("%s\n", text);
        return 0;
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        Scada__IoRequest req = SCADA__IO_REQUEST__INIT;
        req.id = 1;
        req.kind = SCADA__IO_REQUEST__KIND__IOLOG;
        req.channel = ch->name;
        req.has_enable = true;
        req.enable = streq(argv[1], "on");
        Scada__IoReply *reply = s_request(ios[i], &req);
        if (!reply) {
            printf("%s %s: no answer\n", ios[i]->name, ch->name);
            rc = 1;
            continue;
        }
        if (reply->status == SCADA__IO_REPLY__STATUS__OK)
            printf("%s %s: I/O log %s\n", ios[i]->name, ch->name, argv[1]);
        else {
            printf("%s %s: error: %s\n", ios[i]->name, ch->name, reply->error);
            rc = 1;
        }
        scada__io_reply__free_unpacked(reply, NULL);
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  status

static const char *s_field(redisReply *r, const char *name)
{
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (r->element[i]->type == REDIS_REPLY_STRING && streq(r->element[i]->str, name))
            return r->element[i + 1]->str;
    return NULL;
}

//  The numeric fields of a hash reply as JSON members (",\"f\":v" each).
static void s_json_fields(redisReply *r, const char *const *fields, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        const char *v = s_field(r, fields[k]);
        if (v)
            printf(",\"%s\":%s", fields[k], v);
    }
}

static int s_cmd_status(site_t *site)
{
    struct timeval tv = {s_timeout_ms / 1000, (s_timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(site->redis_host, site->redis_port, tv);
    if (!c || c->err) {
        fprintf(stderr, "scadactl status: cannot reach redis %s:%u: %s\n", site->redis_host,
                (unsigned)site->redis_port, c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return 1;
    }
    redisSetTimeout(c, tv);
    if (site->redis_password) {
        redisReply *a =
            (redisReply *)(site->redis_user ? redisCommand(c, "AUTH %s %s", site->redis_user,
                                                           site->redis_password)
                                            : redisCommand(c, "AUTH %s", site->redis_password));
        bool ok = a && a->type != REDIS_REPLY_ERROR;
        if (!ok)
            fprintf(stderr, "scadactl status: redis %s:%u refused AUTH%s%s: %s\n", site->redis_host,
                    (unsigned)site->redis_port, site->redis_user ? " for user " : "",
                    site->redis_user ? site->redis_user : "", a && a->str ? a->str : c->errstr);
        if (a)
            freeReplyObject(a);
        if (!ok) {
            redisFree(c);
            return 1;
        }
    }
    //  One question first: a Redis that wants a password (or is loading)
    //  answers with an error, which must not read as "every process absent".
    redisReply *pong = (redisReply *)redisCommand(c, "PING");
    if (!pong || pong->type == REDIS_REPLY_ERROR) {
        const char *why = pong && pong->str ? pong->str : c->errstr;
        fprintf(stderr, "scadactl status: redis %s:%u: %s%s\n", site->redis_host,
                (unsigned)site->redis_port, why,
                strncmp(why, "NOAUTH", 6) == 0
                    ? " (give the site file's redis: a password_file or password_env)"
                    : "");
        if (pong)
            freeReplyObject(pong);
        redisFree(c);
        return 1;
    }
    freeReplyObject(pong);
    if (!s_json)
        printf("site %s (redis %s:%u)\n", site->site, site->redis_host, (unsigned)site->redis_port);
    int rc = 0;
    for (size_t i = 0; i < site->nioservers; i++) {
        site_ioserver_t *io = &site->ioservers[i];
        redisReply *r =
            (redisReply *)redisCommand(c, "HGETALL scada:%s:ioserver:%s", site->site, io->name);
        if (!r) {
            fprintf(stderr, "scadactl status: redis: %s\n", c->errstr);
            rc = 1;
            break;
        }
        const char *state = s_field(r, "state");
        const char *f[] = {"devices_online",    "devices_total",
                           "connect_in_flight", "connect_window",
                           "connect_queued",    "connect_starved",
                           "dead_probe_lag_ms", "values_published",
                           "connect_attempts",  "pid",
                           "tags_active",       "brokers"};
        if (s_json) {
            printf("{\"ioserver\":\"%s\",\"state\":\"%s\"", io->name, state ? state : "absent");
            s_json_fields(r, f, sizeof f / sizeof f[0]);
        } else if (!state)
            printf("ioserver %-10s absent (not running, or its key expired)\n", io->name);
        else
            printf("ioserver %-10s %-8s pid %s  devices %s/%s online  connect window %s/%s in "
                   "flight, %s queued  tags polled %s%s\n",
                   io->name, state, s_field(r, "pid"), s_field(r, "devices_online"),
                   s_field(r, "devices_total"), s_field(r, "connect_in_flight"),
                   s_field(r, "connect_window") ? s_field(r, "connect_window") : "?",
                   s_field(r, "connect_queued"),
                   s_field(r, "tags_active") ? s_field(r, "tags_active") : "?",
                   s_field(r, "connect_starved") && streq(s_field(r, "connect_starved"), "1")
                       ? "  STARVED: dead devices are probed less often than configured"
                       : "");
        freeReplyObject(r);
        //  Devices of this I/O server by state, and the ones not online.
        int counts[6] = {0};
        static const char *names[] = {"online",     "offline", "queued",
                                      "connecting", "failed",  "absent"};
        if (s_json)
            printf(",\"devices\":[");
        bool first = true;
        int listed = 0; //  devices not online, listed in text
        for (size_t ch = 0; ch < site->nchannels; ch++)
            for (size_t d = 0; d < site->channels[ch].ndevices; d++) {
                site_device_t *dev = &site->channels[ch].devices[d];
                if (site_device_priority(dev, io->name) <= 0)
                    continue;
                redisReply *dr = (redisReply *)redisCommand(
                    c, "HGETALL scada:%s:ioserver:%s:device:%s", site->site, io->name, dev->name);
                const char *ds = s_field(dr, "state");
                int k = 5;
                for (int j = 0; ds && j < 5; j++)
                    if (streq(ds, names[j]))
                        k = j;
                counts[k]++;
                const char *err = s_field(dr, "last_error");
                if (s_json) {
                    printf("%s{\"device\":\"%s\",\"state\":\"%s\",\"last_ok_ms\":%s,"
                           "\"last_error\":",
                           first ? "" : ",", dev->name, ds ? ds : "absent",
                           s_field(dr, "last_ok_ms") ? s_field(dr, "last_ok_ms") : "0");
                    s_json_str(stdout, err ? err : "");
                    printf("}");
                    first = false;
                } else if (k != 0 && state && ++listed <= STATUS_DEVICES_LISTED)
                    printf("  %-20s %-10s %s\n", dev->name, ds ? ds : "absent",
                           err && *err ? err : "");
                if (dr)
                    freeReplyObject(dr);
            }
        if (s_json)
            printf("]");
        else if (state) {
            if (listed > STATUS_DEVICES_LISTED)
                printf("  ... and %d more not online (--json lists every device)\n",
                       listed - STATUS_DEVICES_LISTED);
            printf("  devices: %d online, %d offline, %d queued, %d connecting, %d failed\n",
                   counts[0], counts[1], counts[2], counts[3], counts[4]);
        }
        //  Channels not healthy at this I/O server.
        if (s_json)
            printf(",\"channels\":[");
        first = true;
        for (size_t ch = 0; ch < site->nchannels; ch++) {
            site_channel_t *chan = &site->channels[ch];
            bool served = false;
            for (size_t d = 0; d < chan->ndevices && !served; d++)
                served = site_device_priority(&chan->devices[d], io->name) > 0;
            if (!served)
                continue;
            redisReply *cr = (redisReply *)redisCommand(
                c, "HGETALL scada:%s:ioserver:%s:channel:%s", site->site, io->name, chan->name);
            const char *cs = s_field(cr, "state");
            const char *failed = s_field(cr, "sockets_failed");
            if (s_json) {
                printf("%s{\"channel\":\"%s\",\"state\":\"%s\",\"sockets_failed\":%s}",
                       first ? "" : ",", chan->name, cs ? cs : "absent", failed ? failed : "0");
                first = false;
            } else if (state && cs && (streq(cs, "failed") || streq(cs, "reassigning")))
                printf("  channel %-12s %s\n", chan->name, cs);
            else if (state && failed && !streq(failed, "0"))
                printf("  channel %-12s %s sockets failed\n", chan->name, failed);
            if (cr)
                freeReplyObject(cr);
        }
        if (s_json)
            printf("]}\n");
    }
    //  The resolver and the brokers.
    redisReply *r = (redisReply *)redisCommand(c, "HGETALL scada:%s:resolver", site->site);
    const char *rs = s_field(r, "state");
    if (s_json) {
        printf("{\"resolver\":\"%s\"", rs ? rs : "absent");
        const char *f[] = {"pid",     "ioservers_alive",       "ioservers_known", "brokers",
                           "devices", "devices_without_offer", "malformed"};
        s_json_fields(r, f, sizeof f / sizeof f[0]);
        printf("}\n");
    } else if (!rs)
        printf("resolver            absent (not running, or its key expired)\n");
    else
        printf("resolver            %-8s pid %s  I/O servers %s/%s alive  devices without an "
               "offer %s/%s  brokers %s\n",
               rs, s_field(r, "pid"), s_field(r, "ioservers_alive"), s_field(r, "ioservers_known"),
               s_field(r, "devices_without_offer"), s_field(r, "devices"), s_field(r, "brokers"));
    if (r)
        freeReplyObject(r);
    size_t nb = site->nbrokers ? site->nbrokers : 1;
    for (size_t i = 0; i < nb; i++) {
        const site_broker_t *b = site->nbrokers ? &site->brokers[i] : &site->default_broker;
        redisReply *br =
            (redisReply *)redisCommand(c, "HGETALL scada:%s:broker:%s", site->site, b->name);
        const char *bs = s_field(br, "state");
        if (s_json) {
            printf("{\"broker\":\"%s\",\"state\":\"%s\"", b->name, bs ? bs : "absent");
            const char *f[] = {"pid",       "clients",       "pages",    "tags_subscribed",
                               "failovers", "writes_failed", "malformed"};
            s_json_fields(br, f, sizeof f / sizeof f[0]);
            printf("}\n");
        } else if (!bs)
            printf("broker %-12s absent (not running, or its key expired)\n", b->name);
        else
            printf("broker %-12s %-8s pid %s  clients %s  pages %s  tags subscribed %s  resolver "
                   "%s\n",
                   b->name, bs, s_field(br, "pid"), s_field(br, "clients"), s_field(br, "pages"),
                   s_field(br, "tags_subscribed"), s_field(br, "resolver"));
        if (br)
            freeReplyObject(br);
    }
    //  The alarm service: counts, and the unacknowledged alarms first.
    redisReply *ar = (redisReply *)redisCommand(c, "HGETALL scada:%s:alarm", site->site);
    const char *as = s_field(ar, "state");
    if (s_json) {
        printf("{\"alarm\":\"%s\"", as ? as : "absent");
        const char *f[] = {"pid",     "alarms",         "active",        "unacked",
                           "shelved", "out_of_service", "journal_errors"};
        s_json_fields(ar, f, sizeof f / sizeof f[0]);
        printf("}\n");
    } else if (!as)
        printf("alarm               absent (not running, or its key expired)\n");
    else {
        printf("alarm               %-8s pid %s  active %s  unacknowledged %s  shelved %s  broker "
               "%s\n",
               as, s_field(ar, "pid"), s_field(ar, "active"), s_field(ar, "unacked"),
               s_field(ar, "shelved"), s_field(ar, "broker"));
        redisReply *al = (redisReply *)redisCommand(c, "HGETALL scada:%s:alarm:active", site->site);
        size_t shown = 0;
        for (int pass = 0; pass < 2 && al && al->type == REDIS_REPLY_ARRAY; pass++)
            for (size_t i = 0; i + 1 < al->elements && shown < 10; i += 2) {
                const char *v = al->element[i + 1]->str;
                bool unacked = v && strncmp(v, "UNACK_", 6) == 0;
                if ((pass == 0) != unacked)
                    continue;
                printf("  %-32s %s\n", al->element[i]->str, v ? v : "");
                shown++;
            }
        if (al && al->type == REDIS_REPLY_ARRAY && al->elements / 2 > shown)
            printf("  ... %zu more (scadactl alarms)\n", al->elements / 2 - shown);
        if (al)
            freeReplyObject(al);
    }
    if (ar)
        freeReplyObject(ar);
    redisFree(c);
    return rc;
}

//  --------------------------------------------------------------------------
//  Command line

enum {
    OPT_BROKER = 256,
    OPT_ENDPOINT,
    OPT_DIRECT,
    OPT_COUNT,
    OPT_DURATION,
    OPT_AREA,
    OPT_ALL_AREA,
    OPT_PRIORITY,
    OPT_HISTORY,
    OPT_LIMIT,
    OPT_USER,
    OPT_COMMENT,
    OPT_ALARMS,
    OPT_CERT
};

static const struct option s_options[] = {{"config", required_argument, NULL, 'c'},
                                          {"json", no_argument, NULL, 'j'},
                                          {"timeout", required_argument, NULL, 't'},
                                          {"help", no_argument, NULL, 'h'},
                                          {"broker", required_argument, NULL, OPT_BROKER},
                                          {"endpoint", required_argument, NULL, OPT_ENDPOINT},
                                          {"direct", no_argument, NULL, OPT_DIRECT},
                                          {"count", required_argument, NULL, OPT_COUNT},
                                          {"duration", required_argument, NULL, OPT_DURATION},
                                          {"area", required_argument, NULL, OPT_AREA},
                                          {"all-area", required_argument, NULL, OPT_ALL_AREA},
                                          {"priority", required_argument, NULL, OPT_PRIORITY},
                                          {"history", no_argument, NULL, OPT_HISTORY},
                                          {"limit", required_argument, NULL, OPT_LIMIT},
                                          {"user", required_argument, NULL, OPT_USER},
                                          {"comment", required_argument, NULL, OPT_COMMENT},
                                          {"alarms", no_argument, NULL, OPT_ALARMS},
                                          {"cert", required_argument, NULL, OPT_CERT},
                                          {NULL, 0, NULL, 0}};

//  A whole number in [lo, hi] for option `name`; -1 (message printed) if not.
static long s_number(const char *name, const char *text, long lo, long hi, const char *unit)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || !end || *end || end == text || v < lo || v > hi) {
        fprintf(stderr, "scadactl: --%s: \"%s\" is not a number of %s (%ld..%ld)\n", name, text,
                unit, lo, hi);
        return -1;
    }
    return v;
}

//  Options, from argv[optind] on, up to the first argument that is not one
//  ("+": what follows the command may start with '-', e.g. a negative
//  value). Returns -1 to go on, else the exit code.
static int s_parse_options(int argc, char **argv, const char **config)
{
    int opt;
    while ((opt = getopt_long(argc, argv, "+c:jt:h", s_options, NULL)) != -1) {
        long v;
        switch (opt) {
        case 'c':
            *config = optarg;
            break;
        case 'j':
            s_json = true;
            break;
        case 't':
            if ((v = s_number("timeout", optarg, 1, 600000, "ms")) < 0)
                return 2;
            s_timeout_ms = (int)v;
            s_timeout_given = true;
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        case OPT_BROKER:
            s_broker_name = optarg;
            break;
        case OPT_ENDPOINT:
            s_endpoint = optarg;
            break;
        case OPT_DIRECT:
            s_direct = true;
            break;
        case OPT_COUNT:
            if ((s_count = s_number("count", optarg, 1, 1000000000L, "updates")) < 0)
                return 2;
            break;
        case OPT_DURATION:
            if ((s_duration_ms = s_number("duration", optarg, 1, 1000000000L, "ms")) < 0)
                return 2;
            break;
        case OPT_ALARMS:
            s_watch_alarms = true;
            break;
        case OPT_CERT:
            s_cert = optarg;
            break;
        case OPT_AREA:
        case OPT_ALL_AREA:
            s_al.area = optarg;
            break;
        case OPT_PRIORITY:
            if ((v = s_number("priority", optarg, 1, 1000, "priority")) < 0)
                return 2;
            s_al.max_priority = (uint32_t)v;
            break;
        case OPT_HISTORY:
            s_al.history = true;
            break;
        case OPT_LIMIT:
            if ((v = s_number("limit", optarg, 1, 10000000, "events")) < 0)
                return 2;
            s_al.limit = (uint32_t)v;
            break;
        case OPT_USER:
            s_al.user = optarg;
            break;
        case OPT_COMMENT:
            s_al.comment = optarg;
            break;
        default:
            s_usage(stderr);
            return 2;
        }
    }
    return -1;
}

static bool s_alarm_cmd(const char *cmd)
{
    static const char *cmds[] = {"alarms", "ack", "shelve", "unshelve", "disable", "enable"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (streq(cmd, cmds[i]))
            return true;
    return false;
}

//  Arguments of the alarm commands; the exit code on bad usage, else -1.
static int s_alarm_args(const char *cmd, int nargs, char **args)
{
    s_al.json = s_json;
    if (!s_al.user) //  who acknowledges: the login, unless --user says otherwise
        s_al.user = getenv("USER") && *getenv("USER") ? getenv("USER") : "unknown";
    s_al.timeout_ms = s_timeout_ms;
    if (streq(cmd, "shelve")) {
        if (nargs < 2) {
            fprintf(stderr, "scadactl shelve: usage: shelve ID... DURATION (e.g. 30m)\n");
            return 2;
        }
        if (scadactl_duration_ms(args[nargs - 1], &s_al.duration_ms) != 0) {
            fprintf(stderr,
                    "scadactl shelve: \"%s\" is not a duration (a positive number with s, ms, "
                    "m, h or d, at most a year, e.g. 90s, 15m, 2h)\n",
                    args[nargs - 1]);
            return 2;
        }
        nargs--;
    }
    s_al.ids = (const char *const *)args;
    s_al.nids = (size_t)nargs;
    if (streq(cmd, "ack") && !nargs && !s_al.area) {
        fprintf(stderr, "scadactl ack: name alarm ids, or --all-area AREA\n");
        return 2;
    }
    if (streq(cmd, "ack") && nargs && s_al.area) {
        fprintf(stderr, "scadactl ack: either alarm ids or --all-area, not both\n");
        return 2;
    }
    if (!streq(cmd, "alarms") && !streq(cmd, "ack") && !nargs) {
        fprintf(stderr, "scadactl %s: name at least one alarm id\n", cmd);
        return 2;
    }
    if (!streq(cmd, "alarms") && (s_al.history || s_al.limit || s_al.max_priority)) {
        fprintf(stderr, "scadactl %s: --history, --limit and --priority apply to alarms only\n",
                cmd);
        return 2;
    }
    if (s_al.limit && !s_al.history) {
        fprintf(stderr, "scadactl alarms: --limit goes with --history\n");
        return 2;
    }
    return -1;
}

int main(int argc, char **argv)
{
    const char *config = NULL;
    int rc = s_parse_options(argc, argv, &config);
    if (rc >= 0)
        return rc;
    if (optind >= argc) {
        fprintf(stderr, "scadactl: no command given\n");
        s_usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind];
    static const char *known[] = {"status", "get",  "watch",  "write", "tail",
                                  "iolog",  "ping", "keygen", "revoke"};
    bool ok = s_alarm_cmd(cmd);
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        ok = ok || streq(cmd, known[i]);
    if (!ok) {
        fprintf(stderr, "scadactl: unknown command \"%s\"\n", cmd);
        s_usage(stderr);
        return 2;
    }
    //  Options right after the command (glibc: optind 0 starts a new scan,
    //  here of the command's own argument list).
    int nargs = argc - optind;
    char **args = argv + optind;
    optind = 0;
    if ((rc = s_parse_options(nargs, args, &config)) >= 0)
        return rc;
    args += optind;
    nargs -= optind;
    if (!config) {
        fprintf(stderr, "scadactl: --config is required\n");
        return 2;
    }
    if (s_direct && !streq(cmd, "get") && !streq(cmd, "write")) {
        fprintf(stderr, "scadactl %s: --direct applies to get and write only\n", cmd);
        return 2;
    }
    if ((s_count || s_duration_ms || s_watch_alarms) && !streq(cmd, "watch")) {
        fprintf(stderr, "scadactl %s: --count, --duration and --alarms apply to watch only\n", cmd);
        return 2;
    }
    if ((s_broker_name || s_endpoint) && s_direct) {
        fprintf(stderr, "scadactl %s: --direct does not use a broker (drop --broker/--endpoint)\n",
                cmd);
        return 2;
    }
    if ((streq(cmd, "get") || streq(cmd, "watch")) && nargs < 1) {
        fprintf(stderr, "scadactl %s: name at least one tag\n", cmd);
        return 2;
    }
    if (streq(cmd, "revoke") && nargs != 1) {
        fprintf(stderr, "scadactl revoke: usage: revoke NAME (a process or user certificate)\n");
        return 2;
    }
    if (streq(cmd, "ping") && nargs < 1) {
        fprintf(stderr, "scadactl ping: name at least one process (io1, b1, resolver, alarm, "
                        "devsim)\n");
        return 2;
    }
    if (s_alarm_cmd(cmd) && (rc = s_alarm_args(cmd, nargs, args)) >= 0)
        return rc;
    if (!s_alarm_cmd(cmd) && (s_al.area || s_al.history || s_al.limit || s_al.max_priority ||
                              s_al.user || s_al.comment)) {
        fprintf(stderr,
                "scadactl %s: --area, --all-area, --priority, --history, --limit, --user "
                "and --comment apply to the alarm commands only\n",
                cmd);
        return 2;
    }
    double value = 0;
    if (streq(cmd, "write")) {
        if (nargs != 2) {
            fprintf(stderr, "scadactl write: usage: write TAG VALUE\n");
            return 2;
        }
        if (s_parse_value(args[1], &value))
            return 2;
    }
    slog_init("scadactl", SLOG_WARN);
    char err[1024];
    site_t *site = site_load(config, err, sizeof err);
    if (!site) {
        fprintf(stderr, "scadactl: %s\n", err);
        return 2;
    }
    zsys_init();
    //  Every command that talks to a process does it over CURVE (unless the
    //  site is plain), with --cert, SCADA_CERT or the site's scadactl key.
    if (!streq(cmd, "status") && !streq(cmd, "keygen") && !streq(cmd, "revoke") &&
        ctlsec_init(site, s_cert ? s_cert : getenv("SCADA_CERT")) != 0) {
        site_destroy(&site);
        return 2;
    }
    if (streq(cmd, "status"))
        rc = s_cmd_status(site);
    else if (streq(cmd, "get"))
        rc = s_direct ? s_cmd_get_direct(site, nargs, args) : s_cmd_get(site, nargs, args);
    else if (streq(cmd, "watch"))
        rc = s_cmd_watch(site, nargs, args);
    else if (streq(cmd, "write"))
        rc = s_direct ? s_cmd_write_direct(site, args, value) : s_cmd_write(site, args[0], value);
    else if (streq(cmd, "iolog"))
        rc = s_cmd_iolog(site, nargs, args);
    else if (streq(cmd, "keygen") || streq(cmd, "revoke")) {
        char *dir = site_path(site, site->security_keys);
        char e[1024];
        rc = streq(cmd, "keygen")
                 ? sec_keygen(site, dir, (const char *const *)args, (size_t)nargs, e, sizeof e)
                 : sec_revoke(site, dir, args[0], e, sizeof e);
        if (rc != 0) {
            fprintf(stderr, "scadactl %s: %s\n", cmd, e);
            rc = 1;
        }
        free(dir);
    } else if (streq(cmd, "ping"))
        rc = scadactl_ping(site, (const char *const *)args, (size_t)nargs, s_timeout_ms, s_json);
    else if (streq(cmd, "alarms"))
        rc = scadactl_alarms(site, &s_al);
    else if (s_alarm_cmd(cmd))
        rc = scadactl_alarm_action(site, cmd, &s_al);
    else
        rc = s_cmd_tail(site, nargs, args);
    ctlsec_destroy();
    site_destroy(&site);
    return rc;
}
