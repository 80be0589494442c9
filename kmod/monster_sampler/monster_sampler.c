// SPDX-License-Identifier: GPL-2.0
/*
 * monster_sampler.ko: the Monster spec's kernel side (issue 11).
 *
 * /dev/monster_sampler (a character device, mode 0600, or 0660 with the
 * group given by the `group` parameter): 15 sample pipes on kernel ring
 * buffers with read/write wait queues, 256 wait states, coordination of a
 * shard ("Coordinated N apps on shard S"), and a sampler: one hrtimer per
 * CPU that records the task running there (pid, tid, cpu, time, user or
 * kernel mode, comm) into a per-CPU ring read by MONSTER_IOC_READ_SAMPLES.
 * debugfs: monster_sampler/{pipes,wait_states} in the spec's line formats.
 *
 * One open file is one handle: at most one pipe end and one wait state.
 * release() drops both and wakes every peer, so a process that dies (any
 * signal) releases what it held. The ABI is include/ferry/monster_ioctl.h,
 * shared with the user-space library.
 *
 * Locking: each pipe has a mutex (the ring and its counters; user copies are
 * done outside it, into/out of a kernel copy of the sample). Wait states
 * share one spinlock (short, never held while sleeping or copying to user).
 * Per-CPU sample rings have their own spinlock, taken with interrupts off
 * (the hrtimer callback runs in hard interrupt context).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cdev.h>
#include <linux/cpu.h>
#include <linux/device.h>
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/hrtimer.h>
#include <linux/ktime.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <linux/wait.h>
#include <asm/irq_regs.h>
#include <asm/ptrace.h>

#include <ferry/monster_ioctl.h>

static unsigned int capacity = 1024;
module_param(capacity, uint, 0444);
MODULE_PARM_DESC(capacity, "samples per pipe ring, 1..65536 (default 1024)");

static unsigned int sample_hz = 100;
module_param(sample_hz, uint, 0444);
MODULE_PARM_DESC(sample_hz, "sampler ticks per second per CPU, 1..10000 (default 100)");

static unsigned int sample_ring = 4096;
module_param(sample_ring, uint, 0444);
MODULE_PARM_DESC(sample_ring, "samples kept per CPU, 16..65536 (default 4096)");

static int group = -1;
module_param(group, int, 0444);
MODULE_PARM_DESC(group, "gid whose members may use /dev/monster_sampler (node mode 0660 "
			"and that group); -1 (default): root only, mode 0600");

#define MS_SAMPLES_PER_CALL 4096u /* READ_SAMPLES copies at most this many */

/* One pipe: a bounded FIFO of samples. */
struct monster_pipe {
	int id;                      /* 0..14                                  */
	pid_t producer_pid;          /* last registered producer, 0 none       */
	pid_t consumer_pid;          /* last registered consumer, 0 none       */
	struct process_sample *ring; /* capacity slots                         */
	u32 head;                    /* next to read (free-running)            */
	u32 tail;                    /* next to write (free-running)           */
	u64 written;                 /* samples written this session           */
	u64 nread;                   /* samples read this session              */
	wait_queue_head_t read_wait; /* readers: data or end of stream         */
	wait_queue_head_t write_wait;/* writers: space, a consumer, or closed  */
	atomic_t readers;            /* registered consumers                   */
	atomic_t writers;            /* registered producers                   */
	bool had_reader;             /* a consumer registered this session     */
	bool had_writer;             /* a producer registered this session     */
	bool closed;                 /* a side had registered and is all gone  */
	struct mutex lock;           /* guards everything above but the queues */
};

/* One wait state slot. */
struct wait_state {
	pid_t pid;                   /* owner (tgid)                           */
	u8 shard_id;                 /* 0..255                                 */
	u64 sequence;                /* creation order                         */
	bool ready;                  /* signalled since the last coordination  */
	bool in_use;                 /* slot taken                             */
	u32 coords;                  /* coordinations delivered to this use    */
	wait_queue_head_t wait_queue;/* its waiter                             */
};

/* Per open file. */
struct monster_file {
	struct mutex lock;           /* guards the fields below                */
	int pipe;                    /* pipe id, -1 none                       */
	bool producer;               /* which end                              */
	int slot;                    /* wait state slot, -1 none               */
	u64 sequence;                /* that slot's sequence when taken        */
	u32 seen;                    /* coordinations consumed                 */
};

/* Per-CPU sampler. */
struct monster_cpu {
	struct hrtimer timer;        /* fires sample_hz times a second         */
	spinlock_t lock;             /* guards ring, head, tail (irqsave)      */
	struct process_sample *ring; /* sample_ring slots                      */
	u32 head;                    /* next to hand out                       */
	u32 tail;                    /* next to fill                           */
	u64 dropped;                 /* samples lost to a full ring            */
	bool started;                /* timer was started                      */
};

