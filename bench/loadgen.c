/*
 * loadgen: a Pusher-protocol (v7) load generator for bench/.
 *
 * One process, one thread, epoll, non-blocking sockets. It speaks only the public protocol:
 * WebSocket /app/{key}?protocol=7, pusher:subscribe (with channel auth for private- and
 * presence- channels, HMAC-SHA256 computed here), client-* events, and signed HTTP requests
 * prepared by the Python side. Received frames are counted by scanning the byte stream for a
 * marker ("bt:") without parsing JSON; every Nth delivery's nanosecond timestamp (embedded in
 * the event data by this process, CLOCK_MONOTONIC) is read to sample latency.
 *
 *   loadgen ws --port P --key K --secret S --subs N --channels C --prefix NAME
 *              [--pub-sockets M] [--publish-from subs|pubs] [--fanout K] [--port2 P2]
 *     Opens the sockets, subscribes them, prints {"event":"ready",...}, then reads commands
 *     on stdin, one a line, and answers each with one JSON line:
 *       closed WINDOW WARMUP_MS DUR_MS SAMPLE   publish with at most WINDOW deliveries in flight
 *       open RATE WARMUP_MS DUR_MS SAMPLE       publish paced at RATE deliveries/s (open loop)
 *       churn WARMUP_MS DUR_MS                  presence: unsubscribe+subscribe on each success
 *       close                                   close every socket
 *       quit
 *     With --port2 the subscribers alternate between P (even index) and P2 (odd) and the
 *     publisher sockets stay on P: a fan-out across two cluster nodes.
 *   loadgen sink --port P
 *     A trivial server (subscribe, forward client events) to measure this generator's ceiling.
 *   loadgen http --port P --req FILE --conns N --warmup-ms W --dur-ms D
 *     Sends the request in FILE over N connections, one in flight each (keep-alive when the
 *     server allows it, a new connection when it answers "Connection: close").
 *
 * Build: gcc -O2 -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- SHA-256 / HMAC */

typedef struct {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t n;
} sha256_ctx;

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(sha256_ctx *c, const uint8_t *p) {
    uint32_t w[64], a, b, d, e, f, g, h, cc, t1, t2;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3];
    e = c->h[4], f = c->h[5], g = c->h[6], h = c->h[7];
    for (int i = 0; i < 64; i++) {
        t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & cc) ^ (b & cc));
        h = g, g = f, f = e, e = d + t1, d = cc, cc = b, b = a, a = t1 + t2;
    }
    c->h[0] += a, c->h[1] += b, c->h[2] += cc, c->h[3] += d;
    c->h[4] += e, c->h[5] += f, c->h[6] += g, c->h[7] += h;
}

static void sha256_init(sha256_ctx *c) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, iv, sizeof iv);
    c->len = 0;
    c->n = 0;
}

static void sha256_update(sha256_ctx *c, const void *data, size_t len) {
    const uint8_t *p = data;
    c->len += len;
    while (len) {
        size_t k = 64 - c->n < len ? 64 - c->n : len;
        memcpy(c->buf + c->n, p, k);
        c->n += k, p += k, len -= k;
        if (c->n == 64) sha256_block(c, c->buf), c->n = 0;
    }
}

