/* kcoro: in-process channels, select, cancellation, actors and scopes.
 *
 * Conventions (every function in this header):
 *   - Functions return 0 (or a count) on success and a negative errno on failure.
 *     A function that fails leaves its objects unchanged and calls no callback.
 *   - Timeouts are in milliseconds on CLOCK_MONOTONIC: 0 = try once without
 *     blocking, < 0 = wait forever, > 0 = wait at most that long.
 *   - Errors of blocking operations:
 *       -EAGAIN     timeout 0 and the operation could not complete at once
 *       -ETIME      the timeout expired
 *       -ECANCELED  the cancellation token was triggered
 *       -EPIPE      the channel is closed (recv: closed and drained)
 *   - Destroy functions accept NULL.
 *
 * Blocking parks the caller through one waiter abstraction (the parker,
 * kc_parker_t in src/kcoro/kc_sync.h): a thread sleeps on a futex, a
 * coroutine (see "Coroutines") switches to its scheduler.
 */
#ifndef KCORO_KCORO_H
#define KCORO_KCORO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Cancellation tokens                                                       */
/* ------------------------------------------------------------------------ */

typedef struct kc_cancel kc_cancel_t;

/* Creates a token. With a non-NULL parent the token is a child context:
 * triggering the parent (or any ancestor) triggers it too; a child created
 * under an already-triggered parent starts triggered.
 * ERRORS: -ENOMEM. */
int kc_cancel_create(kc_cancel_t **out, const kc_cancel_t *parent);
/* Triggers the token and all its descendants, waking every operation blocked
 * on any of them. Idempotent. */
void kc_cancel_trigger(kc_cancel_t *tok);
/* True once the token (or an ancestor) has been triggered. NULL is never set. */
bool kc_cancel_is_set(const kc_cancel_t *tok);
/* Detaches from the parent and frees. The token must not be in use by a
 * blocked operation. Children stay valid and become roots. */
void kc_cancel_destroy(kc_cancel_t *tok);

/* ------------------------------------------------------------------------ */
/* Channels                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct kc_chan kc_chan_t;

enum kc_chan_kind {
    KC_RENDEZVOUS = 0, /* no buffer: a send completes when a receiver takes it */
    KC_BUFFERED   = 1, /* bounded FIFO of `capacity` elements                   */
    KC_UNLIMITED  = 2, /* FIFO that grows; send never blocks                    */
    KC_CONFLATED  = 3, /* holds only the newest element; send never blocks      */
};

/* Called for every element the channel accepted or refused and will never
 * deliver: elements still buffered when the channel is destroyed, elements
 * replaced in a conflated channel, and the element of every send refused
 * because the channel is closed (-EPIPE, whether it blocked first or not;
 * also a select send clause completing with -EPIPE).
 * The ownership rule, the same for kc_chan_send*, the desc sends and
 * kc_select: after -EPIPE from a send the element has been handed to this
 * callback; after any other failure (-EAGAIN, -ETIME, -ECANCELED, -ENOMEM,
 * -EINVAL) nothing was sent, no callback ran and the caller still owns the
 * element. Cancellation is the caller's own decision to stop waiting, like
 * a timeout, so it leaves the element with the caller.
 * `elem` points to elem_size bytes, valid only during the call; the callback
 * may run with the channel locked and must not call into the same channel.
 * (This is the one documented exception to "a failing call calls no
 * callback".) */
typedef void (*kc_undelivered_fn)(void *user, void *elem);

/* Creates a channel of `kind` carrying elements of elem_size bytes (> 0,
 * at most KC_ELEM_MAX). `capacity` is used by KC_BUFFERED (must be > 0) and
 * as the initial allocation of KC_UNLIMITED (0 = default); ignored otherwise.
 * ERRORS: -EINVAL, -ENOMEM. */
#define KC_ELEM_MAX (1u << 20)
int kc_chan_make(kc_chan_t **out, int kind, size_t elem_size, size_t capacity);
/* Frees the channel; calls the undelivered callback for buffered elements.
 * No operation may be blocked on it (close and join first). */