static struct monster_pipe pipes[MONSTER_NUM_PIPES];
static struct wait_state waits[MONSTER_NUM_WAIT_STATES];
static DEFINE_SPINLOCK(wait_lock);           /* guards waits[], seq, log */
static DECLARE_WAIT_QUEUE_HEAD(ready_wq);    /* barrier waiters          */
static DECLARE_WAIT_QUEUE_HEAD(sample_wq);   /* READ_SAMPLES waiters     */
static u64 next_sequence = 1;
static struct monster_log_info coord_log[MONSTER_LOG_ENTRIES];
static u64 log_seq;                          /* entries ever logged      */
static struct monster_cpu __percpu *cpus;
static u64 period_ns;
static struct dentry *dbg_dir;

/* --- timeouts -------------------------------------------------------- */

/* ms (0 try, < 0 forever) to jiffies for wait_event_*_timeout. */
static long ms_to_timeout(s64 ms)
{
	if (ms < 0)
		return MAX_SCHEDULE_TIMEOUT;
	if (ms > (s64)INT_MAX)
		ms = INT_MAX;
	return (long)msecs_to_jiffies((unsigned int)ms);
}

/* --- pipes ----------------------------------------------------------- */

static void pipe_update_closed(struct monster_pipe *p)
{
	int r = atomic_read(&p->readers), w = atomic_read(&p->writers);

	if (r == 0 && w == 0) {
		/* Last handle gone: the next open starts a new session. */
		p->head = p->tail = 0;
		p->written = p->nread = 0;
		p->had_reader = p->had_writer = false;
		p->closed = false;
		p->producer_pid = p->consumer_pid = 0;
		return;
	}
	p->closed = (p->had_writer && w == 0) || (p->had_reader && r == 0);
}

static int pipe_register(int id, bool producer)
{
	struct monster_pipe *p = &pipes[id];

	mutex_lock(&p->lock);
	if (producer) {
		atomic_inc(&p->writers);
		p->had_writer = true;
		p->producer_pid = task_tgid_nr(current);
	} else {
		atomic_inc(&p->readers);
		p->had_reader = true;
		p->consumer_pid = task_tgid_nr(current);
	}
	pipe_update_closed(p);
	mutex_unlock(&p->lock);
	/* A writer waiting for a consumer may go on now. */
	wake_up_interruptible_all(&p->write_wait);
	wake_up_interruptible_all(&p->read_wait);
	return 0;
}

static void pipe_unregister(int id, bool producer)
{
	struct monster_pipe *p = &pipes[id];

	mutex_lock(&p->lock);
	if (producer) {
		if (atomic_dec_return(&p->writers) == 0)
			p->producer_pid = 0;
	} else {
		if (atomic_dec_return(&p->readers) == 0)
			p->consumer_pid = 0;
	}
	pipe_update_closed(p);
	mutex_unlock(&p->lock);
	/* Every close wakes every waiter on the pipe. */
	wake_up_interruptible_all(&p->read_wait);
	wake_up_interruptible_all(&p->write_wait);
}

/* Conditions read without the lock (the loop rechecks under it). */
static bool pipe_readable(struct monster_pipe *p)
{
	return READ_ONCE(p->tail) != READ_ONCE(p->head) || READ_ONCE(p->closed);
}

static bool pipe_writable(struct monster_pipe *p)
{
	return READ_ONCE(p->closed) ||
	       (atomic_read(&p->readers) > 0 &&
		READ_ONCE(p->tail) - READ_ONCE(p->head) < capacity);
}

/* One attempt at writing, under p->lock: 0 done, -EPIPE, or -EAGAIN
 * (full, or no consumer yet: wait for space). */
static int pipe_try_write(struct monster_pipe *p, struct process_sample *s)
{
	if (p->closed)
		return -EPIPE;
	if (atomic_read(&p->readers) == 0 || p->tail - p->head >= capacity)
		return -EAGAIN;
	p->ring[p->tail % capacity] = *s;
	p->tail++;
	p->written++;
	return 0;
}

/* One attempt at reading, under p->lock: 0 done, -EPIPE (closed and
 * drained), or -EAGAIN (empty: wait for data). */
static int pipe_try_read(struct monster_pipe *p, struct process_sample *s)
{
	if (p->tail != p->head) {
		*s = p->ring[p->head % capacity];
		p->head++;
		p->nread++;
		return 0;
	}
	return p->closed ? -EPIPE : -EAGAIN;
}

/* What a wait_event_interruptible_timeout() result means for a loop that
 * waits until cond: 0 go on (*left is what remains), -EINTR or -ETIME. */
static int wait_step(long w, bool cond, long *left)
{
	if (w < 0)
		return -EINTR;
	if (w == 0 && !cond)
		return -ETIME;
	if (*left != MAX_SCHEDULE_TIMEOUT)
		*left = w ? w : 1;
	return 0;
}

/* Writes (write) or reads one sample, waiting up to timeout_ms (0 try,
 * < 0 forever). Both directions are one loop: try under the pipe's mutex,
 * wake the other side on success, else sleep on this side's queue until
 * the condition may have changed. */
