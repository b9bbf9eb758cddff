/*
 * userns-helper: the one native piece of userns (protocol: src/native/protocol.md).
 *
 * Node.js is multi-threaded, and the kernel refuses unshare(CLONE_NEWUSER) (and setns into a user
 * namespace) to a multi-threaded process. This small single-threaded program does the part that
 * must happen in the process itself, in one of seven explicit modes:
 *
 *   run    create namespaces, wait while the parent writes the maps, become the command
 *   hold   create namespaces and leave a keeper process holding them (named namespaces), or
 *          hold them in this process until the parent has bind-mounted them (--no-keeper)
 *   join   enter existing namespaces (by nsfs handle, bind-mount file or a process's pidfd),
 *          become the command
 *   bind   bind-mount a process's namespace files onto files, or unmount such files
 *   probe  report whether nsfs handles and pidfds work, and whether given handles reopen, and
 *          read the ACL xattr of given files
 *   mount  make detached (idmapped) mounts and hold them open (idmap-mount.c)
 *   walk   walk a directory tree, rewriting IDs (tree-walk.c)
 *
 * One story: parse the arguments (parse_args), check them against the mode (check_options), then
 * the phases of the mode (main). Every decision (which maps, setgroups, newuidmap or a direct
 * write, how to explain a failure) stays in TypeScript (src/native/helper.ts drives this program).
 * A failure is reported as one line "error <step> <errno number> <text>" and the helper exits 127.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <linux/limits.h> /* XATTR_SIZE_MAX */
#include <unistd.h>
#include <grp.h>

#include "idmap-mount.h"
#include "tree-walk.h"

#define REPORT_FD 3
#define CONTROL_FD 4
#define EXIT_ABORTED 125
#define EXIT_FAILED 127
#define MAX_FDS 64

/* Linux 6.18: open_by_handle_at() on this pseudo-descriptor reopens an nsfs file handle
   (docs/nsfs-handles.md). Older kernels answer EBADF. */
#ifndef FD_NSFS_ROOT
#define FD_NSFS_ROOT (-10003)
#endif
/* ioctl on a namespace fd: its CLONE_NEW* type (Linux 4.11+). */
#ifndef NS_GET_NSTYPE
#define NS_GET_NSTYPE _IO(0xb7, 0x3)
#endif

/* --no-handles: behave as a kernel without nsfs file handles (tests of the fallbacks). */
static int no_handles = 0;

static int report_fd = REPORT_FD;

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

/* Reports a failure (the errno as a number: TypeScript names it) and exits 127. */
static void fail(const char *step, int err, const char *detail) {
  char line[1024];
  int n = snprintf(line, sizeof line, "error %s %d %s%s%s\n", step, err, strerror(err), detail ? ": " : "",
                   detail ? detail : "");
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

struct join_ns {
  const struct ns_type *type;
  unsigned long long inode;
  int fd;
  char handle[2 * MAX_HANDLE_SZ + 16]; /* "<type hex>:<payload hex>" (join by handle), or "" */
  const char *path;   /* a bind-mounted namespace file (join by file), or NULL */
};

/* Parses "<type hex>:<payload hex>" into *fh (room for MAX_HANDLE_SZ bytes); -1 when malformed. */
static int parse_handle(const char *text, struct file_handle *fh) {
  char *end;
  errno = 0;
  unsigned long type = strtoul(text, &end, 16);
  if (errno != 0 || end == text || *end != ':' || type > 0x7fffffff) return -1;
  const char *hex = end + 1;
  size_t len = strlen(hex);
  if (len == 0 || len % 2 != 0 || len / 2 > MAX_HANDLE_SZ) return -1;
  for (size_t i = 0; i < len / 2; i++) {
    unsigned int byte;
    if (sscanf(hex + 2 * i, "%2x", &byte) != 1 || !strchr("0123456789abcdefABCDEF", hex[2 * i]) ||
        !strchr("0123456789abcdefABCDEF", hex[2 * i + 1]))
      return -1;
    fh->f_handle[i] = (unsigned char)byte;
  }
  fh->handle_type = (int)type;
  fh->handle_bytes = (unsigned int)(len / 2);
  return 0;
}

/* Room for one nsfs file handle (16 bytes on 6.18; MAX_HANDLE_SZ allowed). */
typedef union {
  struct file_handle fh;
  char space[sizeof(struct file_handle) + MAX_HANDLE_SZ];
} handle_buf;

/* name_to_handle_at on an open namespace fd: 0, or the errno (EOPNOTSUPP with --no-handles). */
static int encode_handle(int fd, handle_buf *h) {
  if (no_handles) return EOPNOTSUPP;
  int mount_id;
  h->fh.handle_bytes = MAX_HANDLE_SZ;
  if (name_to_handle_at(fd, "", &h->fh, &mount_id, AT_EMPTY_PATH) < 0) return errno;
  return h->fh.handle_bytes <= MAX_HANDLE_SZ ? 0 : EOVERFLOW;
}

/* Reopens a namespace from its nsfs handle (ESTALE: gone or not permitted; EBADF/EOPNOTSUPP: no
   nsfs handles on this kernel; EINVAL: a malformed handle). Returns the fd or -1 with errno. */
static int open_handle(const char *text) {
  handle_buf h;
  if (parse_handle(text, &h.fh) < 0) {
    errno = EINVAL;
    return -1;
  }
  if (no_handles) {
    errno = EOPNOTSUPP;
    return -1;
  }
  return open_by_handle_at(FD_NSFS_ROOT, &h.fh, O_RDONLY | O_CLOEXEC);
}

/* The start time of a process (field 22 of /proc/PID/stat) as text, or -1 with errno. */
static int read_start_time(unsigned long pid, char *out, size_t size) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%lu/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  int saved = errno;
  close(fd);
  if (n <= 0) {
    errno = n < 0 ? saved : ESRCH;
    return -1;
  }
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  if (p == NULL) {
    errno = EIO;
    return -1;
  }
  /* After ") " come fields 3, 4, …: field 22 is the 20th of them. */
  p += 2;
  for (int field = 3; field < 22 && p != NULL; field++) {
    p = strchr(p, ' ');
    if (p != NULL) p++;
  }
  if (p == NULL) {
    errno = EIO;
    return -1;
  }
  size_t len = strcspn(p, " \n");
  if (len == 0 || len >= size) {
    errno = EIO;
    return -1;
  }
  memcpy(out, p, len);
  out[len] = '\0';
  return 0;
}

