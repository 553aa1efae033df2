// The reshard dashboard page: one plain ES module, no build step. It renders
// each state the server pushes over /api/events (server-sent events) and
// sends the control actions with the token in a header.

const $ = (id) => document.getElementById(id);

/** Okabe–Ito colours (distinguishable with the common colour-vision deficiencies), each with a pattern and a number. */
const COLOURS = ['#E69F00', '#56B4E9', '#009E73', '#F0E442', '#0072B2', '#D55E00', '#CC79A7', '#BBBBBB'];
const PATTERNS = [
  'none',
  'repeating-linear-gradient(45deg, rgba(0,0,0,.28) 0 2px, transparent 2px 6px)',
  'radial-gradient(rgba(0,0,0,.35) 1.2px, transparent 1.4px) 0 0 / 5px 5px',
  'repeating-linear-gradient(0deg, rgba(0,0,0,.28) 0 2px, transparent 2px 6px)',
  'repeating-linear-gradient(-45deg, rgba(0,0,0,.28) 0 2px, transparent 2px 6px)',
  'repeating-linear-gradient(90deg, rgba(0,0,0,.28) 0 2px, transparent 2px 6px)',
];

const BYTE_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
function bytes(value) {
  if (value === null || value === undefined) return '–';
  let v = Math.abs(value);
  let unit = 0;
  while (v >= 1000 && unit < BYTE_UNITS.length - 1) { v /= 1000; unit++; }
  const text = unit === 0 ? String(Math.round(v)) : v < 100 ? v.toFixed(1) : v.toFixed(0);
  return `${value < 0 ? '-' : ''}${text} ${BYTE_UNITS[unit]}`;
}
function duration(seconds) {
  if (seconds === null || seconds === undefined) return '–';
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}
function ms(value) {
  return value === null || value === undefined ? '–' : `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`;
}
function percent(part, whole) {
  return whole > 0 ? Math.min(100, (100 * part) / whole) : 0;
}
function esc(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}
function time(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : '–';
}

/** Node → colour, pattern and a short number, stable by the order of names. */
function nodeStyles(names) {
  const styles = new Map();
  [...names].sort((a, b) => a.localeCompare(b, 'en', { numeric: true })).forEach((name, index) => {
    styles.set(name, {
      label: String(index + 1),
      colour: COLOURS[index % COLOURS.length],
      pattern: PATTERNS[index % PATTERNS.length],
    });
  });
  return styles;
}
function swatchStyle(style) {
  return `background:${style.pattern === 'none' ? '' : `${style.pattern},`}${style.colour}`;
}

function renderHeader(state) {
  const c = state.cluster;
  $('cluster-facts').textContent = c
    ? `${state.nodes.length} nodes · ${c.slots} slots · epoch ${c.epoch} · catalog poll ${state.poll_ms} ms`
    : 'no cluster in the catalog';
  if (!state.catalog.reachable) $('cluster-facts').textContent += ` · catalog unreachable: ${state.catalog.error ?? ''}`;
}