static int pipe_xfer(int id, struct process_sample *s, s64 timeout_ms, bool write)
{
	struct monster_pipe *p = &pipes[id];
	wait_queue_head_t *mine = write ? &p->write_wait : &p->read_wait;
	wait_queue_head_t *peer = write ? &p->read_wait : &p->write_wait;
	long left = ms_to_timeout(timeout_ms);

	for (;;) {
		long w;
		int rc;

		mutex_lock(&p->lock);
		rc = write ? pipe_try_write(p, s) : pipe_try_read(p, s);
		mutex_unlock(&p->lock);
		if (rc == 0)
			wake_up_interruptible(peer);
		if (rc != -EAGAIN || timeout_ms == 0)
			return rc;
		w = wait_event_interruptible_timeout(*mine,
						     write ? pipe_writable(p) : pipe_readable(p), left);
		rc = wait_step(w, write ? pipe_writable(p) : pipe_readable(p), &left);
		if (rc < 0)
			return rc;
	}
}

/* --- wait states ------------------------------------------------------- */

/* The file's slot if it is still the one it took; caller holds wait_lock. */
static struct wait_state *own_slot(struct monster_file *mf)
{
	struct wait_state *ws;

	if (mf->slot < 0 || mf->slot >= MONSTER_NUM_WAIT_STATES)
		return NULL;
	ws = &waits[mf->slot];
	if (!ws->in_use || ws->sequence != mf->sequence)
		return NULL;
	return ws;
}

static int wait_create(struct monster_file *mf, u8 shard)
{
	int i;

	if (mf->slot >= 0)
		return -EBUSY;
	spin_lock(&wait_lock);
	for (i = 0; i < MONSTER_NUM_WAIT_STATES; i++) {
		struct wait_state *ws = &waits[i];

		if (ws->in_use)
			continue;
		ws->in_use = true;
		ws->pid = task_tgid_nr(current);
		ws->shard_id = shard;
		ws->sequence = next_sequence++;
		ws->ready = false;
		ws->coords = 0;
		mf->slot = i;
		mf->sequence = ws->sequence;
		mf->seen = 0;
		spin_unlock(&wait_lock);
		return 0;
	}
	spin_unlock(&wait_lock);
	return -ENOSPC;
}

static void wait_free(struct monster_file *mf)
{
	struct wait_state *ws;

	spin_lock(&wait_lock);
	ws = own_slot(mf);
	if (ws) {
		ws->in_use = false;
		ws->ready = false;
		ws->pid = 0;
		/* Under the lock: the wait queue outlives the use, so a waiter
		 * still on it (another thread of the app) sees !in_use. */
		wake_up_all(&ws->wait_queue);
	}
	spin_unlock(&wait_lock);
	mf->slot = -1;
	wake_up_all(&ready_wq);
}

/* 1: coordinated (consumes it), 0: not yet, -EIDRM: slot gone. */
static int wait_check(struct monster_file *mf)
{
	struct wait_state *ws;
	int rc;

	spin_lock(&wait_lock);
	ws = own_slot(mf);
	if (!ws)
		rc = -EIDRM;
	else if (ws->coords != mf->seen) {
		mf->seen = ws->coords;
		rc = 1;
	} else
		rc = 0;
	spin_unlock(&wait_lock);
	return rc;
}

static bool wait_cond(struct wait_state *ws, struct monster_file *mf)
{
	return !READ_ONCE(ws->in_use) || READ_ONCE(ws->sequence) != mf->sequence ||
	       READ_ONCE(ws->coords) != mf->seen;
}

static int wait_for_coord(struct monster_file *mf, s64 timeout_ms)
{
	long left = ms_to_timeout(timeout_ms);
	struct wait_state *ws;
	int rc;

	if (mf->slot < 0)
		return -EBADF;
	ws = &waits[mf->slot];
	for (;;) {
		long w;

		rc = wait_check(mf);
		if (rc < 0)
			return rc;
		if (rc == 1)
			return 0;
		if (timeout_ms == 0)
			return -EAGAIN;
		w = wait_event_interruptible_timeout(ws->wait_queue, wait_cond(ws, mf), left);
		rc = wait_step(w, wait_cond(ws, mf), &left);
		if (rc < 0)
			return rc;
	}
}

static int signal_ready(struct monster_file *mf)
{
	struct wait_state *ws;

	spin_lock(&wait_lock);
	ws = own_slot(mf);
	if (ws)
		ws->ready = true;
	spin_unlock(&wait_lock);
	if (!ws)
		return -EIDRM;
	wake_up_all(&ready_wq);
	return 0;
}