/* Where join mode takes the namespaces from (chosen by the caller: protocol.md "Join mode"). */
enum join_source { JOIN_PID = 1, JOIN_HANDLE, JOIN_FILE };

/* Checks that fd is the namespace the caller recorded (inode, and the type for a file). */
static void check_joined_fd(const struct join_ns *j, const char *what) {
  struct stat st;
  if (fstat(j->fd, &st) < 0) fail("join", errno, what);
  if ((unsigned long long)st.st_ino != j->inode) {
    char d[200];
    snprintf(d, sizeof d, "%s is namespace %llu, expected %llu", what, (unsigned long long)st.st_ino, j->inode);
    fail("join", ESTALE, d);
  }
  int type = ioctl(j->fd, NS_GET_NSTYPE);
  if (type >= 0 && type != j->type->flag) {
    char d[200];
    snprintf(d, sizeof d, "%s is not a %s namespace", what, j->type->name);
    fail("join", ESTALE, d);
  }
}

/* Opens every namespace first (from handles, bind-mounted files, or /proc/PID/ns of a process
   pinned by a pidfd), checks each against the recorded identity, then enters them in table
   order: user first (it grants the capabilities the others need), mount last. */
static void join_namespaces(enum join_source source, unsigned long pid, const char *start_time, struct join_ns *list,
                            int n) {
  int pidfd = -1;
  if (source == JOIN_PID) {
    /* The pidfd pins the process: if it dies (and its PID is reused) after the checks below,
       setns on it fails with ESRCH instead of entering another process's namespaces. */
    pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
    if (pidfd < 0 && errno != ENOSYS) fail("join", errno, "pidfd_open");
    if (start_time != NULL) {
      char now[64];
      if (read_start_time(pid, now, sizeof now) < 0) fail("join", errno == ENOENT ? ESRCH : errno, "start time");
      if (strcmp(now, start_time) != 0) {
        char d[160];
        snprintf(d, sizeof d, "PID %lu started at %s, expected %s: another process", pid, now, start_time);
        fail("join", ESTALE, d);
      }
    }
  }
  for (int k = 0; k < n; k++) {
    char what[4200];
    if (source == JOIN_HANDLE) {
      snprintf(what, sizeof what, "%s namespace handle", list[k].type->name);
      list[k].fd = open_handle(list[k].handle);
      if (list[k].fd < 0) fail("join-handle", errno, list[k].type->name);
    } else if (source == JOIN_FILE) {
      snprintf(what, sizeof what, "%s", list[k].path);
      list[k].fd = open(list[k].path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      if (list[k].fd < 0) fail("join", errno == ENOENT ? ESTALE : errno, what);
      /* An unmounted bind file is an empty regular file: not a namespace. */
      if (ioctl(list[k].fd, NS_GET_NSTYPE) < 0) {
        snprintf(what + strlen(what), sizeof what - strlen(what), " is not a namespace (no longer bind-mounted)");
        fail("join", ESTALE, what);
      }
    } else {
      snprintf(what, sizeof what, "/proc/%lu/ns/%s", pid, list[k].type->proc);
      list[k].fd = open(what, O_RDONLY | O_CLOEXEC);
      if (list[k].fd < 0) fail("join", errno == ENOENT ? ESRCH : errno, what);
    }
    check_joined_fd(&list[k], what);
  }
  /* Already in the target user namespace (e.g. exec from inside): setns would say EINVAL. */
  struct stat self_user;
  unsigned long long own_user = stat("/proc/self/ns/user", &self_user) == 0 ? (unsigned long long)self_user.st_ino : 0;
  int flags = 0;
  for (int k = 0; k < n; k++)
    if (!(list[k].type->flag == CLONE_NEWUSER && list[k].inode == own_user)) flags |= list[k].type->flag;
  if (pidfd >= 0) {
    /* One setns for all but the mount namespace (all or nothing), checked, then the mount one. */
    int first = flags & ~CLONE_NEWNS;
    if (first != 0 && setns(pidfd, first) < 0) fail("setns", errno, "pidfd");
  }
  for (size_t t = 0; t < N_NS_TYPES; t++) {
    for (int k = 0; k < n; k++) {
      if (list[k].type != &ns_types[t]) continue;
      int skip = !(flags & list[k].type->flag);
      if (!skip && (pidfd < 0 || list[k].type->flag == CLONE_NEWNS)) {
        if (pidfd >= 0 ? setns(pidfd, CLONE_NEWNS) < 0 : setns(list[k].fd, list[k].type->flag) < 0)
          fail("setns", errno, list[k].type->name);
      }
      close(list[k].fd);
      if (list[k].type->flag == CLONE_NEWNS) continue; /* /proc may now be another PID namespace's */
      char path[64];
      struct stat st;
      snprintf(path, sizeof path, "/proc/self/ns/%s", list[k].type->child);
      if (stat(path, &st) < 0) fail("setns", errno, path);
      if ((unsigned long long)st.st_ino != list[k].inode) fail("setns", ESTALE, list[k].type->name);
    }
  }
  if (pidfd >= 0) close(pidfd);
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
static void arrange_fds(const struct fd_pair *pairs, int n) {
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

/* ---- arguments ------------------------------------------------------------------------- */

enum mode { MODE_RUN = 1, MODE_HOLD = 2, MODE_JOIN = 4, MODE_MOUNT = 8, MODE_WALK = 16, MODE_BIND = 32, MODE_PROBE = 64 };

static const struct {
  const char *name;
  enum mode mode;
} modes[] = {{"run", MODE_RUN},     {"hold", MODE_HOLD}, {"join", MODE_JOIN},   {"mount", MODE_MOUNT},
               {"walk", MODE_WALK},   {"bind", MODE_BIND}, {"probe", MODE_PROBE}};

#define MAX_LIST 64

struct bind_item {
  const struct ns_type *type; /* NULL for an --unbind */
  const char *path;
};

struct options {
  enum mode mode;
  unsigned long ppid, uid, gid, target;
  int have_ppid, have_uid, have_gid;
  int setgroups; /* 0 none, 1 try (ignore EPERM), 2 must */
  int flags;     /* CLONE_NEW* to create (run, hold; user always) or entered (join) */
  int mount_proc, report_ns, no_wait, no_userns, no_keeper, one_socket;
  const char *cwd, *cwd_fallback;
  const char *start_time; /* join by pid: the process's start time, checked after pidfd_open */
  struct join_ns joins[N_NS_TYPES];
  int njoins, nfiles;
  unsigned long bind_from; /* bind: the process whose namespace files are bound */
  struct bind_item binds[MAX_LIST];
  int nbinds;
  const char *handles[MAX_LIST]; /* probe: handles to try */
  int nhandles;
  const char *acls[MAX_LIST]; /* probe: files whose system.posix_acl_access to report */
  int nacls;
  struct fd_pair fds[MAX_FDS];
  int nfds;
  char **command; /* NULL-terminated; NULL when the mode takes none */
};

/* Each option, the modes it is allowed in, and whether it takes "=VALUE". */
enum opt_id {
  OPT_MODE, OPT_PPID, OPT_UNSHARE, OPT_UID, OPT_GID, OPT_SETGROUPS, OPT_CWD, OPT_CWD_FALLBACK,
  OPT_MOUNT_PROC, OPT_FD, OPT_REPORT_NS, OPT_TARGET, OPT_NS, OPT_NO_WAIT, OPT_NO_USERNS, OPT_MOUNT,
  OPT_START_TIME, OPT_NS_FILE, OPT_NO_HANDLES, OPT_NO_KEEPER, OPT_BIND_FROM, OPT_BIND, OPT_UNBIND, OPT_HANDLE, OPT_ACL,
  OPT_ONE_SOCKET,
};
#define ALL_MODES (MODE_RUN | MODE_HOLD | MODE_JOIN | MODE_MOUNT | MODE_WALK | MODE_BIND | MODE_PROBE)
static const struct {
  const char *name;
  enum opt_id id;
  int value;
  unsigned modes;
} option_table[] = {
    {"mode", OPT_MODE, 1, ALL_MODES},
    {"ppid", OPT_PPID, 1, ALL_MODES},
    {"unshare", OPT_UNSHARE, 1, MODE_RUN | MODE_HOLD},
    {"uid", OPT_UID, 1, MODE_RUN | MODE_JOIN},
    {"gid", OPT_GID, 1, MODE_RUN | MODE_JOIN},
    {"setgroups", OPT_SETGROUPS, 1, MODE_RUN | MODE_JOIN},
    {"cwd", OPT_CWD, 1, MODE_RUN | MODE_JOIN},
    {"cwd-fallback", OPT_CWD_FALLBACK, 1, MODE_RUN | MODE_JOIN},
    {"mount-proc", OPT_MOUNT_PROC, 0, MODE_RUN | MODE_HOLD},
    {"fd", OPT_FD, 1, MODE_RUN | MODE_JOIN},
    {"report-ns", OPT_REPORT_NS, 0, MODE_RUN | MODE_HOLD},
    {"target", OPT_TARGET, 1, MODE_JOIN},
    {"ns", OPT_NS, 1, MODE_JOIN},
    {"no-wait", OPT_NO_WAIT, 0, MODE_JOIN},
    {"no-userns", OPT_NO_USERNS, 0, MODE_WALK},
    {"mount", OPT_MOUNT, 1, MODE_RUN | MODE_HOLD | MODE_MOUNT},
    {"start-time", OPT_START_TIME, 1, MODE_JOIN},
    {"ns-file", OPT_NS_FILE, 1, MODE_JOIN},
    {"no-handles", OPT_NO_HANDLES, 0, MODE_RUN | MODE_HOLD | MODE_JOIN | MODE_PROBE},
    {"no-keeper", OPT_NO_KEEPER, 0, MODE_HOLD},
    {"bind-from", OPT_BIND_FROM, 1, MODE_BIND},
    {"bind", OPT_BIND, 1, MODE_BIND},
    {"unbind", OPT_UNBIND, 1, MODE_BIND},
    {"handle", OPT_HANDLE, 1, MODE_PROBE},
    {"acl", OPT_ACL, 1, MODE_PROBE},
    {"one-socket", OPT_ONE_SOCKET, 0, MODE_RUN},
};
#define N_OPTIONS (sizeof option_table / sizeof option_table[0])

static void usage(const char *what) { fail("usage", EINVAL, what); }

/* Splits a comma-separated list into *out (a copy in buf); returns the number of items. */
static int split_list(const char *list, char *buf, size_t size, char **out, int max) {
  if (strlen(list) >= size) usage(list);
  strcpy(buf, list);
  int n = 0;
  char *save = NULL;
  for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (n >= max) usage(list);
    out[n++] = t;
  }
  return n;
}

static void parse_value(struct options *o, enum opt_id id, const char *arg, const char *v) {
  char buf[2048], *items[16];
  switch (id) {
  case OPT_MODE:
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++)
      if (strcmp(v, modes[m].name) == 0) o->mode = modes[m].mode;
    if (o->mode == 0) usage(arg);
    break;
  case OPT_PPID:
    if (parse_uint(v, 0x7fffffff, &o->ppid) < 0) usage(arg);
    o->have_ppid = 1;
    break;
  case OPT_UID:
    if (parse_uint(v, 4294967294UL, &o->uid) < 0) usage(arg);
    o->have_uid = 1;
    break;
  case OPT_GID:
    if (parse_uint(v, 4294967294UL, &o->gid) < 0) usage(arg);
    o->have_gid = 1;
    break;
  case OPT_TARGET:
    if (parse_uint(v, 0x7fffffff, &o->target) < 0 || o->target == 0) usage(arg);
    break;
  case OPT_SETGROUPS:
    if (strcmp(v, "none") == 0) o->setgroups = 0;
    else if (strcmp(v, "try") == 0) o->setgroups = 1;
    else if (strcmp(v, "must") == 0) o->setgroups = 2;
    else usage(arg);
    break;
  case OPT_CWD:
    o->cwd = v;
    break;
  case OPT_CWD_FALLBACK:
    o->cwd_fallback = v;
    break;
  case OPT_UNSHARE: {
    int n = split_list(v, buf, sizeof buf, items, 16);
    for (int k = 0; k < n; k++) {
      const struct ns_type *type = ns_by_name(items[k]);
      if (type == NULL) usage(items[k]);
      o->flags |= type->flag;
    }
    break;
  }
  case OPT_NS: {
    int n = split_list(v, buf, sizeof buf, items, 16);
    for (int k = 0; k < n; k++) {
      /* TYPE:INODE or TYPE:INODE:HANDLE (the handle itself contains a colon). */
      char *colon = strchr(items[k], ':');
      unsigned long inode;
      if (colon == NULL) usage(items[k]);
      *colon = '\0';
      char *handle = strchr(colon + 1, ':');
      if (handle != NULL) *handle++ = '\0';
      const struct ns_type *type = ns_by_name(items[k]);
      if (type == NULL || parse_uint(colon + 1, ~0UL, &inode) < 0 || o->njoins >= (int)N_NS_TYPES) usage(items[k]);
      if (handle != NULL && (*handle == '\0' || strlen(handle) >= sizeof o->joins[0].handle)) usage(items[k]);
      for (int j = 0; j < o->njoins; j++)
        if (o->joins[j].type == type) usage(items[k]);
      o->joins[o->njoins].type = type;
      o->joins[o->njoins].inode = inode;
      o->joins[o->njoins].fd = -1;
      strcpy(o->joins[o->njoins].handle, handle == NULL ? "" : handle);
      o->joins[o->njoins].path = NULL;
      o->njoins++;
      o->flags |= type->flag;
    }
    break;
  }
  case OPT_FD: {
    unsigned long target, source;
    char num[64];
    const char *colon = strchr(v, ':');
    size_t len = colon ? (size_t)(colon - v) : 0;
    if (!colon || len == 0 || len >= sizeof num || o->nfds >= MAX_FDS) usage(arg);
    memcpy(num, v, len);
    num[len] = '\0';
    if (parse_uint(num, 1 << 20, &target) < 0 || parse_uint(colon + 1, 1 << 20, &source) < 0 || target < 3)
      usage(arg);
    o->fds[o->nfds].target = (int)target;
    o->fds[o->nfds].source = (int)source;
    o->nfds++;
    break;
  }
  case OPT_MOUNT:
    if (idmap_mount_add(v) < 0) usage(arg); /* idmap-mount.c keeps the mounts */
    break;
  case OPT_START_TIME:
    if (*v < '0' || *v > '9' || strspn(v, "0123456789") != strlen(v)) usage(arg);
    o->start_time = v;
    break;
  case OPT_NS_FILE: /* TYPE:PATH, after the --ns that lists TYPE */
  case OPT_BIND: {  /* TYPE:PATH */
    const char *colon = strchr(v, ':');
    char name[16];
    size_t len = colon ? (size_t)(colon - v) : 0;
    if (!colon || len == 0 || len >= sizeof name || colon[1] != '/') usage(arg);
    memcpy(name, v, len);
    name[len] = '\0';
    const struct ns_type *type = ns_by_name(name);
    if (type == NULL) usage(arg);
    if (id == OPT_BIND) {
      if (o->nbinds >= MAX_LIST) usage(arg);
      o->binds[o->nbinds].type = type;
      o->binds[o->nbinds++].path = colon + 1;
      break;
    }
    int k = 0;
    while (k < o->njoins && o->joins[k].type != type) k++;
    if (k == o->njoins || o->joins[k].path != NULL) usage(arg);
    o->joins[k].path = colon + 1;
    o->nfiles++;
    break;
  }
  case OPT_UNBIND:
    if (*v != '/' || o->nbinds >= MAX_LIST) usage(arg);
    o->binds[o->nbinds].type = NULL;
    o->binds[o->nbinds++].path = v;
    break;
  case OPT_BIND_FROM:
    if (parse_uint(v, ~0UL, &o->bind_from) < 0 || o->bind_from == 0) usage(arg);
    break;
  case OPT_HANDLE:
    if (o->nhandles >= MAX_LIST) usage(arg);
    o->handles[o->nhandles++] = v;
    break;
  case OPT_ACL:
    if (*v != '/' || o->nacls >= MAX_LIST) usage(arg);
    o->acls[o->nacls++] = v;
    break;
  default:
    break;
  }
}

/* Fills *o from argv: "--NAME" or "--NAME=VALUE" options, then "--" and the command. */
static void parse_args(int argc, char **argv, struct options *o) {
  memset(o, 0, sizeof *o);
  o->flags = CLONE_NEWUSER;
  int i = 1;
  for (; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "--") == 0) {
      i++;
      break;
    }
    if (strncmp(arg, "--", 2) != 0) usage(arg);
    const char *name = arg + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    size_t k = 0;
    while (k < N_OPTIONS && !(strlen(option_table[k].name) == len && strncmp(option_table[k].name, name, len) == 0)) k++;
    if (k == N_OPTIONS || option_table[k].value != (eq != NULL)) usage(arg);
    if ((option_table[k].id == OPT_MODE) != (o->mode == 0)) usage(o->mode == 0 ? "--mode=MODE must come first" : arg);
    if (!(option_table[k].modes & o->mode) && option_table[k].id != OPT_MODE) usage(arg); /* not in this mode */
    switch (option_table[k].id) {
    case OPT_MOUNT_PROC: o->mount_proc = 1; break;
    case OPT_REPORT_NS: o->report_ns = 1; break;
    case OPT_NO_WAIT: o->no_wait = 1; break;
    case OPT_NO_USERNS: o->no_userns = 1; break;
    case OPT_NO_HANDLES: no_handles = 1; break;
    case OPT_NO_KEEPER: o->no_keeper = 1; break;
    case OPT_ONE_SOCKET: o->one_socket = 1; break;
    default: parse_value(o, option_table[k].id, arg, eq + 1);
    }
  }
  o->command = i < argc ? argv + i : NULL;
}