void kc_chan_destroy(kc_chan_t *ch);
/* Sets the undelivered-element callback (before use). */
void kc_chan_set_undelivered(kc_chan_t *ch, kc_undelivered_fn fn, void *user);
/* Names the channel for monitors (copied, truncated to 31 bytes). */
void kc_chan_set_name(kc_chan_t *ch, const char *name);

/* Copies elem_size bytes from msg into the channel.
 * ERRORS: as listed at the top, and -ENOMEM: an unlimited channel could not
 * grow its buffer. Then nothing was enqueued, the channel is unchanged and
 * the caller still owns the element (no callback, no failure counter); the
 * send may be retried. Other kinds never allocate after creation. */
int kc_chan_send(kc_chan_t *ch, const void *msg, long timeout_ms);
/* Copies the next element into out (elem_size bytes). */
int kc_chan_recv(kc_chan_t *ch, void *out, long timeout_ms);
/* As above; also fail with -ECANCELED when `cancel` is triggered (a send's
 * element then stays with the caller, as after -ETIME). */
int kc_chan_send_c(kc_chan_t *ch, const void *msg, long timeout_ms, const kc_cancel_t *cancel);
int kc_chan_recv_c(kc_chan_t *ch, void *out, long timeout_ms, const kc_cancel_t *cancel);

/* Closes the channel: later sends fail with -EPIPE; receivers drain what is
 * buffered and then get -EPIPE; every blocked sender and receiver is woken.
 * Idempotent. */
void kc_chan_close(kc_chan_t *ch);
bool kc_chan_is_closed(const kc_chan_t *ch);
/* Elements currently buffered. */
size_t kc_chan_len(const kc_chan_t *ch);
/* Capacity: 0 for rendezvous, 1 for conflated, SIZE_MAX for unlimited. */
size_t kc_chan_cap(const kc_chan_t *ch);
/* Process-unique id, never reused (monitors key on it, not on pointers). */
uint64_t kc_chan_id(const kc_chan_t *ch);
int kc_chan_kind(const kc_chan_t *ch);
size_t kc_chan_elem_size(const kc_chan_t *ch);

/* ------------------------------------------------------------------------ */
/* Zero-copy descriptors                                                     */
/* ------------------------------------------------------------------------ */

/* A descriptor of a payload that stays where it is: only these fields travel
 * through the channel, the bytes at addr are never copied. The receiver owns
 * the payload after a successful recv (the sender must not touch it). */
typedef struct kc_zdesc {
    void *addr;       /* payload start                                    */
    size_t len;       /* payload length in bytes (counted in byte stats)  */
    uint32_t region;  /* id of the memory region addr lies in (0 = heap)  */
    uint32_t flags;   /* KC_ZDESC_* flags, application-defined above 16   */
    uint64_t offset;  /* offset of addr within the region                 */
} kc_zdesc;

#define KC_ZDESC_READONLY 0x1u /* receiver must not write the payload   */
#define KC_ZDESC_FREE     0x2u /* receiver frees addr with free()       */

/* Creates a channel whose elements are kc_zdesc. */
int kc_chan_make_desc(kc_chan_t **out, int kind, size_t capacity);
/* Desc operations: -EINVAL if the channel does not carry kc_zdesc. */
int kc_chan_send_desc(kc_chan_t *ch, const kc_zdesc *d, long timeout_ms);
int kc_chan_recv_desc(kc_chan_t *ch, kc_zdesc *d, long timeout_ms);
int kc_chan_send_desc_c(kc_chan_t *ch, const kc_zdesc *d, long timeout_ms, const kc_cancel_t *c);
int kc_chan_recv_desc_c(kc_chan_t *ch, kc_zdesc *d, long timeout_ms, const kc_cancel_t *c);

/* ------------------------------------------------------------------------ */
/* Statistics                                                                */
/* ------------------------------------------------------------------------ */

