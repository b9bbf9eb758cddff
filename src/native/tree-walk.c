/*
 * tree-walk.c: the walk mode of userns-helper (--mode=walk; see userns-helper.c and protocol.md).
 *
 * Walks a directory tree and rewrites the owners, POSIX ACL entries and file-capability root IDs
 * of every entry through translation tables that TypeScript computed (src/shift/): the C only
 * looks IDs up in the tables it is given and does the system calls. Why in C: a walk with
 * fstatat + llistxattr + fchownat per file is what `chown -hR` does; Node's per-call overhead
 * would make the shift several times slower (the aim: a shift at least 0.7 times as fast as chown;
 * bench/shift.ts measures both).
 *
 * Safety (the threat model is in the README): the walk never follows a symbolic link. Every
 * directory is opened with openat(parent fd, name, O_NOFOLLOW|O_DIRECTORY) and checked to be the
 * inode that was stat'ed; every other operation is relative to the directory's fd and a single
 * name with the no-follow variant (fchownat AT_SYMLINK_NOFOLLOW, lgetxattr/lsetxattr with the
 * directory as cwd), except chmod, which has no no-follow form before Linux 6.6: it goes through
 * an O_PATH|O_NOFOLLOW fd checked against the same inode. Run inside a user namespace whose map
 * covers only the source and target ranges, the kernel also refuses any change to a file owned
 * by another ID, whatever race the walk loses.
 *
 * The job it reads and the records it writes: src/native/protocol.md, "Walk mode".
 * Exit status 0 when the walk ran to its end (even with E records), 1 on a bad job.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <limits.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "tree-walk.h"

#define ACL_ACCESS "system.posix_acl_access"
#define ACL_DEFAULT "system.posix_acl_default"
#define CAPABILITY "security.capability"
#define ACL_USER 0x02
#define ACL_GROUP 0x08
#define CAP_REVISION_MASK 0xFF000000u
#define CAP_REVISION_3 0x03000000u
#define CAP_REVISION_2 0x02000000u
#define CAP_V2_SIZE 20
#define CAP_V3_SIZE 24
#define MAX_DEPTH 4000
#define NO_ID 0xFFFFFFFFu
#define MAX_ID 0xFFFFFFFEu /* the last ID a map may hold: (u32)-1 is never an ID */

struct extent {
  uint32_t from, to, count;
  /* An identity extent of IDs kept as they are: 1 = already shifted (uiddone=/giddone=),
     2 = written by the first phase of this shift (uidpart=/gidpart=: the second phase moves them). */
  int done;
};
struct table {
  struct extent *e;
  size_t n, cap;
};

enum unmapped_policy { UNMAPPED_ERROR, UNMAPPED_SKIP, UNMAPPED_OVERFLOW };

static struct {
  const char *root;
  int apply, list, xdev, count;
  unsigned long progress;
  struct table uid, gid;
  enum unmapped_policy unmapped;
  uint32_t overflow_uid, overflow_gid;
  int have_v2root;
  uint32_t v2root;
  int have_outside;
  uint32_t outside_uid, outside_gid;
  unsigned workers;
  int check;
  unsigned long long stop_after; /* test hook (stopafter=N): SIGSTOP itself after N changes */
  long long recent_ns;           /* RECENT_NS, or a test's recentms=N */
} job;

/* With check=1 (see tree_walk_main): 1 during the read-only check pass, 2 during the apply pass
   that follows it; 0 in a walk of one pass. */
static int pass;

static unsigned worker_id;

static struct {
  unsigned long long seen, changed, hardlinks, mountpoints, errors, unmapped, skipped, already, resumed;
  uint32_t maxuid, maxgid, maxnewuid, maxnewgid;
  int have_maxuid, have_maxgid, have_maxnewuid, have_maxnewgid;
} stats;

static dev_t root_dev;

/* ---- output ---------------------------------------------------------------------------- */

/* Several walkers may share fd 1 (workers=N): every write(2) holds whole records and at most
   PIPE_BUF bytes, which the kernel writes to a pipe without interleaving. Records end with the
   only raw '\n' (paths are escaped); a record longer than PIPE_BUF (a path of ~4000 bytes) is
   the one case written in pieces. */
static char out[1 << 16];
static size_t out_len, record_start;

static void write_all(const char *p, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = write(1, p + done, n - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      _exit(1); /* the reader is gone: nothing left to report to */
    }
    done += (size_t)w;
  }
}

static void flush_out(void) {
  write_all(out, out_len);
  out_len = record_start = 0;
}

static void end_record(void) {
  if (out_len >= PIPE_BUF / 2) {
    if (out_len > PIPE_BUF) {
      write_all(out, record_start); /* the earlier records: below PIPE_BUF / 2 */
      memmove(out, out + record_start, out_len - record_start);
      out_len -= record_start;
    }
    flush_out();
  }
  record_start = out_len;
}

static void put(const char *s, size_t n) {
  if (out_len + n > sizeof out) {
    /* a record longer than the buffer: write through */
    write_all(out, out_len);
    write_all(s, n);
    out_len = record_start = 0;
    return;
  }
  memcpy(out + out_len, s, n);
  out_len += n;
  if (n > 0 && s[n - 1] == '\n') end_record();
}

static void puts_(const char *s) { put(s, strlen(s)); }

static void put_u(unsigned long long v) {
  char b[24];
  int n = snprintf(b, sizeof b, "%llu", v);
  put(b, (size_t)n);
}

static void put_path(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '\\') put("\\\\", 2);
    else if (c == '\t') put("\\t", 2);
    else if (c == '\n') put("\\n", 2);
    else if (c < 0x20 || c == 0x7f) {
      char b[5];
      snprintf(b, sizeof b, "\\x%02x", c);
      put(b, 4);
    } else put(p + i, 1);
  }
}