/* What the option table cannot say: a command or none, and what each mode needs. */
static void check_options(const struct options *o) {
  int takes_command = o->mode == MODE_RUN || o->mode == MODE_JOIN;
  if (takes_command && o->command == NULL) usage("no command after --");
  if (!takes_command && o->command != NULL) usage("this mode takes no command");
  if (o->mount_proc && !((o->flags & CLONE_NEWNS) && (o->flags & CLONE_NEWPID)))
    usage("--mount-proc needs mount and pid in --unshare");
  if (o->mode == MODE_JOIN) {
    int has_user = 0, nhandles = 0;
    for (int k = 0; k < o->njoins; k++) {
      has_user |= o->joins[k].type->flag == CLONE_NEWUSER;
      nhandles += o->joins[k].handle[0] != '\0';
    }
    if (!has_user) usage("--mode=join needs --ns with the user namespace");
    /* Exactly one source, for every namespace: a process, handles, or files. */
    int sources = (o->target != 0) + (nhandles > 0) + (o->nfiles > 0);
    if (sources != 1) usage("--mode=join needs one of --target=PID, a handle in each --ns, or an --ns-file for each");
    if ((nhandles > 0 && nhandles != o->njoins) || (o->nfiles > 0 && o->nfiles != o->njoins))
      usage("--mode=join needs a handle (or --ns-file) for every --ns");
    if (o->start_time != NULL && o->target == 0) usage("--start-time needs --target");
  }
  if (o->mode == MODE_BIND) {
    int nbind = 0;
    for (int k = 0; k < o->nbinds; k++) nbind += o->binds[k].type != NULL;
    if (o->nbinds == 0) usage("--mode=bind needs --bind or --unbind");
    if ((nbind > 0) != (o->bind_from != 0)) usage("--bind needs --bind-from=PID (and only --bind does)");
  }
  if (o->no_keeper && o->mount_proc) usage("--no-keeper cannot take --mount-proc");
  if (o->mode == MODE_MOUNT && idmap_mount_count() == 0) usage("--mode=mount needs --mount");
  /* The mounts' user namespaces come over the control fd while the report fd is written. */
  if (o->one_socket && idmap_mount_count() > 0) usage("--one-socket cannot take --mount");
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
    handle_buf h;
    if (encode_handle(fd, &h) == 0) {
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

/* Reads the parent's line `word` ("commit\n", "go\n") from the report socket; EOF, a reset or
   anything else: exit 125 (aborted). Another read error is reported as a failure at `step`
   (exit 127), or, when step is NULL, taken for an abort too. */
static void wait_for_word(const char *word, const char *step) {
  char buf[16];
  size_t len = strlen(word), got = 0;
  while (got < len) {
    ssize_t r = read(report_fd, buf + got, len - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && step != NULL && errno != ECONNRESET) fail(step, errno, NULL);
    if (r <= 0) _exit(EXIT_ABORTED);
    got += (size_t)r;
  }
  if (memcmp(buf, word, len) != 0) _exit(EXIT_ABORTED);
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
  wait_for_word("commit\n", NULL);
  close(report_fd);
  report_fd = -1;
  for (;;) {
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    if (keeper_term) _exit(0);
    sigsuspend(&during);
  }
}

/* ---- phases ------------------------------------------------------------------------------ */

/* Step 4: wait for "go" (EOF without bytes on the control fd); any bytes = abort. */
static void wait_for_go(void) {
  for (;;) {
    char buf[256];
    ssize_t r = read(CONTROL_FD, buf, sizeof buf);
    if (r == 0) break;
    if (r > 0) _exit(EXIT_ABORTED);
    if (errno == EINTR) continue;
    if (errno == ECONNRESET) _exit(EXIT_ABORTED);
    fail("control", errno, NULL);
  }
  close(CONTROL_FD);
}

/* Step 5: with a new PID namespace, fork; the parent supervises, the child (PID 1) goes on.
   Returns whether this process is that child. */
static int enter_pid_namespace(const sigset_t *block, const sigset_t *original_mask) {
  int alive[2];
  if (pipe2(alive, O_CLOEXEC) < 0) fail("fork", errno, "pipe");
  sigprocmask(SIG_BLOCK, block, NULL);
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
    supervise(pid, original_mask);
  }
  close(alive[1]);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail("prctl", errno, NULL);
  /* If the supervisor died before the prctl, its end of the pipe is closed already. */
  struct pollfd p = {alive[0], POLLIN, 0};
  if (poll(&p, 1, 0) != 0) _exit(EXIT_ABORTED);
  close(alive[0]);
  return 1;
}

static void mount_fresh_proc(void) {
  if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail("mount-private", errno, "/");
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) fail("mount-proc", errno, "/proc");
}