static void sha256_final(sha256_ctx *c, uint8_t out[32]) {
    uint64_t bits = c->len * 8;
    uint8_t pad = 0x80, zero = 0, l[8];
    sha256_update(c, &pad, 1);
    while (c->n != 56) sha256_update(c, &zero, 1);
    for (int i = 0; i < 8; i++) l[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(c, l, 8);
    for (int i = 0; i < 8; i++)
        out[4 * i] = c->h[i] >> 24, out[4 * i + 1] = c->h[i] >> 16, out[4 * i + 2] = c->h[i] >> 8,
                out[4 * i + 3] = c->h[i];
}

/* hex(HMAC-SHA256(key, msg)) into out (65 bytes) */
static void hmac_hex(const char *key, const char *msg, char out[65]) {
    uint8_t k[64] = {0}, ipad[64], opad[64], inner[32], mac[32];
    size_t kl = strlen(key);
    sha256_ctx c;
    if (kl > 64) {
        sha256_init(&c), sha256_update(&c, key, kl), sha256_final(&c, k);
    } else {
        memcpy(k, key, kl);
    }
    for (int i = 0; i < 64; i++) ipad[i] = k[i] ^ 0x36, opad[i] = k[i] ^ 0x5c;
    sha256_init(&c), sha256_update(&c, ipad, 64), sha256_update(&c, msg, strlen(msg));
    sha256_final(&c, inner);
    sha256_init(&c), sha256_update(&c, opad, 64), sha256_update(&c, inner, 32);
    sha256_final(&c, mac);
    for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", mac[i]);
}

/* ---------------------------------------------------------------- helpers */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

typedef struct {
    char *p;
    size_t len, cap, off;
} buf_t;

static void buf_reserve(buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    if (b->off) { /* compact first */
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off, b->off = 0;
        if (b->len + extra <= b->cap) return;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) die("out of memory");
    b->cap = cap;
}

static void buf_free(buf_t *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---------------------------------------------------------------- connections */

enum { ST_CONNECTING, ST_HANDSHAKE, ST_ESTABLISHING, ST_SUBSCRIBING, ST_READY, ST_CLOSED };

typedef struct conn {
    int fd, state, idx, is_pub;
    int pending_subs;
    int channel;      /* subscriber: its channel index */
    uint32_t events;  /* current epoll mask */
    uint8_t mask[4];
    char sid[40];
    buf_t in, out;
} conn_t;

static struct {
    int port, port2, subs, channels, pub_sockets, publish_from_pubs, fanout;
    const char *key, *secret, *prefix;
} cfg = {.channels = 1, .fanout = 1};

static int ep;
static conn_t *conns;
static int nconns;
static char *rbuf;
static const size_t RBUF = 4 << 20;

/* counters */
static long long delivered, subscribed_ok, errors, server_closed, other_frames, pings;
static long long sample_every = 0, sample_count = 0, nsamples = 0, max_samples = 4000000;
static int64_t *samples;
static int churning;
static long long joins;
static char first_error[256];

static void set_events(conn_t *c, uint32_t ev) {
    if (c->events == ev || c->fd < 0) return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
    c->events = ev;
}

static void conn_close(conn_t *c) {
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = ST_CLOSED;
    buf_free(&c->in);
    buf_free(&c->out);
}

static void conn_flush(conn_t *c) {
    while (c->out.len > c->out.off) {
        ssize_t n = write(c->fd, c->out.p + c->out.off, c->out.len - c->out.off);
        if (n < 0) {
            if (errno == EAGAIN) break;
            if (errno == EINTR) continue;
            server_closed++;
            conn_close(c);
            return;
        }
        c->out.off += n;
    }
    if (c->out.off == c->out.len) {
        c->out.off = c->out.len = 0;
        set_events(c, EPOLLIN);
    } else {
        set_events(c, EPOLLIN | EPOLLOUT);
    }
}

/* queue one masked text frame (opcode 1) or other opcode */
static void queue_frame(conn_t *c, int opcode, const char *payload, size_t len) {
    buf_reserve(&c->out, len + 14);
    uint8_t *p = (uint8_t *)c->out.p + c->out.len;
    size_t h = 0;
    p[h++] = 0x80 | opcode;
    if (len < 126) {
        p[h++] = 0x80 | len;
    } else if (len < 65536) {
        p[h++] = 0x80 | 126, p[h++] = len >> 8, p[h++] = len & 255;
    } else {
        p[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) p[h++] = (uint8_t)(len >> (8 * i));
    }
    memcpy(p + h, c->mask, 4);
    h += 4;
    for (size_t i = 0; i < len; i++) p[h + i] = payload[i] ^ c->mask[i & 3];
    c->out.len += h + len;
}

static void queue_text(conn_t *c, const char *s) { queue_frame(c, 1, s, strlen(s)); }

static void channel_name(int i, char *out, size_t n) { snprintf(out, n, "%s%d", cfg.prefix, i); }

static int is_private(const char *ch) {
    return strncmp(ch, "private-", 8) == 0 || strncmp(ch, "presence-", 9) == 0;
}

static void subscribe_frame(conn_t *c, const char *ch, char *out, size_t n) {
    char msg[512], sig[65];
    if (strncmp(ch, "presence-", 9) == 0) {
        char cd[128];
        snprintf(cd, sizeof cd, "{\"user_id\":\"u%d\",\"user_info\":{\"n\":%d}}", c->idx, c->idx);
        snprintf(msg, sizeof msg, "%s:%s:%s", c->sid, ch, cd);
        hmac_hex(cfg.secret, msg, sig);
        snprintf(out, n,
                 "{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"%s\",\"auth\":\"%s:%s\","
                 "\"channel_data\":\"{\\\"user_id\\\":\\\"u%d\\\",\\\"user_info\\\":{\\\"n\\\":%d}}\"}}",
                 ch, cfg.key, sig, c->idx, c->idx);
    } else if (is_private(ch)) {
        snprintf(msg, sizeof msg, "%s:%s", c->sid, ch);
        hmac_hex(cfg.secret, msg, sig);
        snprintf(out, n,
                 "{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"%s\",\"auth\":\"%s:%s\"}}",
                 ch, cfg.key, sig);
    } else {
        snprintf(out, n, "{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"%s\"}}", ch);
    }
}

static void send_subscribes(conn_t *c) {
    char ch[200], frame[1024];
    if (c->is_pub) {
        for (int i = 0; i < cfg.channels; i++) {
            channel_name(i, ch, sizeof ch);
            subscribe_frame(c, ch, frame, sizeof frame);
            queue_text(c, frame);
        }
        c->pending_subs = cfg.channels;
    } else {
        channel_name(c->channel, ch, sizeof ch);
        subscribe_frame(c, ch, frame, sizeof frame);
        queue_text(c, frame);
        c->pending_subs = 1;
    }
    c->state = ST_SUBSCRIBING;
}

static void churn_once(conn_t *c) {
    char ch[200], frame[1024];
    channel_name(c->channel, ch, sizeof ch);
    snprintf(frame, sizeof frame, "{\"event\":\"pusher:unsubscribe\",\"data\":{\"channel\":\"%s\"}}",
             ch);
    queue_text(c, frame);
    subscribe_frame(c, ch, frame, sizeof frame);
    queue_text(c, frame);
}

static void note_error(const char *p, size_t len) {
    errors++;
    if (!first_error[0]) {
        size_t n = len < sizeof first_error - 1 ? len : sizeof first_error - 1;
        for (size_t i = 0; i < n; i++) first_error[i] = (p[i] == '"' || p[i] == '\\') ? '\'' : p[i];
        first_error[n] = 0;
    }
}

/* the marker "bt:" of a delivery; the data is near the end of the frame, so look there first */
static const char *find_marker(const char *p, size_t len) {
    size_t stop = len > 48 ? len - 48 : 0;
    for (size_t i = len >= 3 ? len - 3 : 0; i > stop; i--)
        if (p[i] == 'b' && p[i + 1] == 't' && p[i + 2] == ':') return p + i;
    return memmem(p, len, "bt:", 3);
}

static void on_text(conn_t *c, const char *p, size_t len) {
    const char *m = find_marker(p, len);
    if (m) {
        delivered++;
        if (sample_every && ++sample_count >= sample_every) {
            sample_count = 0;
            int64_t t = strtoll(m + 3, NULL, 10);
            if (nsamples < max_samples) samples[nsamples++] = now_ns() - t;
        }
        return;
    }
    if (memmem(p, len, "subscription_succeeded", 22)) {
        subscribed_ok++;
        if (c->state == ST_SUBSCRIBING && --c->pending_subs == 0) c->state = ST_READY;
        if (churning && c->state == ST_READY) {
            joins++;
            churn_once(c);
        }
        return;
    }
    if (memmem(p, len, "connection_established", 22)) {
        const char *s = memmem(p, len, "socket_id", 9);
        if (!s) return note_error(p, len);
        s += 9;
        while (s < p + len && !(*s >= '0' && *s <= '9')) s++;
        size_t k = 0;
        while (s < p + len && k < sizeof c->sid - 1 && ((*s >= '0' && *s <= '9') || *s == '.'))
            c->sid[k++] = *s++;
        c->sid[k] = 0;
        send_subscribes(c);
        return;
    }
    if (memmem(p, len, "pusher:ping", 11)) {
        pings++;
        queue_text(c, "{\"event\":\"pusher:pong\",\"data\":{}}");
        return;
    }
    if (memmem(p, len, "error", 5)) return note_error(p, len);
    other_frames++;
}

/* parse complete frames in [p, p+len); returns bytes consumed */
static size_t parse_frames(conn_t *c, const char *p, size_t len) {
    size_t pos = 0;
    while (len - pos >= 2) {
        const uint8_t *h = (const uint8_t *)p + pos;
        int op = h[0] & 15;
        uint64_t plen = h[1] & 127;
        size_t hl = 2;
        if (plen == 126) {
            if (len - pos < 4) break;
            plen = (uint64_t)h[2] << 8 | h[3];
            hl = 4;
        } else if (plen == 127) {
            if (len - pos < 10) break;
            plen = 0;
            for (int i = 0; i < 8; i++) plen = plen << 8 | h[2 + i];
            hl = 10;
        }
        if (h[1] & 0x80) hl += 4; /* servers do not mask, but be safe */
        if (len - pos < hl + plen) break;
        const char *payload = p + pos + hl;
        if (op == 1 || op == 0) {
            on_text(c, payload, plen);
        } else if (op == 9) {
            queue_frame(c, 10, payload, plen);
        } else if (op == 8) {
            server_closed++;
            if (!first_error[0]) note_error(payload + 2 < p + len ? payload + 2 : payload,
                                            plen > 2 ? plen - 2 : 0);
            conn_close(c);
            return len;
        }
        pos += hl + plen;
        if (c->state == ST_CLOSED) return len;
    }
    return pos;
}

static void on_readable(conn_t *c) {
    for (;;) {
        size_t have = c->in.len - c->in.off;
        if (have) memcpy(rbuf, c->in.p + c->in.off, have);
        c->in.off = c->in.len = 0;
        ssize_t n = read(c->fd, rbuf + have, RBUF - have);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                if (have) buf_reserve(&c->in, have), memcpy(c->in.p, rbuf, have), c->in.len = have;
                return;
            }
            server_closed++;
            conn_close(c);
            return;
        }
        size_t len = have + n, used = 0;
        if (c->state == ST_HANDSHAKE) {
            char *end = memmem(rbuf, len, "\r\n\r\n", 4);
            if (!end) {
                buf_reserve(&c->in, len), memcpy(c->in.p, rbuf, len), c->in.len = len;
                return;
            }
            if (len < 12 || memcmp(rbuf + 9, "101", 3) != 0) {
                note_error(rbuf, end - rbuf);
                conn_close(c);
                return;
            }
            used = end + 4 - rbuf;
            c->state = ST_ESTABLISHING;
        }
        used += parse_frames(c, rbuf + used, len - used);
        if (c->state == ST_CLOSED) return;
        if (used < len) {
            buf_reserve(&c->in, len - used);
            memcpy(c->in.p, rbuf + used, len - used);
            c->in.len = len - used;
        }
        if (c->out.len > c->out.off) conn_flush(c);
        if (c->state == ST_CLOSED || (size_t)n < RBUF - have) return;
    }
}

