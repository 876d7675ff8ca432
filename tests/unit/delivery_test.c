/* delivery: Standard Webhooks signatures, backoff, the address policy on literal addresses
 * (no DNS lookups), and a POST to a refused address. */
#include <string.h>

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
