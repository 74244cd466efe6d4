/*
 * coord/tls.c - the coordinator's key, certificate and TLS server context (coord/tls.h).
 */
#include "coord/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h" // defines: melbo_path_join
#include "proto/conn.h"  // defines: melbo_cert_fingerprint

/* The last OpenSSL error's reason (the queue is cleared). */
static const char *ossl_reason(void) {
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "OpenSSL error";
}

/* A new EC P-256 key and a self-signed certificate for it (CN melbo-coord, ten years). */
static int make_cert(EVP_PKEY **key_out, X509 **crt_out) {
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *crt = X509_new();
    if (key == NULL || crt == NULL)
        goto fail;
    unsigned char serial[16];
    FILE *ur = fopen("/dev/urandom", "rb");
    if (ur == NULL || fread(serial, 1, sizeof serial, ur) != sizeof serial) {
        if (ur)
            fclose(ur);
        goto fail;
    }
    fclose(ur);
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    int ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(crt)) != NULL;
    BN_free(bn);
    X509_NAME *name = X509_get_subject_name(crt);
    ok = ok && X509_set_version(crt, 2) && X509_gmtime_adj(X509_getm_notBefore(crt), -3600) &&
         X509_gmtime_adj(X509_getm_notAfter(crt), 10L * 365 * 24 * 3600) &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"melbo-coord",
                                    -1, -1, 0) &&
         X509_set_issuer_name(crt, name) && X509_set_pubkey(crt, key) &&
         X509_sign(crt, key, EVP_sha256()) > 0;
    if (!ok)
        goto fail;
    *key_out = key;
    *crt_out = crt;
    return 0;
fail:
    EVP_PKEY_free(key);
    X509_free(crt);
    return -1;
}

int melbo_tls_ensure(const char *state_dir, char *fp, size_t n, int *created,
                     struct melbo_err *err) {
    char kp[4096], cp[4096];
    melbo_path_join(kp, sizeof kp, state_dir, "tls.key");
    melbo_path_join(cp, sizeof cp, state_dir, "tls.crt");
    *created = 0;
    X509 *crt = NULL;
    if (access(kp, F_OK) != 0) {
        EVP_PKEY *key = NULL;
        if (make_cert(&key, &crt) != 0)
            return melbo_err_set(err, MELBO_EIO, "cannot make a TLS key: %s", ossl_reason());
        int fd = open(kp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        FILE *kf = fd >= 0 ? fdopen(fd, "w") : NULL;
        int ok = kf && PEM_write_PrivateKey(kf, key, NULL, NULL, 0, NULL, NULL);
        ok = kf && fclose(kf) == 0 && ok;
        if (kf == NULL && fd >= 0)
            close(fd);
        EVP_PKEY_free(key);
        FILE *cf = ok ? fopen(cp, "w") : NULL;
        ok = cf && PEM_write_X509(cf, crt);
        ok = cf && fclose(cf) == 0 && ok;
        if (!ok) {
            X509_free(crt);
            return melbo_err_set(err, MELBO_EIO, "cannot write %s and %s: %s", kp, cp,
                                 strerror(errno));
        }
        *created = 1;
    } else {
        FILE *cf = fopen(cp, "r");
        crt = cf ? PEM_read_X509(cf, NULL, NULL, NULL) : NULL;
        if (cf)
            fclose(cf);
        if (crt == NULL)
            return melbo_err_set(err, MELBO_EIO,
                                 "cannot read the certificate %s (tls.key exists; "
                                 "remove both to make new ones)",
                                 cp);
    }
    int r = melbo_cert_fingerprint(crt, fp, n);
    X509_free(crt);
    return r == 0 ? 0 : melbo_err_set(err, MELBO_EIO, "cannot hash the certificate %s", cp);
}

void *melbo_tls_server_ctx(const char *state_dir, struct melbo_err *err) {
    char kp[4096], cp[4096];
    melbo_path_join(kp, sizeof kp, state_dir, "tls.key");
    melbo_path_join(cp, sizeof cp, state_dir, "tls.crt");
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        melbo_err_set(err, MELBO_ENOMEM, "cannot create a TLS context: %s", ossl_reason());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_num_tickets(ctx, 0); // no resumption: nothing to store, fewer bytes
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_file(ctx, cp, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, kp, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        melbo_err_set(err, MELBO_EIO, "cannot load %s and %s: %s", cp, kp, ossl_reason());
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

void melbo_tls_ctx_free(void *ctx) {
    SSL_CTX_free(ctx);
}

int melbo_tls_is_loopback(const char *host) {
    return !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strcmp(host, "[::1]") ||
           !strcmp(host, "localhost");
}
