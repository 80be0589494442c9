/* ferry farm: the VolCom task farm's building blocks (employer/employee).
 *
 *   frame codec   length-prefixed binary frames, every length bounded before
 *                 use; an incremental decoder that takes bytes as they come
 *   auth          shared-secret challenge-response (fresh nonces both ways),
 *                 then every frame sealed with an AEAD (AES-256-GCM where
 *                 both CPUs have it, else ChaCha20-Poly1305) under
 *                 per-direction session keys (file bytes: tagged by the same
 *                 AEAD but in clear, unless either side asks for encryption);
 *                 authenticated UDP announces
 *   ledger        the employer's durable task table in SQLite (WAL)
 *   conn          one peer connection on libuv: handshake, sealed frames,
 *                 files streamed in bounded chunks with a BLAKE2b checksum
 *
 * Crypto is libsodium's; nothing here is hand-written cryptography.
 * Conventions: negative errno on failure, a failed call changes nothing,
 * destroy functions accept NULL. Single-threaded (the loop's thread), except
 * that a connection writes big incoming files from a writer thread of its own.
 * The protocol is documented in docs/farm.md.
 */
#ifndef FERRY_FARM_H
#define FERRY_FARM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- limits --------------------------------------------------------------- */

/* 2: 1 MiB DATA frames, negotiated AEAD; 3: DATA frames authenticated, not
 * encrypted, unless either side asks for encrypted file data */
#define FFARM_VERSION 3
#define FFARM_HDR_LEN 16            /* fixed header bytes */
#define FFARM_ID_MAX 128            /* task id bytes at most */
#define FFARM_TAG_LEN 16            /* AEAD tag appended to sealed payloads */
/* File bytes per DATA frame at most: large enough that the per-frame costs
 * (header, tag, syscalls, callbacks) vanish next to the bytes, small enough
 * that both sides' buffers stay a few MiB. */
#define FFARM_CHUNK (1u << 20)
#define FFARM_META_MAX 16384        /* JSON metadata bytes at most */
/* Largest payload on the wire (plaintext at most FFARM_CHUNK, plus the tag). */
#define FFARM_PAYLOAD_MAX (FFARM_CHUNK + FFARM_TAG_LEN)
#define FFARM_FRAME_MAX (FFARM_HDR_LEN + FFARM_ID_MAX + FFARM_PAYLOAD_MAX)
/* The decoder places each frame in its buffer so that the payload starts on
 * this boundary (the page size and beyond any block device's direct-I/O
 * alignment): a received DATA frame's bytes can then go to the disk with
 * O_DIRECT straight from that buffer. Its buffer is one alignment larger. */
#define FFARM_DATA_ALIGN 4096u
#define FFARM_DEC_BUF (FFARM_FRAME_MAX + FFARM_DATA_ALIGN)
#define FFARM_KEY_LEN 32
#define FFARM_NONCE_LEN 32          /* handshake nonces */
#define FFARM_HASH_LEN 32           /* BLAKE2b-256 file checksums */
#define FFARM_AEAD_NONCE_LEN 12     /* frame nonces (the per-direction counter) */

/* Frame AEADs (a bit mask in the handshake). */
#define FFARM_CIPHER_CHACHA 1u      /* ChaCha20-Poly1305 (IETF), always available */
#define FFARM_CIPHER_AES 2u         /* AES-256-GCM, where the CPU has AES-NI + CLMUL */
/* The AEADs this process offers: AES-256-GCM when
 * crypto_aead_aes256gcm_is_available(), ChaCha20-Poly1305 always. The
 * environment variable FERRY_FARM_CIPHER=chacha20 withholds AES (tests). */
unsigned ffarm_ciphers_local(void);
const char *ffarm_cipher_name(unsigned cipher);
/* Bit 7 of the handshake's offer and choice bytes: file bytes (DATA frames)
 * travel in clear under the AEAD's tag (header, id and bytes all additional
 * data: authenticated exactly like a sealed frame, but readable on the
 * wire). Offered unless FERRY_FARM_ENCRYPT_DATA is set to a value other
 * than "0" (the programs' --encrypt-data sets it); chosen only when both
 * sides offer it. Metadata and the handshake are unaffected. */
