/*  test_site: the site-file loader.

    A full file with every key, checked field by field with its defaults and
    back pointers; then one test per kind of error, each case asserting the
    message's line, key path and a phrase that says what is wrong; and a
    generated site of 5,000 devices and 100,000 tags.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "site.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ASSERT_NEAR(a, b) assert_true(fabs((double)(a) - (double)(b)) < 1e-9)

static site_t *s_load(const char *text)
{
    char err[512];
    site_t *site = site_load_string(text, strlen(text), "site.yaml", err, sizeof err);
    if (!site)
        print_error("unexpected error: %s\n", err);
    assert_non_null(site);
    return site;
}

typedef struct {
    const char *text;
    int line;         //  expected line
    const char *key;  //  expected key path, or NULL for none
    const char *what; //  phrase the message must contain
} s_case_t;

//  Every case must fail with "site.yaml:LINE: KEY: ..." containing `what`.
static void s_run(const s_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const s_case_t *c = &cases[i];
        char err[512];
        site_t *site = site_load_string(c->text, strlen(c->text), "site.yaml", err, sizeof err);
        if (site) {
            site_destroy(&site);
            print_error("case %zu loaded, expected \"%s\"\n", i, c->what);
            fail();
        }
        char want[256];
        if (c->key)
            snprintf(want, sizeof want, "site.yaml:%d: %s: ", c->line, c->key);
        else
            snprintf(want, sizeof want, "site.yaml:%d: ", c->line);
        if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, c->what)) {
            print_error("case %zu\n  got:  %s\n  want: %s...%s\n", i, err, want, c->what);
            fail();
        }
    }
}

#define RUN(cases) s_run(cases, sizeof(cases) / sizeof((cases)[0]))

//  Lines 1-5; the first channel starts on line 6.
#define HEAD                                                                                       \
    "site: t\n"                                                                                    \
    "ioservers:\n"                                                                                 \
    "  - name: io1\n"                                                                              \
    "  - name: io2\n"                                                                              \
    "channels:\n"

//  A network channel on lines 6-12 with one device; its tags follow from line 13.
#define NET                                                                                        \
    "  - name: ch1\n"                                                                              \
    "    type: network\n"                                                                          \
    "    devices:\n"                                                                               \
    "      - name: d1\n"                                                                           \
    "        address: 127.0.0.1:502\n"                                                             \
    "        servers: [io1]\n"                                                                     \
    "        tags:\n"

#define TAG(x) "          - " x "\n"

//  A network device whose keys follow from line 10.
#define DEV                                                                                        \
    HEAD "  - name: ch1\n"                                                                         \
         "    type: network\n"                                                                     \
         "    devices:\n"                                                                          \
         "      - name: d1\n"

//  A channel of the given type whose keys follow from line 8.
#define CHAN(type) HEAD "  - name: ch1\n    type: " type "\n"

//  ---------------------------------------------------------------------------

static const char *s_full =
    "# A site with every key\n"                                                             //  1
    "site: plant7\n"                                                                        //  2
    "redis: {host: redis.local, port: 6380}\n"                                              //  3
    "ping_time_ms: 250\n"                                                                   //  4
    "resolve_retry_backoff_ms: 750\n"                                                       //  5
    "devsim: {control: \"tcp://127.0.0.1:6590\"}\n"                                         //  6
    "resolver: {endpoint: \"tcp://10.0.0.9:6500\"}\n"                                       //  7
    "brokers: [{name: b1, resolve_on_startup: yes, update_interval_ms: 50}, {name: b2}]\n"  //  8
    "alarm:\n"                                                                              //  9
    "ioservers:\n"                                                                          // 10
    "  - name: io1\n"                                                                       // 11
    "    connect_window: 4\n"                                                               // 12
    "    connect_timeout_ms: 2000\n"                                                        // 13
    "    connect_timeout_min_ms: 100\n"                                                     // 14
    "    reconnect_min_ms: 500\n"                                                           // 15
    "    reconnect_max_ms: 30000\n"                                                         // 16
    "    recent_ms: 120000\n"                                                               // 17
    "    integrity_ms: 15000\n"                                                             // 18
    "    publish: tcp://10.0.0.1:7000\n"                                                    // 19
    "    control: tcp://10.0.0.1:7001\n"                                                    // 20
    "  - name: io2\n"                                                                       // 21
    "channels:\n"                                                                           // 22
    "  - name: net1\n"                                                                      // 23
    "    type: network\n"                                                                   // 24
    "    standard_reply_delay_ms: 150\n"                                                    // 25
    "    baud: 0\n"                                                                         // 26
    "    max_read_timeouts: 5\n"                                                            // 27
    "    max_write_timeouts: 2\n"                                                           // 28
    "    max_gap: 8\n"                                                                      // 29
    "    iolog: yes\n"                                                                      // 30
    "    devices:\n"                                                                        // 31
    "      - name: plc1\n"                                                                  // 32
    "        address: 127.0.0.1:15020\n"                                                    // 33
    "        unit: 7\n"                                                                     // 34
    "        servers: [{ioserver: io1, priority: 1}, {ioserver: io2, priority: 2}]\n"       // 35
    "        tags:\n"                                                                       // 36
    "          - {name: PLC1.LEVEL, address: \"hr:0\", type: float32, scan_ms: 500,\n"      // 37
    "             deadband: 0.5, always_scan: true}\n"                                      // 38
    "          - {name: PLC1.RUN, address: \"co:3\"}\n"                                     // 39
    "          - {name: PLC1.FLOW, address: \"ir:10\", type: int32, word_order: little,\n"  // 40
    "             raw: [4000, 20000], eng: [0, 100]}\n"                                     // 41
    "          - name: PLC1.ALARM\n"                                                        // 42
    "            address: di:65535\n"                                                       // 43
    "            sim: toggle\n"                                                             // 44
    "          - {name: PLC1.SP, address: \"HR:2\", type: int16, scale: 0.1, offset: -5,\n" // 45
    "             writable: false,\n"                                                       // 46
    "             sim: {kind: ramp, min: -10, max: 10, period_ms: 2000, initial: 3}}\n"     // 47
    "      - name: plc2\n"                                                                  // 48
    "        address: \"[::1]:502\"\n"                                                      // 49
    "        word_order: little\n"                                                          // 50
    "        tags:\n"                                                                       // 51
    "          - {name: PLC2.A, address: \"hr:65534\", type: uint32}\n"                     // 52
    "          - {name: PLC2.B, address: \"hr:0\", type: float32, word_order: big,\n"       // 53
    "             scan_ms: 100, sim: {kind: sine}}\n"                                       // 54
    "        scan_ms: 250\n"                                                                // 55
    "        servers: [io2, io1]\n"                                                         // 56
    "  - name: gw\n"                                                                        // 57
    "    devices:\n"                                                                        // 58
    "      - {name: rtu1, unit: 3, servers: [io2]}\n"                                       // 59
    "      - {name: rtu2, address: 4, servers: [{ioserver: io1}, io2]}\n"                   // 60
    "    type: tcp\n"                                                                       // 61
    "    address: gw.local:502\n"                                                           // 62
    "  - name: bus\n"                                                                       // 63
    "    type: serial\n"                                                                    // 64
    "    serial_port: /dev/ttyUSB0\n"                                                       // 65
    "    baud: 9600\n"                                                                      // 66
    "    parity: e\n"                                                                       // 67
    "    data_bits: 7\n"                                                                    // 68
    "    stop_bits: 2\n"                                                                    // 69
    "    devices: []\n"                                                                     // 70
    "  - name: inbound\n"                                                                   // 71
    "    type: listen\n"                                                                    // 72
    "    address: 0.0.0.0:1502\n"                                                           // 73
    "    devices:\n"                                                                        // 74
    "      - name: out1\n"                                                                  // 75
    "        servers: [io1]\n"                                                              // 76
    "        tags: [{name: OUT1.V, address: \"ir:0\", sim: noise}]\n";                      // 77

static void test_full_file(void **state)
{
    site_t *site = s_load(s_full);
    assert_string_equal(site->path, "site.yaml");
    assert_string_equal(site->site, "plant7");
    assert_string_equal(site->redis_host, "redis.local");
    assert_int_equal(site->redis_port, 6380);
    assert_int_equal(site->ping_time_ms, 250);
    assert_string_equal(site->resolver.endpoint, "tcp://10.0.0.9:6500");
    assert_int_equal(site->nbrokers, 2);
    assert_true(site->brokers[0].resolve_on_startup);
    assert_false(site->brokers[0].subscribe_on_startup);
    assert_int_equal(site->brokers[0].update_interval_ms, 50);
    assert_int_equal(site->brokers[1].update_interval_ms, 100);
    assert_string_equal(site->brokers[0].endpoint, "tcp://127.0.0.1:5700");
    assert_string_equal(site->brokers[1].endpoint, "tcp://127.0.0.1:5710");
    assert_ptr_equal(site_broker(site, "b2"), &site->brokers[1]);
    assert_ptr_equal(site_broker(site, NULL), &site->brokers[0]);
    assert_ptr_equal(site_broker(site, "b9"), &site->default_broker);
    assert_int_equal(site->tags_by_id[0]->id, 1);
    assert_ptr_equal(site_tag_by_id(site, 1), site->tags_by_id[0]);
    assert_null(site_tag_by_id(site, 0));
    assert_null(site_tag_by_id(site, (uint32_t)site->ntags + 1));
    assert_int_equal(site->resolve_retry_backoff_ms, 750);
    assert_string_equal(site->devsim_control, "tcp://127.0.0.1:6590");
    assert_int_equal(site->nioservers, 2);
    assert_int_equal(site->nchannels, 4);
    assert_int_equal(site->ndevices, 5);
    assert_int_equal(site->ntags, 8);

    site_ioserver_t *io1 = &site->ioservers[0];
    assert_string_equal(io1->name, "io1");
    assert_int_equal(io1->connect_window, 4);
    assert_int_equal(io1->connect_timeout_ms, 2000);
    assert_int_equal(io1->connect_timeout_min_ms, 100);
    assert_int_equal(io1->reconnect_min_ms, 500);
    assert_int_equal(io1->reconnect_max_ms, 30000);
    assert_int_equal(io1->recent_ms, 120000);
    assert_int_equal(io1->integrity_ms, 15000);
    assert_string_equal(io1->publish, "tcp://10.0.0.1:7000");
    assert_string_equal(io1->control, "tcp://10.0.0.1:7001");
    assert_int_equal(io1->line, 11);
    //  io2: every default, endpoints from its index (1)
    site_ioserver_t *io2 = &site->ioservers[1];
    assert_string_equal(io2->name, "io2");
    assert_int_equal(io2->connect_window, 10);
    assert_int_equal(io2->connect_timeout_ms, 3000);
    assert_int_equal(io2->connect_timeout_min_ms, 250);
    assert_int_equal(io2->reconnect_min_ms, 1000);
    assert_int_equal(io2->reconnect_max_ms, 60000);
    assert_int_equal(io2->recent_ms, 600000);
    assert_int_equal(io2->integrity_ms, 30000);
    assert_string_equal(io2->publish, "tcp://127.0.0.1:5610");
    assert_string_equal(io2->control, "tcp://127.0.0.1:5611");
    assert_int_equal(io2->line, 21);

    //  Network channel, every key given.
    site_channel_t *net = &site->channels[0];
    assert_string_equal(net->name, "net1");
    assert_int_equal(net->type, SITE_CH_NETWORK);
    assert_int_equal(net->standard_reply_delay_ms, 150);
    assert_int_equal(net->baud, 0);
    assert_int_equal(net->max_read_timeouts, 5);
    assert_int_equal(net->max_write_timeouts, 2);
    assert_int_equal(net->max_gap, 8);
    assert_true(net->iolog);
    assert_null(net->host);
    assert_null(net->serial_port);
    assert_int_equal(net->line, 23);
    assert_int_equal(net->ndevices, 2);

    site_device_t *plc1 = &net->devices[0];
    assert_string_equal(plc1->name, "plc1");
    assert_string_equal(plc1->host, "127.0.0.1");
    assert_int_equal(plc1->port, 15020);
    assert_int_equal(plc1->unit, 7);
    assert_int_equal(plc1->word_order, SITE_WO_BIG);
    assert_int_equal(plc1->scan_ms, 1000);
    assert_int_equal(plc1->nservers, 2);
    assert_string_equal(plc1->servers[0].ioserver, "io1");
    assert_int_equal(plc1->servers[0].priority, 1);
    assert_string_equal(plc1->servers[1].ioserver, "io2");
    assert_int_equal(plc1->servers[1].priority, 2);
    assert_ptr_equal(plc1->channel, net);
    assert_int_equal(plc1->line, 32);
    assert_int_equal(plc1->ntags, 5);

    site_tag_t *t = &plc1->tags[0]; //  PLC1.LEVEL
    assert_string_equal(t->name, "PLC1.LEVEL");
    assert_int_equal(t->area, SITE_AREA_HR);
    assert_int_equal(t->address, 0);
    assert_int_equal(t->type, SITE_T_FLOAT32);
    assert_int_equal(t->word_order, SITE_WO_BIG);
    ASSERT_NEAR(t->scale, 1);
    ASSERT_NEAR(t->offset, 0);
    assert_int_equal(t->scan_ms, 500);
    ASSERT_NEAR(t->deadband, 0.5);
    assert_true(t->always_scan);
    assert_true(t->writable);
    assert_int_equal(t->sim.kind, SITE_SIM_CONST);
    ASSERT_NEAR(t->sim.min, 0);
    ASSERT_NEAR(t->sim.max, 100);
    assert_int_equal(t->sim.period_ms, 10000);
    ASSERT_NEAR(t->sim.initial, 0);
    assert_ptr_equal(t->device, plc1);
    assert_int_equal(t->line, 37);

    t = &plc1->tags[1]; //  PLC1.RUN: a coil, all defaults
    assert_int_equal(t->area, SITE_AREA_CO);
    assert_int_equal(t->address, 3);
    assert_int_equal(t->type, SITE_T_BOOL);
    assert_true(t->writable);
    assert_false(t->always_scan);
    assert_int_equal(t->scan_ms, 1000);
    ASSERT_NEAR(t->deadband, 0);
    assert_int_equal(t->sim.kind, SITE_SIM_CONST);
    ASSERT_NEAR(t->sim.max, 1);
    ASSERT_NEAR(t->sim.initial, 0);

    t = &plc1->tags[2]; //  PLC1.FLOW: raw 4000..20000 -> eng 0..100
    assert_int_equal(t->area, SITE_AREA_IR);
    assert_int_equal(t->address, 10);
    assert_int_equal(t->type, SITE_T_INT32);
    assert_int_equal(t->word_order, SITE_WO_LITTLE);
    ASSERT_NEAR(t->scale, 100.0 / 16000.0);
    ASSERT_NEAR(t->offset, -25);
    ASSERT_NEAR(4000 * t->scale + t->offset, 0);
    ASSERT_NEAR(20000 * t->scale + t->offset, 100);
    assert_false(t->writable);
    assert_int_equal(t->line, 40);

    t = &plc1->tags[3]; //  PLC1.ALARM: block mapping, short sim form
    assert_int_equal(t->area, SITE_AREA_DI);
    assert_int_equal(t->address, 65535);
    assert_int_equal(t->type, SITE_T_BOOL);
    assert_false(t->writable);
    assert_int_equal(t->sim.kind, SITE_SIM_TOGGLE);
    ASSERT_NEAR(t->sim.min, 0);
    ASSERT_NEAR(t->sim.max, 1);
    assert_int_equal(t->sim.period_ms, 10000);
    ASSERT_NEAR(t->sim.initial, 0);
    assert_int_equal(t->line, 42);

    t = &plc1->tags[4]; //  PLC1.SP
    assert_int_equal(t->area, SITE_AREA_HR);
    assert_int_equal(t->address, 2);
    assert_int_equal(t->type, SITE_T_INT16);
    ASSERT_NEAR(t->scale, 0.1);
    ASSERT_NEAR(t->offset, -5);
    assert_false(t->writable);
    assert_int_equal(t->sim.kind, SITE_SIM_RAMP);
    ASSERT_NEAR(t->sim.min, -10);
    ASSERT_NEAR(t->sim.max, 10);
    assert_int_equal(t->sim.period_ms, 2000);
    ASSERT_NEAR(t->sim.initial, 3);

    //  plc2: IPv6 address, plain server names, keys its tags inherit given after them
    site_device_t *plc2 = &net->devices[1];
    assert_string_equal(plc2->host, "::1");
    assert_int_equal(plc2->port, 502);
    assert_int_equal(plc2->unit, 1);
    assert_int_equal(plc2->word_order, SITE_WO_LITTLE);
    assert_int_equal(plc2->scan_ms, 250);
    assert_int_equal(plc2->nservers, 2);
    assert_string_equal(plc2->servers[0].ioserver, "io2");
    assert_int_equal(plc2->servers[0].priority, 1);
    assert_string_equal(plc2->servers[1].ioserver, "io1");
    assert_int_equal(plc2->servers[1].priority, 2);
    t = &plc2->tags[0];
    assert_int_equal(t->address, 65534);
    assert_int_equal(t->type, SITE_T_UINT32);
    assert_int_equal(t->word_order, SITE_WO_LITTLE);
    assert_int_equal(t->scan_ms, 250);
    t = &plc2->tags[1];
    assert_int_equal(t->word_order, SITE_WO_BIG);
    assert_int_equal(t->scan_ms, 100);
    assert_int_equal(t->sim.kind, SITE_SIM_SINE);
    ASSERT_NEAR(t->sim.max, 100);
    assert_int_equal(t->sim.period_ms, 10000);

    //  TCP gateway, type given after the devices, channel defaults.
    site_channel_t *gw = &site->channels[1];
    assert_int_equal(gw->type, SITE_CH_TCP);
    assert_string_equal(gw->host, "gw.local");
    assert_int_equal(gw->port, 502);
    assert_int_equal(gw->standard_reply_delay_ms, 200);
    assert_int_equal(gw->baud, 0);
    assert_int_equal(gw->max_read_timeouts, 3);
    assert_int_equal(gw->max_write_timeouts, 3);
    assert_int_equal(gw->max_gap, 16);
    assert_false(gw->iolog);
    assert_int_equal(gw->ndevices, 2);
    assert_null(gw->devices[0].host);
    assert_int_equal(gw->devices[0].unit, 3);
    assert_int_equal(gw->devices[0].ntags, 0);
    assert_null(gw->devices[1].host);
    assert_int_equal(gw->devices[1].unit, 4);
    assert_string_equal(gw->devices[1].servers[0].ioserver, "io1");
    assert_int_equal(gw->devices[1].servers[0].priority, 1);
    assert_string_equal(gw->devices[1].servers[1].ioserver, "io2");
    assert_int_equal(gw->devices[1].servers[1].priority, 2);
    assert_ptr_equal(gw->devices[1].channel, gw);

    site_channel_t *bus = &site->channels[2];
    assert_int_equal(bus->type, SITE_CH_SERIAL);
    assert_string_equal(bus->serial_port, "/dev/ttyUSB0");
    assert_int_equal(bus->baud, 9600);
    assert_int_equal(bus->parity, 'E');
    assert_int_equal(bus->data_bits, 7);
    assert_int_equal(bus->stop_bits, 2);
    assert_int_equal(bus->ndevices, 0);
    assert_null(bus->host);

    site_channel_t *in = &site->channels[3];
    assert_int_equal(in->type, SITE_CH_LISTEN);
    assert_string_equal(in->host, "0.0.0.0");
    assert_int_equal(in->port, 1502);
    assert_int_equal(in->parity, 'N');
    assert_int_equal(in->data_bits, 8);
    assert_int_equal(in->stop_bits, 1);
    assert_int_equal(in->devices[0].unit, 1);
    assert_int_equal(in->devices[0].tags[0].type, SITE_T_UINT16);
    assert_false(in->devices[0].tags[0].writable);
    assert_int_equal(in->devices[0].tags[0].sim.kind, SITE_SIM_NOISE);

    //  Lookups
    assert_ptr_equal(site_ioserver(site, "io2"), io2);
    assert_null(site_ioserver(site, "io3"));
    assert_ptr_equal(site_device(site, "plc2"), plc2);
    assert_ptr_equal(site_device(site, "rtu2"), &gw->devices[1]);
    assert_null(site_device(site, "PLC1.RUN"));
    assert_ptr_equal(site_tag(site, "PLC1.FLOW"), &plc1->tags[2]);
    assert_ptr_equal(site_tag(site, "OUT1.V"), &in->devices[0].tags[0]);
    assert_null(site_tag(site, "plc1"));
    assert_null(site_tag(site, ""));
    assert_null(site_tag(NULL, "x"));
    assert_int_equal(site_device_priority(plc1, "io2"), 2);
    assert_int_equal(site_device_priority(plc2, "io2"), 1);
    assert_int_equal(site_device_priority(&gw->devices[0], "io1"), 0);
    site_destroy(&site);
    assert_null(site);
    site_destroy(&site);
    site_destroy(NULL);
}

static void test_minimal_defaults(void **state)
{
    site_t *site = s_load("site: s\n"
                          "ioservers: [{name: a}, {name: b}, {name: c}]\n"
                          "channels:\n");
    assert_string_equal(site->redis_host, "127.0.0.1");
    assert_int_equal(site->redis_port, 6379);
    assert_int_equal(site->ping_time_ms, 1000);
    assert_int_equal(site->resolve_retry_backoff_ms, 500);
    assert_string_equal(site->devsim_control, "tcp://127.0.0.1:5590");
    assert_string_equal(site->ioservers[0].publish, "tcp://127.0.0.1:5600");
    assert_string_equal(site->ioservers[0].control, "tcp://127.0.0.1:5601");
    assert_string_equal(site->ioservers[2].publish, "tcp://127.0.0.1:5620");
    assert_string_equal(site->ioservers[2].control, "tcp://127.0.0.1:5621");
    assert_int_equal(site->nchannels, 0);
    assert_int_equal(site->ndevices, 0);
    assert_int_equal(site->ntags, 0);
    site_destroy(&site);

    //  Channels before ioservers; empty devices and tags keys; yes/no/on/off.
    site = s_load("site: s\n"
                  "channels:\n"
                  "  - name: c\n"
                  "    type: network\n"
                  "    iolog: On\n"
                  "    devices:\n"
                  "      - {name: d, address: \"h:1\", servers: [io1], tags: }\n"
                  "  - {name: e, type: network, devices: , iolog: off}\n"
                  "ioservers: [{name: io1}]\n"
                  "resolver:\n");
    assert_true(site->channels[0].iolog);
    assert_false(site->channels[1].iolog);
    assert_int_equal(site->channels[0].devices[0].ntags, 0);
    assert_int_equal(site->channels[1].ndevices, 0);
    assert_string_equal(site->channels[0].devices[0].host, "h");
    assert_int_equal(site->channels[0].devices[0].port, 1);
    site_destroy(&site);
}

static void test_names_and_widths(void **state)
{
    assert_string_equal(site_chtype_name(SITE_CH_NETWORK), "network");
    assert_string_equal(site_chtype_name(SITE_CH_TCP), "tcp");
    assert_string_equal(site_chtype_name(SITE_CH_SERIAL), "serial");
    assert_string_equal(site_chtype_name(SITE_CH_LISTEN), "listen");
    assert_string_equal(site_type_name(SITE_T_BOOL), "bool");
    assert_string_equal(site_type_name(SITE_T_INT16), "int16");
    assert_string_equal(site_type_name(SITE_T_UINT16), "uint16");
    assert_string_equal(site_type_name(SITE_T_INT32), "int32");
    assert_string_equal(site_type_name(SITE_T_UINT32), "uint32");
    assert_string_equal(site_type_name(SITE_T_FLOAT32), "float32");
    assert_string_equal(site_area_name(SITE_AREA_CO), "co");
    assert_string_equal(site_area_name(SITE_AREA_DI), "di");
    assert_string_equal(site_area_name(SITE_AREA_HR), "hr");
    assert_string_equal(site_area_name(SITE_AREA_IR), "ir");
    assert_string_equal(site_type_name((site_type_t)99), "?");
    assert_int_equal(site_type_width(SITE_T_BOOL), 1);
    assert_int_equal(site_type_width(SITE_T_INT16), 1);
    assert_int_equal(site_type_width(SITE_T_UINT16), 1);
    assert_int_equal(site_type_width(SITE_T_INT32), 2);
    assert_int_equal(site_type_width(SITE_T_UINT32), 2);
    assert_int_equal(site_type_width(SITE_T_FLOAT32), 2);
}

//  A site_t built by hand (as other modules' tests do) has no index: the
//  lookups scan.
static void test_lookups_without_index(void **state)
{
    site_tag_t tags[2];
    memset(tags, 0, sizeof tags);
    tags[0].name = "A";
    tags[1].name = "B";
    site_offer_t offers[] = {{"io1", 1}, {"io2", 2}};
    site_device_t dev;
    memset(&dev, 0, sizeof dev);
    dev.name = "d";
    dev.tags = tags;
    dev.ntags = 2;
    dev.servers = offers;
    dev.nservers = 2;
    site_channel_t ch;
    memset(&ch, 0, sizeof ch);
    ch.devices = &dev;
    ch.ndevices = 1;
    site_ioserver_t io;
    memset(&io, 0, sizeof io);
    io.name = "io1";
    site_t site;
    memset(&site, 0, sizeof site);
    site.channels = &ch;
    site.nchannels = 1;
    site.ioservers = &io;
    site.nioservers = 1;
    assert_ptr_equal(site_tag(&site, "B"), &tags[1]);
    assert_null(site_tag(&site, "C"));
    assert_ptr_equal(site_device(&site, "d"), &dev);
    assert_ptr_equal(site_ioserver(&site, "io1"), &io);
    assert_null(site_ioserver(&site, "io2"));
    assert_int_equal(site_device_priority(&dev, "io2"), 2);
}

static void test_large_site(void **state)
{
    const size_t ndev = 5000, ntag = 20;
    size_t cap = 10u << 20, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    len += (size_t)snprintf(text + len, cap - len,
                            "site: big\nioservers: [{name: io1}, {name: io2}]\nchannels:\n");
    for (size_t c = 0; c < 50; c++) {
        len += (size_t)snprintf(text + len, cap - len,
                                "  - name: ch%zu\n    type: network\n"
                                "    devices:\n",
                                c);
        for (size_t d = c * ndev / 50; d < (c + 1) * ndev / 50; d++) {
            len += (size_t)snprintf(text + len, cap - len,
                                    "      - name: dev%zu\n        address: 10.0.%zu.%zu:502\n"
                                    "        servers: [io1, io2]\n        tags:\n",
                                    d, d / 250, d % 250);
            for (size_t t = 0; t < ntag; t++)
                len += (size_t)snprintf(text + len, cap - len,
                                        "          - {name: D%zu.T%zu, address: \"hr:%zu\", "
                                        "type: float32, sim: ramp}\n",
                                        d, t, t * 2);
            assert_true(len < cap - 4096);
        }
    }
    site_t *site = s_load(text);
    assert_int_equal(site->ndevices, ndev);
    assert_int_equal(site->ntags, ndev * ntag);
    site_tag_t *tag = site_tag(site, "D4321.T17");
    assert_non_null(tag);
    assert_int_equal(tag->address, 34);
    assert_string_equal(tag->device->name, "dev4321");
    assert_ptr_equal(site_device(site, "dev4321"), tag->device);
    assert_string_equal(tag->device->channel->name, "ch43");
    assert_null(site_tag(site, "D5000.T0"));
    //  Every tag is found and points back at itself.
    char name[32];
    for (size_t d = 0; d < ndev; d += 7)
        for (size_t t = 0; t < ntag; t++) {
            snprintf(name, sizeof name, "D%zu.T%zu", d, t);
            tag = site_tag(site, name);
            assert_non_null(tag);
            assert_string_equal(tag->name, name);
        }
    site_destroy(&site);
    free(text);
}

static void test_files(void **state)
{
    char err[512];
    char path[] = "/tmp/test_site_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "site: f\nioservers: [{name: io1}]\nchannels: []\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    site_t *site = site_load(path, err, sizeof err);
    assert_non_null(site);
    assert_string_equal(site->path, path);
    assert_string_equal(site->site, "f");
    site_destroy(&site);

    //  Empty file
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fclose(file);
    assert_null(site_load(path, err, sizeof err));
    char want[600];
    snprintf(want, sizeof want, "%s:1: the file is empty", path);
    assert_true(strncmp(err, want, strlen(want)) == 0);

    //  An error in a file names the file.
    file = fopen(path, "w");
    assert_non_null(file);
    fputs("site: f\nioservers: [{name: io1, connect_window: 0}]\nchannels: []\n", file);
    fclose(file);
    assert_null(site_load(path, err, sizeof err));
    snprintf(want, sizeof want, "%s:2: ioservers[0].connect_window: must be between 1 and 10000",
             path);
    assert_true(strncmp(err, want, strlen(want)) == 0);
    unlink(path);

    //  Missing file, a directory
    assert_null(site_load("/nonexistent/site.yaml", err, sizeof err));
    assert_string_equal(err, "/nonexistent/site.yaml: cannot read the site file: No such file or "
                             "directory");
    assert_null(site_load("/tmp", err, sizeof err));
    assert_non_null(strstr(err, "/tmp: cannot read the site file: Is a directory"));

    //  Empty text, comments only
    assert_null(site_load_string("", 0, "x.yaml", err, sizeof err));
    assert_string_equal(err, "x.yaml:1: the file is empty (expected site:, ioservers: and "
                             "channels:)");
    assert_null(site_load_string("# nothing\n\n", 11, "x.yaml", err, sizeof err));
    assert_non_null(strstr(err, "the file is empty"));

    //  A short or missing error buffer
    char small[12];
    assert_null(site_load_string("x", 1, "long-file-name.yaml", small, sizeof small));
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_null(site_load_string("x", 1, "x.yaml", NULL, 0));
    assert_null(site_load("/nonexistent", NULL, 0));
}

//  Unset every variable a site text names (${NAME...}), so it loads with its defaults.
static void s_unset_vars(const char *text)
{
    for (const char *p = strstr(text, "${"); p; p = strstr(p + 2, "${")) {
        char name[64];
        size_t n = 0;
        while (n + 1 < sizeof name && (isalnum((unsigned char)p[2 + n]) || p[2 + n] == '_'))
            name[n] = p[2 + n], n++;
        name[n] = 0;
        if (n)
            unsetenv(name);
    }
}

//  The demo site shipped in deploy/ loads (tests run from the repository
//  root): with its defaults (make run), and with host names (containers).
static void test_demo_site(void **state)
{
    const char *path = "deploy/sites/demo.yaml";
    if (access(path, R_OK) != 0)
        path = "../../deploy/sites/demo.yaml";
    if (access(path, R_OK) != 0)
        skip();
    FILE *file = fopen(path, "rb");
    assert_non_null(file);
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text - 1, file);
    fclose(file);
    text[len] = 0;
    s_unset_vars(text);
    char err[512];
    site_t *site = site_load(path, err, sizeof err);
    if (!site)
        print_error("%s\n", err);
    assert_non_null(site);
    assert_string_equal(site->site, "demo");
    assert_int_equal(site->nioservers, 2);
    assert_false(site->ioservers[0].always_scan);
    assert_true(site->nchannels >= 1);
    site_channel_t *ch = &site->channels[0];
    assert_string_equal(ch->name, "plant");
    assert_int_equal(ch->type, SITE_CH_NETWORK);
    assert_int_equal(ch->ndevices, 12);
    for (size_t d = 0; d < 12; d++) {
        site_device_t *dev = &ch->devices[d];
        char name[16];
        snprintf(name, sizeof name, "plc%02zu", d + 1);
        assert_string_equal(dev->name, name);
        assert_string_equal(dev->host, "127.0.0.1");
        assert_int_equal(dev->port, 15021 + d);
        assert_true(dev->ntags >= 6 && dev->ntags <= 10);
    }
    bool types[6] = {false}, areas[4] = {false}, orders[2] = {false}, sims[5] = {false};
    for (size_t id = 1; id <= site->ntags; id++) {
        site_tag_t *tag = site_tag_by_id(site, id);
        types[tag->type] = areas[tag->area] = sims[tag->sim.kind] = true;
        if (tag->type == SITE_T_FLOAT32)
            orders[tag->word_order] = true;
    }
    for (int i = 0; i < 6; i++)
        assert_true(types[i]);
    for (int i = 0; i < 4; i++)
        assert_true(areas[i]);
    assert_true(orders[0] && orders[1]);
    for (int i = SITE_SIM_RAMP; i <= SITE_SIM_TOGGLE; i++)
        assert_true(sims[i]);
    //  Every device has an I/O server to serve it; devsim has commands to start with.
    for (size_t c = 0; c < site->nchannels; c++)
        for (size_t d = 0; d < site->channels[c].ndevices; d++)
            assert_true(site->channels[c].devices[d].nservers >= 1);
    assert_true(site->ndevsim_start >= 1);
    site_destroy(&site);

    //  In containers each process is reached by its service name.
    setenv("PLANT_HOST", "plant", 1);
    setenv("DEVSIM_HOST", "devsim", 1);
    site = site_load(path, err, sizeof err);
    if (!site)
        print_error("%s\n", err);
    assert_non_null(site);
    assert_string_equal(site->channels[0].devices[0].host, "plant");
    assert_string_equal(site->devsim_control, "tcp://devsim:5590");
    site_destroy(&site);
    unsetenv("PLANT_HOST");
    unsetenv("DEVSIM_HOST");
}

//  ---------------------------------------------------------------------------
//  Errors, one test per kind

static void test_error_unknown_type(void **state)
{
    static const s_case_t cases[] = {
        {HEAD NET TAG("{name: T1, address: \"hr:0\", type: flaot32}"), 13,
         "channels[0].devices[0].tags[0].type",
         "unknown type \"flaot32\" (expected bool, int16, uint16, int32, uint32, float32)"},
        {HEAD "  - name: ch1\n    type: modbus\n", 7, "channels[0].type",
         "unknown channel type \"modbus\" (expected network, tcp, serial, listen)"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", sim: square}"), 13,
         "channels[0].devices[0].tags[0].sim",
         "unknown sim kind \"square\" (expected const, ramp, sine, noise, toggle)"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", sim: {kind: saw}}"), 13,
         "channels[0].devices[0].tags[0].sim.kind", "unknown sim kind \"saw\""},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", type: float32, word_order: middle}"), 13,
         "channels[0].devices[0].tags[0].word_order",
         "unknown word order \"middle\" (expected big, little)"},
        {DEV "        word_order: BIGGER\n", 10, "channels[0].devices[0].word_order",
         "unknown word order \"BIGGER\""},
        {HEAD NET TAG("{name: T1, address: \"co:0\", type: uint16}"), 13,
         "channels[0].devices[0].tags[0].type", "co tags are single bits: type must be bool"},
        {HEAD NET TAG("{name: T1, address: \"di:0\", type: float32}"), 13,
         "channels[0].devices[0].tags[0].type", "di tags are single bits"},
    };
    RUN(cases);
}

static void test_error_tag_address(void **state)
{
    static const s_case_t cases[] = {
        {HEAD NET TAG("{name: T1, address: \"hr:x\"}"), 13,
         "channels[0].devices[0].tags[0].address",
         "bad address \"hr:x\" (expected AREA:N, AREA one of co, di, hr, ir"},
        {HEAD NET TAG("{name: T1, address: \"hr\"}"), 13, "channels[0].devices[0].tags[0].address",
         "bad address \"hr\""},
        {HEAD NET TAG("{name: T1, address: \"hr:\"}"), 13, "channels[0].devices[0].tags[0].address",
         "bad address \"hr:\""},
        {HEAD NET TAG("{name: T1, address: \"hr:-1\"}"), 13,
         "channels[0].devices[0].tags[0].address", "bad address"},
        {HEAD NET TAG("{name: T1, address: \"zz:3\"}"), 13,
         "channels[0].devices[0].tags[0].address",
         "unknown area \"zz\" in \"zz:3\" (expected co, di, hr or ir)"},
        {HEAD NET TAG("{name: T1, address: \"hr:65536\"}"), 13,
         "channels[0].devices[0].tags[0].address", "register 65536 out of range (0..65535)"},
        {HEAD NET TAG("{name: T1, address: \"co:99999999\"}"), 13,
         "channels[0].devices[0].tags[0].address", "bit 99999999 out of range"},
        {HEAD NET TAG("{name: T1, address: 5}"), 13, "channels[0].devices[0].tags[0].address",
         "bad address \"5\""},
        {HEAD NET TAG("{name: T1, address: [hr, 1]}"), 13, "channels[0].devices[0].tags[0].address",
         "expected an address like \"hr:12\", got a list"},
        //  32-bit types need two registers
        {HEAD NET TAG("{name: T1, address: \"hr:65535\", type: float32}"), 13,
         "channels[0].devices[0].tags[0].address",
         "float32 needs two registers, but hr:65535 is the last one"},
        {HEAD NET TAG("{name: T1, address: \"ir:65535\", type: int32}"), 13,
         "channels[0].devices[0].tags[0].address", "int32 needs two registers"},
    };
    RUN(cases);
}

static void test_error_host_port(void **state)
{
    static const s_case_t cases[] = {
        {DEV "        address: 127.0.0.1\n        servers: [io1]\n", 10,
         "channels[0].devices[0].address", "bad address \"127.0.0.1\": no port"},
        {DEV "        address: \"plc:0\"\n        servers: [io1]\n", 10,
         "channels[0].devices[0].address", "the port must be between 1 and 65535"},
        {DEV "        address: \"plc:65536\"\n        servers: [io1]\n", 10,
         "channels[0].devices[0].address", "the port must be between 1 and 65535"},
        {DEV "        address: \"plc:http\"\n        servers: [io1]\n", 10,
         "channels[0].devices[0].address", "the port is not a number"},
        {DEV "        address: \":502\"\n        servers: [io1]\n", 10,
         "channels[0].devices[0].address", "no host"},
        {DEV "        address: \"::1:502\"\n        servers: [io1]\n", 10,
         "channels[0].devices[0].address", "an IPv6 address goes in brackets"},
        {DEV "        address: \"[::1]502\"\n        servers: [io1]\n", 10,
         "channels[0].devices[0].address", "[address]:port"},
        {CHAN("tcp") "    address: gateway\n", 8, "channels[0].address",
         "bad address \"gateway\": no port"},
        {CHAN("listen") "    address: \"0.0.0.0:99999\"\n", 8, "channels[0].address",
         "the port must be between 1 and 65535"},
        //  A network device needs host:port, a tcp device only a unit
        {CHAN("tcp") "    address: gw:502\n    devices:\n"
                     "      - {name: d1, address: \"10.0.0.1:502\", servers: [io1]}\n",
         10, "channels[0].devices[0].address",
         "\"10.0.0.1:502\" is not a unit id: on a tcp channel the channel has the host:port"},
        {CHAN("serial") "    serial_port: /dev/ttyS0\n    baud: 9600\n    devices:\n"
                        "      - {name: d1, address: 300, servers: [io1]}\n",
         11, "channels[0].devices[0].address", "is not a unit id: on a serial channel"},
        {CHAN("tcp") "    address: gw:502\n    devices:\n"
                     "      - {name: d1, address: 3, unit: 3, servers: [io1]}\n",
         10, "channels[0].devices[0].address", "give either address or unit, not both"},
    };
    RUN(cases);
}

static void test_error_missing_keys(void **state)
{
    static const s_case_t cases[] = {
        {"ioservers: [{name: io1}]\nchannels: []\n", 1, "site", "required key is missing"},
        {"site: t\nchannels: []\n", 1, "ioservers", "required key is missing"},
        {"site: t\nioservers: [{name: io1}]\n", 1, "channels", "required key is missing"},
        {"site: t\nioservers:\n  - connect_window: 3\nchannels: []\n", 3, "ioservers[0].name",
         "required key is missing"},
        {HEAD "  - type: network\n", 6, "channels[0].name", "required key is missing"},
        {HEAD "  - name: ch1\n", 6, "channels[0].type", "required key is missing"},
        {CHAN("tcp"), 6, "channels[0].address",
         "required key is missing (a tcp channel needs host:port of the "
         "gateway)"},
        {CHAN("listen"), 6, "channels[0].address", "needs host:port to listen on"},
        {HEAD "  - name: ch1\n    type: network\n    devices:\n"
              "      - address: 127.0.0.1:502\n        servers: [io1]\n",
         9, "channels[0].devices[0].name", "required key is missing"},
        {DEV "        servers: [io1]\n", 9, "channels[0].devices[0].address",
         "required key is missing (every device of a network channel has its own host:port)"},
        {DEV "        address: 127.0.0.1:502\n", 9, "channels[0].devices[0].servers",
         "required key is missing"},
        {DEV "        address: 127.0.0.1:502\n        servers: []\n", 11,
         "channels[0].devices[0].servers", "must name at least one I/O server"},
        {DEV "        address: 127.0.0.1:502\n        servers:\n", 11,
         "channels[0].devices[0].servers", "must name at least one I/O server"},
        {DEV "        address: 127.0.0.1:502\n        servers: [{priority: 1}]\n", 11,
         "channels[0].devices[0].servers[0].ioserver", "required key is missing"},
        {HEAD NET TAG("{address: \"hr:0\"}"), 13, "channels[0].devices[0].tags[0].name",
         "required key is missing"},
        {HEAD NET TAG("{name: T1}"), 13, "channels[0].devices[0].tags[0].address",
         "required key is missing"},
        {"site: t\nioservers: []\nchannels: []\n", 2, "ioservers",
         "must list at least one I/O server"},
        {"site:\nioservers: [{name: io1}]\nchannels: []\n", 1, "site", "must not be empty"},
        {"site: t\nioservers: [{name: \"\"}]\nchannels: []\n", 2, "ioservers[0].name",
         "must not be empty"},
    };
    RUN(cases);
}

static void test_error_duplicates(void **state)
{
    static const s_case_t cases[] = {
        //  tags, across devices
        {HEAD NET TAG("{name: T1, address: \"hr:0\"}") "      - name: d2\n"
                                                       "        address: 127.0.0.1:503\n"
                                                       "        servers: [io1]\n"
                                                       "        tags:\n" TAG(
                                                           "{name: T1, address: \"hr:1\"}"),
         18, "channels[0].devices[1].tags[0].name",
         "duplicate tag name \"T1\" (first defined at line 13)"},
        //  devices, across channels
        {HEAD NET TAG("{name: T1, address: \"hr:0\"}") "  - name: ch2\n"
                                                       "    type: network\n"
                                                       "    devices:\n"
                                                       "      - name: d1\n"
                                                       "        address: 127.0.0.1:503\n"
                                                       "        servers: [io1]\n",
         17, "channels[1].devices[0].name",
         "duplicate device name \"d1\" (first defined at line 9)"},
        {HEAD "  - {name: ch1, type: tcp, address: \"gw:502\"}\n"
              "  - {name: ch1, type: tcp, address: \"gw:503\"}\n",
         7, "channels[1].name", "duplicate channel name \"ch1\" (first defined at line 6)"},
        {"site: t\nioservers:\n  - name: io1\n  - name: io1\nchannels: []\n", 4,
         "ioservers[1].name", "duplicate I/O server name \"io1\" (first defined at line 3)"},
        //  a key twice in one mapping
        {HEAD NET TAG("{name: T1, address: \"hr:0\", name: T2}"), 13,
         "channels[0].devices[0].tags[0].name", "duplicate key (first given at line 13)"},
        {"site: t\nsite: u\nioservers: [{name: io1}]\nchannels: []\n", 2, "site",
         "duplicate key (first given at line 1)"},
        //  an I/O server twice for one device
        {DEV "        address: 127.0.0.1:502\n        servers: [io1, io1]\n", 11,
         "channels[0].devices[0].servers[1]", "I/O server \"io1\" is listed twice"},
        //  two devices with one unit id behind a gateway
        {CHAN("tcp") "    address: gw:502\n    devices:\n"
                     "      - {name: r1, unit: 3, servers: [io1]}\n"
                     "      - {name: r2, unit: 3, servers: [io1]}\n",
         11, "channels[0].devices[1].unit",
         "unit 3 is already used by device \"r1\" on this channel"},
        {CHAN("tcp") "    address: gw:502\n    devices:\n"
                     "      - {name: r1, servers: [io1]}\n"
                     "      - {name: r2, address: 1, servers: [io1]}\n",
         11, "channels[0].devices[1].address", "unit 1 is already used by device \"r1\""},
        //  two I/O servers on one endpoint
        {"site: t\nioservers:\n  - name: io1\n  - name: io2\n    publish: "
         "tcp://127.0.0.1:5600\nchannels: []\n",
         5, "ioservers[1].publish",
         "endpoint \"tcp://127.0.0.1:5600\" is already the publish endpoint of I/O server "
         "\"io1\""},
        {"site: t\nioservers:\n  - {name: io1, publish: \"tcp://h:1\", control: \"tcp://h:1\"}\n"
         "channels: []\n",
         3, "ioservers[0].control", "is already the publish endpoint of I/O server \"io1\""},
    };
    RUN(cases);
}

static void test_error_unknown_ioserver(void **state)
{
    static const s_case_t cases[] = {
        {DEV "        address: 127.0.0.1:502\n        servers: [io1, io3]\n", 11,
         "channels[0].devices[0].servers[1]",
         "unknown I/O server \"io3\" (ioservers lists: io1, io2)"},
        {DEV "        address: 127.0.0.1:502\n        servers:\n"
             "          - {ioserver: io1, priority: 1}\n"
             "          - {ioserver: io9, priority: 2}\n",
         13, "channels[0].devices[0].servers[1].ioserver", "unknown I/O server \"io9\""},
        //  ioservers given after the channels: still checked
        {"site: t\nchannels:\n  - {name: c, type: network, devices: [{name: d, address: "
         "\"h:1\",\n     servers: [ioX]}]}\nioservers: [{name: io1}]\n",
         4, "channels[0].devices[0].servers[0]",
         "unknown I/O server \"ioX\" (ioservers lists: "
         "io1)"},
    };
    RUN(cases);
}

static void test_error_numbers(void **state)
{
    static const s_case_t cases[] = {
        {"site: t\nioservers: [{name: io1, connect_window: 0}]\nchannels: []\n", 2,
         "ioservers[0].connect_window", "must be between 1 and 10000 (got 0)"},
        {"site: t\nioservers: [{name: io1, connect_window: 10001}]\nchannels: []\n", 2,
         "ioservers[0].connect_window", "must be between 1 and 10000 (got 10001)"},
        {"site: t\nioservers: [{name: io1, connect_window: 1.5}]\nchannels: []\n", 2,
         "ioservers[0].connect_window", "expected an integer, got \"1.5\""},
        {"site: t\nioservers: [{name: io1, connect_window: 0x10}]\nchannels: []\n", 2,
         "ioservers[0].connect_window", "expected an integer, got \"0x10\""},
        {"site: t\nioservers: [{name: io1, connect_window: }]\nchannels: []\n", 2,
         "ioservers[0].connect_window", "expected an integer, got nothing"},
        {"site: t\nioservers: [{name: io1, connect_window: [1]}]\nchannels: []\n", 2,
         "ioservers[0].connect_window", "expected an integer, got a list"},
        {"site: t\nioservers: [{name: io1, connect_timeout_ms: 0}]\nchannels: []\n", 2,
         "ioservers[0].connect_timeout_ms", "must be >= 1 (got 0)"},
        {"site: t\nioservers: [{name: io1, integrity_ms: -5}]\nchannels: []\n", 2,
         "ioservers[0].integrity_ms", "must not be negative (got -5)"},
        {"site: t\nioservers: [{name: io1, recent_ms: 99999999999999999999999}]\n"
         "channels: []\n",
         2, "ioservers[0].recent_ms", "must be <= 4294967295 (got 99999999999999999999999)"},
        {"site: t\nioservers: [{name: io1, recent_ms: 4294967296}]\nchannels: []\n", 2,
         "ioservers[0].recent_ms", "must be <= 4294967295 (got 4294967296)"},
        {"site: t\nioservers:\n  - name: io1\n    reconnect_max_ms: 500\nchannels: []\n", 4,
         "ioservers[0].reconnect_max_ms",
         "reconnect_max_ms (500) is below reconnect_min_ms (1000)"},
        {"site: t\nioservers:\n  - name: io1\n    reconnect_min_ms: 90000\nchannels: []\n", 4,
         "ioservers[0].reconnect_min_ms", "reconnect_max_ms (60000) is below reconnect_min_ms"},
        {"site: t\nioservers:\n  - name: io1\n    connect_timeout_min_ms: 5000\nchannels: []\n", 4,
         "ioservers[0].connect_timeout_min_ms",
         "connect_timeout_min_ms (5000) is above connect_timeout_ms (3000)"},
        {"site: t\nping_time_ms: 9\nioservers: [{name: io1}]\nchannels: []\n", 2, "ping_time_ms",
         "must be >= 10 (got 9)"},
        {"site: t\nresolve_retry_backoff_ms: 0\nioservers: [{name: io1}]\nchannels: []\n", 2,
         "resolve_retry_backoff_ms", "must be >= 1"},
        {"site: t\nredis: {port: 0}\nioservers: [{name: io1}]\nchannels: []\n", 2, "redis.port",
         "must be between 1 and 65535 (got 0)"},
        {"site: t\nredis:\n  port: 70000\nioservers: [{name: io1}]\nchannels: []\n", 3,
         "redis.port", "must be between 1 and 65535 (got 70000)"},
        {DEV "        unit: 256\n", 10, "channels[0].devices[0].unit", "must be <= 255 (got 256)"},
        {DEV "        unit: -1\n", 10, "channels[0].devices[0].unit", "must not be negative"},
        {DEV "        scan_ms: 9\n", 10, "channels[0].devices[0].scan_ms", "must be >= 10 (got 9)"},
        {DEV "        servers: [{ioserver: io1, priority: 0}]\n", 10,
         "channels[0].devices[0].servers[0].priority", "must be >= 1 (got 0)"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", scan_ms: 5}"), 13,
         "channels[0].devices[0].tags[0].scan_ms", "must be >= 10 (got 5)"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", deadband: -0.5}"), 13,
         "channels[0].devices[0].tags[0].deadband", "must be >= 0 (got -0.5)"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", scale: abc}"), 13,
         "channels[0].devices[0].tags[0].scale", "expected a number, got \"abc\""},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", offset: .nan}"), 13,
         "channels[0].devices[0].tags[0].offset", "expected a number, got \".nan\""},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", sim: {kind: ramp, period_ms: 0}}"), 13,
         "channels[0].devices[0].tags[0].sim.period_ms", "must be >= 1 (got 0)"},
        {CHAN("network") "    max_gap: 126\n", 8, "channels[0].max_gap",
         "must be <= 125 (got 126)"},
        {CHAN("network") "    max_read_timeouts: 0\n", 8, "channels[0].max_read_timeouts",
         "must be >= 1 (got 0)"},
        {CHAN("network") "    max_write_timeouts: 0\n", 8, "channels[0].max_write_timeouts",
         "must be >= 1 (got 0)"},
        {CHAN("network") "    standard_reply_delay_ms: 0\n", 8,
         "channels[0].standard_reply_delay_ms", "must be >= 1 (got 0)"},
        {CHAN("network") "    baud: fast\n", 8, "channels[0].baud",
         "expected an integer, got \"fast\""},
    };
    RUN(cases);
}

static void test_error_unknown_keys(void **state)
{
    static const s_case_t cases[] = {
        {"stie: t\n", 1, "stie", "unknown key (did you mean \"site\"?)"},
        {"site: t\nioservers:\n  - name: io1\n    conect_window: 3\nchannels: []\n", 4,
         "ioservers[0].conect_window", "unknown key (did you mean \"connect_window\"?)"},
        {CHAN("network") "    colour: red\n", 8, "channels[0].colour",
         "unknown key (allowed here: name, type, standard_reply_delay_ms, baud, "
         "max_read_timeouts, max_write_timeouts, max_gap, address, serial_port, parity, "
         "data_bits, stop_bits, iolog, devices, area)"},
        {DEV "        adress: 127.0.0.1:502\n", 10, "channels[0].devices[0].adress",
         "unknown key (did you mean \"address\"?)"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", tpye: int16}"), 13,
         "channels[0].devices[0].tags[0].tpye", "unknown key (did you mean \"type\"?)"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", Writable: true}"), 13,
         "channels[0].devices[0].tags[0].Writable", "unknown key (did you mean \"writable\"?)"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", sim: {kind: ramp, perod_ms: 5}}"), 13,
         "channels[0].devices[0].tags[0].sim.perod_ms",
         "unknown key (did you mean \"period_ms\"?)"},
        {"site: t\nredis: {hots: x}\n", 2, "redis.hots", "unknown key (did you mean \"host\"?)"},
        {"site: t\ndevsim: {endpoint: x}\n", 2, "devsim.endpoint",
         "unknown key (allowed here: control, start)"},
        {DEV "        servers: [{ioserver: io1, prio: 1}]\n", 10,
         "channels[0].devices[0].servers[0].prio", "unknown key"},
        {"site: t\n? [a, b]\n: c\n", 2, NULL, "expected a key, got a list"},
    };
    RUN(cases);
}

static void test_error_node_kind(void **state)
{
    static const s_case_t cases[] = {
        {"- site\n- t\n", 1, NULL,
         "the top level must be a mapping with site:, ioservers: and "
         "channels:, got a list"},
        {"just text\n", 1, NULL, "the top level must be a mapping"},
        {"site: t\nioservers: [{name: io1}]\nchannels: ch1\n", 3, "channels",
         "expected a list, got a single value"},
        {"site: t\nioservers: {name: io1}\nchannels: []\n", 2, "ioservers",
         "expected a list, got a mapping"},
        {"site: t\nioservers: [io1]\nchannels: []\n", 2, "ioservers[0]",
         "expected a mapping (key: value), got a single value"},
        {"site: [t]\n", 1, "site", "expected a name, got a list"},
        {HEAD "  - name: [a, b]\n", 6, "channels[0].name", "expected a name, got a list"},
        {HEAD "  - name: ch1\n    type: network\n    devices:\n      name: d1\n", 9,
         "channels[0].devices", "expected a list, got a mapping"},
        {DEV "        address: 127.0.0.1:502\n        servers: io1\n", 11,
         "channels[0].devices[0].servers", "expected a list, got a single value"},
        {DEV "        address: 127.0.0.1:502\n        servers: [[io1]]\n", 11,
         "channels[0].devices[0].servers[0]",
         "expected an I/O server name or {ioserver: NAME, priority: N}, got a list"},
        {DEV "        address: 127.0.0.1:502\n        servers: [io1]\n        tags: {name: x}\n",
         12, "channels[0].devices[0].tags", "expected a list, got a mapping"},
        {HEAD NET TAG("T1"), 13, "channels[0].devices[0].tags[0]",
         "expected a mapping (key: value), got a single value"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", raw: 5, eng: [0, 1]}"), 13,
         "channels[0].devices[0].tags[0].raw", "expected a pair [lo, hi], got a single value"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", sim: [1, 2]}"), 13,
         "channels[0].devices[0].tags[0].sim",
         "expected a sim kind (const, ramp, sine, noise, "
         "toggle) or a mapping"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", type: [int16]}"), 13,
         "channels[0].devices[0].tags[0].type", "expected a type, got a list"},
        {"site: t\nredis: localhost\n", 2, "redis",
         "expected a mapping (key: value), got a single value"},
        {"site: t\nresolver: 5\n", 2, "resolver",
         "expected a mapping (key: value), got a single "
         "value"},
        {"site: t\nbrokers: [b1, b2]\n", 2, "brokers[0]",
         "expected a mapping (key: value), got a single value"},
        {"site: t\nbrokers: [{name: b1}, {name: b1}]\n", 2, "brokers[1].name",
         "duplicate broker name \"b1\""},
        {"site: t\nbrokers: [{name: b1, update_interval_ms: -1}]\n", 2,
         "brokers[0].update_interval_ms", "must not be negative"},
        {"site: t\nresolver: {port: 5}\n", 2, "resolver.port", "unknown key"},
        {"site: t\nalarm: on\n", 2, "alarm", "expected a mapping"},
        {"site: &s t\nioservers: [{name: *s}]\nchannels: []\n", 2, "ioservers[0].name",
         "expected a name, got an alias (aliases are not supported)"},
        {"site: t\nioservers: [{name: io1}]\nchannels: []\n---\nsite: u\n", 4, NULL,
         "a site file holds one YAML document; a second one starts here"},
    };
    RUN(cases);
}

static void test_error_syntax(void **state)
{
    static const s_case_t cases[] = {
        {"site: t\nioservers:\n  - name: io1\n   bad: indent\n", 4, NULL,
         "YAML syntax error at column 4: did not find expected '-' indicator (while parsing a "
         "block collection at line 3)"},
        {"site: t\nioservers: [{name: io1}\nchannels: []\n", 3, NULL,
         "YAML syntax error at column 1: did not find expected ',' or ']' (while parsing a "
         "flow sequence at line 2)"},
        {"site: t\n\tioservers: x\n", 2, NULL,
         "YAML syntax error at column 1: found a tab character that violates indentation"},
        {"site: \"t\nioservers: x\n", 3, NULL, "found unexpected end of stream"},
        {"site: t\nchannels:\n  - name: \"a\xff\"\n", 3, NULL,
         "cannot read the file: invalid leading UTF-8 octet"},
    };
    RUN(cases);
}

static void test_error_serial(void **state)
{
    static const s_case_t cases[] = {
        {CHAN("serial") "    serial_port: /dev/ttyS0\n", 6, "channels[0].baud",
         "required key is missing (serial channels need baud > 0)"},
        {CHAN("serial") "    serial_port: /dev/ttyS0\n    baud: 0\n", 9, "channels[0].baud",
         "serial channels need baud > 0"},
        {CHAN("serial") "    baud: 9600\n", 6, "channels[0].serial_port",
         "required key is missing (serial channels need a serial port)"},
        {CHAN("serial") "    serial_port: /dev/ttyS0\n    baud: 9600\n    parity: X\n", 10,
         "channels[0].parity", "parity must be N, E or O (got \"X\")"},
        {CHAN("serial") "    serial_port: /dev/ttyS0\n    baud: 9600\n    parity: even\n", 10,
         "channels[0].parity", "parity must be N, E or O"},
        {CHAN("serial") "    data_bits: 9\n", 8, "channels[0].data_bits", "must be 7 or 8 (got 9)"},
        {CHAN("serial") "    stop_bits: 3\n", 8, "channels[0].stop_bits", "must be 1 or 2 (got 3)"},
        {CHAN("serial") "    serial_port: /dev/ttyS0\n    baud: 9600\n    address: h:1\n", 10,
         "channels[0].address", "not used on serial channels"},
        {CHAN("network") "    serial_port: /dev/ttyS0\n", 8, "channels[0].serial_port",
         "only for serial channels (this one is network)"},
        {CHAN("tcp") "    address: gw:502\n    parity: E\n", 9, "channels[0].parity",
         "only for serial channels (this one is tcp)"},
        {CHAN("listen") "    address: 0.0.0.0:502\n    data_bits: 8\n", 9, "channels[0].data_bits",
         "only for serial channels (this one is listen)"},
        {CHAN("network") "    stop_bits: 1\n", 8, "channels[0].stop_bits",
         "only for serial channels"},
        {CHAN("network") "    address: h:1\n", 8, "channels[0].address",
         "not used on network channels: each device has its own address"},
    };
    RUN(cases);
}

//  Alarms of tags and the alarm section.
static void test_alarms(void **state)
{
    site_t *site = s_load(
        "site: t\n"
        "alarm: {journal: /var/lib/scada/a.journal, sync: each, comm_priority: 2}\n"
        "ioservers: [{name: io1}]\n"
        "channels:\n" NET TAG(
            "{name: L, address: \"hr:0\", alarms: {hihi: 95, hi: {limit: 90, priority: 2, "
            "message: \"Tank high\"}, lo: 10, lolo: 5, deadband: 1.5, on_delay_ms: 2000, "
            "priority: 3, area: tanks}}")
            TAG("{name: P, address: \"co:0\", alarms: {state: {value: 1, message: tripped}}}")
                TAG("{name: N, address: \"hr:1\"}"));
    site_alarms_t *a = &site_tag(site, "L")->alarms;
    assert_true(a->any && a->comm);
    assert_true(a->hihi.set && a->hi.set && a->lo.set && a->lolo.set && !a->has_state);
    assert_true(a->hihi.limit == 95 && a->hi.limit == 90 && a->lo.limit == 10);
    assert_int_equal(a->hihi.priority, 2); //  one above the tag's priority
    assert_int_equal(a->hi.priority, 2);
    assert_int_equal(a->lo.priority, 3);
    assert_int_equal(a->lolo.priority, 2);
    assert_string_equal(a->hi.message, "Tank high");
    assert_true(a->deadband == 1.5);
    assert_int_equal(a->on_delay_ms, 2000);
    assert_string_equal(a->area, "tanks");
    site_alarms_t *p = &site_tag(site, "P")->alarms;
    assert_true(p->any && p->has_state && p->state == 1);
    assert_string_equal(p->state_message, "tripped");
    assert_string_equal(p->area, "default");
    assert_int_equal(p->state_priority, 3);
    assert_false(site_tag(site, "N")->alarms.any);
    assert_string_equal(site->alarm.journal, "/var/lib/scada/a.journal");
    assert_int_equal(site->alarm.sync, SITE_SYNC_EACH);
    assert_int_equal(site->alarm.comm_priority, 2);
    assert_string_equal(site->alarm.comm_area, "comm");
    assert_true(site->alarm.device_alarms);
    assert_string_equal(site->alarm.publish, "tcp://127.0.0.1:5800");
    assert_string_equal(site_sync_name(site->alarm.sync), "each");
    site_destroy(&site);

    static const s_case_t cases[] = {
        {HEAD NET TAG("{name: T, address: \"hr:0\", alarms: {hi: 10, lo: 20}}"), 13,
         "channels[0].devices[0].tags[0].alarms.lo", "lo (20) must be below hi (10)"},
        {HEAD NET TAG("{name: T, address: \"hr:0\", alarms: {hi: 10, state: 1}}"), 13,
         "channels[0].devices[0].tags[0].alarms.state", "either limit alarms"},
        {HEAD NET TAG("{name: T, address: \"hr:0\", alarms: {high: 10}}"), 13,
         "channels[0].devices[0].tags[0].alarms.high", "unknown key"},
        {HEAD NET TAG("{name: T, address: \"hr:0\", alarms: {hi: {priority: 1}}}"), 13,
         "channels[0].devices[0].tags[0].alarms.hi.limit", "required key is missing"},
        {HEAD NET TAG("{name: T, address: \"hr:0\", alarms: {hi: 10, priority: 0}}"), 13,
         "channels[0].devices[0].tags[0].alarms.priority", "between 1 and 1000"},
        {HEAD NET TAG("{name: T, address: \"hr:0\", alarms: {hi: 10, deadband: -1}}"), 13,
         "channels[0].devices[0].tags[0].alarms.deadband", ">= 0"},
        {HEAD NET TAG("{name: T, address: \"hr:0\", alarms: {hi: [1]}}"), 13,
         "channels[0].devices[0].tags[0].alarms.hi", "expected a number or {limit"},
        {"site: t\nalarm: {sync: sometimes}\n", 2, "alarm.sync", "unknown sync policy"},
        {"site: t\nalarm: {fsync: each}\n", 2, "alarm.fsync", "unknown key"},
    };
    RUN(cases);
}

static void test_error_tag_rules(void **state)
{
    static const s_case_t cases[] = {
        {HEAD NET TAG("{name: T1, address: \"di:0\", writable: true}"), 13,
         "channels[0].devices[0].tags[0].writable", "di tags are read-only"},
        {HEAD NET TAG("{name: T1, address: \"ir:0\", writable: yes}"), 13,
         "channels[0].devices[0].tags[0].writable", "ir tags are read-only"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", writable: maybe}"), 13,
         "channels[0].devices[0].tags[0].writable",
         "expected true or false (or yes/no, on/off), got \"maybe\""},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", type: int16, word_order: little}"), 13,
         "channels[0].devices[0].tags[0].word_order",
         "only for 32-bit types (int32, uint32, float32), not int16"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", raw: [0, 10]}"), 13,
         "channels[0].devices[0].tags[0].raw", "raw and eng go together"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", eng: [0, 10]}"), 13,
         "channels[0].devices[0].tags[0].eng", "raw and eng go together"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", raw: [0, 10], eng: [0, 1], scale: 2}"), 13,
         "channels[0].devices[0].tags[0].scale", "give either scale/offset or raw/eng, not both"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", offset: 1, raw: [0, 10], eng: [0, 1]}"), 13,
         "channels[0].devices[0].tags[0].offset", "give either scale/offset or raw/eng"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", raw: [5, 5], eng: [0, 1]}"), 13,
         "channels[0].devices[0].tags[0].raw", "raw lo and hi must differ"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", raw: [0, 5], eng: [1, 1]}"), 13,
         "channels[0].devices[0].tags[0].eng", "eng lo and hi must differ"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", raw: [0, 5, 9], eng: [1, 2]}"), 13,
         "channels[0].devices[0].tags[0].raw", "expected a pair [lo, hi], got 3 values"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", raw: [0, x], eng: [1, 2]}"), 13,
         "channels[0].devices[0].tags[0].raw", "expected a number, got \"x\""},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", scale: 0}"), 13,
         "channels[0].devices[0].tags[0].scale", "must not be 0"},
        {HEAD NET TAG("{name: T1, address: \"co:0\", scale: 2}"), 13,
         "channels[0].devices[0].tags[0].scale", "bool tags are not scaled"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", sim: {kind: ramp, min: 5, max: 1}}"), 13,
         "channels[0].devices[0].tags[0].sim.max", "sim max (1) is below min (5)"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", sim: {kind: ramp, min: 500}}"), 13,
         "channels[0].devices[0].tags[0].sim.min", "sim max (100) is below min (500)"},
        {HEAD NET TAG("{name: \"T 1\", address: \"hr:0\"}"), 13,
         "channels[0].devices[0].tags[0].name", "names may not contain blanks"},
        {HEAD NET TAG("{name: T1, address: \"hr:0\", always_scan: 1}"), 13,
         "channels[0].devices[0].tags[0].always_scan", "expected true or false"},
    };
    RUN(cases);
}

//  ---------------------------------------------------------------------------
//  Environment variables in values

//  Variables of these tests; none is expected in the environment they run in.
static void s_env_clear(void)
{
    static const char *const names[] = {"SCADA_T_HOST", "SCADA_T_PORT",  "SCADA_T_EMPTY",
                                        "SCADA_T_BOOL", "SCADA_T_UNSET", "SCADA_T_IO",
                                        "SCADA_T_REF",  "SCADA_T_NUM",   "SCADA_T_DEV"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        unsetenv(names[i]);
}

static void test_env_expansion(void **state)
{
    s_env_clear();
    setenv("SCADA_T_HOST", "io1", 1);
    setenv("SCADA_T_PORT", "7000", 1);
    setenv("SCADA_T_EMPTY", "", 1);
    setenv("SCADA_T_REF", "${SCADA_T_HOST}", 1);
    site_t *site =
        s_load("site: ${SCADA_T_UNSET:-plant}\n"
               "redis: {host: \"${SCADA_T_EMPTY:-redis}\", port: \"${SCADA_T_UNSET:-6380}\"}\n"
               "devsim: {control: \"tcp://${SCADA_T_HOST}:${SCADA_T_PORT}\"}\n"
               "ioservers:\n"
               "  - name: io1\n"
               "    publish: 'tcp://${SCADA_T_HOST}:5600'\n"           //  single quotes too
               "    control: tcp://${SCADA_T_UNSET:-127.0.0.1}:5601\n" //  unset: the default
               "    iolog_dir: ${SCADA_T_REF}/a$$b/$x/${SCADA_T_EMPTY}/$\n"
               "channels: []\n");
    assert_string_equal(site->site, "plant");
    assert_string_equal(site->redis_host, "redis"); //  set but empty: the default
    assert_int_equal(site->redis_port, 6380);
    assert_string_equal(site->devsim_control, "tcp://io1:7000");
    assert_string_equal(site->ioservers[0].publish, "tcp://io1:5600");
    assert_string_equal(site->ioservers[0].control, "tcp://127.0.0.1:5601");
    //  What a variable holds is not expanded again; $$ is $; a $ before
    //  anything but { or $ stays; an empty variable without default is empty.
    assert_string_equal(site->ioservers[0].iolog_dir, "${SCADA_T_HOST}/a$b/$x//$");
    site_destroy(&site);

    //  $${X} is the text ${X}, not a reference.
    site = s_load("site: s\nredis: {host: \"$${SCADA_T_UNSET}\"}\nioservers: [{name: a}]\n"
                  "channels:\n");
    assert_string_equal(site->redis_host, "${SCADA_T_UNSET}");
    site_destroy(&site);
    s_env_clear();
}

//  Numbers, booleans, names and list items come from variables alike,
//  checked after the expansion.
static void test_env_typed_values(void **state)
{
    s_env_clear();
    setenv("SCADA_T_PORT", "16379", 1);
    setenv("SCADA_T_BOOL", "yes", 1);
    setenv("SCADA_T_IO", "io2", 1);
    setenv("SCADA_T_NUM", "2.5", 1);
    site_t *site =
        s_load("site: s\n"
               "redis:\n  port: ${SCADA_T_PORT}\n"
               "ping_time_ms: ${SCADA_T_UNSET:-250}\n"
               "ioservers: [{name: io1}, {name: \"${SCADA_T_IO}\"}]\n"
               "channels:\n"
               "  - name: ch1\n"
               "    type: network\n"
               "    iolog: ${SCADA_T_BOOL}\n"
               "    devices:\n"
               "      - name: d1\n"
               "        address: ${SCADA_T_UNSET:-127.0.0.1}:${SCADA_T_PORT}\n"
               "        servers: [io1, \"${SCADA_T_IO}\"]\n"
               "        tags:\n"
               "          - {name: T1, address: \"hr:${SCADA_T_UNSET:-7}\",\n"
               "             scale: \"${SCADA_T_NUM}\", always_scan: \"${SCADA_T_BOOL}\"}\n");
    assert_int_equal(site->redis_port, 16379);
    assert_int_equal(site->ping_time_ms, 250);
    assert_string_equal(site->ioservers[1].name, "io2");
    assert_true(site->channels[0].iolog);
    site_device_t *dev = &site->channels[0].devices[0];
    assert_string_equal(dev->host, "127.0.0.1");
    assert_int_equal(dev->port, 16379);
    assert_string_equal(dev->servers[1].ioserver, "io2");
    assert_int_equal(dev->tags[0].address, 7);
    ASSERT_NEAR(dev->tags[0].scale, 2.5);
    assert_true(dev->tags[0].always_scan);
    site_destroy(&site);

    //  The expanded text is what is checked.
    setenv("SCADA_T_NUM", "70000", 1);
    setenv("SCADA_T_BOOL", "maybe", 1);
    s_case_t cases[] = {
        {"site: s\nredis: {port: \"${SCADA_T_NUM}\"}\n", 2, "redis.port",
         "must be between 1 and 65535 (got 70000)"},
        //  Unquoted in flow style, "${" would start a mapping.
        {"site: s\nredis: {port: ${SCADA_T_NUM}}\n", 2, "redis.port",
         "inside {...} or [...] a value with ${...} must be quoted"},
        {DEV "        servers: [io1, ${SCADA_T_IO}]\n", 10, "channels[0].devices[0].servers[1]",
         "must be quoted"},
        {"site: s\nping_time_ms: ${SCADA_T_UNSET:-soon}\n", 2, "ping_time_ms",
         "expected an integer, got \"soon\""},
        {CHAN("network") "    iolog: ${SCADA_T_BOOL}\n", 8, "channels[0].iolog",
         "expected true or false (or yes/no, on/off), got \"maybe\""},
        {"site: s\nredis: {host: \"${SCADA_T_UNSET:-}\"}\n", 2, "redis.host", "must not be empty"},
        //  Keys are never expanded.
        {"site: s\n${SCADA_T_IO}: x\n", 2, "${SCADA_T_IO}", "unknown key"},
    };
    RUN(cases);
    s_env_clear();
}

static void test_env_errors(void **state)
{
    s_env_clear();
    setenv("SCADA_T_HOST", "io1", 1);
    s_case_t cases[] = {
        {HEAD "  - {name: c, type: tcp, address: \"${SCADA_T_UNSET}:502\"}\n", 6,
         "channels[0].address",
         "environment variable SCADA_T_UNSET is not set (write ${SCADA_T_UNSET:-default} to give "
         "a default)"},
        //  In a list the message names the element.
        {DEV "        servers: [io1, \"${SCADA_T_UNSET}\"]\n", 10,
         "channels[0].devices[0].servers[1]", "environment variable SCADA_T_UNSET is not set"},
        {"site: s\nredis: {host: \"${SCADA_T_HOST\"}\n", 2, "redis.host",
         "\"${\" without \"}\" in \"${SCADA_T_HOST\""},
        {"site: s\nredis: {host: \"a${\"}\n", 2, "redis.host", "\"${\" without \"}\""},
        {"site: s\nredis: {host: \"${}\"}\n", 2, "redis.host",
         "bad reference \"${}\": a variable name is letters, digits and _"},
        {"site: s\nredis: {host: \"${1HOST}\"}\n", 2, "redis.host",
         "bad reference \"${1HOST}\": a variable name"},
        {"site: s\nredis: {host: \"${SCADA-HOST}\"}\n", 2, "redis.host",
         "bad reference \"${SCADA-HOST}\": expected } or :-default after the name SCADA"},
        {"site: s\nredis: {host: \"${SCADA_T_HOST:default}\"}\n", 2, "redis.host",
         "expected } or :-default after the name SCADA_T_HOST"},
        {"site: s\nredis: {host: \"${SCADA_T_UNSET:-${SCADA_T_HOST}}\"}\n", 2, "redis.host",
         "no nested ${...}"},
    };
    RUN(cases);

    //  The message names the file as given, the line and the key path.
    char path[] = "/tmp/test_site_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "site: f\n"
                       "ioservers:\n"
                       "  - name: io1\n"
                       "    publish: tcp://${SCADA_T_UNSET}:5600\n"
                       "channels: []\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char err[512], want[600];
    assert_null(site_load(path, err, sizeof err));
    snprintf(want, sizeof want,
             "%s:4: ioservers[0].publish: environment variable SCADA_T_UNSET is not set "
             "(write ${SCADA_T_UNSET:-default} to give a default)",
             path);
    assert_string_equal(err, want);
    //  Set, it loads.
    setenv("SCADA_T_UNSET", "10.0.0.7", 1);
    site_t *site = site_load(path, err, sizeof err);
    assert_non_null(site);
    assert_string_equal(site->ioservers[0].publish, "tcp://10.0.0.7:5600");
    site_destroy(&site);
    unlink(path);
    s_env_clear();
}

//  redis: the password from a file (relative to the site file) or a
//  variable, never from the site file itself; user for an ACL user.
//  Plant areas (tag, device, channel, inherited in that order) and roles.
static void test_roles(void **state)
{
    (void)state;
    const char *text = "site: t\n"
                       "ioservers: [{name: io1}]\n"
                       "channels:\n"
                       "  - name: ch1\n"
                       "    type: network\n"
                       "    area: water\n"
                       "    devices:\n"
                       "      - name: d1\n"
                       "        address: 127.0.0.1:502\n"
                       "        servers: [io1]\n"
                       "        tags:\n"
                       "          - {name: A, address: \"hr:0\"}\n"
                       "          - {name: B, address: \"hr:1\", area: pumps,\n"
                       "             alarms: {hi: 5}}\n"
                       "          - {name: C, address: \"hr:2\", alarms: {hi: 5, area: x}}\n"
                       "      - name: d2\n"
                       "        address: 127.0.0.1:503\n"
                       "        area: tanks\n"
                       "        servers: [io1]\n"
                       "        tags: [{name: D, address: \"hr:0\"}]\n"
                       "  - name: ch2\n"
                       "    type: network\n"
                       "    devices:\n"
                       "      - {name: d3, address: 127.0.0.1:504, servers: [io1],\n"
                       "         tags: [{name: E, address: \"hr:0\", alarms: {hi: 1}}]}\n"
                       "security:\n"
                       "  roles:\n"
                       "    viewer: {read: \"*\"}\n"
                       "    operator: {read: \"*\", write: [pumps, tanks]}\n"
                       "    engineer: {write: [\"*\"]}\n"
                       "    waterman: {read: [water]}\n"
                       "    alarmist: {write: [x, comm]}\n" //  areas of alarms only
                       "  users: {alice: operator, bob: viewer, eve: waterman, root: engineer}\n"
                       "  default_role: viewer\n";
    site_t *site = s_load(text);
    assert_string_equal(site_tag(site, "A")->plant_area, "water");
    assert_string_equal(site_tag(site, "B")->plant_area, "pumps");
    assert_string_equal(site_tag(site, "B")->alarms.area, "pumps"); //  alarms follow the tag
    assert_string_equal(site_tag(site, "C")->alarms.area, "x");     //  unless they say
    assert_string_equal(site_tag(site, "D")->plant_area, "tanks");
    assert_string_equal(site_tag(site, "E")->plant_area, "default");
    assert_string_equal(site_tag(site, "E")->alarms.area, "default");
    assert_int_equal(site->nroles, 5);
    assert_int_equal(site->nusers, 4);
    assert_string_equal(site_role_of(site, "alice")->name, "operator");
    assert_string_equal(site_role_of(site, "nobody")->name, "viewer"); //  default_role
    assert_string_equal(site_role_of(site, NULL)->name, "viewer");
    //  read
    assert_true(site_may(site, "bob", "pumps", false));
    assert_true(site_may(site, "eve", "water", false));
    assert_false(site_may(site, "eve", "pumps", false));
    assert_true(site_may(site, "root", "water", false)); //  write implies read
    //  write
    assert_true(site_may(site, "alice", "pumps", true));
    assert_true(site_may(site, "alice", "tanks", true));
    assert_false(site_may(site, "alice", "water", true));
    assert_false(site_may(site, "bob", "pumps", true));
    assert_false(site_may(site, "eve", "water", true));
    assert_true(site_may(site, "root", "default", true));
    assert_false(site_may(site, "stranger", "pumps", true));
    site_destroy(&site);

    //  No default_role: a certificate not listed may do nothing.
    site = s_load("site: t\n"
                  "ioservers: [{name: io1}]\n"
                  "channels: [{name: c, type: network, devices: [{name: d, address: \"h:1\",\n"
                  "  servers: [io1], tags: [{name: T, address: \"hr:0\"}]}]}]\n"
                  "security: {roles: {op: {write: [default]}}, users: {al: op}}\n");
    assert_null(site_role_of(site, "x"));
    assert_false(site_may(site, "x", "default", false));
    assert_false(site_may(site, NULL, "default", false));
    assert_true(site_may(site, "al", "default", true));
    site_destroy(&site);

    //  No roles: everything allowed, to everyone.
    site = s_load("site: t\n"
                  "ioservers: [{name: io1}]\n"
                  "channels: [{name: c, type: network, devices: [{name: d, address: \"h:1\",\n"
                  "  servers: [io1], tags: [{name: T, address: \"hr:0\"}]}]}]\n");
    assert_true(site_may(site, NULL, "default", true));
    assert_true(site_may(site, "anyone", "default", true));
    site_destroy(&site);

#define R_HEAD                                                                                     \
    "site: t\n"                                                                                    \
    "ioservers: [{name: io1}]\n"                                                                   \
    "channels: [{name: c, type: network, area: plant, devices: [{name: d, address: \"h:1\",\n"     \
    "  servers: [io1], tags: [{name: T, address: \"hr:0\"}]}]}]\n"                                 \
    "security:\n"
    static const s_case_t cases[] = {
        {R_HEAD "  plain: true\n  roles: {op: {write: [plant]}}\n", 6, "security",
         "a plain site (plain: true) cannot have roles"},
        {R_HEAD "  users: {al: op}\n", 6, "security", "there is no roles: section"},
        {R_HEAD "  roles: {op: {write: [plant]}}\n  users: {al: opp}\n", 7, "security.users.al",
         "unknown role \"opp\" (roles: op)"},
        {R_HEAD "  roles: {op: {write: [plant]}}\n  default_role: nobody\n", 6,
         "security.default_role", "unknown role \"nobody\""},
        {R_HEAD "  roles: {op: {write: [plant, plnt]}}\n", 6, "security.roles.op.write[1]",
         "no tag or alarm is in area \"plnt\""},
        {R_HEAD "  roles: {op: {read: [plant]}, op: {write: [plant]}}\n", 6, "security.roles.op",
         "duplicate role"},
        {R_HEAD "  roles: {op: {}}\n", 6, "security.roles.op", "a role gives read or write"},
        {R_HEAD "  roles: {op: {wrte: [plant]}}\n", 6, "security.roles.op.wrte",
         "did you mean \"write\""},
        {R_HEAD "  roles: {op: {write: {a: b}}}\n", 6, "security.roles.op.write",
         "expected a list of areas"},
        {R_HEAD "  roles: {op: {write: [plant]}}\n  users: {al: op, al: op}\n", 7,
         "security.users.al", "duplicate user"},
        {R_HEAD "  roles: [op]\n", 6, "security.roles", "expected a mapping"},
        {R_HEAD "  roles: {op: {write: [\"a b\"]}}\n", 6, "security.roles.op.write[0]",
         "may not contain blanks"},
    };
#undef R_HEAD
    RUN(cases);
}

static void test_redis_password(void **state)
{
    char dir[] = "/tmp/test_site_pw_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char site_path_[256], pw_path[256], empty_path[256];
    snprintf(site_path_, sizeof site_path_, "%s/site.yaml", dir);
    snprintf(pw_path, sizeof pw_path, "%s/redis.pw", dir);
    snprintf(empty_path, sizeof empty_path, "%s/empty.pw", dir);
    FILE *f = fopen(pw_path, "w");
    assert_non_null(f);
    fputs("s3cret word\n", f);
    fclose(f);
    f = fopen(empty_path, "w");
    assert_non_null(f);
    fclose(f);
    char err[512];
    struct {
        const char *redis;
        const char *password; //  expected, NULL: none
        const char *user;
        const char *error; //  expected phrase, NULL: loads
    } cases[] = {
        {"{port: 7000}", NULL, NULL, NULL},
        {"{password_file: redis.pw}", "s3cret word", NULL, NULL},
        {"{password_file: redis.pw, user: scada}", "s3cret word", "scada", NULL},
        {"{password_env: SCADA_T_PW}", "from env", NULL, NULL},
        {"{password_env: SCADA_T_PW_UNSET}", NULL, NULL, NULL},
        {"{password_file: missing.pw}", NULL, NULL,
         "site.yaml:2: redis.password_file: cannot read"},
        {"{password_file: empty.pw}", NULL, NULL, "is empty"},
        {"{password_file: redis.pw, password_env: SCADA_T_PW}", NULL, NULL,
         "site.yaml:2: redis: give password_file or password_env, not both"},
    };
    setenv("SCADA_T_PW", "from env", 1);
    unsetenv("SCADA_T_PW_UNSET");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        f = fopen(site_path_, "w");
        assert_non_null(f);
        fprintf(f, "site: p\nredis: %s\nioservers: [{name: io1}]\nchannels: []\n", cases[i].redis);
        fclose(f);
        site_t *site = site_load(site_path_, err, sizeof err);
        if (cases[i].error) {
            assert_null(site);
            if (!strstr(err, cases[i].error))
                fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].error);
            continue;
        }
        if (!site)
            fail_msg("case %zu: %s", i, err);
        if (cases[i].password)
            assert_string_equal(site->redis_password, cases[i].password);
        else
            assert_null(site->redis_password);
        if (cases[i].user)
            assert_string_equal(site->redis_user, cases[i].user);
        else
            assert_null(site->redis_user);
        site_destroy(&site);
    }
    unsetenv("SCADA_T_PW");
    unlink(site_path_);
    unlink(pw_path);
    unlink(empty_path);
    rmdir(dir);
}

//  devsim: {start: [...]}: commands as strings, with their lines.
static void test_devsim_start(void **state)
{
    s_env_clear();
    site_t *site = s_load("site: s\nioservers: [{name: a}]\nchannels:\n");
    assert_int_equal(site->ndevsim_start, 0);
    assert_null(site->devsim_start);
    site_destroy(&site);

    setenv("SCADA_T_DEV", "plc12", 1);
    site = s_load("site: s\n"                                //  1
                  "devsim:\n"                                //  2
                  "  control: tcp://127.0.0.1:6590\n"        //  3
                  "  start:\n"                               //  4
                  "    - silent plc11,${SCADA_T_DEV}\n"      //  5
                  "    - \"refuse rtu017\"\n"                //  6
                  "    - flap line7 25000 10000 delay 400\n" //  7
                  "ioservers: [{name: a}]\n"                 //  8
                  "channels:\n");                            //  9
    assert_int_equal(site->ndevsim_start, 3);
    assert_string_equal(site->devsim_start[0], "silent plc11,plc12");
    assert_string_equal(site->devsim_start[1], "refuse rtu017");
    assert_string_equal(site->devsim_start[2], "flap line7 25000 10000 delay 400");
    assert_int_equal(site->devsim_start_line[0], 5);
    assert_int_equal(site->devsim_start_line[1], 6);
    assert_int_equal(site->devsim_start_line[2], 7);
    site_destroy(&site);

    //  Flow style, and an empty list.
    site = s_load("site: s\ndevsim: {start: [\"silent a,b\", ping]}\nioservers: [{name: a}]\n"
                  "channels:\n");
    assert_int_equal(site->ndevsim_start, 2);
    assert_string_equal(site->devsim_start[0], "silent a,b");
    assert_string_equal(site->devsim_start[1], "ping");
    assert_int_equal(site->devsim_start_line[1], 2);
    site_destroy(&site);
    site = s_load("site: s\ndevsim: {start: []}\nioservers: [{name: a}]\nchannels:\n");
    assert_int_equal(site->ndevsim_start, 0);
    site_destroy(&site);

    s_case_t cases[] = {
        {"site: s\ndevsim: {start: \"silent a\"}\n", 2, "devsim.start",
         "expected a list, got a single value"},
        {"site: s\ndevsim:\n  start:\n    - ping\n    - {silent: a}\n", 5, "devsim.start[1]",
         "expected a control command (a string such as \"silent plc1\"), got a mapping"},
        {"site: s\ndevsim: {start: [ping, [silent, a]]}\n", 2, "devsim.start[1]", "got a list"},
        {"site: s\ndevsim: {start: [\"\"]}\n", 2, "devsim.start[0]", "must not be empty"},
        {"site: s\ndevsim: {start: [\"silent ${SCADA_T_UNSET}\"]}\n", 2, "devsim.start[0]",
         "environment variable SCADA_T_UNSET is not set"},
    };
    RUN(cases);
    s_env_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_names_and_widths),
        cmocka_unit_test(test_lookups_without_index),
        cmocka_unit_test(test_large_site),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_demo_site),
        cmocka_unit_test(test_error_unknown_type),
        cmocka_unit_test(test_error_tag_address),
        cmocka_unit_test(test_error_host_port),
        cmocka_unit_test(test_error_missing_keys),
        cmocka_unit_test(test_error_duplicates),
        cmocka_unit_test(test_error_unknown_ioserver),
        cmocka_unit_test(test_error_numbers),
        cmocka_unit_test(test_error_unknown_keys),
        cmocka_unit_test(test_error_node_kind),
        cmocka_unit_test(test_error_syntax),
        cmocka_unit_test(test_error_serial),
        cmocka_unit_test(test_error_tag_rules),
        cmocka_unit_test(test_alarms),
        cmocka_unit_test(test_env_expansion),
        cmocka_unit_test(test_env_typed_values),
        cmocka_unit_test(test_env_errors),
        cmocka_unit_test(test_redis_password),
        cmocka_unit_test(test_devsim_start),
        cmocka_unit_test(test_roles),
    };
    return cmocka_run_group_tests_name("site", tests, NULL, NULL);
}
