/**
 * The signals a launcher passes on to the command it runs (`userns run`, `userns exec`,
 * reexecInUserNamespace; the helper's PID-namespace supervisor forwards the same ones, see
 * src/native/protocol.md), and the exit status a shell reports for a death by signal.
 */
import { constants } from 'node:os';

/** Forwarded: the terminal's and a service manager's signals, and the two user signals. */
export const FORWARDED_SIGNALS = [
  'SIGINT',
  'SIGTERM',
  'SIGHUP',
  'SIGQUIT',
  'SIGUSR1',
  'SIGUSR2',
  'SIGWINCH',
] as const satisfies readonly NodeJS.Signals[];

export type ForwardedSignal = (typeof FORWARDED_SIGNALS)[number];

/**
 * Passes every FORWARDED_SIGNALS signal this process receives on to `target` (a ChildProcess),
 * calling `onSignal` first. Returns the function that stops forwarding (and restores the default
 * handling). While forwarding, these signals no longer terminate this process.
 */
export function forwardSignals(
  target: { kill(signal: NodeJS.Signals): unknown },
  onSignal?: (signal: ForwardedSignal) => void,
): () => void {
  const handlers = new Map<ForwardedSignal, () => void>();
  for (const signal of FORWARDED_SIGNALS) {
    const handler = () => {
      onSignal?.(signal);
      target.kill(signal);
    };
    handlers.set(signal, handler);
    process.on(signal, handler);
  }
  return () => {
    for (const [signal, handler] of handlers) process.off(signal, handler);
    handlers.clear();
  };
}

/** The number of a signal (SIGTERM → 15); 0 when unknown. */
export function signalNumber(signal: NodeJS.Signals): number {
  return constants.signals[signal] ?? 0;
}

/** The exit status a shell reports for a command killed by `signal`: 128 + its number. */
export function exitStatusForSignal(signal: NodeJS.Signals): number {
  return 128 + signalNumber(signal);
}
