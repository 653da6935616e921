/*  control: the text commands of scada-devsim's control socket. See control.h. */
#include "control.h"
#include "slog.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S_MAX_WORDS 8
#define S_MAX_DELAY 3600000  //  ms; an hour is silence for any client
#define S_MAX_FLAP  86400000 //  ms; a phase of a flapping device, a day at most

//  A growing string for replies; on no memory it stays NULL and the reply is lost.
typedef struct {
    char *data;
    size_t len, cap;
    bool failed;
} s_buf_t;

static void s_printf(s_buf_t *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_printf(s_buf_t *buf, const char *fmt, ...)
{
    if (buf->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf->data ? buf->data + buf->len : NULL,
                          buf->data ? buf->cap - buf->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            buf->failed = true;
            return;
        }
        if (buf->data && buf->len + (size_t)n < buf->cap) {
            buf->len += (size_t)n;
            return;
        }
        size_t cap = buf->cap ? buf->cap : 256;
        while (cap <= buf->len + (size_t)n)
            cap *= 2;
        char *data = realloc(buf->data, cap);
        if (!data) {
            buf->failed = true;
            return;
        }
        buf->data = data;
        buf->cap = cap;
    }
}

//  A JSON string: names come from the site file and may hold anything.
static void s_json_string(s_buf_t *buf, const char *text)
{
    s_printf(buf, "\"");
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\')
            s_printf(buf, "\\%c", *p);
        else if (*p < 0x20)
            s_printf(buf, "\\u%04x", *p);
        else
            s_printf(buf, "%c", *p);
    }
    s_printf(buf, "\"");
}

static char *s_reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *s_reply(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    return text;
}

//  Resolve a DEV argument into served devices. Returns the count (>= 1) and
//  a malloc'd array in *devs, or -1 with the error reply in *error.
static long s_devices(devsim_t *self, const char *spec, simdev_t ***devs, char **error)
{
    size_t count = 0;
    if (strcmp(spec, "*") == 0) {
        count = devsim_device_count(self);
        if (count == 0) {
            *error = s_reply("error: this devsim serves no devices");
            return -1;
        }
    } else {
        count = 1;
        for (const char *p = spec; *p; p++)
            count += *p == ',';
    }
    *devs = calloc(count, sizeof(simdev_t *));
    if (!*devs) {
        *error = NULL;
        return -1;
    }
    if (strcmp(spec, "*") == 0) {
        for (size_t i = 0; i < count; i++)
            (*devs)[i] = devsim_device_at(self, i);
        return (long)count;
    }
    char *copy = strdup(spec);
    size_t n = 0;
    char *save = NULL;
    for (char *name = copy ? strtok_r(copy, ",", &save) : NULL; name;
         name = strtok_r(NULL, ",", &save)) {
        simdev_t *dev = devsim_device(self, name);
        if (!dev) {
            if (site_device(devsim_site(self), name))
                *error = s_reply("error: device %s is not served by this devsim (address not "
                                 "local, serial port not a terminal, a listen channel, or not "
                                 "in --only)",
                                 name);
            else
                *error = s_reply("error: no device %s in the site", name);
            free(copy);
            free(*devs);
            return -1;
        }
        (*devs)[n++] = dev;
    }
    free(copy);
    if (n == 0) {
        *error = s_reply("error: no device named in \"%s\"", spec);
        free(*devs);
        return -1;
    }
    return (long)n;
}

//  Parse a whole word as an integer in [lo, hi].
static bool s_int(const char *word, long lo, long hi, long *value)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(word, &end, 10);
    if (errno || end == word || *end || v < lo || v > hi)
        return false;
    *value = v;
    return true;
}

