// A job's progress per lane (continuous stream) and piece: a timeline of the whole clip with the
// seams marked, then one row per lane (its span, pieces done of total, a bar) with its pieces under
// it, and a note for each seam between two rows.

const el = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
};

// 6.1 -> "0:06.1", 75 -> "1:15.0": a time in the recording, precise enough to find a seam.
export function clock(seconds) {
  const tenths = Math.round(seconds * 10);
  const minutes = Math.floor(tenths / 600);
  const rest = ((tenths % 600) / 10).toFixed(1).padStart(4, "0");
  return `${minutes}:${rest}`;
}

function pieceItem(piece) {
  const item = el("li", `piece ${piece.status}`);
  const where = piece.endpoint ? ` on ${piece.endpoint}` : "";
  item.textContent = `Piece ${piece.index + 1}: ${piece.status}${where}`;
  const bar = el("progress");
  bar.max = piece.frames || 1;
  bar.value = piece.frames_done;
  bar.setAttribute("aria-label", `Piece ${piece.index + 1}: ${piece.frames_done} of ${piece.frames} frames`);
  item.append(bar);
  return item;
}

function pieceList(pieces, label) {
  const list = el("ol", "pieces");
  list.setAttribute("aria-label", label);
  list.append(...pieces.map(pieceItem));
  return list;
}

function laneItem(lane, pieces, status) {
  const number = lane.index + 1;
  const span = `${clock(lane.start_sec)} – ${clock(lane.end_sec)}`;
  const item = el("li", "lane");
  item.dataset.lane = lane.index;
  const state = { RUNNING: "running", IN_QUEUE: "waiting" }[status] || "stopped";
  item.dataset.state = lane.chunks_done >= lane.chunk_count ? "done" : state;
  const head = el("div", "lane-head");
  head.append(el("strong", "lane-name", `Lane ${number}`), el("span", "lane-span", span),
    el("span", "lane-count", `${lane.chunks_done} / ${lane.chunk_count} pieces`));
  const bar = el("progress");
  bar.max = lane.chunk_count || 1;
  bar.value = lane.chunks_done;
  bar.setAttribute("aria-label", `Lane ${number}, ${span}: ${lane.chunks_done} of ${lane.chunk_count} pieces done`);
  item.append(head, bar, pieceList(pieces, `Pieces of lane ${number}`));
  return item;
}

function seamItem(seam) {
  const fade = seam.fade_frames ? `cross-faded over ${seam.fade_frames} frames` : "hard cut";
  const pause = seam.in_voiced_speech ? " in voiced speech (the recording has no gap here)"
    : seam.pause_end_sec > seam.pause_start_sec
      ? ` in the pause ${clock(seam.pause_start_sec)} – ${clock(seam.pause_end_sec)}` : "";
  return el("li", "seam", `Seam at ${clock(seam.time_sec)}${pause}, ${fade}`);
}

// The whole clip as one bar: a segment per lane, as long as its span, filled as its pieces finish;
// a seam is the marked edge between two segments.
function renderTimeline(timeline, lanes, seams) {
  timeline.hidden = lanes.length === 0;
  const total = lanes.reduce((end, lane) => Math.max(end, lane.end_sec), 0) || 1;
  timeline.replaceChildren(...lanes.map((lane, i) => {
    const segment = el("span", i > 0 ? "segment after-seam" : "segment");
    segment.style.flexGrow = String(Math.max(lane.end_sec - lane.start_sec, 0.001) / total);
    const fill = el("span", "fill");
    fill.style.width = `${Math.round((100 * lane.chunks_done) / (lane.chunk_count || 1))}%`;
    segment.append(fill);
    segment.title = `Lane ${lane.index + 1}: ${clock(lane.start_sec)} – ${clock(lane.end_sec)}`;
    return segment;
  }));
  const where = seams.map((seam) => clock(seam.time_sec)).join(", ");
  timeline.setAttribute("aria-label", `The clip in ${lanes.length} lane(s)${where ? `, seams at ${where}` : ""}`);
}

export function renderLanes(list, timeline, job) {
  const lanes = [...(job.lanes || [])].sort((a, b) => a.start_sec - b.start_sec);
  const seams = [...(job.seams || [])].sort((a, b) => a.time_sec - b.time_sec);
  const pieces = job.pieces || [];
  renderTimeline(timeline, lanes, seams);
  const items = [];
  lanes.forEach((lane, i) => {
    if (i > 0 && seams[i - 1]) items.push(seamItem(seams[i - 1]));
    items.push(laneItem(lane, pieces.filter((piece) => piece.lane === lane.index), job.status));
  });
  // Pieces of no planned lane (a job planned before lanes were reported) still show, in one group.
  const known = new Set(lanes.map((lane) => lane.index));
  const loose = pieces.filter((piece) => !known.has(piece.lane));
  if (loose.length) {
    const item = el("li", "lane");
    item.append(pieceList(loose, "Pieces"));
    items.push(item);
  }
  list.replaceChildren(...items);
}
