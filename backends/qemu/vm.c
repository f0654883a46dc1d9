/*
 * hvi QEMU backend — boot and manage the test guest (busybox initramfs + Debian kernel).
 */
#define _GNU_SOURCE
#include "hvi_qemu.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/engine.h"
#include "vm_internal.h"

#ifndef HVI_QEMU_SCRIPTS_DIR
#define HVI_QEMU_SCRIPTS_DIR "scripts/guest"
#endif

static _Thread_local char vm_err[1024];

const char *hvi_qemu_vm_last_error(void)
{
    return vm_err;
}

static hvi_status vm_fail(hvi_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static hvi_status vm_fail(hvi_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(vm_err, sizeof(vm_err), fmt, ap);
    va_end(ap);
    return st;
}

static int64_t vm_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *default_root(const char *root)
{
    if (root)
        return root;
    const char *env = getenv("HVI_GUEST_WORK");
    return env && *env ? env : "guest-work";
}

static hvi_status mkdirs(const char *path)
{
    char tmp[512];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return HVI_E_RANGE;
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return HVI_E_IO;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return HVI_E_IO;
    return HVI_OK;
}

static hvi_status find_kernel(const char *want, char *out, size_t len)
{
    const char *env = getenv("HVI_GUEST_KERNEL");
    if (!want && env && *env)
        want = env;
    if (want) {
        if (access(want, R_OK) != 0)
            return vm_fail(HVI_E_NOT_FOUND, "kernel %s: %s", want, strerror(errno));
        snprintf(out, len, "%s", want);
        return HVI_OK;
    }
    glob_t g;
    if (glob("/boot/vmlinuz-*-amd64", 0, NULL, &g) != 0 || g.gl_pathc == 0) {
        globfree(&g);
        return vm_fail(HVI_E_NOT_FOUND, "no kernel /boot/vmlinuz-*-amd64 (apt-get install "
                                        "linux-image-amd64)");
    }
    snprintf(out, len, "%s", g.gl_pathv[g.gl_pathc - 1]); /* glob sorts: newest last */
    globfree(&g);
    if (access(out, R_OK) != 0)
        return vm_fail(HVI_E_NOT_FOUND, "kernel %s is not readable: %s", out, strerror(errno));
    return HVI_OK;
}

/* Run argv, stdout/stderr to errfile; returns the exit status or -1. */
static int run_cmd(char *const argv[], const char *errfile)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int nul = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (nul >= 0)
            dup2(nul, 0);
        execvp(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Start argv as a child that dies with this process; stdout/stderr to errfile. */
static int spawn_child(char *const argv[], const char *errfile)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return (int)pid;
    int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int nul = open("/dev/null", O_RDONLY);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    if (nul >= 0)
        dup2(nul, 0);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(126);
    execvp(argv[0], argv);
    _exit(127);
}

static void read_text(const char *path, char *buf, size_t len)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
}

static hvi_status build_initramfs(hvi_qemu_vm *vm, const hvi_qemu_vm_opts *o, char *out, size_t len)
{
    const char *dir = getenv("HVI_GUEST_SCRIPTS");
    char script[600], errf[600];
    snprintf(script, sizeof(script), "%s/build-initramfs",
             dir && *dir ? dir : HVI_QEMU_SCRIPTS_DIR);
    snprintf(out, len, "%s/initramfs.cpio.gz", vm->dir);
    snprintf(errf, sizeof(errf), "%s/initramfs.err", vm->dir);
    char *argv[3 + 2 * 64 + 1];
    size_t n = 0;
    argv[n++] = script;
    argv[n++] = (char *)"-o";
    argv[n++] = out;
    for (size_t i = 0; o->add && o->add[i]; i++) {
        if (i >= 64)
            return vm_fail(HVI_E_LIMIT, "more than 64 --add files");
        argv[n++] = (char *)"--add";
        argv[n++] = (char *)o->add[i];
    }
    argv[n] = NULL;
    if (run_cmd(argv, errf) != 0) {
        char msg[512];
        read_text(errf, msg, sizeof(msg));
        return vm_fail(HVI_E_IO, "building the initramfs failed: %s", msg);
    }
    return HVI_OK;
}

static hvi_status free_port(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    if (fd < 0)
        return HVI_E_IO;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        close(fd);
        return HVI_E_IO;
    }
    *port = ntohs(sa.sin_port);
    close(fd);
    return HVI_OK;
}

static void vm_paths(hvi_qemu_vm *vm)
{
    snprintf(vm->serial_log, sizeof(vm->serial_log), "%s/serial.log", vm->dir);
    snprintf(vm->serial_sock, sizeof(vm->serial_sock), "%s/serial.sock", vm->dir);
    snprintf(vm->qmp_sock, sizeof(vm->qmp_sock), "%s/qmp.sock", vm->dir);
}

