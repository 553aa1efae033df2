import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliDecompressSync } from 'node:zlib';
import sparticuzChromium from '@sparticuz/chromium';
import { chromium, type Browser } from 'playwright-core';

/**
 * The browser the dashboard test drives, found without any download outside the npm registry:
 * the system's Chromium where one is installed (`/usr/bin/chromium`, Debian's package), else
 * the headless Chromium shipped inside the `@sparticuz/chromium` npm package (a devDependency,
 * so `npm ci` installs it). That package decompresses its binary to `$TMPDIR/chromium` on first
 * use; the binary needs only libc plus NSS/NSPR/expat, and those it also ships (built for
 * Amazon Linux 2023, glibc 2.34), so we put them first on LD_LIBRARY_PATH: a bare Debian
 * without libnss3 runs it too.
 */
export interface BrowserChoice {
  executablePath: string;
  /** `system` or `npm:@sparticuz/chromium@VERSION`, for the test's log line. */
  source: string;
  env: Record<string, string>;
}

const SYSTEM_CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];

/**
 * Flags for a closed network: without the background-networking ones Chromium keeps opening
 * connections this machine refuses. `--no-sandbox` because tests run as root.
 */
const LAUNCH_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The package root, whose bin/ holds the compressed files (its exports name no package.json). */
function sparticuzDirectory(): string {
  return fileURLToPath(new URL('../../node_modules/@sparticuz/chromium', import.meta.url));
}

/**
 * Unpacks the package's bundled shared libraries (a brotli-compressed tar) once, into a folder
 * named for the package version; written beside and renamed, so a run killed halfway leaves
 * nothing that looks finished.
 */
function bundledLibraryDirectory(packageRoot: string, version: string): string {
  const target = join(tmpdir(), `reshard-chromium-libs-${version}`);
  if (existsSync(join(target, 'lib', 'libnss3.so'))) return join(target, 'lib');
  const partial = `${target}.partial-${process.pid}`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  const tarBytes = brotliDecompressSync(readFileSync(join(packageRoot, 'bin', 'al2023.tar.br')));
  execFileSync('tar', ['-x', '-C', partial], { input: tarBytes, timeout: 60_000 });
  try {
    renameSync(partial, target);
  } catch (error) {
    // Another process finished first: its copy is as good as ours.
    rmSync(partial, { recursive: true, force: true });
    if (!existsSync(join(target, 'lib', 'libnss3.so'))) throw error;
  }
  return join(target, 'lib');
}

export async function chooseBrowser(): Promise<BrowserChoice> {
  const system = SYSTEM_CHROMIUM.find((path) => existsSync(path));
  if (system) return { executablePath: system, source: 'system', env: {} };
  const packageRoot = sparticuzDirectory();
  const version = (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
  const executablePath = await sparticuzChromium.executablePath();
  const libraries = bundledLibraryDirectory(packageRoot, version);
  const inherited = process.env['LD_LIBRARY_PATH'];
  return {
    executablePath,
    source: `npm:@sparticuz/chromium@${version}`,
    env: {
      LD_LIBRARY_PATH: inherited ? `${libraries}:${inherited}` : libraries,
      // The package unpacks its fonts there; without it text renders as empty boxes.
      FONTCONFIG_PATH: join(tmpdir(), 'fonts'),
    },
  };
}

export async function launchBrowser(): Promise<{ browser: Browser; choice: BrowserChoice }> {
  const choice = await chooseBrowser();
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) if (value !== undefined) env[name] = value;
  const browser = await chromium.launch({
    executablePath: choice.executablePath,
    args: LAUNCH_ARGS,
    env: { ...env, ...choice.env },
    timeout: 60_000,
  });
  return { browser, choice };
}
