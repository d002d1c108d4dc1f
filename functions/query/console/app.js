/* Lake console: one Alpine.js (CSP build) component over Lake's query API.
 *
 * Everything shown comes from the API with the caller's bearer token (sessionStorage). Values are
 * rendered as text (x-text), never as HTML. Integers beyond 2^53 (snapshot ids, BIGINT values)
 * are kept as exact strings by parseJSON, and sent back as strings. */
(function () {
  'use strict';

  var TOKEN_KEY = 'lake.token';
  var charts = {}; // uPlot instances by name, outside Alpine's reactivity

  // --- JSON with exact 64-bit integers -----------------------------------------------------
  var SOURCE_ACCESS = (function () {
    var ok = false;
    try {
      JSON.parse('1', function (key, value, context) { ok = !!(context && context.source === '1'); return value; });
    } catch (e) { ok = false; }
    return ok;
  })();

  function quoteBigInts(text) { // for browsers without JSON.parse source access
    var out = '', i = 0, n = text.length;
    while (i < n) {
      var ch = text[i];
      if (ch === '"') {
        var j = i + 1;
        while (j < n && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
        out += text.slice(i, j + 1); i = j + 1;
      } else if (ch === '-' || (ch >= '0' && ch <= '9')) {
        var k = i + 1;
        while (k < n && /[0-9.eE+\-]/.test(text[k])) k++;
        var num = text.slice(i, k);
        out += /^-?\d{16,}$/.test(num) && !Number.isSafeInteger(Number(num)) ? '"' + num + '"' : num;
        i = k;
      } else { out += ch; i++; }
    }
    return out;
  }

  function parseJSON(text) {
    if (!SOURCE_ACCESS) return JSON.parse(quoteBigInts(text));
    return JSON.parse(text, function (key, value, context) {
      if (typeof value === 'number' && !Number.isSafeInteger(value) && context && /^-?\d+$/.test(context.source)) {
        return context.source;
      }
      return value;
    });
  }

  // --- formatting ----------------------------------------------------------------------------
  function num(v) { return v === null || v === undefined ? '' : Number(v).toLocaleString('en-US'); }
  function bytes(v) {
    if (v === null || v === undefined) return '';
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], x = Number(v), u = 0;
    while (x >= 1024 && u < units.length - 1) { x /= 1024; u++; }
    return (u === 0 ? x : x.toFixed(1)) + ' ' + units[u];
  }
  function pct(v) { return v === null || v === undefined ? '' : (Number(v) * 100).toFixed(1) + ' %'; }
  function when(iso) { return iso ? String(iso).replace('T', ' ').replace(/\.\d+/, '').replace('+00:00', ' UTC') : ''; }
  function seconds(iso) { return Date.parse(iso) / 1000; }
  function cell(v) {
    if (v === null || v === undefined) return 'NULL';
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }
  function rowsText(rows) { return (rows || []).map(function (r) { return r.map(cell); }); }
  function tableRef(name) {
    return /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/.test(name)
      ? name : name.split('.').map(function (p) { return '"' + p.replace(/"/g, '""') + '"'; }).join('.');
  }

  // --- charts --------------------------------------------------------------------------------
  var PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

  function draw(name, el, data, labels, opts) {
    if (charts[name]) { charts[name].destroy(); delete charts[name]; }
    if (!el || !data.length || !data[0].length) return;
    opts = opts || {};
    var series = [{ label: opts.xLabel || 'time' }];
    labels.forEach(function (label, i) {
      var s = { label: label, stroke: PALETTE[i % PALETTE.length], width: 2, points: { show: true } };
      if (opts.bars) {
        s.fill = PALETTE[i % PALETTE.length] + '88';
        s.paths = uPlot.paths.bars({ size: [0.6, 60] });
        s.points = { show: false };
      }
      series.push(s);
    });
    var config = {
      width: Math.max(el.clientWidth || 0, 480), height: 240, series: series,
      scales: { x: { time: opts.time !== false } },
      axes: [{}, { size: 70 }]
    };
    if (opts.categories) {
      config.axes[0] = { values: function (u, ticks) { return ticks.map(function (t) { return opts.categories[t] === undefined ? '' : opts.categories[t]; }); } };
    }
    charts[name] = new uPlot(config, data, el);
  }

  // Aligned data for uPlot: x values, then one array per key (null where a key has no point).
  function align(points, keyOf, xOf, yOf) {
    var xs = [], keys = [], cells = {};
    points.forEach(function (p) {
      var x = xOf(p), key = keyOf(p);
      if (xs.indexOf(x) < 0) xs.push(x);
      if (keys.indexOf(key) < 0) keys.push(key);
      cells[key + '\u0000' + x] = yOf(p);
    });
    xs.sort(function (a, b) { return a - b; });
    var data = [xs];
    keys.forEach(function (key) {
      data.push(xs.map(function (x) { var v = cells[key + '\u0000' + x]; return v === undefined ? null : v; }));
    });
    return { data: data, labels: keys };
  }

  document.addEventListener('alpine:init', function () {
    window.Alpine.data('lake', function () {
      return {
        token: sessionStorage.getItem(TOKEN_KEY) || '',
        tokenInput: '',
        signedIn: false,
        view: 'tables',
        error: '',
        busy: false,
        tables: [],
        tableFilter: '',
        detail: emptyDetail(),
        snapshots: [],
        snapshotOptions: [],
        snapshotRows: [],
        asOf: '',
        preview: { columns: [], rows: [] },
        datasets: [],
        qDataset: '',
        quarantine: { total: 0, rules: [], columns: [], rows: [] },
        replayResult: '',
        sql: { text: '', asOf: '', explain: false, status: '', columns: [], rows: [], raw: [], plan: '', chart: 'line', x: '', y: '' },
        vectorDatasets: [],
        search: { dataset: '', text: '', k: 5, statusText: '', indexes: [], results: [] },
        activity: { bucket: 'day', series: [], maintenance: [], runs: [] },

        init: function () {
          var self = this;
          window.addEventListener('hashchange', function () { self.route(); });
          if (this.token) { this.signedIn = true; this.route(); }
        },

        // --- API -------------------------------------------------------------------------
        api: function (method, path, body) {
          var self = this;
          var headers = { Accept: 'application/json', Authorization: 'Bearer ' + this.token };
          if (body !== undefined) headers['Content-Type'] = 'application/json';
          return fetch(path, {
            method: method, headers: headers, cache: 'no-store',
            body: body === undefined ? undefined : JSON.stringify(body)
          }).then(function (response) {
            return response.text().then(function (text) {
              var data = null;
              try { data = text ? parseJSON(text) : null; } catch (e) { data = null; }
              if (!response.ok) {
                var what = data && data.error ? data.error : response.statusText;
                var message = response.status + ' ' + what + (data && data.message ? ': ' + data.message : '');
                if (response.status === 401) {
                  message += ' (the key or token was refused: sign in again)';
                  self.signedIn = false;
                }
                if (response.status === 403) message += ' (this key may not do that)';
                throw new Error(message);
              }
              if (data === null) throw new Error(method + ' ' + path + ': the answer was not JSON');
              return data;
            });
          });
        },
        run: function (promise) {
          var self = this;
          this.error = '';
          this.busy = true;
          return promise.catch(function (e) { self.error = e.message || String(e); })
            .finally(function () { self.busy = false; });
        },

        // --- sign-in and routing ---------------------------------------------------------
        signIn: function () {
          var self = this;
          this.token = this.tokenInput.trim();
          this.tokenInput = '';
          return this.run(this.api('GET', '/tables').then(function () {
            sessionStorage.setItem(TOKEN_KEY, self.token);
            self.signedIn = true;
            if (!location.hash || location.hash === '#/') location.hash = '#/tables'; else self.route();
          }));
        },
        signOut: function () {
          sessionStorage.removeItem(TOKEN_KEY);
          this.token = '';
          this.signedIn = false;
          this.error = '';
        },
        navCurrent: function (name) {
          return this.view === name || (name === 'tables' && this.view === 'table') ? 'page' : false;
        },
        route: function () {
          if (!this.signedIn) return;
          var parts = (location.hash || '#/tables').slice(2).split('/');
          var view = parts[0] || 'tables', arg = parts[1] ? decodeURIComponent(parts[1]) : '';
          this.view = view;
          if (view === 'tables') return this.loadTables();
          if (view === 'table') { this.asOf = ''; this.detail.name = arg; return this.loadTable(); }
          if (view === 'quarantine') return this.openQuarantine(arg);
          if (view === 'search') return this.openSearch();
          if (view === 'activity') return this.loadActivity();
          if (view !== 'sql') { this.view = 'tables'; return this.loadTables(); }
        },

        // --- Tables ----------------------------------------------------------------------
        loadTables: function () {
          var self = this;
          return this.run(this.api('GET', '/tables?health=true').then(function (body) {
            self.tables = body.tables.map(function (t) {
              return {
                name: t.name, href: '#/table/' + encodeURIComponent(t.name),
                rows: Number(t.rows || 0), bytes: Number(t.bytes || 0),
                rowsText: num(t.rows), bytesText: bytes(t.bytes), files: num(t.files),
                smallText: t.small_files === undefined ? '' : num(t.small_files) + ' (' + pct(t.small_file_share) + ')',
                lastCommitText: when(t.last_commit), qualityText: pct(t.quality_score)
              };
            });
          }));
        },
        get filteredTables() {
          var f = this.tableFilter.trim().toLowerCase();
          return this.tables.filter(function (t) { return !f || t.name.toLowerCase().indexOf(f) >= 0; });
        },
        get totalRows() { return num(this.tables.reduce(function (a, t) { return a + t.rows; }, 0)); },
        get totalBytes() { return bytes(this.tables.reduce(function (a, t) { return a + t.bytes; }, 0)); },

        // --- One table -------------------------------------------------------------------
        loadTable: function () {
          var self = this, name = this.detail.name, path = '/tables/' + encodeURIComponent(name);
          var asOf = this.asOf;
          var query = asOf ? '?as_of=' + encodeURIComponent(asOf) : '';
          return this.run(Promise.all([
            this.api('GET', path + query),
            this.api('GET', path + '/snapshots'),
            this.api('POST', '/sql', { sql: 'SELECT * FROM ' + tableRef(name) + ' LIMIT 20', as_of: asOf || null })
          ]).then(function (answers) {
            var d = answers[0], history = answers[1], preview = answers[2];
            self.detail = shapeDetail(d);
            self.asOf = String(d.snapshot_id === null ? '' : d.snapshot_id);
            self.snapshots = history.snapshots;
            self.snapshotOptions = history.snapshots.slice().reverse().map(function (s) {
              return { value: String(s.snapshot_id), label: when(s.timestamp) + ' · ' + (s.operation || '') + ' · ' + s.snapshot_id + (s.current ? ' (current)' : '') };
            });
            self.snapshotRows = history.snapshots.slice().reverse().map(function (s) {
              var q = s.summary['lake.rows.quarantined'];
              return {
                snapshot_id: String(s.snapshot_id), timestamp: when(s.timestamp), operation: s.operation,
                added_rows: num(s.added_rows), quarantined: q === undefined ? '' : num(q),
                quality: pct(s.summary['lake.quality.score']), total_rows: num(s.total_rows)
              };
            });
            self.preview = { columns: preview.columns, rows: rowsText(preview.rows) };
            self.$nextTick(function () { self.drawTimeline(); });
          }));
        },
        drawTimeline: function () {
          var snaps = this.snapshots;
          var data = [
            snaps.map(function (s) { return seconds(s.timestamp); }),
            snaps.map(function (s) { return s.added_rows; }),
            snaps.map(function (s) { return Number(s.summary['lake.rows.quarantined'] || 0); })
          ];
          draw('timeline', this.$refs.timeline, data, ['rows added', 'rows quarantined'], { bars: true });
        },

        // --- Quarantine ------------------------------------------------------------------
        openQuarantine: function (dataset) {
          var self = this;
          return this.run(this.api('GET', '/tables').then(function (body) {
            self.datasets = body.tables.map(function (t) { return t.name.split('.').slice(1).join('.'); })
              .filter(function (n) { return /__quarantine$/.test(n); })
              .map(function (n) { return n.replace(/__quarantine$/, ''); });
            self.qDataset = dataset || self.qDataset || self.datasets[0] || '';
            if (self.qDataset) return self.loadQuarantine();
          }));
        },
        loadQuarantine: function () {
          var self = this, ds = this.qDataset;
          this.replayResult = '';
          return this.run(Promise.all([
            this.api('GET', '/quarantine/' + encodeURIComponent(ds) + '?limit=50'),
            this.api('GET', '/tables/' + encodeURIComponent(ds) + '/snapshots')
          ]).then(function (answers) {
            var q = answers[0], history = answers[1];
            var columns = q.rows.length ? Object.keys(q.rows[0]) : [];
            self.quarantine = {
              total: num(q.total),
              rules: Object.keys(q.by_rule).map(function (r) { return { rule: r, count: num(q.by_rule[r]) }; }),
              columns: columns,
              rows: q.rows.map(function (r) { return columns.map(function (c) { return cell(r[c]); }); })
            };
            var points = [];
            history.snapshots.forEach(function (s) {
              Object.keys(s.summary).forEach(function (k) {
                if (k.indexOf('lake.quality.rule.') === 0) {
                  points.push({ rule: k.slice(18), t: seconds(s.timestamp), n: Number(s.summary[k]) });
                }
              });
            });
            var aligned = align(points, function (p) { return p.rule; }, function (p) { return p.t; }, function (p) { return p.n; });
            self.$nextTick(function () { draw('quarantine', self.$refs.qchart, aligned.data, aligned.labels, { bars: true }); });
          }));
        },
        replay: function () {
          var self = this;
          return this.run(this.api('POST', '/quarantine/' + encodeURIComponent(this.qDataset) + '/replay').then(function (r) {
            return self.loadQuarantine().then(function () {
              self.replayResult = 'Replayed ' + num(r.examined) + ' rows: ' + num(r.replayed) + ' moved to the table, ' +
                num(r.still_failing) + ' still failing, ' + num(r.unparseable) + ' unparseable (contract v' + r.contract_version + ').';
            });
          }));
        },

        // --- SQL -------------------------------------------------------------------------
        runSql: function () {
          var self = this, started = performance.now();
          var body = { sql: this.sql.text, explain: !!this.sql.explain, as_of: this.sql.asOf.trim() || null };
          return this.run(this.api('POST', '/sql', body).then(function (r) {
            self.sql.columns = r.columns;
            self.sql.raw = r.rows;
            self.sql.rows = rowsText(r.rows);
            self.sql.plan = r.plan || '';
            var snaps = Object.keys(r.snapshots).map(function (t) { return t + ' @ ' + r.snapshots[t]; }).join(', ');
            self.sql.status = num(r.row_count) + ' rows · ' + r.elapsed_ms + ' ms' +
              (r.cached ? ' · cached' : '') + (r.truncated ? ' · truncated (more rows than returned)' : '') +
              (snaps ? ' · ' + snaps : '') + ' · page ' + Math.round(performance.now() - started) + ' ms';
            if (r.columns.indexOf(self.sql.x) < 0) self.sql.x = r.columns[0] || '';
            if (r.columns.indexOf(self.sql.y) < 0) self.sql.y = r.columns[1] || r.columns[0] || '';
            self.$nextTick(function () { self.drawSqlChart(); });
          }));
        },
        drawSqlChart: function () {
          var xi = this.sql.columns.indexOf(this.sql.x), yi = this.sql.columns.indexOf(this.sql.y);
          if (xi < 0 || yi < 0 || !this.sql.raw.length) { draw('sql', null, [], []); return; }
          var rows = this.sql.raw, first = rows[0][xi], opts = { bars: this.sql.chart === 'bar', xLabel: this.sql.x };
          var xs;
          if (typeof first === 'number' || /^-?\d+(\.\d+)?$/.test(String(first))) {
            xs = rows.map(function (r) { return Number(r[xi]); }); opts.time = false;
          } else if (!isNaN(Date.parse(first))) {
            xs = rows.map(function (r) { return Date.parse(r[xi]) / 1000; });
          } else {
            opts.categories = rows.map(function (r) { return cell(r[xi]); });
            xs = rows.map(function (r, i) { return i; }); opts.time = false;
          }
          var pairs = xs.map(function (x, i) { return [x, rows[i][yi] === null ? null : Number(rows[i][yi])]; });
          if (!opts.categories) pairs.sort(function (a, b) { return a[0] - b[0]; });
          var data = [pairs.map(function (p) { return p[0]; }), pairs.map(function (p) { return p[1]; })];
          draw('sql', this.$refs.sqlchart, data, [this.sql.y], opts);
        },

        // --- Search ----------------------------------------------------------------------
        openSearch: function () {
          var self = this;
          return this.run(this.api('GET', '/vectors').then(function (body) {
            self.vectorDatasets = body.datasets.filter(function (d) { return d.modes.length > 0; });
            if (!self.search.dataset && self.vectorDatasets.length) self.search.dataset = self.vectorDatasets[0].dataset;
            if (self.search.dataset) return self.loadVectorStatus();
          }));
        },
        loadVectorStatus: function () {
          var self = this;
          return this.run(this.api('GET', '/vectors/' + encodeURIComponent(this.search.dataset)).then(function (s) {
            self.search.statusText = 'Lance version ' + (s.lance_version === null ? '–' : s.lance_version) + ' · ' +
              num(s.rows) + ' rows with vectors · table snapshot ' + (s.snapshot_id === null ? '–' : s.snapshot_id);
            self.search.indexes = s.indexes.map(function (ix) {
              return { name: ix.name, column: ix.column, indexed_rows: num(ix.indexed_rows), unindexed_rows: num(ix.unindexed_rows) };
            });
          }));
        },
        runSearch: function () {
          var self = this, ds = this.search.dataset;
          var config = this.vectorDatasets.filter(function (d) { return d.dataset === ds; })[0];
          if (!config) return Promise.resolve();
          var k = Math.max(1, Math.min(100, Number(this.search.k) || 5));
          return this.run(Promise.all(config.modes.map(function (mode) {
            return self.api('POST', '/search', { dataset: ds, text: self.search.text, k: k, mode: mode });
          })).then(function (answers) {
            self.search.results = answers.map(function (r) {
              var si = r.columns.indexOf('_score');
              var ti = config.text ? r.columns.indexOf(config.text) : -1;
              return {
                mode: r.mode, id: 'results-' + r.mode,
                note: num(r.row_count) + ' rows · ' + r.elapsed_ms + ' ms · Lance v' + r.lance_version,
                hits: r.rows.map(function (row) {
                  var text = ti >= 0 ? row[ti] : row.filter(function (v, i) { return i !== si && typeof v === 'string'; }).slice(0, 2).join(' · ');
                  return { score: si >= 0 ? Number(row[si]).toFixed(4) : '', text: cell(text) };
                })
              };
            });
          }));
        },

        // --- Activity --------------------------------------------------------------------
        loadActivity: function () {
          var self = this;
          return this.run(this.api('GET', '/activity?bucket=' + this.activity.bucket).then(function (a) {
            self.activity.series = a.series.map(function (p) {
              return {
                key: p.dataset + ' ' + p.bucket_start, dataset: p.dataset, bucket_start: when(p.bucket_start),
                ingests: num(p.ingests), rows_accepted: num(p.rows_accepted), rows_quarantined: num(p.rows_quarantined),
                qualityText: pct(p.quality_score)
              };
            });
            self.activity.maintenance = a.maintenance.slice().reverse().map(function (m) {
              return {
                key: m.table + ' ' + m.snapshot_id, timestamp: when(m.timestamp), job: m.job, table: m.table,
                filesText: num(m.files_removed) + ' → ' + num(m.files_added), rows_removed: num(m.rows_removed),
                bytesText: bytes(m.bytes_released)
              };
            });
            self.activity.runs = a.runs.slice().reverse().map(function (r) {
              return {
                started: when(r.started), finished: when(r.finished), failures: num(r.failures), bytesText: bytes(r.bytes_freed),
                jobsText: Object.keys(r.jobs).map(function (j) { return j + ' ' + bytes(r.jobs[j].bytes_freed); }).join(', ')
              };
            });
            var x = function (p) { return seconds(p.bucket_start); };
            var ds = function (p) { return p.dataset; };
            var rows = align(a.series, ds, x, function (p) { return p.rows_accepted; });
            var quality = align(a.series, ds, x, function (p) { return p.quality_score === null ? null : p.quality_score * 100; });
            self.$nextTick(function () {
              draw('rows', self.$refs.rowschart, rows.data, rows.labels, { bars: false });
              draw('quality', self.$refs.qualitychart, quality.data, quality.labels, {});
            });
          }));
        }
      };
    });
  });

  function emptyDetail() {
    return {
      name: '', location: '', rowsText: '', bytesText: '', smallText: '', file_count: '', snapshot_id: '',
      schema: [], partition_spec: [], properties: [], partitions: []
    };
  }

  function shapeDetail(d) {
    var below = d.small_file_bytes || 0, groups = {};
    d.files.forEach(function (f) {
      var key = Object.keys(f.partition).length ? Object.keys(f.partition).map(function (k) { return k + '=' + cell(f.partition[k]); }).join(', ') : '(unpartitioned)';
      var g = groups[key] || (groups[key] = { key: key, files: 0, small: 0, rows: 0, bytes: 0 });
      g.files += 1; g.rows += Number(f.rows); g.bytes += Number(f.bytes);
      if (Number(f.bytes) < below) g.small += 1;
    });
    return {
      name: d.name, location: d.location, rowsText: num(d.rows), bytesText: bytes(d.bytes), file_count: num(d.file_count),
      smallText: d.small_files === undefined ? '' : num(d.small_files) + ' (' + pct(d.small_file_share) + ')',
      snapshot_id: d.snapshot_id === null ? '' : String(d.snapshot_id),
      schema: d.schema.map(function (f) { return { id: f.id, name: f.name, type: f.type, requiredText: f.required ? 'yes' : '', doc: f.doc || '' }; }),
      partition_spec: d.partition_spec,
      properties: Object.keys(d.properties).sort().map(function (k) { return { key: k, value: d.properties[k] }; }),
      partitions: Object.keys(groups).sort().map(function (k) {
        var g = groups[k];
        return {
          key: g.key, files: num(g.files), small: num(g.small), rows: num(g.rows), bytesText: bytes(g.bytes),
          averageText: bytes(Math.round(g.bytes / g.files)), unhealthy: g.files > 1 && g.small === g.files ? 'unhealthy' : ''
        };
      })
    };
  }

  window.LakeConsole = { parseJSON: parseJSON, quoteBigInts: quoteBigInts };
})();
