/**
 * Every `code` a UsernsError carries: stable, safe to match on in scripts and in `--json` output.
 * Grouped by the class that uses them (some codes appear with more than one class: USAGE,
 * RANGE_NOT_ALLOWED, NS_STALE, INVALID_NAME).
 */

/** ParseError: text in some map format, or a file read by system/, could not be parsed. */
export type ParseErrorCode =
  | 'ARGUMENT_COUNT'
  | 'BAD_JSON'
  | 'BAD_NUMBER'
  | 'BAD_TARGET'
  | 'EMPTY_MAP'
  | 'GETSUBIDS_OUTPUT'
  | 'HOST_ID_NOT_MAPPED'
  | 'HOST_RANGE_NOT_CONTIGUOUS'
  | 'INVALID_EXTENT'
  | 'MISSING_FIELD'
  | 'MIXED_KINDS'
  | 'NOT_SUBID_LAYOUT'
  | 'NUL_BYTE'
  | 'NUMBER_TOO_LARGE'
  | 'OWNER_REQUIRED'
  | 'PARENT_REQUIRED'
  | 'CALLER_REQUIRED'
  | 'PROC_SETGROUPS_SYNTAX'
  | 'PROC_STAT_SYNTAX'
  | 'RANGE_LENGTH_MISMATCH'
  | 'RANGE_REVERSED'
  | 'SUBID_AMBIGUOUS_NUMBER'
  | 'SUBID_EMPTY_RANGE'
  | 'SUBID_INVALID_ENTRY'
  | 'SUBID_NUMBER_TOO_LARGE'
  | 'SUBID_RANGE_OVERFLOW'
  | 'SUBID_SYNTAX'
  | 'SYNTAX'
  | 'UNKNOWN_FLAG'
  | 'UNKNOWN_FORMAT'
  | 'UNKNOWN_KEY'
  | 'UNKNOWN_KIND'
  | 'UNKNOWN_OPTION'
  | 'UNRESOLVED_KEYWORD'
  | 'WRONG_TYPE';

/** MapError and plain UsernsError of the core and of system/: a map breaks a rule, a read failed. */
export type MapErrorCode =
  | 'ALLOC_MAP_INVALID'
  | 'CONFIG_USER_NS'
  | 'INPUT_TOO_LARGE'
  | 'INVALID_MAP'
  | 'MAP_INVALID'
  | 'MAP_READ_FAILED'
  | 'NOT_MAPPED_IN_PARENT'
  | 'PATH_SYMLINK'
  | 'PROC_BAD_PID'
  | 'PROC_NO_SUCH_PROCESS'
  | 'PROC_READ_FAILED'
  | 'SUBID_UNREADABLE';

/** SpawnError (and MountError): starting a command, a keeper or a walk in new namespaces. */
export type SpawnErrorCode =
  | 'COMMAND_NOT_EXECUTABLE'
  | 'COMMAND_NOT_FOUND'
  | 'CWD_FAILED'
  | 'EXEC_FAILED'
  | 'HELPER_DIED'
  | 'HELPER_MISSING'
  | 'HELPER_PROTOCOL'
  | 'HOOK_FAILED'
  | 'ID_NOT_MAPPED'
  | 'JOIN_FAILED'
  | 'KEEPER_FAILED'
  | 'MAP_READBACK_FAILED'
  | 'MOUNT_PROC_FAILED'
  | 'NS_STALE'
  | 'PATH_UNREACHABLE'
  | 'PLATFORM_UNSUPPORTED'
  | 'SETGROUPS_FAILED'
  | 'SETID_FAILED'
  | 'SETUP_FAILED'
  | 'UNSHARE_FAILED'
  | 'WALK_FAILED';

/** MountError: a mount, or the idmap of a mount, cannot be made. */
export type MountErrorCode =
  | 'IDMAP_ALREADY_IDMAPPED'
  | 'IDMAP_FAILED'
  | 'IDMAP_ID_NOT_MAPPED'
  | 'IDMAP_KERNEL_TOO_OLD'
  | 'IDMAP_MAP_EMPTY'
  | 'IDMAP_NOT_PRIVILEGED'
  | 'IDMAP_UNSUPPORTED_FS'
  | 'MOUNT_FAILED'
  | 'MOUNT_NOT_PRIVILEGED'
  | 'MOUNT_SOURCE_MISSING'
  | 'MOUNT_SPEC_INVALID'
  | 'MOUNT_TARGET_MISSING'
  | 'MOUNT_TARGET_SYMLINK'
  | 'MOUNT_TYPE_MISMATCH';

/** NewIdmapError: the maps of a new namespace cannot be written. */
export type NewIdmapErrorCode =
  | 'MAP_WRITE_FAILED'
  | 'NEWGIDMAP_FAILED'
  | 'NEWGIDMAP_MISSING'
  | 'NEWGIDMAP_NOT_SETUID'
  | 'NEWUIDMAP_FAILED'
  | 'NEWUIDMAP_MISSING'
  | 'NEWUIDMAP_NOT_SETUID'
  | 'NO_SUBORDINATE_IDS'
  | 'RANGE_NOT_ALLOWED'
  | 'SETGROUPS_DENIED'
  | 'SETGROUPS_WRITE_FAILED';

