/*
 * coord/server.c - the coordinator's TCP endpoint: accepting connections, reading frames,
 * dispatching decoded envelopes, and writing with a per-client cap.
 *
 * Reading: libuv hands us a fresh 64 KiB buffer per read; its bytes go through the client's
 * incremental frame reader (proto/frame.h). A frame over 16 MiB, bytes that are not an
 * Envelope, an unknown message type or a message out of order get an Error frame and the
 * connection closed; nothing a peer sends can stop the loop.
 *
 * Writing: every frame is a refcounted struct melbo_frame_buf; a write request holds one
 * reference and drops it in its callback (also on UV_ECANCELED after a close). Before queueing,
 * the client's unsent bytes (uv_stream_get_write_queue_size) are compared with the cap: a client
 * over it is told ERROR_SLOW_CONSUMER and disconnected, so memory never grows without bound.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "coord/coord.h"
#include "proto/conn.h"

struct write_req {
    uv_write_t req;                  // first: the request is the bundle
    struct melbo_frame_buf *fb;
};

struct melbo_frame_buf *melbo_frame_buf_encode(const Melbo__Envelope *env) {
    uint8_t *mem;
    size_t len;
    if (melbo_wire_encode(env, sizeof(struct melbo_frame_buf), &mem, &len) != 0)
        return NULL;
    struct melbo_frame_buf *fb = (struct melbo_frame_buf *)mem;
    fb->refs = 1;
    fb->len = len;
    return fb;
}

void melbo_frame_buf_unref(struct melbo_frame_buf *fb) {
    if (fb && --fb->refs == 0)
        free(fb);
}

size_t melbo_client_queued(const struct melbo_client *cl) {
    return uv_stream_get_write_queue_size((const uv_stream_t *)&cl->tcp);
}

static void on_close(uv_handle_t *h) {
    struct melbo_client *cl = (struct melbo_client *)h;
    struct melbo_coord *co = cl->co;
    if (cl->linked) {
        if (cl->prev)
            cl->prev->next = cl->next;
        else
            co->clients = cl->next;
        if (cl->next)
            cl->next->prev = cl->prev;
        co->n_clients--;
    }
    melbo_frame_reader_free(&cl->rd);
    free(cl);
}

void melbo_coord_sweep_clients(struct melbo_coord *co) {
    double now = melbo_coord_now();
    for (struct melbo_client *cl = co->clients; cl; cl = cl->next)
        if (cl->closing && now - cl->closed_at > 5.0 && !uv_is_closing((uv_handle_t *)&cl->tcp))
            uv_close((uv_handle_t *)&cl->tcp, on_close);  // a peer that never read its error
}

static void after_write(uv_write_t *req, int status) {
    struct write_req *wr = (struct write_req *)req;
    struct melbo_client *cl = (struct melbo_client *)req->handle;  // freed only after us
    melbo_frame_buf_unref(wr->fb);
    free(wr);
    if (status < 0 || cl->closing)
        return;
    /* Below the low-water mark again: lagging watches and fetches continue. */
    if (melbo_client_queued(cl) < MELBO_COORD_LOW_WATER) {
        for (struct melbo_watch *w = cl->watches; w; w = w->next_in_client) {
            if (w->next <= w->job->last_event) {
                melbo_watch_pump(w);
                break;  // pump may drop watches; the next write callback continues
            }
        }
        if (!cl->closing && cl->fetch)
            melbo_coord_fetch_pump(cl);
    }
}

static int write_frame(struct melbo_client *cl, struct melbo_frame_buf *fb) {
    struct write_req *wr = malloc(sizeof *wr);
    if (wr == NULL)
        return MELBO_ENOMEM;
    fb->refs++;
    wr->fb = fb;
    uv_buf_t b = uv_buf_init((char *)fb->data, (unsigned)fb->len);
    int r = uv_write(&wr->req, (uv_stream_t *)&cl->tcp, &b, 1, after_write);
    if (r < 0) {  // the callback will not run
        melbo_frame_buf_unref(fb);
        free(wr);
    }
    return r;
}

