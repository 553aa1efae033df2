/**
 * Runs `work` one at a time: a request while it runs does not start a second
 * run beside it but one more after it (any number of requests meanwhile make
 * one), and its caller gets the promise of the run that covers it. For work
 * that reads the newest state each time (the router's map, its
 * acknowledgement): requests in between add nothing a next run misses.
 */
export class CoalescedRuns {
  private running: Promise<void> | undefined;
  private requestedAgain = false;

  constructor(private readonly work: () => Promise<void>, private readonly stopped: () => boolean, private readonly afterRuns: () => void = () => {}) {}

  request(): Promise<void> {
    if (this.running) {
      this.requestedAgain = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.requestedAgain = false;
          await this.work();
        } while (this.requestedAgain && !this.stopped());
      } finally {
        this.running = undefined;
        this.afterRuns();
      }
    })();
    return this.running;
  }
}
