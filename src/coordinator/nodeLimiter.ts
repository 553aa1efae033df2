/**
 * Admits work as it arrives, while its nodes have room: at most
 * `limitOf(node)` units at once on each node, at most `globalLimit` in all;
 * among the waiting units that fit, the first to arrive goes first. The
 * dynamic sibling of runWithNodeLimits, for work that becomes ready one unit
 * at a time (a batch's cutovers once its copy has caught up).
 */
export class NodeLimiter {
  private readonly busy = new Map<string, number>();
  private running = 0;
  private readonly waiting: { nodes: readonly string[]; admit: () => void }[] = [];

  constructor(private readonly limitOf: (node: string) => number, private readonly globalLimit: number) {}

  /** Runs `work` once `nodes` have room; its failure is the caller's. */
  async run<R>(nodes: readonly string[], work: () => Promise<R>): Promise<R> {
    await new Promise<void>((admit) => {
      this.waiting.push({ nodes, admit });
      this.admitWaiting();
    });
    try {
      return await work();
    } finally {
      this.running--;
      for (const node of nodes) this.busy.set(node, (this.busy.get(node) ?? 1) - 1);
      this.admitWaiting();
    }
  }

  private fits(nodes: readonly string[]): boolean {
    return nodes.every((node) => (this.busy.get(node) ?? 0) < Math.max(1, this.limitOf(node)));
  }

  private admitWaiting(): void {
    for (let index = 0; index < this.waiting.length && this.running < Math.max(1, this.globalLimit);) {
      const unit = this.waiting[index]!;
      if (!this.fits(unit.nodes)) {
        index++;
        continue;
      }
      this.waiting.splice(index, 1);
      this.running++;
      for (const node of unit.nodes) this.busy.set(node, (this.busy.get(node) ?? 0) + 1);
      unit.admit();
    }
  }
}