typedef struct kc_chan_snapshot {
    uint64_t id;              /* kc_chan_id: stable key across snapshots    */
    uint64_t t_ns;            /* CLOCK_MONOTONIC time of the snapshot       */
    uint64_t sends;           /* completed sends                            */
    uint64_t recvs;           /* completed receives                         */
    uint64_t bytes_sent;      /* payload bytes sent (zdesc: desc.len)       */
    uint64_t bytes_recv;      /* payload bytes received                     */
    uint64_t fail_again;      /* operations that returned -EAGAIN           */
    uint64_t fail_timeout;    /* ... -ETIME                                 */
    uint64_t fail_canceled;   /* ... -ECANCELED                             */
    uint64_t fail_closed;     /* ... -EPIPE                                 */
    uint64_t dropped;         /* elements handed to the undelivered callback */
    uint64_t len;             /* elements buffered at snapshot time         */
    uint64_t cap;             /* capacity (see kc_chan_cap)                 */
    int kind;                 /* enum kc_chan_kind                          */
    bool closed;              /* closed flag at snapshot time               */
    char name[32];            /* name set by kc_chan_set_name or ""         */
} kc_chan_snapshot_t;

typedef struct kc_chan_rate {
    double secs;              /* interval between the snapshots             */
    double sends_per_sec;     /* send completions per second                */
    double recvs_per_sec;     /* receive completions per second             */
    double bytes_per_sec;     /* received payload bytes per second          */
    uint64_t failures;        /* failures of any kind in the interval       */
} kc_chan_rate_t;

/* Copy of the channel's counters, consistent even under traffic:
 * recvs <= sends, bytes_recv <= bytes_sent, len <= cap, and no counter is
 * ever lower than in an earlier snapshot. Locked kinds are copied under the
 * channel lock (exact); a buffered channel is read without stopping its
 * lock-free traffic, receive side first, so each count is at most its value
 * when the call returns (a send whose element is still being copied in counts
 * as sent, as in kc_chan_len). */
void kc_chan_snapshot(const kc_chan_t *ch, kc_chan_snapshot_t *out);
/* Rates between two snapshots of one channel; -EINVAL if cur is not later. */
int kc_chan_compute_rate(const kc_chan_snapshot_t *prev, const kc_chan_snapshot_t *cur,
                         kc_chan_rate_t *out);

/* Registry of live channels, for monitors: calls fn for each channel created
 * and not yet destroyed (under the registry lock: fn must not create or
 * destroy channels). Returns the number visited. */
size_t kc_chan_foreach(void (*fn)(void *user, kc_chan_t *ch), void *user);

/* ------------------------------------------------------------------------ */
/* Select                                                                    */
/* ------------------------------------------------------------------------ */

enum kc_select_op { KC_SELECT_RECV = 0, KC_SELECT_SEND = 1 };

typedef struct kc_select_clause {
    kc_chan_t *ch;   /* channel; a NULL channel clause is never ready    */
    int op;          /* KC_SELECT_RECV or KC_SELECT_SEND                 */
    void *buf;       /* recv: destination; send: source (elem_size bytes) */
    int result;      /* out: 0, or -EPIPE for the clause that hit a closed channel */
} kc_select_clause_t;

enum kc_select_mode {
    KC_SELECT_BIASED   = 0, /* the first ready clause in array order wins  */
    KC_SELECT_UNBIASED = 1, /* a random ready clause wins (fairness)        */
};

/* Waits until exactly one clause completes and returns its index (>= 0).
 * A receive on a closed, drained channel or a send on a closed channel
 * counts as completing: the index is returned with clauses[i].result = -EPIPE.
 * (A send clause completing with -EPIPE hands its element to the channel's
 * undelivered callback, like kc_chan_send; on any negative return no
 * element went anywhere and the caller still owns all of them: the same
 * rule as kc_chan_send_c, see kc_undelivered_fn.)
 * Otherwise: -EAGAIN (timeout 0), -ETIME, -ECANCELED, -ENOMEM (a send clause
 * on an unlimited channel that could not grow), -EINVAL (n == 0 or
 * n > KC_SELECT_MAX, or a bad clause). No clause ever completes twice, and
 * no other clause has any effect. */
#define KC_SELECT_MAX 64
int kc_select(kc_select_clause_t *clauses, size_t n, int mode, long timeout_ms,
              const kc_cancel_t *cancel);