static int open_socket(int port, int idx) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* spread source addresses over 127.0.0.2..127.0.0.61 so ports never run out */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000002 + idx % 60);
    bind(fd, (struct sockaddr *)&src, sizeof src);
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(port)};
    dst.sin_addr.s_addr = htonl(0x7f000001);
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* the server port of a ws socket: --port, or --port2 for every other subscriber */
static int conn_port(const conn_t *c) {
    return cfg.port2 && !c->is_pub && (c->idx & 1) ? cfg.port2 : cfg.port;
}

static void start_conn(conn_t *c) {
    c->fd = open_socket(conn_port(c), c->idx);
    if (c->fd < 0) {
        errors++;
        c->state = ST_CLOSED;
        return;
    }
    c->state = ST_CONNECTING;
    c->events = EPOLLOUT;
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
}

static void on_event(conn_t *c, uint32_t ev) {
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            errors++;
            conn_close(c);
            return;
        }
        char req[512];
        snprintf(req, sizeof req,
                 "GET /app/%s?protocol=7&client=bench&version=1.0 HTTP/1.1\r\n"
                 "Host: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                 cfg.key, conn_port(c));
        buf_reserve(&c->out, strlen(req));
        memcpy(c->out.p + c->out.len, req, strlen(req));
        c->out.len += strlen(req);
        c->state = ST_HANDSHAKE;
        conn_flush(c);
        return;
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
    if (c->state != ST_CLOSED && (ev & EPOLLOUT)) conn_flush(c);
}

