import net from 'node:net';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DelayingProxy } from '../../bench/delayingProxy.js';

/** An echo server on loopback: what the proxy sits in front of. */
let echo: net.Server;
let echoPort: number;

beforeAll(async () => {
  echo = net.createServer((socket) => socket.pipe(socket));
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  echoPort = (echo.address() as net.AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((resolve) => echo.close(() => resolve()));
});

/** Sends `payload` through the proxy and returns what came back, with the time to the first byte back. */
async function echoThrough(port: number, payload: Buffer): Promise<{ received: Buffer; firstByteMs: number }> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  let firstByteMs = -1;
  const started = performance.now();
  socket.on('data', (chunk: Buffer) => {
    if (firstByteMs < 0) firstByteMs = performance.now() - started;
    chunks.push(chunk);
  });
  // Many small writes: each is its own chunk with its own timer, so order is what is tested.
  for (let offset = 0; offset < payload.length; offset += 997) socket.write(payload.subarray(offset, offset + 997));
  socket.end();
  await once(socket, 'close');
  return { received: Buffer.concat(chunks), firstByteMs };
}

describe('DelayingProxy: a round trip as between hosts', () => {
  it('delivers every byte in order, a round trip later than without it', async () => {
    const proxy = await DelayingProxy.start(echoPort, 40);
    try {
      const payload = Buffer.from(Array.from({ length: 200_000 }, (_, index) => index % 251));
      const through = await echoThrough(proxy.port, payload);
      expect(through.received.length).toBe(payload.length);
      expect(through.received.equals(payload)).toBe(true);
      // The first byte back comes a round trip after the first sent at the earliest (timers fire no earlier than set, give or take 1 ms).
      expect(through.firstByteMs).toBeGreaterThanOrEqual(39);
      const direct = await echoThrough(echoPort, payload);
      expect(direct.received.equals(payload)).toBe(true);
      expect(direct.firstByteMs).toBeLessThan(through.firstByteMs);
    } finally {
      await proxy.close();
    }
  });
});
