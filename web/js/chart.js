// Today's 15-minute intervals: offered / answered / abandoned as bars (left axis, calls) and
// service level as a line (right axis, %), drawn with the vendored uPlot. Times on the axis
// are in the switch's time zone.

import uPlot from "../vendor/uPlot.esm.js";
import { t, formatNumber, formatPercent, language } from "./i18n.js";

let plot = null;
let plotKey = "";

const COLORS = {
  offered: "#6ea8fe",
  answered: "#3ecf8e",
  abandoned: "#ff6b6b",
  sl: "#ffd43b",
};

function columns(intervals) {
  const x = [];
  const offered = [];
  const answered = [];
  const abandoned = [];
  const sl = [];
  for (const i of intervals) {
    x.push(i.start / 1000);
    offered.push(i.offered ?? 0);
    answered.push(i.answered ?? 0);
    abandoned.push(i.abandoned ?? 0);
    sl.push(i.service_level_pct ?? null);
  }
  return [x, offered, answered, abandoned, sl];
}

function options(width, timeZone) {
  // Answered (narrow) is drawn over offered (wide): answered <= offered, so both show.
  const bar = (label, color, size) => ({
    label: t(label),
    scale: "calls",
    stroke: color,
    fill: color,
    width: 0,
    paths: uPlot.paths.bars({ size: [size, 48], align: 0 }),
    points: { show: false },
    value: (u, v) => formatNumber(v),
  });
  const axisColor = "#c9d1d9";
  const grid = { stroke: "rgba(255,255,255,0.08)", width: 1 };
  return {
    width,
    height: 180,
    tzDate: (ts) => {
      try {
        return timeZone ? uPlot.tzDate(new Date(ts * 1000), timeZone) : new Date(ts * 1000);
      } catch {
        return new Date(ts * 1000);
      }
    },
    cursor: { drag: { x: false, y: false } },
    legend: { show: true, live: false },
    scales: {
      // Half an interval of room each side, so the first and last bars show whole.
      x: { time: true, range: (u, min, max) => [min - 450, max + 450] },
      calls: { auto: true, range: (u, min, max) => [0, Math.max(4, max)] },
      pct: { range: [0, 100] },
    },
    axes: [
      {
        stroke: axisColor,
        grid,
        ticks: grid,
        values: (u, splits) => splits.map((s) => clockLabel(s, timeZone)),
      },
      { scale: "calls", stroke: axisColor, grid, ticks: grid, values: (u, s) => s.map((v) => formatNumber(v)) },
      { scale: "pct", side: 1, stroke: COLORS.sl, grid: { show: false }, values: (u, s) => s.map((v) => formatPercent(v, 0)) },
    ],
    series: [
      { value: (u, v) => (v === null ? "—" : clockLabel(v, timeZone)) },
      bar("intervals.offered", COLORS.offered, 0.7),
      bar("intervals.answered", COLORS.answered, 0.4),
      {
        label: t("intervals.abandoned"),
        scale: "calls",
        stroke: COLORS.abandoned,
        width: 2,
        points: { show: true, size: 7, fill: COLORS.abandoned },
        value: (u, v) => formatNumber(v),
      },
      {
        label: t("intervals.sl"),
        scale: "pct",
        stroke: COLORS.sl,
        width: 3,
        spanGaps: true,
        points: { show: true, size: 6, fill: COLORS.sl },
        value: (u, v) => formatPercent(v),
      },
    ],
  };
}

function clockLabel(secs, timeZone) {
  const opts = { hour: "2-digit", minute: "2-digit", hour12: false };
  if (timeZone) opts.timeZone = timeZone;
  try {
    return new Intl.DateTimeFormat(language() === "zh" ? "zh-CN" : "en-GB", opts).format(new Date(secs * 1000));
  } catch {
    return new Date(secs * 1000).toISOString().slice(11, 16);
  }
}

/// The switch sends every interval since midnight; the quiet hours before the first call
/// are left out, but at least the last two hours are shown.
const MIN_INTERVALS = 8;

function recent(intervals) {
  const first = intervals.findIndex((i) => (i.offered ?? 0) > 0);
  const from = first < 0 ? intervals.length : first;
  return intervals.slice(Math.max(0, Math.min(from, intervals.length - MIN_INTERVALS)));
}

/// Draws or updates the chart; rebuilt when the language or time zone changes (labels).
export function renderIntervals(model) {
  const host = document.getElementById("interval-chart");
  const intervals = recent(model.intervals || []);
  const anyCalls = intervals.some((i) => (i.offered ?? 0) > 0);
  document.getElementById("intervals-none").hidden = anyCalls;
  host.hidden = !anyCalls;
  if (!anyCalls) return;
  const data = columns(intervals);
  const key = `${language()}|${model.time_zone || ""}`;
  const width = Math.max(320, host.clientWidth || host.parentElement.clientWidth - 32);
  if (!plot || plotKey !== key) {
    if (plot) plot.destroy();
    host.replaceChildren();
    plot = new uPlot(options(width, model.time_zone), data, host);
    plotKey = key;
  } else {
    plot.setData(data);
  }
}

export function resizeChart() {
  const host = document.getElementById("interval-chart");
  if (plot && host.clientWidth) plot.setSize({ width: host.clientWidth, height: 180 });
}

export function resetChart() {
  if (plot) plot.destroy();
  plot = null;
  plotKey = "";
}
