/* Lotse web chat widget. Embed with:
 *   <script src="https://HOST/widget.js" data-lang="de" defer></script>
 * Speaks Rasa's socket.io channel protocol over a WebSocket (Engine.IO 4, Socket.IO 5) with a
 * small client of its own, so no third-party script is loaded. Every text is rendered as text;
 * links become <a> only for http(s) URLs. After each client message the server sends "lotse_ack":
 * the turn is over (no typing indicator any more), the conversation's language (the labels follow
 * it) and whether the message went to the advisers instead of the bot. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__lotseWidget) return;
  window.__lotseWidget = true;

  var base = new URL(script.src, location.href);
  var origin = base.origin;
  var LANGS = [["de", "Deutsch"], ["en", "English"], ["ar", "العربية"], ["uk", "Українська"],
               ["ru", "Русский"], ["tr", "Türkçe"], ["fa", "فارسی"], ["fr", "Français"]];
  var RTL = { ar: true, fa: true };
  // Labels of the widget's own frame, authored in content/ and served by the app per language:
  // title, placeholder, send, open, close, language, typing, reconnecting, machine, download.
  var UI = {};
  function label(name, language) { var labels = UI[language || lang] || UI.de || {}; return labels[name] || ""; }
  function known(code) { return LANGS.some(function (l) { return l[0] === code; }); }

  function store(key, value) {
    try { if (value === undefined) return localStorage.getItem("lotse." + key); localStorage.setItem("lotse." + key, value); }
    catch (e) { return null; }
    return value;
  }
  function newSessionId() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  var lang = store("lang") || script.getAttribute("data-lang") || (navigator.language || "de").slice(0, 2);
  if (!known(lang)) lang = "de";
  var sessionId = store("session") || newSessionId();
  store("session", sessionId);
  var lastSeenId = 0, unread = 0, open = false, socket = null, connected = false, confirmed = false;
  var queue = [], retry = 0, typingTimer = null;
  // Client messages waiting for their "lotse_ack", by an id unique to this page.
  var pending = Object.create(null), pageId = newSessionId().slice(0, 8), sent = 0;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  var css = el("link", { rel: "stylesheet", href: origin + "/widget.css" });
  document.head.appendChild(css);
  var root = el("div", { class: "lotse-root" });
  var launcher = el("button", { class: "lotse-launcher", type: "button", "aria-expanded": "false" });
  // A speech-bubble icon as SVG: emoji fonts are missing on many systems.
  var launcherIcon = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  launcherIcon.setAttribute("viewBox", "0 0 24 24");
  launcherIcon.setAttribute("aria-hidden", "true");
  launcherIcon.setAttribute("class", "lotse-icon");
  var bubblePath = document.createElementNS("http://www.w3.org/2000/svg", "path");
  bubblePath.setAttribute("d", "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z");
  bubblePath.setAttribute("fill", "currentColor");
  launcherIcon.appendChild(bubblePath);
  var badge = el("span", { class: "lotse-badge", hidden: "" });
  launcher.appendChild(launcherIcon);
  launcher.appendChild(badge);
  var panel = el("section", { class: "lotse-panel", role: "dialog", hidden: "" });
  var header = el("header", { class: "lotse-header" });
  var title = el("h2", { class: "lotse-title", id: "lotse-title" });
  var picker = el("select", { class: "lotse-lang" });
  LANGS.forEach(function (l) { picker.appendChild(el("option", { value: l[0], lang: l[0] }, l[1])); });
  var close = el("button", { class: "lotse-close", type: "button" }, "×");
  header.appendChild(title); header.appendChild(picker); header.appendChild(close);
  var log = el("div", { class: "lotse-log", role: "log", "aria-live": "polite", "aria-relevant": "additions", tabindex: "0" });
  var status = el("p", { class: "lotse-status", role: "status", hidden: "" });
  var form = el("form", { class: "lotse-form" });
  var input = el("textarea", { class: "lotse-input", rows: "1", maxlength: "4000" });
  var send = el("button", { class: "lotse-send", type: "submit" });
  form.appendChild(input); form.appendChild(send);
  panel.appendChild(header); panel.appendChild(log); panel.appendChild(status); panel.appendChild(form);
  panel.setAttribute("aria-labelledby", "lotse-title");
  root.appendChild(panel); root.appendChild(launcher);
  document.body.appendChild(root);

  function applyLanguage() {
    title.textContent = label("title");
    input.setAttribute("placeholder", label("placeholder"));
    input.setAttribute("aria-label", label("placeholder"));
    send.textContent = label("send");
    launcher.setAttribute("aria-label", open ? label("close") : label("open"));
    close.setAttribute("aria-label", label("close"));
    picker.setAttribute("aria-label", label("language"));
    var typing = log.querySelector(".lotse-typing");
    if (typing) typing.textContent = label("typing");
    picker.value = lang;
    panel.setAttribute("dir", RTL[lang] ? "rtl" : "ltr");
    panel.setAttribute("lang", lang);
  }

  function linkify(parent, text) {
    var parts = text.split(/(https?:\/\/[^\s<>"']+)/g);
    parts.forEach(function (part, i) {
      if (i % 2 === 1) {
        var url;
        try { url = new URL(part); } catch (e) { url = null; }
        if (url && (url.protocol === "https:" || url.protocol === "http:")) {
          var a = el("a", { href: url.href, target: "_blank", rel: "noopener noreferrer" }, part);
          parent.appendChild(a);
          return;
        }
      }
      parent.appendChild(document.createTextNode(part));
    });
  }

  function setLanguage(code) {
    if (!known(code) || code === lang) return;
    lang = code; store("lang", lang); applyLanguage();
  }

  function addMessage(from, text, meta, buttons) {
    meta = meta || {};
    var row = el("div", { class: "lotse-msg lotse-" + from });
    var language = meta.language || (from === "client" ? null : lang);
    if (language) { row.setAttribute("lang", language); row.setAttribute("dir", RTL[language] ? "rtl" : "auto"); }
    else row.setAttribute("dir", "auto");
    var bubble = el("div", { class: "lotse-bubble" });
    linkify(bubble, text || "");
    row.appendChild(bubble);
    // The server moves the mark out of the text into meta.mark, so it is shown once, under the bubble.
    if (meta.machine_translated) row.appendChild(el("small", { class: "lotse-mt" }, meta.mark || label("machine", language)));
    if (meta.attachment) {
      var blob = new Blob([meta.attachment.content], { type: meta.attachment.mime_type });
      var link = el("a", { class: "lotse-file", href: URL.createObjectURL(blob), download: meta.attachment.filename }, label("download") + " (" + meta.attachment.filename + ")");
      row.appendChild(link);
    }
    if (buttons && buttons.length) {
      var group = el("div", { class: "lotse-buttons", role: "group" });
      buttons.forEach(function (b) {
        var btn = el("button", { type: "button", class: "lotse-button" }, b.title);
        btn.addEventListener("click", function () {
          group.querySelectorAll("button").forEach(function (x) { x.disabled = true; });
          sendMessage(b.payload, b.title);
        });
        group.appendChild(btn);
      });
      row.appendChild(group);
    }
    log.appendChild(row);
    log.scrollTop = log.scrollHeight;
    if (from === "bot" && !open) { unread += 1; badge.textContent = String(unread); badge.hidden = false; }
    return row;
  }

  function setTyping(on) {
    clearTimeout(typingTimer);
    var existing = log.querySelector(".lotse-typing");
    if (on && !existing) {
      var typing = el("div", { class: "lotse-typing", "aria-hidden": "true" }, label("typing"));
      log.appendChild(typing);
      log.scrollTop = log.scrollHeight;
      typingTimer = setTimeout(function () { setTyping(false); }, 30000);
    } else if (!on && existing) existing.remove();
  }

  /* --- Socket.IO 5 over Engine.IO 4, WebSocket transport only --- */
  function emit(event, data) {
    if (socket && connected) socket.send("42" + JSON.stringify([event, data]));
  }
  function connect() {
    var scheme = base.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(scheme + "//" + base.host + "/socket.io/?EIO=4&transport=websocket");
    socket.onmessage = function (ev) {
      var data = String(ev.data);
      if (data === "2") { socket.send("3"); return; }            // ping -> pong
      if (data.charAt(0) === "0") { socket.send("40"); return; } // engine open -> connect namespace
      if (data.slice(0, 2) === "40") {                         // namespace connected
        connected = true; retry = 0; status.hidden = true;
        emit("session_request", { session_id: sessionId });
        return;
      }
      if (data.slice(0, 2) === "42") {
        var packet = JSON.parse(data.slice(2));
        onEvent(packet[0], packet[1]);
      }
    };
    socket.onclose = function () {
      connected = false; confirmed = false;
      status.textContent = label("reconnecting"); status.hidden = false;
      retry = Math.min(retry + 1, 6);
      setTimeout(connect, 500 * Math.pow(2, retry - 1));
    };
  }
  function onEvent(name, data) {
    if (name === "session_confirm") {
      confirmed = true;
      loadHistory(function () { while (queue.length) emit("user_uttered", queue.shift()); });
    } else if (name === "bot_uttered") {
      setTyping(false);
      var meta = (data.metadata && data.metadata.lotse) || {};
      if (data.metadata && data.metadata.attachment) meta.attachment = data.metadata.attachment;
      addMessage("bot", data.text, meta, data.quick_replies || data.buttons);
    } else if (name === "lotse_ack" && data) {
      onAck(data);
    }
  }
  function onAck(ack) {
    // Every tab of the session gets it; only the sending tab knows the id.
    var row = ack.id && pending[ack.id];
    if (ack.id) delete pending[ack.id];
    setTyping(false);
    if (ack.language) setLanguage(ack.language);
    if (row && ack.forwarded && ack.note) {
      row.appendChild(el("small", { class: "lotse-sent", lang: ack.language || lang, dir: "auto" }, ack.note));
      log.scrollTop = log.scrollHeight;
    }
  }
  function sendMessage(text, shown) {
    var id = pageId + "-" + (++sent);
    var payload = { message: text, session_id: sessionId, customData: { language: lang, id: id } };
    pending[id] = addMessage("client", shown || text, {});
    setTyping(true);
    if (connected && confirmed) emit("user_uttered", payload); else queue.push(payload);
  }
  function loadHistory(done) {
    fetch(origin + "/widget/history/" + sessionId).then(function (r) { return r.json(); }).then(function (body) {
      (body.messages || []).forEach(function (m) {
        if (m.id <= lastSeenId) return;
        lastSeenId = m.id;
        if (!m.text) return;
        var row = addMessage(m.from, m.text, { language: m.from === "bot" ? m.language : null, machine_translated: m.machine_translated, mark: m.mark });
        if (m.forwarded && m.note) row.appendChild(el("small", { class: "lotse-sent", lang: m.note_language || lang, dir: "auto" }, m.note));
      });
      if (log.lastChild) { unread = 0; badge.hidden = true; }
    }).catch(function () {}).then(done);
  }

  function toggle(show) {
    open = show;
    panel.hidden = !show;
    launcher.setAttribute("aria-expanded", String(show));
    applyLanguage();
    if (show) { unread = 0; badge.hidden = true; input.focus(); } else launcher.focus();
  }
  launcher.addEventListener("click", function () { toggle(!open); });
  close.addEventListener("click", function () { toggle(false); });
  panel.addEventListener("keydown", function (ev) { if (ev.key === "Escape") toggle(false); });
  picker.addEventListener("change", function () {
    setLanguage(picker.value);
    sendMessage('/choose_language{"language":"' + lang + '"}', LANGS.filter(function (l) { return l[0] === lang; })[0][1]);
  });
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    sendMessage(text);
  });
  input.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); form.requestSubmit(); }
  });

  applyLanguage();
  fetch(origin + "/widget/texts").then(function (r) { return r.json(); }).then(function (labels) {
    UI = labels; applyLanguage();
  }).catch(function () {});
  connect();
  if (script.getAttribute("data-open") === "true") toggle(true);
})();