static int coordinate_shard(u8 shard)
{
	struct monster_log_info *e;
	int i, count = 0;

	spin_lock(&wait_lock);
	for (i = 0; i < MONSTER_NUM_WAIT_STATES; i++) {
		struct wait_state *ws = &waits[i];

		if (!ws->in_use || ws->shard_id != shard)
			continue;
		ws->coords++;
		ws->ready = false;
		count++;
		/* wake_up_all only takes the queue's own spinlock: no sleep. */
		wake_up_all(&ws->wait_queue);
	}
	e = &coord_log[log_seq % MONSTER_LOG_ENTRIES];
	e->seq = ++log_seq;
	e->timestamp_ns = ktime_get_ns();
	e->pid = task_tgid_nr(current);
	e->shard = shard;
	e->count = count;
	e->reserved = 0;
	spin_unlock(&wait_lock);
	pr_info("Coordinated %d apps on shard %u\n", count, shard);
	return count;
}

static int count_ready(u32 shard)
{
	int i, n = 0;

	spin_lock(&wait_lock);
	for (i = 0; i < MONSTER_NUM_WAIT_STATES; i++)
		if (waits[i].in_use && waits[i].shard_id == shard && waits[i].ready)
			n++;
	spin_unlock(&wait_lock);
	return n;
}

static int wait_ready(struct monster_barrier *b)
{
	long left = ms_to_timeout(b->timeout_ms);
	int n, rc;

	for (;;) {
		long w;

		n = count_ready(b->shard);
		if ((u32)n >= b->n)
			break;
		if (b->timeout_ms == 0)
			return -EAGAIN;
		w = wait_event_interruptible_timeout(ready_wq, (u32)count_ready(b->shard) >= b->n,
						     left);
		rc = wait_step(w, (u32)count_ready(b->shard) >= b->n, &left);
		if (rc < 0)
			return rc;
	}
	b->ready = n;
	return n;
}

/* --- sampler ------------------------------------------------------------ */

static enum hrtimer_restart sample_tick(struct hrtimer *t)
{
	struct monster_cpu *mc = container_of(t, struct monster_cpu, timer);
	struct pt_regs *regs = get_irq_regs();
	struct task_struct *tsk = current;
	struct process_sample s;
	unsigned long flags;
	bool user = regs && user_mode(regs);

	hrtimer_forward_now(t, ns_to_ktime(period_ns));
	if (is_idle_task(tsk))
		return HRTIMER_RESTART;
	memset(&s, 0, sizeof(s));
	s.pid = task_tgid_nr(tsk);
	s.tid = task_pid_nr(tsk);
	s.cpu = smp_processor_id();
	s.state = 'R';
	s.flags = user ? MONSTER_SAMPLE_USER : MONSTER_SAMPLE_KERNEL;
	s.timestamp_ns = ktime_get_ns();
	/* Statistical sampling: the tick's period is charged to the mode the
	 * CPU was in, so a thread's deltas add up to its sampled CPU time. */
	if (user)
		s.utime_delta_ns = period_ns;
	else
		s.stime_delta_ns = period_ns;
	if (tsk->mm)
		s.rss_kb = get_mm_rss(tsk->mm) << (PAGE_SHIFT - 10);
	/* current's comm: written only by the task itself (prctl) or under
	 * task_lock; a torn name is harmless, it is always NUL-terminated. */
	strscpy(s.comm, tsk->comm, sizeof(s.comm));

	spin_lock_irqsave(&mc->lock, flags);
	if (mc->tail - mc->head < sample_ring) {
		mc->ring[mc->tail % sample_ring] = s;
		mc->tail++;
	} else {
		mc->dropped++;
	}
	spin_unlock_irqrestore(&mc->lock, flags);
	if (wq_has_sleeper(&sample_wq))
		wake_up_interruptible(&sample_wq);
	return HRTIMER_RESTART;
}

static void sampler_start_on_cpu(void *unused)
{
	struct monster_cpu *mc = this_cpu_ptr(cpus);

	hrtimer_start(&mc->timer, ns_to_ktime(period_ns), HRTIMER_MODE_REL_PINNED);
	mc->started = true;
}

static bool samples_available(void)
{
	int cpu;

	for_each_possible_cpu(cpu) {
		struct monster_cpu *mc = per_cpu_ptr(cpus, cpu);

		if (READ_ONCE(mc->tail) != READ_ONCE(mc->head))
			return true;
	}
	return false;
}

/* Takes up to n samples from the per-CPU rings into buf. */
static u32 samples_take(struct process_sample *buf, u32 n)
{
	u32 got = 0;
	int cpu;

	for_each_possible_cpu(cpu) {
		struct monster_cpu *mc = per_cpu_ptr(cpus, cpu);
		unsigned long flags;

		spin_lock_irqsave(&mc->lock, flags);
		while (got < n && mc->head != mc->tail) {
			buf[got++] = mc->ring[mc->head % sample_ring];
			mc->head++;
		}
		spin_unlock_irqrestore(&mc->lock, flags);
	}
	return got;
}

