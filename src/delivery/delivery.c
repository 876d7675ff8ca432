/* Outbound HTTP deliveries (delivery.h) with libcurl: one easy handle per POST (deliveries
 * are rare next to requests, and a handle per attempt keeps no connection to a receiver that
 * may have moved), the address policy in curl's socket opener, the signature headers built
 * here. Invariant: no socket is opened to an address the policy refuses. */
#include "delivery/delivery.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "util/assert.h"
#include "util/errors.h"
#include "util/timeutil.h"

/* ---- addresses: never a private one unless allowed ---- */

static bool v4_public(uint32_t a)
{
    uint8_t b0 = a >> 24, b1 = (a >> 16) & 0xff;
    return !(b0 == 0 || b0 == 10 || b0 == 127 || (b0 == 100 && (b1 & 0xc0) == 64) ||
             (b0 == 169 && b1 == 254) || (b0 == 172 && (b1 & 0xf0) == 16) ||
             (b0 == 192 && b1 == 168) || b0 >= 224);
}

static uint32_t v4_at(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static bool addr_public(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        return v4_public(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    }
    if (sa->sa_family != AF_INET6) {
        return false;
    }
    const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    /* IPv6 forms that carry an IPv4 address reach that address: judge it */
    static const uint8_t MAPPED[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t COMPAT[12] = {0};                                  /* ::a.b.c.d */
    static const uint8_t NAT64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (!memcmp(b, MAPPED, 12) || !memcmp(b, NAT64, 12) ||
        (!memcmp(b, COMPAT, 12) && v4_at(b + 12) > 1)) { /* (:: and ::1 are below) */
        return v4_public(v4_at(b + 12));
    }
    if (b[0] == 0x20 && b[1] == 0x02) { /* 6to4 2002:a.b.c.d::/48 */
        return v4_public(v4_at(b + 2));
    }
    bool zero_prefix = true;
    for (int i = 0; i < 15; i++) {
        zero_prefix &= b[i] == 0;
    }
    return !(zero_prefix || (b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) ||
             b[0] == 0xff);
}

/* True when the allow list names what (a host's text or an address's text), or is "*". */
static bool allowed(const char *list, const char *what)
{
    size_t n = strlen(what);
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if ((len == n && strncasecmp(p, what, n) == 0) || (len == 1 && *p == '*')) {
            return true;
        }
        p = end ? end + 1 : p + len;
    }
    return false;
}

static bool sockaddr_ok(const char *allow, const struct sockaddr *sa)
{
    char text[INET6_ADDRSTRLEN] = "";
    const void *a = sa->sa_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    inet_ntop(sa->sa_family, a, text, sizeof text);
    return addr_public(sa) || allowed(allow, text);
}

/* The host of an http(s) URL into host (without brackets). Returns 0 or ERR_INVALID. */
static int url_host(const char *url, char *host, size_t n)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *h = NULL;
    int rc = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
                     curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
                     curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK &&
                     (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) && h[0]
                 ? 0
                 : ERR_INVALID;
    if (!rc) {
        size_t len = strlen(h);
        if (h[0] == '[' && len > 2) {
            snprintf(host, n, "%.*s", (int)(len - 2), h + 1);
        } else {
            snprintf(host, n, "%s", h);
        }
    }
    curl_free(scheme);
    curl_free(h);
    curl_url_cleanup(u);
    return rc;
}

bool delivery_host_allowed(const char *allow, const char *url)
{
    char host[256];
    return url_host(url, host, sizeof host) == 0 && allowed(allow, host);
}

int delivery_check_url(const char *allow, const char *url, char *why, size_t why_len)
{
    char host[256];
    if (strlen(url) > DELIVERY_URL_BYTES || url_host(url, host, sizeof host) != 0) {
        snprintf(why, why_len, "not an http(s) URL with a host");
        return ERR_INVALID;
    }
    if (allowed(allow, host)) {
        return 0;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0) {
        snprintf(why, why_len, "the host %s does not resolve", host);
        return ERR_INVALID;
    }
    int rc = 0;
    for (struct addrinfo *ai = res; ai && !rc; ai = ai->ai_next) {
        if (!sockaddr_ok(allow, ai->ai_addr)) {
            snprintf(why, why_len, "%s is a loopback, private or link-local address (allow it "
                     "with --webhook-allow)", host);
            rc = ERR_DENIED;
        }
    }
    freeaddrinfo(res);
    return rc;
}