#define FFARM_MODE_CLEAR_DATA 0x80u
/* FFARM_MODE_CLEAR_DATA when this process offers it, else 0. */
unsigned ffarm_mode_local(void);
#define FFARM_DEFAULT_TCP_PORT 12345
#define FFARM_DEFAULT_UDP_PORT 9876

/* Frame types. Types below 0x10 are the handshake's and travel in clear;
 * every other frame is sealed. */
typedef enum ffarm_type {
  FFARM_T_AUTH1 = 0x01,   /* client -> server: client nonce */
  FFARM_T_AUTH2 = 0x02,   /* server -> client: server nonce + server proof */
  FFARM_T_AUTH3 = 0x03,   /* client -> server: client proof */
  FFARM_T_HELLO = 0x10,   /* server -> client: employee id, slots, held results (JSON) */
  FFARM_T_SCRIPT = 0x11,  /* client -> server: script metadata; a file follows */
  FFARM_T_TASK = 0x12,    /* client -> server: task metadata; a file follows */
  FFARM_T_CANCEL = 0x13,  /* client -> server: stop a task (JSON) */
  FFARM_T_RESULT = 0x14,  /* server -> client: result metadata; a file follows */
  FFARM_T_ACK = 0x15,     /* client -> server: result stored, forget it (JSON) */
  FFARM_T_DATA = 0x20,    /* file bytes (<= FFARM_CHUNK) of the current file */
  FFARM_T_END = 0x21,     /* end of the current file: size (8 bytes BE) + BLAKE2b-256 */
} ffarm_type_t;

/* True for a known type. */
bool ffarm_type_valid(unsigned t);
const char *ffarm_type_name(unsigned t);

/* Task ids (chunk basenames) are 1..FFARM_ID_MAX bytes of [A-Za-z0-9._-],
 * not "." or "..". Nothing else is accepted from the wire or the disk. */
bool ffarm_id_valid(const char *id, size_t len);

/* ---- frame codec ------------------------------------------------------------ */

/* Wire header (big-endian):
 *   0  'F' 'M'        magic
 *   2  version        FFARM_VERSION
 *   3  type           ffarm_type_t
 *   4  id_len   u16   <= FFARM_ID_MAX, id bytes follow the header
 *   6  reserved u16   zero
 *   8  payload  u64   <= FFARM_PAYLOAD_MAX, payload follows the id */
typedef struct ffarm_hdr {
  uint8_t type;            /* frame type */
  uint16_t id_len;         /* task id bytes */
  uint64_t payload_len;    /* payload bytes on the wire */
} ffarm_hdr_t;

/* Encodes a header into 16 bytes. */
void ffarm_hdr_put(uint8_t out[FFARM_HDR_LEN], const ffarm_hdr_t *h);
/* Decodes and checks a header. ERRORS: -EPROTO bad magic, version, type or
 * reserved bits; -EMSGSIZE id or payload over its bound. */
int ffarm_hdr_get(const uint8_t in[FFARM_HDR_LEN], ffarm_hdr_t *h);

/* A decoded frame; id and payload point into the decoder's buffer and stay
 * valid until the next ffarm_dec_feed(). */
typedef struct ffarm_frame {
  uint8_t type;            /* frame type */
  const char *id;          /* task id (not NUL-terminated), id_len bytes */
  uint16_t id_len;         /* id bytes */
  uint8_t *payload;        /* payload (plaintext once opened) */
  size_t len;              /* payload bytes */
  const uint8_t *hdr;      /* the raw header + id (additional data when sealed) */
} ffarm_frame_t;

/* Incremental decoder with one fixed buffer of FFARM_DEC_BUF bytes. */
typedef struct ffarm_dec {
  uint8_t *buf;            /* the buffer; the frame in progress starts at buf + at */
  size_t at;               /* where: 0 until the header is known, then the pad that puts
                              the payload on an FFARM_DATA_ALIGN boundary */
  size_t have;             /* bytes of it received */
  size_t need;             /* bytes it has in total (FFARM_HDR_LEN until the header is known) */
  ffarm_hdr_t hdr;         /* its header once known */
  bool failed;             /* a bad frame was seen: the stream is dead */
} ffarm_dec_t;

