// FedKit's coordinator dashboard: polls api/status (the coordinator's GetStatusResponse in
// protobuf's JSON mapping: .proto field names, 64-bit integers as strings, optional fields only
// when set) every second and fills the page. Plain JavaScript, no library: the charts are SVG
// drawn here. Values go into the page with textContent only.
'use strict';

(function () {
  const POLL_MS = 1000;
  const RECENT_ROUNDS = 12;  // rows of the rounds table (the charts show every round)
  const SVG = 'http://www.w3.org/2000/svg';

  // A JSON number or 64-bit integer string ("7", "NaN") as a number; NaN when absent.
  function num(value) {
    return value === undefined || value === null ? NaN : Number(value);
  }

  // `value` with `digits` decimals; "–" when absent (or NaN), "Infinity" as such.
  function fixed(value, digits) {
    if (Number.isFinite(value)) return value.toFixed(digits);
    return Number.isNaN(value) ? '–' : String(value);
  }

  function setField(name, text) {
    for (const element of document.querySelectorAll('[data-field="' + name + '"]')) {
      element.textContent = text;
    }
  }

  function cell(row, column, text) {
    const td = document.createElement('td');
    td.dataset.col = column;
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  // Shows `empty` (a "None." paragraph) when `body` has no rows.
  function fillTable(bodyId, emptyId, rows) {
    document.getElementById(bodyId).replaceChildren(...rows);
    document.getElementById(emptyId).hidden = rows.length > 0;
  }

  function svgElement(tag, attributes, text) {
    const element = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
    if (text !== undefined) element.textContent = text;
    return element;
  }

  // About `count` round tick values covering [low, high]: steps of 1, 2 or 5 times a power of ten.
  function ticks(low, high, count, integers) {
    const span = high - low;
    let step = Math.pow(10, Math.floor(Math.log10(span / count)));
    for (const factor of [2, 5, 10]) {
      if (span / step <= count) break;
      step = Math.pow(10, Math.floor(Math.log10(span / count))) * factor;
    }
    if (integers) step = Math.max(1, Math.round(step));
    const values = [];
    for (let v = Math.ceil(low / step) * step; v <= high + step * 1e-9; v += step) {
      values.push(Number(v.toPrecision(12)));
    }
    return values;
  }

  // Draws line series [{name, cls, points: [[round, value], ...]}] into `svg` (its viewBox sets
  // the size), rounds on x, with axes, ticks, grid and axis titles. `bounds` clamps the y range.
  function drawChart(svg, series, yTitle, bounds) {
    const box = svg.viewBox.baseVal;
    const width = box.width;
    const height = box.height;
    const left = 58;
    const right = 14;
    const top = 10;
    const bottom = 42;
    const all = series.flatMap((s) => s.points);
    const children = [];
    svg.dataset.rounds = String(new Set(all.map((p) => p[0])).size);
    if (all.length === 0) {
      children.push(svgElement('text', {x: width / 2, y: height / 2, class: 'nodata',
                                        'text-anchor': 'middle'}, 'no round evaluated yet'));
      svg.replaceChildren(...children);
      return;
    }
    let xLow = Math.min(...all.map((p) => p[0]));
    let xHigh = Math.max(...all.map((p) => p[0]));
    if (xHigh - xLow < 1) {
      xLow -= 1;
      xHigh += 1;
    }
    let yLow = Math.min(...all.map((p) => p[1]));
    let yHigh = Math.max(...all.map((p) => p[1]));
    const pad = yHigh > yLow ? (yHigh - yLow) * 0.08 : Math.max(Math.abs(yHigh) * 0.05, 0.01);
    yLow -= pad;
    yHigh += pad;
    if (bounds) {
      yLow = Math.max(yLow, bounds[0]);
      yHigh = Math.min(yHigh, bounds[1]);
    }
    const x = (round) => left + ((round - xLow) / (xHigh - xLow)) * (width - left - right);
    const y = (value) => top + (1 - (value - yLow) / (yHigh - yLow)) * (height - top - bottom);

    for (const value of ticks(yLow, yHigh, 5, false)) {
      children.push(svgElement('line', {x1: left, x2: width - right, y1: y(value), y2: y(value),
                                        class: 'grid'}));
      children.push(svgElement('text', {x: left - 6, y: y(value) + 4, class: 'tick',
                                        'text-anchor': 'end'}, String(value)));
    }
    for (const round of ticks(xLow, xHigh, 8, true)) {
      if (round < xLow || round > xHigh) continue;
      children.push(svgElement('line', {x1: x(round), x2: x(round), y1: height - bottom,
                                        y2: height - bottom + 5, class: 'axis'}));
      children.push(svgElement('text', {x: x(round), y: height - bottom + 18, class: 'tick',
                                        'text-anchor': 'middle'}, String(round)));
    }
    children.push(svgElement('line', {x1: left, x2: width - right, y1: height - bottom,
                                      y2: height - bottom, class: 'axis'}));
    children.push(svgElement('line', {x1: left, x2: left, y1: top, y2: height - bottom,
                                      class: 'axis'}));
    children.push(svgElement('text', {x: left + (width - left - right) / 2, y: height - 6,
                                      class: 'title', 'text-anchor': 'middle'}, 'round'));
    children.push(svgElement('text', {x: 14, y: top + (height - top - bottom) / 2, class: 'title',
                                      'text-anchor': 'middle',
                                      transform: 'rotate(-90 14 ' +
                                                 (top + (height - top - bottom) / 2) + ')'},
                             yTitle));
    for (const s of series) {
      if (s.points.length === 0) continue;
      const d = s.points.map((p, i) => (i ? 'L' : 'M') + x(p[0]).toFixed(1) + ' ' +
                                        y(p[1]).toFixed(1)).join(' ');
      children.push(svgElement('path', {d: d, class: 'series ' + s.cls, 'data-series': s.name,
                                        'data-points': String(s.points.length)}));
      if (s.points.length <= 60) {
        for (const p of s.points) {
          const dot = svgElement('circle', {cx: x(p[0]), cy: y(p[1]), r: 3.5,
                                            class: 'dot ' + s.cls});
          dot.appendChild(svgElement('title', {}, s.name + ', round ' + p[0] + ': ' +
                                                  p[1].toFixed(4)));
          children.push(dot);
        }
      }
    }
    svg.replaceChildren(...children);
  }

  function render(status) {
    const history = (status.history || []).map((r) => ({
      round: num(r.round),
      participants: num(r.participants),
      assigned: num(r.assigned),
      accuracy: num(r.accuracy),
      loss: num(r.loss),
      trainLoss: num(r.train_loss),
      epsilon: num(r.epsilon),
      seconds: num(r.seconds),
      // Device telemetry: the devices' training time, p50 and p90 (absent: no device sent it).
      deviceTraining: r.device_telemetry && r.device_telemetry.training_seconds
        ? [num(r.device_telemetry.training_seconds.p50),
           num(r.device_telemetry.training_seconds.p90)]
        : null,
    }));
    const phase = status.phase || '';
    setField('phase', phase || '–');
    setField('waiting_for', status.waiting_for || '');
    setField('current_round', String(num(status.current_round)));
    setField('rounds_total', String(num(status.rounds_total)));
    setField('rounds_committed', String(history.length));
    setField('rounds_abandoned', String(num(status.rounds_abandoned)));
    setField('checked_in', String(num(status.checked_in)));
    setField('assigned', String(num(status.assigned)));
    setField('received', String(num(status.received)));

    // accuracy is -1 for a round that was not evaluated (no --eval-data).
    const evaluated = history.filter((r) => r.accuracy >= 0);
    const last = evaluated[evaluated.length - 1];
    setField('last_accuracy', last ? fixed(last.accuracy, 4) : '–');
    setField('last_loss', last ? fixed(last.loss, 4) : '–');

    const dp = status.epsilon !== undefined;
    document.getElementById('privacy').classList.toggle('no-dp', !dp);
    setField('epsilon', dp ? fixed(num(status.epsilon), 3) : 'none');
    const delta = num(status.delta);
    setField('delta', !dp ? '–' : delta > 0 && delta < 1e-3 ? delta.toExponential() : String(delta));

    drawChart(document.getElementById('accuracy-chart'),
              [{name: 'accuracy', cls: 'accuracy',
                points: evaluated.map((r) => [r.round, r.accuracy])}],
              'accuracy', [0, 1]);
    drawChart(document.getElementById('loss-chart'),
              [{name: 'evaluation loss', cls: 'eval',
                points: evaluated.filter((r) => Number.isFinite(r.loss))
                                 .map((r) => [r.round, r.loss])},
               {name: 'training loss', cls: 'train',
                points: history.filter((r) => Number.isFinite(r.trainLoss))
                               .map((r) => [r.round, r.trainLoss])}],
              'loss', [0, Infinity]);

    const rows = history.slice(-RECENT_ROUNDS).reverse().map((r) => {
      const row = document.createElement('tr');
      row.dataset.round = String(r.round);
      cell(row, 'round', String(r.round));
      cell(row, 'participants', String(r.participants));
      // Rounds restored from checkpoints older than the field have assigned 0: unknown.
      const known = r.assigned > 0;
      cell(row, 'assigned', known ? String(r.assigned) : '–');
      cell(row, 'dropouts', known ? String(r.assigned - r.participants) : '–');
      cell(row, 'accuracy', r.accuracy >= 0 ? fixed(r.accuracy, 4) : '–');
      cell(row, 'loss', r.accuracy >= 0 ? fixed(r.loss, 4) : '–');
      cell(row, 'train_loss', fixed(r.trainLoss, 4));
      cell(row, 'epsilon', fixed(r.epsilon, 3));
      cell(row, 'seconds', fixed(r.seconds, 2));
      cell(row, 'device_training',
           r.deviceTraining ? `${fixed(r.deviceTraining[0], 2)} / ${fixed(r.deviceTraining[1], 2)}`
                            : '–');
      return row;
    });
    fillTable('history', 'history-empty', rows);

    setField('secagg_current', phase.startsWith('secagg-') ? phase : 'none');
    fillTable('secagg-phases', 'secagg-empty', (status.secagg_phases || []).map((p) => {
      const row = document.createElement('tr');
      row.dataset.phase = p.phase;
      cell(row, 'phase', p.phase);
      cell(row, 'seconds', fixed(num(p.seconds), 2));
      cell(row, 'clients_in', String(num(p.clients_in)));
      cell(row, 'clients_out', String(num(p.clients_out)));
      return row;
    }));

    for (const [field, bodyId, emptyId] of [['refusals', 'refusals', 'refusals-empty'],
                                            ['declines', 'declines', 'declines-empty']]) {
      const counts = Object.entries(status[field] || {}).sort((a, b) => a[0] < b[0] ? -1 : 1);
      fillTable(bodyId, emptyId, counts.map(([reason, count]) => {
        const row = document.createElement('tr');
        row.dataset.reason = reason;
        cell(row, 'reason', reason);
        cell(row, 'count', String(num(count)));
        return row;
      }));
    }
  }

  function setConnection(live, message) {
    const element = document.getElementById('connection');
    element.className = 'connection ' + (live ? 'live' : 'lost');
    element.textContent = live ? 'live' : 'connection lost: ' + message;
    document.body.classList.toggle('stale', !live);
    if (live) setField('updated', 'updated ' + new Date().toLocaleTimeString());
  }

  async function fetchStatus() {
    const response = await fetch('api/status', {cache: 'no-store'});
    if (!response.ok) {
      let detail = response.statusText;
      try {
        detail = (await response.json()).error || detail;
      } catch (ignored) {
        // not JSON: keep the status text
      }
      throw new Error('HTTP ' + response.status + ' ' + detail);
    }
    return response.json();
  }

  async function poll() {
    try {
      render(await fetchStatus());
      setConnection(true);
    } catch (error) {
      setConnection(false, error.message);
    }
    setTimeout(poll, POLL_MS);
  }

  poll();
})();