function renderSlots(state, styles) {
  const owners = state.slot_map.owners;
  // By slot id: null where no slot has the id (a split adds ids above the cluster's slot count).
  const slotCount = owners.filter((owner) => owner !== null).length;
  const frozen = new Set(state.slot_map.frozen);
  const moving = new Map();
  const migration = state.migration;
  if (migration && migration.state === 'running') {
    for (const move of migration.moves) if (move.state === 'running' || move.state === 'pending') moving.set(move.slot, move);
  }
  const grid = $('grid');
  grid.style.setProperty('--cell', slotCount > 512 ? '12px' : slotCount > 128 ? '20px' : '26px');
  const showLabels = slotCount <= 512;
  // A split slot is marked, and siblings sit side by side: slots in the order of their cluster-modulus parent, then id.
  const moduli = state.slot_map.moduli ?? [];
  const base = state.cluster?.slots ?? owners.length;
  const order = owners.flatMap((owner, slot) => (owner === null ? [] : [slot])).sort((a, b) => (a % base) - (b % base) || a - b);
  let splitCount = 0;
  grid.innerHTML = order.map((slot) => {
    const owner = owners[slot];
    const style = styles.get(owner) ?? { label: '?', colour: '#fff', pattern: 'none' };
    const move = moving.get(slot);
    const classes = ['slot'];
    let title = `slot ${slot}: ${owner}`;
    let bar = '';
    if (move) {
      classes.push(move.state === 'running' ? 'moving' : 'waiting');
      const done = percent(move.bytes_copied, move.bytes_total);
      title += ` → ${move.target}, ${move.state === 'running' ? `${move.step ?? 'starting'}, ${done.toFixed(0)} % copied` : 'waiting'}`;
      if (move.state === 'running') bar = `<i style="width:${done}%"></i>`;
    }
    if (frozen.has(slot)) { classes.push('frozen'); title += ', frozen (writes held)'; }
    const modulus = moduli[slot] ?? base;
    if (modulus > base) {
      classes.push('split');
      splitCount += 1;
      title += ` — split: modulus ${modulus}, 1/${modulus / base} of slot ${slot % base}'s hash space`;
    }
    return `<div class="${classes.join(' ')}" data-slot="${slot}" data-owner="${esc(owner)}" data-modulus="${modulus}" title="${esc(title)}" style="${swatchStyle(style)}">${showLabels ? esc(style.label) : ''}${bar}</div>`;
  }).join('');
  grid.setAttribute('aria-label', `slot map: ${slotCount} slots; ${[...styles.keys()].map((name) => `${name} owns ${owners.filter((o) => o === name).length}`).join(', ')}; ${moving.size} moving`);
  $('slots-caption').textContent = `${slotCount} slots${splitCount ? ` (${splitCount} split)` : ''}${moving.size ? `, ${moving.size} in the running migration` : ''}`;
  $('legend').innerHTML = [...styles.entries()].map(([name, style]) =>
    `<span class="item"><span class="slot" style="${swatchStyle(style)}">${esc(style.label)}</span>${esc(name)} (${owners.filter((o) => o === name).length})</span>`).join('') +
    '<span class="item"><span class="slot moving" style="background:#eee"><i style="width:60%"></i></span>moving (bar = bytes copied)</span>' +
    '<span class="item"><span class="slot waiting" style="background:#eee"></span>waiting to move</span>' +
    '<span class="item"><span class="slot frozen" style="background:#eee"></span>frozen: writes held</span>' +
    '<span class="item"><span class="slot split" style="background:#eee"></span>split (siblings side by side)</span>';
}

function renderNodes(state, styles) {
  $('nodes').innerHTML = `<thead><tr><th>node</th><th>state</th><th class="num">slots</th><th class="num">bytes</th><th class="num">headroom</th><th>in the migration</th></tr></thead><tbody>` +
    state.nodes.map((node) => {
      const style = styles.get(node.name);
      const headroom = node.headroom_bytes !== null ? bytes(node.headroom_bytes) : node.capacity_bytes !== null ? '–' : '<span class="muted">unknown</span>';
      const reach = node.reachable === false ? ' <span class="badge error">unreachable</span>' : '';
      const role = node.role ? `${esc(node.role)}${node.moves_in_flight ? `, ${node.moves_in_flight} in flight` : ''}` : '<span class="muted">–</span>';
      return `<tr data-node="${esc(node.name)}"><td>${style ? `<span class="slot" style="display:inline-flex;width:18px;margin-right:.4rem;vertical-align:middle;${swatchStyle(style)}">${esc(style.label)}</span>` : ''}${esc(node.name)}</td>` +
        `<td>${esc(node.state)}${reach}</td><td class="num">${node.slots}</td><td class="num">${bytes(node.bytes)}</td><td class="num">${headroom}</td><td>${role}</td></tr>`;
    }).join('') + '</tbody>';
}

function chart(points) {
  if (points.length < 2) return '<svg id="chart" role="img" aria-label="throughput: not enough samples yet"></svg>';
  const width = 600;
  const height = 70;
  const max = Math.max(1, ...points.map((p) => p.bytes_per_sec));
  const step = width / Math.max(1, points.length - 1);
  const path = points.map((p, i) => `${(i * step).toFixed(1)},${(height - 4 - (p.bytes_per_sec / max) * (height - 14)).toFixed(1)}`).join(' ');
  return `<svg id="chart" viewBox="0 0 ${width} ${height}" preserveAspectRatio="none" role="img" aria-label="throughput over the last ${points.length} seconds, peak ${bytes(max)}/s">` +
    `<polyline fill="none" stroke="#0b63c5" stroke-width="2" vector-effect="non-scaling-stroke" points="${path}"/>` +
    `<text x="4" y="11" font-size="10" fill="#5b6475">peak ${bytes(max)}/s</text></svg>`;
}

