// Ressonance operator dashboard. Vanilla JavaScript (ES2020), no framework, no build step,
// nothing fetched from anywhere but this admin listener.
//
// Views (hash routing): #/overview, #/apps, #/apps/<id>, #/apps/<id>/debug, #/apps/<id>/publish.
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
    'api_message', 'client_event', 'error',
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
    constructor(status, message) {
      super(message);
      this.status = status;
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
      throw new ApiError(res.status, String(message));
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

  const apps = { timer: null };

  function stopApps() {
    clearTimeout(apps.timer);
    apps.timer = null;
  }

  async function pollApps() {
    try {
      const data = await api('/api/apps');
      renderApps(data.apps || []);
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

  function renderApps(list) {
    const tbody = $('apps-table').tBodies[0];
    $('apps-empty').hidden = list.length > 0;
    setText('apps-updated', `updated ${fmtTime(Date.now() / 1000)}`);
    tbody.replaceChildren(
      ...list.map((a) => {
        const tr = el('tr');
        tr.dataset.app = a.id;
        const idCell = cell(tr, '');
        idCell.append(appLink(a.id, 'details', a.id));
        cell(tr, a.key, 'mono');
        const st = cell(tr, '');
        st.append(el('span', a.enabled ? 'enabled' : 'disabled', { className: a.enabled ? 'status ok' : 'status muted-status' }));
        cell(tr, nf0.format(a.connections ?? 0), 'num');
        cell(tr, fmtRate(a.messages_per_s), 'num');
        cell(tr, nf0.format(a.channels ?? 0), 'num');
        const tools = cell(tr, '', 'tools');
        tools.append(appLink(a.id, 'debug', 'Debug console'), ' ', appLink(a.id, 'publish', 'Event creator'));
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
      if (parts.length) details.append(el('div', parts.join(': '), { className: 'error-text' }));
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

  // -- routing ---------------------------------------------------------------------------------

  const route = { view: null, appId: null, tab: null };

  function parseHash() {
    const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
    if (!parts.length || parts[0] === 'overview') return { view: 'overview' };
    if (parts[0] === 'apps' && parts.length === 1) return { view: 'apps' };
    if (parts[0] === 'apps' && parts.length <= 3) {
      const tab = parts[2] || 'details';
      if (['details', 'debug', 'publish'].includes(tab)) return { view: 'app', appId: parts[1], tab };
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
      }
      pollDetail();
      if (route.tab === 'debug') startDebug(route.appId);
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
  window.addEventListener('hashchange', onRoute);
  if (parseHash().view !== 'overview') loadHeader();
  onRoute();
})();