/* ---- the relative path of the entry being handled ---------------------------------------- */

static char *path;
static size_t path_len, path_cap;

static size_t path_push(const char *name) {
  size_t old = path_len, n = strlen(name), need = path_len + n + 2;
  if (need > path_cap) {
    path_cap = need * 2;
    path = realloc(path, path_cap);
    if (path == NULL) _exit(1);
  }
  if (path_len > 0) path[path_len++] = '/';
  memcpy(path + path_len, name, n);
  path_len += n;
  path[path_len] = '\0';
  return old;
}

static void path_pop(size_t old) {
  path_len = old;
  if (path) path[path_len] = '\0';
}

static void record_error(const char *op, int err) {
  stats.errors++;
  puts_("E\t");
  puts_(op);
  put("\t", 1);
  put_u((unsigned long long)err);
  put("\t", 1);
  put_path(path, path_len);
  put("\n", 1);
}

static int entry_unmapped; /* the entry being handled has an ID without translation */
static int entry_done;     /* ... an ID already shifted (uiddone=/giddone=) */
static int entry_part;     /* ... an ID the first phase of this shift wrote (uidpart=/gidpart=) */

static void record_unmapped(const char *kind, uint32_t id, int has_id) {
  stats.unmapped++;
  entry_unmapped = 1;
  puts_("U\t");
  puts_(kind);
  put("\t", 1);
  if (has_id) put_u(id);
  else put("-", 1);
  put("\t", 1);
  put_path(path, path_len);
  put("\n", 1);
}

/* ---- translation tables --------------------------------------------------------------------- */

static int cmp_extent(const void *a, const void *b) {
  uint32_t x = ((const struct extent *)a)->from, y = ((const struct extent *)b)->from;
  return x < y ? -1 : x > y;
}

/* The extent that translates `id` (and *out_id), or NULL when the table has none. */
static const struct extent *lookup(const struct table *t, uint32_t id, uint32_t *out_id) {
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    const struct extent *e = &t->e[mid];
    if (id < e->from) hi = mid;
    else if (id - e->from >= e->count) lo = mid + 1;
    else {
      *out_id = e->to + (id - e->from);
      return e;
    }
  }
  return NULL;
}

static void raise_max(uint32_t *max, int *have, uint32_t id) {
  if (!*have || id > *max) *max = id;
  *have = 1;
}

static void note_max(uint32_t id, int is_uid) {
  if (is_uid) raise_max(&stats.maxuid, &stats.have_maxuid, id);
  else raise_max(&stats.maxgid, &stats.have_maxgid, id);
}

/* Translates one ID by the policy. Returns 0 when the entry must be left alone (error policy). */
static int translate(uint32_t id, int is_uid, const char *kind, uint32_t *out_id) {
  note_max(id, is_uid);
  const struct extent *e = lookup(is_uid ? &job.uid : &job.gid, id, out_id);
  if (e != NULL) {
    if (e->done == 1) entry_done = 1;
    if (e->done == 2) entry_part = 1;
    if (is_uid) raise_max(&stats.maxnewuid, &stats.have_maxnewuid, *out_id);
    else raise_max(&stats.maxnewgid, &stats.have_maxnewgid, *out_id);
    return 1;
  }
  record_unmapped(kind, id, 1);
  switch (job.unmapped) {
    case UNMAPPED_SKIP: *out_id = id; return 1;
    case UNMAPPED_OVERFLOW: *out_id = is_uid ? job.overflow_uid : job.overflow_gid; return 1;
    default: return 0;
  }
}

/* ---- hard links: the (device, inode) pairs already handled ---------------------------------- */

struct inode_key {
  uint64_t dev, ino;
};
static struct inode_key *seen_inodes;
static size_t seen_cap, seen_n;

static uint64_t hash_key(uint64_t dev, uint64_t ino) {
  uint64_t h = ino * 0x9E3779B97F4A7C15ull ^ (dev + 0x632BE59BD9B4E019ull);
  return h ^ (h >> 29);
}

/* 1 when the inode was seen before; otherwise records it and returns 0. */
static int seen_before(uint64_t dev, uint64_t ino) {
  if (seen_n * 2 >= seen_cap) {
    size_t cap = seen_cap ? seen_cap * 2 : 1024;
    struct inode_key *bigger = calloc(cap, sizeof *bigger);
    if (bigger == NULL) _exit(1);
    for (size_t i = 0; i < seen_cap; i++) {
      if (seen_inodes[i].ino == 0 && seen_inodes[i].dev == 0) continue;
      size_t j = hash_key(seen_inodes[i].dev, seen_inodes[i].ino) & (cap - 1);
      while (bigger[j].ino != 0 || bigger[j].dev != 0) j = (j + 1) & (cap - 1);
      bigger[j] = seen_inodes[i];
    }
    free(seen_inodes);
    seen_inodes = bigger;
    seen_cap = cap;
  }
  /* (0, 0) marks an empty slot; no real file has inode 0 on device 0. */
  size_t j = hash_key(dev, ino) & (seen_cap - 1);
  while (seen_inodes[j].ino != 0 || seen_inodes[j].dev != 0) {
    if (seen_inodes[j].dev == dev && seen_inodes[j].ino == ino) return 1;
    j = (j + 1) & (seen_cap - 1);
  }
  seen_inodes[j].dev = dev;
  seen_inodes[j].ino = ino;
  seen_n++;
  return 0;
}