static int poll_once(int timeout_ms) {
    struct epoll_event evs[1024];
    int n = epoll_wait(ep, evs, 1024, timeout_ms), in = 0;
    for (int i = 0; i < n; i++) {
        if (evs[i].data.ptr == NULL) in = 1; /* stdin */
        else on_event(evs[i].data.ptr, evs[i].events);
    }
    return in;
}

/* ---------------------------------------------------------------- ws mode */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(double q) {
    if (!nsamples) return -1;
    long long i = (long long)(q * (nsamples - 1) + 0.5);
    return samples[i] / 1e6;
}

static int count_ready(void) {
    int k = 0;
    for (int i = 0; i < nconns; i++) k += conns[i].state == ST_READY;
    return k;
}

static int publishers_n;
static conn_t **publishers;
static long long pub_rr;

static int publish_one(int64_t stamp) {
    if (!publishers_n) return 0;
    conn_t *c = publishers[pub_rr++ % publishers_n];
    if (c->state != ST_READY) return 0;
    int ch = c->is_pub ? (cfg.channels > 1 ? (int)(rnd() % cfg.channels) : 0) : c->channel;
    char name[200], frame[400];
    channel_name(ch, name, sizeof name);
    int n = snprintf(frame, sizeof frame,
                     "{\"event\":\"client-bench\",\"channel\":\"%s\",\"data\":\"bt:%lld;\"}", name,
                     (long long)stamp);
    queue_frame(c, 1, frame, n);
    return 1;
}

static void flush_publishers(void) {
    for (int i = 0; i < publishers_n; i++)
        if (publishers[i]->state == ST_READY && publishers[i]->out.len > publishers[i]->out.off)
            conn_flush(publishers[i]);
}

