// circuits serve / report: the edge-score slider of a circuit graph (the page works without it:
// the form beside it reloads with ?min_score=). Hides graph edges and edge-table rows below the
// slider's score and updates the count; no network, no other script.
(function () {
  "use strict";
  function setup(form) {
    var range = form.querySelector("input[type=range]");
    var box = form.querySelector("input[name=min_score]");
    var count = document.getElementById(form.dataset.count);
    if (!range) return;
    range.hidden = false;
    function apply() {
      var t = parseFloat(range.value);
      var items = document.querySelectorAll("[data-score]");
      var shown = 0, total = 0;
      items.forEach(function (el) {
        var below = parseFloat(el.dataset.score) < t;
        el.classList.toggle("below", below);
        if (el.matches("g.edge")) { total += 1; if (!below) shown += 1; }
      });
      if (box) box.value = t > 0 ? range.value : "";
      if (count) count.textContent = shown + " of " + total + " drawn edges shown" + (t > 0 ? " (score \u2265 " + (+t).toPrecision(4) + ")" : "");
    }
    range.addEventListener("input", apply);
  }
  document.querySelectorAll("form.edge-filter").forEach(setup);
})();