int melbo_client_send_frame(struct melbo_client *cl, struct melbo_frame_buf *fb) {
    if (cl->closing)
        return MELBO_ESTATE;
    if (melbo_client_queued(cl) > cl->co->client_cap) {
        melbo_log(MELBO_LOG_WARN, "coord: %s cannot keep up (%zu bytes queued); disconnecting",
                  cl->peer, melbo_client_queued(cl));
        melbo_client_error(cl, 0, MELBO__ERROR_CODE__ERROR_SLOW_CONSUMER, 1,
                           "you fell more than %zu bytes behind; reconnect and watch from your "
                           "last event number",
                           cl->co->client_cap);
        return MELBO_ERANGE;
    }
    int r = write_frame(cl, fb);
    if (r < 0)
        melbo_client_close(cl);
    return r;
}

int melbo_client_send(struct melbo_client *cl, const Melbo__Envelope *env) {
    struct melbo_frame_buf *fb = melbo_frame_buf_encode(env);
    if (fb == NULL) {
        melbo_client_close(cl);
        return MELBO_ENOMEM;
    }
    int r = melbo_client_send_frame(cl, fb);
    melbo_frame_buf_unref(fb);
    return r;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    if (!uv_is_closing((uv_handle_t *)req->handle))
        uv_close((uv_handle_t *)req->handle, on_close);
    free(req);
}

void melbo_client_error(struct melbo_client *cl, uint64_t id, int code, int close_after,
                        const char *fmt, ...) {
    if (cl->closing)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    Melbo__Error e = MELBO__ERROR__INIT;
    e.has_code = 1;
    e.code = code;
    e.message = msg;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT;
    env.has_id = id != 0;
    env.id = id;
    env.body_case = MELBO__ENVELOPE__BODY_ERROR;
    env.error = &e;
    struct melbo_frame_buf *fb = melbo_frame_buf_encode(&env);
    if (fb) {
        write_frame(cl, fb);  // past the cap on purpose: the error is small and last
        melbo_frame_buf_unref(fb);
    }
    if (!close_after)
        return;
    melbo_log(MELBO_LOG_INFO, "coord: closing %s: %s", cl->peer, msg);
    /* Graceful: the error is flushed before the close (a peer that reads nothing is closed by
     * uv_shutdown's failure or stays half-closed with nothing more queued). */
    melbo_client_close(cl);
}

