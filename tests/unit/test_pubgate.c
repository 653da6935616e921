/*  Unit tests of pubgate (who may connect to a publish socket, by the
    certificate's name and role) and of the authenticator of sec that asks
    it during the CURVE handshake, on real TCP sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pubgate.h"
#include "sec.h"
#include "slog.h"

#include <czmq.h>
#include <string.h>
#include <unistd.h>

static char s_dir[64];
static char s_keys[128];

static const char *s_roles_site =
    "site: t\n"
    "security:\n"
    "  keys: keys\n"
    "  roles: {op: {read: \"*\"}, viewer: {read: [pumps]}}\n"
    "  users: {olga: op, vic: viewer}\n"
    "ioservers: [{name: io1}]\n"
    "channels:\n"
    "- name: net\n"
    "  type: network\n"
    "  devices:\n"
    "  - {name: d1, address: \"127.0.0.1:1\", servers: [io1], area: pumps,\n"
    "     tags: [{name: A, address: \"hr:0\"}]}\n"
    "  - {name: d2, address: \"127.0.0.1:2\", servers: [io1], area: tanks,\n"
    "     tags: [{name: B, address: \"hr:0\"}]}\n";

static const char *s_open_site = "site: t\nsecurity: {keys: keys}\nioservers: [{name: io1}]\n"
                                 "channels: []\n";

//  io1's gate: b1 (the site's default broker) trusted, areas pumps and
//  tanks (tanks twice: a repeat counts once).
static pubgate_t *s_gate(site_t *site)
{
    pubgate_t *gate = pubgate_new(site, "publish socket", NULL);
    pubgate_add_area(gate, "pumps");
    pubgate_add_area(gate, "tanks");
    pubgate_add_area(gate, "tanks");
    pubgate_add_area(gate, NULL);
    return gate;
}

static site_t *s_site(const char *text)
{
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/site.yaml", s_dir);
    site_t *site = site_load_string(text, strlen(text), path, err, sizeof err);
    if (!site)
        fail_msg("%s", err);
    return site;
}

static int s_setup(void **state)
{
    (void)state;
    snprintf(s_dir, sizeof s_dir, "/tmp/test_pubgate_XXXXXX");
    assert_non_null(mkdtemp(s_dir));
    snprintf(s_keys, sizeof s_keys, "%s/keys", s_dir);
    site_t *site = s_site(s_roles_site);
    char err[512];
    const char *users[] = {"olga", "vic", "sam"};
    if (sec_keygen(site, s_keys, users, 3, err, sizeof err) != 0)
        fail_msg("%s", err);
    site_destroy(&site);
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_allows(void **state)
{
    (void)state;
    site_t *site = s_site(s_roles_site);
    pubgate_t *gate = s_gate(site);
    char why[400] = "";
    assert_true(pubgate_allows(gate, "b1", why, sizeof why));   //  trusted, no role needed
    assert_true(pubgate_allows(gate, "olga", why, sizeof why)); //  reads "*"
    assert_false(pubgate_allows(gate, "vic", why, sizeof why)); //  pumps only
    assert_non_null(strstr(why, "certificate \"vic\" (role viewer) may not read area \"tanks\""));
    assert_false(pubgate_allows(gate, "sam", why, sizeof why));
    assert_non_null(strstr(why, "certificate \"sam\" has no role"));
    assert_false(pubgate_allows(gate, NULL, why, sizeof why));
    assert_non_null(strstr(why, "no name"));
    //  allows() counts nothing; check() counts.
    assert_int_equal(pubgate_refused(gate), 0);
    assert_false(pubgate_check(gate, "vic"));
    assert_false(pubgate_check(gate, "vic"));
    assert_true(pubgate_check(gate, "olga"));
    assert_int_equal(pubgate_refused(gate), 2);
    assert_int_equal(pubgate_accepted(gate), 1);
    pubgate_destroy(&gate);
    assert_null(gate);
    pubgate_destroy(&gate); //  tolerated
    site_destroy(&site);

    //  A site without roles: everyone may.
    site = s_site(s_open_site);
    gate = s_gate(site);
    assert_true(pubgate_allows(gate, "vic", why, sizeof why));
    assert_true(pubgate_allows(gate, NULL, why, sizeof why));
    pubgate_destroy(&gate);
    site_destroy(&site);
}

//  A SUB with `user`'s certificate, subscribed to "V", connected to io1's
//  publish socket at `ep`.
static zsock_t *s_sub(site_t *site, sec_t **sec, const char *user, const char *ep)
{
    char err[512];
    *sec = sec_new(site, user, NULL, err, sizeof err);
    if (!*sec)
        fail_msg("%s", err);
    zsock_t *sub = zsock_new(ZMQ_SUB);
    assert_int_equal(sec_client(*sec, sub, "io1", NULL, err, sizeof err), 0);
    zsock_set_subscribe(sub, "V");
    assert_int_equal(zsock_connect(sub, "%s", ep), 0);
    return sub;
}

//  Publish "V" until `sub` has one (true) or `ms` pass (false).
static bool s_receives(zsock_t *pub, zsock_t *sub, int ms)
{
    for (int waited = 0; waited <= ms; waited += 20) {
        zstr_sendm(pub, "V");
        zstr_send(pub, "value");
        zpoller_t *poller = zpoller_new(sub, NULL);
        bool got = zpoller_wait(poller, 20) == sub;
        zpoller_destroy(&poller);
        if (got) {
            char *topic = NULL, *body = NULL;
            assert_int_equal(zstr_recvx(sub, &topic, &body, NULL), 2);
            assert_string_equal(body, "value");
            zstr_free(&topic);
            zstr_free(&body);
            return true;
        }
    }
    return false;
}

//  io1's gated PUB and an ungated ROUTER on one authenticator: olga (reads
//  everything) gets the stream, vic (pumps only) fails the handshake and
//  gets nothing; on the ROUTER both are let in, named by their certificate
//  and their key.
static void test_curve(void **state)
{
    (void)state;
    site_t *site = s_site(s_roles_site);
    char err[512];
    sec_t *io = sec_new(site, "io1", NULL, err, sizeof err);
    if (!io)
        fail_msg("%s", err);
    pubgate_t *gate = s_gate(site);
    zsock_t *pub = zsock_new(ZMQ_PUB);
    assert_int_equal(sec_server_gated(io, pub, "publish socket", gate, err, sizeof err), 0);
    int port = zsock_bind(pub, "tcp://127.0.0.1:*[50000-]");
    assert_true(port > 0);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    zsock_t *router = zsock_new(ZMQ_ROUTER);
    assert_int_equal(sec_server(io, router, "control socket", err, sizeof err), 0);
    int rport = zsock_bind(router, "tcp://127.0.0.1:*[50000-]");
    assert_true(rport > 0);

    sec_t *sec_olga, *sec_vic;
    zsock_t *olga = s_sub(site, &sec_olga, "olga", ep);
    zsock_t *vic = s_sub(site, &sec_vic, "vic", ep);
    assert_true(s_receives(pub, olga, 5000));
    for (int i = 0; i < 250 && pubgate_refused(gate) == 0; i++)
        zclock_sleep(20);
    assert_true(pubgate_refused(gate) >= 1); //  it retries: each try is refused
    assert_true(pubgate_accepted(gate) >= 1);
    assert_false(s_receives(pub, vic, 300));

    //  The ungated socket: both in, with their names and keys.
    const char *users[] = {"olga", "vic"};
    sec_t *secs[] = {sec_olga, sec_vic};
    for (int u = 0; u < 2; u++) {
        zsock_t *dealer = zsock_new(ZMQ_DEALER);
        assert_int_equal(sec_client(secs[u], dealer, "io1", NULL, err, sizeof err), 0);
        assert_int_equal(zsock_connect(dealer, "tcp://127.0.0.1:%d", rport), 0);
        zstr_send(dealer, "hello");
        zsock_set_rcvtimeo(router, 5000);
        zframe_t *rid = zframe_recv(router);
        assert_non_null(rid);
        zframe_t *body = zframe_recv(router);
        assert_non_null(body);
        assert_string_equal(zframe_meta(body, "name"), users[u]);
        char path[256];
        snprintf(path, sizeof path, "%s/%s.key", s_keys, users[u]);
        zcert_t *cert = zcert_load(path);
        assert_non_null(cert);
        assert_string_equal(zframe_meta(body, "User-Id"), zcert_public_txt(cert));
        zcert_destroy(&cert);
        zframe_destroy(&rid);
        zframe_destroy(&body);
        zsock_destroy(&dealer);
    }

    zsock_destroy(&vic);
    zsock_destroy(&olga);
    sec_destroy(&sec_vic);
    sec_destroy(&sec_olga);
    zsock_destroy(&router);
    zsock_destroy(&pub);
    sec_destroy(&io);
    pubgate_destroy(&gate);
    site_destroy(&site);
}

int main(void)
{
    slog_init("test_pubgate", SLOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allows),
        cmocka_unit_test(test_curve),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
