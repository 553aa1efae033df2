import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Local servers are copies of one initdb template, so without this they
 * would all share the template's `system_identifier` — and reshard refuses
 * two nodes that look like one database (invariant 7). initdb makes a fresh
 * identifier for each cluster; this does the same for a copy: it writes a new
 * identifier into `global/pg_control` with its CRC, and the caller then runs
 * `pg_resetwal` so that the WAL's page headers carry the new identifier too
 * (the server refuses WAL "from a different database system").
 */
export function writeFreshSystemIdentifier(dataDir: string): bigint {
  const path = join(dataDir, 'global', 'pg_control');
  const control = readFileSync(path);
  const crcOffset = controlCrcOffset(control);
  const systemIdentifier = freshSystemIdentifier();
  // The identifier is the struct's first field, in the machine's byte order (every server this runs on is little-endian).
  control.writeBigUInt64LE(systemIdentifier, 0);
  control.writeUInt32LE(crc32c(control.subarray(0, crcOffset)), crcOffset);
  writeFileSync(path, control);
  return systemIdentifier;
}

/**
 * Where pg_control keeps its CRC: right after the struct it covers, at an
 * offset that differs between major versions, so it is found rather than
 * assumed — the one 4-byte-aligned place whose value is the CRC of every byte before it.
 */
function controlCrcOffset(control: Buffer): number {
  for (let offset = 8; offset + 4 <= CONTROL_STRUCT_BYTES_MAX && offset + 4 <= control.length; offset += 4) {
    if (control.readUInt32LE(offset) === crc32c(control.subarray(0, offset))) return offset;
  }
  throw new Error('global/pg_control has no CRC reshard recognises (not a little-endian PostgreSQL control file?)');
}

/** pg_control's struct is a few hundred bytes; the rest of its 8 kB is zeros. */
const CONTROL_STRUCT_BYTES_MAX = 1024;

/** As initdb makes one: the time in the high half (so it is positive as a bigint), random low bits. */
function freshSystemIdentifier(): bigint {
  const seconds = BigInt(Math.floor(Date.now() / 1000)) & 0x7fff_ffffn;
  return (seconds << 32n) | BigInt(randomBytes(4).readUInt32LE(0));
}

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f6_3b78 : crc >>> 1;
    table[byte] = crc >>> 0;
  }
  return table;
})();

/** CRC-32C (Castagnoli), as PostgreSQL computes pg_control's. */
function crc32c(bytes: Uint8Array): number {
  let crc = 0xffff_ffff;
  for (const byte of bytes) crc = CRC32C_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffff_ffff) >>> 0;
}
