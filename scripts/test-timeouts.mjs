// Preloaded into every test file by scripts/run-tests.mjs (--import): gives each test() / it()
// and each hook (before, after, beforeEach, afterEach) a timeout unless it names its own, so no
// test can hang the run. Node 20's --test-timeout cannot do this: under --test it bounds each
// whole FILE, and inside a file it reaches only top-level tests (describe() blocks do not pass it
// on). The wrappers replace node:test's exports (syncBuiltinESMExports updates the bindings the
// test files import); every property (test.skip, test.todo, …) is kept.
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { Script } from 'node:vm';

const require = createRequire(import.meta.url);
const nodeTest = require('node:test');
export const DEFAULT_TIMEOUT_MS = Number(process.env.USERNS_TEST_TIMEOUT_MS || 45_000);

function withOptions(options) {
  return options !== null && typeof options === 'object' && options.timeout !== undefined
    ? options
    : { ...(options ?? {}), timeout: DEFAULT_TIMEOUT_MS };
}

// node:test records where test() was called (file, line) from the frame that calls it; from
// here that would be this file. So the original is called through a tiny function compiled
// with the caller's file name and position (vm.Script filename/lineOffset/columnOffset): the
// reports keep naming the test file and line.
const CALL = '(function (f, self, args) { return f.apply(self, args); })';
const CALL_COLUMN = CALL.indexOf('f.apply');
const callers = new Map();

function callFromCaller(original, self, args) {
  // [0] "Error", [1] this function, [2] the wrapper, [3] the test file
  const frame = (new Error().stack ?? '').split('\n')[3] ?? '';
  const m = /((?:file:\/\/)?\/[^\s()]*):(\d+):(\d+)\)?$/.exec(frame.trim());
  if (m === null) return original.apply(self, args);
  const key = `${m[1]}:${m[2]}:${m[3]}`;
  let call = callers.get(key);
  if (call === undefined) {
    call = new Script(CALL, {
      filename: m[1],
      lineOffset: Number(m[2]) - 1,
      columnOffset: Math.max(0, Number(m[3]) - 1 - CALL_COLUMN),
    }).runInThisContext();
    callers.set(key, call);
  }
  return call(original, self, args);
}

/** test([name], [options], [fn]) with a default timeout. */
function wrapTest(original) {
  const wrapped = function (...args) {
    let i = 0;
    const named = typeof args[0] === 'string';
    const name = named ? args[i++] : undefined;
    const hasOptions = args[i] !== null && typeof args[i] === 'object';
    const options = withOptions(hasOptions ? args[i++] : undefined);
    const rest = args.slice(i);
    return callFromCaller(original, this, named ? [name, options, ...rest] : [options, ...rest]);
  };
  for (const key of Object.keys(original)) wrapped[key] = original[key];
  return wrapped;
}

/** before(fn, [options]) with a default timeout. */
function wrapHook(original) {
  return function (fn, options) {
    return callFromCaller(original, this, [fn, withOptions(options)]);
  };
}

nodeTest.test = wrapTest(nodeTest.test);
nodeTest.it = wrapTest(nodeTest.it);
for (const hook of ['before', 'after', 'beforeEach', 'afterEach']) nodeTest[hook] = wrapHook(nodeTest[hook]);
syncBuiltinESMExports();