int ffarm_dec_init(ffarm_dec_t *d);
void ffarm_dec_destroy(ffarm_dec_t *d);
/* Takes bytes from data[0..len). Sets *used to how many it took. Returns 1
 * with *f filled when a whole frame is ready (bytes after it stay with the
 * caller: call again with data + *used), 0 when it needs more, or a negative
 * errno from ffarm_hdr_get() (and every later call fails the same way). */
int ffarm_dec_feed(ffarm_dec_t *d, const uint8_t *data, size_t len, size_t *used,
                   ffarm_frame_t *f);
/* Zero-copy reading: once a frame's header is known, the rest of its body may
 * be read straight into the decoder. Sets *p and returns how many bytes the
 * frame still needs there (0: none, use ffarm_dec_feed()). */
size_t ffarm_dec_space(ffarm_dec_t *d, uint8_t **p);
/* n (<= what ffarm_dec_space() returned) bytes were written at *p: returns 1
 * with *f filled when the frame is complete, else 0. */
int ffarm_dec_commit(ffarm_dec_t *d, size_t n, ffarm_frame_t *f);

/* ---- keys, handshake, sealing ------------------------------------------------- */

typedef struct ffarm_key {
  uint8_t k[FFARM_KEY_LEN];  /* the shared secret, hashed to 32 bytes */
} ffarm_key_t;

/* Reads a secret file (1 B .. 64 KiB; its bytes are hashed into the key).
 * ERRORS: -errno from open/read; -EINVAL empty or too big; -EPERM readable
 * by group or others. */
int ffarm_key_load(ffarm_key_t *key, const char *path);
/* The well-known key of --insecure mode (all peers in insecure mode agree). */
void ffarm_key_insecure(ffarm_key_t *key);

/* One direction's sealing state. */
typedef struct ffarm_dir {
  uint8_t k[FFARM_KEY_LEN];  /* direction key */
  uint64_t seq;              /* frames sealed/opened so far (the nonce) */
} ffarm_dir_t;

typedef struct ffarm_sess {
  ffarm_dir_t tx;            /* frames we send */
  ffarm_dir_t rx;            /* frames we receive */
  unsigned cipher;           /* FFARM_CIPHER_* agreed in the handshake */
  bool clear_data;           /* DATA frames: tag only, bytes in clear (FFARM_MODE_CLEAR_DATA) */
} ffarm_sess_t;

typedef enum ffarm_hs_state {
  FFARM_HS_START = 0,        /* nothing sent or received */
  FFARM_HS_WAIT2,            /* client: AUTH1 sent, waiting for AUTH2 */
  FFARM_HS_WAIT1,            /* server: waiting for AUTH1 */
  FFARM_HS_WAIT3,            /* server: AUTH2 sent, waiting for AUTH3 */
  FFARM_HS_DONE,             /* both proved the secret; session keys ready */
  FFARM_HS_FAILED,           /* a proof was wrong or a frame out of order */
} ffarm_hs_state_t;

typedef struct ffarm_hs {
  bool server;                         /* accepting side */
  ffarm_hs_state_t state;              /* progress */
  ffarm_key_t key;                     /* shared secret */
  uint8_t mine[FFARM_NONCE_LEN];       /* our fresh nonce */
  uint8_t peer[FFARM_NONCE_LEN];       /* the peer's nonce */
  uint8_t offer;                       /* AEADs the client offered (FFARM_CIPHER_* mask | FFARM_MODE_CLEAR_DATA) */
  uint8_t cipher;                      /* the one the server chose */
  bool clear_data;                     /* the server chose FFARM_MODE_CLEAR_DATA */
} ffarm_hs_t;

/* Handshake steps. Each writes the frame to send (if any) into out (at least
 * FFARM_HDR_LEN + 2*FFARM_NONCE_LEN + 33 bytes) and sets *out_len (0: none).
 * AUTH1 carries the client's AEAD offer, AUTH2 the server's choice (the
 * strongest both have); both proofs cover offer and choice, so nobody in
 * between can change them.
 *   client: ffarm_hs_client(hs) -> AUTH1; ffarm_hs_step(AUTH2) -> AUTH3, DONE
 *   server: ffarm_hs_server(hs); ffarm_hs_step(AUTH1) -> AUTH2;
 *           ffarm_hs_step(AUTH3) -> DONE
 * ERRORS: -EACCES wrong proof (the peer lacks the secret); -EPROTO frame out
 * of order or malformed. After an error the state is FAILED. */
