/*
 * he_proc.c - process hygiene for the checker and its run children.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif

#include "he_proc.h"

/* close_range(2) where the kernel has it, else each descriptor that
 * /proc/self/fd lists, else every number up to the limit. */
static void
close_range_from(unsigned lo, unsigned hi)
{
    struct rlimit rl;
    unsigned fd, max = 65536;

    if (lo > hi)
        return;
#if defined(__linux__) && defined(SYS_close_range)
    if (syscall(SYS_close_range, lo, hi, 0) == 0)
        return;
#endif
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
        && rl.rlim_cur < max)
        max = (unsigned)rl.rlim_cur;
    for (fd = lo; fd <= hi && fd < max; fd++)
        close((int)fd);
}

void
he_proc_close_fds(int keep)
{
    int null = open("/dev/null", O_RDWR);

    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
    }
    if (keep < 3) {
        close_range_from(3, ~0U);
        return;
    }
    close_range_from(3, (unsigned)keep - 1);
    close_range_from((unsigned)keep + 1, ~0U);
}

void
he_proc_reset_signals(void)
{
    struct sigaction sa;
    sigset_t none;
    int sig;

    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    for (sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        sa.sa_handler = sig == SIGPIPE ? SIG_IGN : SIG_DFL;
        sigaction(sig, &sa, NULL);      /* EINVAL for the RT range: fine */
    }
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* VmData of /proc/self/status in bytes, 0 when unknown. */
static uint64_t
data_size(void)
{
    char line[128];
    unsigned long long kb = 0;
    FILE *f = fopen("/proc/self/status", "re");

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmData: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return (uint64_t)kb * 1024;
}

void
he_proc_limit(uint64_t extra_data)
{
    struct rlimit rl;
    uint64_t now = data_size();

    rl.rlim_cur = rl.rlim_max = 0;
    setrlimit(RLIMIT_CORE, &rl);
    if (now > 0) {
        rl.rlim_cur = rl.rlim_max = (rlim_t)(now + extra_data);
        setrlimit(RLIMIT_DATA, &rl);
    }
}

void
he_proc_limit_cpu(unsigned seconds)
{
    struct rlimit rl;
    struct rusage ru;
    rlim_t want;

    if (getrusage(RUSAGE_SELF, &ru) != 0 || getrlimit(RLIMIT_CPU, &rl) != 0)
        return;
    want = (rlim_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1 + seconds;
    rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max
                  ? rl.rlim_max : want;
    setrlimit(RLIMIT_CPU, &rl);
}

void
he_proc_set_name(const char *name)
{
#ifdef __linux__
    prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
#else
    (void)name;
#endif
}

/*
 * The command line ps shows is the memory between arg_start and arg_end
 * (/proc/self/stat, fields 48 and 49): write the title there when what is
 * there does not start with it yet.  Perl's $0 does this for a perl that
 * started the process; under mod_perl it only reaches argv[0].
 */
void
he_proc_set_title(const char *title)
{
#ifdef __linux__
    char buf[1024], *p, *area;
    unsigned long start = 0, end = 0;
    size_t len, n;
    ssize_t got;
    int fd, field;
    const char *preload = getenv("LD_PRELOAD");

    /* Under valgrind that memory is valgrind's own command line, not the
     * program's (valgrind preloads its vgpreload_*.so into every client). */
    if (preload != NULL && strstr(preload, "/vgpreload_") != NULL)
        return;
    if ((fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC)) >= 0) {
        got = read(fd, buf, sizeof buf - 1);
        close(fd);
        n = strlen(title);
        if (got > 0 && (size_t)got >= n && memcmp(buf, title, n) == 0)
            return;                     /* $0 did it */
    }
    if ((fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC)) < 0)
        return;
    got = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (got <= 0)
        return;
    buf[got] = '\0';
    if ((p = strrchr(buf, ')')) == NULL)
        return;
    for (field = 2; *p && field < 48; p++)
        if (*p == ' ')
            field++;
    if (sscanf(p, "%lu %lu", &start, &end) != 2 || end <= start)
        return;
    area = (char *)start;
    len = end - start;
    n = strlen(title);
    if (n >= len)
        n = len - 1;
    memcpy(area, title, n);
    memset(area + n, '\0', len - n);
#else
    (void)title;
#endif
}

void
he_proc_die_with(long parent)
{
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
#endif
    if ((long)getppid() != parent)      /* it died before prctl */
        _exit(0);
}

/* State letter (field 3) and start time (field 22) of pid from
 * /proc/PID/stat.  0, or -1 when it cannot be read. */
static int
proc_stat(long pid, char *state, uint64_t *start)
{
    char path[64], buf[1024], *p;
    unsigned long long st = 0;
    ssize_t n;
    int fd, field;

    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return -1;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    /* the name (field 2) may hold blanks and ')': skip to its last ')' */
    if ((p = strrchr(buf, ')')) == NULL || p[1] != ' ')
        return -1;
    *state = p[2];
    for (field = 2; *p && field < 22; p++)
        if (*p == ' ')
            field++;
    if (sscanf(p, "%llu", &st) != 1)
        return -1;
    *start = (uint64_t)st;
    return 0;
}

uint64_t
he_proc_starttime(long pid)
{
    uint64_t start = 0;
    char state;

    return proc_stat(pid, &state, &start) == 0 ? start : 0;
}

int
he_proc_alive(long pid, uint64_t starttime)
{
    uint64_t now = 0;
    char state = '?';

    if (pid <= 0)
        return 0;
    if (kill((pid_t)pid, 0) != 0 && errno != EPERM)
        return 0;
    if (proc_stat(pid, &state, &now) != 0)
        return 1;                       /* no /proc: trust kill */
    if (state == 'Z' || state == 'X')   /* exited, not yet reaped */
        return 0;
    return starttime == 0 || now == starttime;
}
