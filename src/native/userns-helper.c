/*
 * userns-helper: the one native piece of userns.
 *
 * Node.js is multi-threaded, and the kernel refuses unshare(CLONE_NEWUSER) (and setns into a user
 * namespace) to a multi-threaded process. This small single-threaded program does the part that
 * must happen in the process itself; every decision (which maps, setgroups, newuidmap or direct
 * write, how to explain a failure) stays in TypeScript (src/native/helper.ts, src/spawn/).
 *
 * PROTOCOL (also in src/native/protocol.md)
 *
 *   userns-helper [OPTION]... -- COMMAND [ARG]...
 *
 *   Inherited file descriptors:
 *     0,1,2  the command's stdio (passed through untouched)
 *     3      REPORT fd: the helper writes text lines; made close-on-exec at start-up
 *     4      CONTROL fd: the helper reads it; made close-on-exec at start-up
 *     5...   extra descriptors the caller wants the command to get (see --fd)
 *
 *   Options (each one argv element, in any order, before "--"):
 *     --ppid=PID        the parent's PID; the helper exits at once when getppid() differs
 *                       (the parent died before PR_SET_PDEATHSIG took effect)
 *     --unshare=LIST    comma-separated: user,mount,pid,uts,ipc,net,cgroup ("user" is implied)
 *     --uid=N --gid=N   setresuid/setresgid to these IDs inside after "go" (omitted: no change)
 *     --setgroups=MODE  none (default) | try | must: call setgroups(0, NULL) after "go";
 *                       "try" ignores EPERM (setgroups denied in the namespace)
 *     --cwd=PATH        chdir(PATH) after switching IDs (so it is checked as the inside user)
 *     --mount-proc      make / MS_REC|MS_PRIVATE, then mount a fresh proc on /proc in the new
 *                       PID namespace (requires "mount" and "pid" in --unshare)
 *     --fd=TARGET:SRC   the command gets the helper's fd SRC as fd TARGET (TARGET >= 3);
 *                       every other fd >= 3 is closed before exec
 *     --hold            keeper mode, no command (below)
 *     --walk            walk mode, no command: after "go" the helper closes the report fd and
 *                       walks a tree itself (tree-walk.c: job on fd 0, records on fd 1)
 *     --no-userns       with --walk: create no namespace (a read-only scan in the caller's view)
 *     --report-ns       report "ns <type> <inode> <handle>" for each new namespace (below)
 *     --join=PID --ns=TYPE:INODE,...   enter PID's namespaces instead of unsharing (below)
 *     --no-wait         with --join: no control fd, no wait for "go"
 *     --cwd-fallback=PATH  chdir here when chdir(--cwd) fails
 *     --mount=FLAGS:NS:SRCLEN:SRC:DST  (repeatable; idmap-mount.c) before unshare: clone SRC,
 *                       make it read-only and/or idmapped (NS "@K": the K-th path of a
 *                       "userns PATH…" line read from the control fd first), attach it on DST in
 *                       a mount namespace that the unshare then copies (locking the mounts)
 *     --detach-mounts   with --mount, no command: report "mount <index> <fd>" and "held", keep
 *                       the detached mounts open until EOF on the report fd, exit 0
 *
 *   Sequence:
 *     1. prctl(PR_SET_PDEATHSIG, SIGKILL); exit 125 if getppid() != --ppid.
 *     2. unshare(CLONE_NEWUSER | requested flags).
 *     3. write "ready <pid>\n" to the report fd. <pid> is the helper's PID (= ChildProcess.pid).
 *     4. read the control fd until EOF:
 *          EOF with no bytes  = "go";
 *          any bytes          = abort: the helper exits 125 without writing anything.
 *        Meanwhile the parent writes /proc/<pid>/setgroups, uid_map, gid_map (or runs
 *        newuidmap/newgidmap <pid> ...), oom_score_adj, etc.
 *     5. with a new PID namespace: fork. The child (PID 1 inside) continues with step 6; the
 *        helper stays as a minimal parent: it forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT,
 *        SIGUSR1, SIGUSR2, SIGWINCH to the child, waits for it and exits with its status; when
 *        the child was killed by a signal it re-raises that signal on itself. (The kernel only
 *        delivers a signal sent to a PID-namespace init if the init handles it, SIGKILL aside.)
 *        The child has PR_SET_PDEATHSIG(SIGKILL) bound to this parent, also after exec.
 *     6. setgroups(0, NULL) (if asked), setresgid, setresuid, mount proc (if asked; done
 *        before the ID switch, which may drop capabilities), chdir, arrange --fd descriptors,
 *        close every other fd >= 3, PR_SET_PDEATHSIG(0) (without a PID namespace), execvp.
 *        A successful exec closes the report fd (close-on-exec): EOF on the parent's side with
 *        no "error" line means the command is running.
 *
 *   Any failure is reported as ONE line on the report fd, then the helper exits 127:
 *        error <step> <ERRNO-NAME> <message>\n
 *   steps: unshare, join, setns, control, fork, setgroups, setresgid, setresuid, mount-private,
 *   mount-userns, mount-open, mount-idmap, mount-setattr, mount-ns, mount-attach (--mount),
 *   mount-proc, chdir, fd, exec, keeper, usage.  Exit statuses of the helper itself: 125 = aborted
 *   by the parent or the parent is gone, 127 = a reported failure; anything else is the command's own status.
 *
 * Mode --hold (a keeper for named namespaces; no command):
 *     steps 1-4 as above (with --report-ns, one line "ns <type> <inode> <handle>" per namespace
 *     precedes "ready", except for a new PID namespace, which exists only once its init is
 *     forked: the keeper reports that one just before "held"; <handle> is
 *     "<handle_type hex>:<payload hex>" from name_to_handle_at, or "-" when the kernel cannot
 *     make one). After "go": fork. The parent writes "keeper <pid>"
 *     (the child's PID) and exits 0. The child (PID 1 of the new PID namespace, if any) is the
 *     keeper: setsid, mount proc (if asked), stdio to /dev/null, chdir /, closes every fd but the
 *     report fd, writes "held", then reads the report socket: "commit" = detach (close it and stay
 *     alive), EOF or anything else = exit 125 (the creator died before recording the keeper, so
 *     nothing may outlive it). Detached, it ignores SIGHUP, SIGINT, SIGQUIT, SIGPIPE, reaps every
 *     child (orphans of its PID namespace) and exits 0 on SIGTERM.
 *
 * Mode --join=PID --ns=TYPE:INODE,... (run a command in existing namespaces):
 *     step 2 becomes: open /proc/PID/ns/TYPE for each listed type, refuse (error join ESTALE) any
 *     whose inode differs from the expected one (PID reused, namespace gone), then setns into
 *     the user namespace first and the others after it (mount last), each checked again against
 *     /proc/self/ns where that is still meaningful. "pid" in the list forks as in step 5 (the
 *     keeper stays PID 1). --cwd-fallback=PATH: when chdir(--cwd) fails, chdir there instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <grp.h>

#include "idmap-mount.h"
#include "tree-walk.h"

#define REPORT_FD 3
#define CONTROL_FD 4
#define EXIT_ABORTED 125
#define EXIT_FAILED 127
#define MAX_FDS 64

static int report_fd = REPORT_FD;

static const char *errno_name(int e) {
  switch (e) {
  case EPERM: return "EPERM";
  case ENOENT: return "ENOENT";
  case ESRCH: return "ESRCH";
  case EINTR: return "EINTR";
  case EIO: return "EIO";
  case E2BIG: return "E2BIG";
  case ENOEXEC: return "ENOEXEC";
  case EBADF: return "EBADF";
  case ECHILD: return "ECHILD";
  case EAGAIN: return "EAGAIN";
  case ENOMEM: return "ENOMEM";
  case EACCES: return "EACCES";
  case EFAULT: return "EFAULT";
  case EBUSY: return "EBUSY";
  case EEXIST: return "EEXIST";
  case ENOTDIR: return "ENOTDIR";
  case EISDIR: return "EISDIR";
  case EINVAL: return "EINVAL";
  case ENFILE: return "ENFILE";
  case EMFILE: return "EMFILE";
  case ETXTBSY: return "ETXTBSY";
  case ENOSPC: return "ENOSPC";
  case EROFS: return "EROFS";
  case EPIPE: return "EPIPE";
  case ENAMETOOLONG: return "ENAMETOOLONG";
  case ENOSYS: return "ENOSYS";
  case ELOOP: return "ELOOP";
  case EUSERS: return "EUSERS";
  case EOVERFLOW: return "EOVERFLOW";
  case ELIBBAD: return "ELIBBAD";
  case ENODEV: return "ENODEV";
  case ENOTSOCK: return "ENOTSOCK";
  case ESTALE: return "ESTALE";
  case ECONNRESET: return "ECONNRESET";
  default: return "EUNKNOWN";
  }
}

/* Writes all of buf to the report fd; MSG_NOSIGNAL so a vanished reader never kills us. */
static void report(const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = send(report_fd, buf, len, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = write(report_fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    buf += n;
    len -= (size_t)n;
  }
}

static void fail(const char *step, int err, const char *detail) {
  char line[1024];
  int n = snprintf(line, sizeof line, "error %s %s %s%s%s\n", step, errno_name(err), strerror(err),
                   detail ? ": " : "", detail ? detail : "");
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof line) {
    n = (int)sizeof line - 1;
    line[n - 1] = '\n';
  }
  report(line, (size_t)n);
  _exit(EXIT_FAILED);
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out) {
  char *end;
  if (*s < '0' || *s > '9') return -1;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno != 0 || *end != '\0' || v > max) return -1;
  *out = v;
  return 0;
}

