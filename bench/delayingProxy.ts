import net from 'node:net';

/**
 * A TCP proxy on a loopback port in front of one server that delivers every
 * chunk late, both ways: each connection through it sees `roundTripMs` more
 * per round trip, as between hosts. Timers count whole milliseconds, so an
 * odd round trip is split unevenly (5 ms: 3 there, 2 back). Order is kept
 * (Node runs timers of one duration in the order they were set); bytes are
 * not throttled, only late.
 */
export class DelayingProxy {
  private readonly sockets = new Set<net.Socket>();

  private constructor(private readonly server: net.Server, readonly port: number) {}

  static async start(targetPort: number, roundTripMs: number, host = '127.0.0.1'): Promise<DelayingProxy> {
    // Half-open allowed: one side's end is passed on (late) and the other direction keeps flowing.
    const server = net.createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, () => resolve());
    });
    const proxy = new DelayingProxy(server, (server.address() as net.AddressInfo).port);
    const delays = { toServerMs: Math.ceil(roundTripMs / 2), toClientMs: Math.floor(roundTripMs / 2) };
    server.on('connection', (client) => proxy.accept(client, net.connect({ port: targetPort, host, allowHalfOpen: true }), delays));
    return proxy;
  }

  private accept(client: net.Socket, upstream: net.Socket, delays: { toServerMs: number; toClientMs: number }): void {
    const forward = (from: net.Socket, to: net.Socket, oneWayDelayMs: number): void => {
      this.sockets.add(from);
      from.setNoDelay(true);
      from.on('error', () => {});
      from.on('data', (chunk: Buffer) => setTimeout(() => { if (!to.destroyed) to.write(chunk); }, oneWayDelayMs));
      // Late, like everything else, and after the bytes before it (end() flushes; destroy() would drop what is buffered).
      from.on('end', () => setTimeout(() => to.end(), oneWayDelayMs));
      from.on('close', (hadError: boolean) => {
        this.sockets.delete(from);
        setTimeout(() => (hadError ? to.destroy() : to.end()), oneWayDelayMs);
      });
    };
    forward(client, upstream, delays.toServerMs);
    forward(upstream, client, delays.toClientMs);
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