/* one load phase: mode 'c' closed, 'o' open, 'p' presence churn */
static void run_phase(char mode, double param, int warmup_ms, int dur_ms, int sample) {
    long long sent = 0, lost = 0, stalls = 0;
    int64_t t0 = now_ns(), tm = t0 + (int64_t)warmup_ms * 1000000, tend = tm + (int64_t)dur_ms * 1000000;
    int64_t next = t0, interval = 0, last_progress = t0;
    long long last_delivered = delivered, d0 = 0, j0 = 0, e0 = errors, sc0 = server_closed;
    double cpu0 = 0;
    int measuring = 0;
    nsamples = 0, sample_count = 0;
    sample_every = sample;
    if (mode == 'o') interval = (int64_t)(1e9 * cfg.fanout / param);
    if (mode == 'p') {
        churning = 1;
        for (int i = 0; i < nconns; i++)
            if (conns[i].state == ST_READY) churn_once(&conns[i]), conn_flush(&conns[i]);
    }
    long long base = delivered; /* deliveries expected = base + sent*fanout */
    for (;;) {
        int64_t now = now_ns();
        if (!measuring && now >= tm) {
            measuring = 1;
            d0 = delivered, j0 = joins, cpu0 = cpu_seconds();
            nsamples = 0;
            printf("{\"event\":\"mark\"}\n");
            fflush(stdout);
        }
        if (now >= tend) break;
        if (mode == 'c') {
            long long expected = base + sent * cfg.fanout;
            if (delivered != last_delivered) last_delivered = delivered, last_progress = now;
            else if (expected > delivered && now - last_progress > 1000000000LL) {
                lost += expected - delivered, stalls++;
                base = delivered - sent * cfg.fanout;
                last_progress = now;
            }
            int tries = 0; /* bounded: publishers that are not ready send nothing */
            while (base + sent * cfg.fanout - delivered + cfg.fanout <= (long long)param &&
                   tries++ < 1000000)
                sent += publish_one(now_ns());
            flush_publishers();
        } else if (mode == 'o') {
            while (now >= next) sent += publish_one(next), next += interval;
            flush_publishers();
        }
        int timeout = 1;
        if (mode == 'o') {
            int64_t w = (next - now_ns()) / 1000000;
            timeout = w < 0 ? 0 : (w > 50 ? 50 : (int)w);
        } else if (mode == 'p') {
            timeout = 10;
        }
        poll_once(timeout);
        /* closed loop: let frames pile up between reads (a throughput figure, not a latency
           one), so the client reads many frames per syscall and stays far from its ceiling */
        if (mode == 'c') {
            struct timespec nap = {0, 5000000};
            nanosleep(&nap, NULL);
        }
    }
    double wall = (now_ns() - tm) / 1e9, cpu = cpu_seconds() - cpu0;
    long long d = delivered - d0, j = joins - j0;
    churning = 0;
    printf("{\"event\":\"end\"}\n");
    fflush(stdout);
    /* let the in-flight messages land before the next command */
    int64_t drain_end = now_ns() + 2000000000LL;
    long long prev = -1;
    while (now_ns() < drain_end && delivered != prev) prev = delivered, poll_once(100);
    qsort(samples, nsamples, sizeof *samples, cmp_i64);
    printf("{\"event\":\"result\",\"seconds\":%.3f,\"deliveries\":%lld,\"deliveries_per_s\":%.1f,"
           "\"publishes\":%lld,\"joins\":%lld,\"joins_per_s\":%.1f,\"client_cpu\":%.3f,"
           "\"samples\":%lld,\"p50_ms\":%.3f,\"p95_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
           "\"lost\":%lld,\"stalls\":%lld,\"errors\":%lld,\"server_closed\":%lld,\"ready\":%d,"
           "\"first_error\":\"%s\"}\n",
           wall, d, d / wall, sent, j, j / wall, cpu / wall, nsamples, pct(0.5), pct(0.95),
           pct(0.99), nsamples ? samples[nsamples - 1] / 1e6 : -1.0, lost, stalls, errors - e0,
           server_closed - sc0, count_ready(), first_error);
    fflush(stdout);
    sample_every = 0;
}

static int ws_main(void) {
    nconns = cfg.subs + cfg.pub_sockets;
    conns = calloc(nconns, sizeof *conns);
    samples = malloc(max_samples * sizeof *samples);
    rbuf = malloc(RBUF);
    publishers = calloc(nconns, sizeof *publishers);
    ep = epoll_create1(0);
    for (int i = 0; i < nconns; i++) {
        conns[i].idx = i, conns[i].fd = -1, conns[i].state = ST_CLOSED;
        conns[i].is_pub = i >= cfg.subs;
        conns[i].channel = i % cfg.channels;
        uint64_t r = rnd();
        memcpy(conns[i].mask, &r, 4);
        if (conns[i].is_pub == cfg.publish_from_pubs) publishers[publishers_n++] = &conns[i];
    }
    /* open with a bounded number of handshakes in flight */
    const int inflight_max = 256;
    int next = 0;
    int64_t t0 = now_ns(), deadline = t0 + 120000000000LL;
    double cpu0 = cpu_seconds();
    for (;;) {
        int opening = 0, done = 0;
        for (int i = 0; i < next; i++) {
            if (conns[i].state == ST_READY || conns[i].state == ST_CLOSED) done++;
            else opening++;
        }
        while (opening < inflight_max && next < nconns) start_conn(&conns[next++]), opening++;
        if (done == nconns || now_ns() > deadline) break;
        poll_once(5);
    }
    double secs = (now_ns() - t0) / 1e9;
    int ready = count_ready();
    printf("{\"event\":\"ready\",\"ready\":%d,\"wanted\":%d,\"seconds\":%.3f,\"conns_per_s\":%.1f,"
           "\"client_cpu\":%.3f,\"errors\":%lld,\"first_error\":\"%s\"}\n",
           ready, nconns, secs, ready / secs, (cpu_seconds() - cpu0) / secs, errors, first_error);
    fflush(stdout);

    /* commands are read from stdin between phases, with the sockets still served */
    struct epoll_event se = {.events = EPOLLIN, .data.ptr = NULL};
    char line[256];
    size_t ll = 0;
    for (;;) {
        epoll_ctl(ep, EPOLL_CTL_ADD, 0, &se);
        int got = poll_once(1000);
        epoll_ctl(ep, EPOLL_CTL_DEL, 0, NULL);
        if (!got) continue;
        ssize_t n = read(0, line + ll, sizeof line - 1 - ll);
        if (n <= 0) return 0;
        ll += n;
        line[ll] = 0;
        char *nl;
        while ((nl = strchr(line, '\n'))) {
            *nl = 0;
            char cmd[32] = {0};
            double a = 0, b = 0, c = 0, d = 0;
            sscanf(line, "%31s %lf %lf %lf %lf", cmd, &a, &b, &c, &d);
            if (!strcmp(cmd, "closed")) run_phase('c', a, (int)b, (int)c, (int)d);
            else if (!strcmp(cmd, "open")) run_phase('o', a, (int)b, (int)c, (int)d);
            else if (!strcmp(cmd, "churn")) run_phase('p', 0, (int)a, (int)b, 0);
            else if (!strcmp(cmd, "close")) {
                for (int i = 0; i < nconns; i++) conn_close(&conns[i]);
                printf("{\"event\":\"closed\"}\n");
                fflush(stdout);
            } else if (!strcmp(cmd, "quit")) return 0;
            memmove(line, nl + 1, strlen(nl + 1) + 1);
            ll = strlen(line);
        }
    }
}

