// HITA cache console: the plots (SVG, no library) and the latency quantile.
// Loaded before console.js, which calls these functions.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PLOT = { width: 600, height: 200, left: 34, right: 8, top: 8, bottom: 18 };
const WINDOW_MS = 5 * 60 * 1000; // what the plots show

function push(store, name, t, value) {
  if (!store.has(name)) store.set(name, []);
  const points = store.get(name);
  points.push({ t, v: value });
  while (points.length && points[0].t < t - WINDOW_MS) points.shift();
}

// As PromQL's histogram_quantile: linear within the bucket that holds the rank.
function quantile(q, bounds, before, after) {
  const counts = after.map((n, i) => n - (before[i] || 0));
  const total = counts[counts.length - 1];
  if (!(total > 0)) return "–";
  const rank = q * total;
  for (let i = 0; i < counts.length; i += 1) {
    if (counts[i] >= rank) {
      if (i >= bounds.length) return "> " + (bounds[bounds.length - 1] * 1000).toFixed(0) + " ms";
      const low = i === 0 ? 0 : bounds[i - 1];
      const below = i === 0 ? 0 : counts[i - 1];
      const inBucket = counts[i] - below;
      const value = low + (bounds[i] - low) * (inBucket ? (rank - below) / inBucket : 1);
      return (value * 1000).toFixed(1) + " ms";
    }
  }
  return "–";
}

function svg(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

// The x axis spans the samples kept: from the first (at most WINDOW_MS ago) to now.
function plot(element, legend, store, now) {
  const { width, height, left, right, top, bottom } = PLOT;
  const first = Math.min(now - 10000, ...[...store.values()].flat().map((p) => p.t));
  const span = now - Math.max(first, now - WINDOW_MS);
  const x = (t) => left + ((t - (now - span)) / span) * (width - left - right);
  const y = (v) => top + (1 - v) * (height - top - bottom);
  const children = [];
  for (const v of [0, 0.5, 1]) {
    children.push(svg("line", { class: "grid", x1: left, x2: width - right, y1: y(v), y2: y(v) }));
    const label = svg("text", { x: 2, y: y(v) + 3 });
    label.textContent = v * 100 + "%";
    children.push(label);
  }
  const caption = svg("text", { x: width - right - 20, y: height - 4 });
  caption.textContent = "now";
  const start = svg("text", { x: left, y: height - 4 });
  start.textContent = span >= 90000 ? "−" + Math.round(span / 60000) + " min"
    : "−" + Math.round(span / 1000) + " s";
  children.push(caption, start);
  const items = [];
  let most = 0;
  [...store.keys()].sort().forEach((name, i) => {
    const points = store.get(name);
    most = Math.max(most, points.length);
    const line = svg("polyline", {
      class: "c" + (i % 6),
      points: points.map((p) => x(p.t).toFixed(1) + "," + y(p.v).toFixed(1)).join(" "),
    });
    line.dataset.series = name;
    children.push(line);
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "c" + (i % 6);
    const last = points.length ? (100 * points[points.length - 1].v).toFixed(1) + " %" : "–";
    item.append(swatch, name + " " + last);
    items.push(item);
  });
  element.replaceChildren(...children);
  element.dataset.points = String(most);
  legend.replaceChildren(...items);
}