struct fd_pair {
  int target;
  int source;
};

static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

static void close_from(unsigned int first, unsigned int last) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, first, last, 0) == 0) return;
#endif
  /* Fallback for kernels before 5.9: close up to the descriptor limit. */
  struct rlimit rl;
  unsigned long limit = 65536;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < limit) limit = rl.rlim_cur;
  for (unsigned long fd = first; fd <= last && fd < limit; fd++) close((int)fd);
}

/* Puts each source fd at its target number and closes every other fd >= 3, except report_fd. */
static void arrange_fds(struct fd_pair *pairs, int n) {
  int highest = report_fd > CONTROL_FD ? report_fd : CONTROL_FD;
  for (int i = 0; i < n; i++) {
    if (pairs[i].target > highest) highest = pairs[i].target;
    if (pairs[i].source > highest) highest = pairs[i].source;
  }
  /* Move the report fd out of the way of every target (it stays close-on-exec). */
  int moved = fcntl(report_fd, F_DUPFD_CLOEXEC, highest + 1);
  if (moved < 0) fail("fd", errno, "moving the report fd");
  report_fd = moved;
  highest = moved;
  /* Copy every source above all targets first, so a target never clobbers a pending source. */
  int temp[MAX_FDS];
  for (int i = 0; i < n; i++) {
    temp[i] = fcntl(pairs[i].source, F_DUPFD_CLOEXEC, highest + 1);
    if (temp[i] < 0) fail("fd", errno, "duplicating a --fd source");
    highest = temp[i];
  }
  for (int i = 0; i < n; i++) {
    if (dup2(temp[i], pairs[i].target) < 0) fail("fd", errno, "placing a --fd target");
  }
  int keep[MAX_FDS + 1];
  int k = 0;
  for (int i = 0; i < n; i++) keep[k++] = pairs[i].target;
  keep[k++] = report_fd;
  qsort(keep, (size_t)k, sizeof keep[0], cmp_int);
  unsigned int from = 3;
  for (int i = 0; i < k; i++) {
    if ((unsigned int)keep[i] > from) close_from(from, (unsigned int)keep[i] - 1);
    if ((unsigned int)keep[i] + 1 > from) from = (unsigned int)keep[i] + 1;
  }
  close_from(from, ~0U);
}