int ffarm_hs_client(ffarm_hs_t *hs, const ffarm_key_t *key, uint8_t *out, size_t *out_len);
void ffarm_hs_server(ffarm_hs_t *hs, const ffarm_key_t *key);
int ffarm_hs_step(ffarm_hs_t *hs, const ffarm_frame_t *f, uint8_t *out, size_t *out_len);
/* Derives the session (only in state DONE). ERRORS: -EINVAL. */
int ffarm_hs_session(const ffarm_hs_t *hs, ffarm_sess_t *s);

/* Bytes a sealed frame with this id and plaintext length takes on the wire. */
size_t ffarm_frame_size(size_t id_len, size_t plain_len);
/* Writes one frame into out (cap bytes): sealed with s->tx when s is not NULL
 * (and s->tx.seq advances), in clear otherwise. Returns bytes written.
 * ERRORS: -EMSGSIZE id or payload over its bound or cap too small; -EINVAL
 * bad id or type. */
ssize_t ffarm_frame_encode(ffarm_sess_t *s, uint8_t type, const char *id, size_t id_len,
                           const void *payload, size_t len, uint8_t *out, size_t cap);
/* Seals in place: the plaintext (len bytes) already sits at
 * out + FFARM_HDR_LEN + id_len; header and id are written before it and the
 * tag after it (out must hold ffarm_frame_size(id_len, len) bytes). Saves the
 * copy of ffarm_frame_encode() for file data. Same errors. */
ssize_t ffarm_frame_seal_inplace(ffarm_sess_t *s, uint8_t type, const char *id, size_t id_len,
                                 size_t len, uint8_t *out);
/* Opens a sealed frame in place (f->len shrinks by the tag, s->rx.seq
 * advances). With s->clear_data, DATA frames are only checked against
 * their tag (their bytes were never encrypted); such a frame's payload must
 * follow its header and id directly, as the decoder hands them out (else
 * -EINVAL). ERRORS: -EBADMSG forged, replayed, reordered or corrupted;
 * -EPROTO a handshake type after the handshake. */
int ffarm_frame_open(ffarm_sess_t *s, ffarm_frame_t *f);

/* ---- discovery ---------------------------------------------------------------- */

#define FFARM_ANNOUNCE_MAX 1024    /* bytes of a UDP announce at most */
/* Seals a JSON announce into out (>= FFARM_ANNOUNCE_MAX): magic, random
 * nonce, ciphertext, tag. Returns its length. ERRORS: -EMSGSIZE. */
ssize_t ffarm_announce_seal(const ffarm_key_t *key, const char *json, uint8_t *out, size_t cap);
/* Opens one; writes the NUL-terminated JSON into json (cap bytes).
 * ERRORS: -EBADMSG not ours or forged; -EMSGSIZE. */
int ffarm_announce_open(const ffarm_key_t *key, const uint8_t *pkt, size_t len, char *json,
                        size_t cap);

/* ---- file checksums ------------------------------------------------------------- */

/* BLAKE2b-256 of a whole file, read in bounded chunks; hex into out (65 bytes).
 * ERRORS: -errno. Sets *size when not NULL. */
int ffarm_hash_file(const char *path, char out[2 * FFARM_HASH_LEN + 1], uint64_t *size);
void ffarm_hex(const uint8_t *in, size_t n, char *out);

/* ---- ledger --------------------------------------------------------------------
 * The employer's durable task table: one SQLite row per task (the spec's
 * task_assignment_t fields plus state, attempts, last error and the chunk's
 * size/mtime/hash), WAL journal, one transaction per state change. A crash
 * loses no committed change (synchronous=NORMAL: a power cut may lose the
 * last commits, a killed process loses nothing). */

typedef struct ffarm_ledger ffarm_ledger_t;