static hvi_status write_state(const hvi_qemu_vm *vm)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/state", vm->dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return vm_fail(HVI_E_IO, "%s: %s", path, strerror(errno));
    fprintf(f, "pid=%d\ngdb_port=%u\nmem_bytes=%" PRIu64 "\nsmp=%u\nram=%s\naccel=%s\n", vm->pid,
            vm->gdb_port, vm->mem_bytes, vm->smp, vm->ram_path, vm->accel[0] ? vm->accel : "tcg");
    return fclose(f) == 0 ? HVI_OK : HVI_E_IO;
}

/* The host CPU advertises VMX or SVM in /proc/cpuinfo. */
static bool cpu_has_virt(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f))
        if (!strncmp(line, "flags", 5))
            found = strstr(line, " vmx") || strstr(line, " svm");
    fclose(f);
    return found;
}

bool hvi_qemu_kvm_usable(void)
{
    /* Measured on these machines: /dev/kvm opens and KVM_CREATE_VM succeeds although the CPU
     * shows neither VMX nor SVM, and a guest under -accel kvm never prints a line. So both. */
    if (!cpu_has_virt())
        return false;
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return false;
    /* /dev/kvm can exist on a CPU without VMX/SVM: only a VM that can be created counts */
    bool ok = ioctl(fd, KVM_GET_API_VERSION, 0) == 12;
    int vmfd = ok ? ioctl(fd, KVM_CREATE_VM, 0) : -1;
    if (vmfd >= 0)
        close(vmfd);
    close(fd);
    return vmfd >= 0;
}

hvi_status hvi_qemu_resolve_accel(const char *want, bool kvm_usable, const char **out)
{
    if (!want || !*want || !strcmp(want, "tcg"))
        *out = "tcg";
    else if (!strcmp(want, "kvm"))
        *out = "kvm";
    else if (!strcmp(want, "auto"))
        *out = kvm_usable ? "kvm" : "tcg";
    else
        return vm_fail(HVI_E_INVAL, "unknown accelerator %s (tcg, kvm or auto)", want);
    return HVI_OK;
}

hvi_status hvi_qemu_build_cmdline(const hvi_qemu_vm *vm, const hvi_qemu_vm_opts *o,
                                  const char *kernel, const char *initrd, const char *accel,
                                  struct hvi_qemu_cmdline *c)
{
    memset(c, 0, sizeof(*c));
    bool kvm = !strcmp(accel, "kvm");
    if (!kvm && strcmp(accel, "tcg"))
        return vm_fail(HVI_E_INVAL, "accelerator must be tcg or kvm, not %s", accel);
    snprintf(c->append, sizeof(c->append), "console=ttyS0 quiet panic=-1%s%s%s%s%s%s%s",
             o->nokaslr ? " nokaslr" : "", o->workload ? " hvi.workload=" : "",
             o->workload ? o->workload : "", o->insmod ? " hvi.insmod=" : "",
             o->insmod ? o->insmod : "", o->append ? " " : "", o->append ? o->append : "");
    snprintf(c->memobj, sizeof(c->memobj),
             "memory-backend-file,id=mem,size=%" PRIu64 ",mem-path=%s,share=on", vm->mem_bytes,
             vm->ram_path);
    snprintf(c->chardev, sizeof(c->chardev), "socket,id=ser0,path=%s,server=on,wait=off,logfile=%s",
             vm->serial_sock, vm->serial_log);
    snprintf(c->qmp, sizeof(c->qmp), "unix:%s,server=on,wait=off", vm->qmp_sock);
    snprintf(c->pidf, sizeof(c->pidf), "%s/qemu.pid", vm->dir);
    snprintf(c->smp, sizeof(c->smp), "%u", vm->smp);
    snprintf(c->mem, sizeof(c->mem), "%" PRIu64 "M", vm->mem_bytes >> 20);
    snprintf(c->gdb, sizeof(c->gdb), "tcp:127.0.0.1:%u", vm->gdb_port);
    /* TCG: one host thread per vCPU when there are several (MTTCG); KVM: vCPU threads anyway */
    snprintf(c->accel, sizeof(c->accel), "%s",
             kvm           ? "kvm"
             : vm->smp > 1 ? "tcg,thread=multi"
                           : "tcg");
    const char *const args[] = {
        "qemu-system-x86_64", "-accel", c->accel, "-machine", "q35,memory-backend=mem", "-object",
        c->memobj, "-m", c->mem, "-smp", c->smp,
        /* qemu64 keeps 4-level paging and the same CPUID under both accelerators; max = all
         * the host has under KVM (LA57 only if the host CPU has it), everything under TCG;
         * o->cpu: any model the caller names (qemu64 plus SMEP/SMAP keeps 4-level paging) */
        "-cpu", o->cpu ? o->cpu : o->cpu_max ? "max" : "qemu64", "-kernel", kernel, "-initrd",
        initrd, "-append", c->append, "-display", "none", "-monitor", "none", "-parallel", "none",
        "-no-reboot", "-chardev", c->chardev, "-serial", "chardev:ser0", "-gdb", c->gdb, "-qmp",
        c->qmp};
    size_t n = 0;
    for (; n < sizeof(args) / sizeof(args[0]); n++)
        c->argv[n] = (char *)args[n];
    if (o->persistent) {
        c->argv[n++] = (char *)"-daemonize";
        c->argv[n++] = (char *)"-pidfile";
        c->argv[n++] = c->pidf;
    }
    c->argv[n] = NULL;
    return HVI_OK;
}

