/* delivery: Standard Webhooks and hex HMAC signatures, backoff, the address policy on
 * literal addresses (no DNS lookups), a POST to a refused address, and what a POST signed
 * with the hex HMAC scheme carries to a local receiver. */
#include <string.h>

#include "receiver.h"
#include "unit.h"
#include "delivery/delivery.h"
#include "util/buf.h"
#include "util/errors.h"

TEST(standard_webhooks_signature_vector)
{
    /* the Standard Webhooks specification's example */
    static const char MSG[] = "msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{\"test\": 2432232314}";
    static const char SECRET[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    struct slice msg = {MSG, sizeof MSG - 1};
    struct buf b;
    buf_init(&b);
    delivery_sign(&b, SECRET, msg);
    ASSERT_STR(b.ptr, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    delivery_sign(&b, SECRET, msg);
    ASSERT_STR(b.ptr, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= "
                      "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    buf_fini(&b);
    char s1[DELIVERY_SECRET_TEXT], s2[DELIVERY_SECRET_TEXT];
    delivery_secret_new(s1);
    delivery_secret_new(s2);
    CHECK(strncmp(s1, "whsec_", 6) == 0 && strlen(s1) == 6 + 32);
    CHECK(strcmp(s1, s2) != 0);
}

TEST(hex_hmac_signature_vector)
{
    /* RFC 4231, test case 2: the key is the secret's text as it is */
    static const char MSG[] = "what do ya want for nothing?";
    struct slice msg = {MSG, sizeof MSG - 1};
    struct buf b;
    buf_init(&b);
    delivery_sign_hex(&b, "Jefe", msg);
    ASSERT_STR(b.ptr, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    delivery_sign_hex(&b, "Jefe", msg); /* a second secret's follows, as an HTTP list */
    ASSERT_STR(b.ptr, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843, "
                      "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    buf_reset(&b);
    /* RFC 4231, test case 1: a 20-byte key of 0x0b */
    static const char DATA[] = "Hi There";
    delivery_sign_hex(&b, "\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b"
                          "\x0b\x0b\x0b\x0b", (struct slice){DATA, sizeof DATA - 1});
    buf_addc(&b, '\0');
    ASSERT_STR(b.ptr, "sha256=b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    buf_fini(&b);
}

TEST(a_hex_hmac_post_carries_one_signature_header_and_the_callers_headers)
{
    static const int STATUSES[] = {503};
    struct rcv r;
    rcv_start(&r, STATUSES, 1);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", r.port);
    static const char BODY[] = "{\"type\":\"x\",\"n\":1}";
    static const char SECRET[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    static const char OLD[] = "whsec_b2xkIG9uZSBzdGlsbCBzaWduaW5nIGZvciBub3c=";
    const char *headers[] = {"X-Id: m-1", "X-Try: 1"};
    struct delivery_request rq = {.url = url, .allow = "127.0.0.1",
                                  .body = {BODY, sizeof BODY - 1}, .headers = headers,
                                  .nheaders = 2, .signing = DELIVERY_HMAC_HEX,
                                  .signature_header = "X-Sig", .secret = SECRET};
    struct delivery_result res;
    delivery_post(&rq, &res); /* answered 503: a failure to retry */
    CHECK(!res.ok && res.retry);
    ASSERT_EQ(res.status, 503);
    ASSERT_STR(res.error, "HTTP 503");
    rq.old_secret = OLD; /* a rotation's grace: both sign */
    delivery_post(&rq, &res);
    CHECK(res.ok && !res.retry && res.error[0] == '\0');
    ASSERT_EQ(res.status, 200);
    CHECK(rcv_wait(&r, 2, 1000));
    struct buf want;
    buf_init(&want);
    char v[512];
    for (size_t i = 0; i < 2; i++) {
        const char *req = r.req[i];
        ASSERT_STR(rcv_body(req), BODY);
        CHECK(strncmp(req, "POST /hook HTTP/1.1\r\n", 21) == 0);
        ASSERT_STR(rcv_header(req, "Content-Type", v, sizeof v), "application/json");
        ASSERT_STR(rcv_header(req, "X-Id", v, sizeof v), "m-1");
        ASSERT_STR(rcv_header(req, "X-Try", v, sizeof v), "1");
        ASSERT_EQ(rcv_header_count(req, "X-Sig"), 1);
        CHECK(!rcv_header(req, "webhook-id", v, sizeof v)); /* nothing of the other scheme */
        CHECK(!rcv_header(req, "webhook-signature", v, sizeof v));
        buf_reset(&want);
        delivery_sign_hex(&want, SECRET, (struct slice){BODY, sizeof BODY - 1});
        if (i == 1) {
            delivery_sign_hex(&want, OLD, (struct slice){BODY, sizeof BODY - 1});
        }
        buf_addc(&want, '\0');
        ASSERT_STR(rcv_header(req, "X-Sig", v, sizeof v), want.ptr);
    }
    buf_fini(&want);
    rcv_stop(&r);
}

TEST(backoff_doubles_then_stops_doubling)
{
    ASSERT_EQ(delivery_backoff_ms(1000, 1), 1000);
    ASSERT_EQ(delivery_backoff_ms(1000, 2), 2000);
    ASSERT_EQ(delivery_backoff_ms(1000, 4), 8000);
    ASSERT_EQ(delivery_backoff_ms(10, 17), 10ull << 16);
    ASSERT_EQ(delivery_backoff_ms(10, 40), 10ull << 16);
    ASSERT_EQ(delivery_backoff_ms(3600000, 20), 3600000ull << 16); /* no 32-bit overflow */
}

TEST(urls_to_private_addresses_are_refused_unless_allowed)
{
    char why[200];
    ASSERT_EQ(delivery_check_url(NULL, "http://10.0.0.1/x", why, sizeof why), ERR_DENIED);
    CHECK(strstr(why, "10.0.0.1") != NULL);
    ASSERT_EQ(delivery_check_url(NULL, "http://127.0.0.1:8080/", why, sizeof why), ERR_DENIED);
    ASSERT_EQ(delivery_check_url(NULL, "https://[::1]/", why, sizeof why), ERR_DENIED);
    ASSERT_EQ(delivery_check_url(NULL, "http://[::ffff:192.168.1.1]/", why, sizeof why),
              ERR_DENIED);
    ASSERT_EQ(delivery_check_url(NULL, "http://169.254.169.254/", why, sizeof why), ERR_DENIED);
    ASSERT_EQ(delivery_check_url(NULL, "http://100.64.0.1/", why, sizeof why), ERR_DENIED);
    /* IPv6 forms that carry an IPv4 address are judged by it */
    ASSERT_EQ(delivery_check_url(NULL, "http://[::10.0.0.1]/", why, sizeof why), ERR_DENIED);
    ASSERT_EQ(delivery_check_url(NULL, "http://[64:ff9b::7f00:1]/", why, sizeof why),
              ERR_DENIED);
    ASSERT_EQ(delivery_check_url(NULL, "http://[2002:c0a8:0101::1]/", why, sizeof why),
              ERR_DENIED);
    ASSERT_EQ(delivery_check_url(NULL, "http://[64:ff9b::5db8:d822]/", why, sizeof why), 0);
    ASSERT_EQ(delivery_check_url(NULL, "http://93.184.216.34/", why, sizeof why), 0);
    ASSERT_EQ(delivery_check_url("a.test,127.0.0.1", "http://127.0.0.1/", why, sizeof why), 0);
    ASSERT_EQ(delivery_check_url("*", "http://10.1.2.3/", why, sizeof why), 0);
    ASSERT_EQ(delivery_check_url(NULL, "ftp://93.184.216.34/", why, sizeof why), ERR_INVALID);
    ASSERT_EQ(delivery_check_url(NULL, "not a url", why, sizeof why), ERR_INVALID);
    CHECK(delivery_host_allowed("x.test,A.Test", "https://a.test:8443/p"));
    CHECK(!delivery_host_allowed("x.test", "https://a.test/p"));
    CHECK(!delivery_host_allowed(NULL, "https://a.test/p"));
}

TEST(a_post_to_a_refused_address_fails_without_connecting)
{
    static const char BODY[] = "{\"events\":[]}";
    const char *headers[] = {"X-Test: 1"};
    struct delivery_request rq = {.url = "http://127.0.0.1:9/hook",
                                  .body = {BODY, sizeof BODY - 1}, .headers = headers,
                                  .nheaders = 1,
                                  .signing = DELIVERY_STANDARD_WEBHOOKS, .msg_id = "m",
                                  .secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"};
    struct delivery_result res;
    delivery_post(&rq, &res);
    ASSERT_EQ(res.status, 0);
    CHECK(!res.ok && res.retry);
    ASSERT_STR(res.error, "connection refused or reset, or a refused address");
}
