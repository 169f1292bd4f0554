// Local Telemetry console: small progressive enhancements. Everything works without
// this file; it only localises times, pauses polling in hidden tabs and adds a
// "select all" box. No eval, no inline handlers: the CSP (default-src 'self') holds.
(function () {
  "use strict";

  var pad = function (n) { return (n < 10 ? "0" : "") + n; };

  // <time datetime="...UTC..."> → the viewer's local time; UTC stays in the tooltip.
  function localiseTimes(root) {
    var nodes = (root || document).querySelectorAll("time[datetime]:not([data-local])");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      var moment = new Date(node.getAttribute("datetime"));
      if (isNaN(moment.getTime())) { continue; }
      node.textContent = moment.getFullYear() + "-" + pad(moment.getMonth() + 1) + "-" + pad(moment.getDate()) +
        " " + pad(moment.getHours()) + ":" + pad(moment.getMinutes()) + ":" + pad(moment.getSeconds());
      node.title = node.getAttribute("datetime").replace("T", " ").replace(/\.\d+/, "").replace("+00:00", " UTC");
      node.setAttribute("data-local", "");
    }
  }

  // "Select all" checkboxes: shown only when this script runs.
  function wireSelectAll(root) {
    var boxes = (root || document).querySelectorAll("input[data-select-all]");
    for (var i = 0; i < boxes.length; i++) {
      var box = boxes[i];
      if (box.hasAttribute("data-wired")) { continue; }
      box.setAttribute("data-wired", "");
      box.hidden = false;
      box.addEventListener("change", function (event) {
        var master = event.target;
        var form = master.form || master.closest("form");
        var name = master.getAttribute("data-select-all");
        var items = form.querySelectorAll('input[type="checkbox"][name="' + name + '"]');
        for (var j = 0; j < items.length; j++) { items[j].checked = master.checked; }
      });
    }
  }

  function enhance(root) {
    localiseTimes(root);
    wireSelectAll(root);
  }

  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  document.addEventListener("htmx:load", function (event) { enhance(event.target); });

  // Polling elements ([data-poll]) do not ask while the tab is hidden, and ask
  // at once when it becomes visible again.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var source = event.detail && event.detail.elt;
    if (source && source.hasAttribute && source.hasAttribute("data-poll") && document.visibilityState !== "visible") {
      event.preventDefault();
    }
  });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState !== "visible" || !window.htmx) { return; }
    var pollers = document.querySelectorAll("[data-poll]");
    for (var i = 0; i < pollers.length; i++) { window.htmx.trigger(pollers[i], "poll-now"); }
  });

  // Filter forms ([data-drop-empty]) leave empty fields out of the URL they push.
  document.addEventListener("htmx:configRequest", function (event) {
    var source = event.detail && event.detail.elt;
    var form = source && source.closest ? source.closest("form[data-drop-empty]") : null;
    if (!form || event.detail.verb !== "get") { return; }
    var params = event.detail.parameters;
    var names = [];
    params.forEach(function (value, name) { if (value === "") { names.push(name); } });
    for (var i = 0; i < names.length; i++) { params.delete(names[i]); }
  });

  // While a results block is being replaced, say so to assistive technology.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var target = event.detail && event.detail.target;
    if (target && target.setAttribute && target.hasAttribute("aria-busy")) { target.setAttribute("aria-busy", "true"); }
  });
})();