/* ---- entries the check pass found without ID-carrying xattrs ---------------------------------

   The apply pass after a check pass (check=1) needs an entry's xattrs only when it has ACLs or a
   file capability: the check pass, which lists every entry's xattrs, notes for each entry (in
   the order it reaches them) whether it had none, with its change time. Every change of an
   xattr (and of the owner, the mode, a rename over the name: a new inode) sets the inode's
   ctime, so an entry whose (device, inode, ctime) is still the noted one still has none, and
   the apply pass skips its listxattr: one system call per entry less (issue 18). Anything else
   is listed again.

   Two changes in one tick of the kernel's coarse clock can leave the ctime as it was (kernels
   without fine-grained timestamps, before 6.13): an entry whose ctime is less than RECENT_NS
   (a test's recentms=N) before the moment the check pass read it is never noted as plain, so
   an xattr set right after that read is still found.

   A log in visit order, not a hash table: each worker's apply pass reaches the entries of an
   unchanged tree in the same order (the same directories, read in the same order, split among
   the workers the same way), so it reads the log front to back. A table of 100,000 entries
   looked up at random cost a cache and TLB miss per entry, 8% of a shift (perf, issue 18).
   When the tree changed between the passes, the entry at the cursor is another one: the next
   LOG_LOOKAHEAD notes are searched, then an index of the whole log by inode (built on the
   first such miss), and the cursor continues after the note found; an entry not noted at all
   is listed again. The log stops growing at PLAIN_MAX notes per worker (24 bytes each,
   24 MiB): later entries are listed again. The kernel's dev_t has 32 bits (12 major, 20 minor). */
struct plain_note {
  uint64_t ino;
  int64_t ctime_sec;
  uint32_t dev, ctime_nsec; /* ctime_nsec NOT_PLAIN: the entry had ID xattrs, or listing failed */
};
#define PLAIN_MAX (1u << 20)
#define LOG_LOOKAHEAD 64
#define NOT_PLAIN 0xFFFFFFFFu /* never a nanosecond count */
#define RECENT_NS 50000000LL  /* 50 ms: several ticks of the coarse clock at any HZ */
static struct plain_note *plain_log;
static size_t plain_cap, plain_n, plain_cursor;
static uint32_t *log_index; /* open addressing: log position + 1, 0 = empty; 2 * PLAIN_MAX max */
static size_t log_index_cap;

/* Check pass: notes the entry, plain (no ID xattrs, and not changed just now) or not. */
static void plain_note(const struct stat *st, int is_plain) {
  uint32_t dev = (uint32_t)st->st_dev;
  if (plain_n >= PLAIN_MAX) return;
  if (plain_n == plain_cap) {
    size_t cap = plain_cap ? plain_cap * 2 : 4096;
    struct plain_note *bigger = realloc(plain_log, cap * sizeof *bigger);
    if (bigger == NULL) return; /* no note: this entry and the ones after it are listed again */
    plain_log = bigger;
    plain_cap = cap;
  }
  if (is_plain) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    long long age = ((long long)now.tv_sec - (long long)st->st_ctim.tv_sec) * 1000000000LL +
                    ((long long)now.tv_nsec - (long long)st->st_ctim.tv_nsec);
    if (age < job.recent_ns) is_plain = 0; /* also a ctime in the future */
  }
  struct plain_note *n = &plain_log[plain_n++];
  n->dev = dev;
  n->ino = (uint64_t)st->st_ino;
  n->ctime_sec = (int64_t)st->st_ctim.tv_sec;
  n->ctime_nsec = is_plain && (dev_t)dev == st->st_dev ? (uint32_t)st->st_ctim.tv_nsec : NOT_PLAIN;
}

/* The log's position of (dev, ino) through the index (built on first use); plain_n when none. */
static size_t log_find(uint32_t dev, uint64_t ino) {
  if (log_index == NULL) {
    size_t cap = 1024;
    while (cap < plain_n * 2) cap *= 2;
    log_index = calloc(cap, sizeof *log_index);
    if (log_index == NULL) return plain_n; /* not found: listed again */
    log_index_cap = cap;
    for (size_t k = 0; k < plain_n; k++) {
      size_t j = hash_key(plain_log[k].dev, plain_log[k].ino) & (cap - 1);
      while (log_index[j] != 0) j = (j + 1) & (cap - 1);
      log_index[j] = (uint32_t)(k + 1);
    }
  }
  size_t j = hash_key(dev, ino) & (log_index_cap - 1);
  while (log_index[j] != 0) {
    size_t k = log_index[j] - 1;
    if (plain_log[k].ino == ino && plain_log[k].dev == dev) return k;
    j = (j + 1) & (log_index_cap - 1);
  }
  return plain_n;
}

/* Apply pass: 1 when the check pass noted this inode without ID xattrs and it has not changed
   since (see above). Moves the cursor past the note it used. */
static int plain_unchanged(const struct stat *st) {
  uint64_t ino = (uint64_t)st->st_ino;
  uint32_t dev = (uint32_t)st->st_dev;
  if ((dev_t)dev != st->st_dev) return 0;
  size_t k = plain_cursor;
  while (k < plain_n && k < plain_cursor + LOG_LOOKAHEAD && (plain_log[k].ino != ino || plain_log[k].dev != dev)) k++;
  if (k >= plain_n || k >= plain_cursor + LOG_LOOKAHEAD) k = log_find(dev, ino);
  if (k >= plain_n) return 0;
  plain_cursor = k + 1;
  const struct plain_note *n = &plain_log[k];
  return n->ctime_nsec != NOT_PLAIN && n->ctime_sec == (int64_t)st->st_ctim.tv_sec &&
         n->ctime_nsec == (uint32_t)st->st_ctim.tv_nsec;
}

/* ---- xattr access relative to the current directory (or the root's own fd) ------------------ */

/* name == NULL: the root directory itself, through its fd. Otherwise `name` in the cwd, which
   the walk keeps equal to the entry's directory (fchdir), with the no-follow variants. */