static hvi_status launch(hvi_qemu_vm *vm, const hvi_qemu_vm_opts *o, const char *kernel,
                         const char *initrd)
{
    char errf[600];
    const char *accel = NULL;
    hvi_status st = hvi_qemu_resolve_accel(
        o->accel, o->accel && !strcmp(o->accel, "auto") && hvi_qemu_kvm_usable(), &accel);
    if (st != HVI_OK)
        return st;
    snprintf(vm->accel, sizeof(vm->accel), "%s", accel);
    snprintf(errf, sizeof(errf), "%s/qemu.err", vm->dir);
    struct hvi_qemu_cmdline *c = malloc(sizeof(*c));
    if (!c)
        return HVI_E_NOMEM;
    for (int attempt = 0; attempt < 4; attempt++) {
        if (free_port(&vm->gdb_port) != HVI_OK) {
            free(c);
            return vm_fail(HVI_E_IO, "no free loopback port");
        }
        if ((st = hvi_qemu_build_cmdline(vm, o, kernel, initrd, accel, c)) != HVI_OK)
            break;
        unlink(vm->serial_log);
        if (!o->persistent) {
            vm->pid = spawn_child(c->argv, errf);
            vm->child = true;
            st = vm->pid > 0 ? HVI_OK : vm_fail(HVI_E_IO, "fork: %s", strerror(errno));
            break;
        }
        int rc = run_cmd(c->argv, errf);
        if (rc == 0) {
            char pidtxt[32];
            read_text(c->pidf, pidtxt, sizeof(pidtxt));
            vm->pid = atoi(pidtxt);
            st = vm->pid > 0
                     ? HVI_OK
                     : vm_fail(HVI_E_BACKEND, "QEMU started but wrote no pid file %s", c->pidf);
            break;
        }
        char msg[512];
        read_text(errf, msg, sizeof(msg));
        if (rc == 127) {
            st = vm_fail(HVI_E_NOT_FOUND, "qemu-system-x86_64 not found (apt-get install "
                                          "qemu-system-x86)");
            break;
        }
        if (!strstr(msg, "Address already in use")) {
            st = vm_fail(HVI_E_BACKEND, "QEMU failed to start (exit %d): %s%s", rc, msg,
                         !strcmp(accel, "kvm") ? " (KVM: does the host CPU have VMX/SVM, and "
                                                 "/dev/kvm access?)"
                                               : "");
            break;
        }
        st = vm_fail(HVI_E_BUSY, "no usable gdbstub port after 4 attempts (ports in use)");
    }
    free(c);
    return st;
}

bool hvi_qemu_vm_alive(const hvi_qemu_vm *vm)
{
    if (!vm || vm->pid <= 0)
        return false;
    if (kill(vm->pid, 0) != 0)
        return false;
    char path[64], stat[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", vm->pid); /* a zombie is not alive */
    read_text(path, stat, sizeof(stat));
    const char *p = strrchr(stat, ')');
    return !(p && p[1] == ' ' && p[2] == 'Z');
}

static bool file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static bool qemu_err_has(const hvi_qemu_vm *vm, const char *what)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/qemu.err", vm->dir);
    return file_has(path, what);
}

/* Collect our own QEMU child once it is gone. */
static void reap(hvi_qemu_vm *vm)
{
    if (vm->child && vm->pid > 0)
        (void)waitpid(vm->pid, NULL, WNOHANG);
}

