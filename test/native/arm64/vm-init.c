/*
 * PID 1 of the arm64 virtual machine of test/native/arm64.test.ts (cross-compiled there, static).
 *
 * Node does not run in that machine, so this is a minimal stand-in for src/native/helper.ts: it
 * drives /userns-helper (the package's arm64 helper) by the protocol of src/native/protocol.md,
 * once per line of /runs, and prints what happened; the test decides what is right.
 *
 *   /runs line:  [abort ]HELPER-ARG HELPER-ARG ...     (single spaces; "--ppid=" is added)
 *   output:      RESULT <n> child=<pid> status=<exit code|sig-N> reports=<line>|<line>|...
 *
 * Per run: socketpairs on fds 3 (report) and 4 (control), read reports until "ready <pid>" (or
 * EOF), write "0 100000 65536" to its uid_map and gid_map as the root of this machine, then close
 * the control fd ("go"; with "abort " first: write "abort" then close it), read the rest of the
 * reports until EOF (an exec closes fd 3) and reap the helper. Then the machine powers off.
 *
 * Run as "/init probe" (a command inside a namespace): prints what it sees and exits 7.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAP "0 100000 65536\n"

static int probe(void) {
  char map[256] = "";
  int fd = open("/proc/self/uid_map", O_RDONLY);
  ssize_t n = fd < 0 ? -1 : read(fd, map, sizeof map - 1);
  if (n > 0) map[n] = '\0';
  for (char *p = map; *p != '\0'; p++)
    if (*p == '\n') *p = ';';
  printf("PROBE uid=%d gid=%d pid=%d uid_map=%s\n", (int)getuid(), (int)getgid(), (int)getpid(), map);
  fflush(stdout);
  return 7;
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY);
  if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
    printf("DRIVER write %s: %s\n", path, strerror(errno));
  if (fd >= 0) close(fd);
}

/* Reads one line (without the newline) from fd into buf; returns 0 at EOF. */
static int read_line(int fd, char *buf, size_t size) {
  size_t n = 0;
  char c;
  ssize_t r;
  while ((r = read(fd, &c, 1)) == 1) {
    if (c == '\n') break;
    if (n < size - 1) buf[n++] = c;
  }
  buf[n] = '\0';
  return r == 1 || n > 0;
}

static void run(int index, char *line) {
  int abort_run = strncmp(line, "abort ", 6) == 0;
  if (abort_run) line += 6;
  char *argv[64];
  char ppid[32];
  int argc = 0;
  argv[argc++] = "userns-helper";
  argv[argc++] = "--mode=run";
  snprintf(ppid, sizeof ppid, "--ppid=%d", (int)getpid());
  argv[argc++] = ppid;
  for (char *tok = strtok(line, " "); tok != NULL && argc < 63; tok = strtok(NULL, " ")) argv[argc++] = tok;
  argv[argc] = NULL;

  int report[2], control[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, report) != 0 ||
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, control) != 0) {
    printf("DRIVER socketpair: %s\n", strerror(errno));
    return;
  }
  pid_t child = fork();
  if (child == 0) {
    /* dup2 clears close-on-exec on the new descriptors. */
    if (dup2(report[1], 3) < 0 || dup2(control[1], 4) < 0) _exit(126);
    execv("/userns-helper", argv);
    _exit(126);
  }
  close(report[1]);
  close(control[1]);

  char reports[2048] = "";
  char buf[512];
  while (read_line(report[0], buf, sizeof buf)) {
    if (reports[0] != '\0') strncat(reports, "|", sizeof reports - strlen(reports) - 1);
    strncat(reports, buf, sizeof reports - strlen(reports) - 1);
    if (strncmp(buf, "ready ", 6) == 0) {
      char path[64];
      int pid = atoi(buf + 6);
      snprintf(path, sizeof path, "/proc/%d/uid_map", pid);
      write_file(path, MAP);
      snprintf(path, sizeof path, "/proc/%d/gid_map", pid);
      write_file(path, MAP);
      if (abort_run && write(control[0], "abort\n", 6) != 6) printf("DRIVER abort: %s\n", strerror(errno));
      close(control[0]);
      control[0] = -1;
    }
  }
  if (control[0] >= 0) close(control[0]);
  close(report[0]);
  int status = 0;
  waitpid(child, &status, 0);
  char how[32];
  if (WIFEXITED(status))
    snprintf(how, sizeof how, "%d", WEXITSTATUS(status));
  else
    snprintf(how, sizeof how, "sig-%d", WTERMSIG(status));
  printf("RESULT %d child=%d status=%s reports=%s\n", index, (int)child, how, reports);
  fflush(stdout);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "probe") == 0) return probe();
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (mount("proc", "/proc", "proc", 0, NULL) != 0) printf("DRIVER mount /proc: %s\n", strerror(errno));
  FILE *runs = fopen("/runs", "r");
  char line[1024];
  int index = 0;
  while (runs != NULL && fgets(line, sizeof line, runs) != NULL) {
    line[strcspn(line, "\n")] = '\0';
    if (line[0] != '\0') run(++index, line);
  }
  printf("DONE %d\n", index);
  fflush(stdout);
  sync();
  reboot(RB_POWER_OFF);
  return 0;
}
