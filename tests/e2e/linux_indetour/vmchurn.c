/*
 * Guest-side workload of the in-guest detour e2e test and benchmark (built static, put into the
 * test guest's initramfs). Usage: vmchurn ITER [TAG]
 * Prints "VMCHURN pid N", waits for /tmp/vmchurn-TAG.go, then ITER times: mmap 16 anonymous
 * pages, mprotect 4 of them read-only (a split), munmap 4 others (another split), keep every
 * 8th mapping (plus a read-only mapping of /bin/busybox every 16th) and unmap the rest; then
 * writes /tmp/vmchurn-TAG.done and sleeps until killed, so its memory map holds still.
 * ITER 0: exit at once (an exec+exit for loops). TAG "-": no waiting, exit after the churn
 * (benchmark loops).
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long iter = argc > 1 ? strtol(argv[1], NULL, 10) : 100;
    const char *tag = argc > 2 ? argv[2] : "0";
    char go[64], done[64];
    if (iter <= 0)
        return 0;
    snprintf(go, sizeof(go), "/tmp/vmchurn-%s.go", tag);
    snprintf(done, sizeof(done), "/tmp/vmchurn-%s.done", tag);
    bool wait = strcmp(tag, "-") != 0;
    if (wait) {
        printf("VMCHURN pid %d\n", (int)getpid());
        fflush(stdout);
    }
    while (wait && access(go, F_OK) != 0)
        usleep(20000);
    long pg = sysconf(_SC_PAGESIZE);
    int fd = open("/bin/busybox", O_RDONLY);
    for (long i = 0; i < iter; i++) {
        char *p = mmap(NULL, 16 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return 1;
        p[0] = 1;
        mprotect(p + 4 * pg, 4 * pg, PROT_READ);
        munmap(p + 8 * pg, 4 * pg);
        if (i % 8)
            munmap(p, 16 * pg);
        if (fd >= 0 && i % 16 == 0)
            (void)mmap(NULL, 2 * pg, PROT_READ, MAP_PRIVATE, fd, 0);
    }
    if (!wait)
        return 0;
    int d = open(done, O_CREAT | O_WRONLY, 0644);
    if (d >= 0)
        close(d);
    for (;;)
        pause();
}
