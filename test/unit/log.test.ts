import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { configureLogging, errorFields, isLogLevel, log } from '../../src/plumbing/log.js';
import { startWaitLog } from '../../src/plumbing/waitLog.js';

const directory = mkdtempSync(join(tmpdir(), 'reshard-log-'));

function lines(file: string): Record<string, unknown>[] {
  return readFileSync(file, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
}

afterEach(() => {
  configureLogging({ level: 'silent' });
});

describe('the log', () => {
  it('writes JSON lines with the component to the file, from the level given, and follows a later configuration', () => {
    const logger = log('test');
    const file = join(directory, 'levels.log');
    configureLogging({ level: 'info', file });
    logger.debug('not written');
    logger.info({ slot: 3 }, 'written');
    logger.warn('also written');
    expect(lines(file).map((line) => [line['component'], line['level'], line['msg']])).toEqual([['test', 'info', 'written'], ['test', 'warn', 'also written']]);
    expect(lines(file)[0]!['slot']).toBe(3);
    configureLogging({ level: 'error', file });
    logger.warn('dropped');
    logger.error('kept');
    expect(lines(file).map((line) => line['msg'])).toEqual(['written', 'also written', 'kept']);
  });

  it('redacts password fields at any of the first three depths', () => {
    const file = join(directory, 'redact.log');
    configureLogging({ level: 'info', file });
    log('test').info({ password: 's3cret-a', connection: { host: 'db', password: 's3cret-b' }, access: { catalog: { password: 's3cret-c' } }, passwords: { n1: 's3cret-d' } }, 'connecting');
    const text = readFileSync(file, 'utf8');
    for (const secret of ['s3cret-a', 's3cret-b', 's3cret-c', 's3cret-d']) expect(text).not.toContain(secret);
    expect(lines(file)[0]).toMatchObject({ password: '[redacted]', connection: { host: 'db', password: '[redacted]' } });
  });

  it('an error is its message and code, not its object', () => {
    expect(errorFields(Object.assign(new Error('lock timeout'), { code: '55P03', parameters: ['secret'] }))).toEqual({ error: 'lock timeout', code: '55P03' });
    expect(errorFields('plain')).toEqual({ error: 'plain' });
  });

  it('knows its levels', () => {
    expect(['trace', 'debug', 'info', 'warn', 'error', 'silent'].every(isLogLevel)).toBe(true);
    expect(isLogLevel('verbose')).toBe(false);
  });

  it('a wait says what it waits for while it lasts, and how it ended', async () => {
    const file = join(directory, 'wait.log');
    configureLogging({ level: 'debug', file });
    const wait = startWaitLog(log('test'), 'the lock on users', 5_000, { slot: 7 }, 50);
    await new Promise((resolve) => setTimeout(resolve, 180));
    wait.end('timeout', { attempts: 3 });
    wait.end('done');
    const written = lines(file);
    expect(written[0]).toMatchObject({ level: 'debug', msg: 'waiting for the lock on users', slot: 7, boundMs: 5_000 });
    const still = written.filter((line) => String(line['msg']).startsWith('still waiting for the lock on users: '));
    expect(still.length).toBeGreaterThanOrEqual(2);
    expect(still[0]).toMatchObject({ level: 'info', slot: 7, boundMs: 5_000, waitedMs: expect.any(Number) });
    expect(written.at(-1)).toMatchObject({ level: 'info', outcome: 'timeout', attempts: 3, slot: 7 });
    // Ended once: no line after the end, and no second end.
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(lines(file)).toHaveLength(written.length);
  });
});

describe('a long wait', () => {
  it('goes from info to warn past its warnAfterMs, and never for a wait long by nature', async () => {
    const file = join(directory, 'long.log');
    configureLogging({ level: 'info', file });
    const hang = startWaitLog(log('test'), 'a hang', undefined, {}, 40, { warnAfterMs: 100 });
    const paused = startWaitLog(log('test'), 'a paused migration', undefined, {}, 40, { warnAfterMs: Infinity });
    await new Promise((resolve) => setTimeout(resolve, 250));
    hang.end('done');
    paused.end('done');
    const levelsOf = (what: string): string[] => lines(file).filter((line) => line['wait'] === what).map((line) => String(line['level']));
    expect(levelsOf('a hang')[0]).toBe('info');
    expect(levelsOf('a hang').at(-1)).toBe('warn');
    expect(levelsOf('a paused migration').length).toBeGreaterThan(2);
    expect(levelsOf('a paused migration').every((level) => level === 'info')).toBe(true);
  });
});

describe('a quiet wait (every statement)', () => {
  it('writes nothing when it ends quickly, and says so when it lasts', async () => {
    const file = join(directory, 'quiet.log');
    configureLogging({ level: 'debug', file });
    startWaitLog(log('test'), 'a quick statement', 1_000, {}, 60, { quiet: true }).end('failed', { error: 'syntax' });
    const slow = startWaitLog(log('test'), 'a slow statement', 1_000, {}, 60, { quiet: true });
    await new Promise((resolve) => setTimeout(resolve, 150));
    slow.end('done');
    const written = lines(file);
    expect(written.some((line) => String(line['msg']).includes('quick'))).toBe(false);
    expect(written[0]).toMatchObject({ level: 'info', wait: 'a slow statement' });
    expect(written.at(-1)).toMatchObject({ level: 'info', outcome: 'done', msg: expect.stringMatching(/^wait for a slow statement: done after \d+ ms$/) });
  });
});

process.on('exit', () => rmSync(directory, { recursive: true, force: true }));
