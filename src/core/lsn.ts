/**
 * A WAL position (PostgreSQL's pg_lsn) as text `X/Y` — two hexadecimal
 * halves of a 64-bit number — and as that number, for comparing and for the
 * replication protocol's binary fields.
 */
const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export function lsnValue(text: string): bigint {
  const halves = LSN_TEXT.exec(text);
  if (!halves) throw new Error(`not a WAL position: ${JSON.stringify(text)}`);
  return (BigInt(`0x${halves[1]!}`) << 32n) | BigInt(`0x${halves[2]!}`);
}

export function lsnText(value: bigint): string {
  if (value < 0n || value >= 1n << 64n) throw new Error(`not a WAL position: ${value}`);
  return `${(value >> 32n).toString(16).toUpperCase()}/${(value & 0xffffffffn).toString(16).toUpperCase()}`;
}
