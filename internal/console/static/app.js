// Ringmaster console: live regions and rule checking. Plain JavaScript,
// no framework; the pages work without it (forms post, links navigate).
"use strict";

(function () {
  // Live regions: every few seconds fetch this page again and swap in each
  // [data-live] region that changed, unless the person is typing in it.
  var every = parseInt(document.body.dataset.liveRefresh || "0", 10);
  if (every > 0) {
    var busy = false;
    var refresh = function () {
      if (busy || document.visibilityState !== "visible") return;
      busy = true;
      fetch(location.href, { headers: { "X-Console-Live": "1" }, credentials: "same-origin", redirect: "follow" })
        .then(function (res) {
          if (res.redirected && res.url.indexOf("/ui/sign-in") >= 0) { location.reload(); return null; }
          return res.ok ? res.text() : null;
        })
        .then(function (html) {
          if (!html) return;
          var doc = new DOMParser().parseFromString(html, "text/html");
          document.querySelectorAll("[data-live]").forEach(function (old) {
            var fresh = doc.getElementById(old.id);
            if (!fresh || fresh.innerHTML === old.innerHTML) return;
            if (old.contains(document.activeElement) && document.activeElement !== document.body) return;
            if (old.querySelector("input:not([type=hidden]), textarea") && Array.prototype.some.call(
              old.querySelectorAll("input:not([type=hidden]), textarea"), function (i) { return i.value !== ""; })) return;
            old.innerHTML = fresh.innerHTML;
          });
          document.body.dataset.refreshed = String(Date.now());
        })
        .catch(function () { /* the next tick tries again */ })
        .finally(function () { busy = false; });
    };
    setInterval(refresh, every);
  }

  // Rule checking: a textarea with data-check-rule posts its rule to that
  // URL as it is typed and shows whether the rule compiles.
  document.querySelectorAll("[data-check-rule]").forEach(function (area) {
    var out = document.getElementById(area.getAttribute("aria-describedby"));
    var form = area.form;
    var csrf = form.querySelector("input[name=csrf]").value;
    var timer = null;
    var check = function () {
      var body = new URLSearchParams();
      body.set("rule", area.value);
      fetch(area.dataset.checkRule, { method: "POST", body: body, credentials: "same-origin", headers: { "X-CSRF-Token": csrf } })
        .then(function (res) { return res.json(); })
        .then(function (r) {
          out.textContent = r.ok ? "The rule is valid." : r.error;
          out.className = "rule-check " + (r.ok ? "valid" : "invalid");
          area.setAttribute("aria-invalid", r.ok ? "false" : "true");
        })
        .catch(function () { out.textContent = ""; });
    };
    area.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(check, 250); });
  });

  // Continue after an identity provider's sign-in.
  var cont = document.getElementById("continue");
  if (cont) location.replace(cont.getAttribute("href"));
})();