/* Whether some PATH entry has a file of this name that we can see. */
static int found_in_path(const char *name) {
  const char *path = getenv("PATH");
  if (path == NULL) path = "/bin:/usr/bin";
  char candidate[4096];
  for (const char *p = path;; p++) {
    const char *end = strchrnul(p, ':');
    size_t len = (size_t)(end - p);
    int n = snprintf(candidate, sizeof candidate, "%.*s%s%s", (int)len, p, len ? "/" : "", name);
    struct stat st;
    if (n > 0 && (size_t)n < sizeof candidate && stat(candidate, &st) == 0 && !S_ISDIR(st.st_mode)) return 1;
    if (*end == '\0') return 0;
    p = end;
  }
}

static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
#define N_FORWARDED (sizeof forwarded / sizeof forwarded[0])
static volatile pid_t child_pid = 0;

static void forward_signal(int sig) {
  int saved = errno;
  if (child_pid > 0) kill(child_pid, sig);
  errno = saved;
}

/* The PID-namespace parent: forward signals, wait, exit like the child. Never returns. */
static void supervise(pid_t pid, const sigset_t *original_mask) {
  child_pid = pid;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < N_FORWARDED; i++) sigaction(forwarded[i], &sa, NULL);
  sigprocmask(SIG_SETMASK, original_mask, NULL);
  int status;
  for (;;) {
    pid_t r = waitpid(pid, &status, 0);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) _exit(EXIT_FAILED);
  }
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    /* Die of the same signal, without dumping a core of the helper itself. */
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    signal(sig, SIG_DFL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, sig);
    sigprocmask(SIG_UNBLOCK, &only, NULL);
    raise(sig);
    _exit(128 + sig);
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : EXIT_FAILED);
}

