// Filters of the review page: hide turns whose outcome is unticked, that did not raise the chosen category, or
// (with "only flagged turns" ticked) that no verdict flagged for a human, and conversations left with no
// visible turn. Reads only data-* attributes.
(function () {
  var boxes = document.querySelectorAll('input[name="outcome"]');
  var select = document.getElementById("category-filter");
  var count = document.getElementById("filter-count");
  var flagged = document.getElementById("flagged-filter");  // absent when no turn is flagged
  function apply() {
    var allowed = {};
    boxes.forEach(function (b) { allowed[b.value] = b.checked; });
    var category = select.value;
    var shown = 0, total = 0;
    document.querySelectorAll("section.conv").forEach(function (conv) {
      var visible = 0;
      conv.querySelectorAll("article.turn").forEach(function (turn) {
        var cats = JSON.parse(turn.getAttribute("data-categories") || "[]");
        var ok = allowed[turn.getAttribute("data-outcome")] !== false && (!category || cats.indexOf(category) >= 0) &&
          (!flagged || !flagged.checked || turn.getAttribute("data-flagged") === "true");
        turn.hidden = !ok;
        total += 1;
        if (ok) { visible += 1; shown += 1; }
      });
      conv.hidden = visible === 0 && conv.querySelectorAll("article.turn").length > 0;
    });
    count.textContent = "showing " + shown + " of " + total + " turns";
  }
  boxes.forEach(function (b) { b.addEventListener("change", apply); });
  select.addEventListener("change", apply);
  if (flagged) { flagged.addEventListener("change", apply); }
  apply();
})();
