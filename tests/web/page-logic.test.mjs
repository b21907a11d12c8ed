// Unit tests of the page's DOM-free logic (node --test tests/web/): feed messages applied
// to the model, KPI colouring against targets, and Intl formatting per language.
import { test } from "node:test";
import assert from "node:assert/strict";
import { applyMessage } from "../../web/js/live.js";
import { kpiStatus, monitorCallId, MONITOR_MODES } from "../../web/js/board.js";

test("a snapshot replaces the model and updates replace whole sections", () => {
  let m = applyMessage(null, { type: "snapshot", seq: 0, at: 1, totals: { offered: 1 }, queues: [{ name: "a" }], agents: [] });
  assert.equal(m.type, undefined);
  assert.equal(m.seq, 0);
  m = applyMessage(m, { type: "update", seq: 1, at: 2, queues: [{ name: "b" }] });
  assert.deepEqual(m.queues, [{ name: "b" }]);
  assert.deepEqual(m.totals, { offered: 1 }, "sections not in the update stay");
  assert.equal(m.at, 2);
  assert.equal(applyMessage(m, { type: "hello" }), m, "unknown types are ignored");
});

test("an update with a gap in seq or before any snapshot asks for a resync", () => {
  const m = applyMessage(null, { type: "snapshot", seq: 5, at: 1 });
  assert.equal(applyMessage(m, { type: "update", seq: 7, at: 2 }), null);
  assert.equal(applyMessage(null, { type: "update", seq: 1, at: 2 }), null);
});

test("KPI colours: met, within 10 % of the target, beyond, or no figure", () => {
  assert.equal(kpiStatus(85, 80, true), "good");
  assert.equal(kpiStatus(75, 80, true), "warn");
  assert.equal(kpiStatus(60, 80, true), "bad");
  assert.equal(kpiStatus(18, 20, false), "good");
  assert.equal(kpiStatus(21.5, 20, false), "warn");
  assert.equal(kpiStatus(40, 20, false), "bad");
  assert.equal(kpiStatus(null, 20, false), "none");
  assert.equal(kpiStatus(5, undefined, false), "none");
});

test("monitor buttons only for an agent talking on a call", () => {
  const call = { call_id: "c-1", queue: "sales", since: 1 };
  assert.equal(monitorCallId({ state: "on_call", call }), "c-1");
  assert.equal(monitorCallId({ state: "reserved", call }), null, "offered, not answered yet");
  assert.equal(monitorCallId({ state: "wrap_up", call }), null);
  assert.equal(monitorCallId({ state: "on_call", call: null }), null);
  assert.equal(monitorCallId({ state: "ready" }), null);
  assert.equal(monitorCallId(null), null);
  assert.deepEqual(MONITOR_MODES, ["listen", "whisper", "barge"]);
});

test("labels and Intl formats follow the chosen language", async () => {
  const i18n = await import("../../web/js/i18n.js");
  i18n.setLanguage("en");
  assert.equal(i18n.t("state.on_call"), "On call");
  assert.equal(i18n.formatDuration(65), "1:05");
  assert.equal(i18n.formatDuration(3723), "1:02:03");
  assert.equal(i18n.formatDuration(null), "—");
  assert.equal(i18n.formatPercent(78.4), "78.4%");
  assert.equal(i18n.formatNumber(12345), "12,345");
  assert.equal(i18n.formatClock(Date.UTC(2026, 0, 1, 7, 5, 9), "Asia/Shanghai"), "15:05:09");
  i18n.setLanguage("zh");
  assert.equal(i18n.t("state.on_call"), "通话中");
  assert.equal(i18n.t("kpi.service_level", { secs: 20 }), "服务水平（20 秒）");
  assert.match(i18n.formatSeconds(14), /14\s?秒/);
  assert.equal(i18n.formatLanguageName("en"), "英语");
  i18n.setLanguage("en");
  assert.equal(i18n.formatLanguageName("zh"), "Chinese");
});
