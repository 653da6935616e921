/*  scadactl: the command line for people.

    status          the site from its Redis keys: processes, devices, channels
    get TAG...      current value of tags, from the I/O server that serves them
    write TAG VALUE write a tag through the I/O server that serves it
    tail [TAG...]   follow the value and event stream of every I/O server

    Exit codes: 0 ok, 1 runtime failure (a peer did not answer, a write was
    refused), 2 bad usage or bad site file.
*/
#include "iolog.h"
#include "mclock.h"
#include "scada.pb-c.h"
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

static bool s_json = false;
static int s_timeout_ms = 2000;

static void s_usage(FILE *out)
{
    fprintf(out, "usage: scadactl --config SITE.yaml [--json] [--timeout MS] COMMAND [ARGS]\n"
                 "\n"
                 "commands:\n"
                 "  status            I/O servers, devices and connect windows from Redis\n"
                 "  get TAG...        one line per tag: TAG VALUE QUALITY TIMESTAMP\n"
                 "  write TAG VALUE   write a tag; prints ok or the reason it was refused\n"
                 "  tail [TAG...]     follow value changes and events (Ctrl-C stops)\n"
                 "  iolog CHANNEL on|off   switch a channel's I/O log at run time\n"
                 "  iolog CHANNEL --summary  reply times against deadlines, and advice\n"
                 "\n"
                 "  --json            one JSON object per line instead of text\n"
                 "  --timeout MS      how long to wait for a peer (default 2000)\n"
                 "  --help            this text\n");
}

static const char *s_quality_name(int q)
{
    switch (q) {
    case SCADA__QUALITY__GOOD:
        return "good";
    case SCADA__QUALITY__UNCERTAIN:
        return "uncertain";
    case SCADA__QUALITY__BAD_NO_COMM:
        return "bad-no-comm";
    case SCADA__QUALITY__BAD_CONFIG:
        return "bad-config";
    case SCADA__QUALITY__BAD_NOT_FOUND:
        return "bad-not-found";
    case SCADA__QUALITY__BAD_DEVICE:
        return "bad-device";
    default:
        return "bad";
    }
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
        printf(",\"quality\":\"%s\",\"timestamp\":\"%s\"", s_quality_name(quality), tsbuf);
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
        printf("%s %s %s %s\n", tag, val, s_quality_name(quality), tsbuf);
    }
}

//  Send one request to an I/O server's control socket and wait for the reply.
//  Returns NULL if it did not answer in time. Caller owns the result.
static Scada__IoReply *s_request(site_ioserver_t *io, Scada__IoRequest *req)
{
    zsock_t *sock = zsock_new(ZMQ_DEALER);
    zsock_set_linger(sock, 0);
    zsock_set_rcvtimeo(sock, s_timeout_ms);
    if (zsock_connect(sock, "%s", io->control) < 0) {
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

static int s_cmd_get(site_t *site, int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "scadactl get: name at least one tag\n");
        return 2;
    }
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

static int s_cmd_write(site_t *site, int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "scadactl write: usage: write TAG VALUE\n");
        return 2;
    }
    char *end = NULL;
    double value = strtod(argv[1], &end);
    if (!end || *end || end == argv[1]) {
        if (strcasecmp(argv[1], "true") == 0 || strcasecmp(argv[1], "on") == 0)
            value = 1;
        else if (strcasecmp(argv[1], "false") == 0 || strcasecmp(argv[1], "off") == 0)
            value = 0;
        else {
            fprintf(stderr, "scadactl write: \"%s\" is not a number (or true/false)\n", argv[1]);
            return 2;
        }
    }
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
            printf(s_json ? "{\"tag\":\"%s\",\"result\":\"ok\"}\n" : "%s ok\n", argv[0]);
            return 0;
        }
        last = buf;
        //  An offline device at the primary may be online at the standby.
        if (strcmp(buf, "device offline") != 0)
            break;
    }
    if (s_json) {
        printf("{\"tag\":\"%s\",\"result\":\"error\",\"error\":", argv[0]);
        s_json_str(stdout, last);
        printf("}\n");
    } else
        printf("%s error: %s\n", argv[0], last);
    return 1;
}

