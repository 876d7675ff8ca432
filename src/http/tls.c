/* TLS for the HTTP server (server_int.h), the only file of it that sees OpenSSL: the shared
 * server context (TLS 1.2 and later, partial writes, no renegotiation), a session per
 * connection whose handshake runs inside its first reads, and the connection's socket I/O,
 * plain or through its session, with OpenSSL's results mapped to recv/send's (WANT_READ and
 * WANT_WRITE are EAGAIN, a clean close 0, the rest EIO). Loop thread only, except
 * http_tls_setup and http_tls_free (before serving, after stopping).
 */
#include "http/server_int.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>

#include "util/errors.h"
#include "util/log.h"

/* Maps an OpenSSL result: WANT_READ/WANT_WRITE become EAGAIN, a clean close 0, the rest EIO. */
static ssize_t tls_result(struct conn *c, int r)
{
    if (r > 0) {
        return r;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    ERR_clear_error();
    if (e == SSL_ERROR_ZERO_RETURN) {
        return 0;
    }
    errno = EIO;
    return -1;
}

ssize_t http_conn_recv(struct conn *c, char *p, size_t n)
{
    if (!c->ssl) {
        return recv(c->fd, p, n, 0);
    }
    return tls_result(c, SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n));
}

ssize_t http_conn_send(struct conn *c, const char *p, size_t n)
{
    if (!c->ssl) {
        return send(c->fd, p, n, MSG_NOSIGNAL);
    }
    return tls_result(c, SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n));
}

int http_tls_setup(struct http_server *srv)
{
    srv->tls = SSL_CTX_new(TLS_server_method());
    if (!srv->tls || SSL_CTX_set_min_proto_version(srv->tls, TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(srv->tls, srv->cfg.tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(srv->tls, srv->cfg.tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(srv->tls) != 1) {
        char why[256];
        ERR_error_string_n(ERR_get_error(), why, sizeof why);
        log_error("cannot use the TLS certificate %s and key %s: %s", srv->cfg.tls_cert,
                  srv->cfg.tls_key ? srv->cfg.tls_key : "(none)", why);
        SSL_CTX_free(srv->tls);
        srv->tls = NULL;
        return ERR_IO;
    }
    SSL_CTX_set_mode(srv->tls, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                   SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(srv->tls, SSL_OP_NO_RENEGOTIATION);
    return 0;
}

void http_tls_free(struct http_server *srv)
{
    SSL_CTX_free(srv->tls);
}

void http_tls_accept(struct conn *c)
{
    if (c->loop->srv->tls) {
        c->ssl = SSL_new(c->loop->srv->tls);
        if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
            log_warn("cannot start a TLS session: out of memory?");
        } else {
            SSL_set_accept_state(c->ssl); /* the handshake runs inside the first reads */
        }
    }
}

void http_tls_close(struct conn *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl); /* best effort: the socket is non-blocking */
        SSL_free(c->ssl);
        ERR_clear_error();
    }
}