function renderMigration(state) {
  const m = state.migration;
  const target = $('migration');
  if (!m) {
    $('migration-title').textContent = 'Migration';
    target.innerHTML = '<p class="muted">No migration has run yet. The plan below is what <code>reshard rebalance</code> would do now.</p>';
    return;
  }
  const paused = m.paused_since !== null;
  const shown = m.state === 'running' ? (paused ? 'paused' : m.control === 'pause' ? 'pausing…' : m.control === 'cancel' ? 'cancelling…' : m.interrupted ? 'interrupted' : 'running') : m.state;
  $('migration-title').innerHTML = `Migration ${m.id} <small>(${esc(m.mode)})</small> <span class="badge" data-testid="migration-state">${esc(shown)}</span>`;
  const banners = [];
  if (paused) banners.push(`<div class="banner">Paused since ${time(m.paused_since)}: no new step starts until it is resumed.</div>`);
  if (m.interrupted) banners.push('<div class="banner">No coordinator runs this migration: <code>reshard resume</code> continues it.</div>');
  if (m.error) banners.push(`<div class="banner error">${esc(m.error)}</div>`);
  const bytePercent = percent(m.bytes_copied, m.bytes_total);
  const slotPercent = percent(m.slots_done, m.slots_total);
  target.innerHTML = banners.join('') +
    `<div class="progress-row"><span>bytes</span><div class="bar big" role="progressbar" aria-label="bytes copied" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${bytePercent.toFixed(0)}"><span style="width:${bytePercent}%"></span></div>` +
    `<span id="progress-bytes" data-bytes-copied="${m.bytes_copied}" data-bytes-total="${m.bytes_total}">${bytes(m.bytes_copied)} / ${bytes(m.bytes_total)} (${bytePercent.toFixed(1)} %)</span></div>` +
    `<div class="progress-row"><span>slots</span><div class="bar big" role="progressbar" aria-label="slots switched" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${slotPercent.toFixed(0)}"><span style="width:${slotPercent}%"></span></div>` +
    `<span id="progress-slots" data-slots-done="${m.slots_done}" data-slots-total="${m.slots_total}">${m.slots_done} / ${m.slots_total} switched</span></div>` +
    `<div class="stats"><span>in flight <b>${m.slots_in_flight}</b></span><span>rolled back <b>${m.slots_rolled_back}</b></span>` +
    `<span>rate <b>${bytes(m.rate_bytes_per_sec)}/s</b></span><span>ETA <b>${m.eta_seconds === null ? '–' : duration(m.eta_seconds)}</b></span>` +
    `<span>started <b>${time(m.created_at)}</b></span>${m.finished_at ? `<span>finished <b>${time(m.finished_at)}</b></span>` : ''}</div>` +
    chart(m.throughput);
}

function renderMoves(state) {
  const m = state.migration;
  if (!m) { $('moves').innerHTML = ''; $('moves-caption').textContent = ''; return; }
  // Running moves first, then waiting, then finished: what is happening now is on top.
  const order = { running: 0, pending: 1, failed: 2, rolled_back: 3, done: 4 };
  const moves = [...m.moves].sort((a, b) => (order[a.state] ?? 9) - (order[b.state] ?? 9) || a.slot - b.slot);
  $('moves-caption').textContent = `migration ${m.id}: ${m.moves.length} moves`;
  $('moves').innerHTML = '<thead><tr><th class="num">slot</th><th>from → to</th><th>step</th><th>copied</th><th class="num">lag</th><th class="num">freeze</th><th>outcome</th></tr></thead><tbody>' +
    moves.map((move) => {
      const p = percent(move.bytes_copied, move.bytes_total);
      const outcomeClass = move.outcome === 'switched' ? 'ok' : move.outcome === 'failed' ? 'error' : move.outcome === 'rolled back' ? 'warn' : '';
      return `<tr data-slot="${move.slot}"><td class="num">${move.slot}</td><td>${move.source === move.target ? `split on ${esc(move.source)}` : `${move.kind === 'split' ? 'split ' : ''}${esc(move.source)} → ${esc(move.target)}`}</td><td>${esc(move.step ?? '–')}</td>` +
        `<td><div style="display:flex;gap:.5rem;align-items:center"><div class="bar" style="flex:1" aria-hidden="true"><span style="width:${p}%"></span></div><span>${bytes(move.bytes_copied)} / ${bytes(move.bytes_total)}</span></div></td>` +
        `<td class="num lag">${move.lag_bytes === null ? '–' : bytes(move.lag_bytes)}</td><td class="num">${ms(move.freeze_ms)}</td>` +
        `<td class="${outcomeClass}" title="${esc(move.error ?? '')}">${esc(move.outcome)}${move.error ? ` — ${esc(move.error)}` : ''}</td></tr>`;
    }).join('') + '</tbody>';
}

