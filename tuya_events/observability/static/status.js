// The status page: polls status.json and redraws. Every value from the daemon goes in through
// textContent (device names are the users' own text), never as markup.
"use strict";

(function () {
  const POLL_MS = 2000;
  const SVG = "http://www.w3.org/2000/svg";

  function byId(id) {
    return document.getElementById(id);
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setText(id, text) {
    const node = byId(id);
    const value = text === undefined || text === null || text === "" ? "—" : String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  function clock(ms) {
    return ms ? new Date(ms).toLocaleTimeString() : "—";
  }

  function ago(ms, now) {
    if (!ms) return "never";
    const seconds = Math.max(0, Math.round((now - ms) / 1000));
    if (seconds < 60) return seconds + " s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
    return new Date(ms).toLocaleString();
  }

  function whole(n) {
    return typeof n === "number" ? n.toLocaleString() : "—";
  }

  function renderConnection(connection, now) {
    const pill = byId("connection-state");
    pill.textContent = connection.connected ? "connected" : "not connected";
    pill.className = "pill " + (connection.connected ? "pill-good" : "pill-bad");
    setText("broker", connection.broker);
    setText("topic", connection.topic);
    setText("subscription", connection.subscription);
    setText(
      "since",
      connection.since_ms ? clock(connection.since_ms) + " (" + ago(connection.since_ms, now) + ")" : "—"
    );
  }

  function renderChart(rates, seconds) {
    const holder = byId("chart");
    const width = 300;
    const height = 80;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("preserveAspectRatio", "none");
    const axis = document.createElementNS(SVG, "line");
    axis.setAttribute("class", "axis");
    axis.setAttribute("x1", "0");
    axis.setAttribute("x2", String(width));
    axis.setAttribute("y1", String(height - 0.5));
    axis.setAttribute("y2", String(height - 0.5));
    svg.appendChild(axis);
    if (rates.length > 1) {
      const top = Math.max(1, ...rates.map((pair) => pair[1])) * 1.15;
      const first = rates[0][0];
      const span = Math.max(1, rates[rates.length - 1][0] - first);
      const points = rates.map((pair) => {
        const x = ((pair[0] - first) / span) * width;
        const y = height - (pair[1] / top) * (height - 4);
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      const area = document.createElementNS(SVG, "polygon");
      area.setAttribute("class", "area");
      area.setAttribute("points", "0," + height + " " + points.join(" ") + " " + width + "," + height);
      svg.appendChild(area);
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("class", "line");
      line.setAttribute("points", points.join(" "));
      svg.appendChild(line);
    }
    holder.replaceChildren(svg);
    const span = rates.length * seconds;
    const lasting = span < 90 ? Math.round(span) + " s" : Math.round(span / 60) + " min";
    const peak = rates.reduce((high, pair) => Math.max(high, pair[1]), 0);
    const caption = rates.length ? "messages/s, last " + lasting + " · peak " + peak.toFixed(1) : "";
    setText("chart-caption", caption || "collecting…");
    holder.setAttribute("aria-label", caption || "messages per second: collecting");
  }

  function renderFlow(flow) {
    setText("rate", typeof flow.rate === "number" ? flow.rate.toFixed(1) : "—");
    setText("received", whole(flow.received));
    setText("acked", whole(flow.acked));
    setText("in-flight", whole(flow.in_flight));
    renderChart(flow.rates || [], flow.sample_seconds || 2);
  }

  function renderDeadLetters(dead, now) {
    setText("dead-letter-count", whole(dead.count));
    const list = byId("dead-letter-list");
    const items = dead.newest.map((record) => {
      const item = element("li", "dead-letter");
      item.dataset.id = String(record.id);
      const head = element("div");
      head.appendChild(element("span", "reason", record.reason));
      const where = record.handler ? record.stage + " · " + record.handler : record.stage;
      head.appendChild(element("span", "muted", " " + where + " · " + ago(record.at_ms, now)));
      item.appendChild(head);
      const device = record.device_name || record.device_id;
      if (device) item.appendChild(element("div", "detail muted", device));
      if (record.message) item.appendChild(element("div", "detail", record.message));
      return item;
    });
    list.replaceChildren(...items);
    byId("dead-letter-empty").hidden = items.length > 0 || !!dead.error;
    if (dead.error) list.appendChild(element("li", "dead-letter detail", dead.error));
  }

  function renderDevice(device, now) {
    const card = element("article", "device");
    card.dataset.deviceId = device.id;
    const head = element("div", "device-head");
    head.appendChild(element("span", "device-name", device.name || device.id));
    if (device.online === true) head.appendChild(element("span", "online", "online"));
    else if (device.online === false) head.appendChild(element("span", "offline", "offline"));
    card.appendChild(head);
    const meta = [device.category, device.product].filter(Boolean).join(" · ");
    if (meta) card.appendChild(element("div", "device-meta", meta));
    card.appendChild(element("div", "device-meta reported", "reported " + ago(device.reported_ms, now)));
    const values = element("dl", "values");
    for (const value of device.values) {
      const name = element("dt", "value-name", value.name || value.code);
      name.dataset.code = value.code;
      const text = element("dd", "value", value.text);
      text.dataset.code = value.code;
      values.appendChild(name);
      values.appendChild(text);
    }
    card.appendChild(values);
    return card;
  }

  function renderDevices(devices, total, now) {
    const shown = devices.length < total ? devices.length + " of " + total : String(total);
    setText("device-count", shown);
    byId("devices").replaceChildren(...devices.map((device) => renderDevice(device, now)));
  }

  function problem(text) {
    const node = byId("problem");
    node.hidden = !text;
    node.textContent = text || "";
  }

  function render(state) {
    const now = state.now_ms;
    renderConnection(state.connection, now);
    renderFlow(state.flow);
    renderDeadLetters(state.dead_letters, now);
    renderDevices(state.devices, state.devices_total, now);
    setText("version", "tuya-events " + state.version);
    setText("updated", "updated " + clock(now));
    document.body.dataset.updatedMs = String(now);
  }

  async function poll() {
    try {
      const answer = await fetch("status.json", { cache: "no-store", credentials: "same-origin" });
      if (!answer.ok) {
        problem("The daemon answered " + answer.status + ": " + (await answer.text()).trim());
      } else {
        render(await answer.json());
        problem("");
      }
    } catch (error) {
      problem("The daemon does not answer (" + error.message + "); trying again.");
      const pill = byId("connection-state");
      pill.textContent = "daemon unreachable";
      pill.className = "pill pill-unknown";
    }
    window.setTimeout(poll, POLL_MS);
  }

  poll();
})();
