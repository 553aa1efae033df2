/**
 * Runs `work` over `items` with at most `limit` at once. Stops starting new
 * items once `shouldStop()` is true; returns the results of those it started.
 */
export async function runBounded<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
  shouldStop: () => boolean = () => false,
): Promise<PromiseSettledResult<R>[]> {
  const results: PromiseSettledResult<R>[] = [];
  let next = 0;
  async function lane(): Promise<void> {
    while (next < items.length && !shouldStop()) {
      const item = items[next++]!;
      try {
        results.push({ status: 'fulfilled', value: await work(item) });
      } catch (reason) {
        results.push({ status: 'rejected', reason });
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  return results;
}