/* ------------------------------------------------------------------------ */
/* Actors                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct kc_actor kc_actor_t;

/* Handles one message; returning non-zero stops the actor. */
typedef int (*kc_actor_fn)(void *user, void *msg);

typedef struct kc_actor_ctx_ex {
    kc_chan_t *inbox;            /* messages arrive here (not owned)                */
    kc_actor_fn process;         /* called for every message                        */
    void *user;                  /* passed to process and on_exit                   */
    long timeout_ms;             /* receive timeout; <0 forever (-ETIME just loops) */
    const kc_cancel_t *cancel;   /* optional external token; a child of it is used  */
    void (*on_exit)(void *user, int reason); /* optional: why the actor stopped */
} kc_actor_ctx_ex;

/* Starts an actor that receives from inbox and calls process until the inbox
 * is closed and drained (reason -EPIPE), the actor is cancelled (-ECANCELED,
 * prompt: a blocked receive is interrupted), or process returns non-zero
 * (reason = that value). Called from a coroutine, the actor is a coroutine
 * on the scheduler (process must then not block its thread); called from a
 * plain thread, it is a thread. ERRORS: -EINVAL, -ENOMEM, -EAGAIN (thread). */
int kc_actor_start_ex(kc_actor_t **out, const kc_actor_ctx_ex *ctx);
/* The same, always as a coroutine (from any thread; the default scheduler
 * starts on first use). ERRORS: -EINVAL, -ENOMEM, or kc_sched_start's. */
int kc_actor_go(kc_actor_t **out, const kc_actor_ctx_ex *ctx);
/* True when a runs as a coroutine. */
bool kc_actor_is_coro(const kc_actor_t *a);
/* Asks the actor to stop promptly (triggers its token). */
void kc_actor_cancel(kc_actor_t *a);
/* Waits for the actor to end (from a thread or a coroutine) and frees it;
 * returns its exit reason, or -EDEADLK (nothing freed) if a coroutine actor
 * joins itself. */
int kc_actor_join(kc_actor_t *a);

/* ------------------------------------------------------------------------ */
/* Scopes (structured concurrency)                                           */
/* ------------------------------------------------------------------------ */

typedef struct kc_scope kc_scope_t;

/* A child task: gets the scope's token; non-zero return cancels the scope. */
typedef int (*kc_task_fn)(void *arg, const kc_cancel_t *cancel);

/* Creates a scope; its token is a child of parent_cancel (may be NULL), so a
 * scope created inside another scope's task cascades cancellation. */
int kc_scope_create(kc_scope_t **out, const kc_cancel_t *parent_cancel);
/* Starts fn(arg, token) owned by the scope: as a coroutine when called from
 * a coroutine, else on a new thread. kc_scope_wait/destroy park a calling
 * coroutine (never its worker thread).
 * ERRORS: -ECANCELED (scope already cancelled), -ENOMEM, -EAGAIN. */
int kc_scope_spawn(kc_scope_t *s, kc_task_fn fn, void *arg);
/* Cancels every child (and scopes nested under it). */
void kc_scope_cancel(kc_scope_t *s);
/* The scope's token, to pass to nested scopes or operations. */
kc_cancel_t *kc_scope_token(kc_scope_t *s);
/* Waits until no child of the scope runs (children spawned while it waits,
 * also by other children, included); returns the first non-zero child result
 * (or 0). Any number of threads may wait on one scope at once: each returns
 * only after every child has finished and been joined. */
int kc_scope_wait(kc_scope_t *s);
/* Cancels, waits for every child, waits until every kc_scope_wait already
 * running on other threads has returned, then frees. So a destroy racing a
 * wait is safe; a call on the scope that *starts* after destroy began is a
 * use after free (order it before destroy, as with any destroy). */
void kc_scope_destroy(kc_scope_t *s);

/* ------------------------------------------------------------------------ */
/* Coroutines and the scheduler                                              */
/* ------------------------------------------------------------------------ */