/* Namespace types in setns order: the user namespace first (it grants the capabilities the
   others need), the mount namespace last (it changes what /proc/self means). */
struct ns_type {
  const char *name;  /* as in --unshare and --ns */
  const char *proc;  /* /proc/PID/ns/<proc> of a member */
  const char *child; /* /proc/self/ns/<child> after unshare/setns (pid: the children's) */
  int flag;
};
static const struct ns_type ns_types[] = {
    {"user", "user", "user", CLONE_NEWUSER}, {"cgroup", "cgroup", "cgroup", CLONE_NEWCGROUP},
    {"ipc", "ipc", "ipc", CLONE_NEWIPC},     {"uts", "uts", "uts", CLONE_NEWUTS},
    {"net", "net", "net", CLONE_NEWNET},     {"pid", "pid", "pid_for_children", CLONE_NEWPID},
    {"mount", "mnt", "mnt", CLONE_NEWNS},
};
#define N_NS_TYPES (sizeof ns_types / sizeof ns_types[0])

static const struct ns_type *ns_by_name(const char *name) {
  for (size_t t = 0; t < N_NS_TYPES; t++)
    if (strcmp(ns_types[t].name, name) == 0) return &ns_types[t];
  return NULL;
}

/* "ns <type> <inode> <handle>" for every namespace in flags, as this process sees them now. */
static void report_namespaces(int flags) {
  for (size_t t = 0; t < N_NS_TYPES; t++) {
    if (!(flags & ns_types[t].flag)) continue;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/ns/%s", ns_types[t].child);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    /* A new PID namespace has no identity until its init is forked: the keeper reports it. */
    if (fd < 0 && errno == ENOENT && ns_types[t].flag == CLONE_NEWPID) continue;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) fail("unshare", errno, path);
    char handle[2 * MAX_HANDLE_SZ + 16] = "-";
    union {
      struct file_handle fh;
      char space[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    } h;
    h.fh.handle_bytes = MAX_HANDLE_SZ;
    int mount_id;
    if (name_to_handle_at(fd, "", &h.fh, &mount_id, AT_EMPTY_PATH) == 0 && h.fh.handle_bytes <= MAX_HANDLE_SZ) {
      int n = snprintf(handle, sizeof handle, "%x:", (unsigned)h.fh.handle_type);
      for (unsigned b = 0; b < h.fh.handle_bytes; b++)
        n += snprintf(handle + n, sizeof handle - (size_t)n, "%02x", h.fh.f_handle[b]);
    }
    close(fd);
    char line[sizeof handle + 96];
    int n = snprintf(line, sizeof line, "ns %s %llu %s\n", ns_types[t].name, (unsigned long long)st.st_ino, handle);
    report(line, (size_t)n);
  }
}

struct join_ns {
  const struct ns_type *type;
  unsigned long long inode;
  int fd;
};

