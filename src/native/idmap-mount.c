/*
 * Bind mounts, read-only and idmapped, for userns-helper: the --mount=SPEC option of run and hold
 * mode, and mount mode (--mode=mount). The format of SPEC and the sequence are in
 * src/native/protocol.md, "Mounts". Only system calls here: which sources, which maps and how to
 * explain a failure are decided in src/mount/.
 *
 * The setup runs before the helper creates its user namespace, with the caller's capabilities:
 * mount_setattr(MOUNT_ATTR_IDMAP) needs CAP_SYS_ADMIN over the source's superblock.
 */
#include "idmap-mount.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

#define MAX_MOUNTS 32
#define MAX_USERNS 32
#define EXIT_ABORTED 125

struct attr {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};

struct spec {
  int readonly, recursive, detached;
  int ns; /* index into the "userns" line, -1 = none */
  char *src, *dst;
  int fd;
};

static struct spec specs[MAX_MOUNTS];
static int nspecs = 0;

int idmap_mount_add(const char *spec) {
  if (nspecs >= MAX_MOUNTS) return -1;
  struct spec *s = &specs[nspecs];
  memset(s, 0, sizeof *s);
  s->ns = -1;
  s->fd = -1;
  const char *p = spec;
  for (; *p != ':'; p++) {
    if (*p == 'r') s->readonly = 1;
    else if (*p == 'R') s->recursive = 1;
    else if (*p == 'd') s->detached = 1;
    else if (*p != '-') return -1;
  }
  p++;
  if (*p == '@') {
    char *end;
    unsigned long k = strtoul(p + 1, &end, 10);
    if (end == p + 1 || *end != ':' || k >= MAX_USERNS) return -1;
    s->ns = (int)k;
    p = end + 1;
  } else if (p[0] == '-' && p[1] == ':') {
    p += 2;
  } else {
    return -1;
  }
  char *end;
  unsigned long len = strtoul(p, &end, 10);
  if (end == p || *end != ':' || len == 0 || len > strlen(end + 1) || end[1 + len] != ':') return -1;
  s->src = strndup(end + 1, len);
  s->dst = strdup(end + 2 + len);
  if (s->src == NULL || s->dst == NULL) return -1;
  nspecs++;
  return 0;
}

int idmap_mount_count(void) { return nspecs; }

static int failed(struct idmap_mount_error *e, const char *step, int err, int index, const char *path) {
  e->step = step;
  e->err = err;
  if (index >= 0) snprintf(e->detail, sizeof e->detail, "#%d %s", index, path);
  else snprintf(e->detail, sizeof e->detail, "%s", path);
  return err;
}

/* Reads "userns PATH PATH…\n" from the control fd one byte at a time (nothing after it is consumed). */
static int read_userns_line(int control_fd, int *fds, int *n, struct idmap_mount_error *e) {
  char line[4096];
  size_t got = 0;
  for (;;) {
    if (got == sizeof line - 1) _exit(EXIT_ABORTED);
    ssize_t r = read(control_fd, line + got, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) _exit(EXIT_ABORTED); /* EOF or reset before the line: the parent gave up */
    if (line[got] == '\n') break;
    got++;
  }
  line[got] = '\0';
  if (strncmp(line, "userns ", 7) != 0) _exit(EXIT_ABORTED);
  char *save = NULL;
  *n = 0;
  for (char *t = strtok_r(line + 7, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
    if (*n >= MAX_USERNS) return failed(e, "usage", EINVAL, -1, "too many user namespaces");
    fds[*n] = open(t, O_RDONLY | O_CLOEXEC);
    if (fds[*n] < 0) return failed(e, "mount-userns", errno, *n, t);
    (*n)++;
  }
  return 0;
}

static void report_line(int fd, const char *text) {
  size_t len = strlen(text);
  while (len > 0) {
    ssize_t w = send(fd, text, len, MSG_NOSIGNAL);
    if (w < 0 && errno == ENOTSOCK) w = write(fd, text, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    text += w;
    len -= (size_t)w;
  }
}

int idmap_mounts_setup(int ns_flags, int detach, int report_fd, int control_fd, struct idmap_mount_error *e) {
  int userns[MAX_USERNS], nuserns = 0, need_userns = 0;
  if (nspecs == 0) return detach ? failed(e, "usage", EINVAL, -1, "--mode=mount without --mount") : 0;
  if (!detach && !(ns_flags & CLONE_NEWNS)) return failed(e, "usage", EINVAL, -1, "--mount needs mount in --unshare");
  for (int i = 0; i < nspecs; i++) {
    if (specs[i].ns >= 0) need_userns = 1;
    if (!detach && specs[i].dst[0] != '/') return failed(e, "usage", EINVAL, i, "--mount target must be absolute");
  }
  if (need_userns) {
    int err = read_userns_line(control_fd, userns, &nuserns, e);
    if (err != 0) return err;
  }

  /* 1. A detached copy of every source, made read-only and/or idmapped. */
  for (int i = 0; i < nspecs; i++) {
    struct spec *s = &specs[i];
    unsigned int rec = s->recursive ? AT_RECURSIVE : 0;
    s->fd = (int)syscall(SYS_open_tree, AT_FDCWD, s->src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | rec);
    /* Kernels before 6.15 cannot clone a detached mount: then attach that mount itself. */
    if (s->fd < 0 && s->detached && errno == EINVAL) s->fd = open(s->src, O_PATH | O_CLOEXEC);
    if (s->fd < 0) return failed(e, "mount-open", errno, i, s->src);
    if (s->ns >= nuserns && s->ns >= 0) return failed(e, "usage", EINVAL, i, "no such user namespace");
    struct attr a = {0, 0, 0, 0};
    if (s->readonly) a.attr_set |= MOUNT_ATTR_RDONLY;
    if (s->ns >= 0) {
      a.attr_set |= MOUNT_ATTR_IDMAP;
      a.userns_fd = (uint64_t)userns[s->ns];
    }
    if (a.attr_set != 0 && syscall(SYS_mount_setattr, s->fd, "", AT_EMPTY_PATH | rec, &a, sizeof a) < 0)
      return failed(e, s->ns >= 0 ? "mount-idmap" : "mount-setattr", errno, i, s->src);
  }
  for (int k = 0; k < nuserns; k++) close(userns[k]);

  if (detach) {
    char line[64];
    for (int i = 0; i < nspecs; i++) {
      snprintf(line, sizeof line, "mount %d %d\n", i, specs[i].fd);
      report_line(report_fd, line);
    }
    report_line(report_fd, "held\n");
    char buf[64];
    for (;;) {
      ssize_t r = read(report_fd, buf, sizeof buf);
      if (r == 0 || (r < 0 && errno != EINTR)) _exit(0);
    }
  }

  /* 2. Attach them in a mount namespace of our own (slave, so nothing propagates back). The
     unshare that follows copies it into the new user namespace's mount namespace, and such a
     copy locks the mounts: the command cannot unmount them nor make a read-only one writable. */
  if (unshare(CLONE_NEWNS) < 0) return failed(e, "mount-ns", errno, -1, "unshare(CLONE_NEWNS)");
  if (mount("none", "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) return failed(e, "mount-ns", errno, -1, "/");
  for (int i = 0; i < nspecs; i++) {
    struct spec *s = &specs[i];
    if (syscall(SYS_move_mount, s->fd, "", AT_FDCWD, s->dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
      return failed(e, "mount-attach", errno, i, s->dst);
    close(s->fd);
    s->fd = -1;
  }
  return 0;
}
