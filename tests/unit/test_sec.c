/*  Unit tests of sec: keygen, CURVE between a server and its clients on
    real TCP sockets, refusal of unknown, revoked and wrong keys, plain
    sites. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sec.h"
#include "slog.h"

#include <czmq.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char s_dir[64];
static char s_keys[128];

static site_t *s_site(bool plain)
{
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/site.yaml", s_dir);
    const char *text = plain ? "site: t\nsecurity: {plain: true}\nioservers: [{name: io1}, "
                               "{name: io2}]\nchannels: []\n"
                             : "site: t\nsecurity: {keys: site-keys/keys}\n"
                               "ioservers: [{name: io1}, {name: io2}]\nchannels: []\n";
    site_t *site = site_load_string(text, strlen(text), path, err, sizeof err);
    if (!site)
        fail_msg("%s", err);
    return site;
}

static int s_setup(void **state)
{
    snprintf(s_dir, sizeof s_dir, "/tmp/test_sec_XXXXXX");
    assert_non_null(mkdtemp(s_dir));
    snprintf(s_keys, sizeof s_keys, "%s/site-keys/keys", s_dir); //  parents made too
    site_t *site = s_site(false);
    char err[512];
    const char *users[] = {"olga"};
    if (sec_keygen(site, s_keys, users, 1, err, sizeof err) != 0)
        fail_msg("%s", err);
    site_destroy(&site);
    return 0;
}

static int s_teardown(void **state)
{
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_dir);
    return system(cmd) == 0 ? 0 : -1;
}

//  A round trip from a DEALER set up as `client` (NULL: plain) to a ROUTER
//  set up as io1's server; true when it arrived within ms.
static bool s_exchange(sec_t *server, sec_t *client, const char *peer, int ms)
{
    char err[512];
    zsock_t *router = zsock_new(ZMQ_ROUTER);
    zsock_set_linger(router, 0);
    assert_int_equal(sec_server(server, router, "test router", err, sizeof err), 0);
    int port = zsock_bind(router, "tcp://127.0.0.1:*");
    assert_true(port > 0);
    zsock_t *dealer = zsock_new(ZMQ_DEALER);
    zsock_set_linger(dealer, 0);
    if (client)
        assert_int_equal(sec_client(client, dealer, peer, "test dealer", err, sizeof err), 0);
    zsock_connect(dealer, "tcp://127.0.0.1:%d", port);
    zstr_send(dealer, "hello");
    zpoller_t *poller = zpoller_new(router, NULL);
    bool got = false;
    if (zpoller_wait(poller, ms)) {
        zmsg_t *m = zmsg_recv(router);
        got = m && zmsg_size(m) == 2;
        zmsg_destroy(&m);
    }
    zpoller_destroy(&poller);
    zsock_destroy(&dealer);
    zsock_destroy(&router);
    return got;
}

static void test_keygen_files(void **state)
{
    const char *names[] = {"resolver", "io1", "io2", "b1", "alarm", "devsim", "scadactl", "olga"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[256];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s.key_secret", s_keys, names[i]);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 077, 0); //  the owner's alone
        snprintf(p, sizeof p, "%s/public/%s.key", s_keys, names[i]);
        assert_int_equal(access(p, R_OK), 0);
    }
    //  Again: everything is kept (same key).
    site_t *site = s_site(false);
    char p[256], before[64], err[512];
    snprintf(p, sizeof p, "%s/io1.key", s_keys);
    zcert_t *c = zcert_load(p);
    snprintf(before, sizeof before, "%s", zcert_public_txt(c));
    zcert_destroy(&c);
    assert_int_equal(sec_keygen(site, s_keys, NULL, 0, err, sizeof err), 0);
    c = zcert_load(p);
    assert_string_equal(zcert_public_txt(c), before);
    zcert_destroy(&c);
    //  A bad user name changes nothing.
    const char *bad[] = {"../x"};
    assert_int_equal(sec_keygen(site, s_keys, bad, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot name a certificate"));
    site_destroy(&site);
}

static void test_curve_allowed_and_refused(void **state)
{
    site_t *site = s_site(false);
    char err[512];
    sec_t *io1 = sec_new(site, "io1", NULL, err, sizeof err);
    if (!io1)
        fail_msg("%s", err);
    sec_t *b1 = sec_new(site, "b1", NULL, err, sizeof err);
    assert_non_null(b1);
    assert_false(sec_plain(io1));
    //  An allowed client that knows io1's key.
    assert_true(s_exchange(io1, b1, "io1", 3000));
    //  A plain client: nothing arrives.
    assert_false(s_exchange(io1, NULL, NULL, 700));
    //  A client that takes io2's key for io1's: nothing arrives.
    assert_false(s_exchange(io1, b1, "io2", 700));
    //  A certificate that is not allowed (made outside keygen).
    char p[256];
    snprintf(p, sizeof p, "%s/stranger.key", s_dir);
    zcert_t *c = zcert_new();
    assert_int_equal(zcert_save(c, p), 0);
    zcert_destroy(&c);
    sec_t *stranger = sec_new(site, "stranger", p, err, sizeof err);
    assert_non_null(stranger);
    assert_false(s_exchange(io1, stranger, "io1", 700));
    //  Revoked: olga was allowed, then her public key is removed.
    sec_t *olga = sec_new(site, "olga", NULL, err, sizeof err);
    assert_non_null(olga);
    assert_true(s_exchange(io1, olga, "io1", 3000));
    assert_int_equal(sec_revoke(site, s_keys, "olga", err, sizeof err), 0);
    sleep(1); //  the allow list is reloaded when the directory's time changes
    assert_false(s_exchange(io1, olga, "io1", 700));
    assert_int_equal(sec_revoke(site, s_keys, "olga", err, sizeof err), -1);
    sec_destroy(&olga);
    sec_destroy(&stranger);
    sec_destroy(&b1);
    sec_destroy(&io1);
    site_destroy(&site);
}

static int s_stop(zloop_t *loop, int timer_id, void *arg)
{
    return -1;
}

//  Refusals are counted (and logged) once the sockets are on a loop.
static void test_refusals_seen(void **state)
{
    site_t *site = s_site(false);
    char err[512];
    sec_t *io1 = sec_new(site, "io1", NULL, err, sizeof err);
    assert_non_null(io1);
    zsock_t *router = zsock_new(ZMQ_ROUTER);
    zsock_set_linger(router, 0);
    assert_int_equal(sec_server(io1, router, "control socket", err, sizeof err), 0);
    int port = zsock_bind(router, "tcp://127.0.0.1:*");
    zloop_t *loop = zloop_new();
    sec_attach(io1, loop);
    zsock_t *dealer = zsock_new(ZMQ_DEALER); //  plain
    zsock_set_linger(dealer, 0);
    zsock_connect(dealer, "tcp://127.0.0.1:%d", port);
    zstr_send(dealer, "hello");
    zloop_timer(loop, 1500, 1, s_stop, NULL);
    zloop_start(loop);
    assert_true(sec_refused(io1) >= 1);
    zloop_destroy(&loop);
    zsock_destroy(&dealer);
    zsock_destroy(&router);
    sec_destroy(&io1);
    site_destroy(&site);
}

static void test_missing_certificate_and_plain(void **state)
{
    site_t *site = s_site(false);
    char err[512];
    assert_null(sec_new(site, "io9", NULL, err, sizeof err));
    assert_non_null(strstr(err, "no certificate for io9"));
    assert_non_null(strstr(err, "keygen"));
    site_destroy(&site);
    site = s_site(true);
    sec_t *p = sec_new(site, "io9", NULL, err, sizeof err);
    assert_non_null(p);
    assert_true(sec_plain(p));
    zsock_t *s = zsock_new(ZMQ_ROUTER);
    assert_int_equal(sec_server(p, s, "x", err, sizeof err), 0);
    assert_int_equal(zsock_curve_server(s), 0);
    zsock_destroy(&s);
    sec_destroy(&p);
    site_destroy(&site);
}

int main(void)
{
    slog_init("test_sec", SLOG_ERROR);
    zsys_init();
    zsys_set_linger(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keygen_files),
        cmocka_unit_test(test_curve_allowed_and_refused),
        cmocka_unit_test(test_refusals_seen),
        cmocka_unit_test(test_missing_certificate_and_plain),
    };
    return cmocka_run_group_tests_name("sec", tests, s_setup, s_teardown);
}
