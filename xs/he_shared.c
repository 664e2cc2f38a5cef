/*
 * he_shared.c - attach the shared state, read it consistently, and the
 * atomics and cross-process waits the checker and its readers use.
 *
 * The file is created once and never replaced or shrunk: every process
 * of the instance maps the same inode for its whole life.  It is
 * initialised (or repaired, when its header is wrong) under an flock on
 * the file itself, held only for that moment; the checker's election uses
 * the separate path.lock (he_checker.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#include "he_shared.h"

#define LOCK_TRIES 200                  /* x 5 ms: init lock, 1 s at most */
#define READ_TRIES 1000                 /* copies before giving up */

/* The struct must fit the file, and the file must fit what we map. */
typedef char he_shared_fits[sizeof(he_shared) <= HE_SHARED_SIZE ? 1 : -1];

/* ---- clocks, atomics, waits ------------------------------------------ */

int64_t
he_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
he_sleep_ns(int64_t ns)
{
    struct timespec ts;

    ts.tv_sec = (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    nanosleep(&ts, NULL);
}

int64_t
he_realtime_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint32_t he_load32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
void he_store32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
int64_t he_load64(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
void he_store64(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

int
he_cas32(uint32_t *p, uint32_t expect, uint32_t v)
{
    return __atomic_compare_exchange_n(p, &expect, v, 0, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST);
}

int
he_cas64(int64_t *p, int64_t expect, int64_t v)
{
    return __atomic_compare_exchange_n(p, &expect, v, 0, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST);
}

int
he_seq_after(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) > 0;
}

#ifdef __linux__
/* A futex on a MAP_SHARED page works across processes (not _PRIVATE). */
void
he_wait_word(uint32_t *word, uint32_t expect, int64_t ns)
{
    struct timespec ts;

    if (ns <= 0)
        return;
    ts.tv_sec = (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    syscall(SYS_futex, word, FUTEX_WAIT, expect, &ts, NULL, 0);
}

void
he_wake_word(uint32_t *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}
#else
/* Elsewhere: look again every 2 ms; a wake-up is then not needed. */
void
he_wait_word(uint32_t *word, uint32_t expect, int64_t ns)
{
    struct timespec ts = { 0, 2000000 };

    if (ns <= 0 || he_load32(word) != expect)
        return;
    if (ns < 2000000)
        ts.tv_nsec = (long)ns;
    nanosleep(&ts, NULL);
}

void
he_wake_word(uint32_t *word)
{
    (void)word;
}
#endif

/* ---- the change counter ------------------------------------------------ */

void
he_shm_write_begin(he_shared *sh)
{
    __atomic_fetch_add(&sh->changecount, 1, __ATOMIC_SEQ_CST);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

void
he_shm_write_end(he_shared *sh)
{
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_fetch_add(&sh->changecount, 1, __ATOMIC_SEQ_CST);
}

int
he_shm_read(he_shared *sh, he_pub *out, char (*reasons)[HE_ERRLEN],
            uint32_t *seq)
{
    uint32_t before, after;
    int i;

    for (i = 0; i < READ_TRIES; i++) {
        before = __atomic_load_n(&sh->changecount, __ATOMIC_ACQUIRE);
        if (before & 1) {               /* a write is under way */
            if (i > 10)
                sched_yield();
            continue;
        }
        *seq = __atomic_load_n(&sh->result_seq, __ATOMIC_RELAXED);
        memcpy(out, &sh->pub, sizeof *out);
        if (reasons != NULL)
            memcpy(reasons, sh->reason, sizeof sh->reason);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        after = __atomic_load_n(&sh->changecount, __ATOMIC_RELAXED);
        if (after == before)
            return 0;
    }
    *seq = he_load32(&sh->result_seq);
    return -1;
}

/* ---- attaching ---------------------------------------------------------- */

/* This boot's id (Linux), or "" where there is none. */
static void
boot_id(char *buf, size_t len)
{
    ssize_t n = -1;
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);

    memset(buf, 0, len);                /* compared as a whole */
    if (fd >= 0) {
        n = read(fd, buf, len - 1);
        close(fd);
    }
    buf[n > 0 ? (size_t)n : 0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
}

/* A fresh state: header, no checker, no result yet. */
static void
init_state(he_shared *sh, const char *version)
{
    int i;

    memset(sh, 0, sizeof *sh);
    boot_id(sh->boot_id, sizeof sh->boot_id);
    for (i = 0; i < HE_NCHECKS; i++)
        sh->pub.check[i].result = -1;
    snprintf(sh->version, sizeof sh->version, "%s", version ? version : "");
    sh->size = HE_SHARED_SIZE;
    sh->layout = HE_SHARED_LAYOUT;
    __atomic_store_n(&sh->magic, HE_SHARED_MAGIC, __ATOMIC_RELEASE);
}

/* 1: ours; 0: garbage, an older layout or another boot's, to be
 * (re-)initialised; -1: a newer module's layout, to be left alone. */
static int
header_state(const he_shared *sh)
{
    char boot[sizeof sh->boot_id];

    if (sh->magic != HE_SHARED_MAGIC || sh->size != HE_SHARED_SIZE)
        return 0;
    if (sh->layout > HE_SHARED_LAYOUT)
        return -1;
    boot_id(boot, sizeof boot);
    if (memcmp(boot, sh->boot_id, sizeof boot) != 0)
        return 0;                       /* nobody maps it since the reboot */
    return sh->layout == HE_SHARED_LAYOUT;
}

static char *
concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);

    if (s != NULL) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb + 1);
    }
    return s;
}