/* Stackful coroutines multiplexed onto a few worker threads (M:N, one per
 * CPU by default, KCORO_THREADS=n to override). Every blocking call of this
 * header (channel send/recv, select, kc_sleep_ms, kc_coro_join, ...) made in
 * a coroutine parks the coroutine, not its thread; made in a thread, it
 * parks the thread. A thread and a coroutine may share any channel.
 * Code in a coroutine must not block its thread for long (sleep, blocking
 * I/O, pthread waits): that stalls every coroutine queued on the worker. */
typedef struct kc_coro kc_coro_t;
typedef void (*kc_coro_fn)(void *arg);

#define KC_STACK_DEFAULT (64u * 1024u)        /* bytes                        */
#define KC_STACK_MIN     (16u * 1024u)
#define KC_STACK_MAX     (64u * 1024u * 1024u)
#define KC_THREADS_MAX   1024

typedef struct kc_coro_opts {
    size_t stack_size;   /* 0: KC_STACK_DEFAULT; rounded up to pages; a guard
                          * page below it turns an overflow into SIGSEGV with
                          * a message naming the coroutine               */
} kc_coro_opts_t;

typedef struct kc_sched_opts {
    int threads;         /* worker threads; 0: KCORO_THREADS or one per CPU */
} kc_sched_opts_t;

/* Starts the worker threads. Optional: the first kc_go/kc_spawn starts a
 * default scheduler. ERRORS: -EALREADY (running), -EINVAL, -ENOMEM,
 * -EAGAIN (threads). */
int kc_sched_start(const kc_sched_opts_t *opts);
/* Waits until every coroutine has ended, then stops the worker threads.
 * 0 also when not running; -EDEADLK when called from a coroutine or worker.
 * A coroutine blocked forever makes it wait forever: close channels first.
 * The runtime may be started again afterwards. */
int kc_sched_stop(void);

/* Starts fn(arg) as a joinable coroutine; *out must be joined exactly once.
 * opts may be NULL. ERRORS: -EINVAL (fn NULL, stack size out of range),
 * -ENOMEM, and those of kc_sched_start. */
int kc_spawn(kc_coro_t **out, kc_coro_fn fn, void *arg, const kc_coro_opts_t *opts);
/* Starts a detached coroutine (its resources are recycled when it ends). */
int kc_go(kc_coro_fn fn, void *arg, const kc_coro_opts_t *opts);
/* Waits for a coroutine from kc_spawn to end and releases it. 0, or
 * -EINVAL (NULL or detached), -EDEADLK (joining itself). */
int kc_coro_join(kc_coro_t *c);
/* As kc_coro_join with a timeout: -EAGAIN (0) / -ETIME leave c joinable. */
int kc_coro_join_ms(kc_coro_t *c, long timeout_ms);
/* Lets the other runnable coroutines of this worker run (a thread: sched_yield). */
void kc_yield(void);
/* Sleeps ms milliseconds (coroutine: parks; thread: sleeps). ms <= 0 yields. */
int kc_sleep_ms(long ms);
/* As kc_sleep_ms; -ECANCELED promptly when cancel is triggered. */
int kc_sleep_ms_c(long ms, const kc_cancel_t *cancel);
/* The running coroutine, NULL in a thread. */
kc_coro_t *kc_self(void);
/* True while c is parked: switched out, waiting for a wake-up or a timer
 * (a hint for monitors and tests: it may change right after the call). */
bool kc_coro_is_parked(const kc_coro_t *c);
/* Process-unique id of a coroutine (0 for NULL). */
uint64_t kc_coro_id(const kc_coro_t *c);

typedef struct kc_sched_stats {
    uint32_t threads;      /* worker threads now                              */
    uint64_t spawned;      /* coroutines started                              */
    uint64_t finished;     /* coroutines ended                                */
    uint64_t live;         /* started and not yet ended                       */
    uint64_t steals;       /* coroutines a worker took from another's queue   */
    uint64_t injected;     /* made runnable via the global queue (foreign threads, overflow) */
    uint64_t switches;     /* switches into coroutines                        */
    uint64_t idle_sleeps;  /* futex sleeps of idle workers                    */
    uint64_t timers;       /* park deadlines in the workers' timer heaps now
                            * (live ones, and ended ones not yet dropped)     */
} kc_sched_stats_t;
/* Counters since the process started (monotonic; `timers` and `live` are
 * levels, not counters). */
