// The console's only script: live refresh of pages that ask for it, "select all", and a
// confirmation that names how many items a bulk DLQ action is about. Every page works
// without it.
"use strict";

(function () {
  // Pages with data-refresh="N" reload their main content every N seconds while visible,
  // unless focus is inside it (a half-typed filter is not thrown away).
  function refresher(main) {
    var secs = parseInt(main.getAttribute("data-refresh"), 10);
    if (!secs) return;
    setInterval(function () {
      if (document.hidden || main.contains(document.activeElement) && document.activeElement !== main) return;
      fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.redirected || !r.ok) { if (r.redirected) location.reload(); return null; }
          return r.text();
        })
        .then(function (text) {
          if (!text) return;
          var doc = new DOMParser().parseFromString(text, "text/html");
          var fresh = doc.getElementById("main");
          if (fresh) main.innerHTML = fresh.innerHTML;
        })
        .catch(function () { /* the next tick retries */ });
    }, secs * 1000);
  }

  function selectAll(form) {
    var all = form.querySelector("[data-select-all]");
    if (!all) return;
    all.addEventListener("change", function () {
      form.querySelectorAll("input[name=id]").forEach(function (box) { box.checked = all.checked; });
    });
  }

  function confirmSelection(form) {
    form.addEventListener("submit", function (ev) {
      var btn = ev.submitter;
      if (!btn) return;
      var action, n;
      if (btn.name === "one") {
        action = btn.value.split(":")[0];
        n = 1;
      } else {
        action = btn.value;
        n = form.querySelectorAll("input[name=id]:checked").length;
        if (n === 0) { ev.preventDefault(); alert("Select at least one item first."); return; }
      }
      var verb = action === "discard" ? "Discard" : "Retry";
      if (!confirm(verb + " " + n + (n === 1 ? " item" : " items") + "?")) ev.preventDefault();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var main = document.getElementById("main");
    if (main) refresher(main);
    document.querySelectorAll("form[data-confirm-selection]").forEach(function (f) {
      selectAll(f);
      confirmSelection(f);
    });
  });
})();