/* Opens every namespace of `pid` first (checking each inode), then enters them in table order. */
static void join_namespaces(unsigned long pid, struct join_ns *list, int n) {
  for (int k = 0; k < n; k++) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%lu/ns/%s", pid, list[k].type->proc);
    list[k].fd = open(path, O_RDONLY | O_CLOEXEC);
    if (list[k].fd < 0) fail("join", errno == ENOENT ? ESRCH : errno, path);
    struct stat st;
    if (fstat(list[k].fd, &st) < 0) fail("join", errno, path);
    if ((unsigned long long)st.st_ino != list[k].inode) {
      char d[160];
      snprintf(d, sizeof d, "%s is namespace %llu, expected %llu", path, (unsigned long long)st.st_ino, list[k].inode);
      fail("join", ESTALE, d);
    }
  }
  for (size_t t = 0; t < N_NS_TYPES; t++) {
    for (int k = 0; k < n; k++) {
      if (list[k].type != &ns_types[t]) continue;
      if (setns(list[k].fd, list[k].type->flag) < 0) fail("setns", errno, list[k].type->name);
      close(list[k].fd);
      if (list[k].type->flag == CLONE_NEWNS) continue; /* /proc may now be another PID namespace's */
      char path[64];
      struct stat st;
      snprintf(path, sizeof path, "/proc/self/ns/%s", list[k].type->child);
      if (stat(path, &st) < 0) fail("setns", errno, path);
      if ((unsigned long long)st.st_ino != list[k].inode) fail("setns", ESTALE, list[k].type->name);
    }
  }
}

static volatile sig_atomic_t keeper_term = 0;
static void keeper_on_term(int sig) {
  (void)sig;
  keeper_term = 1;
}
static void keeper_on_child(int sig) { (void)sig; }

/* The keeper (see --hold). Never returns. */
static void keeper(int mount_proc, int report_pid_ns) {
  if (setsid() < 0) fail("keeper", errno, "setsid");
  if (mount_proc) {
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail("mount-private", errno, "/");
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) fail("mount-proc", errno, "/proc");
  }
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) fail("keeper", errno, "/dev/null");
  for (int fd = 0; fd < 3; fd++)
    if (dup2(null, fd) < 0) fail("keeper", errno, "dup2");
  if (chdir("/") < 0) fail("keeper", errno, "/");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = SIG_IGN;
  const int ignored[] = {SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2};
  for (size_t k = 0; k < sizeof ignored / sizeof ignored[0]; k++) sigaction(ignored[k], &sa, NULL);
  /* A PID-namespace init only receives signals it handles: handle both, wait for them blocked. */
  sa.sa_handler = keeper_on_term;
  sigaction(SIGTERM, &sa, NULL);
  sa.sa_handler = keeper_on_child;
  sa.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  sigset_t waiting, during;
  sigemptyset(&waiting);
  sigaddset(&waiting, SIGTERM);
  sigaddset(&waiting, SIGCHLD);
  sigprocmask(SIG_BLOCK, &waiting, &during);
  sigdelset(&during, SIGTERM);
  sigdelset(&during, SIGCHLD);
  /* Keep only the report socket. */
  if (report_fd > 3) close_from(3, (unsigned int)report_fd - 1);
  close_from((unsigned int)report_fd + 1, ~0U);
  if (report_pid_ns) report_namespaces(CLONE_NEWPID);
  report("held\n", 5);
  char buf[64];
  size_t got = 0;
  while (got < 7) {
    ssize_t r = read(report_fd, buf + got, sizeof buf - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) _exit(EXIT_ABORTED);
    got += (size_t)r;
  }
  if (memcmp(buf, "commit\n", 7) != 0) _exit(EXIT_ABORTED);
  close(report_fd);
  report_fd = -1;
  for (;;) {
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    if (keeper_term) _exit(0);
    sigsuspend(&during);
  }
}

