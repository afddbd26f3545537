// ringway developer portal: drives the "Try it" form. Served from the portal's own assets
// (the page's Content-Security-Policy allows no inline script). It sends a real request to
// the gateway path on the same origin and shows the status, headers and body as text.
"use strict";
(function () {
  var form = document.getElementById("try-form");
  if (!form) { return; }
  var out = document.getElementById("try-result");
  var statusEl = document.getElementById("try-status");
  var headersEl = document.getElementById("try-headers");
  var bodyEl = document.getElementById("try-body-out");
  var send = document.getElementById("try-send");
  form.hidden = false;

  function buildRequest() {
    var path = form.getAttribute("data-path") || "/";
    var method = form.getAttribute("data-method") || "GET";
    var query = [];
    var headers = {};
    var inputs = form.querySelectorAll("input[data-in]");
    for (var i = 0; i < inputs.length; i++) {
      var el = inputs[i];
      var where = el.getAttribute("data-in");
      var name = el.getAttribute("data-name");
      var value = el.value;
      if (where === "path") {
        path = path.split("{" + name + "}").join(encodeURIComponent(value));
      } else if (value === "") {
        continue;
      } else if (where === "query") {
        query.push(encodeURIComponent(name) + "=" + encodeURIComponent(value));
      } else if (where === "header") {
        headers[name] = value;
      }
    }
    var cred = form.querySelector("input[data-cred]");
    if (cred && cred.value !== "") {
      var how = cred.getAttribute("data-cred");
      var cname = cred.getAttribute("data-name");
      if (how === "bearer") {
        headers["Authorization"] = "Bearer " + cred.value;
      } else if (how === "query") {
        query.push(encodeURIComponent(cname) + "=" + encodeURIComponent(cred.value));
      } else {
        headers[cname] = cred.value;
      }
    }
    var init = { method: method, headers: headers, credentials: "omit", redirect: "manual" };
    var bodyIn = document.getElementById("try-body");
    if (bodyIn && method !== "GET" && method !== "HEAD") {
      init.body = bodyIn.value;
      var media = form.getAttribute("data-media");
      if (media && media.indexOf("*") < 0) { headers["Content-Type"] = media; }
    }
    var url = path + (query.length ? "?" + query.join("&") : "");
    return { url: url, init: init };
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var req = buildRequest();
    send.disabled = true;
    statusEl.textContent = "sending " + req.init.method + " " + req.url + " ...";
    headersEl.textContent = "";
    bodyEl.textContent = "";
    out.hidden = false;
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    if (controller) {
      req.init.signal = controller.signal;
      setTimeout(function () { controller.abort(); }, 30000);
    }
    fetch(req.url, req.init).then(function (res) {
      statusEl.textContent = res.status + " " + res.statusText;
      var lines = [];
      res.headers.forEach(function (v, k) { lines.push(k + ": " + v); });
      headersEl.textContent = lines.join("\n");
      return res.text();
    }).then(function (text) {
      // JSON is shown indented; anything else exactly as received.
      var shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { shown = text; }
      bodyEl.textContent = shown;
    }).catch(function (err) {
      statusEl.textContent = "request failed: " + err;
    }).then(function () {
      send.disabled = false;
      out.focus();
    });
  });
})();
