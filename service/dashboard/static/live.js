// Live progress of a running job over server-sent events; the page works without it.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  var nojs = live.querySelector(".nojs");
  if (nojs) nojs.remove();
  function set(id, text) {
    var el = document.getElementById(id);
    if (el) el.textContent = text;
  }
  function badge(state) {
    var holder = document.getElementById("state");
    if (!holder) return;
    var span = document.createElement("span");
    span.className = "badge v-" + state;
    span.textContent = state;
    holder.replaceChildren(span);
  }
  function finish() {
    // Fetch the finished page and swap its content in: no reload, full verdict view.
    fetch(window.location.href, { headers: { Accept: "text/html" } })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        var main = document.getElementById("main");
        if (fresh && main) main.replaceChildren.apply(main, Array.from(fresh.childNodes));
        document.title = doc.title;
      });
  }
  var source = new EventSource(live.dataset.events);
  source.addEventListener("progress", function (e) {
    var p = JSON.parse(e.data);
    var frac = Number(p.proved_fraction || 0);
    var bar = document.getElementById("proved");
    if (bar) bar.value = frac;
    set("pct", (100 * frac).toPrecision(4).replace(/\.?0+$/, ""));
    set("done", String(p.subproblems_done || 0));
    set("open", String(p.subproblems_open || 0));
    set("phase", p.phase || "search");
  });
  source.addEventListener("status", function (e) {
    var s = JSON.parse(e.data);
    set("status", s.status);
    if (s.status === "queued" || s.status === "running") {
      badge(s.status);
      return;
    }
    source.close();
    badge(s.status === "done" ? "finishing" : s.status);
    finish();
  });
  source.onerror = function () {
    // The stream ends after the final status; a broken connection is retried by the browser.
  };
})();
