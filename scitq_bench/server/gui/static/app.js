// scitq_bench GUI: the little JavaScript the server-rendered pages need.
//
// - [data-live="URL"]: a region re-rendered by the server every data-interval ms
//   (default 2000), replaced with the server's escaped HTML; paused while the tab is
//   hidden, refreshed as soon as it is visible again.
// - [data-log-tail="URL"]: a live tail; URL answers JSON {text, offset, done, execution,
//   reset} for ?offset=&seen=; text is appended as text (never parsed as HTML), and
//   ``reset`` (the tail moved on to another execution) clears what was shown.
// - [data-chart="URL"]: a chart drawn by uPlot from JSON {kind, series:[{name, points}],
//   x, x_axis, y_axis}, fetched again every data-refresh ms.
// - button[data-menu]: opens and closes the navigation on narrow screens.
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
  // Drawn by uPlot (static/vendor/uplot, self-hosted: the page's CSP allows only our own
  // scripts) from the JSON {kind: line|step|bar, series: [{name, points: [[x, y, label?]]}],
  // x: "time"|"number", x_label, y_label, x_axis, y_axis, empty}. When the server sends
  // an axis ({min, max, ticks: [[position, label]]}) it is drawn as sent; otherwise
  // uPlot picks the ticks and times are labelled in UTC. The labels drawn are kept in
  // data-x-ticks / data-y-ticks (the canvas holds no text a reader or a test could find).

  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2"];
  const MINUTE = 60, DAY = 86400;

  function pad(n) { return String(n).padStart(2, "0"); }

  function utcDate(seconds) {
    const d = new Date(seconds * 1000);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  }

  function utcTime(seconds, withSeconds) {
    const d = new Date(seconds * 1000);
    const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    return withSeconds ? `${hm}:${pad(d.getUTCSeconds())}` : hm;
  }

  // Decimals that show every tick of ``step`` exactly (0.25 needs two, 0.2 one).
  function decimalsOf(step) {
    if (!(step > 0)) return 0;
    const power = Math.floor(Math.log10(step) + 1e-9);
    const mantissa = Math.round((step / 10 ** power) * 1e6) / 1e6;
    return Math.max(0, -power + (mantissa === 2.5 ? 1 : 0));
  }

  function numberText(value, step) {
    if (value === null || value === undefined) return "–";
    if (step === undefined) return String(Number(value.toPrecision(4)));
    return value.toFixed(Math.min(decimalsOf(step), 6));
  }

  // Time labels for ticks uPlot chose: the time of day (with the date under the first
  // one and wherever the day changes), or the date alone over long spans.
  function timeLabels(splits, span) {
    let lastDay = null;
    return splits.map((x) => {
      const day = utcDate(x);
      if (span >= 3 * DAY) return day;
      const time = utcTime(x, span < 4 * MINUTE);
      const text = day !== lastDay ? `${time}\n${day}` : time;
      lastDay = day;
      return text;
    });
  }

  // Every series on one x axis, as uPlot wants them: [xs, ys...]. A series without a
  // point at some x has null there (lines are drawn across); two points at the same x
  // (a step's rise) keep the last.
  function aligned(series, shift) {
    const columns = series.map((s) => new Map(s.points.map((p) => [p[0] + shift, p[1]])));
    const xs = Array.from(new Set(columns.flatMap((m) => Array.from(m.keys())))).sort((a, b) => a - b);
    return [xs, ...columns.map((m) => xs.map((x) => (m.has(x) ? m.get(x) : null)))];
  }

  function labelWidth(labels) {
    const longest = Math.max(1, ...labels.map((l) => Math.max(...String(l).split("\n").map((p) => p.length))));
    return Math.ceil(longest * 6.5) + 16;
  }

  function serverAxis(axis, area, key, twoLines) {
    const labels = axis.ticks.map((t) => String(t[1]));
    area.dataset[key] = JSON.stringify(labels);
    return {
      splits: () => axis.ticks.map((t) => t[0]),
      values: () => (twoLines ? labels.map((l) => l.replace(" ", "\n")) : labels),
    };
  }

  function chartOptions(area, data, series, width) {
    const isTime = data.x === "time";
    const isBar = data.kind === "bar";
    const ys = series.flatMap((s) => s.points.map((p) => p[1]));
    const whole = ys.every((y) => Number.isInteger(y));
    const shift = isBar && data.x_axis ? 0.5 : 0; // bar i spans i to i + 1
    const barLabels = isBar ? new Map(series[0].points.map((p) => [p[0] + shift, p[2]])) : null;
    const axisStyle = { stroke: "#616e7c", grid: { stroke: "#e5e7eb", width: 1 }, ticks: { stroke: "#cbd5e1", width: 1, size: 4 }, font: "11px system-ui, sans-serif", labelFont: "12px system-ui, sans-serif" };

    const xAxis = { ...axisStyle, label: data.x_label || "", labelSize: data.x_label ? 18 : 0, size: 44, space: isTime ? 80 : 50 };
    if (data.x_axis && data.x_axis.ticks) {
      Object.assign(xAxis, serverAxis(data.x_axis, area, "xTicks", isTime));
    } else if (isTime) {
      xAxis.values = (u, splits) => {
        const labels = timeLabels(splits, u.scales.x.max - u.scales.x.min);
        area.dataset.xTicks = JSON.stringify(labels.map((l) => l.replace("\n", " ")));
        return labels;
      };
    }
    const yAxis = { ...axisStyle, label: data.y_label || "", labelSize: data.y_label ? 18 : 0 };
    if (data.y_axis && data.y_axis.ticks) {
      Object.assign(yAxis, serverAxis(data.y_axis, area, "yTicks", false));
      yAxis.size = labelWidth(data.y_axis.ticks.map((t) => t[1]));
    } else {
      if (whole) yAxis.incrs = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 1e6, 1e7, 1e8];
      yAxis.values = (u, splits, axisIndex, space, step) => {
        const labels = splits.map((v) => numberText(v, step));
        area.dataset.yTicks = JSON.stringify(labels);
        return labels;
      };
      yAxis.size = (u, values) => labelWidth(values || ["0000"]);
    }

    const xScale = { time: isTime };
    if (data.x_axis) xScale.range = () => [data.x_axis.min, data.x_axis.max];
    else if (isBar) xScale.range = (u, lo, hi) => [lo - 0.5, hi + 0.5];
    else {
      // one moment only: a few minutes around it (uPlot would otherwise span years)
      const xs = series.flatMap((s) => s.points.map((p) => p[0]));
      const [first, last] = [Math.min(...xs), Math.max(...xs)];
      const around = isTime ? 5 * MINUTE : 1;
      xScale.range = (u, lo, hi) => (first === last ? [first - around, last + around] : [lo, hi]);
    }
    const yScale = {};
    if (data.y_axis) {
      yScale.range = () => [data.y_axis.min, data.y_axis.max];
    } else {
      yScale.range = (u, lo, hi) => uPlot.rangeNum(Math.min(0, lo ?? 0), Math.max(hi ?? 1, whole ? 1 : 0.001), 0.1, true);
    }

    const xLabels = data.x_axis && data.x_axis.ticks ? data.x_axis.ticks.map((t) => String(t[1])) : [];
    const rightPad = xLabels.length ? Math.ceil((labelWidth(xLabels.map((l) => l.replace(" ", "\n"))) - 16) / 2) + 6
      : isTime ? 24 : 16;
    const xValue = (u, v) => {
      if (v === null || v === undefined) return "–";
      if (isBar) return barLabels.get(v) ?? String(v);
      return isTime ? `${utcDate(v)} ${utcTime(v, true)} UTC` : numberText(v);
    };
    const paths = isBar ? uPlot.paths.bars({ size: [0.8, Infinity], align: 0 })
      : data.kind === "step" ? uPlot.paths.stepped({ align: 1 }) : undefined;
    return {
      width,
      height: width < 480 ? 190 : 230,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      padding: [8, rightPad, 0, 0], // room for half of the last x label
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false }, points: { size: 7 } },
      scales: { x: xScale, y: yScale },
      axes: [xAxis, yAxis],
      series: [
        { label: isTime ? "UTC" : isBar ? "bin" : (data.x_label || "x"), value: xValue },
        ...series.map((s, i) => ({
          label: s.name || "",
          stroke: COLORS[i % COLORS.length],
          width: isBar ? 0 : 2,
          fill: isBar ? COLORS[i % COLORS.length] + "cc" : undefined,
          spanGaps: true,
          paths,
          points: { show: !isBar && data.kind !== "step" && s.points.length <= 40, size: 5 },
          value: (u, v) => (v === null || v === undefined ? "–" : whole ? String(v) : numberText(v)),
        })),
      ],
    };
  }

  function drawChart(area, data) {
    const series = (data.series || []).filter((s) => s.points && s.points.length);
    if (area.uplot) {
      area.uplot.destroy();
      area.uplot = null;
    }
    area.replaceChildren();
    delete area.dataset.xTicks;
    delete area.dataset.yTicks;
    area.dataset.points = String(series.reduce((n, s) => n + s.points.length, 0));
    if (!series.length) {
      const empty = document.createElement("p");
      empty.className = "chart-empty muted";
      empty.textContent = data.empty || "Nothing to show yet.";
      area.append(empty);
      return;
    }
    const shift = data.kind === "bar" && data.x_axis ? 0.5 : 0;
    const width = Math.max(200, Math.floor(area.clientWidth));
    area.uplot = new uPlot(chartOptions(area, data, series, width), aligned(series, shift), area);
    area.dataset.width = String(width);
  }

  // One chart per area; redrawn only when its data changed, resized with the page.
  function chart(area) {
    if (typeof uPlot === "undefined") {
      area.dataset.liveError = "the chart library did not load";
      return;
    }
    const tick = async () => {
      const response = await fetchChecked(area.dataset.chart, "application/json");
      const text = await response.text();
      if (text === area.lastJson) return;
      area.lastJson = text;
      drawChart(area, JSON.parse(text));
    };
    if (window.ResizeObserver) {
      new ResizeObserver(() => {
        const width = Math.max(200, Math.floor(area.clientWidth));
        if (area.uplot && String(width) !== area.dataset.width) {
          area.dataset.width = String(width);
          area.uplot.setSize({ width, height: width < 480 ? 190 : 230 });
        }
      }).observe(area);
    }
    const refresh = Number(area.dataset.refresh || 0);
    if (refresh) {
      run(addPoller(area, refresh, tick));
    } else {
      tick().catch((error) => { area.dataset.liveError = String(error); });
    }
  }

  // -- the navigation menu on narrow screens ---------------------------------------------

  function menu(button) {
    const target = document.getElementById(button.getAttribute("aria-controls"));
    if (!target) return;
    button.addEventListener("click", () => {
      const open = button.getAttribute("aria-expanded") !== "true";
      button.setAttribute("aria-expanded", String(open));
      target.classList.toggle("open", open);
    });
  }

  // -- wiring ------------------------------------------------------------------------------

  function enhance(root) {
    confirmations(root);
    for (const table of root.querySelectorAll("table[data-sortable]")) sortable(table);
    for (const area of root.querySelectorAll("[data-chart]")) chart(area);
  }

  document.addEventListener("DOMContentLoaded", () => {
    enhance(document);
    for (const button of document.querySelectorAll("button[data-menu]")) menu(button);
    for (const element of document.querySelectorAll("[data-live]")) liveRegion(element);
    for (const element of document.querySelectorAll("[data-log-tail]")) logTail(element);
  });
})();
