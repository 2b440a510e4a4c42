// benches/slow-sync.c: an LD_PRELOAD shim that makes every fsync, fdatasync
// and sync_file_range take SLOW_SYNC_US microseconds longer, so the cost of
// durability on a disk whose syncs are slow (the 473 MB/s machine of issue
// 15) can be measured on one whose syncs are cheap. benches/ab.sh builds it
// when SLOW_SYNC_US is set.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

static void slow(void) {
    const char *v = getenv("SLOW_SYNC_US");
    if (v) usleep((useconds_t)atoi(v));
}

// The real call, then the delay.
#define SLOWED(name)                                         \
    int name(int fd) {                                       \
        static int (*real)(int);                             \
        if (!real) real = dlsym(RTLD_NEXT, #name);           \
        int r = real(fd);                                    \
        slow();                                              \
        return r;                                            \
    }
SLOWED(fsync)
SLOWED(fdatasync)

int sync_file_range(int fd, off_t off, off_t n, unsigned int flags) {
    static int (*real)(int, off_t, off_t, unsigned int);
    if (!real) real = dlsym(RTLD_NEXT, "sync_file_range");
    int r = real(fd, off, n, flags);
    if (flags & SYNC_FILE_RANGE_WAIT_AFTER) slow(); // only a sync that waits
    return r;
}