/* Step 6: switch IDs, directory and descriptors, then exec the command. Never returns. */
static void become_command(const struct options *o, int in_pid_child, const sigset_t *original_mask) {
  if (o->mount_proc) mount_fresh_proc();
  if (o->setgroups != 0 && setgroups(0, NULL) < 0) {
    if (!(o->setgroups == 1 && errno == EPERM)) fail("setgroups", errno, NULL);
  }
  char d[32];
  if (o->have_gid && setresgid((gid_t)o->gid, (gid_t)o->gid, (gid_t)o->gid) < 0) {
    snprintf(d, sizeof d, "gid %lu", o->gid);
    fail("setresgid", errno, d);
  }
  if (o->have_uid && setresuid((uid_t)o->uid, (uid_t)o->uid, (uid_t)o->uid) < 0) {
    snprintf(d, sizeof d, "uid %lu", o->uid);
    fail("setresuid", errno, d);
  }
  if (o->cwd && chdir(o->cwd) < 0 && (o->cwd_fallback == NULL || chdir(o->cwd_fallback) < 0))
    fail("chdir", errno, o->cwd);
  arrange_fds(o->fds, o->nfds);
  /* A credential change clears the death signal; set it again for the PID-namespace init. */
  if (prctl(PR_SET_PDEATHSIG, in_pid_child ? SIGKILL : 0) < 0) fail("prctl", errno, NULL);
  sigprocmask(SIG_SETMASK, original_mask, NULL);
  execvp(o->command[0], o->command);
  int err = errno;
  /* execvp says EACCES when some PATH directory was not searchable (e.g. /root/bin for a mapped
     user) even if the command exists nowhere: then report ENOENT, which is what the user needs. */
  if (err == EACCES && strchr(o->command[0], '/') == NULL && !found_in_path(o->command[0])) err = ENOENT;
  fail("exec", err, o->command[0]);
}

