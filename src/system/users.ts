import { readFile } from 'node:fs/promises';
import { INVALID_ID } from '../idmap/extent.js';
import { findProgram, run } from './exec.js';

/**
 * Users and groups, resolved through NSS with `getent` (so LDAP/SSSD/systemd-userdb users are
 * found exactly as the rest of the system finds them), falling back to reading /etc/passwd and
 * /etc/group directly when getent is not installed.
 */

export interface UserInfo {
  name: string;
  uid: number;
  gid: number;
  /** Home directory ('' when unknown). */
  home: string;
  /** Login shell ('' when unknown). */
  shell: string;
}

/** A group entry. */
export interface GroupInfo {
  name: string;
  gid: number;
  /** Supplementary members listed in the group entry (not users whose primary group this is). */
  members: string[];
}

/** How users and groups are looked up: getent (NSS), or the files when it is missing. */
export interface LookupOptions {
  /** getent to run (default: found in PATH); a path that does not exist means "use the files". */
  getentPath?: string;
  /** Files read when getent is missing. */
  passwdPath?: string;
  groupPath?: string;
}

function parseId(text: string | undefined): number | undefined {
  if (text === undefined || !/^[0-9]{1,10}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= INVALID_ID ? n : undefined;
}

/** Parses one passwd(5) line `name:pw:uid:gid:gecos:home:shell`; undefined when malformed. */
export function parsePasswdLine(line: string): UserInfo | undefined {
  const f = line.replace(/\r?\n$/, '').split(':');
  if (f.length !== 7 || f[0] === '') return undefined;
  const uid = parseId(f[2]);
  const gid = parseId(f[3]);
  if (uid === undefined || gid === undefined) return undefined;
  return { name: f[0]!, uid, gid, home: f[5]!, shell: f[6]! };
}

/** Parses one group(5) line `name:pw:gid:member,member`; undefined when malformed. */
export function parseGroupLine(line: string): GroupInfo | undefined {
  const f = line.replace(/\r?\n$/, '').split(':');
  if (f.length !== 4 || f[0] === '') return undefined;
  const gid = parseId(f[2]);
  if (gid === undefined) return undefined;
  return { name: f[0]!, gid, members: f[3] === '' ? [] : f[3]!.split(',') };
}

type Key = { by: 'name'; name: string } | { by: 'id'; id: number };

/** A numeric string or number is an ID (like getent and shadow); anything else a name. */
function keyOf(nameOrId: string | number): Key | undefined {
  if (typeof nameOrId === 'number') {
    return Number.isInteger(nameOrId) && nameOrId >= 0 && nameOrId <= INVALID_ID
      ? { by: 'id', id: nameOrId }
      : undefined;
  }
  if (/^[0-9]+$/.test(nameOrId)) {
    const id = parseId(nameOrId);
    return id === undefined ? undefined : { by: 'id', id };
  }
  // No entry can have these in its name; refusing them also keeps the argument from being an option.
  if (nameOrId === '' || /[:\n\0]/.test(nameOrId) || nameOrId.startsWith('-')) return undefined;
  return { by: 'name', name: nameOrId };
}

async function lookup<T extends { name: string }>(
  database: 'passwd' | 'group',
  key: Key,
  parse: (line: string) => T | undefined,
  idOf: (entry: T) => number,
  options: LookupOptions,
): Promise<T | undefined> {
  const getent = options.getentPath ?? findProgram('getent');
  if (getent !== undefined) {
    const arg = key.by === 'id' ? String(key.id) : key.name;
    const result = await run(getent, [database, arg]);
    if (!result.missing) {
      // Exit 2 = not found; anything else non-zero: NSS itself failed, which we cannot do better.
      if (result.code !== 0) return undefined;
      for (const line of result.stdout.split('\n')) {
        const entry = parse(line);
        if (entry !== undefined && (key.by === 'id' ? idOf(entry) === key.id : entry.name === key.name))
          return entry;
      }
      return undefined;
    }
  }
  const path =
    database === 'passwd' ? (options.passwdPath ?? '/etc/passwd') : (options.groupPath ?? '/etc/group');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const entry = parse(line);
    if (entry !== undefined && (key.by === 'id' ? idOf(entry) === key.id : entry.name === key.name))
      return entry;
  }
  return undefined;
}

/** A user by login name or UID (a number, or a string of digits); undefined when there is none. */
export async function lookupUser(
  nameOrUid: string | number,
  options: LookupOptions = {},
): Promise<UserInfo | undefined> {
  const key = keyOf(nameOrUid);
  if (key === undefined) return undefined;
  return lookup('passwd', key, parsePasswdLine, (u) => u.uid, options);
}

/** A group by name or GID (a number, or a string of digits); undefined when there is none. */
export async function lookupGroup(
  nameOrGid: string | number,
  options: LookupOptions = {},
): Promise<GroupInfo | undefined> {
  const key = keyOf(nameOrGid);
  if (key === undefined) return undefined;
  return lookup('group', key, parseGroupLine, (g) => g.gid, options);
}

/**
 * The user this process acts as (its effective UID). A UID without a passwd entry (common in
 * containers) gives name = the UID in decimal, gid = the effective GID, home and shell ''.
 */
export async function currentUser(options: LookupOptions = {}): Promise<UserInfo> {
  const uid = process.geteuid?.() ?? 0;
  const found = await lookupUser(uid, options);
  if (found !== undefined) return found;
  return { name: String(uid), uid, gid: process.getegid?.() ?? 0, home: '', shell: '' };
}
