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
//   A pane's [data-log-tools] bar follows or pauses it (auto-scroll), wraps or not its
//   lines, and searches it (matches highlighted with <mark>, next/previous).
// - [data-running-for="SECONDS"]: a running time, counted on every second from the
//   seconds the server measured when it rendered it.
// - details[data-row-menu]: a row's actions folded in a drop-down; one open at a time,
//   closed by Escape or a click elsewhere, kept open across live updates.
// - [data-side-by-side-from="ID"]: log panes laid side by side while live region ID
//   says its task failed ([data-task-status]).
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
        const open = Array.from(element.querySelectorAll("details[data-row-menu][open]"), (d) => d.id);
        element.innerHTML = html; // server-rendered by Jinja with autoescaping
        element.dataset.lastHtml = html;
        enhance(element);
        for (const id of open) {
          const menu = document.getElementById(id);
          if (menu) { menu.open = true; placeMenu(menu); }
        }
        sideBySide();
      }
      element.dataset.updated = String(Date.now());
    });
  }

  // -- log tails -----------------------------------------------------------------------

  function logTail(element) {
    let offset = 0;
    let seen = null; // the execution whose log is shown; the server says when it moves on
    const view = logView(element);
    const interval = Number(element.dataset.interval || 1000);
    const poller = addPoller(element, interval, async () => {
      const url = new URL(element.dataset.logTail, window.location.href);
      url.searchParams.set("offset", String(offset));
      if (seen !== null) url.searchParams.set("seen", String(seen));
      const response = await fetchChecked(url, "application/json");
      const data = await response.json();
      if (data.reset) view.clear(); // a retry or relaunch: its log from the start
      if (data.execution !== undefined && data.execution !== null) {
        seen = data.execution;
        element.dataset.execution = String(seen);
      }
      if (data.text) view.add(data.text);
      offset = data.offset;
      if (data.done) {
        poller.stopped = true;
        element.dataset.done = "1";
      }
    });
    run(poller);
  }

  // A log pane's text and its tools. The log is only ever text nodes: matches are
  // wrapped in <mark> elements made here, never markup parsed from the log.
  function logView(element) {
    const tools = document.querySelector(`[data-log-tools="${element.id}"]`);
    const control = (name) => (tools ? tools.querySelector(`[data-log-${name}]`) : null);
    const state = { text: "", follow: true, query: "", marks: [], current: -1 };

    function atBottom() {
      return element.scrollTop + element.clientHeight >= element.scrollHeight - 4;
    }
    function toBottom() {
      element.scrollTop = element.scrollHeight;
    }
    function setFollow(on) {
      state.follow = on;
      element.dataset.follow = on ? "1" : "0";
      const button = control("follow");
      if (button) {
        button.setAttribute("aria-pressed", String(on));
        button.textContent = on ? "Following" : "Paused";
      }
      if (on) toBottom();
    }
    function count() {
      const label = control("count");
      if (!label) return;
      label.textContent = !state.query ? "" : state.marks.length
        ? `${state.current + 1} / ${state.marks.length}` : "no match";
      element.dataset.matches = String(state.marks.length);
    }
    function render() { // the whole text, with the query's matches marked
      state.marks = [];
      if (!state.query) {
        element.replaceChildren(document.createTextNode(state.text));
        state.current = -1;
        count();
        return;
      }
      const parts = document.createDocumentFragment();
      const haystack = state.text.toLowerCase();
      const needle = state.query.toLowerCase();
      let from = 0;
      for (let at = haystack.indexOf(needle); at !== -1 && state.marks.length < 10000;
        at = haystack.indexOf(needle, at + needle.length)) {
        if (at > from) parts.append(document.createTextNode(state.text.slice(from, at)));
        const mark = document.createElement("mark");
        mark.className = "log-hit";
        mark.textContent = state.text.slice(at, at + needle.length);
        parts.append(mark);
        state.marks.push(mark);
        from = at + needle.length;
      }
      parts.append(document.createTextNode(state.text.slice(from)));
      element.replaceChildren(parts);
      state.current = Math.min(Math.max(state.current, 0), state.marks.length - 1);
      highlight(false);
    }
    function highlight(scroll) {
      state.marks.forEach((m, i) => m.classList.toggle("current", i === state.current));
      count();
      const mark = state.marks[state.current];
      if (scroll && mark) {
        setFollow(false); // reading a match: new lines must not scroll it away
        element.scrollTop = Math.max(0, mark.offsetTop - element.clientHeight / 2);
      }
    }
    function step(by) {
      if (!state.marks.length) return;
      state.current = (state.current + by + state.marks.length) % state.marks.length;
      highlight(true);
    }

    element.addEventListener("scroll", () => {
      // scrolled up by the reader: stop following (following, the page only ever
      // scrolls to the end)
      if (state.follow && !atBottom()) setFollow(false);
    });
    if (tools) {
      tools.hidden = false;
      control("follow").addEventListener("click", () => setFollow(!state.follow));
      control("wrap").addEventListener("click", () => {
        const wrap = !element.classList.toggle("nowrap");
        control("wrap").setAttribute("aria-pressed", String(wrap));
        if (state.follow) toBottom();
      });
      const search = control("search");
      search.addEventListener("input", () => {
        state.query = search.value;
        state.current = 0;
        render();
        highlight(true);
      });
      search.addEventListener("keydown", (event) => {
        if (event.key === "Enter") { event.preventDefault(); step(event.shiftKey ? -1 : 1); }
      });
      control("next").addEventListener("click", () => step(1));
      control("prev").addEventListener("click", () => step(-1));
    }
    setFollow(true);

    return {
      clear() { state.text = ""; render(); },
      add(text) {
        state.text += text;
        if (state.query) render();
        else element.append(document.createTextNode(text));
        if (state.follow) toBottom();
      },
    };
  }

  // -- running times ---------------------------------------------------------------------

  function hms(seconds) { // as the server writes durations: 4.2s, 2m05s, 1h02m05s
    if (seconds < 60) return `${seconds.toFixed(1)}s`;
    const whole = Math.round(seconds);
    const hours = Math.floor(whole / 3600);
    const minutes = Math.floor((whole % 3600) / 60);
    const rest = `${pad(minutes)}m${pad(whole % 60)}s`;
    return hours ? `${hours}h${rest}` : `${minutes}m${pad(whole % 60)}s`;
  }

  const shownAt = new WeakMap(); // element -> when it was rendered (the server's count)
  function tickRunningTimes() {
    const now = performance.now();
    for (const element of document.querySelectorAll("[data-running-for]")) {
      if (!shownAt.has(element)) shownAt.set(element, now);
      const seconds = Number(element.dataset.runningFor) + (now - shownAt.get(element)) / 1000;
      element.textContent = hms(seconds);
    }
  }

  // -- row menus ---------------------------------------------------------------------------

  // The panel is placed in the viewport under its button, so a table that scrolls in
  // its own box does not clip it.
  function placeMenu(menu) {
    const panel = menu.querySelector(".row-menu-panel");
    if (!panel || !menu.open) return;
    const button = menu.querySelector("summary").getBoundingClientRect();
    panel.style.position = "fixed";
    panel.style.top = `${Math.round(button.bottom + 2)}px`;
    const width = panel.offsetWidth;
    const left = Math.min(button.right - width, window.innerWidth - width - 4);
    panel.style.left = `${Math.max(4, Math.round(left))}px`;
    panel.style.right = "auto";
  }

  function rowMenus(root) {
    for (const menu of root.querySelectorAll("details[data-row-menu]")) {
      menu.addEventListener("toggle", () => {
        if (!menu.open) return;
        for (const other of document.querySelectorAll("details[data-row-menu][open]")) {
          if (other !== menu) other.open = false;
        }
        placeMenu(menu);
      });
    }
  }

  function closeMenus(except) {
    for (const menu of document.querySelectorAll("details[data-row-menu][open]")) {
      if (!except || !menu.contains(except)) menu.open = false;
    }
  }

  document.addEventListener("click", (event) => closeMenus(event.target));
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") closeMenus(null); });
  window.addEventListener("resize", () => closeMenus(null));
  document.addEventListener("scroll", () => {
    for (const menu of document.querySelectorAll("details[data-row-menu][open]")) placeMenu(menu);
  }, true);

  // -- log panes side by side for a failed task ---------------------------------------------

  function sideBySide() {
    for (const panes of document.querySelectorAll("[data-side-by-side-from]")) {
      const region = document.getElementById(panes.dataset.sideBySideFrom);
      const facts = region && region.querySelector("[data-task-status]");
      if (facts) panes.classList.toggle("side-by-side", facts.dataset.taskStatus === "failed");
    }
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
    rowMenus(root);
    for (const table of root.querySelectorAll("table[data-sortable]")) sortable(table);
    for (const area of root.querySelectorAll("[data-chart]")) chart(area);
  }

  document.addEventListener("DOMContentLoaded", () => {
    enhance(document);
    for (const button of document.querySelectorAll("button[data-menu]")) menu(button);
    for (const element of document.querySelectorAll("[data-live]")) liveRegion(element);
    for (const element of document.querySelectorAll("[data-log-tail]")) logTail(element);
    tickRunningTimes();
    setInterval(tickRunningTimes, 1000);
  });
})();
