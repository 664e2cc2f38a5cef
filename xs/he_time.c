/*
 * he_time.c - the monotonic clock, deadline-bounded waits on a socket, and
 * a check's phase.
 *
 * Every backend drives its library's non-blocking API with these, so a
 * check never waits past its deadline, whatever the peer does; where a
 * library blocks anyway (a name lookup), the checker kills the run.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "he.h"

double
he_time_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Whole milliseconds until the deadline, rounded up so that a positive
 * remainder below 1 ms still gives 1 (poll(…, 0) would not wait at all);
 * 0 once the deadline has passed. */
int
he_time_left_ms(double deadline)
{
    double left = (deadline - he_time_now()) * 1000.0;
    int ms;

    if (!(left > 0.0))                  /* also catches NaN */
        return 0;
    if (left >= 2147483647.0)
        return 2147483647;
    ms = (int)left;                     /* truncates; round up below */
    return ms < left ? ms + 1 : ms;
}

/*
 * Wait until fd is readable (want_write == 0) or writable, or until the
 * deadline.  POLLERR/POLLHUP count as ready: the caller's next read or
 * write then reports the error itself.  poll() is restarted after EINTR
 * with the time that is left.
 * Returns 1 ready, 0 deadline passed, -1 error (errno set).
 */
int
he_time_wait_fd(int fd, int want_write, double deadline)
{
    struct pollfd p;
    int ms, r;

    if (fd < 0) {                       /* poll would ignore it and sleep */
        errno = EBADF;
        return -1;
    }
    for (;;) {
        ms = he_time_left_ms(deadline);
        if (ms == 0)
            return 0;
        p.fd = fd;
        p.events = want_write ? POLLOUT : POLLIN;
        p.revents = 0;
        r = poll(&p, 1, ms);
        if (r > 0) {
            if (p.revents & POLLNVAL) {
                errno = EBADF;
                return -1;
            }
            return 1;
        }
        if (r < 0 && errno != EINTR)
            return -1;
        /* r == 0 (timed out, maybe early by rounding) or EINTR: re-check */
    }
}

void
he_time_wait_error(int w, const char *what, double start, char *err,
                   size_t errlen)
{
    if (w == 0)
        snprintf(err, errlen, "timed out after %.3f s during %s",
                 he_time_now() - start, what);
    else
        snprintf(err, errlen, "%s: poll: %s", what, strerror(errno));
}

static const char *const phase_names[] = {  /* in he_phase order */
    "idle", "starting", "resolving", "connecting", "authenticating",
    "querying", "done"
};
typedef char he_phase_names_match[
    sizeof phase_names / sizeof phase_names[0] == HE_PHASE_DONE + 1 ? 1 : -1];

const char *
he_phase_name(unsigned phase)
{
    if (phase >= sizeof phase_names / sizeof phase_names[0])
        return "unknown";
    return phase_names[phase];
}

void
he_probe_phase(he_probe *p, he_phase phase)
{
    if (p->phase != NULL)
        __atomic_store_n(p->phase, (unsigned)phase, __ATOMIC_RELEASE);
}