//  Parse a whole word as a value; true/false and on/off are 1 and 0.
static bool s_value(const char *word, double *value)
{
    if (strcasecmp(word, "true") == 0 || strcasecmp(word, "on") == 0) {
        *value = 1;
        return true;
    }
    if (strcasecmp(word, "false") == 0 || strcasecmp(word, "off") == 0) {
        *value = 0;
        return true;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(word, &end);
    if (errno || end == word || *end || !isfinite(v))
        return false;
    *value = v;
    return true;
}

//  Shortest text that reads back as the value the tag holds.
static void s_format_value(const site_tag_t *tag, double value, char *text, size_t size)
{
    snprintf(text, size, tag->type == SITE_T_FLOAT32 ? "%.9g" : "%.15g", value);
}

//  A tag of a served device, or NULL with the error reply.
static simdev_t *s_tag(devsim_t *self, const char *name, const site_tag_t **tag, char **error)
{
    *tag = site_tag(devsim_site(self), name);
    if (!*tag) {
        *error = s_reply("error: no tag %s in the site", name);
        return NULL;
    }
    simdev_t *dev = devsim_device(self, (*tag)->device->name);
    if (!dev)
        *error = s_reply("error: tag %s belongs to device %s, which this devsim does not serve",
                         name, (*tag)->device->name);
    return dev;
}

static void s_stats_device(devsim_t *self, simdev_t *dev, s_buf_t *buf)
{
    const site_device_t *device = simdev_device(dev);
    const simdev_stats_t *stats = simdev_stats(dev);
    devsim_endpoint_t ep;
    devsim_endpoint(self, dev, &ep);
    s_json_string(buf, device->name);
    s_printf(buf, ":{\"mode\":\"%s\",\"delay_ms\":%d,\"exception\":%d,",
             simdev_mode_name(simdev_mode(dev)), simdev_delay_ms(dev), simdev_exception_code(dev));
    s_printf(buf,
             "\"requests\":%llu,\"replies\":%llu,\"exceptions\":%llu,\"garbage\":%llu,"
             "\"ignored\":%llu,",
             (unsigned long long)stats->requests, (unsigned long long)stats->replies,
             (unsigned long long)stats->exceptions, (unsigned long long)stats->garbage,
             (unsigned long long)stats->ignored);
    s_printf(buf,
             "\"connections\":%zu,\"accepted\":%llu,\"listening\":%s,\"endpoint\":", ep.connections,
             (unsigned long long)ep.accepted, ep.listening ? "true" : "false");
    if (ep.serial)
        s_json_string(buf, ep.host);
    else {
        char endpoint[300];
        snprintf(endpoint, sizeof endpoint, "%s:%u", ep.host, ep.port);
        s_json_string(buf, endpoint);
    }
    s_printf(buf, ",\"gateway\":%s,\"unit\":%u,\"transport\":\"%s\"", ep.gateway ? "true" : "false",
             device->unit, ep.serial ? "rtu" : "tcp");
    simdev_flap_t flap;
    if (simdev_flap(dev, devsim_now(self), &flap))
        s_printf(buf, ",\"flap\":{\"up_ms\":%u,\"down_ms\":%u,\"up\":%s,\"next_ms\":%lld}",
                 flap.up_ms, flap.down_ms, flap.up ? "true" : "false", (long long)flap.next_ms);
    if (ep.serial) {
        s_printf(buf, ",\"channel\":");
        s_json_string(buf, ep.channel);
    }
    s_printf(buf, "}");
}

//  "serial":{CHANNEL:{...}} for every served serial channel.
static void s_stats_serial(devsim_t *self, s_buf_t *buf)
{
    s_printf(buf, "\"serial\":{");
    devsim_serial_t port;
    for (size_t i = 0; devsim_serial_at(self, i, &port) == 0; i++) {
        if (i)
            s_printf(buf, ",");
        s_json_string(buf, port.channel);
        s_printf(buf, ":{\"port\":");
        s_json_string(buf, port.path);
        s_printf(buf,
                 ",\"baud\":%u,\"framing\":\"%d%c%d\",\"line\":\"%s\",\"open\":%s,\"units\":%zu,"
                 "\"opens\":%llu,"
                 "\"frames\":%llu,\"crc_errors\":%llu,\"garbage_bytes\":%llu,"
                 "\"unknown_unit\":%llu,\"broadcasts\":%llu,\"write_errors\":%llu}",
                 port.baud, port.data_bits, port.parity, port.stop_bits, port.line,
                 port.open ? "true" : "false", port.units, (unsigned long long)port.opens,
                 (unsigned long long)port.frames, (unsigned long long)port.crc_errors,
                 (unsigned long long)port.garbage_bytes, (unsigned long long)port.unknown,
                 (unsigned long long)port.broadcasts, (unsigned long long)port.write_errors);
    }
    s_printf(buf, "}");
}

static char *s_stats(devsim_t *self, simdev_t **devs, size_t ndevs)
{
    s_buf_t buf = {0};
    s_printf(&buf, "ok {\"devices\":{");
    for (size_t i = 0; i < ndevs; i++) {
        if (i)
            s_printf(&buf, ",");
        s_stats_device(self, devs[i], &buf);
    }
    simdev_stats_t sum = {0};
    for (size_t i = 0; i < devsim_device_count(self); i++) {
        const simdev_stats_t *stats = simdev_stats(devsim_device_at(self, i));
        sum.requests += stats->requests;
        sum.replies += stats->replies;
        sum.exceptions += stats->exceptions;
        sum.garbage += stats->garbage;
        sum.ignored += stats->ignored;
    }
    devsim_endpoint_t total;
    size_t listening = 0, ports = 0;
    devsim_totals(self, &total, &listening, &ports);
    s_printf(&buf, "},");
    s_stats_serial(self, &buf);
    s_printf(&buf,
             ",\"totals\":{\"devices\":%zu,\"listening\":%zu,\"serial_open\":%zu,"
             "\"connections\":%zu,\"accepted\":%llu,\"requests\":%llu,\"replies\":%llu,"
             "\"exceptions\":%llu,\"garbage\":%llu,\"ignored\":%llu,\"malformed\":%llu,"
             "\"unknown_unit\":%llu,\"frames\":%llu,\"crc_errors\":%llu,"
             "\"garbage_bytes\":%llu}}",
             devsim_device_count(self), listening, ports, total.connections,
             (unsigned long long)total.accepted, (unsigned long long)sum.requests,
             (unsigned long long)sum.replies, (unsigned long long)sum.exceptions,
             (unsigned long long)sum.garbage, (unsigned long long)sum.ignored,
             (unsigned long long)total.malformed, (unsigned long long)total.unknown,
             (unsigned long long)total.frames, (unsigned long long)total.crc_errors,
             (unsigned long long)total.garbage_bytes);
    if (buf.failed) {
        free(buf.data);
        return NULL;
    }
    return buf.data;
}

//  The commands that take DEV and change a mode.
static const struct {
    const char *name;
    simdev_mode_t mode;
    int nargs;        //  words after DEV
    long lo, hi;      //  bounds of that argument
    const char *what; //  the argument, for messages
} s_modes[] = {
    {"normal", SIMDEV_NORMAL, 0, 0, 0, NULL},
    {"silent", SIMDEV_SILENT, 0, 0, 0, NULL},
    {"refuse", SIMDEV_REFUSE, 0, 0, 0, NULL},
    {"garbage", SIMDEV_GARBAGE, 0, 0, 0, NULL},
    {"delay", SIMDEV_DELAY, 1, 0, S_MAX_DELAY, "MS"},
    {"exception", SIMDEV_EXCEPTION, 1, 1, MODBUS_EXCEPTION_MAX - 1, "CODE"},
};

static const char *s_help =
    "ok commands: ping | silent DEV | refuse DEV | normal DEV | delay DEV MS | "
    "exception DEV CODE | garbage DEV | flap DEV UP_MS DOWN_MS [delay MS] | disconnect DEV | "
    "set TAG VALUE | get TAG | stats [DEV]; DEV is a name, a comma list or *";

//  flap DEV UP_MS DOWN_MS [delay MS]
static char *s_flap(devsim_t *self, int argc, char **argv)
{
    if ((argc != 4 && argc != 6) || (argc == 6 && strcmp(argv[4], "delay") != 0))
        return s_reply("error: usage: flap DEV UP_MS DOWN_MS [delay MS]");
    long up = 0, down = 0, delay = 0;
    static const char *const what[] = {"UP_MS", "DOWN_MS"};
    long *phase[] = {&up, &down};
    for (int i = 0; i < 2; i++)
        if (!s_int(argv[2 + i], 1, S_MAX_FLAP, phase[i]))
            return s_reply("error: flap: %s must be an integer in 1..%d, not \"%s\"", what[i],
                           S_MAX_FLAP, argv[2 + i]);
    if (argc == 6 && !s_int(argv[5], 0, S_MAX_DELAY, &delay))
        return s_reply("error: flap: delay MS must be an integer in 0..%d, not \"%s\"", S_MAX_DELAY,
                       argv[5]);
    simdev_t **devs = NULL;
    char *error = NULL;
    long n = s_devices(self, argv[1], &devs, &error);
    if (n < 0)
        return error;
    char first[512] = "";
    for (long i = 0; i < n; i++) {
        char err[512];
        if (devsim_set_flap(self, devs[i], (uint32_t)up, (uint32_t)down, (int)delay, err,
                            sizeof err) != 0 &&
            !*first)
            snprintf(first, sizeof first, "%s", err);
    }
    free(devs);
    return *first ? s_reply("error: %s", first) : s_reply("ok");
}

static char *s_handle(devsim_t *self, int argc, char **argv)
{
    const char *cmd = argv[0];
    if (strcmp(cmd, "ping") == 0)
        return argc == 1 ? s_reply("ok pong") : s_reply("error: ping takes no arguments");
    if (strcmp(cmd, "help") == 0)
        return s_reply("%s", s_help);

    for (size_t m = 0; m < sizeof s_modes / sizeof s_modes[0]; m++) {
        if (strcmp(cmd, s_modes[m].name) != 0)
            continue;
        if (argc != 2 + s_modes[m].nargs)
            return s_modes[m].nargs ? s_reply("error: usage: %s DEV %s", cmd, s_modes[m].what)
                                    : s_reply("error: usage: %s DEV", cmd);
        long arg = 0;
        if (s_modes[m].nargs && !s_int(argv[2], s_modes[m].lo, s_modes[m].hi, &arg))
            return s_reply("error: %s: %s must be an integer in %ld..%ld, not \"%s\"", cmd,
                           s_modes[m].what, s_modes[m].lo, s_modes[m].hi, argv[2]);
        simdev_t **devs = NULL;
        char *error = NULL;
        long n = s_devices(self, argv[1], &devs, &error);
        if (n < 0)
            return error;
        char first[512] = "";
        for (long i = 0; i < n; i++) {
            char err[512];
            if (devsim_set_mode(self, devs[i], s_modes[m].mode, (int)arg, err, sizeof err) != 0 &&
                !*first)
                snprintf(first, sizeof first, "%s", err);
        }
        free(devs);
        return *first ? s_reply("error: %s", first) : s_reply("ok");
    }

    if (strcmp(cmd, "flap") == 0)
        return s_flap(self, argc, argv);
    if (strcmp(cmd, "disconnect") == 0) {
        if (argc != 2)
            return s_reply("error: usage: disconnect DEV");
        simdev_t **devs = NULL;
        char *error = NULL;
        long n = s_devices(self, argv[1], &devs, &error);
        if (n < 0)
            return error;
        size_t closed = 0;
        for (long i = 0; i < n; i++)
            closed += devsim_disconnect(self, devs[i]);
        free(devs);
        return s_reply("ok %zu", closed);
    }
    if (strcmp(cmd, "set") == 0) {
        if (argc != 3)
            return s_reply("error: usage: set TAG VALUE");
        const site_tag_t *tag = NULL;
        char *error = NULL;
        simdev_t *dev = s_tag(self, argv[1], &tag, &error);
        if (!dev)
            return error;
        double value = 0;
        if (!s_value(argv[2], &value))
            return s_reply("error: set: \"%s\" is not a number", argv[2]);
        const char *why = NULL;
        if (simdev_set(dev, tag, value, &why) != 0)
            return s_reply("error: set: %s does not fit tag %s (%s): %s", argv[2], tag->name,
                           site_type_name(tag->type), why ? why : "out of range");
        char text[64];
        s_format_value(tag, simdev_get(dev, tag), text, sizeof text);
        slog_info("tag %s set to %s (sim frozen)", tag->name, text);
        return s_reply("ok %s", text);
    }
    if (strcmp(cmd, "get") == 0) {
        if (argc != 2)
            return s_reply("error: usage: get TAG");
        const site_tag_t *tag = NULL;
        char *error = NULL;
        simdev_t *dev = s_tag(self, argv[1], &tag, &error);
        if (!dev)
            return error;
        char text[64];
        s_format_value(tag, simdev_get(dev, tag), text, sizeof text);
        return s_reply("ok %s", text);
    }
    if (strcmp(cmd, "stats") == 0) {
        if (argc > 2)
            return s_reply("error: usage: stats [DEV]");
        simdev_t **devs = NULL;
        char *error = NULL;
        long n = 0;
        if (argc == 2) {
            n = s_devices(self, argv[1], &devs, &error);
            if (n < 0)
                return error;
        } else if (devsim_device_count(self) > 0) {
            n = s_devices(self, "*", &devs, &error);
            if (n < 0)
                return error;
        }
        char *reply = s_stats(self, devs, (size_t)n);
        free(devs);
        return reply;
    }
    return s_reply("error: unknown command \"%.64s\" (try help)", cmd);
}

char *control_handle(devsim_t *self, const char *request)
{
    char *copy = strdup(request);
    if (!copy)
        return NULL;
    char *argv[S_MAX_WORDS];
    int argc = 0;
    char *save = NULL;
    for (char *word = strtok_r(copy, " \t\r\n", &save); word;
         word = strtok_r(NULL, " \t\r\n", &save)) {
        if (argc == S_MAX_WORDS) {
            free(copy);
            return s_reply("error: too many words");
        }
        argv[argc++] = word;
    }
    char *reply = argc ? s_handle(self, argc, argv) : s_reply("error: empty command");
    free(copy);
    slog_debug("control: %.200s -> %.200s", request, reply ? reply : "(no memory)");
    return reply;
}