/* ---------------------------------------------------------------- http mode */

typedef struct {
    int fd;
    size_t sent;
    buf_t in;
} hconn_t;

static char *req;
static size_t req_len;
static long long http_ok, http_bad, http_reconnects;

static void http_start(hconn_t *h, int port, int idx) {
    h->fd = open_socket(port, idx);
    h->sent = 0;
    h->in.len = h->in.off = 0;
    struct epoll_event e = {.events = EPOLLOUT | EPOLLIN, .data.ptr = h};
    if (h->fd >= 0) epoll_ctl(ep, EPOLL_CTL_ADD, h->fd, &e);
}

static void http_send(hconn_t *h) {
    while (h->sent < req_len) {
        ssize_t n = write(h->fd, req + h->sent, req_len - h->sent);
        if (n < 0) return; /* EAGAIN: wait for EPOLLOUT; errors show up on read */
        h->sent += n;
    }
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = h};
    epoll_ctl(ep, EPOLL_CTL_MOD, h->fd, &e);
}

static void http_event(hconn_t *h, uint32_t ev, int port, int idx) {
    if (h->sent < req_len) {
        if (ev & EPOLLOUT) http_send(h);
        if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    }
    buf_reserve(&h->in, 65536);
    ssize_t n = read(h->fd, h->in.p + h->in.len, h->in.cap - h->in.len);
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) { /* closed: reconnect */
        close(h->fd);
        http_reconnects++;
        http_start(h, port, idx);
        return;
    }
    h->in.len += n;
    char *end = memmem(h->in.p, h->in.len, "\r\n\r\n", 4);
    if (!end) return;
    *end = 0;
    long clen = 0;
    char *cl = strcasestr(h->in.p, "\r\ncontent-length:");
    if (cl) clen = strtol(cl + 17, NULL, 10);
    size_t total = end + 4 - h->in.p + clen;
    if (h->in.len < total) {
        *end = '\r';
        return;
    }
    if (!memcmp(h->in.p + 9, "200", 3)) http_ok++;
    else {
        http_bad++;
        if (!first_error[0]) note_error(h->in.p, end - h->in.p), errors--;
    }
    int close_it = strcasestr(h->in.p, "\r\nconnection: close") != NULL;
    memmove(h->in.p, h->in.p + total, h->in.len - total);
    h->in.len -= total;
    if (close_it) {
        close(h->fd);
        http_reconnects++;
        http_start(h, port, idx);
    } else {
        h->sent = 0;
        http_send(h);
    }
}

static int http_main(const char *req_file, int nc, int warmup_ms, int dur_ms) {
    FILE *f = fopen(req_file, "rb");
    if (!f) die("cannot open %s", req_file);
    fseek(f, 0, SEEK_END);
    req_len = ftell(f);
    rewind(f);
    req = malloc(req_len);
    if (fread(req, 1, req_len, f) != req_len) die("short read %s", req_file);
    fclose(f);
    ep = epoll_create1(0);
    hconn_t *hs = calloc(nc, sizeof *hs);
    for (int i = 0; i < nc; i++) http_start(&hs[i], cfg.port, i);
    int64_t t0 = now_ns(), tm = t0 + (int64_t)warmup_ms * 1000000, tend = tm + (int64_t)dur_ms * 1000000;
    long long ok0 = 0, rc0 = 0;
    double cpu0 = 0;
    int measuring = 0;
    struct epoll_event evs[256];
    for (;;) {
        int64_t now = now_ns();
        if (!measuring && now >= tm) {
            measuring = 1, ok0 = http_ok, rc0 = http_reconnects, cpu0 = cpu_seconds();
            printf("{\"event\":\"mark\"}\n");
            fflush(stdout);
        }
        if (now >= tend) break;
        int n = epoll_wait(ep, evs, 256, 5);
        for (int i = 0; i < n; i++) {
            hconn_t *h = evs[i].data.ptr;
            http_event(h, evs[i].events, cfg.port, (int)(h - hs));
        }
    }
    double wall = (now_ns() - tm) / 1e9;
    printf("{\"event\":\"end\"}\n");
    printf("{\"event\":\"result\",\"seconds\":%.3f,\"requests\":%lld,\"requests_per_s\":%.1f,"
           "\"client_cpu\":%.3f,\"non_200\":%lld,\"reconnects\":%lld,\"first_error\":\"%s\"}\n",
           wall, http_ok - ok0, (http_ok - ok0) / wall, (cpu_seconds() - cpu0) / wall, http_bad,
           http_reconnects - rc0, first_error);
    return 0;
}