/* Bind mode: each --bind puts /proc/PID/ns/<type> on an existing regular file (never through a
   symbolic link: the file is opened O_PATH|O_NOFOLLOW and mounted on through /proc/self/fd);
   each --unbind detaches the mount on a file (MNT_DETACH|UMOUNT_NOFOLLOW). Reports "bound
   <type>" per bind (a failure stops: the caller unbinds what was reported) and "unbound <errno>"
   per unbind (EINVAL: nothing was mounted there). Never returns. */
static void bind_files(const struct options *o) {
  for (int k = 0; k < o->nbinds; k++) {
    const struct bind_item *b = &o->binds[k];
    char line[64];
    if (b->type == NULL) {
      int err = umount2(b->path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 ? errno : 0;
      int n = snprintf(line, sizeof line, "unbound %d\n", err);
      report(line, (size_t)n);
      continue;
    }
    int target = open(b->path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (target < 0) fail("bind", errno, b->path);
    struct stat st;
    if (fstat(target, &st) < 0) fail("bind", errno, b->path);
    if (!S_ISREG(st.st_mode)) fail("bind", EINVAL, b->path);
    char source[64], onto[64];
    snprintf(source, sizeof source, "/proc/%lu/ns/%s", o->bind_from, b->type->proc);
    snprintf(onto, sizeof onto, "/proc/self/fd/%d", target);
    if (mount(source, onto, NULL, MS_BIND, NULL) < 0) {
      char d[4200];
      snprintf(d, sizeof d, "%s on %s", source, b->path);
      fail("bind", errno, d);
    }
    close(target);
    int n = snprintf(line, sizeof line, "bound %s\n", b->type->name);
    report(line, (size_t)n);
  }
  _exit(0);
}

/* Probe mode: "nsfs <encode errno> <decode errno>" for this process's own user namespace
   (0 = works; docs/nsfs-handles.md section 8), "pidfd <errno>", and "handle <index> <errno>
   <inode>" for each --handle (0 and the inode of the namespace it reopened, or the errno and 0).
   Never returns. */
static void probe(const struct options *o) {
  char line[128];
  int encode = 0, decode = 0;
  int fd = open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC);
  handle_buf h;
  struct stat own;
  if (fd < 0 || fstat(fd, &own) < 0) encode = errno;
  else encode = encode_handle(fd, &h);
  if (encode != 0) {
    decode = encode;
  } else {
    int back = open_by_handle_at(FD_NSFS_ROOT, &h.fh, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (back < 0) decode = errno;
    else if (fstat(back, &st) < 0) decode = errno;
    else if (st.st_ino != own.st_ino) decode = ESTALE;
    if (back >= 0) close(back);
  }
  if (fd >= 0) close(fd);
  int n = snprintf(line, sizeof line, "nsfs %d %d\n", encode, decode);
  report(line, (size_t)n);
  int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  n = snprintf(line, sizeof line, "pidfd %d\n", pidfd < 0 ? errno : 0);
  report(line, (size_t)n);
  if (pidfd >= 0) close(pidfd);
  for (int k = 0; k < o->nhandles; k++) {
    int ns = open_handle(o->handles[k]);
    struct stat st;
    int err = ns < 0 ? errno : fstat(ns, &st) < 0 ? errno : 0;
    n = snprintf(line, sizeof line, "handle %d %d %llu\n", k, err, err == 0 ? (unsigned long long)st.st_ino : 0ULL);
    report(line, (size_t)n);
    if (ns >= 0) close(ns);
  }
  /* Each --acl: the raw system.posix_acl_access xattr, as hex. getxattr follows the path's last
     link on purpose: the caller names a descriptor it holds, /proc/<pid>/fd/<n>. */
  static unsigned char value[XATTR_SIZE_MAX];
  static char hexline[2 * XATTR_SIZE_MAX + 64];
  for (int k = 0; k < o->nacls; k++) {
    ssize_t len = getxattr(o->acls[k], "system.posix_acl_access", value, sizeof value);
    int err = len < 0 ? errno : 0;
    n = snprintf(hexline, sizeof hexline, "acl %d %d ", k, err);
    if (len <= 0) hexline[n++] = '-';
    for (ssize_t i = 0; i < len; i++) n += snprintf(hexline + n, 3, "%02x", value[i]);
    hexline[n++] = '\n';
    report(hexline, (size_t)n);
  }
  _exit(0);
}

/* Hold mode with --no-keeper: this process holds the namespaces until the parent has made its
   own references (bind mounts) and writes "commit", or closes the report fd; then it exits. */
static void hold_until_commit(void) {
  report("held\n", 5);
  wait_for_word("commit\n", NULL);
  _exit(0);
}

int main(int argc, char **argv) {
  struct options o;
  /* The report fd first, so that usage errors can be reported. */
  if (fcntl(REPORT_FD, F_SETFD, FD_CLOEXEC) < 0) {
    fprintf(stderr, "userns-helper: fd 3 (report) is not open; this program is run by userns\n");
    return EXIT_FAILED;
  }
  parse_args(argc, argv, &o);
  if (o.mode == 0) usage("no --mode");
  check_options(&o);
  /* Bind and probe report and exit; they run without a control fd and create nothing. */
  if (o.mode == MODE_BIND || o.mode == MODE_PROBE) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail("prctl", errno, NULL);
    if (o.mode == MODE_BIND) bind_files(&o);
    probe(&o);
  }
  /* join --no-wait (nothing to write in between) runs without a control fd. */
  int control = !(o.mode == MODE_JOIN && o.no_wait);
  if (control && !o.one_socket && fcntl(CONTROL_FD, F_SETFD, FD_CLOEXEC) < 0)
    fail("usage", errno, "fd 4 (control) is not open");

  /* 1. Die with the parent until exec; the parent may already be gone. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail("prctl", errno, NULL);
  if (o.have_ppid && (unsigned long)getppid() != o.ppid) _exit(EXIT_ABORTED);

  /* Blocked until the command (or the supervisor's handlers) are ready; restored before exec. */
  sigset_t original_mask, block;
  sigemptyset(&block);
  for (size_t s = 0; s < N_FORWARDED; s++) sigaddset(&block, forwarded[s]);
  sigprocmask(SIG_SETMASK, NULL, &original_mask);

  /* 2. Enter the namespaces, or make the mounts and create them. */
  if (o.mode == MODE_JOIN) {
    enum join_source source = o.target != 0 ? JOIN_PID : o.nfiles > 0 ? JOIN_FILE : JOIN_HANDLE;
    join_namespaces(source, o.target, o.start_time, o.joins, o.njoins);
  } else if (o.mode != MODE_WALK) {
    struct idmap_mount_error mount_err; /* --mount: clone, idmap and attach before unshare */
    if (idmap_mounts_setup(o.flags, o.mode == MODE_MOUNT, report_fd, CONTROL_FD, &mount_err) != 0)
      fail(mount_err.step, mount_err.err, mount_err.detail);
    if (unshare(o.flags) < 0) fail("unshare", errno, NULL);
    if (o.report_ns) report_namespaces(o.flags);
  } else if (!o.no_userns) {
    if (unshare(CLONE_NEWUSER) < 0) fail("unshare", errno, NULL);
  }

  /* 3. */
  char ready[64];
  int n = snprintf(ready, sizeof ready, "ready %ld\n", (long)getpid());
  report(ready, (size_t)n);

  /* 4. */
  /* With --one-socket: the line "go" on the report fd, which stays open for what comes after
     (errors, the EOF of exec). */
  if (control && o.one_socket) wait_for_word("go\n", "control");
  else if (control) wait_for_go();

  switch (o.mode) {
  case MODE_HOLD: {
    if (o.no_keeper) hold_until_commit();
    pid_t keeper_pid = fork();
    if (keeper_pid < 0) fail("fork", errno, NULL);
    if (keeper_pid == 0) keeper(o.mount_proc, o.report_ns && (o.flags & CLONE_NEWPID));
    char line[64];
    int len = snprintf(line, sizeof line, "keeper %ld\n", (long)keeper_pid);
    report(line, (size_t)len);
    _exit(0);
  }
  case MODE_WALK:
    /* The walk runs in this process (no exec); EOF on the report fd tells the parent it started. */
    close(report_fd);
    report_fd = -1;
    _exit(tree_walk_main());
  default: {
    /* 5. A new PID namespace applies to children only. */
    int in_pid_child = (o.flags & CLONE_NEWPID) ? enter_pid_namespace(&block, &original_mask) : 0;
    /* run --report-ns: the new PID namespace has an identity only now that its init exists. */
    if (in_pid_child && o.mode == MODE_RUN && o.report_ns) report_namespaces(CLONE_NEWPID);
    /* 6. */
    become_command(&o, in_pid_child, &original_mask);
  }
  }
  return EXIT_FAILED;
}
