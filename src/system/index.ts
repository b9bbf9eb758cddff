/**
 * The system layer: /proc, mounts, subordinate IDs, users and groups, newuidmap/newgidmap.
 *
 * @module userns/system
 */
export * from './mounts.js';
export * from './newidmap.js';
export * from './proc.js';
export * from './subordinate.js';
export * from './users.js';