void kc_sched_stats(kc_sched_stats_t *out);

/* ------------------------------------------------------------------------ */
/* Utilities                                                                 */
/* ------------------------------------------------------------------------ */

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t kc_now_ns(void);
/* Static description of a kcoro error code (negative errno). */
const char *kc_strerror(int err);

/* ------------------------------------------------------------------------ */
/* Blocking I/O on non-blocking fds (netpoller, kc_netpoll.c)                */
/* ------------------------------------------------------------------------ */

/* Each call first tries the system call; if the fd is not ready it parks the
 * caller (a coroutine switches away, a thread sleeps) until the fd becomes
 * ready, the timeout expires or `cancel` (may be NULL) is triggered. The fd
 * must be non-blocking (O_NONBLOCK / SOCK_NONBLOCK): on a blocking fd the
 * call blocks the whole thread. An fd may be closed with close(2) as usual
 * once no call is blocked on it (with kc_close if it was kc_fd_register'ed).
 * Timeouts as everywhere in kcoro (0 = try once, < 0 = forever), but since
 * these are socket operations a timeout is reported as sockets report it:
 *   -EAGAIN     timeout 0 and the fd was not ready
 *   -ETIMEDOUT  the timeout expired
 *   -ECANCELED  `cancel` was triggered
 *   other       the negative errno of the system call (-EBADF, -ECONNRESET...) */

/* Reads up to n bytes: the count (> 0), 0 at end of file (peer closed). */
ssize_t kc_read(int fd, void *buf, size_t n, long timeout_ms, const kc_cancel_t *cancel);
/* Writes all n bytes, waiting for room as needed: returns n. On sockets a
 * closed peer is -EPIPE (never SIGPIPE). If a failure or the timeout comes
 * after part of the buffer went out, the part's length is returned (short
 * count, like write(2)); the next call reports the error. */
ssize_t kc_write(int fd, const void *buf, size_t n, long timeout_ms, const kc_cancel_t *cancel);
/* Accepts a connection: the new fd, already non-blocking and close-on-exec. */
int kc_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, long timeout_ms,
              const kc_cancel_t *cancel);
/* Connects: 0 once connected, or the connection's error (-ECONNREFUSED...).
 * Timeout 0 returns -EINPROGRESS when the connection is still being made. */
int kc_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, long timeout_ms,
               const kc_cancel_t *cancel);

/* Adds fd to the netpoller once, for good: later calls that wait on it make
 * no epoll_ctl (one system call less per wait; for sockets that live long
 * and wait often, like a server's connections). The owner must then close
 * it with kc_close, never close(2): a plain close leaves the registration
 * stale, and a file that later gets the same number without kc_accept
 * would wait forever. 0 or -errno (-EPERM: a regular file, -EBADF). */
int kc_fd_register(int fd);
/* close(2) that forgets kc_fd_register's registration first: 0 or -errno.
 * Like close(2), only once no call is blocked on fd. */
int kc_close(int fd);

typedef struct kc_netpoll_stats {
    uint64_t waits;    /* operations that had to park for readiness       */
    uint64_t wakeups;  /* parked operations woken by the poller           */
    uint64_t events;   /* epoll events the poller handled                 */
    uint64_t polls;    /* epoll_wait calls that returned events           */
    uint64_t ctls;     /* epoll_ctl calls adding an fd (one per wait on an
                        * fd not kept by kc_fd_register)                  */
} kc_netpoll_stats_t;
/* Counters since the process started (monotonic). */
void kc_netpoll_stats(kc_netpoll_stats_t *out);

/* ------------------------------------------------------------------------ */
/* Distributed channels (kc_ipc.c)                                           */
/* ------------------------------------------------------------------------ */

