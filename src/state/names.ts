import { InvalidNameError } from '../errors/index.js';

/** Names of namespaces and allocations: what runc allows for container IDs, at most 128 long. */
const NAME = /^[A-Za-z0-9_+.-]{1,128}$/;

/**
 * Checks a name that becomes a path component under a state root. Only [A-Za-z0-9_+.-], 1 to
 * 128 characters, not "." or "..": so it can never contain a "/" or a NUL, never climb out of
 * the root, and never be an absolute path.
 */
export function validateName(name: string, what = 'name'): string {
  if (typeof name !== 'string' || !NAME.test(name) || name === '.' || name === '..') {
    const shown = JSON.stringify(String(name).slice(0, 80)) + (String(name).length > 80 ? '…' : '');
    let why: string;
    if (typeof name !== 'string' || name.length === 0) why = 'it is empty';
    else if (name.length > 128) why = `it is ${name.length} characters long (at most 128)`;
    else if (name === '.' || name === '..') why = `"${name}" is reserved`;
    else why = 'only letters, digits and _ + . - are allowed';
    throw new InvalidNameError('INVALID_NAME', `invalid ${what} ${shown}: ${why}`, {
      hint: 'use 1 to 128 characters of [A-Za-z0-9_+.-], not "." or ".."',
    });
  }
  return name;
}
