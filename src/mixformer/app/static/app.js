// The page of `mixformer app`: plain JavaScript, no library, nothing loaded from the network.
// The server holds the state (GET /api/state, polled); this file draws it and sends the
// user's actions. Boxes are [x, y, w, h] in image pixels everywhere.
"use strict";

(() => {
  // The colours of mixformer.tracking.render.PALETTE, so the page matches the annotated video.
  const PALETTE = ["rgb(0,200,0)", "rgb(230,60,60)", "rgb(60,120,255)", "rgb(240,200,0)",
    "rgb(200,0,200)", "rgb(0,200,200)"];
  const BUSY = ["uploading", "loading", "running", "paused"];
  const MIN_SIDE = 2;
  const $ = (id) => document.getElementById(id);
  const colour = (t) => PALETTE[t % PALETTE.length];

  const app = {
    state: null, // the last /api/state answer
    videoId: null,
    firstFrame: null, // Image of the first frame (drawing boxes)
    shown: null, // Image of the streamed frame shown
    shownIndex: -1,
    shownAttention: false,
    shownTarget: 0, // the target whose attention map the shown picture has
    fetching: false,
    editing: true, // showing the first frame with the boxes being drawn
    drawn: [], // boxes drawn by the user
    dragging: null,
    runId: null,
    results: [], // every result of run runId: {frame, boxes, scores[, attention]}
    lastServerMessage: null, // null until the first state: a message from before is stale
    labels: [], // [x, y, w, h] of the box labels drawn last (kept apart from each other)
  };
  window.mixformerApp = app; // for the browser test and for curious users

  // -- talking to the server -----------------------------------------------------------------
  async function answer(response) {
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      throw new Error(data && data.error ? data.error : `the server answered ${response.status}`);
    }
    return data;
  }

  async function post(path, body) {
    const options = { method: "POST", headers: { "X-Requested-With": "mixformer" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return answer(await fetch(path, options));
  }

  function showMessage(text, kind = "error") {
    const el = $("message");
    el.textContent = text;
    el.className = `message ${kind}`;
    el.hidden = !text;
  }

  function busy() {
    return app.state !== null && BUSY.includes(app.state.status);
  }

  // -- state from the server -----------------------------------------------------------------
  function applyState(s) {
    app.state = s;
    // A message standing from before this page was opened (e.g. an earlier tab's failed
    // upload) belongs to that page, not this one.
    if (app.lastServerMessage === null) app.lastServerMessage = s.message;
    if (s.video === null) {
      app.videoId = null;
      app.firstFrame = null;
    } else if (s.video.id !== app.videoId) {
      app.videoId = s.video.id;
      app.firstFrame = null; // the previous video's picture is not this one's (set on load)
      app.drawn = [];
      app.editing = true;
      app.shown = null;
      app.shownIndex = -1;
      const canvas = $("view");
      canvas.width = s.video.width;
      canvas.height = s.video.height;
      const img = new Image();
      img.onload = () => {
        app.firstFrame = img;
        render();
      };
      img.src = `/api/first-frame.jpg?v=${s.video.id}`;
    }
    if (s.run === null) {
      app.runId = null;
      app.results = [];
    } else {
      if (s.run.id !== app.runId) {
        app.runId = s.run.id;
        app.results = [];
        app.shown = null;
        app.shownIndex = -1;
        app.editing = false;
      }
      // Results from s.run.since on; an answer starting past what the page has is skipped
      // (the next poll asks from the page's own count).
      if (s.run.since <= app.results.length) {
        app.results.length = s.run.since;
        for (const r of s.run.results) app.results.push(r);
      }
    }
    if (s.message !== app.lastServerMessage) {
      app.lastServerMessage = s.message;
      if (s.message) showMessage(s.message, s.message_kind);
    }
    fetchFrame();
    updateControls();
    render();
  }

  // The query asking only for the results the page does not have yet.
  function sinceQuery() {
    return app.runId !== null ? `?since=${app.results.length}&run=${app.runId}` : "";
  }

  async function poll() {
    try {
      applyState(await answer(await fetch(`/api/state${sinceQuery()}`)));
    } catch (err) {
      $("status").textContent = "server unreachable";
    }
    setTimeout(poll, busy() ? 100 : 500);
  }

  // Attention pictures exist for runs started with the overlay on.
  function wantAttention() {
    const s = app.state;
    return $("attention").checked && !$("attention").disabled && !!(s && s.run && s.run.attention);
  }

  // The target whose attention map is shown (one picture per target; the user picks).
  function attentionTarget() {
    const s = app.state;
    const k = s && s.run ? s.run.boxes.length : 1;
    const t = s && s.attention ? s.attention.target || 0 : 0;
    return Math.min(t, Math.max(0, k - 1));
  }

  // The newest streamed frame; its boxes are drawn from app.results of the same index.
  function fetchFrame() {
    if (app.fetching || app.runId === null || app.editing || app.results.length === 0) return;
    const index = app.results.length - 1;
    const attention = wantAttention();
    const target = attentionTarget();
    if (index === app.shownIndex && attention === app.shownAttention &&
        (!attention || target === app.shownTarget)) return;
    app.fetching = true;
    const img = new Image();
    img.onload = () => {
      app.fetching = false;
      app.shown = img;
      app.shownIndex = index;
      app.shownAttention = attention;
      app.shownTarget = target;
      render();
      fetchFrame();
    };
    img.onerror = () => {
      // Dropped already (only the newest frames are kept): show the boxes on the last picture.
      app.fetching = false;
      app.shownIndex = index;
      app.shownAttention = attention;
      app.shownTarget = target;
      render();
    };
    img.src = `/api/frame/${app.runId}/${index}.jpg${attention ? `?attention=1&target=${target}` : ""}`;
  }

  // -- drawing -------------------------------------------------------------------------------
  const overlaps = (a, b) =>
    a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3];

  // Where a label of size tw x th goes: above the box's top-left corner (inside the box at the
  // top edge), moved down in steps past the labels placed already, so none covers another.
  function placeLabel(box, tw, th, placed, height) {
    const [x, y] = box;
    let ty = y - th >= 0 ? y - th : y;
    for (let i = 0; i < 64; i++) {
      const rect = [x, ty, tw, th];
      if (!placed.some((r) => overlaps(r, rect))) return rect;
      const below = placed.filter((r) => overlaps(r, rect)).map((r) => r[1] + r[3]);
      ty = Math.max(...below);
      if (ty + th > height) break;
    }
    return [x, Math.max(0, Math.min(ty, height - th)), tw, th];
  }

  function strokeBox(ctx, box, col, label, lineWidth, dashed = false) {
    const [x, y, w, h] = box;
    ctx.save();
    ctx.strokeStyle = col;
    ctx.lineWidth = lineWidth;
    if (dashed) ctx.setLineDash([4 * lineWidth, 3 * lineWidth]);
    ctx.strokeRect(x, y, w, h);
    if (label) {
      ctx.font = `${Math.round(7 * lineWidth)}px system-ui, sans-serif`;
      const tw = ctx.measureText(label).width + 3 * lineWidth;
      const th = 9 * lineWidth;
      const rect = placeLabel(box, tw, th, app.labels, ctx.canvas.height);
      app.labels.push(rect);
      ctx.fillStyle = col;
      ctx.fillRect(rect[0] - lineWidth / 2, rect[1], tw, th);
      ctx.fillStyle = "#000";
      ctx.fillText(label, rect[0] + lineWidth, rect[1] + 7 * lineWidth);
    }
    ctx.restore();
  }

  function currentResult() {
    if (app.editing || app.shownIndex < 0) return null;
    return app.results[app.shownIndex] || null;
  }

  function render() {
    const canvas = $("view");
    const ctx = canvas.getContext("2d");
    const rect = canvas.getBoundingClientRect();
    const lw = Math.max(1, (2 * canvas.width) / Math.max(1, rect.width));
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    const img = app.editing ? app.firstFrame : app.shown || app.firstFrame;
    if (img) ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    app.labels = [];
    const res = currentResult();
    if (res) {
      res.boxes.forEach((b, t) => {
        const label = `${res.boxes.length > 1 ? `${t + 1}: ` : ""}${res.scores[t].toFixed(2)}`;
        strokeBox(ctx, b, colour(t), label, lw);
      });
    } else {
      app.drawn.forEach((b, t) => strokeBox(ctx, b, colour(t), `${t + 1}`, lw));
      if (app.dragging) strokeBox(ctx, dragBox(), colour(app.drawn.length), null, lw, true);
    }
    renderReadout(res);
    renderLegend(res);
    renderPlot();
  }

  // The colour scale of the attention picture shown: whose map, and what its ends mean.
  function renderLegend(res) {
    const ranges = res && res.attention;
    const show = !!(app.shownAttention && ranges && !app.editing);
    $("attention-legend").hidden = !show;
    if (!show) return;
    const t = app.shownTarget;
    const k = res.boxes.length;
    $("legend-title").textContent =
      `attention on the template${k > 1 ? ` of target ${t + 1}` : ""} (blue low, red high):`;
    const r = ranges[t];
    $("legend-min").textContent = r ? `${(100 * r[0]).toFixed(1)}%` : "low";
    $("legend-max").textContent = r ? `${(100 * r[1]).toFixed(1)}%` : "high";
  }

  function renderReadout(res) {
    const s = app.state;
    $("video-name").textContent = s && s.video ? `${s.video.name} (${s.video.width}x${s.video.height})` : "–";
    const total = s && s.run && s.run.total ? s.run.total : s && s.video && s.video.frames;
    $("frame-index").textContent = res ? `${res.frame + 1} of ${total || "?"}` : app.state && app.state.video ? "1 (first frame)" : "–";
    $("fps").textContent = s && s.run && s.run.fps ? s.run.fps.toFixed(1) : "–";
    $("fps-total").textContent =
      s && s.run && s.run.fps_end_to_end ? s.run.fps_end_to_end.toFixed(1) : "–";
    const m = s && s.model;
    $("model-name").textContent = m ? m.name : "–";
    $("model-weights").textContent = m ? m.weights : "–";
    const warn = $("weights-warning");
    warn.hidden = !(m && m.random);
    if (m && m.random) {
      const files = m.releases.length ? ` (${m.releases.join(" or ")}, from the ${m.source})` : "";
      warn.textContent =
        `${m.name} runs with RANDOM weights: the boxes are meaningless. Restart with ` +
        `mixformer app --model ${m.name} --weights FILE${files}.`;
    }
    const rows = res
      ? res.boxes.map((b, t) => [t, b, res.scores[t].toFixed(3)])
      : app.drawn.map((b, t) => [t, b, "–"]);
    const body = $("boxes").tBodies[0];
    body.replaceChildren(
      ...rows.map(([t, b, score]) => {
        const tr = document.createElement("tr");
        const first = document.createElement("td");
        const sw = document.createElement("span");
        sw.className = "swatch";
        sw.style.background = colour(t);
        first.append(sw, `${t + 1}`);
        tr.append(first);
        for (const v of [...b.map((v) => v.toFixed(2)), score]) {
          const td = document.createElement("td");
          td.textContent = v;
          tr.append(td);
        }
        return tr;
      }),
    );
  }

  function renderPlot() {
    const canvas = $("plot");
    const ctx = canvas.getContext("2d");
    const W = canvas.width;
    const H = canvas.height;
    const pad = { l: 30, r: 8, t: 8, b: 22 };
    const pw = W - pad.l - pad.r;
    const ph = H - pad.t - pad.b;
    ctx.clearRect(0, 0, W, H);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#9aa1b1";
    ctx.strokeStyle = "#363a45";
    ctx.lineWidth = 1;
    for (const v of [0, 0.25, 0.5, 0.75, 1]) {
      const y = pad.t + ph * (1 - v);
      ctx.beginPath();
      ctx.moveTo(pad.l, y);
      ctx.lineTo(W - pad.r, y);
      ctx.stroke();
      if (v === 0 || v === 0.5 || v === 1) ctx.fillText(String(v), 6, y + 4);
    }
    const s = app.state;
    // Frames counted from 1, as the readout ("132 of 132"): result i is frame i + 1.
    const n = Math.max(app.results.length, (s && s.run && s.run.total) || 0, 2);
    const xOf = (i) => pad.l + (pw * i) / (n - 1);
    ctx.fillText("1", pad.l - 3, H - 6);
    ctx.textAlign = "right";
    ctx.fillText(`frame ${n}`, W - pad.r, H - 6);
    app.plotFrames = n;
    ctx.textAlign = "left";
    if (app.results.length === 0) return;
    const k = app.results[0].scores.length;
    for (let t = 0; t < k; t++) {
      ctx.beginPath();
      ctx.strokeStyle = colour(t);
      ctx.lineWidth = 1.5;
      app.results.forEach((r, i) => {
        const y = pad.t + ph * (1 - Math.min(1, Math.max(0, r.scores[t])));
        if (i === 0) ctx.moveTo(xOf(i), y);
        else ctx.lineTo(xOf(i), y);
      });
      ctx.stroke();
    }
    if (app.shownIndex >= 0 && !app.editing) {
      ctx.strokeStyle = "rgba(255,255,255,0.5)";
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(xOf(app.shownIndex), pad.t);
      ctx.lineTo(xOf(app.shownIndex), pad.t + ph);
      ctx.stroke();
    }
  }

  // -- controls ------------------------------------------------------------------------------
  function setProgress(fraction, text) {
    const el = $("progress");
    el.hidden = text === null;
    if (text === null) return;
    $("progress-bar").style.width = `${Math.round(100 * Math.min(1, Math.max(0, fraction)))}%`;
    $("progress-text").textContent = text;
  }

  function updateControls() {
    const s = app.state;
    const status = s ? s.status : "connecting";
    const running = status === "running" || status === "paused";
    const hasVideo = s !== null && s.video !== null;
    $("status").textContent = status;
    $("file").disabled = busy();
    $("open").disabled = busy();
    $("demo").disabled = busy();
    $("clear").disabled = busy() || !hasVideo || (app.drawn.length === 0 && app.editing);
    $("track").disabled = busy() || !hasVideo || app.drawn.length === 0;
    $("pause").disabled = !running;
    $("pause").textContent = status === "paused" ? "Resume" : "Pause";
    $("stop").disabled = !running;
    const dl = s && s.run ? s.run.downloads : { boxes: false, video: false };
    for (const [id, ok] of [["dl-boxes", dl.boxes], ["dl-video", dl.video]]) {
      $(id).classList.toggle("disabled", !ok);
      $(id).setAttribute("aria-disabled", String(!ok));
    }
    const att = s ? s.attention : { available: false, reason: "" };
    $("attention").disabled = !att.available;
    $("attention").checked = att.available && !!att.on;
    $("attention-label").classList.toggle("disabled", !att.available);
    $("attention-label").title = att.available ? "draw the tracker's attention on the frames" : att.reason;
    // Several targets: one map each; the user picks the one shown.
    const k = s && s.run && s.run.attention ? s.run.boxes.length : 0;
    const pick = $("attention-target");
    $("attention-target-label").hidden = !(att.available && att.on && k > 1);
    if (pick.options.length !== k) {
      pick.replaceChildren(
        ...Array.from({ length: k }, (_, t) => new Option(`target ${t + 1}`, String(t))),
      );
    }
    if (k > 0 && document.activeElement !== pick) pick.value = String(attentionTarget());
    if (!s) return setProgress(0, null);
    if (status === "uploading" && s.upload) {
      const u = s.upload;
      const mb = (v) => (v / 2 ** 20).toFixed(1);
      const of = u.total ? ` of ${mb(u.total)} MB` : " MB";
      setProgress(u.total ? u.received / u.total : 0, `uploading ${u.name}: ${mb(u.received)}${of} received`);
    } else if (status === "loading" && s.loading) {
      const l = s.loading;
      setProgress(l.total ? l.done / l.total : 0, l.total ? `${l.what}: ${l.done} of ${l.total}` : `${l.what}…`);
    } else if (s.run && status !== "ready") {
      const r = s.run;
      const word = { running: "tracking", paused: "paused", done: "done", stopped: "stopped", error: "failed" }[status] || status;
      const total = r.total ? ` of ${r.total}` : "";
      setProgress(r.total ? r.done / r.total : status === "done" ? 1 : 0, `${word}: ${r.done}${total} frames`);
    } else {
      setProgress(0, null);
    }
    $("hint").hidden = hasVideo && app.drawn.length > 0;
  }

  function dragBox() {
    const d = app.dragging;
    const x = Math.round(Math.min(d.x0, d.x1));
    const y = Math.round(Math.min(d.y0, d.y1));
    return [x, y, Math.round(Math.max(d.x0, d.x1)) - x, Math.round(Math.max(d.y0, d.y1)) - y];
  }

  function toImage(ev) {
    const canvas = $("view");
    const r = canvas.getBoundingClientRect();
    const clamp = (v, hi) => Math.min(hi, Math.max(0, v));
    return [
      clamp(((ev.clientX - r.left) * canvas.width) / r.width, canvas.width),
      clamp(((ev.clientY - r.top) * canvas.height) / r.height, canvas.height),
    ];
  }

  function startEditing() {
    if (!app.editing) {
      app.editing = true;
      app.drawn = [];
    }
  }

  // Pointer events: a mouse, a pen or a finger draws the same way (the canvas has
  // touch-action: none, so a drag on a touch screen draws instead of scrolling the page).
  const view = $("view");
  view.addEventListener("pointerdown", (ev) => {
    if (!ev.isPrimary || ev.button !== 0 || busy() || !app.state || !app.state.video) return;
    ev.preventDefault();
    try {
      view.setPointerCapture(ev.pointerId); // the drag goes on outside the canvas
    } catch (err) {
      // a pointer the browser does not track (synthetic events): no capture needed
    }
    startEditing();
    const [x, y] = toImage(ev);
    app.dragging = { x0: x, y0: y, x1: x, y1: y, pointer: ev.pointerId };
    render();
  });
  view.addEventListener("pointermove", (ev) => {
    if (!app.dragging || ev.pointerId !== app.dragging.pointer) return;
    [app.dragging.x1, app.dragging.y1] = toImage(ev);
    render();
  });
  view.addEventListener("pointercancel", (ev) => {
    if (!app.dragging || ev.pointerId !== app.dragging.pointer) return;
    app.dragging = null;
    render();
  });
  view.addEventListener("pointerup", (ev) => {
    if (!app.dragging || ev.pointerId !== app.dragging.pointer) return;
    [app.dragging.x1, app.dragging.y1] = toImage(ev);
    const box = dragBox();
    app.dragging = null;
    const max = app.state ? app.state.limits.max_targets : 16;
    if (box[2] < MIN_SIDE || box[3] < MIN_SIDE) {
      showMessage(`drag to draw a box: it must be at least ${MIN_SIDE} px wide and high`, "info");
    } else if (app.drawn.length >= max) {
      showMessage(`at most ${max} boxes per run`);
    } else {
      app.drawn.push(box);
      showMessage("");
    }
    updateControls();
    render();
  });

  $("open").addEventListener("click", () => $("file").click());
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    $("file").value = "";
    if (file) upload(file);
  });

  function upload(file) {
    const max = app.state ? app.state.limits.max_upload_bytes : null;
    if (max && file.size > max) {
      // The server refuses it too; saying so before sending saves the wait.
      showMessage(
        `the file is ${(file.size / 2 ** 20).toFixed(1)} MB, over the upload limit of ` +
          `${+(max / 2 ** 20).toFixed(3)} MB (start the app with a larger --max-upload-mb)`,
      );
      return;
    }
    showMessage("");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/upload?name=${encodeURIComponent(file.name)}`);
    xhr.setRequestHeader("X-Requested-With", "mixformer");
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.onload = () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch (err) {
        data = null;
      }
      if (xhr.status === 200 && data) {
        applyState(data);
      } else {
        showMessage(data && data.error ? data.error : `the upload failed (${xhr.status})`);
      }
    };
    xhr.onerror = () => showMessage("the upload failed: the connection to the server was lost");
    xhr.send(file);
    setTimeout(poll, 50);
  }

  async function act(path, body) {
    try {
      showMessage("");
      applyState(await post(path, body));
    } catch (err) {
      showMessage(err.message);
    }
  }

  $("demo").addEventListener("click", () => act("/api/demo"));
  $("clear").addEventListener("click", () => {
    app.editing = true;
    app.drawn = [];
    showMessage("");
    updateControls();
    render();
  });
  $("track").addEventListener("click", () => act("/api/track", { boxes: app.drawn }));
  $("pause").addEventListener("click", () =>
    act((app.state && app.state.status === "paused" ? "/api/resume" : "/api/pause") + sinceQuery()),
  );
  $("stop").addEventListener("click", () => act(`/api/stop${sinceQuery()}`));
  $("attention").addEventListener("change", async () => {
    const on = $("attention").checked;
    await act(`/api/options${sinceQuery()}`, { attention: on });
    const s = app.state;
    if (on && s && s.run && !s.run.attention && BUSY.includes(s.status)) {
      showMessage("the attention overlay shows from the next run (this one runs without it)", "info");
    }
    fetchFrame(); // the shown frame again, with or without its attention
    render();
  });
  $("attention-target").addEventListener("change", async () => {
    const target = Number($("attention-target").value);
    await act(`/api/options${sinceQuery()}`, { attention: $("attention").checked, target });
    fetchFrame(); // the shown frame with the picked target's map
    render();
  });
  for (const id of ["dl-boxes", "dl-video"]) {
    $(id).addEventListener("click", (ev) => {
      if ($(id).classList.contains("disabled")) ev.preventDefault();
    });
  }
  window.addEventListener("resize", render);

  updateControls();
  render();
  poll();
})();