static long read_samples(struct monster_buf *b)
{
	struct process_sample *buf;
	u32 n = min_t(u32, b->n, MS_SAMPLES_PER_CALL);
	u32 got;
	long rc = 0;

	b->count = 0;
	if (n == 0)
		return 0;
	if (!samples_available()) {
		long left = ms_to_timeout(b->timeout_ms), w;

		if (b->timeout_ms == 0)
			return -EAGAIN;
		w = wait_event_interruptible_timeout(sample_wq, samples_available(), left);
		rc = wait_step(w, samples_available(), &left);
		if (rc < 0)
			return rc;
	}
	buf = kvmalloc_array(n, sizeof(*buf), GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	got = samples_take(buf, n);
	if (copy_to_user(u64_to_user_ptr(b->ptr), buf, (size_t)got * sizeof(*buf)))
		rc = -EFAULT; /* those samples are lost: the caller gave a bad buffer */
	else
		b->count = got;
	kvfree(buf);
	return rc;
}

/* --- status ----------------------------------------------------------------- */

static long pipe_status(struct monster_buf *b)
{
	struct monster_pipe_info info[MONSTER_NUM_PIPES];
	u32 n = min_t(u32, b->n, MONSTER_NUM_PIPES), i;

	memset(info, 0, sizeof(info));
	for (i = 0; i < n; i++) {
		struct monster_pipe *p = &pipes[i];

		mutex_lock(&p->lock);
		info[i].id = i;
		info[i].producer = p->producer_pid;
		info[i].consumer = p->consumer_pid;
		info[i].readers = atomic_read(&p->readers);
		info[i].writers = atomic_read(&p->writers);
		info[i].closed = p->closed;
		info[i].capacity = capacity;
		info[i].count = p->tail - p->head;
		info[i].written = p->written;
		info[i].read = p->nread;
		mutex_unlock(&p->lock);
	}
	if (copy_to_user(u64_to_user_ptr(b->ptr), info, n * sizeof(info[0])))
		return -EFAULT;
	b->count = n;
	return 0;
}

static long wait_status(struct monster_buf *b)
{
	struct monster_wait_info *info;
	u32 n = min_t(u32, b->n, MONSTER_NUM_WAIT_STATES), got = 0, i;
	long rc = 0;

	info = kcalloc(MONSTER_NUM_WAIT_STATES, sizeof(*info), GFP_KERNEL);
	if (!info)
		return -ENOMEM;
	spin_lock(&wait_lock);
	for (i = 0; i < MONSTER_NUM_WAIT_STATES && got < n; i++) {
		if (!waits[i].in_use)
			continue;
		info[got].id = i;
		info[got].pid = waits[i].pid;
		info[got].shard = waits[i].shard_id;
		info[got].ready = waits[i].ready;
		info[got].sequence = waits[i].sequence;
		got++;
	}
	spin_unlock(&wait_lock);
	if (copy_to_user(u64_to_user_ptr(b->ptr), info, got * sizeof(*info)))
		rc = -EFAULT;
	else
		b->count = got;
	kfree(info);
	return rc;
}

static long log_read(struct monster_buf *b)
{
	struct monster_log_info *info;
	u32 n = min_t(u32, b->n, MONSTER_LOG_ENTRIES), got = 0;
	u64 first, s;
	long rc = 0;

	info = kcalloc(MONSTER_LOG_ENTRIES, sizeof(*info), GFP_KERNEL);
	if (!info)
		return -ENOMEM;
	spin_lock(&wait_lock);
	first = log_seq > MONSTER_LOG_ENTRIES ? log_seq - MONSTER_LOG_ENTRIES : 0;
	if (log_seq - first > n)
		first = log_seq - n;
	for (s = first; s < log_seq; s++)
		info[got++] = coord_log[s % MONSTER_LOG_ENTRIES];
	spin_unlock(&wait_lock);
	if (copy_to_user(u64_to_user_ptr(b->ptr), info, got * sizeof(*info)))
		rc = -EFAULT;
	else
		b->count = got;
	kfree(info);
	return rc;
}

/* --- file operations ----------------------------------------------------------- */

static int ms_open(struct inode *inode, struct file *f)
{
	struct monster_file *mf = kzalloc(sizeof(*mf), GFP_KERNEL);

	if (!mf)
		return -ENOMEM;
	mutex_init(&mf->lock);
	mf->pipe = -1;
	mf->slot = -1;
	f->private_data = mf;
	return 0;
}

static int ms_release(struct inode *inode, struct file *f)
{
	struct monster_file *mf = f->private_data;

	if (mf->pipe >= 0)
		pipe_unregister(mf->pipe, mf->producer);
	if (mf->slot >= 0)
		wait_free(mf);
	mutex_destroy(&mf->lock);
	kfree(mf);
	return 0;
}

/* The fd's pipe end, or -EBADF. Read once: the end does not change while
 * the call uses it except through PIPE_CLOSE (then the call still ends). */
static int file_pipe(struct monster_file *mf, bool want_producer)
{
	int id;
	bool prod;

	mutex_lock(&mf->lock);
	id = mf->pipe;
	prod = mf->producer;
	mutex_unlock(&mf->lock);
	if (id < 0 || id >= MONSTER_NUM_PIPES || prod != want_producer)
		return -EBADF;
	return id;
}

static long do_xfer(struct monster_file *mf, bool write, void __user *usample, s64 timeout_ms)
{
	struct process_sample s;
	int id = file_pipe(mf, write);
	int rc;

	if (id < 0)
		return id;
	if (write) {
		if (copy_from_user(&s, usample, sizeof(s)))
			return -EFAULT;
		s.comm[MONSTER_COMM_LEN - 1] = '\0';
		return pipe_xfer(id, &s, timeout_ms, true);
	}
	/* Check the buffer before taking a sample out of the pipe. */
	if (!access_ok(usample, sizeof(s)))
		return -EFAULT;
	rc = pipe_xfer(id, &s, timeout_ms, false);
	if (rc < 0)
		return rc;
	if (copy_to_user(usample, &s, sizeof(s)))
		return -EFAULT;
	return 0;
}

static long ms_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	struct monster_file *mf = f->private_data;
	void __user *uarg = (void __user *)arg;
	long rc;

	switch (cmd) {
	case MONSTER_IOC_PIPE_OPEN: {
		int v, ring;
		bool producer;

		if (copy_from_user(&v, uarg, sizeof(v)))
			return -EFAULT;
		if (v & ~(MONSTER_PIPE_PRODUCER | 0xff))
			return -EINVAL;
		ring = v & 0xff;
		producer = !!(v & MONSTER_PIPE_PRODUCER);
		if (ring >= MONSTER_NUM_PIPES)
			return -EINVAL;
		mutex_lock(&mf->lock);
		if (mf->pipe >= 0) {
			mutex_unlock(&mf->lock);
			return -EBUSY;
		}
		pipe_register(ring, producer);
		mf->pipe = ring;
		mf->producer = producer;
		mutex_unlock(&mf->lock);
		return 0;
	}
	case MONSTER_IOC_PIPE_CLOSE:
		mutex_lock(&mf->lock);
		if (mf->pipe < 0) {
			mutex_unlock(&mf->lock);
			return -EBADF;
		}
		pipe_unregister(mf->pipe, mf->producer);
		mf->pipe = -1;
		mutex_unlock(&mf->lock);
		return 0;
	case MONSTER_IOC_PIPE_READ:
		return do_xfer(mf, false, uarg, -1);
	case MONSTER_IOC_PIPE_WRITE:
		return do_xfer(mf, true, uarg, -1);
	case MONSTER_IOC_PIPE_READ_T:
	case MONSTER_IOC_PIPE_WRITE_T: {
		struct monster_xfer x;

		if (copy_from_user(&x, uarg, sizeof(x)))
			return -EFAULT;
		if (x.reserved)
			return -EINVAL;
		return do_xfer(mf, cmd == MONSTER_IOC_PIPE_WRITE_T, u64_to_user_ptr(x.sample),
			       x.timeout_ms);
	}
	case MONSTER_IOC_WAIT_CREATE: {
		u8 shard;

		/* u8 covers exactly the 256 shards: every value is valid. */
		if (copy_from_user(&shard, uarg, sizeof(shard)))
			return -EFAULT;
		mutex_lock(&mf->lock);
		rc = wait_create(mf, shard);
		mutex_unlock(&mf->lock);
		return rc;
	}
	case MONSTER_IOC_WAIT_COORD: {
		u64 t;

		if (copy_from_user(&t, uarg, sizeof(t)))
			return -EFAULT;
		/* Not under mf->lock: it sleeps; slot/sequence only change on
		 * WAIT_FREE/WAIT_CREATE, which the API never races with this. */
		return wait_for_coord(mf, (s64)t);
	}
	case MONSTER_IOC_COORD_SHARD: {
		u8 shard;

		if (copy_from_user(&shard, uarg, sizeof(shard)))
			return -EFAULT;
		return coordinate_shard(shard);
	}
	case MONSTER_IOC_SIGNAL_READY:
		if (mf->slot < 0)
			return -EBADF;
		return signal_ready(mf);
	case MONSTER_IOC_WAIT_FREE:
		mutex_lock(&mf->lock);
		if (mf->slot < 0) {
			mutex_unlock(&mf->lock);
			return -EBADF;
		}
		wait_free(mf);
		mutex_unlock(&mf->lock);
		return 0;
	case MONSTER_IOC_WAIT_INFO: {
		struct monster_wait_id id = {0};

		mutex_lock(&mf->lock);
		if (mf->slot < 0) {
			mutex_unlock(&mf->lock);
			return -EBADF;
		}
		id.slot = mf->slot;
		id.sequence = mf->sequence;
		mutex_unlock(&mf->lock);
		return copy_to_user(uarg, &id, sizeof(id)) ? -EFAULT : 0;
	}
	case MONSTER_IOC_WAIT_READY: {
		struct monster_barrier b;

		if (copy_from_user(&b, uarg, sizeof(b)))
			return -EFAULT;
		if (b.shard >= MONSTER_NUM_SHARDS || b.n > MONSTER_NUM_WAIT_STATES)
			return -EINVAL;
		rc = wait_ready(&b);
		if (rc < 0)
			return rc;
		return copy_to_user(uarg, &b, sizeof(b)) ? -EFAULT : rc;
	}
	case MONSTER_IOC_READ_SAMPLES:
	case MONSTER_IOC_PIPE_STATUS:
	case MONSTER_IOC_WAIT_STATUS:
	case MONSTER_IOC_LOG_READ: {
		struct monster_buf b;

		if (copy_from_user(&b, uarg, sizeof(b)))
			return -EFAULT;
		if (b.reserved)
			return -EINVAL;
		if (cmd == MONSTER_IOC_READ_SAMPLES)
			rc = read_samples(&b);
		else if (cmd == MONSTER_IOC_PIPE_STATUS)
			rc = pipe_status(&b);
		else if (cmd == MONSTER_IOC_WAIT_STATUS)
			rc = wait_status(&b);
		else
			rc = log_read(&b);
		if (rc < 0)
			return rc;
		return copy_to_user(uarg, &b, sizeof(b)) ? -EFAULT : 0;
	}
	case MONSTER_IOC_ABI_VERSION: {
		u32 v = MONSTER_ABI_VERSION;

		return copy_to_user(uarg, &v, sizeof(v)) ? -EFAULT : 0;
	}
	default:
		return -ENOTTY;
	}
}