int main(int argc, char **argv) {
  unsigned long ppid = 0, uid = 0, gid = 0;
  int have_ppid = 0, have_uid = 0, have_gid = 0, mount_proc = 0;
  int setgroups_mode = 0; /* 0 none, 1 try, 2 must */
  int flags = CLONE_NEWUSER;
  int hold = 0, report_ns = 0, have_unshare = 0;
  int walk = 0, no_userns = 0; /* --walk: tree-walk.c instead of a command */
  unsigned long join_pid = 0;
  struct join_ns joins[N_NS_TYPES];
  int njoins = 0;
  const char *cwd = NULL, *cwd_fallback = NULL;
  struct fd_pair pairs[MAX_FDS];
  int npairs = 0;
  int i, mount_opt;

  /* The report fd first, so that usage errors can be reported. */
  if (fcntl(REPORT_FD, F_SETFD, FD_CLOEXEC) < 0) {
    fprintf(stderr, "userns-helper: fd 3 (report) is not open; this program is run by userns\n");
    return EXIT_FAILED;
  }
  /* --no-wait (join mode: nothing to wait for) runs without a control fd. */
  int no_wait = 0;
  for (int k = 1; k < argc && strcmp(argv[k], "--") != 0; k++) no_wait |= strcmp(argv[k], "--no-wait") == 0;
  if (!no_wait && fcntl(CONTROL_FD, F_SETFD, FD_CLOEXEC) < 0) fail("usage", errno, "fd 4 (control) is not open");

  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    } else if (strncmp(a, "--ppid=", 7) == 0) {
      if (parse_uint(a + 7, 0x7fffffff, &ppid) < 0) fail("usage", EINVAL, a);
      have_ppid = 1;
    } else if (strncmp(a, "--uid=", 6) == 0) {
      if (parse_uint(a + 6, 4294967294UL, &uid) < 0) fail("usage", EINVAL, a);
      have_uid = 1;
    } else if (strncmp(a, "--gid=", 6) == 0) {
      if (parse_uint(a + 6, 4294967294UL, &gid) < 0) fail("usage", EINVAL, a);
      have_gid = 1;
    } else if (strcmp(a, "--setgroups=none") == 0) {
      setgroups_mode = 0;
    } else if (strcmp(a, "--setgroups=try") == 0) {
      setgroups_mode = 1;
    } else if (strcmp(a, "--setgroups=must") == 0) {
      setgroups_mode = 2;
    } else if (strncmp(a, "--cwd=", 6) == 0) {
      cwd = a + 6;
    } else if (strcmp(a, "--mount-proc") == 0) {
      mount_proc = 1;
    } else if (strcmp(a, "--no-wait") == 0) {
      /* handled above */
    } else if (strcmp(a, "--hold") == 0) {
      hold = 1;
    } else if (strcmp(a, "--walk") == 0) {
      walk = 1;
    } else if (strcmp(a, "--no-userns") == 0) {
      no_userns = 1;
    } else if (strcmp(a, "--report-ns") == 0) {
      report_ns = 1;
    } else if (strncmp(a, "--cwd-fallback=", 15) == 0) {
      cwd_fallback = a + 15;
    } else if (strncmp(a, "--join=", 7) == 0) {
      if (parse_uint(a + 7, 0x7fffffff, &join_pid) < 0 || join_pid == 0) fail("usage", EINVAL, a);
    } else if (strncmp(a, "--ns=", 5) == 0) {
      char list[512];
      if (strlen(a + 5) >= sizeof list) fail("usage", EINVAL, a);
      strcpy(list, a + 5);
      char *save = NULL;
      for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(t, ':');
        unsigned long inode;
        if (colon == NULL) fail("usage", EINVAL, t);
        *colon = '\0';
        const struct ns_type *type = ns_by_name(t);
        if (type == NULL || parse_uint(colon + 1, ~0UL, &inode) < 0 || njoins >= (int)N_NS_TYPES)
          fail("usage", EINVAL, t);
        for (int k = 0; k < njoins; k++)
          if (joins[k].type == type) fail("usage", EINVAL, t);
        joins[njoins].type = type;
        joins[njoins].inode = inode;
        joins[njoins].fd = -1;
        njoins++;
      }
    } else if (strncmp(a, "--fd=", 5) == 0) {
      unsigned long target, source;
      char buf[64];
      const char *colon = strchr(a + 5, ':');
      size_t len = colon ? (size_t)(colon - (a + 5)) : 0;
      if (!colon || len == 0 || len >= sizeof buf || npairs >= MAX_FDS) fail("usage", EINVAL, a);
      memcpy(buf, a + 5, len);
      buf[len] = '\0';
      if (parse_uint(buf, 1 << 20, &target) < 0 || parse_uint(colon + 1, 1 << 20, &source) < 0 || target < 3)
        fail("usage", EINVAL, a);
      pairs[npairs].target = (int)target;
      pairs[npairs].source = (int)source;
      npairs++;
    } else if (strncmp(a, "--unshare=", 10) == 0) {
      char list[128];
      have_unshare = 1;
      if (strlen(a + 10) >= sizeof list) fail("usage", EINVAL, a);
      strcpy(list, a + 10);
      char *save = NULL;
      for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, "user") == 0) flags |= CLONE_NEWUSER;
        else if (strcmp(t, "mount") == 0) flags |= CLONE_NEWNS;
        else if (strcmp(t, "pid") == 0) flags |= CLONE_NEWPID;
        else if (strcmp(t, "uts") == 0) flags |= CLONE_NEWUTS;
        else if (strcmp(t, "ipc") == 0) flags |= CLONE_NEWIPC;
        else if (strcmp(t, "net") == 0) flags |= CLONE_NEWNET;
        else if (strcmp(t, "cgroup") == 0) flags |= CLONE_NEWCGROUP;
        else fail("usage", EINVAL, t);
      }
    } else if ((mount_opt = idmap_mount_option(a)) != 0) {
      if (mount_opt < 0) fail("usage", EINVAL, a); /* --mount=SPEC, --detach-mounts: idmap-mount.c */
    } else {
      fail("usage", EINVAL, a);
    }
  }
  if ((hold || walk || idmap_mount_detach_mode()) ? i < argc : i >= argc)
    fail("usage", EINVAL, (hold || walk) ? "--hold and --walk take no command" : "no command after --");
  if (walk && (hold || join_pid != 0 || (flags & ~CLONE_NEWUSER) != 0 || have_uid || have_gid))
    fail("usage", EINVAL, "--walk excludes --hold, --join, --uid, --gid and namespaces other than user");
  if (no_userns && !walk) fail("usage", EINVAL, "--no-userns needs --walk");
  char **command = argv + i;
  if (mount_proc && !((flags & CLONE_NEWNS) && (flags & CLONE_NEWPID)))
    fail("usage", EINVAL, "--mount-proc needs mount and pid in --unshare");
  if (join_pid != 0) {
    int has_user = 0;
    for (int k = 0; k < njoins; k++) has_user |= joins[k].type->flag == CLONE_NEWUSER;
    if (!has_user) fail("usage", EINVAL, "--join needs --ns with the user namespace");
    if (have_unshare || hold || mount_proc || idmap_mount_requested())
      fail("usage", EINVAL, "--join excludes --unshare, --hold, --mount-proc, --mount and --detach-mounts");
  } else if (no_wait) {
    fail("usage", EINVAL, "--no-wait needs --join");
  } else if (njoins > 0) {
    fail("usage", EINVAL, "--ns needs --join");
  }

  /* 1. Die with the parent until exec; the parent may already be gone. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail("prctl", errno, NULL);
  if (have_ppid && (unsigned long)getppid() != ppid) _exit(EXIT_ABORTED);

  /* Blocked until the command (or the supervisor's handlers) are ready; restored before exec. */
  sigset_t original_mask, block;
  sigemptyset(&block);
  for (size_t s = 0; s < N_FORWARDED; s++) sigaddset(&block, forwarded[s]);
  sigprocmask(SIG_SETMASK, NULL, &original_mask);

  /* 2. */
  if (join_pid != 0) {
    join_namespaces(join_pid, joins, njoins);
    flags = 0;
    for (int k = 0; k < njoins; k++) flags |= joins[k].type->flag;
  } else {
    struct idmap_mount_error mount_err; /* --mount: clone, idmap and attach before unshare */
    if (idmap_mounts_setup(flags, report_fd, CONTROL_FD, &mount_err) != 0)
      fail(mount_err.step, mount_err.err, mount_err.detail);
    if (!no_userns && unshare(flags) < 0) fail("unshare", errno, NULL);
    if (report_ns) report_namespaces(flags);
  }

  /* 3. */
  char ready[64];
  int n = snprintf(ready, sizeof ready, "ready %ld\n", (long)getpid());
  report(ready, (size_t)n);

  /* 4. Wait for "go" (EOF with no bytes). */
  for (; !no_wait;) {
    char buf[256];
    ssize_t r = read(CONTROL_FD, buf, sizeof buf);
    if (r == 0) break;
    if (r > 0) _exit(EXIT_ABORTED);
    if (errno == EINTR) continue;
    if (errno == ECONNRESET) _exit(EXIT_ABORTED);
    fail("control", errno, NULL);
  }
  if (!no_wait) close(CONTROL_FD);

  if (hold) {
    pid_t keeper_pid = fork();
    if (keeper_pid < 0) fail("fork", errno, NULL);
    if (keeper_pid == 0) keeper(mount_proc, report_ns && (flags & CLONE_NEWPID));
    char line[64];
    int len = snprintf(line, sizeof line, "keeper %ld\n", (long)keeper_pid);
    report(line, (size_t)len);
    _exit(0);
  }

  /* --walk: the walk runs in this process (no exec); EOF on the report fd tells the parent. */
  if (walk) {
    close(report_fd);
    report_fd = -1;
    _exit(tree_walk_main());
  }

  /* 5. A new PID namespace applies to children only. */
  int in_pid_child = 0;
  if (flags & CLONE_NEWPID) {
    int alive[2];
    if (pipe2(alive, O_CLOEXEC) < 0) fail("fork", errno, "pipe");
    sigprocmask(SIG_BLOCK, &block, NULL);
    pid_t pid = fork();
    if (pid < 0) fail("fork", errno, NULL);
    if (pid > 0) {
      /* The supervisor: the report fd now belongs to the child alone (its EOF = exec). */
      close(alive[0]);
      close(report_fd);
      report_fd = -1;
      /* Hold nothing the command might be waiting on (pipes it closes), except our end of alive. */
      if (alive[1] > 3) close_from(3, (unsigned int)alive[1] - 1);
      close_from((unsigned int)alive[1] + 1, ~0U);
      prctl(PR_SET_PDEATHSIG, 0);
      supervise(pid, &original_mask);
    }
    close(alive[1]);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail("prctl", errno, NULL);
    /* If the supervisor died before the prctl, its end of the pipe is closed already. */
    struct pollfd p = {alive[0], POLLIN, 0};
    if (poll(&p, 1, 0) != 0) _exit(EXIT_ABORTED);
    close(alive[0]);
    in_pid_child = 1;
  }

  /* 6. */
  if (mount_proc) {
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail("mount-private", errno, "/");
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) fail("mount-proc", errno, "/proc");
  }
  if (setgroups_mode != 0 && setgroups(0, NULL) < 0) {
    if (!(setgroups_mode == 1 && errno == EPERM)) fail("setgroups", errno, NULL);
  }
  if (have_gid && setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) < 0) {
    char d[32];
    snprintf(d, sizeof d, "gid %lu", gid);
    fail("setresgid", errno, d);
  }
  if (have_uid && setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0) {
    char d[32];
    snprintf(d, sizeof d, "uid %lu", uid);
    fail("setresuid", errno, d);
  }
  if (cwd && chdir(cwd) < 0 && (cwd_fallback == NULL || chdir(cwd_fallback) < 0)) fail("chdir", errno, cwd);
  arrange_fds(pairs, npairs);
  /* A credential change clears the death signal; set it again for the PID-namespace init. */
  if (prctl(PR_SET_PDEATHSIG, in_pid_child ? SIGKILL : 0) < 0) fail("prctl", errno, NULL);
  sigprocmask(SIG_SETMASK, &original_mask, NULL);
  execvp(command[0], command);
  int err = errno;
  /* execvp says EACCES when some PATH directory was not searchable (e.g. /root/bin for a mapped
     user) even if the command exists nowhere: then report ENOENT, which is what the user needs. */
  if (err == EACCES && strchr(command[0], '/') == NULL && !found_in_path(command[0])) err = ENOENT;
  fail("exec", err, command[0]);
  return EXIT_FAILED;
}
