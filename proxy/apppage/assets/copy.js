// Shows the "Copy" buttons (hidden without JavaScript) and copies the
// field each names. The page works without this script.
"use strict";
document.querySelectorAll("button[data-copy]").forEach(function (b) {
  var field = document.getElementById(b.dataset.copy);
  if (!field) return;
  b.hidden = false;
  b.addEventListener("click", function () {
    field.select();
    var done = function () { b.textContent = "Copied"; };
    if (navigator.clipboard) {
      navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); });
    } else {
      document.execCommand("copy");
      done();
    }
  });
});
