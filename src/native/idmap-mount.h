/* Mounts of userns-helper (idmap-mount.c): --mount=SPEC, and the mount mode. Protocol in
   src/native/protocol.md ("Mounts"); all policy lives in src/mount/. */
#ifndef USERNS_IDMAP_MOUNT_H
#define USERNS_IDMAP_MOUNT_H
#include <stddef.h>

struct idmap_mount_error {
  const char *step; /* mount-userns, mount-open, mount-idmap, mount-setattr, mount-ns, mount-attach, usage */
  int err;          /* errno */
  char detail[600];
};

/* Adds the mount of one --mount=SPEC (SPEC without "--mount="): 0, or -1 when malformed. */
int idmap_mount_add(const char *spec);

/* How many mounts were added. */
int idmap_mount_count(void);

/*
 * Called just before the helper unshares its namespaces, with the clone flags it will use.
 * Reads the "userns …" line from control_fd when a mount needs a user namespace (EOF or anything
 * else: exit 125), clones and sets up every source, then either attaches them in a fresh mount
 * namespace (the following unshare copies it into the new, less privileged one, which locks the
 * mounts), or, with `detach` (the mount mode), reports "mount <index> <fd>" and "held" on
 * report_fd, waits for EOF there and exits 0. Returns 0, or an errno with *e filled in.
 */
int idmap_mounts_setup(int ns_flags, int detach, int report_fd, int control_fd, struct idmap_mount_error *e);

#endif