/* ---------------------------------------------------------------- sink mode */
/* A trivial Pusher-protocol server for measuring the load generator's own ceiling: it accepts
   WebSocket upgrades, answers pusher:subscribe with subscription_succeeded (no auth check) and
   forwards each client-* event to the channel's other members, every socket's frames of one
   loop iteration in one write. No JSON parsing: it does the least a server can do. */

typedef struct sconn {
    int fd, upgraded, dirty;
    buf_t in, out;
} sconn_t;

typedef struct {
    char name[200];
    sconn_t **m;
    int n, cap;
} schan_t;

static schan_t schans[256];
static int nschans;
static sconn_t **sdirty;
static int nsdirty, sdirty_cap;

static void s_queue(sconn_t *c, const char *payload, size_t len) {
    buf_reserve(&c->out, len + 10);
    uint8_t *p = (uint8_t *)c->out.p + c->out.len;
    size_t h = 0;
    p[h++] = 0x81;
    if (len < 126) p[h++] = len;
    else if (len < 65536) p[h++] = 126, p[h++] = len >> 8, p[h++] = len & 255;
    else {
        p[h++] = 127;
        for (int i = 7; i >= 0; i--) p[h++] = (uint8_t)(len >> (8 * i));
    }
    memcpy(p + h, payload, len);
    c->out.len += h + len;
    if (!c->dirty) {
        c->dirty = 1;
        if (nsdirty == sdirty_cap) {
            sdirty_cap = sdirty_cap ? 2 * sdirty_cap : 1024;
            sdirty = realloc(sdirty, sdirty_cap * sizeof *sdirty);
        }
        sdirty[nsdirty++] = c;
    }
}

static void s_close(sconn_t *c) {
    for (int i = 0; i < nschans; i++)
        for (int j = 0; j < schans[i].n; j++)
            if (schans[i].m[j] == c) schans[i].m[j] = schans[i].m[--schans[i].n], j--;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
}

static void s_flush(sconn_t *c) {
    c->dirty = 0;
    if (c->fd < 0) return;
    while (c->out.len > c->out.off) {
        ssize_t n = write(c->fd, c->out.p + c->out.off, c->out.len - c->out.off);
        if (n <= 0) break; /* EAGAIN: kept for the next loop (a sink, not a server) */
        c->out.off += n;
    }
    if (c->out.off == c->out.len) c->out.off = c->out.len = 0;
    else if (!c->dirty) c->dirty = 1, sdirty[nsdirty++] = c;
}

/* the string value after "key":" in p, into out */
static int json_str(const char *p, size_t len, const char *key, char *out, size_t n) {
    const char *k = memmem(p, len, key, strlen(key));
    if (!k) return 0;
    const char *v = k + strlen(key), *end = p + len;
    while (v < end && (*v == '"' || *v == ':' || *v == ' ')) v++;
    size_t i = 0;
    while (v < end && *v != '"' && *v != '\\' && i < n - 1) out[i++] = *v++;
    out[i] = 0;
    return i > 0;
}

static schan_t *s_channel(const char *name) {
    for (int i = 0; i < nschans; i++)
        if (!strcmp(schans[i].name, name)) return &schans[i];
    if (nschans == 256) die("sink: too many channels");
    schan_t *ch = &schans[nschans++];
    snprintf(ch->name, sizeof ch->name, "%s", name);
    return ch;
}

static void s_message(sconn_t *c, char *p, size_t len) {
    char name[200], reply[400];
    if (memmem(p, len, "client-", 7)) {
        if (!json_str(p, len, "\"channel\"", name, sizeof name)) return;
        schan_t *ch = s_channel(name);
        for (int i = 0; i < ch->n; i++)
            if (ch->m[i] != c) s_queue(ch->m[i], p, len);
    } else if (memmem(p, len, "pusher:subscribe", 16)) {
        if (!json_str(p, len, "\"channel\"", name, sizeof name)) return;
        schan_t *ch = s_channel(name);
        if (ch->n == ch->cap) {
            ch->cap = ch->cap ? 2 * ch->cap : 64;
            ch->m = realloc(ch->m, ch->cap * sizeof *ch->m);
        }
        ch->m[ch->n++] = c;
        int n = snprintf(reply, sizeof reply,
                         "{\"event\":\"pusher_internal:subscription_succeeded\",\"channel\":\"%s\","
                         "\"data\":\"{}\"}", name);
        s_queue(c, reply, n);
    }
}

