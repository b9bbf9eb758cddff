import { type ErrorDetails, UsernsError } from '../errors.js';

/** Where to look when something about namespaces or maps fails. */
export const DOCTOR_HINT = "run 'userns doctor' for a full diagnosis";

/**
 * Starting a command in new namespaces failed: the helper could not be started, a namespace could
 * not be created, the IDs could not be switched, or the command could not be executed.
 *
 * Codes: HELPER_MISSING, PLATFORM_UNSUPPORTED (not Linux), HELPER_DIED, HELPER_PROTOCOL,
 * UNSHARE_FAILED, SETGROUPS_FAILED, ID_NOT_MAPPED, SETID_FAILED, MOUNT_PROC_FAILED, CWD_FAILED,
 * COMMAND_NOT_FOUND, COMMAND_NOT_EXECUTABLE, EXEC_FAILED, SETUP_FAILED, ABORTED, HOOK_FAILED,
 * MAP_READBACK_FAILED.
 * `data.step` and `data.errno` carry the helper's report when there is one.
 */
export class SpawnError extends UsernsError {
  readonly errno: string | undefined;
  readonly step: string | undefined;

  constructor(code: string, message: string, details: ErrorDetails & { errno?: string; step?: string } = {}) {
    super(code, message, {
      ...details,
      data: {
        ...(details.step === undefined ? {} : { step: details.step }),
        ...(details.errno === undefined ? {} : { errno: details.errno }),
        ...details.data,
      },
    });
    this.errno = details.errno;
    this.step = details.step;
  }
}

/**
 * Writing the ID maps failed: newuidmap/newgidmap missing or unusable, a range the user may not
 * map, or the kernel refused the map.
 *
 * Codes: NEWUIDMAP_MISSING, NEWGIDMAP_MISSING, NEWUIDMAP_NOT_SETUID, NEWGIDMAP_NOT_SETUID,
 * NEWUIDMAP_FAILED, NEWGIDMAP_FAILED, RANGE_NOT_ALLOWED, MAP_WRITE_FAILED, SETGROUPS_WRITE_FAILED,
 * NO_SUBORDINATE_IDS, INVALID_MAP, ID_NOT_IN_MAP.
 */
export class NewIdmapError extends UsernsError {}
