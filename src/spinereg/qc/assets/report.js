/* spinereg QC report (vanilla JS, no network). Data: <script id="qc-data" type="application/json">.
 *
 * Entries table (filters, sorting), one detail page per entry: verdict, reasons, scores beside
 * their bounds and meaning, command line and version, then the panels grouped by stage
 * (toggle before/after with the button, `t` or the animation; click a picture to zoom).
 * Flags (p/f/a, x clears) live in localStorage; "export flags" downloads them as JSON and
 * "import flags" merges such a file back.
 */
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("qc-data").textContent);
  var ENTRIES = DATA.entries || [];
  var STORE_KEY = "spinereg-qc-flags:" + DATA.report_id;
  var FLAG_KEYS = { p: "pass", f: "fail", a: "artifact" };
  var FLAGS = ["pass", "fail", "artifact"];
  var PRIORITY = ["cord_dice", "hausdorff95_mm", "landmark_max_residual_mm", "inverse_consistency_p95_mm",
                  "max_abs_shift_mm", "tsnr_after"];
  var BASE_COLS = [
    { key: "flag", label: "flag", w: "7%" }, { key: "verdict", label: "verdict", w: "8%" },
    { key: "subject", label: "subject", w: "14%" }, { key: "command", label: "command", w: "13%" },
    { key: "run_rel", label: "run", w: "auto" }, { key: "date", label: "date", w: "13%" }
  ];
  var present = {};
  ENTRIES.forEach(function (e) { Object.keys(e.scores || {}).forEach(function (k) { present[k] = true; }); });
  var scoreKeys = PRIORITY.filter(function (k) { return present[k]; });
  Object.keys(present).forEach(function (k) { if (scoreKeys.length < 3 && scoreKeys.indexOf(k) < 0) scoreKeys.push(k); });
  scoreKeys = scoreKeys.slice(0, 3);
  var COLS = BASE_COLS.concat(scoreKeys.map(function (k) {
    return { key: "score:" + k, label: k.replace(/_/g, " "), num: true, w: "9%" };
  }));
  var state = { sortKey: null, sortDir: 1, selected: null, showing: "before", memFlags: {}, timer: null };

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
  function status(text) { document.getElementById("flag-status").textContent = text; }
  function download(name, text, type) {
    try {
      var url = URL.createObjectURL(new Blob([text], { type: type }));
      var a = document.createElement("a");
      a.href = url; a.download = name;
      document.body.appendChild(a); a.click(); a.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
    } catch (err) { /* the text box holds it */ }
  }

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
        var hay = [e.subject, e.command, e.run_dir, e.verdict, (e.reasons || []).join(" "), (e.notes || []).join(" ")].join(" ").toLowerCase();
        if (hay.indexOf(text) < 0) return false;
      }
      return true;
    });
  }

  // -- table ----------------------------------------------------------------------------------
  var table = document.getElementById("entries");
  var colgroup = document.createElement("colgroup");
  COLS.forEach(function (c) { var col = document.createElement("col"); if (c.w !== "auto") col.style.width = c.w; colgroup.appendChild(col); });
  table.insertBefore(colgroup, table.tHead);
  function renderHead() {
    var tr = document.createElement("tr");
    COLS.forEach(function (c) {
      var th = document.createElement("th");
      th.textContent = c.label;
      th.title = c.key.replace("score:", "");
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
          if (c.key === "run_rel") { td.title = e.run_dir; td.className = "path"; }
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
  function scoreRow(r) {
    return '<tr data-score="' + esc(r.name) + '"><td class="name">' + esc(r.name) + '</td><td class="num">' +
      (r.state ? '<span class="badge v-' + esc(r.state) + '">' + esc(fmt(r.value)) + "</span>" : esc(fmt(r.value))) +
      '</td><td class="bounds">' + esc(r.bounds || "no bound") + '</td><td class="meaning">' + esc(r.meaning) + "</td></tr>";
  }
  function scoresHtml(e) {
    var rows = e.score_table || Object.keys(e.scores || {}).map(function (k) {
      return { name: k, value: e.scores[k], state: "", bounds: "", meaning: "" };
    });
    if (!rows.length) return "";
    var judged = rows.filter(function (r) { return r.bounds; });
    var other = rows.filter(function (r) { return !r.bounds; });
    var head = "<thead><tr><th>score</th><th>value</th><th>bounds</th><th>meaning</th></tr></thead>";
    var h = '<table id="scores-table" class="scores">' + head + "<tbody>" + judged.map(scoreRow).join("") + "</tbody></table>";
    if (other.length) {
      h += '<details class="more-scores"><summary>' + other.length + " more measures (informative, no bound)</summary>" +
           '<table class="scores">' + head + "<tbody>" + other.map(scoreRow).join("") + "</tbody></table></details>";
    }
    return h;
  }
  function panelHtml(p, n) {
    var h = ['<figure class="panel" data-kind="' + esc(p.kind) + '"><figcaption class="ptitle">' + esc(p.title) + "</figcaption>"];
    h.push('<div class="imgbox">');
    if (p.kind === "toggle" || (p.files.before && p.files.after)) {
      h.push('<img class="qc-img toggle-img" id="fig-' + n + '" alt="' + esc(p.title) + '" data-before="' +
             esc(p.files.before) + '" data-after="' + esc(p.files.after) + '" data-label-before="' +
             esc((p.labels || {}).before || "before") + '" data-label-after="' + esc((p.labels || {}).after || "after") +
             '" src="' + esc(p.files[state.showing]) + '">');
    } else {
      var src = p.files.image || p.files[Object.keys(p.files)[0]];
      h.push('<img class="qc-img" id="fig-' + n + '" alt="' + esc(p.title) + '" src="' + esc(src) + '">');
    }
    h.push("</div>");
    if (p.kind === "toggle") h.push('<div class="showing-label"></div>');
    if (p.caption) h.push('<div class="caption">' + esc(p.caption) + "</div>");
    if (p.note) h.push('<div class="note">' + esc(p.note) + "</div>");
    if (p.note_after) h.push('<div class="note note-after">' + esc(p.note_after) + "</div>");
    h.push("</figure>");
    return h.join("");
  }
  function renderDetail() {
    var e = byId(state.selected);
    if (!e) { detail.innerHTML = '<p class="empty">Select an entry.</p>'; return; }
    var flags = loadFlags();
    var h = [];
    h.push("<h2>" + esc(e.subject) + " &middot; " + esc(e.command) + "</h2>");
    h.push('<p class="meta">' + esc(e.run_dir) + " &middot; " + esc(e.date) +
           (e.template ? " &middot; template " + esc(e.template) : "") + "</p>");
    if (e.command_line) h.push('<p class="meta cmd"><code>' + esc(e.command_line) + "</code></p>");
    if (e.version) h.push('<p class="meta">' + esc(e.version) + (e.template_image ? " &middot; template image: " + esc(e.template_image) : "") + "</p>");
    h.push('<p>verdict <span class="badge v-' + esc(cls(e.verdict)) + '" id="detail-verdict">' + esc(e.verdict) +
           '</span> flag <span id="detail-flag" class="badge f-' + esc(flags[e.id] || "none") + '">' +
           esc(flags[e.id] || "none") + "</span></p>");
    if ((e.reasons || []).length) {
      h.push('<ul class="reasons">' + e.reasons.map(function (r) { return "<li>" + esc(r) + "</li>"; }).join("") + "</ul>");
    }
    if ((e.notes || []).length) {  // what the verdict could not check (metrics.json qc.notes)
      h.push('<ul class="notes" id="detail-notes">' + e.notes.map(function (r) { return "<li>note: " + esc(r) + "</li>"; }).join("") + "</ul>");
    }
    h.push(scoresHtml(e));
    var panels = e.panels || (e.figures || []).map(function (f) {
      return { stage: "pictures", title: f.title, kind: f.kind, files: f.files, caption: f.caption, labels: f.labels };
    });
    if (panels.some(function (p) { return p.kind === "toggle"; })) {
      h.push('<div class="toolbar"><button type="button" id="toggle-before-after" class="toggle">before / after (t)</button>' +
             '<label><input type="checkbox" id="animate"> animate (space)</label>' +
             '<span class="showing" id="showing"></span></div>');
    }
    var stages = [];
    panels.forEach(function (p) { if (stages.indexOf(p.stage) < 0) stages.push(p.stage); });
    var n = 0;
    stages.forEach(function (s) {
      h.push('<section class="stage" data-stage="' + esc(s) + '"><h3>' + esc(s) + '</h3><div class="panels">');
      panels.forEach(function (p) { if (p.stage === s) h.push(panelHtml(p, n++)); });
      h.push("</div></section>");
    });
    detail.innerHTML = h.join("");
    var btn = document.getElementById("toggle-before-after");
    if (btn) btn.addEventListener("click", toggle);
    var anim = document.getElementById("animate");
    if (anim) { anim.checked = !!state.timer; anim.addEventListener("change", function () { animate(anim.checked); }); }
    Array.prototype.forEach.call(detail.querySelectorAll("img.qc-img"), function (img) {
      img.addEventListener("click", function () { img.parentNode.classList.toggle("zoomed"); });
    });
    updateShowing();
  }
  function updateShowing() {
    var imgs = detail.querySelectorAll("img.toggle-img");
    var span = document.getElementById("showing");
    detail.classList.toggle("showing-after", state.showing === "after");
    Array.prototype.forEach.call(imgs, function (img) {
      var lab = img.parentNode.parentNode.querySelector(".showing-label");
      if (lab) lab.textContent = "showing: " + img.getAttribute("data-label-" + state.showing);
    });
    if (span && imgs.length) span.textContent = "showing: " + state.showing;
  }
  function toggle() {
    state.showing = state.showing === "after" ? "before" : "after";
    Array.prototype.forEach.call(detail.querySelectorAll("img.toggle-img"), function (img) {
      img.setAttribute("src", img.getAttribute("data-" + state.showing));
    });
    updateShowing();
  }
  function animate(on) {
    if (state.timer) { clearInterval(state.timer); state.timer = null; }
    if (on) state.timer = setInterval(toggle, 900);
    var box = document.getElementById("animate");
    if (box) box.checked = on;
  }

  // -- flags and keyboard -----------------------------------------------------------------------
  function setFlag(id, flag) {
    var flags = loadFlags();
    if (flag) flags[id] = flag; else delete flags[id];
    saveFlags(flags);
    renderRows();
    var row = rowOf(id);
    if (row) { row.className = "selected"; row.focus(); }
    updateFlagBadge();
  }
  function updateFlagBadge() {  // the pictures stay as they are (no reload)
    var badge = document.getElementById("detail-flag");
    var e = byId(state.selected);
    if (!badge || !e) return;
    var f = loadFlags()[e.id] || "none";
    badge.className = "badge f-" + f;
    badge.textContent = f;
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
    else if (k === " " && document.getElementById("animate")) { animate(!state.timer); ev.preventDefault(); }
    else if (k === "arrowdown" || k === "arrowup" || k === "j" || k === "k") {
      var rows = Array.prototype.slice.call(table.tBodies[0].rows);
      var i = rows.indexOf(rowOf(id));
      var j = (k === "arrowdown" || k === "j") ? Math.min(i + 1, rows.length - 1) : Math.max(i - 1, 0);
      if (rows[j]) { select(rows[j].getAttribute("data-id"), true); ev.preventDefault(); }
    }
  });

  // -- export / import --------------------------------------------------------------------------
  function showBox(title, text) {
    document.getElementById("export-title").textContent = title;
    document.getElementById("failures").value = text;
    document.getElementById("export-box").hidden = false;
  }
  document.getElementById("export-failures").addEventListener("click", function () {
    var flags = loadFlags();
    var lines = ENTRIES.filter(function (e) { return flags[e.id] === "fail"; }).map(function (e) {
      return JSON.stringify({ id: e.id, subject: e.subject, command: e.command, run_dir: e.run_dir, verdict: e.verdict });
    });
    var text = lines.join("\n");
    showBox("Entries flagged fail", text);
    download("qc_failures.jsonl", text + (text ? "\n" : ""), "text/plain");
  });
  document.getElementById("export-flags").addEventListener("click", function () {
    var flags = loadFlags();
    var out = { format: "spinereg-qc-flags", version: 1, report_id: DATA.report_id, root: DATA.root,
                exported: new Date().toISOString(), flags: {} };
    ENTRIES.forEach(function (e) {
      if (flags[e.id]) out.flags[e.id] = { flag: flags[e.id], subject: e.subject, command: e.command, run_dir: e.run_dir };
    });
    var text = JSON.stringify(out, null, 1);
    showBox("Flags (qc_flags.json)", text);
    download("qc_flags.json", text + "\n", "application/json");
    status(Object.keys(out.flags).length + " flags exported to qc_flags.json");
  });
  function importFlags(text) {
    var data;
    try { data = JSON.parse(text); } catch (err) { status("import: not a JSON file"); return; }
    var given = (data && data.flags) || {};
    var flags = loadFlags();
    var n = 0, skipped = 0;
    Object.keys(given).forEach(function (id) {
      var f = typeof given[id] === "string" ? given[id] : (given[id] || {}).flag;
      var e = byId(id);
      if (!e) {  // entry ids differ between QC folders: match by run folder and command
        var want = given[id] || {};
        e = ENTRIES.filter(function (x) { return x.run_dir === want.run_dir && x.command === want.command; })[0];
      }
      if (e && FLAGS.indexOf(f) >= 0) { flags[e.id] = f; n++; } else { skipped++; }
    });
    saveFlags(flags);
    renderRows();
    updateFlagBadge();
    status(n + " flags imported" + (skipped ? ", " + skipped + " not matching any entry" : ""));
  }
  document.getElementById("import-flags").addEventListener("change", function (ev) {
    var file = ev.target.files && ev.target.files[0];
    if (!file) return;
    var reader = new FileReader();
    reader.onload = function () { importFlags(String(reader.result)); ev.target.value = ""; };
    reader.readAsText(file);
  });

  [fVerdict, fCommand, fFlag].forEach(function (el) { el.addEventListener("change", renderRows); });
  fText.addEventListener("input", renderRows);
  renderHead();
  renderRows();
  if (ENTRIES.length) select(ENTRIES[ENTRIES.length - 1].id, false);
})();