static const struct file_operations ms_fops = {
	.owner = THIS_MODULE, /* open files hold the module: rmmod is refused */
	.open = ms_open,
	.release = ms_release,
	.unlocked_ioctl = ms_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

/* --- the device node ---------------------------------------------------------
 *
 * A character device in a class of its own rather than a misc device: a
 * misc device's node can only be given a mode, while a device_type's
 * devnode() also gives devtmpfs (and udev, through DEVGID) the node's group,
 * which is what the `group` parameter needs. */

static dev_t ms_devt;             /* our major:minor                    */
static struct cdev ms_cdev;       /* the fops behind it                 */
static struct class *ms_class;    /* /sys/class/monster_sampler         */
static struct device *ms_device;  /* /dev/monster_sampler (kzalloc'ed)  */
static kgid_t ms_gid;             /* `group` as a kgid when >= 0        */

static char *ms_devnode(struct device *dev, umode_t *mode, kuid_t *uid, kgid_t *gid)
{
	if (mode)
		*mode = group >= 0 ? 0660 : 0600;
	if (gid && group >= 0)
		*gid = ms_gid;
	return NULL; /* the default name */
}

static const struct device_type ms_type = {
	.name = "monster_sampler",
	.devnode = ms_devnode,
};

static void ms_device_release(struct device *dev)
{
	kfree(dev);
}

static int ms_device_add(void)
{
	int rc = alloc_chrdev_region(&ms_devt, 0, 1, "monster_sampler");

	if (rc)
		return rc;
	cdev_init(&ms_cdev, &ms_fops);
	ms_cdev.owner = THIS_MODULE;
	ms_class = class_create(THIS_MODULE, "monster_sampler");
	if (IS_ERR(ms_class)) {
		rc = PTR_ERR(ms_class);
		goto fail_class;
	}
	ms_device = kzalloc(sizeof(*ms_device), GFP_KERNEL);
	if (!ms_device) {
		rc = -ENOMEM;
		goto fail_alloc;
	}
	device_initialize(ms_device);
	ms_device->devt = ms_devt;
	ms_device->class = ms_class;
	ms_device->type = &ms_type;
	ms_device->release = ms_device_release;
	rc = dev_set_name(ms_device, "monster_sampler");
	if (rc)
		goto fail_dev;
	/* Adds the cdev, then the device (whose node devtmpfs creates). */
	rc = cdev_device_add(&ms_cdev, ms_device);
	if (rc)
		goto fail_dev;
	return 0;
fail_dev:
	put_device(ms_device); /* frees it through ms_device_release */
	ms_device = NULL;
fail_alloc:
	class_destroy(ms_class);
fail_class:
	unregister_chrdev_region(ms_devt, 1);
	return rc;
}

static void ms_device_del(void)
{
	cdev_device_del(&ms_cdev, ms_device);
	put_device(ms_device);
	class_destroy(ms_class);
	unregister_chrdev_region(ms_devt, 1);
}

/* --- debugfs ------------------------------------------------------------------ */

static int pipes_show(struct seq_file *m, void *v)
{
	int i;

	for (i = 0; i < MONSTER_NUM_PIPES; i++) {
		struct monster_pipe *p = &pipes[i];

		mutex_lock(&p->lock);
		seq_printf(m, "Pipe %d: producer=%d, consumer=%d, readers=%d, writers=%d, closed=%d\n",
			   p->id, p->producer_pid, p->consumer_pid, atomic_read(&p->readers),
			   atomic_read(&p->writers), p->closed ? 1 : 0);
		mutex_unlock(&p->lock);
	}
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(pipes);

static int wait_states_show(struct seq_file *m, void *v)
{
	struct wait_state copy[16];
	int idx[16];
	int i = 0;

	/* seq_printf may not sleep but keep the spinlock sections short:
	 * copy a batch under the lock, print it outside. */
	while (i < MONSTER_NUM_WAIT_STATES) {
		int n = 0, k;

		spin_lock(&wait_lock);
		for (; i < MONSTER_NUM_WAIT_STATES && n < 16; i++) {
			if (!waits[i].in_use)
				continue;
			copy[n].pid = waits[i].pid;
			copy[n].shard_id = waits[i].shard_id;
			copy[n].sequence = waits[i].sequence;
			copy[n].ready = waits[i].ready;
			idx[n++] = i;
		}
		spin_unlock(&wait_lock);
		for (k = 0; k < n; k++)
			seq_printf(m, "Wait %d: pid=%d, shard=%u, sequence=%llu, ready=%d\n", idx[k],
				   copy[k].pid, copy[k].shard_id, copy[k].sequence,
				   copy[k].ready ? 1 : 0);
	}
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(wait_states);

/* --- module ------------------------------------------------------------------- */

static void free_all(void)
{
	int i, cpu;

	for (i = 0; i < MONSTER_NUM_PIPES; i++) {
		kvfree(pipes[i].ring);
		pipes[i].ring = NULL;
	}
	if (cpus) {
		for_each_possible_cpu(cpu) {
			struct monster_cpu *mc = per_cpu_ptr(cpus, cpu);

			if (mc->started)
				hrtimer_cancel(&mc->timer);
			kvfree(mc->ring);
		}
		free_percpu(cpus);
		cpus = NULL;
	}
}

static int __init ms_init(void)
{
	int i, cpu, rc;

	if (capacity < 1 || capacity > MONSTER_PIPE_CAPACITY_MAX || sample_hz < 1 ||
	    sample_hz > 10000 || sample_ring < 16 || sample_ring > 65536 || group < -1) {
		pr_err("bad parameter: capacity 1..65536, sample_hz 1..10000, sample_ring 16..65536, group -1 or a gid\n");
		return -EINVAL;
	}
	if (group >= 0) {
		ms_gid = make_kgid(&init_user_ns, group);
		if (!gid_valid(ms_gid)) {
			pr_err("bad parameter: group %d is not a valid gid\n", group);
			return -EINVAL;
		}
	}
	period_ns = NSEC_PER_SEC / sample_hz;
	for (i = 0; i < MONSTER_NUM_PIPES; i++) {
		struct monster_pipe *p = &pipes[i];

		p->id = i;
		mutex_init(&p->lock);
		init_waitqueue_head(&p->read_wait);
		init_waitqueue_head(&p->write_wait);
		atomic_set(&p->readers, 0);
		atomic_set(&p->writers, 0);
		p->ring = kvcalloc(capacity, sizeof(*p->ring), GFP_KERNEL);
		if (!p->ring) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	for (i = 0; i < MONSTER_NUM_WAIT_STATES; i++)
		init_waitqueue_head(&waits[i].wait_queue);

	cpus = alloc_percpu(struct monster_cpu);
	if (!cpus) {
		rc = -ENOMEM;
		goto fail;
	}
	for_each_possible_cpu(cpu) {
		struct monster_cpu *mc = per_cpu_ptr(cpus, cpu);

		spin_lock_init(&mc->lock);
		hrtimer_init(&mc->timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL_PINNED);
		mc->timer.function = sample_tick;
		mc->ring = kvcalloc(sample_ring, sizeof(*mc->ring), GFP_KERNEL);
		if (!mc->ring) {
			rc = -ENOMEM;
			goto fail;
		}
	}

	rc = ms_device_add();
	if (rc)
		goto fail;

	/* debugfs is optional (not mounted, or disabled): errors are ignored
	 * as its API asks. */
	dbg_dir = debugfs_create_dir("monster_sampler", NULL);
	debugfs_create_file("pipes", 0400, dbg_dir, NULL, &pipes_fops);
	debugfs_create_file("wait_states", 0400, dbg_dir, NULL, &wait_states_fops);

	/* CPUs that come online later are not sampled (documented). */
	cpus_read_lock();
	for_each_online_cpu(cpu)
		smp_call_function_single(cpu, sampler_start_on_cpu, NULL, 1);
	cpus_read_unlock();

	pr_info("loaded: 15 pipes of %u samples, 256 wait states, sampler %u Hz per CPU, device %s\n",
		capacity, sample_hz, group >= 0 ? "0660 with the group" : "0600");
	return 0;
fail:
	free_all();
	return rc;
}

static void __exit ms_exit(void)
{
	/* No file is open (each holds a module reference), so nobody is
	 * blocked in a pipe or wait state. */
	debugfs_remove_recursive(dbg_dir);
	ms_device_del();
	free_all();
	pr_info("unloaded\n");
}

module_init(ms_init);
module_exit(ms_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Monster coordination: sample pipes, wait states and a per-CPU sampler");
MODULE_AUTHOR("Ferry project");