typedef enum ffarm_state {
  FFARM_S_PENDING = 0,     /* waiting for an employee */
  FFARM_S_ASSIGNED,        /* out on an employee */
  FFARM_S_DONE,            /* result stored */
  FFARM_S_FAILED,          /* gave up (last_error says why) */
} ffarm_state_t;
#define FFARM_S_COUNT 4

typedef struct ffarm_task_row {
  char task_id[FFARM_ID_MAX + 1];   /* chunk basename */
  char chunk_file[4096];            /* path of the chunk on the employer */
  uint64_t size;                    /* chunk bytes when registered */
  int64_t mtime_ns;                 /* chunk mtime when registered */
  char hash[2 * FFARM_HASH_LEN + 1];/* chunk BLAKE2b-256 (hex) */
  char employee_id[64];             /* last employee it went to ("" never) */
  char employee_ip[64];             /* that employee's address */
  int64_t assigned_time;            /* unix ms of the last assignment (0 never) */
  bool is_sent;                     /* the chunk reached that employee whole */
  bool is_completed;                /* result stored */
  int64_t completed_time;           /* unix ms the result was stored (0 not yet) */
  uint32_t retry_count;             /* failed attempts so far */
  uint32_t attempts;                /* assignments so far */
  ffarm_state_t state;              /* see ffarm_state_t */
  char last_error[256];             /* why the last attempt failed ("" none) */
} ffarm_task_row_t;

/* Opens (creates) the ledger. ERRORS: -EIO (SQLite error, logged); -ENOMEM. */
int ffarm_ledger_open(ffarm_ledger_t **out, const char *path);
void ffarm_ledger_close(ffarm_ledger_t *l);
/* Reads one task. ERRORS: -ENOENT; -EIO. */
int ffarm_ledger_get(ffarm_ledger_t *l, const char *id, ffarm_task_row_t *row);
/* Registers a task, or re-registers a changed chunk as a new task: state
 * pending, attempts/retries/employee/result fields cleared. */
int ffarm_ledger_put(ffarm_ledger_t *l, const char *id, const char *chunk_file, uint64_t size,
                     int64_t mtime_ns, const char *hash);
/* Same chunk, new mtime (hash unchanged): only the mtime is updated. */
int ffarm_ledger_touch(ffarm_ledger_t *l, const char *id, int64_t mtime_ns);
/* State changes (each one transaction). ERRORS: -ENOENT unknown; -EIO. */
int ffarm_ledger_assign(ffarm_ledger_t *l, const char *id, const char *employee_id,
                        const char *employee_ip, int64_t now_ms);
int ffarm_ledger_sent(ffarm_ledger_t *l, const char *id);
int ffarm_ledger_done(ffarm_ledger_t *l, const char *id, int64_t now_ms);
/* An attempt failed and the task goes back to pending (retry_count + 1). */
int ffarm_ledger_retry(ffarm_ledger_t *l, const char *id, const char *error);
/* The task gave up for good. */
int ffarm_ledger_fail(ffarm_ledger_t *l, const char *id, const char *error);
/* After a restart: every task still out (assigned) goes back to pending.
 * Returns how many, or -EIO. */
int ffarm_ledger_resume(ffarm_ledger_t *l);
/* Calls fn for every task (state < 0) or every task in `state`, in task id
 * order; a non-zero return from fn stops and is returned. */
int ffarm_ledger_each(ffarm_ledger_t *l, int state,
                      int (*fn)(const ffarm_task_row_t *row, void *arg), void *arg);
/* Tasks per state. */
int ffarm_ledger_counts(ffarm_ledger_t *l, uint64_t counts[FFARM_S_COUNT]);
const char *ffarm_state_name(ffarm_state_t s);

/* ---- connection ----------------------------------------------------------------
 * One peer on a libuv TCP handle: the handshake (10 s to complete), then
 * sealed frames. Files go out one at a time as meta frame, DATA frames of at
 * most FFARM_CHUNK bytes and an END frame with size and BLAKE2b-256 (every
 * frame's AEAD tag checks its chunk; the receiver compares the END's hash
 * with the one it expects rather than hashing again); at most
 * FFARM_CONN_WBUF bytes are queued in the kernel's direction at once, so
 * memory stays bounded whatever the file size. Small messages may pass
 * between the frames of a file. */

#define FFARM_CONN_WBUF (4u << 20)