static ssize_t x_list(int fd, const char *name, char *buf, size_t size) {
  return name ? llistxattr(name, buf, size) : flistxattr(fd, buf, size);
}
static ssize_t x_get(int fd, const char *name, const char *key, void *buf, size_t size) {
  return name ? lgetxattr(name, key, buf, size) : fgetxattr(fd, key, buf, size);
}
static int x_set(int fd, const char *name, const char *key, const void *buf, size_t size) {
  return name ? lsetxattr(name, key, buf, size, 0) : fsetxattr(fd, key, buf, size, 0);
}

struct blob {
  unsigned char *data;
  ssize_t len; /* -1: absent */
  size_t cap;
};

static void read_blob(int fd, const char *name, const char *key, struct blob *b) {
  for (int tries = 0; tries < 4; tries++) {
    ssize_t n = x_get(fd, name, key, b->data, b->cap);
    if (n >= 0) {
      b->len = n;
      return;
    }
    if (errno != ERANGE) break;
    ssize_t size = x_get(fd, name, key, NULL, 0);
    if (size < 0) break;
    b->cap = (size_t)size + 64;
    b->data = realloc(b->data, b->cap);
    if (b->data == NULL) _exit(1);
  }
  if (errno != ENODATA && errno != EOPNOTSUPP) record_error("getxattr", errno);
  b->len = -1;
}

static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void put_le32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

/* Rewrites the user and group entries of an ACL blob in place. Returns -1 when the ACL must be
   left alone (unmapped with the error policy, or malformed), else whether it changed. */
static int shift_acl(struct blob *b) {
  if (b->len < 4 || (b->len - 4) % 8 != 0) {
    record_error("acl-format", EINVAL);
    return -1;
  }
  int changed = 0, keep = 1;
  for (ssize_t off = 4; off < b->len; off += 8) {
    unsigned tag = (unsigned)b->data[off] | (unsigned)b->data[off + 1] << 8;
    if (tag != ACL_USER && tag != ACL_GROUP) continue;
    uint32_t id = le32(b->data + off + 4), next;
    if (!translate(id, tag == ACL_USER, tag == ACL_USER ? "acl-uid" : "acl-gid", &next)) {
      keep = 0;
      continue;
    }
    if (next != id) {
      put_le32(b->data + off + 4, next);
      changed = 1;
    }
  }
  return keep ? changed : -1;
}

/* Rewrites a capability blob's root ID (to a v3 blob, or v2 when the new root is v2root).
   Returns -1 when it must be left alone, else whether it changed. */
static int shift_capability(struct blob *b) {
  if (b->len < 4) {
    record_error("capability-format", EINVAL);
    return -1;
  }
  uint32_t magic = le32(b->data), revision = magic & CAP_REVISION_MASK;
  uint32_t root, next;
  if (revision == CAP_REVISION_3 && b->len == CAP_V3_SIZE) {
    root = le32(b->data + 20);
  } else if (revision == CAP_REVISION_2 && b->len == CAP_V2_SIZE) {
    if (!job.have_v2root) {
      record_unmapped("cap-root", 0, 0);
      return job.unmapped == UNMAPPED_ERROR ? -1 : 0;
    }
    root = job.v2root;
  } else {
    return 0; /* v1 or unknown: no root ID to shift */
  }
  if (!translate(root, 1, "cap-root", &next)) return -1;
  if (revision == CAP_REVISION_2 && next == root) return 0;
  if (job.have_v2root && next == job.v2root) {
    put_le32(b->data, (magic & ~CAP_REVISION_MASK) | CAP_REVISION_2);
    b->len = CAP_V2_SIZE;
  } else {
    if (b->cap < CAP_V3_SIZE) {
      b->data = realloc(b->data, CAP_V3_SIZE);
      if (b->data == NULL) _exit(1);
      b->cap = CAP_V3_SIZE;
    }
    put_le32(b->data, (magic & ~CAP_REVISION_MASK) | CAP_REVISION_3);
    put_le32(b->data + 20, next);
    b->len = CAP_V3_SIZE;
  }
  return revision == CAP_REVISION_2 || next != root;
}

/* ---- one entry ------------------------------------------------------------------------------ */

/* lstat of `name` in `fd` (or of `fd` itself when name == NULL) that also tells whether the entry
   is the root of a mount: another filesystem, or a bind mount of a file or directory from this
   one (same device, so only statx's STATX_ATTR_MOUNT_ROOT shows it; Linux >= 5.8). */