/* ---- secrets and signatures ---- */

void delivery_secret_new(char out[DELIVERY_SECRET_TEXT])
{
    unsigned char raw[DELIVERY_SECRET_BYTES];
    RAND_bytes(raw, sizeof raw);
    memcpy(out, "whsec_", 6);
    EVP_EncodeBlock((unsigned char *)out + 6, raw, sizeof raw);
}

void delivery_sign(struct buf *out, const char *secret, struct slice msg)
{
    unsigned char key[64], mac[32], b64[64];
    int klen = EVP_DecodeBlock(key, (const unsigned char *)secret + 6, (int)strlen(secret + 6));
    klen = klen > 0 ? DELIVERY_SECRET_BYTES : 0; /* DecodeBlock counts the padding */
    unsigned int mlen = 0;
    HMAC(EVP_sha256(), key, klen, (const unsigned char *)msg.ptr, msg.len, mac, &mlen);
    EVP_EncodeBlock(b64, mac, (int)mlen);
    buf_printf(out, "%sv1,%s", out->len ? " " : "", b64);
}

void delivery_sign_hex(struct buf *out, const char *secret, struct slice msg)
{
    static const char HEX[] = "0123456789abcdef";
    unsigned char mac[32];
    unsigned int mlen = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg.ptr, msg.len,
         mac, &mlen);
    char hex[2 * sizeof mac + 1];
    for (unsigned int i = 0; i < mlen; i++) {
        hex[2 * i] = HEX[mac[i] >> 4];
        hex[2 * i + 1] = HEX[mac[i] & 15];
    }
    hex[2 * mlen] = '\0';
    buf_printf(out, "%ssha256=%s", out->len ? ", " : "", hex);
}

/* ---- one POST ---- */

uint64_t delivery_backoff_ms(uint32_t base_ms, uint32_t attempt)
{
    uint32_t doublings = attempt > 0 ? attempt - 1 : 0;
    if (doublings > DELIVERY_BACKOFF_DOUBLINGS) {
        doublings = DELIVERY_BACKOFF_DOUBLINGS;
    }
    return (uint64_t)base_ms << doublings;
}

uint64_t delivery_backoff_factor_ms(uint32_t base_ms, uint32_t factor, uint32_t attempt)
{
    if (factor < 2 || factor > 10) {
        factor = 2;
    }
    uint64_t ms = base_ms;
    for (uint32_t i = 1; i < attempt && ms < DELIVERY_BACKOFF_MAX_MS; i++) {
        ms *= factor;
    }
    return ms < DELIVERY_BACKOFF_MAX_MS ? ms : DELIVERY_BACKOFF_MAX_MS;
}

/* curl's socket opener: refuses a connection to an address the policy refuses (the name
 * could resolve differently than when the URL was checked). */
