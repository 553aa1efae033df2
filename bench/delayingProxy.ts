import net from 'node:net';

/**
 * A TCP proxy on a loopback port in front of one server that delivers every
 * chunk `oneWayDelayMs` after it arrived, both ways: each connection through
 * it sees a round trip of twice that, as between hosts. Order is kept
 * (Node runs timers of one duration in the order they were set); bytes are
 * not throttled, only late.
 */
export class DelayingProxy {
  private readonly sockets = new Set<net.Socket>();

  private constructor(private readonly server: net.Server, readonly port: number) {}

  static async start(targetPort: number, oneWayDelayMs: number, host = '127.0.0.1'): Promise<DelayingProxy> {
    // Half-open allowed: one side's end is passed on (late) and the other direction keeps flowing.
    const server = net.createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, () => resolve());
    });
    const proxy = new DelayingProxy(server, (server.address() as net.AddressInfo).port);
    server.on('connection', (client) => proxy.accept(client, net.connect({ port: targetPort, host, allowHalfOpen: true }), oneWayDelayMs));
    return proxy;
  }

  private accept(client: net.Socket, upstream: net.Socket, oneWayDelayMs: number): void {
    const forward = (from: net.Socket, to: net.Socket): void => {
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
    forward(client, upstream);
    forward(upstream, client);
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