void melbo_client_close(struct melbo_client *cl) {
    if (cl->closing)
        return;
    cl->closing = 1;
    uv_read_stop((uv_stream_t *)&cl->tcp);
    melbo_watch_drop_client(cl);
    if (cl->kind == MELBO_CLIENT_RANK)
        melbo_coord_rank_gone(cl);
    if (cl->fetch) {
        fclose(cl->fetch);
        cl->fetch = NULL;
    }
    if (cl->up) {
        fclose(cl->up);
        cl->up = NULL;
        remove(cl->up_path);
    }
    cl->closed_at = melbo_coord_now();
    uv_shutdown_t *sd = malloc(sizeof *sd);
    if (sd == NULL || uv_shutdown(sd, (uv_stream_t *)&cl->tcp, on_shutdown) != 0) {
        free(sd);
        uv_close((uv_handle_t *)&cl->tcp, on_close);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    static char slab[65536];  // one loop thread: the bytes are copied into the reader at once
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(slab, sizeof slab);
}

static void dispatch(struct melbo_client *cl, const Melbo__Envelope *env) {
    if (cl->kind == MELBO_CLIENT_NEW) {
        if (env->body_case == MELBO__ENVELOPE__BODY_RANK_HELLO)
            melbo_coord_rank_hello(cl, env);
        else
            melbo_coord_on_client_message(cl, env);  // hello, or an error
    } else if (cl->kind == MELBO_CLIENT_RANK) {
        melbo_coord_on_rank_message(cl, env);
    } else {
        melbo_coord_on_client_message(cl, env);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    struct melbo_client *cl = (struct melbo_client *)s;
    if (nread == 0 || cl->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            melbo_log(MELBO_LOG_DEBUG, "coord: %s: %s", cl->peer, uv_strerror((int)nread));
        melbo_client_close(cl);
        return;
    }
    if (melbo_frame_reader_feed(&cl->rd, buf->base, (size_t)nread) != 0) {
        melbo_client_error(cl, 0, MELBO__ERROR_CODE__ERROR_INTERNAL, 1, "out of memory");
        return;
    }
    cl->acked_in_read = 0;
    for (;;) {
        const uint8_t *p;
        size_t n;
        int r = melbo_frame_reader_next(&cl->rd, &p, &n);
        if (r == 0)
            break;
        if (r < 0) {
            melbo_client_error(cl, 0, MELBO__ERROR_CODE__ERROR_TOO_LARGE, 1,
                               "frame longer than %u bytes refused", MELBO_FRAME_MAX);
            return;
        }
        Melbo__Envelope *env = melbo_wire_decode(p, n);
        if (env == NULL) {
            melbo_client_error(cl, 0, MELBO__ERROR_CODE__ERROR_PROTOCOL, 1,
                               "malformed message: %zu bytes that are not a melbo.Envelope with a "
                               "known body",
                               n);
            return;
        }
        dispatch(cl, env);
        melbo__envelope__free_unpacked(env, NULL);
        if (cl->closing)
            return;
    }
    if (cl->kind == MELBO_CLIENT_RANK)
        melbo_coord_rank_after_read(cl);
}

static void on_connection(uv_stream_t *server, int status) {
    struct melbo_coord *co = server->data;
    if (status < 0) {
        melbo_log(MELBO_LOG_WARN, "coord: accept: %s", uv_strerror(status));
        return;
    }
    struct melbo_client *cl = calloc(1, sizeof *cl);
    if (cl == NULL)
        return;
    cl->co = co;
    melbo_frame_reader_init(&cl->rd, MELBO_FRAME_MAX);
    uv_tcp_init(co->loop, &cl->tcp);
    cl->tcp.data = cl;
    if (uv_accept(server, (uv_stream_t *)&cl->tcp) != 0) {
        uv_close((uv_handle_t *)&cl->tcp, on_close);
        return;
    }
    if (co->n_clients >= MELBO_COORD_MAX_CLIENTS) {
        melbo_log(MELBO_LOG_WARN, "coord: too many connections; refusing one");
        uv_close((uv_handle_t *)&cl->tcp, on_close);
        return;
    }
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    snprintf(cl->peer, sizeof cl->peer, "peer");
    if (uv_tcp_getpeername(&cl->tcp, (struct sockaddr *)&ss, &sl) == 0 &&
        ss.ss_family == AF_INET) {
        char ip[32];
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
        snprintf(cl->peer, sizeof cl->peer, "%s:%d", ip,
                 ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
    uv_tcp_nodelay(&cl->tcp, 1);
    cl->next = co->clients;
    if (co->clients)
        co->clients->prev = cl;
    co->clients = cl;
    co->n_clients++;
    cl->linked = 1;
    uv_read_start((uv_stream_t *)&cl->tcp, on_alloc, on_read);
}

int melbo_coord_listen(struct melbo_coord *co, const char *addr, struct melbo_err *err) {
    char host[128];
    int port;
    struct sockaddr_storage sa;
    if (melbo_addr_split(addr, host, sizeof host, &port) != 0)
        return melbo_err_set(err, MELBO_EINVAL, "--listen '%s': expected HOST:PORT", addr);
    int r = uv_ip4_addr(host, port, (struct sockaddr_in *)&sa);
    if (r != 0)
        r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa);
    if (r != 0)
        return melbo_err_set(err, MELBO_EINVAL, "--listen '%s': not an IP address", addr);
    uv_tcp_init(co->loop, &co->listener);
    co->listener.data = co;
    r = uv_tcp_bind(&co->listener, (struct sockaddr *)&sa, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&co->listener, 512, on_connection);
    if (r != 0)
        return melbo_err_set(err, r, "cannot listen on %s: %s", addr, uv_strerror(r));
    int sl = sizeof sa;
    uv_tcp_getsockname(&co->listener, (struct sockaddr *)&sa, &sl);
    char ip[64];
    if (sa.ss_family == AF_INET) {
        uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof ip);
        snprintf(co->address, sizeof co->address, "%s:%d", ip,
                 ntohs(((struct sockaddr_in *)&sa)->sin_port));
    } else {
        uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof ip);
        snprintf(co->address, sizeof co->address, "[%s]:%d", ip,
                 ntohs(((struct sockaddr_in6 *)&sa)->sin6_port));
    }
    return 0;
}

void melbo_coord_close_all(struct melbo_coord *co) {
    for (struct melbo_client *cl = co->clients; cl; cl = cl->next) {
        melbo_client_close(cl);
        if (!uv_is_closing((uv_handle_t *)&cl->tcp))
            uv_close((uv_handle_t *)&cl->tcp, on_close);
    }
}