/**
 * StateRootError, StateFileError, InvalidNameError, LockTimeoutError: the state root and the
 * files that live in it.
 */
export type StateErrorCode =
  | 'INVALID_NAME'
  | 'LOCK_TIMEOUT'
  | 'LOCK_UNAVAILABLE'
  | 'NO_SPACE'
  | 'REGISTRY_TOO_NEW'
  | 'REGISTRY_UNAVAILABLE'
  | 'STAGE_FAILED'
  | 'STATE_FILE_ERROR'
  | 'STATE_FILE_NOT_A_FILE'
  | 'STATE_FILE_UNSAFE'
  | 'STATE_ROOT_UNSAFE'
  | 'STATE_ROOT_UNUSABLE';

/** AllocError: the allocation registry (local, and the fleet registry on etcd). */
export type AllocErrorCode =
  | 'AGENT_RUNNING'
  | 'ALLOC_BAD_SIZE'
  | 'ALLOC_CONFIG'
  | 'ALLOC_CONFIG_CONFLICT'
  | 'ALLOC_CONTENDED'
  | 'ALLOC_EXHAUSTED'
  | 'ALLOC_IN_USE'
  | 'ALLOC_NAME_MISMATCH'
  | 'ALLOC_NAME_TAKEN'
  | 'ALLOC_NOT_FOUND'
  | 'ALLOC_NOT_OWNER'
  | 'ALLOC_NO_POOL'
  | 'ALLOC_PASSTHROUGH_TAKEN'
  | 'NODE_NOT_REGISTERED'
  | 'REGISTRY_CORRUPT'
  | 'REGISTRY_DENIED'
  | 'REGISTRY_ERROR'
  | 'REGISTRY_NOT_CONFIGURED'
  | 'REGISTRY_TLS'
  | 'REGISTRY_UNREACHABLE'
  | 'ROOTFS_UNREADABLE';

/** NamespaceError: named namespaces. */
export type NamespaceErrorCode =
  | 'NS_BROKEN'
  | 'NS_CREATING'
  | 'NS_EXISTS'
  | 'NS_GONE'
  | 'NS_HANDLES_UNAVAILABLE'
  | 'NS_HOLD_UNSUPPORTED'
  | 'NS_KEEPER_FAILED'
  | 'NS_NOT_FOUND'
  | 'NS_STALE'
  | 'NS_UNCHECKABLE'
  | 'NS_UNSAFE';

/** OciError: OCI bundles and Kubernetes userns records. */
export type OciErrorCode =
  | 'KUBERNETES_RULES'
  | 'OCI_ALLOCATION_GONE'
  | 'OCI_ALLOCATION_MISMATCH'
  | 'OCI_BUNDLE_SYMLINK'
  | 'OCI_CHECK_ALLOCATE'
  | 'OCI_CONFIG_SYMLINK'
  | 'OCI_IDMAP_NOT_BIND'
  | 'OCI_IDMAP_NOT_PRIVILEGED'
  | 'OCI_INTERNAL'
  | 'OCI_INVALID'
  | 'OCI_INVALID_NAME'
  | 'OCI_MAP_REJECTED'
  | 'OCI_MISSING_MAPS'
  | 'OCI_MOUNT_MAPS'
  | 'OCI_MOUNT_NOT_FOUND'
  | 'OCI_NO_USER_NAMESPACE'
  | 'OCI_READ_FAILED'
  | 'OCI_ROOT_SYMLINK'
  | 'OCI_ROOT_UNREACHABLE'
  | 'OCI_UNKNOWN_FORMAT'
  | 'OCI_USERNS_PATH'
  | 'OCI_WRITE_FAILED'
  | 'RANGE_NOT_ALLOWED';

/** ShiftError, ShiftPlanError, WalkError: shifting and fitting trees. */
export type ShiftErrorCode =
  | 'FIT_DIR_UNREADABLE'
  | 'FIT_NOT_A_DIRECTORY'
  | 'PROTECTIVE_MAP_TOO_LARGE'
  | 'SHIFT_ALREADY_DONE'
  | 'SHIFT_BUSY'
  | 'SHIFT_DIR_UNREADABLE'
  | 'SHIFT_INCOMPLETE'
  | 'SHIFT_INTERMEDIATE_IN_USE'
  | 'SHIFT_NO_INTERMEDIATE_RANGE'
  | 'SHIFT_NOT_A_DIRECTORY'
  | 'SHIFT_PENDING_OTHER'
  | 'SHIFT_PREFLIGHT_FAILED'
  | 'SHIFT_RECORD_UNREADABLE'
  | 'SHIFT_UNMAPPED_IDS'
  | 'WALK_JOB_INVALID';

/** Every code. USAGE: the command line or an option was used wrongly (UsageError; the CLI exits 2). */
export type ErrorCode =
  | 'USAGE'
  | 'REEXEC_UNSUPPORTED'
  | ParseErrorCode
  | MapErrorCode
  | SpawnErrorCode
  | MountErrorCode
  | NewIdmapErrorCode
  | StateErrorCode
  | AllocErrorCode
  | NamespaceErrorCode
  | OciErrorCode
  | ShiftErrorCode;
