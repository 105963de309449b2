// Copy buttons: <button data-copy="id-of-element"> copies that element's text.
(function () {
  "use strict";
  document.addEventListener("click", function (e) {
    var button = e.target.closest("button[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.dataset.copy);
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });
  // Elapsed time of a running job, ticking between progress events.
  var elapsed = document.getElementById("elapsed");
  if (elapsed && elapsed.dataset.seconds) {
    var start = Date.now() - 1000 * Number(elapsed.dataset.seconds);
    setInterval(function () {
      if (!document.body.contains(elapsed)) return;
      elapsed.textContent = Math.round((Date.now() - start) / 1000) + " s";
    }, 1000);
  }
})();
