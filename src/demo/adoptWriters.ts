import type { AdoptingTable } from '../router/adoptingTable.js';

/** What the writers of `demo --adopt` did: keys acknowledged, keys whose insert failed (present or not), and each call's latency. */
export interface AdoptWriterLog {
  acknowledged: number[];
  uncertain: number[];
  errors: string[];
  latenciesMs: number[];
}

/** First key of writer `client`'s own range: far above the loaded rows, one range per writer. */
export const WRITER_KEY_BASE = 1_000_000_000;
const WRITER_KEY_RANGE = 10_000_000;

/**
 * `clients` writers that insert new users through `AdoptingTable` (the old
 * table until the switch, held through the cutover, then by slot) until
 * `stop()`, each from its own key range. Every insert is timed as the
 * client sees it: the longest is the cutover's write pause.
 */
export function startAdoptWriters(table: AdoptingTable, clients: number, thinkMs: number): { stop: () => Promise<AdoptWriterLog> } {
  const log: AdoptWriterLog = { acknowledged: [], uncertain: [], errors: [], latenciesMs: [] };
  let running = true;
  const loops = Array.from({ length: clients }, async (_, client) => {
    let next = WRITER_KEY_BASE + client * WRITER_KEY_RANGE;
    while (running) {
      const id = next++;
      const started = performance.now();
      try {
        await table.query(id, 'INSERT INTO users (id, name, payload) VALUES ($1, $2, $3)', [id, `live ${client}`, `written during the adoption by client ${client}`]);
        log.acknowledged.push(id);
      } catch (error) {
        log.uncertain.push(id);
        log.errors.push((error as Error).message);
      }
      log.latenciesMs.push(performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, thinkMs));
    }
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return log;
    },
  };
}