static int s_cmd_tail(site_t *site, int argc, char **argv)
{
    zsock_t *sub = zsock_new(ZMQ_SUB);
    for (size_t i = 0; i < site->nioservers; i++)
        zsock_connect(sub, "%s", site->ioservers[i].publish);
    zsock_set_subscribe(sub, "V");
    zsock_set_subscribe(sub, "E");
    zsock_set_rcvtimeo(sub, 500);
    while (!zsys_interrupted) {
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
    zsock_destroy(&sub);
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
        const char *f[] = {"devices_online",   "devices_total",    "connect_in_flight",
                           "connect_queued",   "connect_starved",  "dead_probe_lag_ms",
                           "values_published", "connect_attempts", "pid"};
        if (s_json) {
            printf("{\"ioserver\":\"%s\",\"state\":\"%s\"", io->name, state ? state : "absent");
            for (size_t k = 0; k < sizeof f / sizeof f[0]; k++) {
                const char *v = s_field(r, f[k]);
                if (v)
                    printf(",\"%s\":%s", f[k], v);
            }
        } else if (!state)
            printf("ioserver %-10s absent (not running, or its key expired)\n", io->name);
        else
            printf("ioserver %-10s %-8s pid %s  devices %s/%s online  connect window %s in "
                   "flight, %s queued%s\n",
                   io->name, state, s_field(r, "pid"), s_field(r, "devices_online"),
                   s_field(r, "devices_total"), s_field(r, "connect_in_flight"),
                   s_field(r, "connect_queued"),
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
                } else if (k != 0 && state)
                    printf("  %-20s %-10s %s\n", dev->name, ds ? ds : "absent",
                           err && *err ? err : "");
                if (dr)
                    freeReplyObject(dr);
            }
        if (s_json)
            printf("]}\n");
        else if (state)
            printf("  devices: %d online, %d offline, %d queued, %d connecting, %d failed\n",
                   counts[0], counts[1], counts[2], counts[3], counts[4]);
    }
    redisFree(c);
    return rc;
}

int main(int argc, char **argv)
{
    static struct option options[] = {{"config", required_argument, NULL, 'c'},
                                      {"json", no_argument, NULL, 'j'},
                                      {"timeout", required_argument, NULL, 't'},
                                      {"help", no_argument, NULL, 'h'},
                                      {NULL, 0, NULL, 0}};
    const char *config = NULL;
    int opt;
    //  "+": stop at the command, so its arguments may start with '-'.
    while ((opt = getopt_long(argc, argv, "+c:jt:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config = optarg;
            break;
        case 'j':
            s_json = true;
            break;
        case 't': {
            char *end = NULL;
            long t = strtol(optarg, &end, 10);
            if (!end || *end || t <= 0 || t > 600000) {
                fprintf(stderr, "scadactl: --timeout: \"%s\" is not a number of ms (1..600000)\n",
                        optarg);
                return 2;
            }
            s_timeout_ms = (int)t;
            break;
        }
        case 'h':
            s_usage(stdout);
            return 0;
        default:
            s_usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "scadactl: no command given\n");
        s_usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind];
    static const char *known[] = {"status", "get", "write", "tail", "iolog"};
    bool ok = false;
    for (size_t i = 0; i < 5; i++)
        ok = ok || streq(cmd, known[i]);
    if (!ok) {
        fprintf(stderr, "scadactl: unknown command \"%s\"\n", cmd);
        s_usage(stderr);
        return 2;
    }
    if (!config) {
        fprintf(stderr, "scadactl: --config is required\n");
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
    int rc;
    int nargs = argc - optind - 1;
    char **args = argv + optind + 1;
    if (streq(cmd, "status"))
        rc = s_cmd_status(site);
    else if (streq(cmd, "get"))
        rc = s_cmd_get(site, nargs, args);
    else if (streq(cmd, "write"))
        rc = s_cmd_write(site, nargs, args);
    else if (streq(cmd, "iolog"))
        rc = s_cmd_iolog(site, nargs, args);
    else
        rc = s_cmd_tail(site, nargs, args);
    site_destroy(&site);
    return rc;
}