static void s_readable(sconn_t *c, int *next_id) {
    buf_reserve(&c->in, 65536);
    ssize_t n = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len);
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) return s_close(c);
    c->in.len += n;
    size_t pos = 0;
    if (!c->upgraded) {
        char *end = memmem(c->in.p, c->in.len, "\r\n\r\n", 4);
        if (!end) return;
        pos = end + 4 - c->in.p;
        c->upgraded = 1;
        static const char ok[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 "Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
        buf_reserve(&c->out, sizeof ok);
        memcpy(c->out.p + c->out.len, ok, sizeof ok - 1);
        c->out.len += sizeof ok - 1;
        char est[200];
        int k = snprintf(est, sizeof est,
                         "{\"event\":\"pusher:connection_established\",\"data\":\"{\\\"socket_id\\\":"
                         "\\\"1.%d\\\",\\\"activity_timeout\\\":120}\"}", (*next_id)++);
        s_queue(c, est, k);
    }
    while (c->in.len - pos >= 6) {
        uint8_t *h = (uint8_t *)c->in.p + pos;
        uint64_t plen = h[1] & 127;
        size_t hl = 2;
        if (plen == 126) plen = (uint64_t)h[2] << 8 | h[3], hl = 4;
        else if (plen == 127) {
            if (c->in.len - pos < 14) break;
            plen = 0;
            for (int i = 0; i < 8; i++) plen = plen << 8 | h[2 + i];
            hl = 10;
        }
        if (c->in.len - pos < hl + 4 + plen) break;
        uint8_t *mask = h + hl, *pl = h + hl + 4;
        for (uint64_t i = 0; i < plen; i++) pl[i] ^= mask[i & 3];
        if ((h[0] & 15) == 8) return s_close(c);
        if ((h[0] & 15) == 1) s_message(c, (char *)pl, plen);
        pos += hl + 4 + plen;
    }
    memmove(c->in.p, c->in.p + pos, c->in.len - pos);
    c->in.len -= pos;
}

static int sink_main(void) {
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(cfg.port)};
    a.sin_addr.s_addr = htonl(0x7f000001);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4096) < 0)
        die("sink: cannot listen on %d", cfg.port);
    ep = epoll_create1(0);
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &le);
    struct epoll_event evs[1024];
    int next_id = 1;
    for (;;) {
        int n = epoll_wait(ep, evs, 1024, nsdirty ? 0 : 1000);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    sconn_t *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                }
                continue;
            }
            sconn_t *c = evs[i].data.ptr;
            if (c->fd >= 0) s_readable(c, &next_id);
        }
        int k = nsdirty;
        nsdirty = 0;
        sconn_t **batch = malloc(k * sizeof *batch);
        memcpy(batch, sdirty, k * sizeof *batch);
        for (int i = 0; i < k; i++) s_flush(batch[i]);
        free(batch);
    }
    return 0;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv) {
    if (argc < 2) die("usage: loadgen ws|http [options]");
    const char *req_file = NULL;
    int http_conns = 50, warmup_ms = 1000, dur_ms = 5000;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        i++;
        if (!strcmp(a, "--port")) cfg.port = atoi(v);
        else if (!strcmp(a, "--port2")) cfg.port2 = atoi(v);
        else if (!strcmp(a, "--key")) cfg.key = v;
        else if (!strcmp(a, "--secret")) cfg.secret = v;
        else if (!strcmp(a, "--subs")) cfg.subs = atoi(v);
        else if (!strcmp(a, "--channels")) cfg.channels = atoi(v);
        else if (!strcmp(a, "--prefix")) cfg.prefix = v;
        else if (!strcmp(a, "--pub-sockets")) cfg.pub_sockets = atoi(v);
        else if (!strcmp(a, "--publish-from")) cfg.publish_from_pubs = !strcmp(v, "pubs");
        else if (!strcmp(a, "--fanout")) cfg.fanout = atoi(v);
        else if (!strcmp(a, "--req")) req_file = v;
        else if (!strcmp(a, "--conns")) http_conns = atoi(v);
        else if (!strcmp(a, "--warmup-ms")) warmup_ms = atoi(v);
        else if (!strcmp(a, "--dur-ms")) dur_ms = atoi(v);
        else die("unknown option %s", a);
    }
    if (!cfg.port) die("--port is required");
    raise_nofile();
    rng_state ^= (uint64_t)now_ns();
    if (!strcmp(argv[1], "sink")) return sink_main();
    if (!strcmp(argv[1], "http")) {
        if (!req_file) die("--req is required");
        return http_main(req_file, http_conns, warmup_ms, dur_ms);
    }
    if (!cfg.key || !cfg.secret || !cfg.prefix) die("--key, --secret and --prefix are required");
    if (cfg.channels < 1) cfg.channels = 1;
    return ws_main();
}
