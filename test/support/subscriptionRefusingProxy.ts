import net from 'node:net';

/** Protocol codes of the requests a client may send before its startup packet. */
const SSL_REQUEST_CODE = 80877103;
const GSSENC_REQUEST_CODE = 80877104;
/** A startup packet larger than this is not PostgreSQL's. */
const STARTUP_PACKET_BYTES_MAX = 10_000;

/**
 * A TCP forwarder in front of one PostgreSQL server that models an address
 * only the coordinator can use (a tunnel, a NAT, a port forwarded to the
 * operator's machine), on one machine and without root: while
 * `refusingSubscriptions`, it refuses the connections a node's subscription
 * makes — walsender connections (`replication=database`) whose
 * application_name is a subscription's (`reshard_…`; PostgreSQL's apply
 * worker and CREATE SUBSCRIPTION name their connection after the
 * subscription) — with a FATAL error, and forwards everything else: the
 * coordinator's sessions and its own replication connection ("reshard
 * snapshot"). It reads the startup packet to decide, so it answers "no TLS"
 * to a TLS request: it stands in front of plaintext servers only.
 */
export class SubscriptionRefusingProxy {
  refusingSubscriptions = true;
  /** Startup parameters of every connection refused, for assertions. */
  readonly refused: Record<string, string>[] = [];
  private readonly sockets = new Set<net.Socket>();

  private constructor(private readonly server: net.Server, readonly port: number, private readonly targetPort: number) {}

  static async start(targetPort: number, host = '127.0.0.1'): Promise<SubscriptionRefusingProxy> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, () => resolve());
    });
    const proxy = new SubscriptionRefusingProxy(server, (server.address() as net.AddressInfo).port, targetPort);
    server.on('connection', (client) => proxy.accept(client, host));
    return proxy;
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => this.sockets.delete(socket));
  }

  private accept(client: net.Socket, host: string): void {
    this.track(client);
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 8) {
        const length = buffered.readInt32BE(0);
        if (length < 8 || length > STARTUP_PACKET_BYTES_MAX) {
          client.destroy();
          return;
        }
        if (buffered.length < length) return;
        const code = buffered.readInt32BE(4);
        if (length === 8 && (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE)) {
          client.write('N');
          buffered = buffered.subarray(8);
          continue;
        }
        client.off('data', onData);
        const parameters = startupParameters(buffered.subarray(8, length));
        if (this.refusingSubscriptions && parameters['replication'] === 'database' && (parameters['application_name'] ?? '').startsWith('reshard_')) {
          this.refused.push(parameters);
          client.end(fatalError('this address is not reachable from the nodes (test proxy)'));
          return;
        }
        this.forward(client, buffered, host);
        return;
      }
    };
    client.on('data', onData);
  }

  private forward(client: net.Socket, startup: Buffer, host: string): void {
    const server = net.connect(this.targetPort, host);
    this.track(server);
    server.write(startup);
    client.pipe(server);
    server.pipe(client);
    client.on('close', () => server.destroy());
    server.on('close', () => client.destroy());
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** The name/value pairs of a startup packet's body (after length and protocol version). */
function startupParameters(body: Buffer): Record<string, string> {
  const words = body.toString('utf8').split('\u0000');
  const parameters: Record<string, string> = {};
  for (let index = 0; index + 1 < words.length && words[index] !== ''; index += 2) parameters[words[index]!] = words[index + 1]!;
  return parameters;
}

/** An ErrorResponse with severity FATAL, SQLSTATE 08001, and `message`. */
function fatalError(message: string): Buffer {
  const fields = Buffer.from(`SFATAL\u0000VFATAL\u0000C08001\u0000M${message}\u0000\u0000`, 'utf8');
  const header = Buffer.alloc(5);
  header.write('E', 0);
  header.writeInt32BE(4 + fields.length, 1);
  return Buffer.concat([header, fields]);
}
