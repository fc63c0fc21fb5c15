// hubsync portal: refreshes the parts of a page marked `data-refresh="URL"`
// every two seconds while the tab is visible, so a group's state follows a
// running sync without a full reload. Pages work without this script.
(function () {
  "use strict";
  function poll(element) {
    var url = element.getAttribute("data-refresh");
    var busy = false;
    setInterval(function () {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (response.ok && !response.redirected) { return response.text(); }
          return null;
        })
        .then(function (html) {
          if (html === null) { return; }
          // Keep open <details> open across a refresh.
          var open = [];
          element.querySelectorAll("details[open] > summary").forEach(function (s) { open.push(s.textContent); });
          element.innerHTML = html;
          element.querySelectorAll("details > summary").forEach(function (s) {
            if (open.indexOf(s.textContent) >= 0) { s.parentNode.open = true; }
          });
        })
        .catch(function () { /* the next tick tries again */ })
        .then(function () { busy = false; });
    }, 2000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh]").forEach(poll);
  });
})();
