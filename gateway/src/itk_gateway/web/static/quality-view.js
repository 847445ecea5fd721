// A completed job's quality report: the headline figures in a line of text and a small chart with
// one column per ~10 s segment and one row per figure (lip-sync correlation, identity distance,
// colour drift of the face), each bar's height the segment's value on the row's scale.

const SVG = "http://www.w3.org/2000/svg";
const ROWS = [
  // key, label, scale top, a line at (threshold), what is good
  { key: "sync_correlation", label: "lip sync (correlation)", top: 1, line: null, good: "high" },
  { key: "identity_distance", label: "identity (distance to the portrait)", top: 1, line: 0.6, good: "low" },
  { key: "face_colour_delta_e", label: "face colour (ΔE2000)", top: null, line: null, good: "low" },
];
const ROW_H = 34;
const LABEL_W = 0;
const WIDTH = 320;

const fmt = (value, digits = 2) => (value === undefined || value === null ? "–" : Number(value).toFixed(digits));

export function qualitySummary(report) {
  if (report.state === "pending") return "Quality report: being computed…";
  if (report.state !== "ready") return `Quality report: ${report.state}${report.error ? ` (${report.error})` : ""}`;
  const parts = [
    `lip sync lag ${report.sync_lag_frames ?? "–"} frames (correlation ${fmt(report.sync_correlation)})`,
    `identity distance ${fmt(report.identity_distance)}`,
    `face colour ΔE ${fmt(report.face_colour_delta_e, 1)}`,
    `largest boundary step ${fmt(Math.max(report.max_seam_step || 0, report.max_boundary_step || 0), 1)}` +
      ` vs in-lane p99 ${fmt(report.step_p99, 1)}`,
    `video ${fmt(report.video_duration_sec, 2)} s / audio ${fmt(report.audio_duration_sec, 2)} s`,
  ];
  return `Quality: ${parts.join(" · ")}`;
}

function chart(report) {
  const segments = report.segments || [];
  const svg = document.createElementNS(SVG, "svg");
  const height = ROWS.length * ROW_H;
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${height}`);
  svg.setAttribute("class", "quality-chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Quality per segment (${segments.length}): ` + ROWS.map((row) =>
    `${row.label}: ${segments.map((s) => fmt(s[row.key])).join(", ")}`).join("; "));
  const column = (WIDTH - LABEL_W) / Math.max(1, segments.length);
  ROWS.forEach((row, r) => {
    const values = segments.map((s) => s[row.key]).filter((v) => v !== undefined);
    const top = row.top ?? Math.max(1, ...values) * 1.1;
    const y0 = r * ROW_H;
    const caption = document.createElementNS(SVG, "text");
    caption.setAttribute("x", 2);
    caption.setAttribute("y", y0 + 10);
    caption.setAttribute("class", "caption");
    caption.textContent = row.label;
    svg.append(caption);
    segments.forEach((segment, i) => {
      const value = segment[row.key];
      if (value === undefined) return;
      const h = Math.max(1, (Math.min(value, top) / top) * (ROW_H - 14));
      const bar = document.createElementNS(SVG, "rect");
      bar.setAttribute("x", LABEL_W + i * column + 1);
      bar.setAttribute("y", y0 + ROW_H - 2 - h);
      bar.setAttribute("width", Math.max(1, column - 2));
      bar.setAttribute("height", h);
      const bad = row.line !== null && (row.good === "low" ? value >= row.line : value <= row.line);
      bar.setAttribute("class", `bar ${row.key}${bad ? " bad" : ""}`);
      const tip = document.createElementNS(SVG, "title");
      tip.textContent = `${segment.start_sec.toFixed(0)}–${segment.end_sec.toFixed(0)} s: ${row.label} ${fmt(value)}`;
      bar.append(tip);
      svg.append(bar);
    });
    if (row.line !== null) {
      const line = document.createElementNS(SVG, "line");
      const y = y0 + ROW_H - 2 - (row.line / top) * (ROW_H - 14);
      line.setAttribute("x1", LABEL_W);
      line.setAttribute("x2", WIDTH);
      line.setAttribute("y1", y);
      line.setAttribute("y2", y);
      line.setAttribute("class", "threshold");
      svg.append(line);
    }
  });
  return svg;
}

export function renderQuality(container, job) {
  const report = job.quality;
  container.hidden = !report;
  if (!report) { container.replaceChildren(); return; }
  const summary = document.createElement("p");
  summary.className = "detail quality-summary";
  summary.textContent = qualitySummary(report);
  const nodes = [summary];
  if (report.state === "ready" && report.segments?.length) nodes.push(chart(report));
  container.replaceChildren(...nodes);
}
