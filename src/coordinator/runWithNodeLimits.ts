/**
 * Runs units of work as soon as every node they touch has room (per-node
 * limit) and the global limit allows. Stops starting units once
 * `shouldStop()` is true; returns the outcome of every unit it started.
 */
export async function runWithNodeLimits<T, R>(
  units: readonly T[],
  nodesOf: (unit: T) => readonly string[],
  limitOf: (node: string) => number,
  globalLimit: number,
  work: (unit: T) => Promise<R>,
  shouldStop: () => boolean = () => false,
): Promise<PromiseSettledResult<R>[]> {
  const waiting = [...units];
  const busy = new Map<string, number>();
  const running = new Set<Promise<void>>();
  const results: PromiseSettledResult<R>[] = [];
  const fits = (unit: T): boolean => nodesOf(unit).every((node) => (busy.get(node) ?? 0) < Math.max(1, limitOf(node)));
  while (waiting.length > 0 || running.size > 0) {
    while (!shouldStop() && running.size < Math.max(1, globalLimit)) {
      const index = waiting.findIndex(fits);
      if (index < 0) break;
      const unit = waiting.splice(index, 1)[0]!;
      for (const node of nodesOf(unit)) busy.set(node, (busy.get(node) ?? 0) + 1);
      const task: Promise<void> = work(unit).then(
        (value) => { results.push({ status: 'fulfilled', value }); },
        (reason: unknown) => { results.push({ status: 'rejected', reason }); },
      ).finally(() => {
        for (const node of nodesOf(unit)) busy.set(node, (busy.get(node) ?? 1) - 1);
        running.delete(task);
      });
      running.add(task);
    }
    if (running.size === 0) break;
    await Promise.race(running);
  }
  return results;
}
