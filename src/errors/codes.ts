/** Every error code userns uses (filled in below). */
export type ErrorCode = string;
