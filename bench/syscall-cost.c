/*
 * syscall-cost.c: what one system call costs on each entry of the bench's tree, for
 * bench/shift.ts (compiled there with cc into the bench's temporary directory; not shipped).
 *
 * A shift that keeps ACLs and file capabilities right and changes nothing until it knows every
 * ID has a translation needs, per entry, at least the owner (statx), the names of its xattrs
 * (llistxattr) and the chown (fchownat); `chown -hR` needs the chown alone. The per-call costs
 * turn that into a ceiling for shift_vs_chown_ratio on this machine (bench/shift.ts).
 *
 * Usage: syscall-cost TREE DIRS FILES   (TREE/d<i>/f<j>, as bench/shift.ts makes it)
 * Prints "<call> <microseconds per call>" per line: the median of three passes over every file,
 * the calls interleaved pass by pass, each pass touching each file once (as a walk does).
 * fchownat gives each file the owner it has (the kernel does the whole chown all the same: a new
 * ctime, a dirty inode).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

enum { GETPPID, STATX, LLISTXATTR, FCHOWNAT, CALLS };
static const char *names[CALLS] = {"getppid", "statx", "llistxattr", "fchownat"};

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Each file's owner, read once before the timed passes (fchownat gives each file its own). */
static uint32_t *uids, *gids;

/* One pass of `call` over every file, each file once (as a walk reaches them: what the previous
   pass over the whole tree brought into the caches is all there is); microseconds per call,
   from the time of the whole pass (the loop's own work included: a walk has it too). */
static double pass(const char *tree, int dirs, int files, int call) {
  char path[4096], name[32], list[4096];
  long n = 0;
  double start = now();
  for (int d = 0; d < dirs; d++) {
    snprintf(path, sizeof path, "%s/d%d", tree, d);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fchdir(fd) < 0) {
      perror(path);
      exit(1);
    }
    for (int f = 0; f < files; f++, n++) {
      snprintf(name, sizeof name, "f%d", f);
      struct statx x;
      int rc = 0;
      switch (call) {
      case GETPPID: rc = (int)syscall(SYS_getppid) < 0; break;
      case STATX: rc = statx(fd, name, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &x); break;
      case LLISTXATTR: rc = llistxattr(name, list, sizeof list) < 0; break;
      case FCHOWNAT: rc = fchownat(fd, name, uids[n], gids[n], AT_SYMLINK_NOFOLLOW); break;
      }
      if (rc != 0) {
        perror(names[call]);
        exit(1);
      }
    }
    close(fd);
  }
  return (now() - start) / (double)n * 1e6;
}

/* Fills uids and gids. */
static void owners(const char *tree, int dirs, int files) {
  char path[4096];
  uids = calloc((size_t)dirs * (size_t)files, sizeof *uids);
  gids = calloc((size_t)dirs * (size_t)files, sizeof *gids);
  if (uids == NULL || gids == NULL) exit(1);
  for (int d = 0, n = 0; d < dirs; d++)
    for (int f = 0; f < files; f++, n++) {
      struct stat st;
      snprintf(path, sizeof path, "%s/d%d/f%d", tree, d, f);
      if (lstat(path, &st) < 0) {
        perror(path);
        exit(1);
      }
      uids[n] = st.st_uid;
      gids[n] = st.st_gid;
    }
}

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: syscall-cost TREE DIRS FILES\n");
    return 2;
  }
  int dirs = atoi(argv[2]), files = atoi(argv[3]);
  owners(argv[1], dirs, files);
  double costs[CALLS][3];
  for (int round = 0; round < 3; round++)
    for (int call = 0; call < CALLS; call++) costs[call][round] = pass(argv[1], dirs, files, call);
  for (int call = 0; call < CALLS; call++) {
    qsort(costs[call], 3, sizeof costs[call][0], compare);
    printf("%s %.3f\n", names[call], costs[call][1]);
  }
  return 0;
}