static curl_socket_t open_checked(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)purpose;
    const struct delivery_request *rq = arg;
    if (!sockaddr_ok(rq->allow, &a->addr)) {
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

/* curl's progress callback: abandons the transfer once the caller's cancel flag is set. */
static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    const bool *cancel = arg;
    return cancel && __atomic_load_n(cancel, __ATOMIC_ACQUIRE) ? 1 : 0;
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* Appends the Standard Webhooks headers to hl: id, timestamp and one signature per secret
 * over "id.timestamp.body". */
static struct curl_slist *add_standard_webhooks(struct curl_slist *hl,
                                                const struct delivery_request *rq)
{
    int64_t ts = time_now_us() / 1000000;
    struct buf msg, line;
    buf_init(&msg);
    buf_init(&line);
    buf_printf(&msg, "%s.%lld.", rq->msg_id, (long long)ts);
    buf_add(&msg, rq->body.ptr, rq->body.len);
    struct slice m = {msg.ptr, msg.len};
    buf_printf(&line, "webhook-id: %s", rq->msg_id);
    hl = curl_slist_append(hl, line.ptr);
    buf_reset(&line);
    buf_printf(&line, "webhook-timestamp: %lld", (long long)ts);
    hl = curl_slist_append(hl, line.ptr);
    buf_reset(&line);
    buf_adds(&line, "webhook-signature: ");
    struct buf sig;
    buf_init(&sig);
    delivery_sign(&sig, rq->secret, m);
    if (rq->old_secret && rq->old_secret[0]) {
        delivery_sign(&sig, rq->old_secret, m);
    }
    buf_add(&line, sig.ptr, sig.len);
    hl = curl_slist_append(hl, line.ptr);
    buf_fini(&sig);
    buf_fini(&line);
    buf_fini(&msg);
    return hl;
}

/* Appends "<signature_header>: sha256=<hex>[, sha256=<hex of the old secret>]" to hl. */
static struct curl_slist *add_hmac_hex(struct curl_slist *hl, const struct delivery_request *rq)
{
    ASSERT(rq->signature_header && rq->signature_header[0]);
    struct buf sig, line;
    buf_init(&sig);
    buf_init(&line);
    delivery_sign_hex(&sig, rq->secret, rq->body);
    if (rq->old_secret && rq->old_secret[0]) {
        delivery_sign_hex(&sig, rq->old_secret, rq->body);
    }
    buf_printf(&line, "%s: ", rq->signature_header);
    buf_add(&line, sig.ptr, sig.len);
    hl = curl_slist_append(hl, line.ptr);
    buf_fini(&line);
    buf_fini(&sig);
    return hl;
}

/* Appends the signature headers of rq's scheme to hl. */
static struct curl_slist *add_signature(struct curl_slist *hl, const struct delivery_request *rq)
{
    switch (rq->signing) {
    case DELIVERY_STANDARD_WEBHOOKS:
        return add_standard_webhooks(hl, rq);
    case DELIVERY_HMAC_HEX:
        return add_hmac_hex(hl, rq);
    case DELIVERY_UNSIGNED:
        break;
    }
    return hl;
}

static struct curl_slist *make_headers(const struct delivery_request *rq)
{
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    hl = add_signature(hl, rq);
    for (size_t i = 0; i < rq->nheaders; i++) {
        hl = curl_slist_append(hl, rq->headers[i]);
    }
    return curl_slist_append(hl, "Expect:"); /* no 100-continue round trip */
}

static void set_options(CURL *h, const struct delivery_request *rq, struct curl_slist *hl)
{
    curl_easy_setopt(h, CURLOPT_URL, rq->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    /* never through a proxy from the environment (http_proxy, ALL_PROXY): the address policy
       would then judge the proxy's address, not the subscriber's */
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)DELIVERY_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)DELIVERY_CONNECT_TIMEOUT_S);
    if (!delivery_host_allowed(rq->allow, rq->url)) {
        curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_checked);
        curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, (void *)rq);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body.ptr);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)rq->body.len);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "annals-webhooks");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)rq->cancel);
}

void delivery_post(const struct delivery_request *rq, struct delivery_result *out)
{
    *out = (struct delivery_result){0};
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(out->error, sizeof out->error, "cannot start an HTTP client");
        out->retry = true;
        return;
    }
    struct curl_slist *hl = make_headers(rq);
    set_options(h, rq, hl);
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    if (cc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    } else {
        snprintf(out->error, sizeof out->error, "%s",
                 cc == CURLE_COULDNT_CONNECT || cc == CURLE_RECV_ERROR
                     ? "connection refused or reset, or a refused address"
                     : curl_easy_strerror(cc));
    }
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    out->status = (int)status;
    out->ok = status >= 200 && status < 300;
    out->retry = !out->ok;
    if (!out->ok && !out->error[0]) {
        snprintf(out->error, sizeof out->error, "HTTP %d", out->status);
    }
}

bool delivery_header_ok(const char *name, const char *value)
{
    static const char *const OURS[] = {"content-type", "content-length", "host",
                                       "webhook-id", "webhook-timestamp", "webhook-signature",
                                       "x-annals-attempt", "transfer-encoding", "expect",
                                       "connection", "user-agent"};
    if (!name[0] || strlen(name) + strlen(value) + 2 > DELIVERY_HEADER_BYTES) {
        return false;
    }
    for (const char *p = name; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *p))) {
            return false;
        }
    }
    for (size_t i = 0; i < sizeof OURS / sizeof OURS[0]; i++) {
        if (strcasecmp(name, OURS[i]) == 0) {
            return false;
        }
    }
    return !strpbrk(value, "\r\n");
}
