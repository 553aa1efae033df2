// The dashboard page is plain files (HTML + one ES module), not TypeScript:
// tsc does not copy them, so the build puts them next to the compiled server.
import { cpSync, rmSync } from 'node:fs';

const from = new URL('../src/dashboard/static/', import.meta.url);
const to = new URL('../dist/dashboard/static/', import.meta.url);
rmSync(to, { recursive: true, force: true });
cpSync(from, to, { recursive: true });
