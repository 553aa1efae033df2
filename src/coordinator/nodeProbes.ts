import type pg from 'pg';
import { percentile } from '../core/percentile.js';
import { probeQueryMs } from '../node/probeQuery.js';
import { connectNode, type NodeAddress, type PasswordLookup } from '../plumbing/connectNode.js';
import { errorFields, log } from '../plumbing/log.js';

const logger = log('latency-guard');

export interface NodeProbeLimits {
  /** Time between one probe's reply and the next probe on the same node. */
  intervalMs: number;
  /** Probes kept per node (the oldest are dropped): a bound on memory, well over what a window needs. */
  probesKeptMax: number;
}

/** An hour of probes at 10 per second: the guard compares the whole migration's with the baseline. */
export const NODE_PROBE_DEFAULT: NodeProbeLimits = { intervalMs: 100, probesKeptMax: 36_000 };

interface NodeProbeState {
  name: string;
  client: pg.Client;
  probes: { atMs: number; ms: number }[];
  /** When the probe in flight was sent, if one is: a probe that hangs counts as slow at once, not when it returns. */
  inFlightSinceMs: number | undefined;
}

/**
 * A small probe query (`SELECT 1`, node/probeQuery.ts) sent to each node in
 * turn on its own connection, one at a time per node, and the latencies
 * kept: the latency guard's view of nodes no router reports on. A node that
 * cannot be reached is left out (and said so); a probe that fails ends that
 * node's probing.
 */
export class NodeProbes {
  private stopped = false;
  private readonly loops: Promise<void>[] = [];

  private constructor(private readonly states: NodeProbeState[], private readonly limits: NodeProbeLimits) {
    this.loops = states.map((state) => this.probeLoop(state));
  }

  static async open(nodes: readonly NodeAddress[], passwords: PasswordLookup, limits: NodeProbeLimits = NODE_PROBE_DEFAULT): Promise<NodeProbes> {
    const states: NodeProbeState[] = [];
    for (const node of nodes) {
      try {
        states.push({ name: node.name, client: await connectNode(node, passwords, 'reshard latency probe'), probes: [], inFlightSinceMs: undefined });
      } catch (error) {
        logger.warn({ ...errorFields(error), node: node.name }, `latency guard: node ${node.name} cannot be probed`);
      }
    }
    return new NodeProbes(states, limits);
  }

  /** The nodes being probed. */
  get nodes(): string[] {
    return this.states.map((state) => state.name);
  }

  /** The `fraction` percentile of a node's probes sent since `sinceMs` (the probe in flight counted by its age so far), and how many; undefined for none. */
  percentileSince(node: string, sinceMs: number, fraction: number): { ms: number; probes: number } | undefined {
    const state = this.states.find((candidate) => candidate.name === node);
    if (!state) return undefined;
    const values = state.probes.filter((probe) => probe.atMs >= sinceMs).map((probe) => probe.ms);
    if (state.inFlightSinceMs !== undefined && state.inFlightSinceMs >= sinceMs) values.push(performance.now() - state.inFlightSinceMs);
    return values.length === 0 ? undefined : { ms: percentile(values, fraction), probes: values.length };
  }

  async close(): Promise<void> {
    this.stopped = true;
    // Ended first: a probe that hangs fails with its connection, and its loop returns.
    await Promise.all(this.states.map((state) => state.client.end().catch(() => {})));
    await Promise.all(this.loops);
  }

  private async probeLoop(state: NodeProbeState): Promise<void> {
    while (!this.stopped) {
      const atMs = performance.now();
      state.inFlightSinceMs = atMs;
      try {
        const ms = await probeQueryMs(state.client);
        state.probes.push({ atMs, ms });
        if (state.probes.length > this.limits.probesKeptMax) state.probes.splice(0, state.probes.length - this.limits.probesKeptMax);
      } catch (error) {
        logger.warn({ ...errorFields(error), node: state.name }, `latency guard: probing node ${state.name} stopped`);
        return;
      } finally {
        state.inFlightSinceMs = undefined;
      }
      await new Promise((resolve) => setTimeout(resolve, this.limits.intervalMs));
    }
  }
}