typedef struct ffarm_conn ffarm_conn_t;

typedef struct ffarm_conn_cbs {
  /* The peer proved the secret; frames may flow. */
  void (*on_ready)(ffarm_conn_t *c, void *arg);
  /* A sealed non-file frame (HELLO, TASK, RESULT, ...), payload NUL-terminated
   * (JSON). For a meta frame that a file follows, call ffarm_conn_recv_file()
   * before returning. */
  void (*on_msg)(ffarm_conn_t *c, uint8_t type, const char *id, const char *json, size_t len,
                 void *arg);
  /* The incoming file ended: 0 whole and checked, -EBADMSG size or checksum
   * wrong, -EIO a write to its file failed. */
  void (*on_file)(ffarm_conn_t *c, const char *id, int status, void *arg);
  /* The outgoing file with this cookie is fully handed to the socket (0), or
   * could not be read (-errno). */
  void (*on_sent)(ffarm_conn_t *c, uint64_t cookie, int status, void *arg);
  /* The connection is gone (err: 0 closed by us, -EACCES the peer lacks the
   * secret, -EPROTO bad frame, -ETIMEDOUT handshake too slow, -ECONNRESET /
   * -EOF the peer went away). The conn is freed right after this returns. */
  void (*on_close)(ffarm_conn_t *c, int err, void *arg);
} ffarm_conn_cbs_t;

/* Creates a conn whose TCP handle the caller then connects or accepts into
 * (ffarm_conn_tcp), then calls ffarm_conn_start(). ERRORS: -ENOMEM. */
int ffarm_conn_init(ffarm_conn_t **out, uv_loop_t *loop, bool server, const ffarm_key_t *key,
                    const ffarm_conn_cbs_t *cbs, void *arg);
uv_tcp_t *ffarm_conn_tcp(ffarm_conn_t *c);
/* Starts reading and the handshake. On error the caller closes the conn. */
int ffarm_conn_start(ffarm_conn_t *c);
/* Closes (once): on_close(err) follows from the loop. Accepts NULL. */
void ffarm_conn_close(ffarm_conn_t *c, int err);
bool ffarm_conn_ready(const ffarm_conn_t *c);
/* The peer's address as text ("" unknown). */
const char *ffarm_conn_peer(const ffarm_conn_t *c);
/* What the handshake agreed, for logs: e.g. "aes-256-gcm, file data in
 * clear" or "chacha20-poly1305, file data encrypted" ("" before ready). */
const char *ffarm_conn_mode(const ffarm_conn_t *c);
/* Sends a sealed message (json may be NULL/0). ERRORS: -ENOTCONN not ready
 * or closing; -EMSGSIZE; -ENOMEM. */
int ffarm_conn_send(ffarm_conn_t *c, uint8_t type, const char *id, const char *json, size_t len);
/* Queues a file: meta frame (type, id, json) then its bytes from fd (owned
 * by the conn from now on, closed when done). on_sent(cookie) follows.
 * hash: the file's BLAKE2b-256 when the caller knows it already (the
 * employer hashed each chunk when it scanned it), so each byte is hashed
 * once in all; the conn then checks that the file's size and mtime did not
 * change while it was read, else the receiver rejects it. NULL: hashed while
 * streaming. */
int ffarm_conn_send_file(ffarm_conn_t *c, uint8_t type, const char *id, const char *json,
                         int fd, uint64_t cookie, const uint8_t *hash);
/* From on_msg: the file that follows goes to fd (not owned; -1 discards it).
 * hash: the BLAKE2b-256 the sender must state in END (copied; NULL: any);
 * on_file gets -EBADMSG when it differs or the size is wrong. */
int ffarm_conn_recv_file(ffarm_conn_t *c, int fd, const uint8_t *hash);
/* Bytes sent / received on the wire so far. */
uint64_t ffarm_conn_bytes_out(const ffarm_conn_t *c);
uint64_t ffarm_conn_bytes_in(const ffarm_conn_t *c);
void *ffarm_conn_arg(const ffarm_conn_t *c);
void ffarm_conn_set_arg(ffarm_conn_t *c, void *arg);

#ifdef __cplusplus
}
#endif
#endif /* FERRY_FARM_H */
