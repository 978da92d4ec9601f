// Line charts as inline SVG: no library, works offline.

const SVG = "http://www.w3.org/2000/svg";
export const COLOURS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bc4c00", "#1b7c83", "#6e7781"];

function s(tag, attrs = {}, text = null) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== null) el.textContent = text;
  return el;
}

function niceStep(span, ticks = 4) {
  if (!(span > 0)) return 1;
  const raw = span / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

function tick(value) {
  if (Math.abs(value) >= 1000) return `${(value / 1000).toFixed(1)}k`;
  return Number(value.toPrecision(3)).toString();
}

/**
 * lineChart({title, unit, series: [{name, points: [[x, y], ...]}], xTime, yTop})
 * (`yTop`: the top of the scale when it is known, e.g. 5 for ratings)
 * x is seconds (epoch or relative); y null leaves a gap. Returns a <figure>.
 */
export function lineChart({ title, unit = "", series, width = 560, height = 180, xTime = true, yTop: fixedTop = null }) {
  const figure = document.createElement("figure");
  figure.className = "chart";
  const caption = document.createElement("figcaption");
  caption.textContent = unit ? `${title} (${unit})` : title;
  const pad = { l: 44, r: 8, t: 8, b: 22 };
  const svg = s("svg", {
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `${title}: ${series.map((x) => x.name).join(", ") || "no data yet"}`,
    preserveAspectRatio: "none",
  });
  const points = series.flatMap((x) => x.points.filter((p) => p[1] !== null && p[1] !== undefined && !Number.isNaN(p[1])));
  if (!points.length) {
    svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "none" }, "no data yet"));
  } else {
    const xs = points.map((p) => p[0]);
    const ys = points.map((p) => p[1]);
    const x0 = Math.min(...xs);
    const x1 = Math.max(...xs) > x0 ? Math.max(...xs) : x0 + 1;
    const yMax = Math.max(...ys, 0);
    // a scale with a known top (ratings: 5) keeps it, so lines of different charts compare
    const step = fixedTop ? niceStep(fixedTop, 5) : niceStep(yMax || 1);
    const yTop = fixedTop ? Math.max(fixedTop, Math.ceil(yMax / step) * step) : Math.max(step, Math.ceil((yMax || 1) / step) * step);
    const px = (x) => pad.l + ((x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
    const py = (y) => height - pad.b - (y / yTop) * (height - pad.t - pad.b);
    for (let y = 0; y <= yTop + 1e-9; y += step) {
      svg.append(s("line", { x1: pad.l, x2: width - pad.r, y1: py(y), y2: py(y), class: "grid" }));
      svg.append(s("text", { x: pad.l - 4, y: py(y) + 4, "text-anchor": "end" }, tick(y)));
    }
    const label = (x) => (xTime ? new Date(x * 1000).toLocaleTimeString() : tick(x));
    svg.append(s("text", { x: pad.l, y: height - 6 }, label(x0)));
    svg.append(s("text", { x: width - pad.r, y: height - 6, "text-anchor": "end" }, label(x1)));
    const gap = (p) => !p || p[1] === null || p[1] === undefined || Number.isNaN(p[1]);
    series.forEach((line, i) => {
      const colour = line.colour || COLOURS[i % COLOURS.length];
      let d = "";
      let pen = false;
      line.points.forEach(([x, y], k) => {
        if (gap(line.points[k])) {
          pen = false;
          return;
        }
        // a point with no neighbour draws no line: a dot shows it (one bucket of feedback)
        if (!pen && gap(line.points[k + 1])) svg.append(s("circle", { cx: px(x), cy: py(y), r: 3, fill: colour }));
        d += `${pen ? "L" : "M"}${px(x).toFixed(1)},${py(y).toFixed(1)}`;
        pen = true;
      });
      svg.append(s("path", { d, fill: "none", stroke: colour, "stroke-width": 2 }));
    });
  }
  const legend = document.createElement("div");
  legend.className = "legend";
  series.forEach((line, i) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = line.colour || COLOURS[i % COLOURS.length];
    item.append(swatch, line.name);
    legend.append(item);
  });
  figure.append(caption, svg, legend);
  return figure;
}
