/**
 * A ChildProcess that is also a promise of its outcome (as execa's): spawn() and
 * spawnInNamespace() return one, so that its stdio can be used at once and `await` gives the
 * result (or the typed error of the setup).
 */
import type { ChildProcess } from 'node:child_process';

/**
 * Makes `child` a promise of `result` (then/catch/finally), and passes a rejection to the
 * child's 'error' listeners when there are any (as child_process does for a failed start).
 */
export function promiseChild<T>(
  child: ChildProcess,
  result: Promise<T>,
  tag?: string,
): ChildProcess & Promise<T> {
  result.catch((error: unknown) => {
    if (child.listenerCount('error') > 0) child.emit('error', error);
  });
  Object.defineProperties(child, {
    // biome-ignore lint/suspicious/noThenProperty: the ChildProcess is deliberately a promise too (like execa)
    then: { value: result.then.bind(result), configurable: true },
    catch: { value: result.catch.bind(result), configurable: true },
    finally: { value: result.finally.bind(result), configurable: true },
    ...(tag === undefined ? {} : { [Symbol.toStringTag]: { value: tag, configurable: true } }),
  });
  return child as ChildProcess & Promise<T>;
}

/** Resolves with the exit code and signal once the child has exited and its stdio closed. */
export function closed(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
}
