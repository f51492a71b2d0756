// scitq_bench GUI: the little JavaScript the server-rendered pages need.
//
// - [data-live="URL"]: a region re-rendered by the server every data-interval ms
//   (default 2000), replaced with the server's escaped HTML; paused while the tab is
//   hidden, refreshed as soon as it is visible again.
// - [data-log-tail="URL"]: a live tail; URL answers JSON {text, offset, done, execution,
//   reset} for ?offset=&seen=; text is appended as text (never parsed as HTML), and
//   ``reset`` (the tail moved on to another execution) clears what was shown.
// - [data-chart="URL"]: an SVG chart from JSON {kind, series:[{name, points}], x, y}.
// - form[data-confirm]: asks before a destructive action.
// - table[data-sortable]: click a header to sort by it; the server's order is kept
//   until then.
// A 401 from any poll means the session ended: go to sign-in and come back here.
"use strict";

(function () {
  const DEFAULT_INTERVAL = 2000;
  const pollers = [];

  function signInAgain() {
    const login = document.body.dataset.login || "/ui/login";
    const here = window.location.pathname + window.location.search;
    window.location.assign(login + "?next=" + encodeURIComponent(here));
  }

  async function fetchChecked(url, accept) {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: accept, "X-Requested-With": "fetch" },
    });
    if (response.status === 401) {
      signInAgain();
      throw new Error("signed out");
    }
    if (!response.ok) throw new Error(url + ": " + response.status);
    return response;
  }

  // One timer per poller; all stop while the page is hidden.
  function addPoller(element, interval, tick) {
    const poller = { element, interval, tick, timer: null, busy: false };
    pollers.push(poller);
    schedule(poller, interval);
    return poller;
  }

  function schedule(poller, delay) {
    clearTimeout(poller.timer);
    poller.timer = null;
    if (document.hidden || poller.stopped) return;
    poller.timer = setTimeout(() => run(poller), delay);
  }

  async function run(poller) {
    if (poller.busy || document.hidden || !document.body.contains(poller.element)) return;
    poller.busy = true;
    try {
      await poller.tick();
    } catch (error) {
      poller.element.dataset.liveError = String(error);
    } finally {
      poller.busy = false;
      schedule(poller, poller.interval);
    }
  }

  document.addEventListener("visibilitychange", () => {
    for (const poller of pollers) {
      if (document.hidden) {
        clearTimeout(poller.timer);
        poller.timer = null;
      } else {
        run(poller);
      }
    }
  });

  // -- live regions ---------------------------------------------------------------------

  function liveRegion(element) {
    const url = element.dataset.live;
    const interval = Number(element.dataset.interval || DEFAULT_INTERVAL);
    addPoller(element, interval, async () => {
      // a form field being typed into is not swept away under the user's fingers
      if (element.contains(document.activeElement) && document.activeElement.form) return;
      const response = await fetchChecked(url, "text/html");
      const html = await response.text();
      if (html !== element.dataset.lastHtml) {
        element.innerHTML = html; // server-rendered by Jinja with autoescaping
        element.dataset.lastHtml = html;
        enhance(element);
      }
      element.dataset.updated = String(Date.now());
    });
  }

  // -- log tails -----------------------------------------------------------------------

  function logTail(element) {
    let offset = 0;
    let seen = null; // the execution whose log is shown; the server says when it moves on
    const interval = Number(element.dataset.interval || 1000);
    const poller = addPoller(element, interval, async () => {
      const url = new URL(element.dataset.logTail, window.location.href);
      url.searchParams.set("offset", String(offset));
      if (seen !== null) url.searchParams.set("seen", String(seen));
      const response = await fetchChecked(url, "application/json");
      const data = await response.json();
      if (data.reset) element.replaceChildren(); // a retry or relaunch: its log from the start
      if (data.execution !== undefined && data.execution !== null) {
        seen = data.execution;
        element.dataset.execution = String(seen);
      }
      if (data.text) {
        const stick = element.scrollTop + element.clientHeight >= element.scrollHeight - 4;
        element.append(document.createTextNode(data.text));
        if (stick) element.scrollTop = element.scrollHeight;
      }
      offset = data.offset;
      if (data.done) {
        poller.stopped = true;
        element.dataset.done = "1";
      }
    });
    run(poller);
  }

  // -- confirmations and sortable tables -----------------------------------------------

  function confirmations(root) {
    for (const form of root.querySelectorAll("form[data-confirm]")) {
      form.addEventListener("submit", (event) => {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    }
  }

  function cellValue(row, index) {
    const cell = row.cells[index];
    if (!cell) return "";
    const raw = cell.dataset.sortValue !== undefined ? cell.dataset.sortValue : cell.textContent.trim();
    const number = Number(raw);
    return raw !== "" && !Number.isNaN(number) ? number : raw.toLowerCase();
  }

  function sortable(table) {
    const headers = table.tHead ? Array.from(table.tHead.rows[0].cells) : [];
    headers.forEach((header, index) => {
      if (header.dataset.nosort !== undefined) return;
      header.classList.add("sortable");
      header.tabIndex = 0;
      const sort = () => {
        const descending = header.dataset.order === "asc";
        headers.forEach((h) => { delete h.dataset.order; h.removeAttribute("aria-sort"); });
        header.dataset.order = descending ? "desc" : "asc";
        header.setAttribute("aria-sort", descending ? "descending" : "ascending");
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        rows.sort((a, b) => {
          const x = cellValue(a, index);
          const y = cellValue(b, index);
          if (x === "" && y !== "") return 1; // blanks last, whatever the direction
          if (y === "" && x !== "") return -1;
          const order = x < y ? -1 : x > y ? 1 : 0;
          return descending ? -order : order;
        });
        rows.forEach((row) => body.appendChild(row));
      };
      header.addEventListener("click", sort);
      header.addEventListener("keydown", (event) => { if (event.key === "Enter") sort(); });
    });
  }

  // -- charts ----------------------------------------------------------------------------

  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2"];

  function svgElement(name, attributes, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function label(value, isTime) {
    if (isTime) {
      const date = new Date(value * 1000);
      return date.toISOString().slice(0, 16).replace("T", " ");
    }
    const rounded = Math.abs(value) >= 100 ? value.toFixed(0) : Number(value.toPrecision(3));
    return String(rounded);
  }

  function drawChart(area, data) {
    const width = 640, height = 240, left = 56, right = 12, top = 12, bottom = 36;
    const series = (data.series || []).filter((s) => s.points && s.points.length);
    area.replaceChildren();
    area.dataset.points = String(series.reduce((n, s) => n + s.points.length, 0));
    if (!series.length) {
      area.append(document.createTextNode(data.empty || "Nothing to show yet."));
      return;
    }
    const xs = series.flatMap((s) => s.points.map((p) => p[0]));
    const ys = series.flatMap((s) => s.points.map((p) => p[1]));
    // the server sends the axes (their span and labelled ticks); without them, the data's span
    const xAxis = data.x_axis || { min: Math.min(...xs), max: Math.max(...xs) };
    const yAxis = data.y_axis || { min: Math.min(...ys), max: Math.max(...ys) };
    let [x0, x1] = [xAxis.min, xAxis.max];
    let [y0, y1] = [yAxis.min, yAxis.max];
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (y0 === y1) { y1 = y0 + 1; }
    const sx = (x) => left + ((x - x0) / (x1 - x0)) * (width - left - right);
    const sy = (y) => height - bottom - ((y - y0) / (y1 - y0)) * (height - top - bottom);
    const svg = svgElement("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart-svg" });
    svg.append(svgElement("title", {}, data.title || ""));
    svg.append(svgElement("line", { x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, class: "axis" }));
    svg.append(svgElement("line", { x1: left, y1: top, x2: left, y2: height - bottom, class: "axis" }));
    const isTime = data.x === "time";
    const yTicks = yAxis.ticks || [y0, (y0 + y1) / 2, y1].map((y) => [y, label(y, false)]);
    for (const [y, text] of yTicks) {
      svg.append(svgElement("line", { x1: left - 3, y1: sy(y), x2: left, y2: sy(y), class: "axis" }));
      svg.append(svgElement("text", { x: left - 6, y: sy(y) + 4, "text-anchor": "end", class: "tick y-tick" }, text));
    }
    const xTicks = xAxis.ticks || [x0, x1].map((x) => [x, label(x, isTime)]);
    xTicks.forEach(([x, text], i) => {
      const anchor = xTicks.length > 1 && i === 0 ? "start" : (xTicks.length > 1 && i === xTicks.length - 1 ? "end" : "middle");
      svg.append(svgElement("line", { x1: sx(x), y1: height - bottom, x2: sx(x), y2: height - bottom + 3, class: "axis" }));
      svg.append(svgElement("text", { x: sx(x), y: height - bottom + 16, "text-anchor": anchor, class: "tick x-tick" }, text));
    });
    if (data.x_label) svg.append(svgElement("text", { x: (left + width) / 2, y: height - 4, "text-anchor": "middle", class: "axis-label" }, data.x_label));
    series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      if (data.kind === "bar") {
        const slot = data.x_axis ? sx(1) - sx(0) : (width - left - right) / s.points.length;
        s.points.forEach((p, j) => {
          const x = (data.x_axis ? sx(p[0]) : left + j * slot) + slot * 0.1;
          const bar = svgElement("rect", { x, y: sy(p[1]), width: slot * 0.8, height: Math.max(0, sy(y0) - sy(p[1])), fill: color, class: "bar" });
          bar.append(svgElement("title", {}, `${p[2] !== undefined ? p[2] : label(p[0], isTime)}: ${p[1]}`));
          svg.append(bar);
        });
      } else {
        const path = s.points.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
        svg.append(svgElement("path", { d: path, fill: "none", stroke: color, "stroke-width": 2, class: data.kind === "step" ? "step" : "line" }));
        for (const p of s.points.slice(-200)) {
          const dot = svgElement("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: color });
          dot.append(svgElement("title", {}, `${s.name}: ${p[1]} (${label(p[0], isTime)})`));
          svg.append(dot);
        }
      }
    });
    area.append(svg);
    if (series.length > 1 || series[0].name) {
      const legend = document.createElement("ul");
      legend.className = "legend";
      series.forEach((s, i) => {
        const item = document.createElement("li");
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = COLORS[i % COLORS.length];
        item.append(swatch, document.createTextNode(s.name || ""));
        legend.append(item);
      });
      area.append(legend);
    }
  }

  function chart(area) {
    const tick = async () => {
      const response = await fetchChecked(area.dataset.chart, "application/json");
      drawChart(area, await response.json());
    };
    const refresh = Number(area.dataset.refresh || 0);
    if (refresh) {
      run(addPoller(area, refresh, tick));
    } else {
      tick().catch((error) => { area.dataset.liveError = String(error); });
    }
  }

  // -- wiring ------------------------------------------------------------------------------

  function enhance(root) {
    confirmations(root);
    for (const table of root.querySelectorAll("table[data-sortable]")) sortable(table);
    for (const area of root.querySelectorAll("[data-chart]")) chart(area);
  }

  document.addEventListener("DOMContentLoaded", () => {
    enhance(document);
    for (const element of document.querySelectorAll("[data-live]")) liveRegion(element);
    for (const element of document.querySelectorAll("[data-log-tail]")) logTail(element);
  });
})();