function renderPlan(state) {
  const plan = state.plan;
  if (!plan) { $('plan').innerHTML = '<p class="muted">Measuring slot sizes…</p>'; $('plan-caption').textContent = ''; return; }
  $('plan-caption').textContent = plan.basis === 'current' ? 'what a rebalance would do now' : `of ${plan.basis}, from its starting map`;
  const names = plan.matrix.nodes;
  const matrix = '<table class="matrix"><caption class="muted" style="text-align:left">slots (bytes) from row to column; the diagonal stays</caption>' +
    `<thead><tr><th>from \\ to</th>${names.map((n) => `<th class="num">${esc(n)}</th>`).join('')}</tr></thead><tbody>` +
    names.map((from, i) => `<tr><th>${esc(from)}</th>${plan.matrix.cells[i].map((cell, j) =>
      `<td class="num${i === j ? ' diag' : ''}">${cell.slots}${cell.bytes ? ` <span class="muted">(${bytes(cell.bytes)})</span>` : ''}</td>`).join('')}</tr>`).join('') + '</tbody></table>';
  const s = plan.strategies;
  const row = (label, result, extra = '') => `<tr><td>${label}</td><td class="num">${(100 * result.moved_fraction).toFixed(1)} %</td><td class="num">${bytes(result.moved_bytes)}</td><td>${extra}</td></tr>`;
  const compare = s ? '<table style="margin-top:.8rem"><thead><tr><th>partitioning</th><th class="num">data moved</th><th class="num">bytes</th><th></th></tr></thead><tbody>' +
    row('contiguous hash ranges', s.range) + row('hash mod N', s.modulo) +
    row('reshard slots', s.slots, `${s.slots.slots_moved} slots; minimum ${(100 * s.slots.ideal_fraction).toFixed(1)} %`) + '</tbody></table>' : '';
  $('plan').innerHTML = `<p>${plan.slots_moved} of ${plan.slot_count} slots move (${bytes(plan.bytes_moved)} of ${bytes(plan.bytes_total)}) in ${plan.waves} wave(s): ${esc(plan.nodes_before.join(', '))} → ${esc(plan.nodes_after.join(', '))}.</p>` + matrix + compare;
}

function renderHistory(state) {
  $('history').innerHTML = '<thead><tr><th class="num">id</th><th>state</th><th>started</th><th class="num">duration</th><th class="num">slots</th><th class="num">bytes</th><th class="num">pause p50 / p99 / max</th></tr></thead><tbody>' +
    state.history.map((h) => `<tr><td class="num">${h.id}</td><td title="${esc(h.error ?? '')}">${esc(h.state)} <span class="muted">${esc(h.mode)}</span></td><td>${new Date(h.created_at).toLocaleString()}</td>` +
      `<td class="num">${duration(h.seconds)}</td><td class="num">${h.slots_moved} / ${h.moves}</td><td class="num">${bytes(h.bytes_moved)}</td>` +
      `<td class="num">${ms(h.pause_ms_p50)} / ${ms(h.pause_ms_p99)} / ${ms(h.pause_ms_max)}</td></tr>`).join('') + '</tbody>';
}

function renderEvents(state) {
  $('events').innerHTML = state.events.map((e) =>
    `<li class="${e.level === 'info' ? '' : e.level}"><time datetime="${esc(e.at)}">${time(e.at)}</time><span>${e.level === 'error' ? '✖ ' : e.level === 'warn' ? '⚠ ' : ''}${esc(e.message)}</span></li>`).join('') ||
    '<li class="muted">No events yet.</li>';
}

