// Table filters and sorting, copy buttons. Text goes into the page through textContent and
// option values only (never innerHTML), so a case id cannot become markup here either.
(function () {
  "use strict";
  function rowsOf(table) { return Array.prototype.slice.call(table.tBodies[0].rows); }

  function text(row, i) { return row.cells[i] ? row.cells[i].textContent.trim() : ""; }

  // A header cell marked data-filter gets a drop-down of its column's values; one text box
  // searches the case column (or the whole row when there is none).
  function addFilters(table) {
    var rows = rowsOf(table);
    var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var caseCol = heads.findIndex(function (h) { return h.textContent.trim() === "case"; });
    var bar = document.createElement("div");
    bar.className = "filters";
    var selects = [];
    heads.forEach(function (th, i) {
      if (!th.hasAttribute("data-filter")) return;
      var values = {};
      rows.forEach(function (r) { var v = text(r, i); values[v] = (values[v] || 0) + 1; });
      var names = Object.keys(values).sort();
      if (names.length < 2) return;
      var label = document.createElement("label");
      label.textContent = th.textContent.trim() + " ";
      var sel = document.createElement("select");
      sel.dataset.filter = th.textContent.trim();
      var all = document.createElement("option");
      all.value = ""; all.textContent = "all (" + rows.length + ")";
      sel.appendChild(all);
      names.forEach(function (n) {
        var o = document.createElement("option");
        o.value = n; o.textContent = (n === "" ? "(none)" : n) + " (" + values[n] + ")";
        sel.appendChild(o);
      });
      sel.addEventListener("change", apply);
      label.appendChild(sel);
      bar.appendChild(label);
      selects.push([i, sel]);
    });
    var search = document.createElement("input");
    search.type = "search"; search.placeholder = "case id contains"; search.dataset.filter = "text";
    search.addEventListener("input", apply);
    bar.appendChild(search);
    var shown = document.createElement("span");
    shown.className = "shown";
    bar.appendChild(shown);
    table.parentNode.insertBefore(bar, table);

    function apply() {
      var want = search.value.toLowerCase(), n = 0;
      rows.forEach(function (r) {
        var ok = selects.every(function (s) { return s[1].value === "" || text(r, s[0]) === s[1].value; });
        if (ok && want) ok = (caseCol >= 0 ? text(r, caseCol) : r.textContent).toLowerCase().indexOf(want) >= 0;
        r.style.display = ok ? "" : "none";
        n += ok;
      });
      shown.textContent = n + " of " + rows.length + " rows";
    }
    apply();
  }

  function cellValue(row, i) {
    var t = row.cells[i] ? row.cells[i].textContent.trim() : "";
    var x = parseFloat(t);
    return { num: t !== "" && !isNaN(x) && /^[-+.\d]/.test(t), x: x, t: t };
  }

  function addSorting(table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, i) {
      th.classList.add("sortable-h");
      th.title = "click to sort";
      th.addEventListener("click", function () {
        var desc = th.classList.contains("sorted-asc");
        Array.prototype.forEach.call(heads, function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
        th.classList.add(desc ? "sorted-desc" : "sorted-asc");
        var body = table.tBodies[0];
        var rows = rowsOf(table);
        rows.sort(function (a, b) {
          var x = cellValue(a, i), y = cellValue(b, i), c;
          if (x.num && y.num) c = x.x - y.x;
          else if (x.num !== y.num) c = x.num ? -1 : 1;  // numbers before blanks
          else c = x.t.localeCompare(y.t);
          return desc ? -c : c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }

  function copyText(text, button) {
    function done() { button.classList.add("done"); button.textContent = "copied"; }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
    } else { fallback(text); done(); }
  }

  function fallback(text) {
    var ta = document.createElement("textarea");
    ta.value = text;
    document.body.appendChild(ta);
    ta.select();
    try { document.execCommand("copy"); } catch (e) { /* the command stays in the button's title */ }
    document.body.removeChild(ta);
  }

  // the all-results table carries each repro command on its cell; the buttons are made here
  // (thousands of rows: the markup stays small)
  document.querySelectorAll("td[data-copy]").forEach(function (td) {
    if (!td.dataset.copy) return;
    var b = document.createElement("button");
    b.type = "button"; b.className = "copy"; b.textContent = "copy"; b.title = td.dataset.copy;
    b.dataset.copy = td.dataset.copy;
    td.appendChild(b);
  });
  document.querySelectorAll("table.filterable").forEach(addFilters);
  document.querySelectorAll("table.data").forEach(addSorting);
  document.querySelectorAll("button.copy").forEach(function (b) {
    b.addEventListener("click", function () { copyText(b.dataset.copy, b); });
  });
  document.documentElement.dataset.ready = "1";
})();
