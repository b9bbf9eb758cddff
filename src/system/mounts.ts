import { readFileSync, realpathSync } from 'node:fs';

/** One mount of /proc/self/mountinfo. */
export interface MountInfo {
  /** Where it is mounted (unescaped). */
  mountPoint: string;
  /** Filesystem type ("ext4", "tmpfs", "proc", …). */
  fsType: string;
  /** Per-mount options (e.g. "rw,relatime,idmapped,nosuid"). */
  options: string[];
  /** Mount source (device, "tmpfs", …; unescaped). */
  source: string;
  /** Per-superblock options (e.g. "rw,size=65536k"). */
  superOptions: string[];
}

/** Decodes a field as /proc/PID/mountinfo escapes it (\040 space, \011 tab, \012 newline, \134 backslash). */
function unescapeMountinfo(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/**
 * The mount `path` is on, in this process's view (/proc/self/mountinfo, or the `mountinfo` text
 * given): the longest mount point holding its real path (symbolic links resolved), the last one
 * when several are mounted on the same point. undefined when `path` does not exist.
 */
export function mountOf(path: string, mountinfo?: string): MountInfo | undefined {
  let real: string;
  let text: string;
  try {
    real = realpathSync(path);
    text = mountinfo ?? readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return undefined;
  }
  let best: MountInfo | undefined;
  for (const line of text.split('\n')) {
    // "ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL…] - TYPE SOURCE SUPER-OPTIONS"
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const f = line.slice(0, sep).split(' ');
    const r = line.slice(sep + 3).split(' ');
    if (f.length < 6) continue;
    const mountPoint = unescapeMountinfo(f[4]!);
    const inside = mountPoint === '/' || real === mountPoint || real.startsWith(`${mountPoint}/`);
    // Later lines are mounted on top of earlier ones at the same point: >= keeps the last.
    if (!inside || (best !== undefined && mountPoint.length < best.mountPoint.length)) continue;
    best = {
      mountPoint,
      fsType: r[0] ?? '?',
      source: unescapeMountinfo(r[1] ?? ''),
      options: f[5]!.split(','),
      superOptions: (r[2] ?? '').split(',').filter((o) => o !== ''),
    };
  }
  return best;
}