static hvi_status wait_ready(hvi_qemu_vm *vm, uint32_t timeout_ms)
{
    int64_t deadline = vm_now_ms() + timeout_ms;
    while (vm_now_ms() < deadline) {
        if (file_has(vm->serial_log, "HVI-READY"))
            return HVI_OK;
        if (!hvi_qemu_vm_alive(vm)) {
            char path[600], msg[400];
            snprintf(path, sizeof(path), "%s/qemu.err", vm->dir);
            read_text(path, msg, sizeof(msg));
            return vm_fail(HVI_E_CLOSED, "QEMU exited during boot: %s (see %s)",
                           msg[0] ? msg : "no error output", vm->serial_log);
        }
        sleep_ms(100);
    }
    return vm_fail(HVI_E_TIMEOUT, "guest did not print HVI-READY within %u ms (see %s)", timeout_ms,
                   vm->serial_log);
}

/* Keep a child VM's RAM file open and drop its name: nothing is left in /dev/shm if this
 * process dies. The session maps it through /proc/<pid>/fd. */
static hvi_status unname_ram(hvi_qemu_vm *vm)
{
    vm->ram_fd = open(vm->ram_path, O_RDWR | O_CLOEXEC);
    if (vm->ram_fd < 0)
        return HVI_OK; /* keep the name; hvi_qemu_vm_stop() removes it */
    unlink(vm->ram_path);
    snprintf(vm->ram_path, sizeof(vm->ram_path), "/proc/%d/fd/%d", (int)getpid(), vm->ram_fd);
    return write_state(vm);
}

hvi_status hvi_qemu_vm_start(const hvi_qemu_vm_opts *o, hvi_qemu_vm **out)
{
    static unsigned counter;
    hvi_qemu_vm_opts defaults = {0};
    if (!out)
        return HVI_E_INVAL;
    if (!o)
        o = &defaults;
    char kernel[512], initrd[700], name[64];
    hvi_status st = find_kernel(o->kernel, kernel, sizeof(kernel));
    if (st != HVI_OK)
        return st;
    if (o->name && (!*o->name || strchr(o->name, '/') || strlen(o->name) > 48))
        return vm_fail(HVI_E_INVAL, "bad VM name");
    snprintf(name, sizeof(name), "%s", o->name ? o->name : "");
    if (!o->name)
        snprintf(name, sizeof(name), "t%d-%u", (int)getpid(), counter++);
    hvi_qemu_vm *old = NULL;
    if (hvi_qemu_vm_find(o->state_root, name, &old) == HVI_OK) {
        hvi_qemu_vm_release(old);
        return vm_fail(HVI_E_EXISTS, "a VM named %s is already running", name);
    }
    hvi_qemu_vm *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return HVI_E_NOMEM;
    vm->ram_fd = -1;
    char *root = realpath(default_root(o->state_root), NULL);
    if (!root && mkdirs(default_root(o->state_root)) == HVI_OK)
        root = realpath(default_root(o->state_root), NULL);
    if (!root) {
        free(vm);
        return vm_fail(HVI_E_IO, "state directory %s: %s", default_root(o->state_root),
                       strerror(errno));
    }
    snprintf(vm->dir, sizeof(vm->dir), "%s/%s", root, name);
    free(root);
    vm->smp = o->smp ? o->smp : 1;
    vm->mem_bytes = (uint64_t)(o->mem_mib ? o->mem_mib : 512) << 20;
    snprintf(vm->ram_path, sizeof(vm->ram_path), "/dev/shm/hvi-%s-%d", name, (int)getpid());
    vm_paths(vm);
    if (vm->smp > HVI_QEMU_MAX_VCPUS || vm->mem_bytes > (64ull << 30) ||
        vm->mem_bytes < (64ull << 20))
        st =
            vm_fail(HVI_E_RANGE, "smp must be 1..%d and memory 64 MiB..64 GiB", HVI_QEMU_MAX_VCPUS);
    else if ((st = mkdirs(vm->dir)) != HVI_OK)
        vm_fail(st, "cannot create %s", vm->dir);
    if (st == HVI_OK && o->initramfs)
        snprintf(initrd, sizeof(initrd), "%s", o->initramfs);
    else if (st == HVI_OK)
        st = build_initramfs(vm, o, initrd, sizeof(initrd));
    for (int attempt = 0; st == HVI_OK && attempt < 3; attempt++) {
        if ((st = launch(vm, o, kernel, initrd)) == HVI_OK && (st = write_state(vm)) == HVI_OK)
            st = wait_ready(vm, o->boot_timeout_ms ? o->boot_timeout_ms : 90000);
        if (st != HVI_E_CLOSED || !vm->child || !qemu_err_has(vm, "Address already in use"))
            break;
        reap(vm);
        st = HVI_OK; /* the gdbstub port was taken meanwhile: try another */
    }
    if (st == HVI_OK && vm->child)
        st = unname_ram(vm);
    if (st != HVI_OK) {
        char keep[sizeof(vm_err)];
        snprintf(keep, sizeof(keep), "%s", vm_err);
        hvi_qemu_vm_stop(vm);
        snprintf(vm_err, sizeof(vm_err), "%s", keep);
        return st;
    }
    *out = vm;
    return HVI_OK;
}

