/*  fuzz_site: libFuzzer target for the site-file loader, site_load_string().

    The input is the file. Whatever it holds, the loader must come back,
    without a leak, with either a site or one message that starts with the
    file's name and a line within the input ("fuzz.yaml:LINE: ..."), never
    both, never neither. A message cut to a small buffer must be a prefix
    of the whole one. A site that loads is walked whole: every string is
    read (ASan sees an overread or a use after free), every back pointer
    and every lookup by name and by id must lead back to the same struct,
    ids must be 1..ntags in file order, and the counts must add up.

    A few environment variables are set for ${VAR} references: FUZZ_HOST
    (io1), FUZZ_PORT (5600), FUZZ_EMPTY (set, empty); others are unset
    unless the environment has them.
*/
#include "site.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_NAME "fuzz.yaml"

static void s_check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_site: invariant broken: %s\n", what);
        abort();
    }
}

//  Read a string whole (NULL allowed), so ASan sees it.
static size_t s_touch(const char *s)
{
    return s ? strlen(s) : 0;
}

//  "fuzz.yaml:LINE: " with 1 <= LINE <= lines + 1; returns LINE or 0.
static long s_message_line(const char *err, size_t lines)
{
    size_t n = strlen(S_NAME);
    if (strncmp(err, S_NAME ":", n + 1) != 0 || !isdigit((unsigned char)err[n + 1]))
        return 0;
    char *end;
    long line = strtol(err + n + 1, &end, 10);
    if (end[0] != ':' || end[1] != ' ' || end[2] == 0)
        return 0;
    return line >= 1 && (size_t)line <= lines + 1 ? line : 0;
}

static void s_walk(const site_t *site)
{
    volatile size_t sum = s_touch(site->path) + s_touch(site->site) + s_touch(site->redis_host) +
                          s_touch(site->devsim_control) + s_touch(site->resolver.endpoint) +
                          s_touch(site->alarm.publish) + s_touch(site->alarm.control) +
                          s_touch(site->alarm.journal) + s_touch(site->alarm.comm_area) +
                          s_touch(site->alarm.broker);
    s_check(site->site && site->site[0], "a site without its name");
    for (size_t i = 0; i < site->ndevsim_start; i++)
        sum += s_touch(site->devsim_start[i]) + (size_t)site->devsim_start_line[i];
    for (size_t i = 0; i < site->nioservers; i++) {
        const site_ioserver_t *io = &site->ioservers[i];
        sum += s_touch(io->publish) + s_touch(io->control) + s_touch(io->iolog_dir);
        s_check(site_ioserver(site, io->name) == io, "I/O server lookup");
        s_check(io->connect_window >= 1, "connect window 0");
        s_check(io->reconnect_min_ms <= io->reconnect_max_ms, "reconnect bounds");
    }
    for (size_t i = 0; i < site->nbrokers; i++) {
        const site_broker_t *b = &site->brokers[i];
        sum += s_touch(b->endpoint);
        s_check(site_broker(site, b->name) == b, "broker lookup");
    }
    s_check(site_broker(site, NULL) != NULL, "no default broker");
    sum += s_touch(site->default_broker.name) + s_touch(site->default_broker.endpoint);
    size_t ndevices = 0, ntags = 0;
    uint32_t id = 0;
    for (size_t c = 0; c < site->nchannels; c++) {
        const site_channel_t *ch = &site->channels[c];
        sum += s_touch(ch->name) + s_touch(ch->host) + s_touch(ch->serial_port);
        s_check(ch->max_read_timeouts >= 1 && ch->max_write_timeouts >= 1, "timeout counts");
        for (size_t d = 0; d < ch->ndevices; d++) {
            const site_device_t *dev = &ch->devices[d];
            ndevices++;
            sum += s_touch(dev->host);
            s_check(dev->channel == ch, "device's channel");
            s_check(site_device(site, dev->name) == dev, "device lookup");
            s_check(dev->nservers >= 1, "a device no I/O server serves");
            for (size_t s = 0; s < dev->nservers; s++) {
                s_check(site_ioserver(site, dev->servers[s].ioserver) != NULL,
                        "an offer of an unknown I/O server");
                s_check(site_device_priority(dev, dev->servers[s].ioserver) > 0, "priority");
            }
            for (size_t t = 0; t < dev->ntags; t++) {
                const site_tag_t *tag = &dev->tags[t];
                ntags++;
                s_check(tag->device == dev, "tag's device");
                s_check(tag->id == ++id, "tag ids not in file order");
                s_check(site_tag(site, tag->name) == tag, "tag lookup by name");
                s_check(site_tag_by_id(site, tag->id) == tag, "tag lookup by id");
                s_check(site_type_width(tag->type) >= 1, "type width");
                s_check(tag->address + site_type_width(tag->type) - 1 <= 65535,
                        "tag beyond the last address");
                const site_alarms_t *al = &tag->alarms;
                sum += s_touch(site_type_name(tag->type)) + s_touch(site_area_name(tag->area)) +
                       s_touch(al->area) + s_touch(al->hihi.message) + s_touch(al->hi.message) +
                       s_touch(al->lo.message) + s_touch(al->lolo.message) +
                       s_touch(al->state_message);
            }
        }
    }
    s_check(ndevices == site->ndevices, "device count");
    s_check(ntags == site->ntags, "tag count");
    s_check(site_tag_by_id(site, 0) == NULL, "tag id 0");
    s_check(site_tag_by_id(site, (uint32_t)site->ntags + 1) == NULL, "tag id past the last");
    (void)sum;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("FUZZ_HOST", "io1", 1);
    setenv("FUZZ_PORT", "5600", 1);
    setenv("FUZZ_EMPTY", "", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    //  An exact copy: nothing after the last byte, not even a terminator.
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    if (size)
        memcpy(text, data, size);
    //  An upper bound of the lines libyaml counts: \n, \r, and NEL, LS, PS
    //  in UTF-8 (..85, ..A8, ..A9) or UTF-16 (85 00, 28 20, 29 20 either way).
    size_t lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += strchr("\n\r\x85\xa8\xa9\x28\x29", text[i]) && text[i];

    char err[1024];
    memset(err, 'x', sizeof err);
    site_t *site = site_load_string(text, size, S_NAME, err, sizeof err);
    s_check(memchr(err, 0, sizeof err) != NULL, "message not terminated");
    if (site) {
        s_check(err[0] == 0, "a message with a site");
        s_walk(site);
        site_destroy(&site);
        s_check(site == NULL, "site_destroy leaves the pointer");
    } else {
        if (!s_message_line(err, lines)) {
            fprintf(stderr, "fuzz_site: message: %s\n", err);
            s_check(0, "a failure without \"" S_NAME ":LINE: \" in front");
        }
        //  The same message cut to a small buffer, and no buffer at all.
        char small[24];
        site_t *again = site_load_string(text, size, S_NAME, small, sizeof small);
        s_check(again == NULL, "second load disagrees");
        s_check(strlen(small) < sizeof small && strncmp(small, err, strlen(small)) == 0,
                "a cut message is not a prefix of the whole one");
        again = site_load_string(text, size, S_NAME, NULL, 0);
        s_check(again == NULL, "load without a message buffer disagrees");
    }
    free(text);
    return 0;
}