static int stat_entry(int fd, const char *name, struct stat *st, int *mount_root) {
  struct statx x;
  if (statx(fd, name ? name : "", AT_SYMLINK_NOFOLLOW | (name ? 0 : AT_EMPTY_PATH), STATX_BASIC_STATS, &x) < 0)
    return -1;
  memset(st, 0, sizeof *st);
  st->st_dev = makedev(x.stx_dev_major, x.stx_dev_minor);
  st->st_ino = x.stx_ino;
  st->st_mode = x.stx_mode;
  st->st_nlink = x.stx_nlink;
  st->st_uid = x.stx_uid;
  st->st_gid = x.stx_gid;
  st->st_ctim.tv_sec = x.stx_ctime.tv_sec;
  st->st_ctim.tv_nsec = x.stx_ctime.tv_nsec;
  *mount_root = (x.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (x.stx_attributes & STATX_ATTR_MOUNT_ROOT);
  return 0;
}


static char type_letter(mode_t m) {
  if (S_ISREG(m)) return 'f';
  if (S_ISDIR(m)) return 'd';
  if (S_ISLNK(m)) return 'l';
  if (S_ISCHR(m)) return 'c';
  if (S_ISBLK(m)) return 'b';
  if (S_ISFIFO(m)) return 'p';
  return 's';
}

/* chmod without following a link: an O_PATH fd checked against the inode, then /proc/self/fd. */
static int chmod_entry(int dirfd, const char *name, const struct stat *st) {
  if (name == NULL) return fchmod(dirfd, st->st_mode & 07777);
  int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat now;
  int rc = -1, mount_root;
  if (stat_entry(fd, NULL, &now, &mount_root) == 0) {
    if (now.st_dev != st->st_dev || now.st_ino != st->st_ino || S_ISLNK(now.st_mode)) {
      errno = ESTALE;
    } else {
      char proc[64];
      snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
      rc = chmod(proc, st->st_mode & 07777);
    }
  }
  int saved = errno;
  close(fd);
  errno = saved;
  return rc;
}

static struct blob acl_access, acl_default, capability;
static char *names_buf;
static size_t names_cap;

/* Handles one entry (`name` in the current directory, or the root itself when name == NULL,
   through `fd`). Fills *st. Returns 1 when it is a directory to descend into. */
static int visit(int fd, const char *name, struct stat *st) {
  stats.seen++;
  if (job.progress && stats.seen % job.progress == 0) {
    puts_("P\t");
    put_u(worker_id);
    put("\t", 1);
    put_u(stats.seen);
    put("\t", 1);
    put_u(stats.changed);
    put("\n", 1);
    flush_out();
  }
  int mount_root = 0;
  if (stat_entry(fd, name, st, &mount_root) < 0) {
    record_error("lstat", errno);
    return 0;
  }
  /* A mount inside the tree: another filesystem, or a file or directory bind-mounted (perhaps
     from outside the tree: never shifted through it without xdev=1). */
  if (name && (st->st_dev != root_dev || mount_root) && !job.xdev) {
    stats.mountpoints++;
    puts_("M\t");
    put_path(path, path_len);
    put("\n", 1);
    return 0;
  }
  if (!S_ISDIR(st->st_mode) && st->st_nlink > 1 && seen_before((uint64_t)st->st_dev, (uint64_t)st->st_ino)) {
    stats.hardlinks++;
    puts_("H\t");
    put_path(path, path_len);
    put("\n", 1);
    return 0;
  }

  /* The xattrs that carry IDs. Symbolic links can have neither ACLs nor capabilities. */
  acl_access.len = acl_default.len = capability.len = -1;
  if (!S_ISLNK(st->st_mode) && !(pass == 2 && plain_unchanged(st))) {
    ssize_t n;
    for (;;) {
      n = x_list(fd, name, names_buf, names_cap);
      if (n >= 0 || errno != ERANGE) break;
      ssize_t size = x_list(fd, name, NULL, 0);
      if (size < 0) break;
      names_cap = (size_t)size + 256;
      names_buf = realloc(names_buf, names_cap);
      if (names_buf == NULL) _exit(1);
    }
    int listed = n >= 0 || errno == EOPNOTSUPP || errno == ENOTSUP; /* none at all is listed too */
    if (!listed) record_error("listxattr", errno);
    for (ssize_t off = 0; n > 0 && off < n; off += (ssize_t)strlen(names_buf + off) + 1) {
      const char *key = names_buf + off;
      if (strcmp(key, ACL_ACCESS) == 0) read_blob(fd, name, key, &acl_access);
      else if (strcmp(key, ACL_DEFAULT) == 0) read_blob(fd, name, key, &acl_default);
      else if (strcmp(key, CAPABILITY) == 0 && S_ISREG(st->st_mode)) read_blob(fd, name, key, &capability);
    }
    /* Listed (or the filesystem has no xattrs at all) and none of them carries IDs. */
    if (pass == 1) plain_note(st, listed && acl_access.len < 0 && acl_default.len < 0 && capability.len < 0);
  }

  uint32_t uid = (uint32_t)st->st_uid, gid = (uint32_t)st->st_gid, nuid, ngid;
  entry_unmapped = entry_done = entry_part = 0;
  int owner_ok = translate(uid, 1, "uid", &nuid);
  owner_ok = translate(gid, 0, "gid", &ngid) && owner_ok;
  int access_change = acl_access.len >= 0 ? shift_acl(&acl_access) : 0;
  int default_change = acl_default.len >= 0 ? shift_acl(&acl_default) : 0;
  int cap_change = capability.len >= 0 ? shift_capability(&capability) : 0;
  /* An entry the namespace cannot change at all (an owner outside it: the kernel shows the
     overflow ID and refuses a chown); with unmapped=overflow too, it keeps its IDs. */
  int outside = job.have_outside && (uid == job.outside_uid || gid == job.outside_gid);
  if (entry_unmapped && (job.unmapped != UNMAPPED_OVERFLOW || outside)) stats.skipped++;
  /* With unmapped=error, an entry with any ID that has no translation is left alone entirely. */
  if (!owner_ok || access_change < 0 || default_change < 0 || cap_change < 0) {
    if (job.unmapped == UNMAPPED_ERROR || !owner_ok) return S_ISDIR(st->st_mode);
  }
  if (outside) return S_ISDIR(st->st_mode);
  int owner_change = nuid != uid || ngid != gid;
  /* chown drops a file capability and (on non-directories) the set-user/group-ID bits. */
  int mode_change = owner_change && !S_ISDIR(st->st_mode) && !S_ISLNK(st->st_mode) && (st->st_mode & 06000);
  if (owner_change && capability.len >= 0 && cap_change == 0) cap_change = 1;
  int changes = owner_change || access_change > 0 || default_change > 0 || cap_change > 0;
  if (!changes) {
    /* Kept an ID the first phase wrote: the second phase changes this entry. */
    if (entry_part) stats.resumed++;
    else if (entry_done && !entry_unmapped) stats.already++;
    return S_ISDIR(st->st_mode);
  }

  /* An entry counts as changed (and is listed) only once something on disk did change: a
     failed chown leaves it as it was and is an error, not a change. */
  if (job.apply) {
    /* -1 leaves an ID as it is: a kept (unmapped, skipped) ID may not be expressible here. */
    uid_t chown_uid = nuid == uid ? (uid_t)-1 : nuid;
    gid_t chown_gid = ngid == gid ? (gid_t)-1 : ngid;
    int did = 0;
    if (owner_change) {
      if (fchownat(fd, name ? name : "", chown_uid, chown_gid, name ? AT_SYMLINK_NOFOLLOW : AT_EMPTY_PATH) < 0) {
        record_error("chown", errno);
        return S_ISDIR(st->st_mode);
      }
      did = 1;
    }
    if (access_change > 0) {
      if (x_set(fd, name, ACL_ACCESS, acl_access.data, (size_t)acl_access.len) < 0)
        record_error("setxattr " ACL_ACCESS, errno);
      else did = 1;
    }
    if (default_change > 0) {
      if (x_set(fd, name, ACL_DEFAULT, acl_default.data, (size_t)acl_default.len) < 0)
        record_error("setxattr " ACL_DEFAULT, errno);
      else did = 1;
    }
    if (mode_change && chmod_entry(fd, name, st) < 0) record_error("chmod", errno);
    if (cap_change > 0) {
      if (x_set(fd, name, CAPABILITY, capability.data, (size_t)capability.len) < 0)
        record_error("setxattr " CAPABILITY, errno);
      else did = 1;
    }
    if (!did) return S_ISDIR(st->st_mode);
  }
  stats.changed++;
  if (job.apply && job.stop_after && stats.changed == job.stop_after) {
    flush_out();
    raise(SIGSTOP); /* the tests kill the shift here: a deterministic point mid-walk */
  }
  if (job.list) {
    char b[128];
    puts_("C\t");
    put_path(path, path_len);
    int n = snprintf(b, sizeof b, "\t%c\t%u\t%u\t%u\t%u\t%s%s%s%s\n", type_letter(st->st_mode), uid, gid,
                     nuid, ngid, owner_change ? "o" : "",
                     access_change > 0 || default_change > 0 ? "a" : "", cap_change > 0 ? "c" : "",
                     mode_change ? "m" : "");
    put(b, (size_t)n);
  }
  return S_ISDIR(st->st_mode);
}

/* ---- the walk --------------------------------------------------------------------------------- */

/* Descends into directory `dfd` (already handled as an entry); closes dfd. */
static void walk_dir(int dfd, int depth) {
  if (depth > MAX_DEPTH) {
    record_error("depth", ELOOP);
    close(dfd);
    return;
  }
  DIR *dir = fdopendir(dfd);
  if (dir == NULL) {
    record_error("opendir", errno);
    close(dfd);
    return;
  }
  /* The xattr calls take a name relative to the cwd: this directory, again after each descent. */
  int in_dir = 0;
  for (;;) {
    if (!in_dir) {
      if (fchdir(dfd) < 0) {
        record_error("fchdir", errno);
        break;
      }
      in_dir = 1;
    }
    errno = 0;
    struct dirent *d = readdir(dir);
    if (d == NULL) {
      if (errno != 0) record_error("readdir", errno);
      break;
    }
    if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
    int mine = d->d_ino % job.workers == worker_id;
    if (!mine && d->d_type != DT_DIR && d->d_type != DT_UNKNOWN) continue;
    size_t saved = path_push(d->d_name);
    struct stat st;
    /* Another worker handles this entry; every worker descends into every directory. */
    int mount_root = 0;
    int descend = mine ? visit(dfd, d->d_name, &st)
                       : stat_entry(dfd, d->d_name, &st, &mount_root) == 0 && S_ISDIR(st.st_mode) &&
                             (job.xdev || (st.st_dev == root_dev && !mount_root));
    if (descend) {
      int child = openat(dfd, d->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      struct stat now;
      int now_mount_root;
      if (child < 0) {
        record_error("open", errno);
      } else if (stat_entry(child, NULL, &now, &now_mount_root) < 0 || now.st_dev != st.st_dev ||
                 now.st_ino != st.st_ino) {
        /* Replaced between the stat and the open: not the directory that was handled. */
        record_error("open", ESTALE);
        close(child);
      } else {
        walk_dir(child, depth + 1);
        in_dir = 0;
      }
    }
    path_pop(saved);
  }
  closedir(dir);
}

static unsigned long long count_dir(int dfd, int depth) {
  unsigned long long total = 0;
  DIR *dir = fdopendir(dfd);
  if (dir == NULL) {
    close(dfd);
    return 0;
  }
  struct dirent *d;
  while ((d = readdir(dir)) != NULL) {
    if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
    total++;
    int is_dir = d->d_type == DT_DIR;
    struct stat st;
    int mount_root = 0;
    if (d->d_type == DT_UNKNOWN || (is_dir && !job.xdev)) {
      is_dir = stat_entry(dfd, d->d_name, &st, &mount_root) == 0 && S_ISDIR(st.st_mode) &&
               (job.xdev || (st.st_dev == root_dev && !mount_root));
    }
    if (is_dir && depth < MAX_DEPTH) {
      int child = openat(dfd, d->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child >= 0) total += count_dir(child, depth + 1);
    }
  }
  closedir(dir);
  return total;
}

/* Handles the root (worker 0) and walks the tree below it; closes rootfd. */
static void walk_root(int rootfd) {
  struct stat st;
  if (worker_id == 0 ? visit(rootfd, NULL, &st) : 1) walk_dir(rootfd, 0);
  else close(rootfd);
}

/* ---- the job ---------------------------------------------------------------------------------- */

static int parse_u32(const char *s, char end, const char **rest, uint32_t *v) {
  char *e;
  errno = 0;
  unsigned long long x = strtoull(s, &e, 10);
  if (e == s || errno || x > 0xFFFFFFFFull || *e != end) return -1;
  *v = (uint32_t)x;
  if (rest) *rest = e + (end ? 1 : 0);
  return 0;
}

/* An extent is refused unless both of its ranges end at 4294967294 at the latest, as the
   kernel's map_write() demands: `to + (id - from)` must never wrap (an ID past 2^32-1 would
   become a low ID, 0 = root, with a set-user-ID bit restored after the chown). */
static int add_extent(struct table *t, const char *s, int done) {
  struct extent x;
  x.done = done;
  if (parse_u32(s, ':', &s, &x.from) < 0) return -1;
  if (done) x.to = x.from;
  else if (parse_u32(s, ':', &s, &x.to) < 0) return -1;
  if (parse_u32(s, '\0', NULL, &x.count) < 0 || x.count == 0 || x.from + (uint64_t)x.count - 1 > MAX_ID ||
      x.to + (uint64_t)x.count - 1 > MAX_ID)
    return -1;
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 16;
    t->e = realloc(t->e, t->cap * sizeof *t->e);
    if (t->e == NULL) _exit(1);
  }
  t->e[t->n++] = x;
  return 0;
}

static int bad_job(const char *what) {
  puts_("E\tjob\t");
  put_u(EINVAL);
  put("\t", 1);
  put_path(what, strlen(what));
  put("\n", 1);
  flush_out();
  return 1;
}

static int parse_job(char *text, size_t len) {
  job.unmapped = UNMAPPED_ERROR;
  job.workers = 1;
  job.recent_ns = RECENT_NS;
  job.have_v2root = 1;
  job.v2root = 0;
  for (size_t off = 0, tok_len; off < len; off += tok_len + 1) {
    char *tok = text + off;
    tok_len = strlen(tok); /* before the '=' is cut below */
    if (*tok == '\0') continue;
    char *eq = strchr(tok, '=');
    if (eq == NULL) return bad_job(tok);
    *eq = '\0';
    const char *key = tok, *v = eq + 1;
    int bad = 0;
    if (strcmp(key, "root") == 0) job.root = v;
    else if (strcmp(key, "apply") == 0) job.apply = strcmp(v, "1") == 0;
    else if (strcmp(key, "list") == 0) job.list = strcmp(v, "1") == 0;
    else if (strcmp(key, "xdev") == 0) job.xdev = strcmp(v, "1") == 0;
    else if (strcmp(key, "count") == 0) job.count = strcmp(v, "1") == 0;
    else if (strcmp(key, "check") == 0) job.check = strcmp(v, "1") == 0;
    else if (strcmp(key, "progress") == 0) job.progress = strtoul(v, NULL, 10);
    else if (strcmp(key, "workers") == 0) {
      job.workers = (unsigned)strtoul(v, NULL, 10);
      bad = job.workers < 1 || job.workers > 16;
    }
    else if (strcmp(key, "uid") == 0) bad = add_extent(&job.uid, v, 0);
    else if (strcmp(key, "gid") == 0) bad = add_extent(&job.gid, v, 0);
    else if (strcmp(key, "uiddone") == 0) bad = add_extent(&job.uid, v, 1);
    else if (strcmp(key, "giddone") == 0) bad = add_extent(&job.gid, v, 1);
    else if (strcmp(key, "uidpart") == 0) bad = add_extent(&job.uid, v, 2);
    else if (strcmp(key, "gidpart") == 0) bad = add_extent(&job.gid, v, 2);
    else if (strcmp(key, "stopafter") == 0) {
      char *e;
      job.stop_after = strtoull(v, &e, 10);
      bad = e == v || *e != '\0';
    }
    else if (strcmp(key, "recentms") == 0) {
      char *e;
      unsigned long long ms = strtoull(v, &e, 10);
      bad = e == v || *e != '\0' || ms > 86400000ULL;
      job.recent_ns = (long long)ms * 1000000LL;
    }
    else if (strcmp(key, "unmapped") == 0) {
      if (strcmp(v, "error") == 0) job.unmapped = UNMAPPED_ERROR;
      else if (strcmp(v, "skip") == 0) job.unmapped = UNMAPPED_SKIP;
      else if (strcmp(v, "overflow") == 0) job.unmapped = UNMAPPED_OVERFLOW;
      else bad = 1;
    } else if (strcmp(key, "overflow") == 0) {
      const char *rest;
      bad = parse_u32(v, ':', &rest, &job.overflow_uid) < 0 || parse_u32(rest, '\0', NULL, &job.overflow_gid) < 0;
    } else if (strcmp(key, "outside") == 0) {
      const char *rest;
      job.have_outside = 1;
      bad = parse_u32(v, ':', &rest, &job.outside_uid) < 0 || parse_u32(rest, '\0', NULL, &job.outside_gid) < 0;
    } else if (strcmp(key, "v2root") == 0) {
      if (strcmp(v, "none") == 0) job.have_v2root = 0;
      else bad = parse_u32(v, '\0', NULL, &job.v2root) < 0;
    } else bad = 1;
    if (bad) {
      *eq = '=';
      return bad_job(tok);
    }
  }
  if (job.root == NULL) return bad_job("root= is missing");
  qsort(job.uid.e, job.uid.n, sizeof *job.uid.e, cmp_extent);
  qsort(job.gid.e, job.gid.n, sizeof *job.gid.e, cmp_extent);
  /* Overlapping source ranges would make a lookup depend on the search order. */
  const struct table *tables[] = {&job.uid, &job.gid};
  for (size_t k = 0; k < 2; k++)
    for (size_t i = 1; i < tables[k]->n; i++)
      if (tables[k]->e[i].from < tables[k]->e[i - 1].from + (uint64_t)tables[k]->e[i - 1].count)
        return bad_job(k == 0 ? "uid= extents overlap" : "gid= extents overlap");
  return 0;
}

static void write_summary(void) {
  char b[256];
  int n = snprintf(b, sizeof b, "S\t%u\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t", worker_id, stats.seen,
                   stats.changed, stats.hardlinks, stats.mountpoints, stats.errors, stats.unmapped, stats.skipped);
  put(b, (size_t)n);
  const uint32_t maxima[] = {stats.maxuid, stats.maxgid};
  const int have[] = {stats.have_maxuid, stats.have_maxgid};
  for (int i = 0; i < 2; i++) {
    if (have[i]) put_u(maxima[i]);
    else put("-", 1);
    put("\t", 1);
  }
  put_u(stats.already);
  const uint32_t maxnew[] = {stats.maxnewuid, stats.maxnewgid};
  const int have_new[] = {stats.have_maxnewuid, stats.have_maxnewgid};
  for (int i = 0; i < 2; i++) {
    put("\t", 1);
    if (have_new[i]) put_u(maxnew[i]);
    else put("-", 1);
  }
  put("\t", 1);
  put_u(stats.resumed);
  put("\n", 1);
  flush_out();
}

int tree_walk_main(void) {
  size_t len = 0, cap = 4096;
  char *text = malloc(cap + 1);
  if (text == NULL) return 1;
  for (;;) {
    if (len == cap) {
      cap *= 2;
      text = realloc(text, cap + 1);
      if (text == NULL) return 1;
    }
    ssize_t r = read(0, text + len, cap - len);
    if (r == 0) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    len += (size_t)r;
    /* An empty token ends the job before EOF (check=1: fd 0 then carries the decision). */
    if ((len == 1 && text[0] == '\0') || (len >= 2 && text[len - 1] == '\0' && text[len - 2] == '\0')) break;
  }
  text[len] = '\0';
  if (parse_job(text, len) != 0) return 1;

  /* Deep trees hold one directory fd per level. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  struct blob *blobs[] = {&acl_access, &acl_default, &capability};
  for (size_t i = 0; i < 3; i++) {
    blobs[i]->cap = 256;
    blobs[i]->data = malloc(blobs[i]->cap);
    if (blobs[i]->data == NULL) return 1;
  }
  names_cap = 1024;
  names_buf = malloc(names_cap);
  if (names_buf == NULL) return 1;
  path = malloc(256);
  if (path == NULL) return 1;
  path_cap = 256;
  path[0] = '\0';
  int rootfd = open(job.root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (rootfd < 0) {
    record_error("open", errno);
  } else {
    struct stat st;
    int root_mount_root; /* the root may well be a mount itself: that is allowed */
    if (stat_entry(rootfd, NULL, &st, &root_mount_root) < 0) {
      record_error("lstat", errno);
    } else {
      root_dev = st.st_dev;
      if (job.count) {
        /* A new open file description: a dup would share (and exhaust) the directory offset. */
        int again = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        unsigned long long total = again >= 0 ? count_dir(again, 0) + 1 : 0;
        puts_("T\t");
        put_u(total);
        put("\n", 1);
        flush_out();
      }
      pid_t children[16];
      unsigned forked = 0;
      /* check=1: worker 0 passes the decision it reads on fd 0 to the other workers. */
      int go[2] = {-1, -1};
      if (job.check && job.workers > 1 && pipe(go) < 0) {
        record_error("pipe", errno);
        job.workers = 1;
      }
      flush_out(); /* nothing buffered may be written twice */
      for (unsigned w = 1; w < job.workers; w++) {
        pid_t pid = fork();
        if (pid < 0) {
          record_error("fork", errno);
          break;
        }
        if (pid == 0) {
          worker_id = w;
          forked = 0;
          prctl(PR_SET_PDEATHSIG, SIGKILL);
          if (go[1] >= 0) close(go[1]);
          go[1] = -1;
          /* Its own open file description of the root: the offset of a shared one moves for all. */
          int own = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
          if (own < 0) {
            record_error("open", errno);
            write_summary();
            _exit(0);
          }
          close(rootfd);
          rootfd = own;
          break;
        }
        children[forked++] = pid;
      }
      if (worker_id == 0 && go[0] >= 0) close(go[0]);
      /* check=1: a read-only pass first (its own S record), then, when the caller says so on
         fd 0 after it has read every worker's check summary, the apply pass (a second S record).
         The apply pass reuses what the check pass learnt: see plain_note(). */
      int second = -1, apply = job.apply, list = job.list;
      if (job.check) {
        /* A new open file description of the root for the second walk (a dup shares the offset). */
        second = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (second < 0) record_error("open", errno);
        pass = 1;
        job.apply = job.list = 0;
      }
      walk_root(rootfd); /* the root itself belongs to worker 0 */
      rootfd = -1;
      write_summary();
      if (job.check) {
        char decision = 0;
        ssize_t r;
        if (worker_id == 0) {
          do r = read(0, &decision, 1);
          while (r < 0 && errno == EINTR);
          if (r != 1) decision = 0;
          for (unsigned c = 0; c < forked; c++) {
            do r = write(go[1], &decision, 1);
            while (r < 0 && errno == EINTR);
          }
          if (go[1] >= 0) close(go[1]);
        } else {
          do r = read(go[0], &decision, 1);
          while (r < 0 && errno == EINTR);
          if (r != 1) decision = 0;
        }
        if (decision == 'a' && second >= 0) {
          pass = 2;
          job.apply = apply;
          job.list = list;
          memset(&stats, 0, sizeof stats);
          free(seen_inodes);
          seen_inodes = NULL;
          seen_cap = seen_n = 0;
          walk_root(second);
          write_summary();
        } else if (second >= 0) {
          close(second);
        }
      }
      for (unsigned c = 0; c < forked; c++) {
        int status;
        while (waitpid(children[c], &status, 0) < 0 && errno == EINTR) {
        }
      }
      return 0;
    }
    if (rootfd >= 0) close(rootfd);
  }
  /* No walk at all: one (empty) summary per worker, as the reader expects. */
  for (worker_id = 0; worker_id < job.workers; worker_id++) write_summary();
  return 0;
}
