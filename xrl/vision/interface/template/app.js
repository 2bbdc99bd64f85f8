/* xrl: the Understanding-RL-Vision interface (Hilton et al., Distill 2020), written for offline use.
 * Everything it shows comes from the JSON block #xrl-data; it makes no network request. */
(function () {
  'use strict';

  var DATA;
  try {
    DATA = JSON.parse(document.getElementById('xrl-data').textContent);
  } catch (e) {
    showError('The page data could not be read: ' + e);
    return;
  }
  var FEATURES = DATA.settings.features;
  var KINDS = DATA.attribution.kinds;
  var RANGE = DATA.attribution.range;
  var layerIndex = {};
  DATA.layers.forEach(function (l, i) { layerIndex[l.name] = i; });

  var state = {
    traj: 0, frame: 0, layer: DATA.default_layer, kind: 'value', isolate: null, overlay: true, residual: false,
    playing: 0, fps: 12
  };

  // ------------------------------------------------------------------ helpers
  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }
  function svgEl(tag, attrs) {
    var e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  function fmt(x, digits) {
    if (x === null || x === undefined || !isFinite(x)) { return '–'; }
    var d = digits === undefined ? 3 : digits;
    var a = Math.abs(x);
    if (a !== 0 && (a < 1e-3 || a >= 1e4)) { return x.toExponential(2); }
    return x.toFixed(d);
  }
  function clamp(x, lo, hi) { return Math.max(lo, Math.min(hi, x)); }
  function hexToRgb(hex) {
    var n = parseInt(hex.slice(1), 16);
    return [((n >> 16) & 255) / 255, ((n >> 8) & 255) / 255, (n & 255) / 255];
  }
  function showError(text) {
    var b = document.getElementById('error-banner');
    if (b) { b.textContent = text; b.hidden = false; }
  }
  function imageSrc(id) { return DATA.images[id]; }
  function traj() { return DATA.trajectories[state.traj]; }
  function layerData() { return DATA.layers[layerIndex[state.layer]]; }
  var FEATURE_RGB = DATA.colors.features.map(hexToRgb);
  var RESIDUAL_RGB = hexToRgb(DATA.colors.residual);

  var imageCache = {};
  function loadImage(id) {
    if (!imageCache[id]) {
      imageCache[id] = new Promise(function (resolve, reject) {
        var img = new Image();
        img.onload = function () { resolve(img); };
        img.onerror = function () { reject(new Error('image ' + id + ' could not be loaded')); };
        img.src = imageSrc(id);
      });
    }
    return imageCache[id];
  }

  // attribution maps: base64 -> zlib -> int8 [T, h, w, F + 1]
  var mapCache = {};
  function base64Bytes(text) {
    var bin = atob(text);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out;
  }
  function loadMaps(layer, t, kind) {
    var key = layer + '|' + t + '|' + kind;
    if (!mapCache[key]) {
      var entry = DATA.attribution.items[layer][t][kind];
      if (typeof DecompressionStream === 'undefined') {
        return Promise.reject(new Error('this browser lacks DecompressionStream (use a current Chrome, Firefox or Safari)'));
      }
      var stream = new Blob([base64Bytes(DATA.blobs[entry.blob])]).stream()
        .pipeThrough(new DecompressionStream('deflate'));
      mapCache[key] = new Response(stream).arrayBuffer().then(function (buf) {
        return { codes: new Int8Array(buf), shape: entry.shape, unit: RANGE / 127, entry: entry };
      });
    }
    return mapCache[key];
  }

  // ------------------------------------------------------------------ canvases
  var screens = { obs: $('canvas-obs'), pos: $('canvas-pos'), neg: $('canvas-neg') };
  var frameAspect = DATA.frame.height / DATA.frame.width;
  function sizeCanvases() {
    var css = parseFloat(getComputedStyle(screens.obs).width) || 288;
    var dpr = window.devicePixelRatio || 1;
    Object.keys(screens).forEach(function (k) {
      var c = screens[k];
      c.style.height = (css * frameAspect) + 'px';
      c.width = Math.round(css * dpr);
      c.height = Math.round(css * frameAspect * dpr);
    });
  }

  function drawFrame(ctx, img, t, grey) {
    var tr = traj();
    var W = DATA.frame.width, H = DATA.frame.height;
    var col = t % tr.columns, row = Math.floor(t / tr.columns);
    ctx.save();
    ctx.globalCompositeOperation = 'source-over';
    ctx.imageSmoothingEnabled = !DATA.frame.pixelated;
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, ctx.canvas.width, ctx.canvas.height);
    ctx.drawImage(img, col * W, row * H, W, H, 0, 0, ctx.canvas.width, ctx.canvas.height);
    if (grey) {
      ctx.globalCompositeOperation = 'saturation';          // take the saturation of grey: a greyscale frame
      ctx.fillStyle = '#808080';
      ctx.fillRect(0, 0, ctx.canvas.width, ctx.canvas.height);
      ctx.globalCompositeOperation = 'source-over';
      ctx.fillStyle = 'rgba(0, 0, 0, 0.45)';
      ctx.fillRect(0, 0, ctx.canvas.width, ctx.canvas.height);
    }
    ctx.restore();
  }

  function smooth(src, h, w, filt) {
    var n = filt.length;
    if (n === 1) {
      var f0 = filt[0][0];
      if (f0 === 1) { return src; }
      return src.map(function (v) { return v * f0; });
    }
    var r0 = Math.floor((n - 1) / 2);
    var out = new Float32Array(h * w);
    for (var y = 0; y < h; y++) {
      for (var x = 0; x < w; x++) {
        var s = 0;
        for (var i = 0; i < n; i++) {
          var yy = y + i - r0;
          if (yy < 0 || yy >= h) { continue; }
          var row = filt[i];
          for (var j = 0; j < n; j++) {
            var xx = x + j - r0;
            if (xx < 0 || xx >= w || row[j] === 0) { continue; }
            s += src[yy * w + xx] * row[j];
          }
        }
        out[y * w + x] = s;
      }
    }
    return out;
  }

  // one attribution picture (sign +1 or -1) of frame t as an h x w RGBA image
  var small = document.createElement('canvas');
  function attributionImage(maps, t, sign) {
    var shape = maps.shape, h = shape[1], w = shape[2], K = shape[3];
    var filt = layerData().filter;
    var base = t * h * w * K;
    var rgb = new Float32Array(h * w * 3);
    for (var k = 0; k < K; k++) {
      var isResidual = k === K - 1;
      if (state.isolate !== null) {
        if (state.isolate === 'res' ? !isResidual : k !== state.isolate) { continue; }
      } else if (isResidual && !state.residual) {
        continue;
      }
      var ch = new Float32Array(h * w);
      var any = false;
      for (var p = 0; p < h * w; p++) {
        var v = maps.codes[base + p * K + k] * maps.unit * sign;
        if (v > 0) { ch[p] = v; any = true; }
      }
      if (!any) { continue; }
      var sm = smooth(ch, h, w, filt);
      var c = isResidual ? RESIDUAL_RGB : FEATURE_RGB[k];
      for (var q = 0; q < h * w; q++) {
        rgb[3 * q] += sm[q] * c[0]; rgb[3 * q + 1] += sm[q] * c[1]; rgb[3 * q + 2] += sm[q] * c[2];
      }
    }
    small.width = w; small.height = h;
    var sctx = small.getContext('2d');
    var img = sctx.createImageData(w, h);
    for (var m = 0; m < h * w; m++) {
      var r = rgb[3 * m], g = rgb[3 * m + 1], b = rgb[3 * m + 2];
      var norm = Math.sqrt(r * r + g * g + b * b);
      var peak = Math.max(r, g, b);
      var alpha = Math.min(1, norm);                        // brightness becomes opacity (lucid rl_util)
      if (peak > 0) { r /= peak; g /= peak; b /= peak; }
      img.data[4 * m] = Math.round(r * 255); img.data[4 * m + 1] = Math.round(g * 255);
      img.data[4 * m + 2] = Math.round(b * 255); img.data[4 * m + 3] = Math.round(alpha * 0.92 * 255);
    }
    sctx.putImageData(img, 0, 0);
    return small;
  }

  var renderToken = 0;
  function render() {
    var token = ++renderToken;
    document.body.dataset.rendered = '';
    var tr = traj();
    state.frame = clamp(state.frame, 0, tr.length - 1);
    renderInfo();
    renderPolicy();
    renderLegendValues();
    renderFeatureChart();
    renderCursor();
    renderBookmarkHighlight();
    document.body.dataset.frame = String(state.frame);
    document.body.dataset.trajectory = String(state.traj);
    document.body.dataset.layer = state.layer;
    document.body.dataset.kind = state.kind;
    document.body.dataset.isolate = state.isolate === null ? '' : String(state.isolate);
    updateUrl();
    return Promise.all([loadImage(tr.frames), loadMaps(state.layer, state.traj, state.kind)]).then(function (got) {
      if (token !== renderToken) { return; }
      var img = got[0], maps = got[1];
      var t = state.frame;
      drawFrame(screens.obs.getContext('2d'), img, t, false);
      [['pos', 1], ['neg', -1]].forEach(function (pair) {
        var ctx = screens[pair[0]].getContext('2d');
        if (state.overlay) {
          drawFrame(ctx, img, t, true);
        } else {
          ctx.fillStyle = '#000';
          ctx.fillRect(0, 0, ctx.canvas.width, ctx.canvas.height);
        }
        var picture = attributionImage(maps, t, pair[1]);
        ctx.save();
        // maps of a few cells are drawn as blocks (each block one unit); larger maps smoothly, as the paper
        ctx.imageSmoothingEnabled = Math.min(maps.shape[1], maps.shape[2]) >= 8;
        ctx.imageSmoothingQuality = 'high';
        ctx.drawImage(picture, 0, 0, ctx.canvas.width, ctx.canvas.height);
        ctx.restore();
      });
      document.body.dataset.rendered = [state.traj, t, state.layer, state.kind,
        state.isolate === null ? '' : state.isolate, state.overlay ? 1 : 0, state.residual ? 1 : 0].join(':');
    }).catch(function (e) { showError(String(e)); });
  }

  // ------------------------------------------------------------------ side panels
  function actionName(a) { return DATA.agent.action_names[a] || ('action ' + a); }

  function renderInfo() {
    var tr = traj(), t = state.frame;
    $('frame-number').textContent = 'frame ' + t + ' / ' + (tr.length - 1);
    $('episode-marker').hidden = !tr.firsts[t];
    var last = (t > 0 && !tr.firsts[t]) ? tr.rewards[t - 1] : 0;
    var lr = $('last-reward');
    lr.textContent = 'last reward ' + fmt(last, 2);
    lr.className = last > 0 ? 'reward-pos' : (last < 0 ? 'reward-neg' : '');
    $('value-now').textContent = 'value ' + fmt(tr.values[t]);
    $('advantage-now').textContent = 'advantage ' + fmt(tr.advantages[t]);
  }

  var segments = [];
  var ACTION_GREYS = ['#c9d1de', '#dde2ea'];
  function buildPolicy() {
    var bar = $('action-bar');
    for (var a = 0; a < DATA.agent.num_actions; a++) {
      var seg = el('span', 'seg');
      seg.dataset.action = String(a);
      seg.style.background = ACTION_GREYS[a % 2];
      bar.appendChild(seg);
      segments.push(seg);
    }
  }
  function renderPolicy() {
    var tr = traj(), t = state.frame, chosen = tr.actions[t];
    var probs = tr.probs[t];
    var width = $('action-bar').getBoundingClientRect().width || 800;
    segments.forEach(function (seg, a) {
      var p = probs[a];
      seg.style.width = (100 * p).toFixed(3) + '%';
      seg.classList.toggle('chosen', a === chosen);
      var label = actionName(a) + ' ' + (100 * p).toFixed(0) + '%';
      var name = actionName(a);
      seg.textContent = p * width > label.length * 6.5 + 8 ? label : (p * width > name.length * 6.5 + 8 ? name : '');
      seg.title = actionName(a) + ': ' + (100 * p).toFixed(1) + '%';
    });
    var next = $('next-action');
    next.textContent = '';
    next.appendChild(document.createTextNode('next action '));
    next.appendChild(el('b', null, actionName(chosen)));
    next.appendChild(document.createTextNode(' (p = ' + (100 * probs[chosen]).toFixed(0) + '%)'));
  }

  var legendRows = [];
  function buildLegend() {
    var list = $('legend');
    list.textContent = '';
    legendRows = [];
    var layer = layerData();
    for (var f = 0; f <= FEATURES; f++) {
      var isRes = f === FEATURES;
      var li = el('li', isRes ? 'residual legend-item' : 'legend-item');
      li.dataset.feature = isRes ? 'res' : String(f);
      var dot = el('span', 'dot', isRes ? '' : String(f + 1));
      if (!isRes) { dot.style.background = DATA.colors.features[f]; }
      li.appendChild(dot);
      var thumb = el('span', 'thumb');
      if (isRes) {
        thumb.textContent = 'residual';
      } else {
        var img = el('img');
        img.alt = 'dataset examples of feature ' + (f + 1);
        img.src = imageSrc(layer.features[f].thumbnail);
        thumb.appendChild(img);
      }
      li.appendChild(thumb);
      var bar = el('span', 'bar');
      bar.appendChild(el('span', 'zero'));
      var fill = el('span', 'fill');
      fill.style.background = isRes ? DATA.colors.residual : DATA.colors.features[f];
      bar.appendChild(fill);
      li.appendChild(bar);
      var num = el('span', 'num');
      li.appendChild(num);
      li.title = isRes ? 'what the features leave of the attribution' :
        'feature ' + (f + 1) + ' of ' + layer.name + ': hover to isolate, click for dataset examples';
      (function (key, isResidual) {
        li.addEventListener('mouseenter', function () { setIsolate(key); });
        li.addEventListener('mouseleave', function () { setIsolate(null); });
        if (!isResidual) { li.addEventListener('click', function () { openPopup(key); }); }
      })(isRes ? 'res' : f, isRes);
      list.appendChild(li);
      legendRows.push({ li: li, fill: fill, num: num });
    }
  }
  function legendScale() {
    var e = DATA.attribution.items[state.layer][state.traj][state.kind];
    var m = 1e-12;
    e.totals.forEach(function (row) { row.forEach(function (v) { m = Math.max(m, Math.abs(v)); }); });
    e.residual.forEach(function (v) { m = Math.max(m, Math.abs(v)); });
    return m;
  }
  var cachedScale = { key: null, value: 1 };
  function renderLegendValues() {
    var key = state.layer + '|' + state.traj + '|' + state.kind;
    if (cachedScale.key !== key) { cachedScale = { key: key, value: legendScale() }; }
    var e = DATA.attribution.items[state.layer][state.traj][state.kind];
    var t = state.frame;
    legendRows.forEach(function (row, f) {
      var v = f === FEATURES ? e.residual[t] : e.totals[t][f];
      var frac = clamp(v / cachedScale.value, -1, 1) * 50;
      row.fill.style.left = (frac >= 0 ? 50 : 50 + frac) + '%';
      row.fill.style.width = Math.abs(frac) + '%';
      row.num.textContent = (v >= 0 ? '+' : '') + fmt(v);
      var key2 = f === FEATURES ? 'res' : f;
      row.li.classList.toggle('isolated', state.isolate === key2);
      row.li.classList.toggle('dimmed', state.isolate !== null && state.isolate !== key2);
    });
    var target = state.kind === 'value' ? 'the value' : 'the chosen action\'s logit';
    $('legend-total').textContent = 'total attribution to ' + target + ' at this frame: ' + fmt(e.total[t]) +
      ' (features + residual)';
  }

  // per-frame attribution of every feature over the whole trajectory: stacked bars, positive up, negative down
  var featureChart = $('feature-chart');
  function renderFeatureChart() {
    var e = DATA.attribution.items[state.layer][state.traj][state.kind];
    var T = e.totals.length;
    var dpr = window.devicePixelRatio || 1;
    var W = Math.max(100, Math.round(featureChart.getBoundingClientRect().width * dpr));
    var H = Math.round(150 * dpr);
    if (featureChart.width !== W) { featureChart.width = W; }
    if (featureChart.height !== H) { featureChart.height = H; }
    var ctx = featureChart.getContext('2d');
    ctx.clearRect(0, 0, W, H);
    var rows = [];
    var up = 1e-12, down = 1e-12;
    for (var t = 0; t < T; t++) {
      var vals = e.totals[t].slice();
      vals.push(state.residual || state.isolate === 'res' ? e.residual[t] : 0);
      var pos = 0, neg = 0;
      vals.forEach(function (v, k) {
        var shown = state.isolate === null || state.isolate === (k === FEATURES ? 'res' : k);
        if (!shown) { vals[k] = 0; return; }
        if (v > 0) { pos += v; } else { neg -= v; }
      });
      up = Math.max(up, pos); down = Math.max(down, neg);
      rows.push(vals);
    }
    var zero = H * up / (up + down);
    var scale = (H - 2 * dpr) / (up + down);
    var bw = W / T;
    for (var tt = 0; tt < T; tt++) {
      var yUp = zero, yDown = zero;
      for (var k = 0; k <= FEATURES; k++) {
        var v = rows[tt][k];
        if (!v) { continue; }
        ctx.fillStyle = k === FEATURES ? DATA.colors.residual : DATA.colors.features[k];
        var h = Math.abs(v) * scale;
        if (v > 0) { yUp -= h; ctx.fillRect(tt * bw, yUp, Math.max(bw, 1), h); }
        else { ctx.fillRect(tt * bw, yDown, Math.max(bw, 1), h); yDown += h; }
      }
    }
    ctx.fillStyle = '#9aa3b2';
    ctx.fillRect(0, zero, W, dpr);
    var tr = traj();
    ctx.fillStyle = 'rgba(227, 179, 65, 0.9)';
    tr.firsts.forEach(function (f, t) { if (f && t > 0) { ctx.fillRect(t * bw, 0, dpr, H); } });
    ctx.fillStyle = '#1d2430';
    ctx.fillRect((state.frame + 0.5) * bw - dpr, 0, 2 * dpr, H);
  }

  function setIsolate(key) {
    if (state.isolate === key) { return; }
    state.isolate = key;
    render();
  }

  // ------------------------------------------------------------------ sidebar
  function buildTrajectories() {
    var list = $('trajectory-list');
    DATA.trajectories.forEach(function (tr, i) {
      var li = el('li');
      li.dataset.trajectory = String(i);
      var title = el('div', 'traj-title');
      title.appendChild(el('b', null, 'Trajectory ' + (i + 1)));
      var rets = tr.episode_returns;
      var summary = tr.episodes + (tr.episodes === 1 ? ' episode' : ' episodes');
      if (rets.length) {
        summary += ' · return' + (rets.length > 1 ? 's ' : ' ') +
          rets.slice(0, 3).map(function (r) { return fmt(r, 1); }).join(', ') + (rets.length > 3 ? ', …' : '');
      }
      title.appendChild(el('span', 'muted', summary));
      li.appendChild(title);
      var img = el('img');
      img.alt = 'frames of trajectory ' + (i + 1);
      img.src = imageSrc(tr.strip);
      li.appendChild(img);
      li.addEventListener('click', function () { selectTrajectory(i, 0); });
      list.appendChild(li);
    });
  }
  function markSelectedTrajectory() {
    Array.prototype.forEach.call($('trajectory-list').children, function (li, i) {
      li.classList.toggle('selected', i === state.traj);
    });
  }
  function buildBookmarks() {
    ['high', 'low'].forEach(function (sign) {
      var list = $('bookmarks-' + sign);
      var marks = DATA.bookmarks[sign] || [];
      if (!marks.length) { list.appendChild(el('li', 'muted', 'none')); }
      marks.forEach(function (b) {
        var li = el('li', 'bookmark');
        li.dataset.trajectory = String(b.trajectory);
        li.dataset.frame = String(b.frame);
        li.appendChild(el('span', null, 'T' + (b.trajectory + 1) + ' · ' + b.frame));
        li.appendChild(el('span', 'adv', (b.advantage >= 0 ? '+' : '') + fmt(b.advantage, 2)));
        li.title = 'jump to trajectory ' + (b.trajectory + 1) + ', frame ' + b.frame;
        li.addEventListener('click', function () { selectTrajectory(b.trajectory, b.frame); });
        list.appendChild(li);
      });
    });
  }
  function renderBookmarkHighlight() {
    document.querySelectorAll('.bookmark').forEach(function (li) {
      li.classList.toggle('current', +li.dataset.trajectory === state.traj && +li.dataset.frame === state.frame);
    });
  }

  function selectTrajectory(i, frame) {
    var changed = i !== state.traj;
    state.traj = clamp(i, 0, DATA.trajectories.length - 1);
    state.frame = frame || 0;
    markSelectedTrajectory();
    if (changed) { buildTimeline(); }
    render();
  }

  // ------------------------------------------------------------------ timeline
  var charts = [];
  function chartSeries() {
    var tr = traj();
    return [
      { key: 'value', label: 'value', color: '#1a8a4a', values: tr.values },
      { key: 'advantage', label: 'advantage', color: '#2f6fde', values: tr.advantages, zero: true, marks: true },
      { key: 'logit', label: 'chosen action logit', color: '#c8362f',
        values: tr.actions.map(function (a, t) { return tr.logits[t][a]; }) }
    ];
  }
  function buildTimeline() {
    var tr = traj();
    $('scrub-strip').style.backgroundImage = 'url("' + imageSrc(tr.strip) + '")';
    var box = $('charts');
    box.textContent = '';
    charts = [];
    var T = tr.length, Wv = 1000, Hv = 60, pad = 4;
    chartSeries().forEach(function (series) {
      var row = el('div', 'chart');
      row.dataset.chart = series.key;
      var label = el('div', 'chart-label', series.label);
      var now = el('span', 'now');
      label.appendChild(now);
      row.appendChild(label);
      var svg = svgEl('svg', { viewBox: '0 0 ' + Wv + ' ' + Hv, preserveAspectRatio: 'none' });
      var vals = series.values;
      var lo = Math.min.apply(null, vals.concat(series.zero ? [0] : []));
      var hi = Math.max.apply(null, vals.concat(series.zero ? [0] : []));
      if (hi - lo < 1e-9) { hi = lo + 1; }
      var x = function (t) { return T <= 1 ? 0 : (t / (T - 1)) * Wv; };
      var y = function (v) { return pad + (1 - (v - lo) / (hi - lo)) * (Hv - 2 * pad); };
      if (series.zero) {
        svg.appendChild(svgEl('line', { x1: 0, x2: Wv, y1: y(0), y2: y(0), stroke: '#c5cad3',
          'stroke-width': 1, 'vector-effect': 'non-scaling-stroke' }));
      }
      tr.firsts.forEach(function (f, t) {
        if (f && t > 0) {
          svg.appendChild(svgEl('line', { x1: x(t), x2: x(t), y1: 0, y2: Hv, stroke: '#e3b341',
            'stroke-dasharray': '3 3', 'stroke-width': 1, 'vector-effect': 'non-scaling-stroke' }));
        }
      });
      var d = '';
      for (var t = 0; t < T; t++) {               // broken at episode starts
        d += (t === 0 || tr.firsts[t] ? 'M' : 'L') + x(t).toFixed(2) + ' ' + y(vals[t]).toFixed(2) + ' ';
      }
      svg.appendChild(svgEl('path', { d: d, fill: 'none', stroke: series.color, 'stroke-width': 1.5,
        'vector-effect': 'non-scaling-stroke' }));
      if (series.marks) {
        ['high', 'low'].forEach(function (sign) {
          (DATA.bookmarks[sign] || []).forEach(function (b) {
            if (b.trajectory !== state.traj) { return; }
            svg.appendChild(svgEl('circle', { cx: x(b.frame), cy: y(vals[b.frame]), r: 3,
              fill: sign === 'high' ? '#1a8a4a' : '#c8362f' }));
          });
        });
      }
      var cursor = svgEl('line', { x1: 0, x2: 0, y1: 0, y2: Hv, stroke: '#1d2430', 'stroke-width': 1.5,
        'vector-effect': 'non-scaling-stroke' });
      svg.appendChild(cursor);
      attachSeek(svg);
      row.appendChild(svg);
      box.appendChild(row);
      charts.push({ cursor: cursor, x: x, now: now, values: vals });
    });
  }
  function renderCursor() {
    var tr = traj(), t = state.frame;
    charts.forEach(function (c) {
      c.cursor.setAttribute('x1', c.x(t));
      c.cursor.setAttribute('x2', c.x(t));
      c.now.textContent = fmt(c.values[t]);
    });
    var frac = tr.length <= 1 ? 0 : t / (tr.length - 1);
    $('scrub-cursor').style.left = 'calc(' + (frac * 100).toFixed(3) + '% - 1px)';
  }
  function attachSeek(node) {
    var seeking = false;
    function seek(ev) {
      var r = node.getBoundingClientRect();
      var frac = clamp((ev.clientX - r.left) / r.width, 0, 1);
      state.frame = Math.round(frac * (traj().length - 1));
      render();
    }
    node.addEventListener('mousedown', function (ev) { seeking = true; pause(); seek(ev); ev.preventDefault(); });
    window.addEventListener('mousemove', function (ev) { if (seeking) { seek(ev); } });
    window.addEventListener('mouseup', function () { seeking = false; });
  }

  // ------------------------------------------------------------------ playback
  var timer = null;
  function step(delta) {
    state.frame = clamp(state.frame + delta, 0, traj().length - 1);
    render();
  }
  function play(direction) {
    pause();
    state.playing = direction;
    $('btn-play-fwd').classList.toggle('active', direction > 0);
    $('btn-play-back').classList.toggle('active', direction < 0);
    timer = setInterval(function () {
      var next = state.frame + state.playing;
      if (next < 0 || next >= traj().length) { pause(); return; }
      state.frame = next;
      render();
    }, 1000 / clamp(state.fps, 1, 60));
  }
  function pause() {
    if (timer !== null) { clearInterval(timer); timer = null; }
    state.playing = 0;
    $('btn-play-fwd').classList.remove('active');
    $('btn-play-back').classList.remove('active');
  }

  // ------------------------------------------------------------------ popup
  function openPopup(f) {
    var layer = layerData(), feat = layer.features[f];
    $('popup-title').textContent = 'Feature ' + (f + 1) + ' · ' + layer.name;
    var body = $('popup-body');
    body.textContent = '';
    var left = el('figure');
    left.appendChild(el('h3', null, 'Dataset examples, by position'));
    var big = el('img', 'large');
    big.src = imageSrc(feat.dataset);
    big.alt = 'spatial dataset examples of feature ' + (f + 1);
    left.appendChild(big);
    left.appendChild(el('figcaption', null, 'For every position of the layer, the sampled frame where this ' +
      'feature is most active there, cropped around it; opacity shows how active.'));
    body.appendChild(left);
    var right = el('div', 'pair');
    var thumbFig = el('figure');
    thumbFig.appendChild(el('h3', null, 'Strongest examples'));
    var th = el('img', 'medium');
    th.src = imageSrc(feat.thumbnail);
    th.alt = 'strongest dataset examples of feature ' + (f + 1);
    thumbFig.appendChild(th);
    thumbFig.appendChild(el('figcaption', null, 'The 16 sampled frames where the feature is strongest, around ' +
      'that position.'));
    right.appendChild(thumbFig);
    if (feat.fv) {
      var fvFig = el('figure');
      fvFig.appendChild(el('h3', null, 'Feature visualization'));
      var fv = el('img', 'medium');
      fv.src = imageSrc(feat.fv);
      fv.alt = 'feature visualization of feature ' + (f + 1);
      fvFig.appendChild(fv);
      fvFig.appendChild(el('figcaption', null, 'An input optimised to excite the feature at the centre ' +
        '(Fourier parameterisation, transformation robustness, colours kept to the game\'s palette).'));
      right.appendChild(fvFig);
    }
    var sw = el('p', 'small');
    var dot = el('span', 'swatch');
    dot.style.background = feat.color;
    sw.appendChild(dot);
    sw.appendChild(document.createTextNode('its colour in the attribution views'));
    right.appendChild(sw);
    body.appendChild(right);
    $('popup').hidden = false;
    document.body.dataset.popup = String(f);
    $('popup-close').focus();
  }
  function closePopup() {
    $('popup').hidden = true;
    document.body.dataset.popup = '';
  }

  // ------------------------------------------------------------------ url, controls, keys
  function updateUrl() {
    try {
      var q = '?trajectory=' + state.traj + '&frame=' + state.frame + '&layer=' + encodeURIComponent(state.layer) +
        (state.kind !== 'value' ? '&kind=' + state.kind : '');
      if (location.search !== q) { history.replaceState(null, '', q + location.hash); }
    } catch (e) { /* some browsers refuse history on file:// pages: deep links still work when typed */ }
  }
  function readUrl() {
    var p = new URLSearchParams(location.search);
    var t = parseInt(p.get('trajectory'), 10);
    if (!isNaN(t)) { state.traj = clamp(t, 0, DATA.trajectories.length - 1); }
    var f = parseInt(p.get('frame'), 10);
    if (!isNaN(f)) { state.frame = clamp(f, 0, DATA.trajectories[state.traj].length - 1); }
    var l = p.get('layer');
    if (l !== null && layerIndex[l] !== undefined) { state.layer = l; }
    var k = p.get('kind');
    if (k !== null && KINDS.indexOf(k) >= 0) { state.kind = k; }
  }

  function buildControls() {
    var sel = $('layer-select');
    DATA.layers.forEach(function (l) {
      var o = el('option', null, l.name + '  (' + l.activation_shape.join('×') + ')');
      o.value = l.name;
      sel.appendChild(o);
    });
    sel.value = state.layer;
    sel.addEventListener('change', function () {
      state.layer = sel.value;
      state.isolate = null;
      buildLegend();
      render();
    });
    document.querySelectorAll('input[name=kind]').forEach(function (r) {
      r.checked = r.value === state.kind;
      r.disabled = KINDS.indexOf(r.value) < 0;
      r.addEventListener('change', function () { if (r.checked) { state.kind = r.value; render(); } });
    });
    $('overlay-toggle').addEventListener('change', function (e) { state.overlay = e.target.checked; render(); });
    $('residual-toggle').addEventListener('change', function (e) { state.residual = e.target.checked; render(); });
    $('btn-start').addEventListener('click', function () { pause(); state.frame = 0; render(); });
    $('btn-end').addEventListener('click', function () { pause(); state.frame = traj().length - 1; render(); });
    $('btn-step-back').addEventListener('click', function () { pause(); step(-1); });
    $('btn-step-fwd').addEventListener('click', function () { pause(); step(1); });
    $('btn-pause').addEventListener('click', pause);
    $('btn-play-fwd').addEventListener('click', function () { play(1); });
    $('btn-play-back').addEventListener('click', function () { play(-1); });
    $('fps').addEventListener('change', function (e) {
      state.fps = clamp(parseInt(e.target.value, 10) || 12, 1, 60);
      e.target.value = state.fps;
      if (state.playing) { play(state.playing); }
    });
    attachSeek($('scrubber'));
    attachSeek(featureChart);
    // buttons give the focus back, so that space and the arrows keep driving the player
    document.querySelectorAll('#player button').forEach(function (b) {
      b.addEventListener('click', function () { b.blur(); });
    });
    $('popup-close').addEventListener('click', closePopup);
    $('popup').addEventListener('click', function (ev) { if (ev.target === $('popup')) { closePopup(); } });
    $('help-button').addEventListener('click', function () { $('help').hidden = false; });
    $('help-close').addEventListener('click', function () { $('help').hidden = true; });
    $('help').addEventListener('click', function (ev) { if (ev.target === $('help')) { $('help').hidden = true; } });
    document.addEventListener('keydown', function (ev) {
      var tag = (ev.target && ev.target.tagName) || '';
      if (ev.key === 'Escape') { closePopup(); $('help').hidden = true; return; }
      if (tag === 'INPUT' && ev.target.type === 'number') { return; }
      if (tag === 'SELECT' || tag === 'TEXTAREA') { return; }
      if (ev.key === 'ArrowRight' || ev.key === 'ArrowLeft') {
        pause();
        step((ev.key === 'ArrowRight' ? 1 : -1) * (ev.shiftKey ? 10 : 1));
        ev.preventDefault();
      } else if (ev.key === ' ' || ev.code === 'Space') {
        if (state.playing) { pause(); } else { play(1); }
        ev.preventDefault();
      } else if (ev.key === 'Home') {
        pause(); state.frame = 0; render(); ev.preventDefault();
      } else if (ev.key === 'End') {
        pause(); state.frame = traj().length - 1; render(); ev.preventDefault();
      }
    });
    window.addEventListener('resize', function () { sizeCanvases(); render(); });
  }

  function buildHeader() {
    var a = DATA.agent, s = DATA.settings;
    $('agent-label').textContent = a.label;
    document.title = a.label + ' · Understanding RL Vision';
    $('agent-info').textContent = a.env_id + ' · ' + a.kind + ' agent · observations ' + a.obs_shape.join('×') +
      ' · ' + a.num_actions + ' actions';
    var t = DATA.timing || {};
    $('footer').textContent = s.trajectories + ' trajectories × ' + s.steps + ' steps · NMF with ' + s.features +
      ' features on value attributions of ' + s.observations + ' frames (one every ' + s.obs_every +
      ' steps) · ' + s.integrate_steps + ' integration steps · GAE γ=' + s.gamma + ', λ=' + s.gae_lambda +
      ' · seed ' + s.seed + ' · built by xrl ' + DATA.generator.xrl + ' on ' + DATA.generator.created +
      (t.total ? ' in ' + Math.round(t.total) + ' s' : '');
  }

  // ------------------------------------------------------------------ start
  readUrl();
  buildHeader();
  buildControls();
  buildTrajectories();
  buildBookmarks();
  buildPolicy();
  buildLegend();
  markSelectedTrajectory();
  buildTimeline();
  sizeCanvases();
  render().then(function () { document.body.dataset.ready = '1'; });
})();
