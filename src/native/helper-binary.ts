/**
 * Which native helper executable this process runs: the one place that decides.
 *
 * The package ships one statically linked helper per supported platform, built by
 * scripts/build-native.mjs into `build/<platform>-<arch>/userns-helper` (names as Node's
 * `process.platform` and `process.arch` spell them):
 *
 *   linux-x64    built with `cc` on x86-64 (or a cross compiler on arm64)
 *   linux-arm64  built with Debian's `aarch64-linux-gnu-gcc` on x86-64 (or `cc` on arm64)
 *
 * Order: an explicit path (the `helperPath` option) → `$USERNS_HELPER` → the package's helper for
 * this platform and architecture. Any other Linux architecture uses a helper built from source
 * there (`npm run build` in the package, with `cc`), into the same kind of directory; other
 * systems have no user namespaces at all.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SpawnError } from '../errors/index.js';

/** Platforms the package ships a prebuilt helper for (`<process.platform>-<process.arch>`). */
export const PREBUILT_HELPER_PLATFORMS: readonly string[] = ['linux-x64', 'linux-arm64'];

/** The package's root directory (this file is dist/src/native/helper-binary.js in it). */
const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** `build/<platform>-<arch>/userns-helper` in the package, whether it exists or not. */
export function packagedHelperPath(platform: string = process.platform, arch: string = process.arch): string {
  return `${PACKAGE_ROOT}build/${platform}-${arch}/userns-helper`;
}

export interface HelperBinaryQuery {
  /** An explicit path (the API's `helperPath` option): used as it is. */
  explicit?: string | undefined;
  /** Default: process.env (read: USERNS_HELPER). */
  env?: NodeJS.ProcessEnv;
  /** Default: process.platform. */
  platform?: string;
  /** Default: process.arch. */
  arch?: string;
}

/**
 * The helper executable to run, checked to be executable.
 *
 * Throws SpawnError:
 *   - `PLATFORM_UNSUPPORTED` on a system other than Linux (no user namespaces), unless an
 *     explicit path or USERNS_HELPER names a helper;
 *   - `HELPER_MISSING` when the chosen file is not an executable file: for a shipped platform
 *     the package was built without it; for another Linux architecture none is shipped. The
 *     hint says how to build one from source with `cc` (scripts/build-native.mjs, which an
 *     installed package has too), or to set USERNS_HELPER.
 */
export function resolveHelperBinary(query: HelperBinaryQuery = {}): string {
  const env = query.env ?? process.env;
  const platform = query.platform ?? process.platform;
  const arch = query.arch ?? process.arch;
  const root = PACKAGE_ROOT.replace(/\/$/, '');
  // An installed package has no TypeScript compiler, so the native build alone (shipped in scripts/).
  const build = `with a C compiler (apt-get install gcc libc6-dev): 'node scripts/build-native.mjs' in ${root} ('npm run build' in a checkout)`;
  if (query.explicit !== undefined) {
    return checkExecutable(query.explicit, `the native helper ${query.explicit} is not an executable file`, {
      hint: "give the path of a built userns-helper, or leave helperPath unset to use the package's own",
    });
  }
  const fromEnv = env.USERNS_HELPER;
  if (fromEnv) {
    return checkExecutable(fromEnv, `USERNS_HELPER=${fromEnv} is not an executable file`, {
      hint: "point USERNS_HELPER at a built userns-helper, or unset it to use the package's own",
    });
  }
  if (platform !== 'linux') {
    throw new SpawnError(
      'PLATFORM_UNSUPPORTED',
      `user namespaces exist only on Linux; this is ${platform}-${arch}`,
      {
        hint: 'the pure parts (userns/idmap: maps, formats, validation) work anywhere; run commands in namespaces on a Linux machine',
        data: { platform, arch },
      },
    );
  }
  const path = packagedHelperPath(platform, arch);
  const key = `${platform}-${arch}`;
  if (PREBUILT_HELPER_PLATFORMS.includes(key)) {
    return checkExecutable(path, `the native helper ${path} is not built`, {
      hint: `build it ${build}; or set USERNS_HELPER to a built userns-helper`,
    });
  }
  return checkExecutable(
    path,
    `no native helper for ${key}: the package ships helpers for ${PREBUILT_HELPER_PLATFORMS.join(' and ')} only`,
    { hint: `build one for this machine ${build}; or set USERNS_HELPER to a userns-helper built for ${key}` },
  );
}

function checkExecutable(path: string, message: string, details: { hint: string }): string {
  try {
    accessSync(path, constants.X_OK);
    if (!statSync(path).isFile()) throw new Error('not a file');
  } catch {
    throw new SpawnError('HELPER_MISSING', message, { ...details, data: { path } });
  }
  return path;
}
