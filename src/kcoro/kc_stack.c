/* kcoro: coroutine stacks (mmap with a guard page) and the handler that
 * turns a guard-page hit into a clear message instead of silent corruption.
 *
 * The guard is installed with MADV_GUARD_INSTALL where the kernel has it
 * (Linux >= 6.13): it does not split the mapping, so 100,000 stacks cost
 * 100,000 mappings at most (vm.max_map_count is 65530 by default, and
 * adjacent stacks merge). Older kernels and qemu-user get mprotect(PROT_NONE),
 * two mappings per stack. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kc_sched.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

int kc__debug;

void kc__dbg(const char *fmt, ...)
{
    if (!kc__debug)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    fprintf(stderr, "kcoro[%d]: %s\n", (int)getpid(), buf);
}

size_t kc__page_size(void)
{
    static size_t ps;
    if (!ps) {
        long v = sysconf(_SC_PAGESIZE);
        ps = v > 0 ? (size_t)v : 4096;
    }
    return ps;
}

/* 0 unknown, 1 MADV_GUARD_INSTALL works, 2 use mprotect. */
static _Atomic int g_guard_mode;

int kc__stack_map(size_t size, unsigned char **lo_out)
{
    size_t g = kc__page_size();
    unsigned char *base = mmap(NULL, size + g, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED)
        return -ENOMEM;
    int mode = atomic_load_explicit(&g_guard_mode, memory_order_relaxed);
    if (mode != 2 && madvise(base, g, MADV_GUARD_INSTALL) == 0) {
        if (!mode)
            atomic_store(&g_guard_mode, 1);
    } else {
        if (!mode)
            atomic_store(&g_guard_mode, 2);
        if (mprotect(base, g, PROT_NONE) != 0) {
            munmap(base, size + g);
            return -ENOMEM;
        }
    }
    *lo_out = base + g;
    return 0;
}

void kc__stack_unmap(unsigned char *lo, size_t size)
{
    if (lo)
        munmap(lo - kc__page_size(), size + kc__page_size());
}

/* ---- guard-page hits --------------------------------------------------- */

static struct sigaction g_old_segv;  /* handler before ours (chained)    */
static pthread_once_t g_handler_once = PTHREAD_ONCE_INIT;

static void put(const char *s)
{
    ssize_t r = write(2, s, strlen(s));
    (void)r;
}

static void put_u64(uint64_t v)
{
    char b[24];
    int i = sizeof b;
    b[--i] = 0;
    do {
        b[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v && i > 0);
    put(b + i);
}

static void segv_handler(int sig, siginfo_t *si, void *uc)
{
    unsigned char *lo;
    size_t size;
    uint64_t id;
    unsigned char *a = si->si_addr;
    size_t g = kc__page_size();
    /* Only async-signal-safe calls: write, sigaction, return. A fault a
     * little below the guard is counted too (a frame larger than a page
     * can jump over it into unmapped space). */
    if (kc__coro_stack_bounds(&lo, &size, &id) && a < lo && a >= lo - 16 * g) {
        put("kcoro: stack overflow in coroutine ");
        put_u64(id);
        put(" (stack of ");
        put_u64(size);
        put(" bytes; its guard page was hit). Give it a larger stack_size in kc_coro_opts_t.\n");
        signal(SIGSEGV, SIG_DFL); /* returning re-faults and dies with SIGSEGV */
        return;
    }
    if (g_old_segv.sa_flags & SA_SIGINFO) {
        if (g_old_segv.sa_sigaction) {
            g_old_segv.sa_sigaction(sig, si, uc);
            return;
        }
    } else if (g_old_segv.sa_handler != SIG_DFL && g_old_segv.sa_handler != SIG_IGN) {
        g_old_segv.sa_handler(sig);
        return;
    }
    signal(SIGSEGV, SIG_DFL);
}

static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_old_segv);
}

void kc__guard_handler_install(void)
{
    pthread_once(&g_handler_once, install);
}

#define KC_ALTSTACK (64 * 1024)

void *kc__altstack_init(void)
{
    void *mem = mmap(NULL, KC_ALTSTACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (mem == MAP_FAILED)
        return NULL; /* no alternate stack: an overflow dies without the message */
    stack_t ss = {.ss_sp = mem, .ss_size = KC_ALTSTACK, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        munmap(mem, KC_ALTSTACK);
        return NULL;
    }
    return mem;
}

void kc__altstack_free(void *mem)
{
    if (!mem)
        return;
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    munmap(mem, KC_ALTSTACK);
}