/** Heat map: each slot's share of the busiest slot's calls/s, white → dark red; the owner's number inside. */
function renderLoad(state, styles) {
  const load = state.load;
  if (!load) {
    $('load-caption').textContent = 'not reported';
    $('heat').innerHTML = '';
    $('load-nodes').innerHTML = '';
    return;
  }
  const owners = state.slot_map.owners;
  const max = Math.max(0, ...load.calls_per_sec);
  const heat = $('heat');
  heat.style.setProperty('--cell', owners.length > 512 ? '12px' : owners.length > 128 ? '20px' : '26px');
  heat.innerHTML = owners.map((owner, slot) => {
    const calls = load.calls_per_sec[slot] ?? 0;
    const level = max > 0 ? calls / max : 0;
    const colour = `hsl(0, ${Math.round(75 * level)}%, ${Math.round(97 - 55 * level)}%)`;
    const label = owners.length <= 512 ? esc(styles.get(owner)?.label ?? '?') : '';
    return `<div class="slot" data-slot="${slot}" data-calls="${calls}" title="${esc(`slot ${slot}: ${owner}, ${calls} calls/s, p99 ${ms(load.p99_ms[slot])}`)}" style="background:${colour};color:${level > 0.6 ? '#fff' : '#111'}">${label}</div>`;
  }).join('');
  heat.setAttribute('aria-label', `load per slot: busiest ${max} calls/s`);
  $('load-caption').textContent = load.routers > 0 ? `calls/s over ${Math.round(load.window_ms / 1000)} s, ${load.routers} router(s)` : 'no router reported in the last minute';
  $('load-nodes').innerHTML = '<thead><tr><th>node</th><th class="num">calls/s</th><th class="num">share</th><th class="num">weighted share</th><th class="num">load / share</th></tr></thead><tbody>' +
    load.nodes.map((node) => `<tr data-node="${esc(node.node)}"><td>${esc(node.node)}</td><td class="num">${node.load}</td><td class="num">${(node.share * 100).toFixed(1)} %</td>` +
      `<td class="num">${(node.weighted_share * 100).toFixed(1)} %</td><td class="num">${node.ratio === null ? '∞' : node.ratio.toFixed(2)}</td></tr>`).join('') + '</tbody>';
}

function renderAutopilot(state) {
  const autopilot = state.autopilot;
  $('autopilot-caption').textContent = !autopilot ? '' : autopilot.holder ? `running: ${autopilot.holder}` : 'not running';
  $('decisions').innerHTML = (autopilot?.decisions ?? []).map((d) =>
    `<li class="${d.acted ? '' : 'muted'}"><time datetime="${esc(d.at)}">${time(d.at)}</time><span>${esc(d.kind)}${d.migration_id !== null ? ` (migration ${d.migration_id})` : ''}: ${esc(d.summary)}</span></li>`).join('') ||
    '<li class="muted">No decisions yet.</li>';
}

let latest = null;
function render(state) {
  latest = state;
  const names = new Set([...state.nodes.map((n) => n.name), ...state.slot_map.owners.filter((owner) => owner !== null)]);
  const styles = nodeStyles(names);
  renderHeader(state);
  renderMigration(state);
  renderSlots(state, styles);
  renderNodes(state, styles);
  renderLoad(state, styles);
  renderAutopilot(state);
  renderMoves(state);
  renderPlan(state);
  renderHistory(state);
  renderEvents(state);
  document.querySelector('[data-action="rollback"]').title = state.actions.rollback_available ? '' : 'not available in this build of reshard';
}

// A read token (only if the server asks for one) comes in the page's address: ?token=…
const readToken = new URLSearchParams(location.search).get('token');
function connect() {
  const live = $('live');
  const source = new EventSource(`api/events${readToken ? `?token=${encodeURIComponent(readToken)}` : ''}`);
  source.addEventListener('state', (event) => {
    live.textContent = 'live';
    live.className = 'on';
    render(JSON.parse(event.data));
  });
  source.addEventListener('error', () => {
    live.textContent = 'reconnecting…';
    live.className = 'off';
  });
}

const tokenInput = $('token');
tokenInput.value = sessionStorage.getItem('reshard-token') ?? '';
tokenInput.addEventListener('change', () => sessionStorage.setItem('reshard-token', tokenInput.value));

async function act(action) {
  const result = $('action-result');
  if (action === 'cancel' || action === 'rollback') {
    if (!confirm(`${action === 'cancel' ? 'Cancel' : 'Roll back'} migration ${latest?.migration?.id ?? ''}? Moves that have not switched are undone.`)) return;
  }
  result.className = 'muted';
  result.textContent = `${action}…`;
  try {
    const headers = tokenInput.value ? { 'X-Reshard-Token': tokenInput.value } : {};
    const response = await fetch(`api/migration/${action}`, { method: 'POST', headers });
    const body = await response.json();
    if (response.ok) {
      result.className = 'ok';
      result.textContent = body.control !== undefined
        ? `${action}: migration ${body.migration_id} — control is now “${body.control}”${body.changed ? '' : ' (it already was)'}.`
        : body.started ? `${action}: started — ${body.message}.`
          : `${action}: migration ${body.migration_id} — ${body.undone_slots.length} move(s) undone in place, ${body.moved_back_slots.length} slot(s) moved back.`;
    } else {
      result.className = 'error';
      result.textContent = `${action} refused (${response.status}): ${body.error.message}. ${body.error.fix}`;
    }
  } catch (error) {
    result.className = 'error';
    result.textContent = `${action} failed: ${error.message}`;
  }
}
for (const button of document.querySelectorAll('[data-action]')) button.addEventListener('click', () => act(button.dataset.action));

connect();
