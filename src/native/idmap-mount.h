/* Mounts of userns-helper (idmap-mount.c): --mount=SPEC and --detach-mounts. Protocol in
   src/native/protocol.md ("Mounts"); all policy lives in src/mount/. */
#ifndef USERNS_IDMAP_MOUNT_H
#define USERNS_IDMAP_MOUNT_H
#include <stddef.h>

struct idmap_mount_error {
  const char *step; /* mount-userns, mount-open, mount-idmap, mount-setattr, mount-ns, mount-attach, usage */
  int err;          /* errno */
  char detail[600];
};

/* Parses one argv element: 1 = it was --mount=SPEC or --detach-mounts, 0 = not ours, -1 = malformed. */
int idmap_mount_option(const char *arg);

/* Whether --detach-mounts was given (then the helper takes no command). */
int idmap_mount_detach_mode(void);

/* Whether any --mount=SPEC or --detach-mounts was given (they need a namespace of our own). */
int idmap_mount_requested(void);

/*
 * Called just before the helper unshares its namespaces, with the clone flags it will use.
 * Reads the "userns …" line from control_fd when a mount needs a user namespace (EOF or anything
 * else: exit 125), clones and sets up every source, then either attaches them in a fresh mount
 * namespace (the following unshare copies it into the new, less privileged one, which locks the
 * mounts), or, with --detach-mounts, reports "mount <index> <fd>" and "held" on report_fd, waits
 * for EOF there and exits 0. Returns 0, or an errno with *e filled in.
 */
int idmap_mounts_setup(int ns_flags, int report_fd, int control_fd, struct idmap_mount_error *e);

#endif