hvi_status hvi_qemu_vm_find(const char *state_root, const char *name, hvi_qemu_vm **out)
{
    if (!name || !out || strchr(name, '/'))
        return HVI_E_INVAL;
    hvi_qemu_vm *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return HVI_E_NOMEM;
    vm->ram_fd = -1;
    char *root = realpath(default_root(state_root), NULL);
    char path[700];
    snprintf(vm->dir, sizeof(vm->dir), "%s/%s", root ? root : default_root(state_root), name);
    free(root);
    snprintf(path, sizeof(path), "%s/state", vm->dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        free(vm);
        return vm_fail(HVI_E_NOT_FOUND, "no VM %s (no %s)", name, path);
    }
    char line[400];
    unsigned port = 0;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!strncmp(line, "pid=", 4))
            vm->pid = atoi(line + 4);
        else if (!strncmp(line, "gdb_port=", 9))
            port = (unsigned)strtoul(line + 9, NULL, 10);
        else if (!strncmp(line, "mem_bytes=", 10))
            vm->mem_bytes = strtoull(line + 10, NULL, 10);
        else if (!strncmp(line, "smp=", 4))
            vm->smp = (uint32_t)strtoul(line + 4, NULL, 10);
        else if (!strncmp(line, "ram=", 4))
            hvi_strlcpy(vm->ram_path, line + 4, sizeof(vm->ram_path));
        else if (!strncmp(line, "accel=", 6))
            hvi_strlcpy(vm->accel, line + 6, sizeof(vm->accel));
    }
    fclose(f);
    vm->gdb_port = (uint16_t)port;
    vm_paths(vm);
    if (!hvi_qemu_vm_alive(vm) || port == 0 || port > 65535 || !vm->mem_bytes) {
        free(vm);
        return vm_fail(HVI_E_NOT_FOUND, "VM %s is not running", name);
    }
    *out = vm;
    return HVI_OK;
}

void hvi_qemu_vm_release(hvi_qemu_vm *vm)
{
    if (vm && vm->ram_fd >= 0)
        close(vm->ram_fd);
    free(vm);
}

void hvi_qemu_vm_stop(hvi_qemu_vm *vm)
{
    if (!vm)
        return;
    if (hvi_qemu_vm_alive(vm)) {
        kill(vm->pid, SIGTERM);
        for (int i = 0; i < 50 && hvi_qemu_vm_alive(vm); i++)
            sleep_ms(50);
        if (hvi_qemu_vm_alive(vm))
            kill(vm->pid, SIGKILL);
        for (int i = 0; i < 40 && hvi_qemu_vm_alive(vm); i++)
            sleep_ms(50);
    }
    if (vm->child && vm->pid > 0)
        (void)waitpid(vm->pid, NULL, 0);
    char path[700];
    if (vm->ram_fd >= 0)
        close(vm->ram_fd);
    else if (vm->ram_path[0])
        unlink(vm->ram_path);
    unlink(vm->serial_sock);
    unlink(vm->qmp_sock);
    snprintf(path, sizeof(path), "%s/state", vm->dir);
    unlink(path);
    free(vm);
}

const char *hvi_qemu_vm_dir(const hvi_qemu_vm *vm)
{
    return vm ? vm->dir : "";
}
const char *hvi_qemu_vm_serial_log(const hvi_qemu_vm *vm)
{
    return vm ? vm->serial_log : "";
}
int hvi_qemu_vm_pid(const hvi_qemu_vm *vm)
{
    return vm ? vm->pid : -1;
}
uint16_t hvi_qemu_vm_gdb_port(const hvi_qemu_vm *vm)
{
    return vm ? vm->gdb_port : 0;
}
uint32_t hvi_qemu_vm_smp(const hvi_qemu_vm *vm)
{
    return vm ? vm->smp : 0;
}
uint64_t hvi_qemu_vm_mem_bytes(const hvi_qemu_vm *vm)
{
    return vm ? vm->mem_bytes : 0;
}
const char *hvi_qemu_vm_accel(const hvi_qemu_vm *vm)
{
    return vm && vm->accel[0] ? vm->accel : "tcg";
}
