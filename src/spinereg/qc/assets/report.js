/* spinereg QC report (vanilla JS, no network). Data: <script id="qc-data" type="application/json">. */
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("qc-data").textContent);
  var ENTRIES = DATA.entries || [];
  var STORE_KEY = "spinereg-qc-flags:" + DATA.report_id;
  var FLAG_KEYS = { p: "pass", f: "fail", a: "artifact" };
  var BASE_COLS = [
    { key: "flag", label: "flag" }, { key: "verdict", label: "verdict" },
    { key: "command", label: "command" }, { key: "subject", label: "subject" },
    { key: "run_rel", label: "run" }, { key: "date", label: "date" }
  ];
  var scoreKeys = [];
  ENTRIES.forEach(function (e) {
    Object.keys(e.scores || {}).forEach(function (k) { if (scoreKeys.indexOf(k) < 0) scoreKeys.push(k); });
  });
  var COLS = BASE_COLS.concat(scoreKeys.map(function (k) { return { key: "score:" + k, label: k, num: true }; }));
  var state = { sortKey: null, sortDir: 1, selected: null, showing: "before", memFlags: {} };

  function esc(s) {
    return String(s === undefined || s === null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function loadFlags() {
    try { return JSON.parse(window.localStorage.getItem(STORE_KEY) || "{}") || {}; }
    catch (err) { return state.memFlags; }
  }
  function saveFlags(flags) {
    state.memFlags = flags;
    try { window.localStorage.setItem(STORE_KEY, JSON.stringify(flags)); } catch (err) { /* private mode */ }
  }
  function byId(id) {
    for (var i = 0; i < ENTRIES.length; i++) { if (ENTRIES[i].id === id) return ENTRIES[i]; }
    return null;
  }
  function value(e, key, flags) {
    if (key === "flag") return flags[e.id] || "";
    if (key.indexOf("score:") === 0) {
      var v = (e.scores || {})[key.slice(6)];
      return typeof v === "number" ? v : null;
    }
    return e[key] === undefined ? "" : e[key];
  }
  function fmt(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") return Math.abs(v) >= 100 ? v.toFixed(1) : String(Math.round(v * 10000) / 10000);
    return v;
  }
  function cls(s) { return String(s).replace(/\s+/g, "-"); }

  // -- filters --------------------------------------------------------------------------------
  var fVerdict = document.getElementById("filter-verdict");
  var fCommand = document.getElementById("filter-command");
  var fFlag = document.getElementById("filter-flag");
  var fText = document.getElementById("filter-text");
  var commands = [];
  ENTRIES.forEach(function (e) { if (commands.indexOf(e.command) < 0) commands.push(e.command); });
  commands.sort().forEach(function (c) {
    var o = document.createElement("option"); o.textContent = c; o.value = c; fCommand.appendChild(o);
  });
  function visible(flags) {
    var text = fText.value.trim().toLowerCase();
    return ENTRIES.filter(function (e) {
      if (fVerdict.value && e.verdict !== fVerdict.value) return false;
      if (fCommand.value && e.command !== fCommand.value) return false;
      if (fFlag.value === "none" && flags[e.id]) return false;
      if (fFlag.value && fFlag.value !== "none" && flags[e.id] !== fFlag.value) return false;
      if (text) {
        var hay = [e.subject, e.command, e.run_dir, e.verdict, (e.reasons || []).join(" ")].join(" ").toLowerCase();
        if (hay.indexOf(text) < 0) return false;
      }
      return true;
    });
  }

  // -- table ----------------------------------------------------------------------------------
  var table = document.getElementById("entries");
  function renderHead() {
    var tr = document.createElement("tr");
    COLS.forEach(function (c) {
      var th = document.createElement("th");
      th.textContent = c.label;
      th.setAttribute("data-key", c.key);
      th.setAttribute("role", "columnheader");
      if (state.sortKey === c.key) th.setAttribute("aria-sort", state.sortDir > 0 ? "ascending" : "descending");
      th.addEventListener("click", function () {
        if (state.sortKey === c.key) state.sortDir = -state.sortDir; else { state.sortKey = c.key; state.sortDir = 1; }
        renderHead(); renderRows();
      });
      tr.appendChild(th);
    });
    table.tHead.innerHTML = "";
    table.tHead.appendChild(tr);
  }
  function compare(flags) {
    var key = state.sortKey, dir = state.sortDir;
    return function (a, b) {
      var va = value(a, key, flags), vb = value(b, key, flags);
      var na = va === null || va === "", nb = vb === null || vb === "";
      if (na || nb) return na === nb ? 0 : (na ? 1 : -1);  // missing values last
      if (typeof va === "number" && typeof vb === "number") return (va - vb) * dir;
      return String(va).localeCompare(String(vb)) * dir;
    };
  }
  function renderRows() {
    var flags = loadFlags();
    var rows = visible(flags);
    if (state.sortKey) rows = rows.slice().sort(compare(flags));
    var body = table.tBodies[0];
    body.innerHTML = "";
    rows.forEach(function (e) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-id", e.id);
      tr.tabIndex = 0;
      if (e.id === state.selected) tr.className = "selected";
      COLS.forEach(function (c) {
        var td = document.createElement("td");
        var v = value(e, c.key, flags);
        if (c.key === "flag") {
          td.className = "flag";
          td.innerHTML = v ? '<span class="badge f-' + esc(v) + '">' + esc(v) + "</span>" : "";
        } else if (c.key === "verdict") {
          td.className = "verdict";
          td.innerHTML = '<span class="badge v-' + esc(cls(v)) + '">' + esc(v) + "</span>";
        } else {
          if (c.num) td.className = "num";
          td.textContent = fmt(v);
          if (c.key === "run_rel") td.title = e.run_dir;
        }
        td.setAttribute("data-key", c.key);
        tr.appendChild(td);
      });
      tr.addEventListener("click", function () { select(e.id, true); });
      tr.addEventListener("focus", function () { if (state.selected !== e.id) select(e.id, false); });
      body.appendChild(tr);
    });
    document.getElementById("count").textContent = rows.length + " of " + ENTRIES.length + " entries";
  }
  function rowOf(id) { return table.querySelector('tbody tr[data-id="' + id + '"]'); }

  // -- detail ---------------------------------------------------------------------------------
  var detail = document.getElementById("detail");
  function select(id, focus) {
    state.selected = id;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
      r.className = r.getAttribute("data-id") === id ? "selected" : "";
    });
    var row = rowOf(id);
    if (focus && row && document.activeElement !== row) row.focus();
    renderDetail();
  }
  function renderDetail() {
    var e = byId(state.selected);
    if (!e) { detail.innerHTML = '<p class="empty">Select an entry.</p>'; return; }
    var flags = loadFlags();
    var h = [];
    h.push("<h2>" + esc(e.subject) + " &middot; " + esc(e.command) + "</h2>");
    h.push('<p class="meta">' + esc(e.run_dir) + " &middot; " + esc(e.date) +
           (e.template ? " &middot; template " + esc(e.template) : "") + "</p>");
    h.push('<p>verdict <span class="badge v-' + esc(cls(e.verdict)) + '" id="detail-verdict">' + esc(e.verdict) +
           "</span> flag <span id=\"detail-flag\" class=\"badge f-" + esc(flags[e.id] || "none") + "\">" +
           esc(flags[e.id] || "none") + "</span></p>");
    if ((e.reasons || []).length) {
      h.push('<ul class="reasons">' + e.reasons.map(function (r) { return "<li>" + esc(r) + "</li>"; }).join("") + "</ul>");
    }
    var keys = Object.keys(e.scores || {});
    if (keys.length) {
      h.push('<table id="scores-table"><tbody>' + keys.map(function (k) {
        return "<tr><td>" + esc(k) + '</td><td class="num">' + esc(fmt(e.scores[k])) + "</td></tr>";
      }).join("") + "</tbody></table>");
    }
    var hasToggle = (e.figures || []).some(function (f) { return f.kind === "toggle"; });
    if (hasToggle) {
      h.push('<p><button type="button" id="toggle-before-after" class="toggle">before / after</button>' +
             '<span class="showing" id="showing"></span></p>');
    }
    (e.figures || []).forEach(function (f, n) {
      h.push('<div class="figure"><h3>' + esc(f.title) + "</h3>");
      if (f.kind === "toggle") {
        h.push('<img class="qc-img toggle-img" id="fig-' + n + '" alt="' + esc(f.title) + '" data-before="' +
               esc(f.files.before) + '" data-after="' + esc(f.files.after) + '" data-label-before="' +
               esc((f.labels || {}).before || "before") + '" data-label-after="' + esc((f.labels || {}).after || "after") +
               '" src="' + esc(f.files[state.showing]) + '">');
      } else {
        var src = f.files.image || f.files[Object.keys(f.files)[0]];
        h.push('<img class="qc-img" id="fig-' + n + '" alt="' + esc(f.title) + '" src="' + esc(src) + '">');
      }
      if (f.caption) h.push('<div class="caption">' + esc(f.caption) + "</div>");
      h.push("</div>");
    });
    detail.innerHTML = h.join("");
    var btn = document.getElementById("toggle-before-after");
    if (btn) btn.addEventListener("click", toggle);
    updateShowing();
  }
  function updateShowing() {
    var imgs = detail.querySelectorAll("img.toggle-img");
    var span = document.getElementById("showing");
    if (!span || !imgs.length) return;
    span.textContent = "showing: " + imgs[0].getAttribute("data-label-" + state.showing);
  }
  function toggle() {
    state.showing = state.showing === "after" ? "before" : "after";
    Array.prototype.forEach.call(detail.querySelectorAll("img.toggle-img"), function (img) {
      img.setAttribute("src", img.getAttribute("data-" + state.showing));
    });
    updateShowing();
  }

  // -- flags and keyboard -----------------------------------------------------------------------
  function setFlag(id, flag) {
    var flags = loadFlags();
    if (flag) flags[id] = flag; else delete flags[id];
    saveFlags(flags);
    renderRows();
    var row = rowOf(id);
    if (row) { row.className = "selected"; row.focus(); }
    renderDetail();
  }
  function focusedId() {
    var el = document.activeElement;
    if (el && el.tagName === "TR" && el.hasAttribute("data-id")) return el.getAttribute("data-id");
    return state.selected;
  }
  document.addEventListener("keydown", function (ev) {
    var t = ev.target && ev.target.tagName;
    if (t === "INPUT" || t === "SELECT" || t === "TEXTAREA" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var id = focusedId();
    var k = ev.key.toLowerCase();
    if (FLAG_KEYS[k] && id) { setFlag(id, FLAG_KEYS[k]); ev.preventDefault(); }
    else if (k === "x" && id) { setFlag(id, null); ev.preventDefault(); }
    else if (k === "t") { toggle(); ev.preventDefault(); }
    else if (k === "arrowdown" || k === "arrowup" || k === "j" || k === "k") {
      var rows = Array.prototype.slice.call(table.tBodies[0].rows);
      var i = rows.indexOf(rowOf(id));
      var j = (k === "arrowdown" || k === "j") ? Math.min(i + 1, rows.length - 1) : Math.max(i - 1, 0);
      if (rows[j]) { select(rows[j].getAttribute("data-id"), true); ev.preventDefault(); }
    }
  });

  // -- export -----------------------------------------------------------------------------------
  document.getElementById("export-failures").addEventListener("click", function () {
    var flags = loadFlags();
    var failed = ENTRIES.filter(function (e) { return flags[e.id] === "fail"; });
    var lines = failed.map(function (e) {
      return JSON.stringify({ id: e.id, subject: e.subject, command: e.command, run_dir: e.run_dir, verdict: e.verdict });
    });
    var text = lines.join("\n");
    var box = document.getElementById("failures");
    box.value = text;
    document.getElementById("export-box").hidden = false;
    try {
      var url = URL.createObjectURL(new Blob([text + (text ? "\n" : "")], { type: "text/plain" }));
      var a = document.createElement("a");
      a.href = url; a.download = "qc_failures.jsonl";
      document.body.appendChild(a); a.click(); a.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
    } catch (err) { /* the textarea holds the list */ }
  });

  [fVerdict, fCommand, fFlag].forEach(function (el) { el.addEventListener("change", renderRows); });
  fText.addEventListener("input", renderRows);
  renderHead();
  renderRows();
  if (ENTRIES.length) select(ENTRIES[ENTRIES.length - 1].id, false);
})();
