// Lotse adviser console: live updates over server-sent events. Every text from the server is set with
// textContent, never as HTML. No inline script: the CSP allows scripts from /console/static only.
"use strict";
(function () {
  const body = document.body;
  const page = body.dataset.page;
  if (page === "login" || page === "missing") return;
  const live = document.getElementById("live");
  const connection = document.getElementById("connection");

  function say(text) {
    if (live) live.textContent = text;
  }

  async function getJson(url) {
    // Marked as background: these refreshes must not keep an abandoned session alive.
    const response = await fetch(url, {
      headers: { Accept: "application/json", "X-Console-Background": "1" },
      credentials: "same-origin",
    });
    if (response.status === 401) {
      window.location.assign("/console/login");
      throw new Error("signed out");
    }
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response.json();
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function renderQueue(tickets) {
    const tbody = document.getElementById("queue-rows");
    if (!tbody) return;
    const known = new Set(Array.from(tbody.querySelectorAll("tr")).map((tr) => tr.dataset.ticket));
    const rows = tickets.map((t) => {
      const tr = document.createElement("tr");
      tr.dataset.ticket = String(t.id);
      tr.className = "status-" + t.status + (t.mine ? " mine" : "") + (known.has(String(t.id)) ? "" : " new");
      const link = document.createElement("a");
      link.href = "/console/tickets/" + encodeURIComponent(t.id);
      link.textContent = "#" + t.id;
      cell(tr, "").appendChild(link);
      [t.status_label, t.created, t.waited, t.language_label, t.channel_label, t.topic_label, t.reason_label,
        t.adviser].forEach((text) => cell(tr, text));
      return tr;
    });
    tbody.replaceChildren(...rows);
    const empty = document.getElementById("queue-empty");
    if (empty) empty.hidden = tickets.length > 0;
  }

  async function refreshQueue() {
    const data = await getJson("/console/api/queue");
    renderQueue(data.tickets);
  }

  function renderMessage(m) {
    const li = document.createElement("li");
    li.className = "message from-" + m.author + (m.note ? " note" : "") + " new";
    li.dataset.id = String(m.id);
    const meta = document.createElement("div");
    meta.className = "meta";
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = m.author_label;
    const time = document.createElement("time");
    time.textContent = m.time;
    meta.append(author, " ", time);
    [m.kind, m.proposal ? "Terminvorschlag" : ""].forEach((label) => {
      if (!label) return;
      const kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = label;
      meta.append(" ", kind);
    });
    const texts = document.createElement("div");
    texts.className = "texts";
    const german = document.createElement("p");
    german.className = "german";
    german.lang = "de";
    german.textContent = m.german;
    if (m.mark) {
      const mark = document.createElement("span");
      mark.className = "mark";
      mark.textContent = m.mark;
      german.append(" ", mark);
    }
    texts.appendChild(german);
    if (m.original) {
      const original = document.createElement("p");
      original.className = "original";
      original.lang = m.language;
      original.dir = "auto";
      const lang = document.createElement("span");
      lang.className = "lang";
      lang.textContent = m.language_label + ":";
      original.append(lang, " ", m.original);
      texts.appendChild(original);
    }
    li.append(meta, texts);
    return li;
  }

  let loading = Promise.resolve();
  function refreshMessages() {
    // One fetch at a time, so two quick events do not add the same message twice.
    loading = loading.then(async () => {
      const list = document.getElementById("messages");
      if (!list) return;
      const last = Number(body.dataset.last || "0");
      const data = await getJson("/console/api/tickets/" + body.dataset.ticket + "/messages?after=" + last);
      for (const m of data.messages) {
        if (list.querySelector('li[data-id="' + m.id + '"]')) continue;
        list.appendChild(renderMessage(m));
        body.dataset.last = String(Math.max(Number(body.dataset.last || "0"), m.id));
        if (m.author === "client") say("Neue Nachricht von der Person");
        else if (m.note) say(m.german);
      }
    }).catch(() => {});
    return loading;
  }

  function handle(event) {
    if (page === "queue" && String(event.type).startsWith("ticket.")) {
      refreshQueue().catch(() => {});
      if (event.type === "ticket.opened") say("Neues Ticket #" + event.ticket);
    }
    if (page === "ticket" && String(event.ticket) === body.dataset.ticket) {
      if (event.type === "message") refreshMessages();
      else if (String(event.type).startsWith("ticket.")) {
        const changed = document.getElementById("ticket-changed");
        if (changed) changed.hidden = false;
      }
    }
  }

  function connect() {
    const source = new EventSource("/console/events");
    source.addEventListener("ready", () => {
      if (connection) {
        connection.textContent = "Live verbunden.";
        connection.dataset.state = "live";
      }
      // Catch up on anything that happened while the connection was down.
      if (page === "queue") refreshQueue().catch(() => {});
      if (page === "ticket") refreshMessages();
    });
    source.addEventListener("ended", () => {
      source.close();
      window.location.assign("/console/login");
    });
    source.onmessage = (message) => {
      try {
        handle(JSON.parse(message.data));
      } catch (_error) {
        /* a malformed event is ignored */
      }
    };
    source.onerror = () => {
      if (connection) {
        connection.textContent = "Verbindung unterbrochen, neuer Versuch …";
        connection.dataset.state = "down";
      }
      if (source.readyState === EventSource.CLOSED) {
        // Closed for good (e.g. 401): check the session, then reconnect after a pause.
        getJson("/console/api/queue").then(() => setTimeout(connect, 5000)).catch(() => {});
      }
    };
  }

  connect();
  if (page === "queue") setInterval(() => refreshQueue().catch(() => {}), 30000);
})();
