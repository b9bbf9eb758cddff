/** The system layer: /proc, subordinate IDs, users and groups, newuidmap/newgidmap. */
export * from './newidmap.js';
export * from './proc.js';
export * from './subordinate.js';
export * from './users.js';
