// A node:test reporter used by scripts/run-tests.mjs beside the spec reporter: appends one JSON
// line per started and finished test or suite (name, file, skip reason, failure) to the file
// $USERNS_TEST_EVENTS, for the runner's summary of skips and failures, and prints each failure
// to stderr the moment it happens (the spec reporter shows a file's failures only once that
// whole file is done). The lines are written synchronously, not through the reporter's
// destination stream: with --test-force-exit the runner process exits as soon as the tests are
// done, and what a stream still buffered (the last files' results) would be lost.
import { appendFileSync } from 'node:fs';

const EVENTS = process.env.USERNS_TEST_EVENTS;

export default async function* reporter(source) {
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail' && event.type !== 'test:start') continue;
    const d = event.data;
    const record = {
      type: event.type,
      name: d.name,
      file: d.file ?? null,
      nesting: d.nesting,
    };
    if (event.type !== 'test:start') {
      record.kind = d.details?.type ?? 'test';
      if (d.skip !== undefined && d.skip !== false) record.skip = d.skip === true ? '' : String(d.skip);
      if (d.todo !== undefined && d.todo !== false) record.todo = d.todo === true ? '' : String(d.todo);
      record.durationMs = d.details?.duration_ms ?? null;
    }
    if (event.type === 'test:fail') {
      const error = d.details?.error;
      const cause = error?.cause ?? error;
      record.error = String(cause?.message ?? cause ?? 'failed')
        .split('\n')
        .slice(0, 3)
        .join(' | ');
      if (record.kind !== 'suite' || error?.failureType !== 'subtestsFailed')
        process.stderr.write(`✗ FAILED: ${d.file ?? ''} › ${d.name}: ${record.error}\n`);
    }
    if (EVENTS) appendFileSync(EVENTS, `${JSON.stringify(record)}\n`);
  }
  yield '';
}
