/**
 * doctor --user stages the package without node_modules for the probe (src/doctor/probe.ts):
 * that is right only while nothing the probe imports is an npm package. This test fails the
 * day one is added, so that the staging is changed with it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { bareImportsFrom } from '../fixtures/imports.js';

test('the probe module graph imports only node: built-ins and this package', () => {
  const probe = fileURLToPath(new URL('../../src/doctor/probe.js', import.meta.url));
  assert.deepEqual([...bareImportsFrom(probe)], []);
  // The scanner sees packages (a test that cannot fail is worth nothing).
  const fixture = fileURLToPath(new URL('../oci/oci.test.js', import.meta.url));
  assert.ok(bareImportsFrom(fixture).has('fast-check'));
});
