/* codeblue console: live panels over SSE, forms without page reloads, confirmations, countdowns.
   Hand-written, no dependencies. Everything works without it except live updates and countdowns. */
(function () {
  "use strict";

  var body = document.body;
  var flash = document.getElementById("flash");
  var liveBadge = document.getElementById("live");
  var pending = new Set();
  var lastLoad = new WeakMap();
  var seen = new WeakMap();

  function say(el, text, ok) {
    if (!el) return;
    el.textContent = text;
    el.className = el.className.replace(/\b(ok|err)\b/g, "").trim() + (ok ? " ok" : " err");
  }

  function flashMessage(text, ok) {
    if (!flash) return;
    flash.innerHTML = "";
    var p = document.createElement("p");
    p.className = "flash " + (ok ? "ok" : "err");
    if (!ok) p.setAttribute("role", "alert");
    p.textContent = text;
    flash.appendChild(p);
  }

  /* ----- fragments ------------------------------------------------------------------------------ */

  function held(section) {
    return parseInt(section.getAttribute("data-hold") || "0", 10) > Date.now();
  }

  function busy(section) {
    if (held(section)) return true;  /* an error was just shown here: let it be read */
    var a = document.activeElement;
    if (a && section.contains(a) && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName)) return true;
    var dirty = false;
    section.querySelectorAll("textarea, input:not([type=hidden])").forEach(function (i) {
      if (i.value && i.value !== i.defaultValue) dirty = true;
    });
    section.querySelectorAll("select").forEach(function (s) {
      var opt = s.options[s.selectedIndex];
      if (opt && !opt.defaultSelected && s.selectedIndex !== 0) dirty = true;
    });
    return dirty;
  }

  function refresh(section, force) {
    var src = section.getAttribute("data-live-src");
    if (!src) return Promise.resolve();
    if (!force && busy(section)) {
      section.setAttribute("data-stale", "1");
      return Promise.resolve();
    }
    var throttle = parseInt(section.getAttribute("data-throttle") || "0", 10);
    var now = Date.now();
    if (throttle && !force && lastLoad.has(section) && now - lastLoad.get(section) < throttle) {
      if (!pending.has(section)) {
        pending.add(section);
        setTimeout(function () { pending.delete(section); refresh(section, false); },
                   throttle - (now - lastLoad.get(section)));
      }
      return Promise.resolve();
    }
    lastLoad.set(section, now);
    return fetch(src, { headers: { "X-Console-Fragment": "1" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { window.location.href = "/console/login?next=" + encodeURIComponent(location.pathname); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (text) {
        if (text === null || text === undefined) return;
        /* typing began meanwhile, or an error was just shown here (even a forced refresh waits for that) */
        if ((!force && busy(section)) || held(section)) { section.setAttribute("data-stale", "1"); return; }
        var open = [];
        section.querySelectorAll("details").forEach(function (d, i) { if (d.open) open.push(i); });
        section.innerHTML = text;
        section.removeAttribute("data-stale");
        var all = section.querySelectorAll("details");
        open.forEach(function (i) { if (all[i]) all[i].open = true; });
        section.setAttribute("data-loaded", String(Date.now()));
        enhance(section);
        body.dispatchEvent(new CustomEvent("console:refreshed", { detail: section.id }));
      })
      .catch(function () { section.setAttribute("data-stale", "1"); });
  }

  function refreshTopics(topics) {
    document.querySelectorAll("[data-live-src]").forEach(function (section) {
      var want = (section.getAttribute("data-topics") || "").split(/\s+/).filter(Boolean);
      if (topics === null || want.some(function (t) { return topics.indexOf(t) >= 0; })) {
        refresh(section, false);
      }
    });
  }

  document.addEventListener("focusout", function () {
    setTimeout(function () {
      document.querySelectorAll("[data-stale]").forEach(function (s) { if (!busy(s)) refresh(s, true); });
    }, 50);
  });

  /* ----- live updates ---------------------------------------------------------------------------- */

  function connect() {
    var inc = body.getAttribute("data-live-incident");
    var page = body.getAttribute("data-live-page");
    if (!inc && !page || !window.EventSource) return;
    var url = "/console/events?" + (inc ? "incident=" + encodeURIComponent(inc) : "page=" + encodeURIComponent(page));
    var es = new EventSource(url);
    var hellos = 0;
    es.addEventListener("hello", function () {
      if (liveBadge) { liveBadge.textContent = "live"; liveBadge.setAttribute("data-state", "on"); }
      /* whatever changed while the stream was (re)connecting is fetched now */
      hellos += 1;
      document.querySelectorAll("[data-live-src][data-topics]").forEach(function (s) {
        if (hellos > 1 || !s.hasAttribute("data-lazy")) refresh(s, false);
      });
    });
    es.addEventListener("changed", function (ev) {
      var topics = [];
      try { topics = JSON.parse(ev.data).topics || []; } catch (e) { topics = []; }
      refreshTopics(topics);
    });
    es.onerror = function () {
      if (liveBadge) { liveBadge.textContent = "reconnecting"; liveBadge.setAttribute("data-state", "off"); }
    };
    es.onopen = function () {
      if (liveBadge) { liveBadge.textContent = "live"; liveBadge.setAttribute("data-state", "on"); }
    };
  }

  /* ----- forms ------------------------------------------------------------------------------------ */

  var dialog = document.getElementById("confirm");

  function confirmThen(text, go) {
    if (!dialog || typeof dialog.showModal !== "function") { if (window.confirm(text)) go(); return; }
    document.getElementById("confirm-text").textContent = text;
    dialog.returnValue = "";
    dialog.onclose = function () { if (dialog.returnValue === "ok") go(); };
    dialog.showModal();
    document.getElementById("confirm-ok").focus();
  }

  function send(form, submitter) {
    var msg = form.querySelector(".form-msg") || (form.parentElement && form.parentElement.querySelector(".form-msg"));
    var data = new FormData(form);
    if (submitter && submitter.name) data.append(submitter.name, submitter.value);
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    var panel = form.closest("[data-live-src]");
    if (panel) panel.setAttribute("data-hold", String(Date.now() + 15000));  /* not replaced while in flight */
    form.querySelectorAll("[aria-invalid]").forEach(function (i) { i.removeAttribute("aria-invalid"); });
    fetch(form.action, {
      method: "POST", credentials: "same-origin", body: new URLSearchParams(data),
      headers: { "Accept": "application/json" }
    }).then(function (r) {
      return r.json().catch(function () { return { detail: "the server answered " + r.status }; })
        .then(function (j) { return { ok: r.ok, status: r.status, body: j }; });
    }).then(function (res) {
      buttons.forEach(function (b) { b.disabled = false; });
      if (res.status === 401) { window.location.href = "/console/login?next=" + encodeURIComponent(location.pathname); return; }
      if (res.ok) {
        if (panel) panel.removeAttribute("data-hold");
        say(msg, res.body.message || "done", true);
        flashMessage(res.body.message || "done", true);
        form.querySelectorAll("textarea, input:not([type=hidden])").forEach(function (i) {
          if (i.type !== "checkbox") { i.value = ""; i.defaultValue = ""; }
        });
        var section = form.closest("[data-live-src]");
        refreshTopics(null);
        if (section) refresh(section, true);
      } else {
        var detail = (res.body && (res.body.detail || res.body.title)) || ("refused (" + res.status + ")");
        say(msg, detail, false);
        flashMessage(detail, false);
        if (panel) {
          panel.setAttribute("data-hold", String(Date.now() + 8000));
          setTimeout(function () { if (panel.getAttribute("data-stale")) refresh(panel, false); }, 8100);
        }
        var field = res.body && res.body.field;
        if (field) {
          var name = field.indexOf("facts.") === 0 ? "fact_" + field.slice(6) : field;
          var input = form.querySelector("[name='" + name.replace(/'/g, "") + "']");
          if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
        }
      }
    }).catch(function (e) {
      buttons.forEach(function (b) { b.disabled = false; });
      if (panel) panel.removeAttribute("data-hold");
      say(msg, "could not reach the server: " + e, false);
    });
  }

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("act")) return;
    ev.preventDefault();
    var text = form.getAttribute("data-confirm");
    var submitter = ev.submitter;
    if (text) confirmThen(text, function () { send(form, submitter); });
    else send(form, submitter);
  });

  /* ----- composer: show the facts the chosen audience must state ----------------------------------- */

  function composer(root) {
    root.querySelectorAll(".composer-form").forEach(function (form) {
      var sel = form.querySelector(".audience");
      if (!sel) return;
      function update() {
        form.querySelectorAll(".fact").forEach(function (label) {
          var needed = (label.getAttribute("data-for") || "").split(/\s+/).indexOf(sel.value) >= 0;
          label.hidden = !needed;
          label.classList.toggle("required", needed);
        });
      }
      sel.addEventListener("change", update);
      update();
    });
  }

  /* ----- countdowns ------------------------------------------------------------------------------- */

  function tick() {
    var nowMs = Date.now();
    document.querySelectorAll(".countdown").forEach(function (el) {
      if (!seen.has(el)) seen.set(el, nowMs);
      var serverNow = parseFloat(el.getAttribute("data-now")) + (nowMs - seen.get(el)) / 1000;
      var left = parseFloat(el.getAttribute("data-due")) - serverNow;
      var s = Math.abs(Math.round(left));
      var txt = s >= 3600 ? Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m"
              : s >= 60 ? Math.floor(s / 60) + "m " + (s % 60) + "s" : s + "s";
      el.textContent = left >= 0 ? "in " + txt : "overdue by " + txt;
      el.classList.toggle("overdue", left < 0);
    });
  }

  function enhance(root) {
    composer(root);
    tick();
  }

  document.addEventListener("DOMContentLoaded", function () {
    enhance(document);
    document.querySelectorAll("[data-lazy]").forEach(function (s) { refresh(s, true); });
    setInterval(tick, 1000);
    connect();
  });
})();
