/* A guest program for bench_qemu: getpid in a tight loop (small code footprint). Static. */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
    for (;;)
        syscall(SYS_getpid);
}
