/**
 * A change of slot states (and, for a switch, owners) that a router can apply
 * to the map it holds without reading the catalog: the payload of the
 * NOTIFY on SLOT_MAP_CHANNEL sent by a freeze, an unfreeze or a switch. The
 * new map is exactly the map at `epoch - 1` with `slots` in `state` (and
 * owned by `owner`, when named), since the statement that sends it bumps the
 * epoch once and changes nothing else a router reads. A router whose map is
 * at any other epoch reads the catalog instead, as it does for every other
 * notification (their payload is the bare new epoch).
 */
export interface SlotMapChange {
  epoch: number;
  state: 'frozen' | 'active';
  slots: number[];
  /** The slots' new owner (a switch); absent: their owners are unchanged. */
  owner?: string;
}

/**
 * Slots one payload names at most: a NOTIFY payload must stay under 8000
 * bytes. A change of more slots sends the bare epoch (routers read the map).
 */
const PAYLOAD_SLOTS_MAX = 500;

/**
 * The payload expression of a change, for a statement that bumped the epoch
 * to `epochSql` and changed the slots `changedSql` returns (a CTE's
 * `RETURNING slot`); `ownerSql` is a text parameter or NULL.
 */
export function slotMapChangeSql(epochSql: string, changedSql: string, state: SlotMapChange['state'], ownerSql = 'NULL::text'): string {
  return `CASE WHEN (SELECT count(*) FROM ${changedSql}) <= ${PAYLOAD_SLOTS_MAX}
            THEN json_strip_nulls(json_build_object('epoch', ${epochSql}, 'state', '${state}', 'owner', ${ownerSql},
                   'slots', (SELECT coalesce(json_agg(slot ORDER BY slot), '[]'::json) FROM ${changedSql})))::text
            ELSE (${epochSql})::text END`;
}

/** A notification's payload as a change, or undefined when it is anything else (a bare epoch, a malformed payload). */
export function parseSlotMapChange(payload: string | undefined): SlotMapChange | undefined {
  if (payload === undefined || !payload.startsWith('{')) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { epoch, state, slots, owner } = parsed as Record<string, unknown>;
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 1) return undefined;
  if (state !== 'frozen' && state !== 'active') return undefined;
  if (!Array.isArray(slots) || !slots.every((slot) => Number.isSafeInteger(slot) && (slot as number) >= 0)) return undefined;
  if (owner !== undefined && (typeof owner !== 'string' || owner.length === 0)) return undefined;
  return { epoch, state, slots: slots as number[], ...(owner !== undefined ? { owner } : {}) };
}