/* A channel of one process served over a Unix socket and opened by id from
 * other processes, with the local channel's send/recv/close semantics and
 * error codes (-EAGAIN, -ETIME, -EPIPE...). Protocol: length-checked TLV
 * frames, one reply per request (docs/kcoro.md). Only peers with the
 * server's uid are served; the socket file is mode 0600.
 * Errors of every call below also include:
 *   -ENAMETOOLONG  the socket path does not fit in sockaddr_un.sun_path
 *   -ECONNRESET    the connection was lost (server died or closed it); the
 *                  handle stays broken, every later call fails the same way
 *   -ETIMEDOUT     no reply within the request's timeout plus a grace
 *                  period (a hung server); the handle is then broken too
 *   -EPROTO        the peer broke the protocol                              */
#define KC_IPC_ELEM_MAX   (64u * 1024u)          /* largest element served  */
#define KC_IPC_FRAME_MAX  (KC_IPC_ELEM_MAX + 256u) /* largest frame body     */
#define KC_IPC_CHANS_MAX  64                      /* channels per server     */

typedef struct kc_ipc_server kc_ipc_server_t;
typedef struct kc_ipc_chan kc_ipc_chan_t;

/* Listens on `path` (a stale socket file there is replaced; anything else
 * there: -EEXIST; a live server: -EADDRINUSE). Connections are served by
 * coroutines on the kcoro scheduler (started if needed).
 * ERRORS: -EINVAL, -ENAMETOOLONG, -EEXIST, -EADDRINUSE, -ENOMEM, socket errors. */
int kc_ipc_serve(kc_ipc_server_t **out, const char *path);
/* Makes ch reachable under id. ch is not owned and must outlive the server.
 * ERRORS: -EINVAL, -EEXIST (id taken), -ENOSPC (KC_IPC_CHANS_MAX),
 * -EMSGSIZE (elements larger than KC_IPC_ELEM_MAX). */
int kc_ipc_export(kc_ipc_server_t *s, uint32_t id, kc_chan_t *ch);
/* Stops serving: operations waiting on a channel for a client end with
 * -ESHUTDOWN, connections are closed (clients then get -ECONNRESET), the
 * socket file is removed. Waits for every connection coroutine. */
void kc_ipc_server_destroy(kc_ipc_server_t *s);

/* Connects to the server at path and opens channel `id`.
 * ERRORS: -ENOENT (no such id), -ECONNREFUSED / -ENOENT (nobody serves path),
 * -ENAMETOOLONG, -ETIMEDOUT, -EPROTONOSUPPORT (protocol version). */
int kc_ipc_chan_open(kc_ipc_chan_t **out, const char *path, uint32_t id, long timeout_ms);
/* As kc_chan_send / kc_chan_recv / kc_chan_close on the served channel
 * (msg / out: kc_ipc_elem_size bytes). A handle carries one call at a time
 * (a concurrent call fails with -EBUSY); open one handle per thread or
 * coroutine. In a coroutine they park it, in a thread they block it. */
int kc_ipc_send(kc_ipc_chan_t *c, const void *msg, long timeout_ms);
int kc_ipc_recv(kc_ipc_chan_t *c, void *out, long timeout_ms);
/* The same with a cancellation token (may be NULL): -ECANCELED promptly
 * once it is triggered (also before the call). The server is told and its
 * wait on the channel ends, so a cancelled recv takes no element and a
 * cancelled send puts none; if the operation completed before the cancel
 * reached the server, its result (0, the element) is returned instead. The
 * handle stays usable, unless the server does not answer the cancel within
 * a second (a hung server): then it is broken (-ECONNRESET afterwards). */
int kc_ipc_send_c(kc_ipc_chan_t *c, const void *msg, long timeout_ms, const kc_cancel_t *cancel);
int kc_ipc_recv_c(kc_ipc_chan_t *c, void *out, long timeout_ms, const kc_cancel_t *cancel);
int kc_ipc_close(kc_ipc_chan_t *c);
size_t kc_ipc_elem_size(const kc_ipc_chan_t *c);
int kc_ipc_kind(const kc_ipc_chan_t *c);
/* Disconnects and frees the handle (the served channel stays open). */
void kc_ipc_chan_release(kc_ipc_chan_t *c);

#ifdef __cplusplus
}
#endif
#endif /* KCORO_KCORO_H */
