// Preloaded into every test file by scripts/run-tests.mjs (--import): gives each test() / it()
// and each hook (before, after, beforeEach, afterEach) a timeout unless it names its own, so no
// test can hang the run. Node 20's --test-timeout cannot do this: under --test it bounds each
// whole FILE, and inside a file it reaches only top-level tests (describe() blocks do not pass it
// on). The wrappers replace node:test's exports (syncBuiltinESMExports updates the bindings the
// test files import); every property (test.skip, test.todo, …) is kept.
import { createRequire, syncBuiltinESMExports } from 'node:module';

const require = createRequire(import.meta.url);
const nodeTest = require('node:test');
export const DEFAULT_TIMEOUT_MS = Number(process.env.USERNS_TEST_TIMEOUT_MS || 45_000);

function withOptions(options) {
  return options !== null && typeof options === 'object' && options.timeout !== undefined
    ? options
    : { ...(options ?? {}), timeout: DEFAULT_TIMEOUT_MS };
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
    return named ? original.call(this, name, options, ...rest) : original.call(this, options, ...rest);
  };
  for (const key of Object.keys(original)) wrapped[key] = original[key];
  return wrapped;
}

/** before(fn, [options]) with a default timeout. */
function wrapHook(original) {
  return function (fn, options) {
    return original.call(this, fn, withOptions(options));
  };
}

nodeTest.test = wrapTest(nodeTest.test);
nodeTest.it = wrapTest(nodeTest.it);
for (const hook of ['before', 'after', 'beforeEach', 'afterEach']) nodeTest[hook] = wrapHook(nodeTest[hook]);
syncBuiltinESMExports();
