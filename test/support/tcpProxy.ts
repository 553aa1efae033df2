import net from 'node:net';

export type ProxyMode = 'pass' | 'cut' | 'stall';

/**
 * A TCP proxy on a loopback port in front of one server, for network faults:
 * `pass` forwards both ways; `cut` resets every connection and refuses new
 * ones (a partition the peers notice); `stall` keeps every connection open
 * but forwards nothing either way, and holds new ones the same way (a
 * partition nobody notices: only the peers' own timeouts end it). `heal`
 * closes what a stall held and passes again.
 */
export class TcpProxy {
  private mode: ProxyMode = 'pass';
  private readonly pairs = new Set<{ client: net.Socket; server: net.Socket }>();

  private constructor(private readonly server: net.Server, readonly port: number, private readonly targetPort: number) {}

  static async start(targetPort: number, host = '127.0.0.1'): Promise<TcpProxy> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, () => resolve());
    });
    const proxy = new TcpProxy(server, (server.address() as net.AddressInfo).port, targetPort);
    server.on('connection', (client) => proxy.accept(client, host));
    return proxy;
  }

  get current(): ProxyMode {
    return this.mode;
  }

  get connections(): number {
    return this.pairs.size;
  }

  private accept(client: net.Socket, host: string): void {
    client.on('error', () => {});
    if (this.mode === 'cut') {
      client.resetAndDestroy();
      return;
    }
    const server = net.connect(this.targetPort, host);
    server.on('error', () => {});
    const pair = { client, server };
    this.pairs.add(pair);
    const forget = (): void => {
      this.pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    client.on('close', forget);
    server.on('close', forget);
    // Not pipe(): a stall must drop bytes in flight, not buffer them for later.
    client.on('data', (chunk: Buffer) => { if (this.mode === 'pass') server.write(chunk); });
    server.on('data', (chunk: Buffer) => { if (this.mode === 'pass') client.write(chunk); });
  }

  /** Resets every open connection and refuses new ones until `heal`. */
  cut(): void {
    this.mode = 'cut';
    for (const { client, server } of this.pairs) {
      client.resetAndDestroy();
      server.destroy();
    }
    this.pairs.clear();
  }

  /** Keeps connections (and accepts new ones) but forwards nothing until `heal`. */
  stall(): void {
    this.mode = 'stall';
  }

  /** Back to passing; connections a stall left half-dead are closed so their peers reconnect. */
  heal(): void {
    if (this.mode === 'stall') {
      for (const { client, server } of this.pairs) {
        client.resetAndDestroy();
        server.destroy();
      }
      this.pairs.clear();
    }
    this.mode = 'pass';
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
