// Ressonance operator dashboard. Vanilla JavaScript (ES2020), no framework, no build step,
// nothing fetched from anywhere but this admin listener.
//
// Views (hash routing): #/overview, #/apps, #/apps/<id>, #/apps/<id>/debug, #/apps/<id>/publish,
// #/apps/<id>/settings (app management through /api/v1/apps: docs/observability.md; its webhooks
// and their dead letters, /api/v1/dead-letters: docs/webhooks.md).
// Everything the server sends (channel names, event data, error messages: tenant data) is inserted
// with textContent, never as HTML.
(() => {
  'use strict';

  const OVERVIEW_POLL_MS = 2000;
  const APPS_POLL_MS = 5000;
  const DEBUG_WAIT_S = 20;
  const DEBUG_KEEP = 2000; // events kept in memory per console
  const DEBUG_ROWS = 500; // rows drawn at most
  const WINDOW_S = 15 * 60; // the charts' time window
  const KINDS = [
    'connection', 'disconnection', 'subscribed', 'unsubscribed', 'occupied', 'vacated',
    'api_message', 'client_event', 'error', 'webhook',
  ];

  const $ = (id) => document.getElementById(id);
  const nf0 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const nf2 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

  // -- small helpers ---------------------------------------------------------------------------

  /** An element with text (never HTML) and attributes. */
  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (k === 'className') node.className = v;
        else node.setAttribute(k, v);
      }
    }
    return node;
  }

  function cell(row, text, className) {
    const td = el('td', text);
    if (className) td.className = className;
    row.append(td);
    return td;
  }

  function setText(id, text) {
    const node = typeof id === 'string' ? $(id) : id;
    if (node) node.textContent = text;
  }

  function fmtRate(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return '–';
    if (v >= 100) return nf0.format(v);
    if (v >= 10) return nf1.format(v);
    return nf2.format(v);
  }

  function fmtMs(v) {
    if (v === null || v === undefined) return '–';
    return `${v >= 10 ? nf1.format(v) : nf2.format(v)} ms`;
  }

  function fmtBytes(b) {
    if (b === null || b === undefined) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let v = b;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return `${v >= 10 || i === 0 ? nf0.format(v) : nf1.format(v)} ${units[i]}`;
  }

  function fmtDuration(s) {
    if (s === null || s === undefined) return '–';
    s = Math.max(0, Math.floor(s));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${sec}s`;
    return `${sec}s`;
  }

  function fmtTime(t, withMs) {
    if (t === null || t === undefined) return '–';
    const d = new Date(t * 1000);
    const pad = (n, w = 2) => String(n).padStart(w, '0');
    const base = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return withMs ? `${base}.${pad(d.getMilliseconds(), 3)}` : base;
  }

  function banner(message) {
    const b = $('banner');
    if (!message) {
      b.hidden = true;
      b.textContent = '';
      return;
    }
    b.textContent = message;
    b.hidden = false;
  }

  class ApiError extends Error {
    constructor(status, message, field = null) {
      super(message);
      this.status = status;
      this.field = field; // the management API names the refused field of a 400
    }
  }

  /** fetch() an admin API path; JSON in, JSON out. A 401 sends the browser to the login page. */
  async function api(path, options = {}) {
    const init = { credentials: 'same-origin', headers: { Accept: 'application/json' }, ...options };
    if (options.json !== undefined) {
      init.method = init.method || 'POST';
      init.headers = { ...init.headers, 'Content-Type': 'application/json' };
      init.body = JSON.stringify(options.json);
      delete init.json;
    }
    const res = await fetch(path, init);
    let body = null;
    const text = await res.text();
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (res.status === 401) {
      location.assign('/login');
      throw new ApiError(401, 'not signed in');
    }
    if (!res.ok) {
      const message = (body && (body.error || body.message)) || text || res.statusText;
      throw new ApiError(res.status, String(message), (body && body.field) || null);
    }
    return body;
  }

  function isAbort(err) {
    return err && err.name === 'AbortError';
  }

  // -- charts ----------------------------------------------------------------------------------

  /** A "nice" upper bound and step for a y axis that starts at 0. */
  function niceScale(max, ticks = 4) {
    if (!(max > 0)) return { max: 1, step: 0.25 };
    const raw = max / ticks;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const norm = raw / mag;
    const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * mag;
    return { max: Math.ceil(max / step) * step, step };
  }

  function fmtTick(v) {
    if (v >= 1e6) return `${nf1.format(v / 1e6)}M`;
    if (v >= 1e3) return `${nf1.format(v / 1e3)}k`;
    if (Number.isInteger(v)) return String(v);
    return nf2.format(v);
  }

  /**
   * Draw a line chart on a canvas: x is time (unix seconds) over the last `windowS` seconds
   * ending at `now`, y starts at 0. series: [{label, color, points: [[t, v|null], ...]}].
   * A null value breaks the line. Axis labels, grid lines and a legend are drawn.
   */
  function drawLineChart(canvas, { series, now, windowS = WINDOW_S, unit = '' }) {
    const dpr = window.devicePixelRatio || 1;
    const cssW = canvas.clientWidth || 400;
    const cssH = canvas.clientHeight || 200;
    if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
      canvas.width = Math.round(cssW * dpr);
      canvas.height = Math.round(cssH * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const font = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
    ctx.font = font;

    const t1 = now;
    const t0 = now - windowS;
    let max = 0;
    for (const s of series) {
      for (const [t, v] of s.points) if (t >= t0 && v !== null && v > max) max = v;
    }
    const { max: yMax, step } = niceScale(max);
    let labelW = 0;
    for (let v = 0; v <= yMax + step / 2; v += step) {
      labelW = Math.max(labelW, ctx.measureText(fmtTick(v) + unit).width);
    }
    const pad = { left: Math.ceil(labelW) + 12, right: 12, top: 26, bottom: 24 };
    const w = cssW - pad.left - pad.right;
    const h = cssH - pad.top - pad.bottom;
    const x = (t) => pad.left + ((t - t0) / windowS) * w;
    const y = (v) => pad.top + h - (v / yMax) * h;

    // grid and y labels
    ctx.strokeStyle = '#e3e6ea';
    ctx.fillStyle = '#57606a';
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let v = 0; v <= yMax + step / 2; v += step) {
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.left, yy);
      ctx.lineTo(pad.left + w, yy);
      ctx.stroke();
      ctx.fillText(fmtTick(v) + unit, pad.left - 6, yy);
    }
    // x labels: every 3 minutes, aligned to the clock
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    const every = 180;
    for (let t = Math.ceil(t0 / every) * every; t <= t1; t += every) {
      const xx = Math.round(x(t)) + 0.5;
      ctx.strokeStyle = '#eef0f2';
      ctx.beginPath();
      ctx.moveTo(xx, pad.top);
      ctx.lineTo(xx, pad.top + h);
      ctx.stroke();
      const d = new Date(t * 1000);
      const label = `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
      ctx.fillText(label, xx, pad.top + h + 6);
    }
    // axes
    ctx.strokeStyle = '#8c959f';
    ctx.beginPath();
    ctx.moveTo(pad.left + 0.5, pad.top);
    ctx.lineTo(pad.left + 0.5, pad.top + h + 0.5);
    ctx.lineTo(pad.left + w, pad.top + h + 0.5);
    ctx.stroke();

    // series
    ctx.save();
    ctx.beginPath();
    ctx.rect(pad.left, pad.top - 2, w + 2, h + 4);
    ctx.clip();
    let any = false;
    for (const s of series) {
      ctx.strokeStyle = s.color;
      ctx.fillStyle = s.color;
      ctx.lineWidth = 2;
      ctx.lineJoin = 'round';
      let drawing = false;
      let runLength = 0;
      let last = null;
      ctx.beginPath();
      for (const [t, v] of s.points) {
        if (t < t0 - 5 || v === null || v === undefined) {
          if (runLength === 1 && last) ctx.fillRect(last[0] - 1.5, last[1] - 1.5, 3, 3);
          drawing = false;
          runLength = 0;
          continue;
        }
        any = true;
        const px = x(t);
        const py = y(v);
        if (drawing) ctx.lineTo(px, py);
        else ctx.moveTo(px, py);
        drawing = true;
        runLength += 1;
        last = [px, py];
      }
      ctx.stroke();
      if (runLength === 1 && last) ctx.fillRect(last[0] - 2, last[1] - 2, 4, 4);
    }
    ctx.restore();

    if (!any) {
      ctx.fillStyle = '#8c959f';
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText('no data yet', pad.left + w / 2, pad.top + h / 2);
    }

    // legend: colour swatch, label, latest value
    ctx.textAlign = 'left';
    ctx.textBaseline = 'middle';
    let lx = pad.left;
    for (const s of series) {
      const latest = [...s.points].reverse().find((p) => p[1] !== null && p[1] !== undefined);
      const text = `${s.label}${latest ? `: ${fmtTick(Math.round(latest[1] * 100) / 100)}${unit}` : ''}`;
      ctx.fillStyle = s.color;
      ctx.fillRect(lx, 8, 12, 4);
      ctx.fillStyle = '#24292f';
      ctx.fillText(text, lx + 16, 10);
      lx += 16 + ctx.measureText(text).width + 18;
    }
    canvas.textContent = series.map((s) => s.label).join(', ');
  }

  // -- header ----------------------------------------------------------------------------------

  function showNode(node) {
    if (!node) return;
    setText('node-id', node.id || '–');
    setText('node-version', node.version || '–');
    const region = node.region || '';
    $('node-region-wrap').hidden = !region;
    setText('node-region', region);
    document.title = `${node.id} · Ressonance dashboard`;
  }

  // -- overview --------------------------------------------------------------------------------

  const overview = { timer: null, lastData: null, inflight: false };

  function stopOverview() {
    clearTimeout(overview.timer);
    overview.timer = null;
  }

  async function pollOverview() {
    if (overview.inflight) return;
    overview.inflight = true;
    const started = Date.now();
    try {
      const data = await api('/api/overview');
      overview.lastData = data;
      renderOverview(data);
      banner(null);
    } catch (err) {
      if (err.status !== 401) {
        banner(`Cannot load the overview: ${err.message}. Retrying…`);
      }
    } finally {
      overview.inflight = false;
      // every OVERVIEW_POLL_MS from the start of one request to the next, not after it
      const delay = Math.max(0, OVERVIEW_POLL_MS - (Date.now() - started));
      if (route.view === 'overview') overview.timer = setTimeout(pollOverview, delay);
    }
  }

  function renderOverview(data) {
    showNode(data.node);
    const c = data.cluster || {};
    const mIn = c.messages_in_per_s || 0;
    const mOut = c.messages_out_per_s || 0;
    const metric = (name) => document.querySelector(`[data-metric="${name}"]`);
    setText(metric('connections'), nf0.format(c.connections ?? 0));
    setText(metric('nodes'), nf0.format(c.nodes ?? (data.nodes || []).length));
    const mps = metric('messages-per-second');
    setText(mps, fmtRate(mIn + mOut));
    mps.title = `Messages per second, in + out, cluster-wide (in ${fmtRate(mIn)}, out ${fmtRate(mOut)})`;
    setText('messages-split', `in ${fmtRate(mIn)} · out ${fmtRate(mOut)}`);
    setText(metric('errors-per-second'), fmtRate(c.errors_per_s ?? 0));
    setText(metric('latency-p50'), fmtMs(c.latency_p50_ms));
    setText(metric('latency-p99'), fmtMs(c.latency_p99_ms));
    setText('overview-updated', `updated ${fmtTime(Date.now() / 1000)} · every ${OVERVIEW_POLL_MS / 1000} s`);

    renderRegions(c.regions || {});
    renderNodes(data.nodes || []);
    drawOverviewCharts(data.history || []);
  }

  function drawOverviewCharts(history) {
    const now = history.length ? history[history.length - 1].t : Date.now() / 1000;
    const pts = (key) => history.map((p) => [p.t, p[key] === undefined ? null : p[key]]);
    drawLineChart($('chart-connections'), {
      now,
      series: [{ label: 'connections', color: '#1f6feb', points: pts('connections') }],
    });
    drawLineChart($('chart-messages'), {
      now,
      series: [
        { label: 'in', color: '#1a7f37', points: pts('messages_in_per_s') },
        { label: 'out', color: '#8250df', points: pts('messages_out_per_s') },
      ],
    });
    drawLineChart($('chart-errors'), {
      now,
      series: [{ label: 'errors/s', color: '#cf222e', points: pts('errors_per_s') }],
    });
    drawLineChart($('chart-latency'), {
      now,
      unit: ' ms',
      series: [
        { label: 'p50', color: '#0969da', points: pts('latency_p50_ms') },
        { label: 'p99', color: '#bc4c00', points: pts('latency_p99_ms') },
      ],
    });
  }

  function renderRegions(regions) {
    const tbody = $('regions-table').tBodies[0];
    const entries = Object.entries(regions).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    const total = entries.reduce((sum, [, n]) => sum + n, 0);
    const rows = entries.map(([region, n]) => {
      const tr = el('tr');
      cell(tr, region || '(no region)', region ? '' : 'muted');
      cell(tr, nf0.format(n), 'num');
      const td = cell(tr, '', 'bar-col');
      const bar = el('div', null, { className: 'bar' });
      bar.style.width = `${total ? Math.max(2, (100 * n) / total) : 0}%`;
      td.append(bar);
      tr.dataset.region = region;
      return tr;
    });
    if (!rows.length) {
      const tr = el('tr');
      cell(tr, 'no connections', 'muted').colSpan = 3;
      rows.push(tr);
    }
    tbody.replaceChildren(...rows);
  }

  function renderNodes(nodes) {
    const tbody = $('nodes-table').tBodies[0];
    const sorted = [...nodes].sort((a, b) => String(a.id).localeCompare(String(b.id)));
    tbody.replaceChildren(
      ...sorted.map((n) => {
        const tr = el('tr');
        tr.dataset.node = n.id;
        const idCell = cell(tr, n.id, 'mono');
        if (n.self) idCell.append(' ', el('span', 'this node', { className: 'badge' }));
        cell(tr, n.region || '–', n.region ? '' : 'muted');
        cell(tr, nf0.format(n.connections ?? 0), 'num');
        cell(tr, `${fmtRate(n.messages_in_per_s)} · ${fmtRate(n.messages_out_per_s)}`, 'num');
        cell(tr, n.cpu_percent === null || n.cpu_percent === undefined ? '–' : `${nf1.format(n.cpu_percent)} %`, 'num');
        cell(tr, fmtBytes(n.rss_bytes), 'num');
        const link = cell(tr, '');
        link.append(el('span', n.broker_up ? 'up' : 'down', { className: n.broker_up ? 'status ok' : 'status bad' }));
        cell(tr, fmtDuration(n.uptime_s), 'num');
        const drain = cell(tr, '');
        drain.append(el('span', n.draining ? 'draining' : 'no', { className: n.draining ? 'status warn' : 'muted' }));
        return tr;
      }),
    );
  }

  // -- apps ------------------------------------------------------------------------------------

  const apps = { timer: null, manageable: false };

  function stopApps() {
    clearTimeout(apps.timer);
    apps.timer = null;
  }

  async function pollApps() {
    try {
      const [data, managed] = await Promise.all([
        api('/api/apps'),
        api(MANAGE).catch((err) => {
          if (err.status === 404) return null; // no management API on this server
          throw err;
        }),
      ]);
      apps.manageable = managed !== null;
      $('app-new').hidden = !apps.manageable;
      const records = new Map(((managed && managed.apps) || []).map((r) => [r.id, r]));
      renderApps(data.apps || [], records);
      banner(null);
    } catch (err) {
      if (err.status !== 401) banner(`Cannot load the apps: ${err.message}. Retrying…`);
    } finally {
      if (route.view === 'apps') apps.timer = setTimeout(pollApps, APPS_POLL_MS);
    }
  }

  function appLink(id, tab, text) {
    const suffix = tab && tab !== 'details' ? `/${tab}` : '';
    return el('a', text, { href: `#/apps/${encodeURIComponent(id)}${suffix}` });
  }

  function renderApps(list, records) {
    const tbody = $('apps-table').tBodies[0];
    $('apps-empty').hidden = list.length > 0;
    setText('apps-updated', `updated ${fmtTime(Date.now() / 1000)}`);
    tbody.replaceChildren(
      ...list.map((a) => {
        const tr = el('tr');
        tr.dataset.app = a.id;
        const idCell = cell(tr, '');
        idCell.append(appLink(a.id, 'details', a.id));
        const record = records.get(a.id);
        if (record && record.name) idCell.append(el('div', record.name, { className: 'muted app-name' }));
        cell(tr, a.key, 'mono');
        const st = cell(tr, '');
        st.append(el('span', a.enabled ? 'enabled' : 'disabled', { className: a.enabled ? 'status ok' : 'status muted-status' }));
        if (record && record.read_only) {
          const where = record.source === 'development' ? 'development' : 'configuration file';
          st.append(' ', el('span', where, { className: 'badge', title: `From the ${where}: read-only` }));
        }
        cell(tr, nf0.format(a.connections ?? 0), 'num');
        cell(tr, fmtRate(a.messages_per_s), 'num');
        cell(tr, nf0.format(a.channels ?? 0), 'num');
        const tools = cell(tr, '', 'tools');
        tools.append(appLink(a.id, 'debug', 'Debug console'), ' ', appLink(a.id, 'publish', 'Event creator'));
        if (record) tools.append(' ', appLink(a.id, 'settings', 'Settings'));
        tr.addEventListener('click', (ev) => {
          if (ev.target.closest('a')) return;
          location.hash = `#/apps/${encodeURIComponent(a.id)}`;
        });
        return tr;
      }),
    );
  }

  // -- one app: details ------------------------------------------------------------------------

  const detail = { timer: null, collapsed: new Set() }; // presence channels the operator closed

  function stopDetail() {
    clearTimeout(detail.timer);
    detail.timer = null;
  }

  async function pollDetail() {
    const appId = route.appId;
    try {
      const data = await api(`/api/apps/${encodeURIComponent(appId)}`);
      if (route.appId === appId) renderDetail(data);
      banner(null);
    } catch (err) {
      if (err.status === 404) banner(`There is no app ${appId}.`);
      else if (err.status !== 401) banner(`Cannot load app ${appId}: ${err.message}. Retrying…`);
    } finally {
      if (route.view === 'app' && route.appId === appId) {
        detail.timer = setTimeout(pollDetail, APPS_POLL_MS);
      }
    }
  }

  function renderDetail(data) {
    const a = data.app || {};
    const status = $('app-status');
    status.textContent = a.enabled ? 'enabled' : 'disabled';
    status.className = a.enabled ? 'badge ok' : 'badge';
    setText('app-key', a.key ?? '–');
    setText('app-connections', nf0.format(a.connections ?? 0));
    setText('app-mps', fmtRate(a.messages_per_s));
    setText('app-channels', nf0.format(a.channels ?? 0));
    if (route.tab !== 'details') return;

    const channels = [...(data.channels || [])].sort((x, y) => String(x.name).localeCompare(String(y.name)));
    $('channels-empty').hidden = channels.length > 0;
    $('channels-table').tBodies[0].replaceChildren(
      ...channels.map((ch) => {
        const tr = el('tr');
        tr.dataset.channel = ch.name;
        cell(tr, ch.name, 'mono');
        cell(tr, nf0.format(ch.subscription_count ?? 0), 'num');
        cell(tr, ch.user_count === null || ch.user_count === undefined ? '–' : nf0.format(ch.user_count), 'num');
        return tr;
      }),
    );

    const members = Object.entries(data.members || {}).sort((x, y) => x[0].localeCompare(y[0]));
    $('members-empty').hidden = members.length > 0;
    $('members').replaceChildren(
      ...members.map(([channel, users]) => {
        const box = el('details');
        box.open = !detail.collapsed.has(channel);
        box.addEventListener('toggle', () => {
          if (box.open) detail.collapsed.delete(channel);
          else detail.collapsed.add(channel);
        });
        box.append(el('summary', `${channel} (${users.length})`));
        const ul = el('ul', null, { className: 'members' });
        for (const user of users) ul.append(el('li', user, { className: 'mono' }));
        box.append(ul);
        return box;
      }),
    );

    const errors = [...(data.errors || [])].reverse(); // newest first
    $('errors-empty').hidden = errors.length > 0;
    $('errors-table').tBodies[0].replaceChildren(
      ...errors.map((e) => {
        const tr = el('tr');
        cell(tr, fmtTime(e.t));
        cell(tr, e.node ?? '–', 'mono');
        cell(tr, e.socket_id ?? '–', 'mono');
        cell(tr, e.code ?? '–', 'num');
        cell(tr, e.message ?? '');
        return tr;
      }),
    );
  }

  // -- one app: debug console ------------------------------------------------------------------

  const debug = {
    appId: null,
    controller: null,
    events: [],
    pending: [],
    paused: false,
    dropped: 0,
    after: 0,
  };

  function buildKindFilters() {
    const box = $('debug-kinds');
    for (const kind of KINDS) {
      const label = el('label', null, { className: `kind kind-${kind}` });
      const box1 = el('input', null, { type: 'checkbox', value: kind, 'data-kind': kind });
      box1.checked = true;
      box1.addEventListener('change', renderDebug);
      label.append(box1, ` ${kind.replace('_', ' ')}`);
      box.append(label);
    }
  }

  function debugFilter() {
    const kinds = new Set(
      [...document.querySelectorAll('#debug-kinds input:checked')].map((i) => i.value),
    );
    const channel = $('debug-channel').value.trim().toLowerCase();
    const text = $('debug-text').value.trim().toLowerCase();
    return (e) => {
      if (!kinds.has(e.kind)) return false;
      if (channel && !String(e.channel || '').toLowerCase().includes(channel)) return false;
      if (text) {
        const hay = [e.event, e.data, e.socket_id, e.message, e.channel, e.node, e.code]
          .filter((v) => v !== null && v !== undefined)
          .join('\n')
          .toLowerCase();
        if (!hay.includes(text)) return false;
      }
      return true;
    };
  }

  function debugRow(e) {
    const tr = el('tr', null, { className: `kind-${e.kind}` });
    tr.dataset.seq = e.seq;
    tr.dataset.kind = e.kind;
    cell(tr, fmtTime(e.t, true), 'mono nowrap');
    cell(tr, e.node ?? '', 'mono');
    const kindCell = cell(tr, '');
    kindCell.append(el('span', e.kind, { className: `kind-tag kind-${e.kind}` }));
    cell(tr, e.channel ?? '', 'mono');
    cell(tr, e.event ?? '', 'mono');
    cell(tr, e.socket_id ?? '', 'mono nowrap');
    const details = cell(tr, '', 'details');
    if (e.kind === 'error' || e.code !== null || e.message !== null) {
      const parts = [];
      if (e.code !== null && e.code !== undefined) parts.push(`code ${e.code}`);
      if (e.message) parts.push(e.message);
      // a webhook's attempt: red only when it failed (retried or dead)
      const failed = e.kind !== 'webhook' || !String(e.message).startsWith('delivered');
      const style = failed ? 'error-text' : 'data';
      if (parts.length) details.append(el('div', parts.join(': '), { className: style }));
    }
    if (e.data !== null && e.data !== undefined) {
      let shown = String(e.data);
      try {
        shown = JSON.stringify(JSON.parse(shown), null, 1).replace(/\n\s*/g, ' ');
      } catch {
        // not JSON: show as is
      }
      if (shown.length > 2000) shown = `${shown.slice(0, 2000)}… (${shown.length} characters)`;
      details.append(el('code', shown, { className: 'data' }));
    }
    return tr;
  }

  function renderDebug() {
    const keep = debugFilter();
    const shown = [];
    for (let i = debug.events.length - 1; i >= 0 && shown.length < DEBUG_ROWS; i -= 1) {
      if (keep(debug.events[i])) shown.push(debug.events[i]);
    }
    $('debug-table').tBodies[0].replaceChildren(...shown.map(debugRow));
    updateDebugStatus(shown.length);
  }

  function updateDebugStatus(shownCount) {
    if (shownCount === undefined) shownCount = $('debug-table').tBodies[0].rows.length;
    setText('debug-shown', nf0.format(shownCount));
    setText('debug-total', nf0.format(debug.events.length));
    setText('debug-dropped', nf0.format(debug.dropped));
    $('debug-empty').hidden = debug.events.length > 0;
    const pending = $('debug-pending');
    pending.hidden = !debug.pending.length;
    pending.textContent = `${debug.pending.length} new while paused`;
    const state = $('debug-state');
    state.textContent = debug.paused ? 'paused' : 'live';
    state.className = debug.paused ? 'paused' : 'live';
    $('debug-pause').textContent = debug.paused ? 'Resume' : 'Pause';
  }

  function addDebugEvents(list) {
    if (!list.length) return;
    debug.events.push(...list);
    if (debug.events.length > DEBUG_KEEP) debug.events.splice(0, debug.events.length - DEBUG_KEEP);
    const keep = debugFilter();
    const tbody = $('debug-table').tBodies[0];
    for (const e of list) {
      if (keep(e)) tbody.insertBefore(debugRow(e), tbody.firstChild);
    }
    while (tbody.rows.length > DEBUG_ROWS) tbody.deleteRow(tbody.rows.length - 1);
    updateDebugStatus();
  }

  function startDebug(appId) {
    if (debug.appId === appId && debug.controller) return;
    stopDebug();
    debug.appId = appId;
    debug.events = [];
    debug.pending = [];
    debug.dropped = 0;
    debug.after = 0;
    debug.paused = false;
    renderDebug();
    const controller = new AbortController();
    debug.controller = controller;
    debugLoop(appId, controller.signal);
  }

  function stopDebug() {
    if (debug.controller) debug.controller.abort();
    debug.controller = null;
    debug.appId = null;
  }

  async function debugLoop(appId, signal) {
    let failures = 0;
    while (!signal.aborted) {
      try {
        const path = `/api/apps/${encodeURIComponent(appId)}/events?after=${debug.after}&wait=${DEBUG_WAIT_S}`;
        const data = await api(path, { signal });
        if (signal.aborted) return;
        failures = 0;
        banner(null);
        if (typeof data.next === 'number') debug.after = data.next;
        debug.dropped += data.dropped || 0;
        const events = data.events || [];
        if (debug.paused) {
          debug.pending.push(...events);
          updateDebugStatus();
        } else {
          addDebugEvents(events);
          updateDebugStatus();
        }
      } catch (err) {
        if (isAbort(err) || signal.aborted || err.status === 401) return;
        failures += 1;
        banner(`Debug console: ${err.message}. Retrying…`);
        await new Promise((r) => setTimeout(r, Math.min(10000, 500 * 2 ** failures)));
      }
    }
  }

  function wireDebug() {
    buildKindFilters();
    $('debug-channel').addEventListener('input', renderDebug);
    $('debug-text').addEventListener('input', renderDebug);
    $('debug-pause').addEventListener('click', () => {
      debug.paused = !debug.paused;
      if (!debug.paused && debug.pending.length) {
        const pending = debug.pending;
        debug.pending = [];
        addDebugEvents(pending);
      }
      updateDebugStatus();
    });
    $('debug-clear').addEventListener('click', () => {
      debug.events = [];
      debug.pending = [];
      renderDebug();
    });
  }

  // -- one app: event creator ------------------------------------------------------------------

  function wirePublish() {
    const form = $('publish-form');
    const dataBox = $('publish-data');
    const jsonError = $('publish-json-error');
    const result = $('publish-result');

    function checkJson() {
      try {
        JSON.parse(dataBox.value);
        jsonError.hidden = true;
        dataBox.removeAttribute('aria-invalid');
        return true;
      } catch (err) {
        jsonError.textContent = `Data is not valid JSON: ${err.message}`;
        jsonError.hidden = false;
        dataBox.setAttribute('aria-invalid', 'true');
        return false;
      }
    }

    function showResult(ok, text) {
      result.textContent = text;
      result.className = ok ? 'result ok' : 'result bad';
      result.hidden = false;
    }

    dataBox.addEventListener('input', () => {
      if (!jsonError.hidden) checkJson();
    });
    $('publish-format').addEventListener('click', () => {
      if (checkJson()) dataBox.value = JSON.stringify(JSON.parse(dataBox.value), null, 2);
    });
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const channel = $('publish-channel').value.trim();
      const event = $('publish-event').value.trim();
      if (!channel || !event) {
        showResult(false, 'Channel and event name are required.');
        return;
      }
      if (!checkJson()) {
        showResult(false, 'Not sent: fix the JSON data first.');
        return;
      }
      const appId = route.appId;
      const button = $('publish-send');
      button.disabled = true;
      try {
        await api(`/api/apps/${encodeURIComponent(appId)}/publish`, {
          // `event` is the admin contract's field; `name` is the HTTP API's, for a backend that
          // validates the body as a Pusher trigger. Both carry the same value.
          json: { channel, event, name: event, data: dataBox.value },
        });
        showResult(true, `Sent ${event} to ${channel} at ${fmtTime(Date.now() / 1000)}.`);
        const li = el('li');
        li.append(
          el('span', fmtTime(Date.now() / 1000), { className: 'muted' }), ' ',
          el('span', channel, { className: 'mono' }), ' · ',
          el('span', event, { className: 'mono' }),
        );
        const history = $('publish-history');
        history.insertBefore(li, history.firstChild);
        while (history.children.length > 20) history.lastChild.remove();
      } catch (err) {
        if (err.status !== 401) showResult(false, `Refused (${err.status || 'network'}): ${err.message}`);
      } finally {
        button.disabled = false;
      }
    });
  }

  // -- app management: create, edit, enable/disable, rotate, delete (/api/v1/apps) -----------

  const MANAGE = '/api/v1/apps';
  // The limits and flags the forms show (docs/configuration.md, "Apps"), with their defaults
  // (empty on the create form: the server's default). `main`: on the create form itself, the
  // others under "More limits".
  const FIELDS = [
    { name: 'max_connections', label: 'Max connections', type: 'int', def: 0, main: true, help: 'simultaneous connections; 0: unlimited' },
    { name: 'max_client_events_per_second', label: 'Client events per second', type: 'int', def: 10, main: true, help: 'per connection; 0: unlimited' },
    { name: 'client_events', label: 'Client events (whisper)', type: 'bool', def: true, main: true, help: 'clients may send client-* events on private and presence channels' },
    { name: 'allowed_origins', label: 'Allowed origins', type: 'list', def: [], main: true, help: 'one per line, e.g. https://example.com; empty: any origin' },
    { name: 'max_payload_kb', label: 'Max payload (KiB)', type: 'int', def: 10 },
    { name: 'max_subscriptions_per_second', label: 'Subscriptions per second', type: 'int', def: 128, help: 'per connection; 0: unlimited' },
    { name: 'max_channels_per_connection', label: 'Channels per connection', type: 'int', def: 128, help: '0: unlimited' },
    { name: 'max_presence_members', label: 'Presence members', type: 'int', def: 100, help: 'per channel; 0: unlimited' },
    { name: 'max_presence_member_kb', label: 'Presence member info (KiB)', type: 'int', def: 1 },
    { name: 'cache_ttl', label: 'Cache channel TTL (s)', type: 'int', def: 1800, help: '0: cache channels keep nothing' },
    { name: 'subscription_count', label: 'Subscription count events', type: 'bool', def: false, help: 'tell subscribers how many there are' },
  ];
  const NAME_FIELD = { name: 'name', label: 'Name', type: 'text', help: 'for people: shown here and in the CLI' };
  const ID_FIELD = { name: 'id', label: 'App id (optional)', type: 'text', help: 'letters, digits, _ . -; generated when empty' };
  const SECRET_MASK = '••••••••••••••••';

  const manage = { record: null, pub: null, created: null, reveal: false, snippets: null, appsNotice: null };

  function appPath(id, action) {
    return `${MANAGE}/${encodeURIComponent(id)}${action ? `/${action}` : ''}`;
  }

  /** A labelled control for one field, with its help line and an (empty) error line. */
  function fieldControl(f, prefix) {
    const id = `${prefix}-${f.name}`;
    const wrap = el('div', null, { className: `field field-${f.type}` });
    wrap.dataset.field = f.name;
    let input;
    if (f.type === 'bool') {
      input = el('input', null, { type: 'checkbox', id, name: f.name });
      input.defaultChecked = Boolean(f.def);
      const label = el('label', null, { for: id, className: 'check' });
      label.append(input, ` ${f.label}`);
      wrap.append(label);
    } else {
      wrap.append(el('label', f.label, { for: id }));
      input = f.type === 'list'
        ? el('textarea', null, { id, name: f.name, rows: '3', spellcheck: 'false' })
        : el('input', null, { id, name: f.name, type: 'text', autocomplete: 'off', spellcheck: 'false' });
      if (f.type === 'int') input.setAttribute('inputmode', 'numeric');
      if (prefix === 'create' && f.def !== undefined && f.type !== 'list') input.placeholder = `default ${f.def}`;
      wrap.append(input);
    }
    const error = el('p', null, { className: 'field-error', id: `${id}-error`, 'data-error-for': f.name });
    error.hidden = true;
    if (f.help) {
      const help = el('p', f.help, { className: 'help', id: `${id}-help` });
      wrap.append(help);
      input.setAttribute('aria-describedby', `${id}-help ${id}-error`);
    } else {
      input.setAttribute('aria-describedby', `${id}-error`);
    }
    wrap.append(error);
    return wrap;
  }

  function buildForms() {
    const grid = (name) => document.querySelector(`[data-fields="${name}"]`);
    grid('create').append(
      fieldControl(NAME_FIELD, 'create'), fieldControl(ID_FIELD, 'create'),
      ...FIELDS.filter((f) => f.main).map((f) => fieldControl(f, 'create')),
    );
    grid('create-more').append(...FIELDS.filter((f) => !f.main).map((f) => fieldControl(f, 'create')));
    // the numbers, then the switches side by side, then the origins' full-width box
    const rank = { int: 0, bool: 1, list: 2 };
    const ordered = [...FIELDS].sort((a, b) => rank[a.type] - rank[b.type]);
    grid('edit').append(fieldControl(NAME_FIELD, 'edit'), ...ordered.map((f) => fieldControl(f, 'edit')));
  }

  /** A field's value as the API takes it; an int that is not one goes as typed (the server
   * names the problem). */
  function readField(form, f) {
    const input = form.elements[f.name];
    if (f.type === 'bool') return input.checked;
    const text = input.value.trim();
    if (f.type === 'list') return text.split(/[\s,]+/).filter(Boolean);
    if (f.type === 'int' && /^-?\d{1,15}$/.test(text)) return Number(text);
    return text;
  }

  function writeField(form, f, value) {
    const input = form.elements[f.name];
    if (f.type === 'bool') input.checked = Boolean(value);
    else if (f.type === 'list') input.value = (value || []).join('\n');
    else input.value = value ?? '';
  }

  function sameValue(a, b) {
    return JSON.stringify(a) === JSON.stringify(b);
  }

  function clearErrors(form) {
    for (const p of form.querySelectorAll('.field-error, .form-error')) {
      p.hidden = true;
      p.textContent = '';
    }
    for (const i of form.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
  }

  function errorText(err) {
    if (!err.status) return `The server cannot be reached (${err.message}).`;
    return err.message;
  }

  /** An API error next to its field when the answer names one the form has, else under it. */
  function showFormError(form, err) {
    const box = err.field ? form.querySelector(`[data-error-for="${CSS.escape(err.field)}"]`) : null;
    if (box) {
      box.textContent = err.message;
      box.hidden = false;
      const input = form.elements[err.field];
      if (input) {
        input.setAttribute('aria-invalid', 'true');
        const more = input.closest('details');
        if (more) more.open = true;
        input.focus();
      }
      return;
    }
    const general = form.querySelector('.form-error');
    general.textContent = errorText(err);
    general.hidden = false;
  }

  function showMessage(id, text) {
    const p = $(id);
    p.textContent = text || '';
    p.hidden = !text;
  }

  /** A modal confirmation; with `typed`, the operator must type that text first. */
  function confirmDialog({ title, message, confirm, danger = false, typed = null }) {
    const dialog = $('confirm-dialog');
    const ok = $('confirm-ok');
    const input = $('confirm-typed');
    setText('confirm-title', title);
    setText('confirm-message', message);
    ok.textContent = confirm;
    ok.value = 'ok';
    ok.className = danger ? 'danger' : 'primary';
    $('confirm-typed-wrap').hidden = !typed;
    setText('confirm-expected', typed || '');
    input.value = '';
    ok.disabled = Boolean(typed);
    const onInput = () => {
      ok.disabled = input.value.trim() !== typed;
    };
    input.addEventListener('input', onInput);
    dialog.returnValue = '';
    dialog.showModal();
    (typed ? input : $('confirm-cancel')).focus();
    return new Promise((resolve) => {
      dialog.addEventListener('close', () => {
        input.removeEventListener('input', onInput);
        resolve(dialog.returnValue === 'ok');
      }, { once: true });
    });
  }

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        return true;
      } catch {
        // blocked: try the selection below
      }
    }
    const area = el('textarea', null, { className: 'offscreen', readonly: '' });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }

  // where clients connect: the public listener's host (or this page's, when it listens on every
  // interface) and port, from /api/overview
  async function publicAddress() {
    if (!overview.lastData || !overview.lastData.public) {
      try {
        overview.lastData = await api('/api/overview');
      } catch {
        // the snippets say the port is unknown
      }
    }
    const pub = (overview.lastData && overview.lastData.public) || {};
    return { host: pub.host || location.hostname, port: pub.port ?? null, ownHost: !pub.host };
  }

  function jsString(s) {
    return `'${String(s).replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  }

  /** The Laravel .env block (as `ressonance serve` prints for the development app) and a
   * pusher-js constructor, for one app. */
  function connectSnippets(record, pub) {
    const port = pub.port ?? '6001';
    const env = [
      'BROADCAST_CONNECTION=pusher',
      `PUSHER_APP_ID=${record.id}`,
      `PUSHER_APP_KEY=${record.key}`,
      `PUSHER_APP_SECRET=${record.secret}`,
      `PUSHER_HOST=${pub.host}`,
      `PUSHER_PORT=${port}`,
      'PUSHER_SCHEME=http',
      'PUSHER_APP_CLUSTER=mt1',
      'VITE_PUSHER_APP_KEY="${PUSHER_APP_KEY}"',
      'VITE_PUSHER_HOST="${PUSHER_HOST}"',
      'VITE_PUSHER_PORT="${PUSHER_PORT}"',
      'VITE_PUSHER_SCHEME="${PUSHER_SCHEME}"',
      'VITE_PUSHER_APP_CLUSTER="${PUSHER_APP_CLUSTER}"',
    ].join('\n');
    const js = [
      `const pusher = new Pusher(${jsString(record.key)}, {`,
      `  wsHost: ${jsString(pub.host)},`,
      `  wsPort: ${Number(port)},`,
      '  forceTLS: false,',
      "  enabledTransports: ['ws', 'wss'],",
      "  cluster: 'mt1',",
      '});',
    ].join('\n');
    return { env, js };
  }

  function fmtDate(t) {
    if (!t) return '–';
    return new Date(t * 1000).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  }

  function renderKeys(record) {
    const now = Date.now() / 1000;
    $('keys-table').tBodies[0].replaceChildren(
      ...(record.keys || []).map((k, i) => {
        const tr = el('tr');
        tr.dataset.key = k.key;
        const keyCell = cell(tr, k.key, 'mono');
        keyCell.append(' ', el('span', i === 0 ? 'current' : 'previous', { className: i === 0 ? 'badge ok' : 'badge' }));
        cell(tr, manage.reveal ? k.secret : SECRET_MASK, manage.reveal ? 'mono secret' : 'mono nowrap');
        cell(tr, fmtDate(k.created_at), k.created_at ? 'nowrap' : 'muted');
        if (k.expires_at === null || k.expires_at === undefined) {
          cell(tr, i === 0 ? 'until the next rotation' : 'no end', 'muted');
        } else {
          cell(tr, `${fmtDate(k.expires_at)} (in ${fmtDuration(k.expires_at - now)})`, 'warn-text nowrap');
        }
        return tr;
      }),
    );
  }

  function renderSnippets() {
    const s = manage.snippets;
    if (!s) return;
    const env = manage.reveal ? s.env : s.env.replace(/^(PUSHER_APP_SECRET=).*$/m, `$1${SECRET_MASK}`);
    setText('snippet-env', env);
    setText('snippet-js', s.js);
  }

  /** Show one app's record; `fresh` refills the edit form (a load, a save, an undo); `pub`:
   * where clients connect (kept for later calls). */
  function renderSettings(record, pub, fresh) {
    manage.record = record;
    const readOnly = Boolean(record.read_only);
    $('settings-loading').hidden = true;
    $('settings-body').hidden = false;
    const note = $('settings-readonly');
    note.hidden = !readOnly;
    note.textContent = record.source === 'development'
      ? 'The development app (nothing is configured or stored): read-only. Create your own app on the Apps page.'
      : 'From the configuration file: read-only. Change this app in the TOML file or the RESSONANCE_APP_* variables and restart the server.';
    $('edit-fields').disabled = readOnly;
    for (const id of ['toggle-enabled', 'delete-app', 'rotate-grace', 'rotate-submit']) $(id).disabled = readOnly;

    const status = $('settings-status');
    status.textContent = record.enabled ? 'enabled' : 'disabled';
    status.className = record.enabled ? 'status ok' : 'status muted-status';
    setText('settings-status-help', record.enabled
      ? 'Disabling closes its connections (code 4003) on every node and refuses new ones and its HTTP API calls.'
      : 'Its connections and HTTP API calls are refused until you enable it.');
    $('toggle-enabled').textContent = record.enabled ? 'Disable app…' : 'Enable app…';
    $('toggle-enabled').className = record.enabled ? 'danger-outline' : 'primary';
    const header = $('app-status');
    header.textContent = record.enabled ? 'enabled' : 'disabled';
    header.className = record.enabled ? 'badge ok' : 'badge';
    setText('app-name', record.name ? `· ${record.name}` : '');
    setText('app-key', record.key);

    if (fresh) {
      const form = $('edit-form');
      clearErrors(form);
      writeField(form, NAME_FIELD, record.name);
      for (const f of FIELDS) writeField(form, f, record[f.name]);
      setText('edit-state', '');
    }
    renderKeys(record);
    renderWebhooks(record);
    if (pub) manage.pub = pub;
    pub = manage.pub;
    if (pub) {
      manage.snippets = connectSnippets(record, pub);
      setText('connect-help', pub.ownHost
        ? `Host: ${pub.host}, the address of this page (the server listens on every interface); port ${pub.port ?? 'unknown'}. Behind a proxy or load balancer, use its public host, port and scheme.`
        : `Host ${pub.host}, port ${pub.port ?? 'unknown'}: the server's public listener. Behind a proxy or load balancer, use its public host, port and scheme.`);
    }
    renderSnippets();

    const created = manage.created === record.id;
    $('settings-created').hidden = !created;
    if (created) {
      setText('created-id', record.id);
      setText('created-key', record.key);
      setText('created-secret', record.secret);
    }
  }

  async function loadSettings(appId) {
    $('settings-loading').hidden = false;
    $('settings-body').hidden = true;
    showMessage('settings-error', null);
    showMessage('settings-notice', null);
    try {
      const [record, pub] = await Promise.all([api(appPath(appId)), publicAddress()]);
      if (route.appId === appId && route.tab === 'settings') {
        renderSettings(record, pub, true);
        loadDeadLetters(appId);
      }
    } catch (err) {
      if (err.status === 401 || route.appId !== appId) return;
      $('settings-loading').hidden = true;
      showMessage('settings-error', err.status === 404
        ? `There is no app ${appId} (or no app store on this server).`
        : `Cannot load the app's settings: ${errorText(err)}`);
    }
  }

  /** Run one change of the current app; its answer (the app record) is shown. */
  async function change(button, errorBox, request, done) {
    const appId = manage.record.id;
    button.disabled = true;
    showMessage(errorBox, null);
    showMessage('settings-notice', null);
    try {
      const record = await request(appId);
      if (route.appId !== appId) return;
      manage.created = null; // after a rotation the creation's credentials are not the app's
      if (record) renderSettings(record, null, false);
      showMessage('settings-notice', done(record));
    } catch (err) {
      if (err.status !== 401) showMessage(errorBox, errorText(err));
    } finally {
      button.disabled = Boolean(manage.record && manage.record.read_only);
    }
  }

  function wireManage() {
    buildForms();
    const createForm = $('create-form');
    const panel = $('create-panel');
    const openCreate = (open) => {
      panel.hidden = !open;
      $('app-new').setAttribute('aria-expanded', String(open));
      if (open) createForm.elements.name.focus();
    };
    $('app-new').addEventListener('click', () => openCreate(panel.hidden));
    $('create-cancel').addEventListener('click', () => {
      createForm.reset();
      clearErrors(createForm);
      openCreate(false);
    });
    createForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors(createForm);
      const body = { name: createForm.elements.name.value.trim() };
      const id = createForm.elements.id.value.trim();
      if (id) body.id = id;
      for (const f of FIELDS) {
        const value = readField(createForm, f);
        if (value === '' || (f.type !== 'int' && sameValue(value, f.def))) continue; // the default
        body[f.name] = value;
      }
      const button = $('create-submit');
      button.disabled = true;
      try {
        const record = await api(MANAGE, { json: body });
        createForm.reset();
        openCreate(false);
        manage.created = record.id;
        location.hash = `#/apps/${encodeURIComponent(record.id)}/settings`;
      } catch (err) {
        if (err.status !== 401) showFormError(createForm, err);
      } finally {
        button.disabled = false;
      }
    });

    const editForm = $('edit-form');
    editForm.addEventListener('input', () => setText('edit-state', 'unsaved changes'));
    $('edit-reset').addEventListener('click', () => renderSettings(manage.record, null, true));
    editForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors(editForm);
      const record = manage.record;
      const changes = {};
      for (const f of [NAME_FIELD, ...FIELDS]) {
        const value = readField(editForm, f);
        if (!sameValue(value, record[f.name])) changes[f.name] = value;
      }
      const names = Object.keys(changes);
      if (!names.length) {
        setText('edit-state', 'nothing to save');
        return;
      }
      const button = $('edit-save');
      button.disabled = true;
      showMessage('settings-notice', null);
      try {
        const saved = await api(appPath(record.id), { method: 'PATCH', json: changes });
        renderSettings(saved, null, true);
        setText('edit-state', `saved ${fmtTime(Date.now() / 1000)}`);
        showMessage('settings-notice', `Saved ${names.join(', ')}: every node applies it within a second.`);
      } catch (err) {
        if (err.status !== 401) showFormError(editForm, err);
      } finally {
        button.disabled = false;
      }
    });

    $('toggle-enabled').addEventListener('click', async () => {
      const { id, enabled } = manage.record;
      const ok = await confirmDialog(enabled
        ? {
          title: `Disable app ${id}?`,
          message: 'Its open connections are closed (code 4003) on every node; new connections and its HTTP API calls are refused until you enable it again.',
          confirm: 'Disable',
          danger: true,
        }
        : {
          title: `Enable app ${id}?`,
          message: 'Clients can connect again and its HTTP API calls are accepted.',
          confirm: 'Enable',
        });
      if (!ok) return;
      await change($('toggle-enabled'), 'actions-error',
        (appId) => api(appPath(appId, enabled ? 'disable' : 'enable'), { method: 'POST' }),
        () => (enabled ? 'Disabled: its connections were closed.' : 'Enabled: clients can connect.'));
    });

    $('rotate-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const select = $('rotate-grace');
      const grace = select.value;
      const label = select.selectedOptions[0].textContent;
      const ok = await confirmDialog({
        title: `Rotate the secret of ${manage.record.id}?`,
        message: grace === '0'
          ? 'A new key and secret are made and the current ones stop working at once: clients and backends still using them are refused.'
          : `A new key and secret are made; the current pair keeps working for ${label}, time to deploy the new one everywhere.`,
        confirm: 'Rotate',
        danger: grace === '0',
      });
      if (!ok) return;
      await change($('rotate-submit'), 'rotate-error',
        (appId) => api(appPath(appId, 'rotate-secret'), { json: { grace } }),
        (record) => `New key ${record.key}: update your .env and clients (the Connect blocks below have it).`);
    });

    $('delete-app').addEventListener('click', async () => {
      const { id } = manage.record;
      const ok = await confirmDialog({
        title: `Delete app ${id}?`,
        message: 'It is removed from the store at once: its connections are closed (code 4003) on every node and its key and secret stop working. This cannot be undone.',
        confirm: 'Delete app',
        danger: true,
        typed: id,
      });
      if (!ok) return;
      await change($('delete-app'), 'actions-error', (appId) => api(appPath(appId), { method: 'DELETE' }), () => '');
      if (!$('actions-error').hidden) return;
      manage.appsNotice = `App ${id} deleted.`;
      location.hash = '#/apps';
    });

    $('secrets-toggle').addEventListener('click', (ev) => {
      manage.reveal = !manage.reveal;
      ev.currentTarget.textContent = manage.reveal ? 'Hide secrets' : 'Show secrets';
      ev.currentTarget.setAttribute('aria-pressed', String(manage.reveal));
      if (manage.record) renderKeys(manage.record);
      renderSnippets();
    });
    for (const button of document.querySelectorAll('[data-copy]')) {
      button.addEventListener('click', async () => {
        const which = button.dataset.copy;
        const text = manage.snippets && manage.snippets[which];
        if (!text) return;
        const ok = await copyText(text);
        setText('copy-status', ok
          ? `Copied the ${which === 'env' ? '.env block' : 'pusher-js snippet'}${which === 'env' ? ' (with the secret)' : ''}.`
          : 'This browser refused to copy: show the secrets, select the text and copy it by hand.');
        button.textContent = ok ? 'Copied' : 'Copy';
        setTimeout(() => {
          button.textContent = 'Copy';
        }, 2000);
      });
    }
    $('confirm-cancel').addEventListener('click', () => $('confirm-dialog').close('cancel'));
  }

  // -- webhooks and dead letters (Settings tab; docs/webhooks.md) --------------------------------

  const DEAD_LETTERS = '/api/v1/dead-letters';
  // the event types a webhook may ask for (models.WEBHOOK_EVENTS)
  const WEBHOOK_EVENTS = [
    'channel_occupied', 'channel_vacated', 'member_added', 'member_removed', 'client_event',
    'cache_miss', 'subscription_count',
  ];

  function filterText(hook) {
    const f = hook.filter || {};
    const parts = [];
    if (f.channel_name_starts_with) parts.push(`starts with “${f.channel_name_starts_with}”`);
    if (f.channel_name_ends_with) parts.push(`ends with “${f.channel_name_ends_with}”`);
    return parts.join(', ');
  }

  function tags(td, names) {
    for (const name of names) td.append(el('span', name, { className: 'tag' }));
  }

  /** The app's webhooks: URL, event types, filter and header NAMES (values may be tokens). */
  function renderWebhooks(record) {
    const hooks = record.webhooks || [];
    const readOnly = Boolean(record.read_only);
    $('webhook-fields').disabled = readOnly;
    $('webhook-form').hidden = readOnly; // a configured app's webhooks live in its TOML file
    $('webhooks-empty').hidden = hooks.length > 0;
    $('webhooks-table').hidden = hooks.length === 0;
    $('webhooks-table').tBodies[0].replaceChildren(...hooks.map((hook, index) => {
      const tr = el('tr');
      tr.dataset.url = hook.url;
      cell(tr, hook.url, 'mono url');
      tags(cell(tr, null), hook.event_types || []);
      const filter = filterText(hook);
      cell(tr, filter || 'every channel', filter ? 'mono' : 'muted');
      const names = Object.keys(hook.headers || {});
      if (names.length) tags(cell(tr, null), names);
      else cell(tr, 'none', 'muted');
      const tools = cell(tr, null, 'tools');
      const remove = el('button', 'Remove…', { type: 'button', className: 'danger-outline' });
      remove.dataset.removeWebhook = String(index);
      remove.disabled = readOnly;
      tools.append(remove);
      return tr;
    }));
  }

  function buildWebhookForm() {
    $('webhook-event-checks').append(...WEBHOOK_EVENTS.map((name) => {
      const input = el('input', null, { type: 'checkbox', name: 'event_type', value: name, id: `webhook-event-${name}` });
      const label = el('label', null, { for: input.id });
      label.append(input, name);
      return label;
    }));
  }

  class FormProblem extends Error {
    constructor(field, message) {
      super(message);
      this.field = field;
    }
  }

  /** The form's webhook in the API's shape; a FormProblem names a field the form has. */
  function readWebhook(form) {
    const url = form.elements.url.value.trim();
    if (!/^https?:\/\/\S+$/i.test(url)) throw new FormProblem('url', 'Give an http:// or https:// URL.');
    const events = [...form.querySelectorAll('input[name=event_type]:checked')].map((i) => i.value);
    if (!events.length) throw new FormProblem('event_types', 'Tick at least one event type.');
    const hook = { url, event_types: events };
    const filter = {};
    const starts = form.elements.starts.value.trim();
    const ends = form.elements.ends.value.trim();
    if (starts) filter.channel_name_starts_with = starts;
    if (ends) filter.channel_name_ends_with = ends;
    if (Object.keys(filter).length) hook.filter = filter;
    const headers = {};
    for (const line of form.elements.headers.value.split('\n')) {
      if (!line.trim()) continue;
      const colon = line.indexOf(':');
      if (colon < 1) throw new FormProblem('headers', `“${line.trim()}” is not “Name: value”.`);
      headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
    }
    if (Object.keys(headers).length) hook.headers = headers;
    return hook;
  }

  /** PATCH the app's whole webhooks list (the API checks each webhook). */
  async function saveWebhooks(hooks) {
    const saved = await api(appPath(manage.record.id), { method: 'PATCH', json: { webhooks: hooks } });
    renderSettings(saved, null, false);
    return saved;
  }

  function fmtLetterTime(t) {
    if (!t) return '–';
    return new Date(t * 1000).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
  }

  function renderDeadLetters(letters) {
    $('dead-letters-empty').hidden = letters.length > 0;
    $('dead-letters-table').hidden = letters.length === 0;
    $('dead-letters-table').tBodies[0].replaceChildren(...letters.map((letter) => {
      const tr = el('tr');
      tr.dataset.letter = letter.id;
      const when = cell(tr, fmtLetterTime(letter.dead_at), 'nowrap');
      when.title = letter.id;
      tags(cell(tr, null), letter.events || []);
      cell(tr, letter.url, 'mono url');
      cell(tr, letter.attempts, 'num');
      cell(tr, letter.last_error || '–', 'error-text');
      const replay = el('button', 'Replay', { type: 'button' });
      replay.dataset.replay = letter.id;
      cell(tr, null, 'tools').append(replay);
      return tr;
    }));
  }

  async function loadDeadLetters(appId) {
    showMessage('dead-letters-error', null);
    try {
      const body = await api(`${DEAD_LETTERS}?app_id=${encodeURIComponent(appId)}&limit=100`);
      if (route.appId === appId && route.tab === 'settings') renderDeadLetters(body.dead_letters || []);
    } catch (err) {
      if (err.status !== 401 && route.appId === appId) {
        showMessage('dead-letters-error', `Cannot list the dead letters: ${errorText(err)}`);
      }
    }
  }

  function wireWebhooks() {
    buildWebhookForm();
    const form = $('webhook-form');
    form.addEventListener('change', (ev) => {
      // a ticked event type answers "tick at least one"
      if (ev.target.name === 'event_type') showMessage('webhook-events-error', null);
    });
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      showMessage('webhooks-error', null);
      showMessage('settings-notice', null);
      let hook;
      try {
        hook = readWebhook(form);
      } catch (err) {
        if (!(err instanceof FormProblem)) throw err;
        showFormError(form, err);
        return;
      }
      const button = $('webhook-add');
      button.disabled = true;
      try {
        await saveWebhooks([...(manage.record.webhooks || []), hook]);
        form.reset();
        showMessage('settings-notice', `Added a webhook to ${hook.url}: every node applies it within a second.`);
      } catch (err) {
        // the API names "webhooks" and says which one and why
        if (err.status !== 401) showFormError(form, new ApiError(err.status, err.message, null));
      } finally {
        button.disabled = false;
      }
    });
    $('webhooks-table').addEventListener('click', async (ev) => {
      const button = ev.target.closest('[data-remove-webhook]');
      if (!button) return;
      const hooks = manage.record.webhooks || [];
      const index = Number(button.dataset.removeWebhook);
      const hook = hooks[index];
      if (!hook) return;
      const ok = await confirmDialog({
        title: 'Remove this webhook?',
        message: `Events are no longer POSTed to ${hook.url}. POSTs already queued for it are still tried.`,
        confirm: 'Remove',
        danger: true,
      });
      if (!ok) return;
      await change(button, 'webhooks-error',
        () => saveWebhooks(hooks.filter((_, i) => i !== index)),
        () => `Removed the webhook to ${hook.url}.`);
    });
    $('dead-letters-refresh').addEventListener('click', () => {
      showMessage('dead-letters-notice', null);
      if (manage.record) loadDeadLetters(manage.record.id);
    });
    $('dead-letters-table').addEventListener('click', async (ev) => {
      const button = ev.target.closest('[data-replay]');
      if (!button) return;
      const id = button.dataset.replay;
      const appId = manage.record.id;
      button.disabled = true;
      showMessage('dead-letters-error', null);
      showMessage('dead-letters-notice', null);
      try {
        await api(`${DEAD_LETTERS}/${encodeURIComponent(id)}/replay`, { method: 'POST' });
        showMessage('dead-letters-notice', `Queued ${id} again: it is POSTed within a second (see the Debug console tab).`);
        await loadDeadLetters(appId);
      } catch (err) {
        button.disabled = false;
        if (err.status !== 401) showMessage('dead-letters-error', `Cannot replay ${id}: ${errorText(err)}`);
      }
    });
  }

  // -- routing ---------------------------------------------------------------------------------

  const route = { view: null, appId: null, tab: null };

  function parseHash() {
    const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
    if (!parts.length || parts[0] === 'overview') return { view: 'overview' };
    if (parts[0] === 'apps' && parts.length === 1) return { view: 'apps' };
    if (parts[0] === 'apps' && parts.length <= 3) {
      const tab = parts[2] || 'details';
      if (['details', 'debug', 'publish', 'settings'].includes(tab)) return { view: 'app', appId: parts[1], tab };
    }
    return { view: 'missing' };
  }

  function onRoute() {
    const next = parseHash();
    const appChanged = next.appId !== route.appId;
    stopOverview();
    stopApps();
    stopDetail();
    if (next.view !== 'app' || next.tab !== 'debug' || appChanged) stopDebug();
    Object.assign(route, { view: next.view, appId: next.appId || null, tab: next.tab || null });

    for (const section of document.querySelectorAll('.view')) {
      section.hidden = section.id !== `view-${route.view}`;
    }
    for (const a of document.querySelectorAll('[data-nav]')) {
      const active = a.dataset.nav === route.view || (a.dataset.nav === 'apps' && route.view === 'app');
      if (active) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    banner(null);

    if (route.view === 'overview') {
      if (overview.lastData) renderOverview(overview.lastData);
      pollOverview();
    } else if (route.view === 'apps') {
      showMessage('apps-notice', manage.appsNotice);
      manage.appsNotice = null;
      pollApps();
    } else if (route.view === 'app') {
      setText('app-title', route.appId);
      for (const a of document.querySelectorAll('[data-tab]')) {
        const tab = a.dataset.tab;
        a.href = `#/apps/${encodeURIComponent(route.appId)}${tab === 'details' ? '' : `/${tab}`}`;
        if (tab === route.tab) a.setAttribute('aria-current', 'page');
        else a.removeAttribute('aria-current');
      }
      for (const t of document.querySelectorAll('.tab')) t.hidden = t.id !== `tab-${route.tab}`;
      if (appChanged) {
        $('publish-result').hidden = true;
        $('publish-history').replaceChildren();
        setText('app-name', '');
        manage.record = null;
      }
      if (manage.created && manage.created !== route.appId) manage.created = null;
      pollDetail();
      if (route.tab === 'debug') startDebug(route.appId);
      if (route.tab === 'settings') loadSettings(route.appId);
    }
  }

  async function loadHeader() {
    try {
      const data = await api('/api/overview');
      showNode(data.node);
      if (!overview.lastData) overview.lastData = data;
    } catch {
      // the view's own poll reports errors
    }
  }

  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (route.view === 'overview' && overview.lastData) drawOverviewCharts(overview.lastData.history || []);
    }, 150);
  });

  wireDebug();
  wirePublish();
  wireManage();
  wireWebhooks();
  window.addEventListener('hashchange', onRoute);
  if (parseHash().view !== 'overview') loadHeader();
  onRoute();
})();
