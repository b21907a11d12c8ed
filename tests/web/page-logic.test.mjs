// Unit tests of the page's DOM-free logic (node --test tests/web/): feed messages applied
// to the model, KPI colouring against targets, and Intl formatting per language.
import { test } from "node:test";
import assert from "node:assert/strict";
import { applyMessage } from "../../web/js/live.js";
import { kpiStatus } from "../../web/js/board.js";

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