/* Only a regular file of ours that nobody else may write is trusted. */
static int
check_file(int fd, const char *path, char *err, size_t errlen)
{
    struct stat st;

    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: fstat: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s is not a regular file", path);
        return -1;
    }
    if (st.st_uid != geteuid()) {
        snprintf(err, errlen, "%s belongs to uid %ld, this process runs as "
                 "uid %ld", path, (long)st.st_uid, (long)geteuid());
        return -1;
    }
    if (st.st_mode & 022) {
        snprintf(err, errlen, "%s is writable by group or others (mode %03o)",
                 path, (unsigned)(st.st_mode & 0777));
        return -1;
    }
    return 0;
}

static int
open_checked(const char *path, int excl, char *err, size_t errlen)
{
    int flags = O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC;
    int fd = open(path, flags | (excl ? O_EXCL : 0), 0600);

    if (fd < 0 && excl && errno == EEXIST)
        fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, errno == ELOOP
                 ? "is a symbolic link" : strerror(errno));
        return -1;
    }
    if (check_file(fd, path, err, errlen) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The init lock, bounded: a holder only initialises a page. */
static int
lock_briefly(int fd)
{
    struct timespec five_ms = { 0, 5000000 };
    int i;

    for (i = 0; i < LOCK_TRIES; i++) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return 0;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        nanosleep(&five_ms, NULL);
    }
    errno = ETIMEDOUT;
    return -1;
}

/* Grow the file to its size (never shrink: others may map it), map it and
 * initialise a new or corrupt one.  Under the init lock. */
static he_shared *
map_locked(int fd, const char *path, const char *version, char *err,
           size_t errlen)
{
    struct stat st;
    he_shared *sh;

    if (fstat(fd, &st) != 0 || (st.st_size < HE_SHARED_SIZE
                                && ftruncate(fd, HE_SHARED_SIZE) != 0)) {
        snprintf(err, errlen, "%s: cannot size it: %s", path,
                 strerror(errno));
        return NULL;
    }
    sh = mmap(NULL, HE_SHARED_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
              0);
    if (sh == MAP_FAILED) {
        snprintf(err, errlen, "%s: mmap: %s", path, strerror(errno));
        return NULL;
    }
    switch (header_state(sh)) {
    case 0:
        init_state(sh, version);
        break;
    case -1:
        snprintf(err, errlen, "%s is in use by a newer version of this "
                 "module (layout %u)", path, (unsigned)sh->layout);
        munmap(sh, HE_SHARED_SIZE);
        return NULL;
    }
    return sh;
}

int
he_shm_attach_file(he_shm *m, const char *path, const char *version,
                   char *err, size_t errlen)
{
    struct stat st;
    he_shared *sh = NULL;
    int fd, lfd;

    memset(m, 0, sizeof *m);
    if (path == NULL || path[0] != '/') {
        snprintf(err, errlen, "'%.200s' is not an absolute path",
                 path ? path : "");
        return -1;
    }
    if ((m->path = concat(path, "")) == NULL
        || (m->lock_path = concat(path, ".lock")) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if ((lfd = open_checked(m->lock_path, 0, err, errlen)) < 0)
        goto fail;
    close(lfd);
    if ((fd = open_checked(path, 1, err, errlen)) < 0)
        goto fail;
    if (lock_briefly(fd) != 0) {
        snprintf(err, errlen, "%s: flock: %s", path, strerror(errno));
    } else {
        sh = map_locked(fd, path, version, err, errlen);
        flock(fd, LOCK_UN);
    }
    if (sh != NULL && fstat(fd, &st) == 0) {
        m->dev = (unsigned long)st.st_dev;
        m->ino = (unsigned long)st.st_ino;
    }
    close(fd);
    if (sh == NULL)
        goto fail;
    m->sh = sh;
    m->is_file = 1;
    m->owner_pid = (long)getpid();
    return 0;

fail:
    he_shm_detach(m);
    return -1;
}

int
he_shm_attach_private(he_shm *m, const char *version, char *err,
                      size_t errlen)
{
    he_shared *sh;

    memset(m, 0, sizeof *m);
    sh = mmap(NULL, HE_SHARED_SIZE, PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        snprintf(err, errlen, "mmap: %s", strerror(errno));
        return -1;
    }
    init_state(sh, version);
    m->sh = sh;
    m->owner_pid = (long)getpid();
    return 0;
}

void
he_shm_detach(he_shm *m)
{
    if (m->sh != NULL)
        munmap(m->sh, HE_SHARED_SIZE);
    free(m->path);
    free(m->lock_path);
    memset(m, 0, sizeof *m);
}

int
he_shm_usable(const he_shm *m, long pid)
{
    if (m->sh == NULL || m->sh->magic != HE_SHARED_MAGIC
        || m->sh->layout != HE_SHARED_LAYOUT)
        return 0;
    return m->is_file || m->owner_pid == pid;
}

int
he_shm_replaced(const he_shm *m)
{
    struct stat st;

    if (!m->is_file || m->path == NULL)
        return 0;
    if (stat(m->path, &st) != 0)
        return 1;
    return (unsigned long)st.st_dev != m->dev
        || (unsigned long)st.st_ino != m->ino;
}
